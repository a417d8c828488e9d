"""The ``hepjax`` command end to end: train with overrides, evaluate, demo."""
import json
import subprocess
import sys

import numpy as np
import pytest

from hepjax import cli
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
