"""A run killed with SIGKILL and resumed ends bit-identical to one that never stopped."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import orbax.checkpoint as ocp

from .helpers import leaves_equal

ARGS = ["hepjax.configs.dijet_mlp:smoke", "--config.train.num_steps=600",
        "--config.train.checkpoint_every=25", "--config.train.eval_every=100",
        "--config.train.log_every=25", "--config.model.dropout=0.2",
        "--config.train.early_stopping.patience=100000"]


def _train(workdir, **kwargs):
    env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0", JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-m", "hepjax.cli", "train", *ARGS, "--workdir", str(workdir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


def _steps(workdir):
    root = pathlib.Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []


def _params(workdir, step):
    with ocp.CheckpointManager(pathlib.Path(workdir).absolute() / "checkpoints") as manager:
        return manager.restore(step)["state"]["params"]


def test_sigkill_and_resume_is_bit_identical(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _train(killed)
    deadline = time.time() + 240
    while time.time() < deadline and not [s for s in _steps(killed) if s >= 100]:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    at_kill = _steps(killed)
    assert at_kill and max(at_kill) < 600, f"the run was not interrupted mid-way: {at_kill}"

    for workdir in (killed, clean):  # resume the killed run; train the clean one in one go
        proc = _train(workdir)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
    assert leaves_equal(_params(killed, 600), _params(clean, 600))
    # the metrics log has no duplicated steps from the killed attempt
    import json
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 600
