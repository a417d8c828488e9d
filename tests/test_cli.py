"""The ``hepjax`` command end to end: train with overrides, evaluate, demo."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from hepjax import cli
from hepjax import config as config_lib
from hepjax import data as data_lib
from hepjax.data.formats import FormatError


def test_train_then_evaluate_prints_json(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert cli.main(["train", "hepjax.configs.dijet_mlp:smoke", "--workdir", str(workdir),
                     "--config.train.num_steps=40", "--config.model.hidden=(16,)"]) == 0
    config = json.loads((workdir / "config.json").read_text())
    assert config["train"]["num_steps"] == 40 and config["model"]["hidden"] == [16]
    capsys.readouterr()
    assert cli.main(["evaluate", "--workdir", str(workdir)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    metrics = json.loads(last)
    assert 0.5 < metrics["auc"] <= 1 and metrics["checkpoint_step"] in (20, 40)
    assert json.loads((workdir / "eval_metrics.json").read_text())["auc"] == metrics["auc"]

    # --data: an .npz in the raw layout; the run's saved preprocessing is re-applied
    raw = data_lib.dijet.generate(2000, seed=99)
    path = tmp_path / "other.npz"
    data_lib.write_npz(path, raw["features"], raw["label"], data_lib.dijet.FEATURES)
    assert cli.main(["evaluate", "--workdir", str(workdir), "--data", str(path)]) == 0
    other = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert other["data"] == str(path) and abs(other["auc"] - metrics["auc"]) < 0.08


def test_evaluate_bad_inputs_are_clear(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hepjax.cli", "evaluate", "--workdir", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "no config.json" in proc.stderr
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=np.zeros((3, 10)))
    with pytest.raises(FormatError, match=r"bad.npz: missing arrays \['label'\]"):
        data_lib.read_npz(bad)


def test_demo_quick(tmp_path):
    from hepjax import demo
    result = demo.run(tmp_path, quick=True)
    assert (tmp_path / "roc.png").stat().st_size > 1000
    assert result["auc"] > 0.75 and result["mass_window_auc"] > 0.7


def _one_line_error(capsys, argv, match):
    """``main(argv)`` exits with status 2 and one line ``hepjax: error: ...`` on stderr."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hepjax: error: "), err
    assert "Traceback" not in err and re.search(match, lines[0]), lines[0]
    return lines[0]


def _run_dir(tmp_path):
    """A run directory with only its config.json: enough for evaluate to get to the data."""
    run = tmp_path / "run"
    run.mkdir()
    config = config_lib.load_config("hepjax.configs.dijet_mlp:smoke")
    (run / "config.json").write_text(config_lib.to_json(config))
    return run


def test_user_errors_are_one_line_with_status_2(tmp_path, capsys):
    smoke = ["train", "hepjax.configs.dijet_mlp:smoke", "--workdir", str(tmp_path / "t")]
    _one_line_error(capsys, smoke + ["--config.train.stepz=3"],
                    r"^hepjax: error: --config.train.stepz: no field 'stepz'; fields here: \[")
    _one_line_error(capsys, smoke + ["--config.nope.x=1"], r"--config.nope.x: no field 'nope' in the config$")
    _one_line_error(capsys, smoke + ["--config.train.num_steps=abc"], r"got str, expected int")
    _one_line_error(capsys, ["train", "hepjax.configs.no_such_config", "--workdir", str(tmp_path)],
                    r"config 'hepjax.configs.no_such_config': no module 'hepjax.configs.no_such_config'")
    _one_line_error(capsys, ["train", "hepjax.rng", "--workdir", str(tmp_path)],
                    r"config 'hepjax.rng' defines no get_config")
    _one_line_error(capsys, ["train", str(tmp_path / "none.py"), "--workdir", str(tmp_path)],
                    r"config file '.*none.py' not found")
    _one_line_error(capsys, ["evaluate", "--workdir", str(tmp_path / "nonexistent")],
                    r"nonexistent: no config.json here; is this a hepjax run directory\?$")

    bad = tmp_path / "bad.npz"                           # a malformed data file, at evaluation
    data_lib.write_npz(bad, np.zeros((20, 10)), np.where(np.arange(20) == 5, 3.5, 0))
    _one_line_error(capsys, ["evaluate", "--workdir", str(_run_dir(tmp_path)), "--data", str(bad)],
                    r"bad.npz: array 'label' has 1 rows (that are not class indices .*|outside \{0, 1\} )\(e\.g\. row 5: 3\.5\)$")
    data = tmp_path / "npz"                               # ... and at training
    data.mkdir()
    for split in ("train", "val", "test"):
        features = np.ones((30, 4)) if split != "val" else np.full((30, 4), np.nan)
        data_lib.write_npz(data / f"{split}.npz", features, np.arange(30) % 2)
    _one_line_error(capsys, smoke + ["--config.data.name=npz", f"--config.data.path={data}"],
                    r"val.npz: array 'features' has NaN/Inf values in 30 of 30 rows \(e\.g\. row 0: nan\)$")


def test_debug_lets_the_error_propagate(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        cli.main(["--debug", "evaluate", "--workdir", str(tmp_path / "nonexistent")])
    with pytest.raises(FileNotFoundError, match="no config.json"):
        cli.main(["evaluate", "--workdir", str(tmp_path / "nonexistent"), "--debug"])
    with pytest.raises(KeyError, match="no field 'stepz'"):
        cli.main(["train", "hepjax.configs.dijet_mlp:smoke", "--workdir", str(tmp_path),
                  "--config.train.stepz=3", "--debug"])


def test_bugs_keep_their_traceback(monkeypatch, tmp_path):
    from hepjax.train import experiment

    def buggy(*args, **kwargs):
        return {}["a key our own code forgot"]

    monkeypatch.setattr(experiment, "evaluate_run", buggy)
    with pytest.raises(KeyError):
        cli.main(["evaluate", "--workdir", str(tmp_path)])


def test_missing_config_field_names_the_code_that_needs_it():
    config = config_lib.load_config("hepjax.configs.dijet_mlp:smoke")
    try:
        config.train.restore_stepz
    except AttributeError as err:
        message = cli._user_message(err)
    assert message.startswith("the config has no field 'restore_stepz' (needed by test_cli.py:")
    assert message.endswith("(Did you mean \"restore_step\" instead of \"restore_stepz\"?); add it to the config")


def test_generate_passes_the_mpi_choice(tmp_path, monkeypatch):
    """`hepjax generate --mpi on|off|default` reaches generation.generate as True/False/None."""
    from hepjax.data import generation
    seen = []

    def fake(task, n_jets, seed, **kwargs):
        seen.append(kwargs["mpi"])
        raise ValueError("stop here")

    monkeypatch.setattr(generation, "generate", fake)
    for choice in ("on", "off", "default"):
        argv = ["generate", "top-tagging", "--n-jets", "2", "--seed", "1", "--out",
                str(tmp_path / "x.h5"), "--mpi", choice]
        assert cli.main(argv) == 2
    assert seen == [True, False, None]


def test_demo_rejection_text_states_its_statistics():
    from hepjax.demo import rejection_text
    assert rejection_text(float("inf"), 606) == "> 606 (none of the 606 background test jets passes)"
    assert rejection_text(121.2, 606) == ("121.2 ± 54.2 (5 of 606 background jets pass), "
                                         "statistics-limited")
    assert rejection_text(20.0, 600) == "20.0 ± 3.7 (30 of 600 background jets pass)"


def test_distributed_joins_the_job_before_running(tmp_path, monkeypatch, capsys):
    """`hepjax --distributed ...` (before or after the subcommand) and `python -m hepjax.parallel`
    (`main(distributed=True)`) initialise the distributed runtime once, then run the command."""
    from hepjax.parallel import distributed
    calls = []

    def fake_initialize():
        calls.append("init")
        return distributed.ClusterSpec("single")

    monkeypatch.setattr(distributed, "initialize", fake_initialize)
    missing = ["evaluate", "--workdir", str(tmp_path / "none")]
    assert cli.main(["--distributed", *missing]) == 2      # then the command's own user error
    assert cli.main([*missing, "--distributed"]) == 2
    assert cli.main(missing, distributed=True) == 2
    assert cli.main(missing) == 2
    assert calls == ["init"] * 3
    assert "hepjax: error:" in capsys.readouterr().err


def test_python_m_hepjax_parallel_is_a_shim_over_the_cli():
    """hepjax.parallel imports no command-line code: its __main__ only calls hepjax.cli."""
    import ast
    import os
    import pathlib

    import hepjax.parallel
    package = pathlib.Path(hepjax.parallel.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.module for a in n.names}
        if path.name != "__main__.py":
            assert not any(m.startswith(("hepjax.cli", "hepjax.train")) for m in imported), path
    proc = subprocess.run([sys.executable, "-m", "hepjax.parallel", "--help"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HEPJAX_TUNE_ALLOCATOR": "0"})
    assert proc.returncode == 0 and "--distributed" in proc.stdout
