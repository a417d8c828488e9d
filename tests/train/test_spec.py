"""The resolver (hepjax.train.spec): a config plus the training-split size -> a frozen run spec,
once, without touching the caller's config."""
import dataclasses

import ml_collections
import pytest

from hepjax.configs import defaults
from hepjax.train import spec as spec_lib


def _config(**train):
    c = ml_collections.ConfigDict()
    c.seed = 3
    c.train = defaults.train(num_steps=0, num_epochs=3, batch_size=100, eval_every=7,
                             checkpoint_every=9)
    c.train.update(train)
    return c


def test_epochs_give_steps_and_cadences_and_the_config_is_untouched():
    c = _config(eval_every=0, eval_every_epochs=1.0, checkpoint_every=0, checkpoint_every_epochs=0.5)
    before = c.to_json()
    spec = spec_lib.resolve(c, 1050)                  # 10 full batches per epoch
    assert (spec.steps_per_epoch, spec.num_steps, spec.eval_every, spec.checkpoint_every) == (10, 30, 10, 5)
    assert spec.num_epochs == 3.0 and spec.seed == 3
    assert c.to_json() == before                      # nothing written into the caller's config


def test_steps_and_examples():
    spec = spec_lib.resolve(_config(num_epochs=0, num_steps=40), 1050)
    assert (spec.num_steps, spec.eval_every, spec.checkpoint_every) == (40, 7, 9)
    spec = spec_lib.resolve(_config(num_epochs=0, num_examples=2_560, eval_every=0,
                                    eval_every_examples=1_000), 1050)
    assert (spec.num_steps, spec.eval_every) == (26, 10)   # 2560 / 100 -> 26 steps; 1000 -> 10


def test_tiny_cadence_is_at_least_one_step():
    spec = spec_lib.resolve(_config(eval_every=0, eval_every_epochs=0.01), 300)
    assert spec.eval_every == 1


def test_defaults_fill_and_spec_round_trips():
    c = ml_collections.ConfigDict({"seed": 0, "train": {"num_steps": 5, "batch_size": 8}})
    spec = spec_lib.resolve(c, 64)
    declared = defaults.train()
    assert spec.ensemble_size == declared.ensemble_size and spec.precision == declared.precision
    assert spec.eval_batch_size == declared.eval_batch_size
    assert spec_lib.RunSpec.from_json(spec.to_json()) == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_steps = 7


@pytest.mark.parametrize("train, n, match", [
    ({"num_epochs": 0}, 1000, "give the run's length as exactly one of"),
    ({"num_steps": 10}, 1000, "exactly one of train.num_steps=10, train.num_epochs=3"),
    ({}, 50, "exceeds the 50 training examples"),
    ({"eval_every": 0, "eval_every_epochs": -1.0}, 1000, "eval_every_epochs=-1.0"),
    ({"eval_every_epochs": 1.0}, 1000, "validation cadence as exactly one of"),
    ({"precision": "float16"}, 1000, "precision='float16'"),
    ({"ensemble_size": 0}, 1000, "ensemble_size=0"),
])
def test_bad_durations_and_fields_are_refused(train, n, match):
    with pytest.raises(ValueError, match=match):
        spec_lib.resolve(_config(**train), n)


def test_undeclared_fields_are_refused_naming_them():
    c = _config()
    with c.train.unlocked():
        c.train.num_epoch = 4                          # a typo: never silently ignored
    with pytest.raises(ValueError, match=r"config\.train\.num_epoch: not a declared field"):
        spec_lib.resolve(c, 1000)
    c = _config()
    c.data = ml_collections.ConfigDict({"name": "top_tagging", "train_fractoin": 0.5})
    with pytest.raises(ValueError, match=r"config\.data\.train_fractoin: not a declared field"):
        spec_lib.complete(c)


def test_complete_is_idempotent_and_keeps_given_fields():
    c = _config()
    c.data = ml_collections.ConfigDict({"name": "top_tagging", "n_jets": 123})
    once = spec_lib.complete(c)
    assert once.data.n_jets == 123 and once.data.max_particles == defaults.top_tagging_data().max_particles
    assert spec_lib.complete(once).to_json() == once.to_json()
    assert "max_particles" not in c.data               # the caller's config is not completed in place


def test_flat_decay_follows_the_resolved_epochs():
    """weaver's flat+decay reads the epoch length from the spec, not a copy in the config."""
    from hepjax import optim
    spec = spec_lib.resolve(_config(num_epochs=10), 1050)        # 10 epochs of 10 steps
    schedule = optim.make_schedule({"name": "flat_decay"}, 1.0, total_steps=spec.num_steps,
                                   steps_per_epoch=spec.steps_per_epoch)
    assert float(schedule(69)) == 1.0 and float(schedule(70)) == pytest.approx(0.01 ** (1 / 3))
    assert float(schedule(99)) == pytest.approx(0.01)
