"""End to end: a run whose latest checkpoint was truncated resumes from the previous one through
``loop.fit`` and ends bit-identical to the run before the damage."""
import os
import pathlib

import orbax.checkpoint as ocp
import pytest

from hepjax.train import experiment

from .helpers import leaves_equal, smoke_config


def _params(workdir, step):
    with ocp.CheckpointManager(pathlib.Path(workdir).absolute() / "checkpoints") as manager:
        return manager.restore(step)["state"]["params"]


def test_truncated_latest_checkpoint_resumes_from_the_previous(tmp_path):
    config = smoke_config(num_steps=30, checkpoint_every=10, eval_every=10, log_every=10,
                          keep_checkpoints=3)
    config.train.early_stopping.patience = 1000
    experiment.train(config, tmp_path, progress=False)
    root = tmp_path / "checkpoints"
    assert sorted(int(p.name) for p in root.iterdir()) == [10, 20, 30]
    before = _params(tmp_path, 30)
    files = [p for p in (root / "30").rglob("*") if p.is_file()]
    largest = max(files, key=lambda p: p.stat().st_size)
    os.truncate(largest, largest.stat().st_size // 2)

    with pytest.warns(UserWarning, match=r"checkpoint step 30 is unreadable \(.*\); restoring step 20 instead"):
        experiment.train(config, tmp_path, progress=False)
    assert sorted(int(p.name) for p in root.iterdir()) == [10, 20, 30]
    assert leaves_equal(_params(tmp_path, 30), before)   # steps 20 -> 30 redone exactly
