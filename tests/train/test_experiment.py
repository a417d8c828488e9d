"""Durations resolved from the training-split size (hepjax.train.experiment._resolve_num_steps)."""
import ml_collections
import pytest

from hepjax.train import experiment


def _train_config(**fields):
    c = ml_collections.ConfigDict()
    c.train = ml_collections.ConfigDict({"num_steps": 0, "num_epochs": 3, "batch_size": 100,
                                         "eval_every": 7, "checkpoint_every": 9})
    c.train.update(fields)
    return c


def test_epochs_give_steps_and_eval_cadence():
    c = _train_config(eval_every_epochs=1.0, checkpoint_every_epochs=0.5)
    experiment._resolve_num_steps(c, 1050)           # 10 full batches per epoch
    assert (c.train.num_steps, c.train.eval_every, c.train.checkpoint_every) == (30, 10, 5)


def test_steps_kept_when_no_epoch_cadence():
    c = _train_config(num_steps=40, eval_every_epochs=0.0)
    experiment._resolve_num_steps(c, 1050)
    assert (c.train.num_steps, c.train.eval_every, c.train.checkpoint_every) == (40, 7, 9)


def test_tiny_epoch_fraction_is_at_least_one_step():
    c = _train_config(eval_every_epochs=0.01)
    experiment._resolve_num_steps(c, 300)
    assert c.train.eval_every == 1


@pytest.mark.parametrize("fields, n, match", [
    ({"num_epochs": 0}, 1000, "num_epochs > 0"),
    ({}, 50, "exceeds the 50 training examples"),
    ({"eval_every_epochs": -1.0}, 1000, "eval_every_epochs=-1.0"),
])
def test_bad_durations_are_refused(fields, n, match):
    with pytest.raises(ValueError, match=match):
        experiment._resolve_num_steps(_train_config(**fields), n)
