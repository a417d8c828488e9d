"""tpu/ scripts: bash -n and shellcheck pass, and the README's commands are the ones the scripts
take (run with fake gcloud / srun / pip that record their arguments; the training arguments they
pass on are parsed by the real hepjax CLI and config)."""
import os
import pathlib
import re
import shlex
import shutil
import subprocess

import pytest

from hepjax import cli
from hepjax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[2]
TPU = REPO / "tpu"
SCRIPTS = ("setup.sh", "run.sh", "slurm.sbatch")
README = (TPU / "README.md").read_text()


def _readme_lines(prefix: str) -> list[str]:
    return [line.strip() for line in README.splitlines() if line.strip().startswith(prefix)]


def _fake(bin_dir: pathlib.Path, name: str) -> pathlib.Path:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" >> \"$FAKE_LOG\"\n"
                    "printf -- '--\\n' >> \"$FAKE_LOG\"\n")
    path.chmod(0o755)
    return path


def _run(command: str, tmp_path, **env):
    log = tmp_path / "calls.txt"
    log.unlink(missing_ok=True)
    proc = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, FAKE_LOG=str(log), **env), timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().split("--\n") if log.exists() else []
    return [c.splitlines() for c in calls if c]


def _check_training_args(args: list[str]):
    """The arguments of `python -m hepjax.parallel`: accepted by the hepjax CLI and the config."""
    parsed, overrides = cli.build_parser().parse_known_args(args)
    assert parsed.command == "train" and "--config.train.num_devices=0" in overrides
    config = config_lib.parse_overrides(config_lib.load_config(parsed.config), overrides)
    assert config.train.num_devices == 0
    return parsed, config


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_pass_bash_n_and_shellcheck(name):
    path = TPU / name
    assert os.access(path, os.X_OK), f"{path} is not executable"
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck): only bash -n was checked")
    proc = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_readme_run_command_is_what_run_sh_takes(tmp_path):
    gcloud = _fake(tmp_path, "gcloud")
    [line] = _readme_lines("bash tpu/run.sh")
    [call] = _run(line, tmp_path, GCLOUD=str(gcloud))
    words = shlex.split(line)
    tpu_name, zone, config, workdir = words[2:6]
    assert call[:5] == ["compute", "tpus", "tpu-vm", "ssh", tpu_name]
    assert f"--zone={zone}" in call and "--worker=all" in call
    remote = next(c for c in call if c.startswith("--command="))[len("--command="):]
    # the worker command documented in the README, and runnable: its arguments parse
    assert remote.startswith("cd ~/hepjax && ~/hepjax-venv/bin/python -m hepjax.parallel train ")
    train_args = shlex.split(remote.split(" -m hepjax.parallel ", 1)[1])
    parsed, cfg = _check_training_args(train_args)
    assert parsed.config == config and parsed.workdir == workdir
    assert cfg.train.batch_size == int(re.search(r"batch_size=(\d+)", line).group(1))
    # every gcloud line of the README addresses the same slice and zone
    for gline in _readme_lines("gcloud compute tpus tpu-vm"):
        if "TPU_NAME" in gline:  # the template run.sh expands, checked above
            continue
        if " create " in gline or " delete " in gline or " ssh " in gline or " scp " in gline:
            assert tpu_name in gline and f"--zone={zone}" in gline, gline
    ssh = [g for g in _readme_lines("gcloud compute tpus tpu-vm") if " ssh " in g or " scp " in g]
    assert len(ssh) == 3  # scp, setup, and run.sh's template
    assert ssh and all("--worker=all" in g for g in ssh)
    with pytest.raises(AssertionError):  # too few arguments: a usage error
        _run("bash tpu/run.sh only-a-name", tmp_path, GCLOUD=str(gcloud))


def test_readme_setup_command_is_what_setup_sh_takes(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for tool in ("pip", "python"):
        _fake(venv / "bin", tool)
    lines = [re.search(r"bash (~/hepjax/)?tpu/setup\.sh \w+", line).group(0)
             for line in README.splitlines() if "tpu/setup.sh " in line and "bash" in line]
    extras = {line.split()[-1] for line in lines}
    assert extras == {"tpu", "cuda12"}
    for extra in extras:
        calls = _run(f"bash tpu/setup.sh {extra}", tmp_path, HEPJAX_VENV=str(venv))
        installs = [c for c in calls if c and c[0] == "install"]
        assert any(f"jax[{extra}]==0.10.2" in c for c in installs)
        assert any(c[-2:] == ["-e", str(REPO)] for c in installs)
    with pytest.raises(AssertionError):
        _run("bash tpu/setup.sh rocm-nonsense", tmp_path, HEPJAX_VENV=str(venv))


def test_readme_sbatch_command_is_what_slurm_script_takes(tmp_path):
    srun = _fake(tmp_path, "srun")
    [line] = _readme_lines("sbatch tpu/slurm.sbatch")
    script_args = shlex.split(line)[2:]
    [call] = _run(shlex.join(["bash", "tpu/slurm.sbatch", *script_args]), tmp_path, SRUN=str(srun),
                  HEPJAX_VENV="/opt/venv")
    assert call[:3] == ["/opt/venv/bin/python", "-m", "hepjax.parallel"]
    parsed, _ = _check_training_args(call[3:])
    assert [parsed.config, parsed.workdir] == script_args[:2]
    sbatch = (TPU / "slurm.sbatch").read_text()
    per_node = re.search(r"--ntasks-per-node=(\d+)", sbatch).group(1)
    assert re.search(rf"--gpus-per-node={per_node}\b", sbatch), "one task per GPU, each seeing its node's GPUs"
