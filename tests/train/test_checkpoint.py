"""Checkpoints that went bad after they were written: restore walks back to the newest intact
one with a warning naming the one skipped, a chosen step restores exactly, nothing intact is one
line, and new saves replace the bad steps without dropping the last good one."""
import gc
import os
import pathlib
import shutil
import warnings

import jax
import jax.numpy as jnp
import pytest

from hepjax.train.checkpoint import CheckpointError, Checkpointer

from .helpers import leaves_equal


def _state(step):
    """A train-state-like pytree: params, optimiser moments, a PRNG key and the step."""
    params = {"w": jnp.arange(2000.0).reshape(40, 50) * step, "b": jnp.full(50, float(step))}
    return {"params": params, "opt": {"mu": jax.tree.map(lambda x: x / 7, params)},
            "key": jax.random.key(step), "step": jnp.array(step, jnp.int32)}


def _saved(workdir, steps=(10, 20, 30), keep=3):
    ckpt = Checkpointer(workdir, keep=keep)
    for step in steps:
        ckpt.save(step, _state(step), {"step": step})
    ckpt.close()


def _truncate_largest(directory):
    files = [p for p in pathlib.Path(directory).rglob("*") if p.is_file()]
    largest = max(files, key=lambda p: p.stat().st_size)
    os.truncate(largest, largest.stat().st_size // 2)
    return largest


def _same(restored, step):
    state, meta = restored
    assert meta == {"step": step}
    expected = _state(step)
    assert leaves_equal(jax.tree.map(jax.random.key_data, state["key"]),
                        jax.random.key_data(expected["key"]))
    return leaves_equal({k: v for k, v in state.items() if k != "key"},
                        {k: v for k, v in expected.items() if k != "key"})


def test_restore_walks_back_past_a_truncated_checkpoint(tmp_path, capfd):
    _saved(tmp_path)
    _truncate_largest(tmp_path / "checkpoints" / "30")
    ckpt = Checkpointer(tmp_path)
    with pytest.warns(UserWarning) as record:
        restored = ckpt.restore_latest(_state(0))
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0].startswith(f"{tmp_path / 'checkpoints'}: checkpoint step 30 is unreadable (")
    assert messages[0].endswith("); restoring step 20 instead")
    assert _same(restored, 20)
    assert _same(ckpt.restore_latest(_state(0), step=10), 10)
    ckpt.close()
    gc.collect()
    err = capfd.readouterr().err   # orbax's abandoned reads of step 30 print nothing
    assert "TensorStore" not in err and "Exception ignored" not in err, err[-2000:]


def test_chosen_step_and_clear_errors(tmp_path, capfd):
    ckpt = Checkpointer(tmp_path / "empty")
    assert ckpt.restore_latest(_state(0)) is None and ckpt.restore_best(_state(0)) is None
    with pytest.raises(CheckpointError, match=r"no checkpoint at step 10 to restore; the steps there are \[\]"):
        ckpt.restore_latest(_state(0), step=10)
    ckpt.close()

    _saved(tmp_path)
    ckpt = Checkpointer(tmp_path)
    assert _same(ckpt.restore_latest(_state(0), step=20), 20)
    with pytest.raises(CheckpointError, match=r"no checkpoint at step 25 to restore; the steps there are \[10, 20, 30\]"):
        ckpt.restore_latest(_state(0), step=25)
    ckpt.close()
    for step in (10, 20, 30):
        _truncate_largest(tmp_path / "checkpoints" / str(step))
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(CheckpointError) as info, pytest.warns(UserWarning, match="restoring step"):
        ckpt.restore_latest(_state(0))
    message = str(info.value)
    assert "\n" not in message and message.startswith(
        f"{tmp_path / 'checkpoints'}: no intact checkpoint; tried steps [30, 20, 10], all unreadable (step 30: ")
    with pytest.raises(CheckpointError, match=r"checkpoints: checkpoint step 20 is unreadable \(") as info:
        ckpt.restore_latest(_state(0), step=20)     # a chosen step never walks back
    assert "\n" not in str(info.value)
    ckpt.close()
    gc.collect()
    err = capfd.readouterr().err
    assert "TensorStore" not in err and "Exception ignored" not in err, err[-2000:]


def test_new_saves_replace_bad_steps_and_keep_the_good_one(tmp_path):
    _saved(tmp_path, (10, 20, 30), keep=2)            # max_to_keep=2: steps 20 and 30 remain
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [20, 30]
    _truncate_largest(tmp_path / "checkpoints" / "30")
    ckpt = Checkpointer(tmp_path, keep=2)
    with pytest.warns(UserWarning, match="step 30 is unreadable"):
        assert _same(ckpt.restore_latest(_state(0)), 20)
    # the resumed run reaches step 30 again: its save replaces the unreadable one (orbax alone
    # refuses an existing step) and the only intact checkpoint, 20, is still there
    with pytest.warns(UserWarning, match=r"removing checkpoint steps \[30\], saved after the restored step 20"):
        ckpt.save(30, _state(30), {"step": 30})
    assert ckpt.all_steps() == [20, 30]
    ckpt.save(40, _state(40), {"step": 40})
    assert ckpt.all_steps() == [30, 40]
    ckpt.close()
    ckpt = Checkpointer(tmp_path, keep=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _same(ckpt.restore_latest(_state(0)), 40)
        assert _same(ckpt.restore_latest(_state(0), step=30), 30)
    ckpt.close()


def test_chosen_older_step_continues_from_there(tmp_path):
    _saved(tmp_path)
    ckpt = Checkpointer(tmp_path)
    assert _same(ckpt.restore_latest(_state(0), step=10), 10)
    with pytest.warns(UserWarning, match=r"removing checkpoint steps \[20, 30\]"):
        ckpt.save(15, _state(15), {"step": 15})
    assert ckpt.all_steps() == [10, 15]
    ckpt.close()


def test_restore_best_falls_back_then_gives_none(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save_best(10, _state(10), {"step": 10})
    ckpt.close()
    shutil.copytree(tmp_path / "best" / "10", tmp_path / "kept10")
    ckpt = Checkpointer(tmp_path)
    ckpt.save_best(20, _state(20), {"step": 20})   # max_to_keep=1 removes 10
    ckpt.close()
    shutil.copytree(tmp_path / "kept10", tmp_path / "best" / "10")   # an older best, as if kept
    _truncate_largest(tmp_path / "best" / "20")
    ckpt = Checkpointer(tmp_path)
    with pytest.warns(UserWarning, match=r"best: best checkpoint step 20 is unreadable \(.*\); restoring step 10 instead"):
        assert _same(ckpt.restore_best(_state(0)), 10)
    ckpt.close()
    _truncate_largest(tmp_path / "best" / "10")
    ckpt = Checkpointer(tmp_path)
    with pytest.warns(UserWarning) as record:
        assert ckpt.restore_best(_state(0)) is None
    assert str(record[-1].message).endswith("no intact best checkpoint, none restored")
    assert "step 10 is unreadable" in str(record[-1].message)
    ckpt.close()
