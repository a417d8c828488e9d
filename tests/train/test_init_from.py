"""Fine-tuning through the harness: ``train.init_from`` loads a pre-trained run's parameters
(the head re-initialised), ``train.freeze`` keeps parameters bit-identical, ``body_lr_scale``
scales the body's updates, and the fine-tuned run evaluates and resumes like any other."""
import json

import ml_collections
import numpy as np
import pytest

from hepjax.train import experiment, finetune

from .helpers import smoke_config

HEAD = r"^out/"


def _params(workdir, which="best"):
    """{path: array} of the run's best or newest periodic checkpoint."""
    return finetune.restore_params(workdir if which == "best" else workdir / "checkpoints")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pretrained")
    experiment.train(smoke_config(num_steps=20, eval_every=10, checkpoint_every=10), workdir,
                     progress=False)
    return workdir


def test_frozen_body_keeps_the_pretrained_parameters_and_the_head_trains(pretrained, tmp_path):
    before = _params(pretrained)
    body = [n for n in before if not n.startswith("out/")]
    assert body and any(n.startswith("out/") for n in before)
    config = smoke_config(num_steps=20, eval_every=10, checkpoint_every=10,
                          init_from=str(pretrained), freeze=tuple(f"^{n}$" for n in body))
    experiment.train(config, tmp_path, progress=False)
    after = _params(tmp_path, "latest")
    for name in body:                                  # loaded, then never updated
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert not np.array_equal(after["out/kernel"], before["out/kernel"])  # new head, trained
    info = json.loads((tmp_path / "init_from.json").read_text())
    assert info["reinitialised"] == ["out/bias", "out/kernel"] and set(info["loaded"]) == set(body)
    # the grouped optimiser restores for evaluation (its state has the groups' structure)
    assert 0.0 <= experiment.evaluate_run(tmp_path)["auc"] <= 1.0


def test_body_lr_scale_scales_the_body_updates(pretrained, tmp_path):
    """SGD: one step moves a body parameter by scale x the step of the unscaled run (same
    gradient: same loaded parameters, batch and head initialisation)."""
    before = _params(pretrained)
    moved = {}
    for scale in (1.0, 0.25):
        config = smoke_config(num_steps=1, eval_every=1, checkpoint_every=1,
                              init_from=str(pretrained), body_lr_scale=scale)
        config.optimizer = ml_collections.ConfigDict({"name": "sgd", "learning_rate": 0.1})
        experiment.train(config, tmp_path / f"s{scale}", progress=False)
        after = _params(tmp_path / f"s{scale}", "latest")
        moved[scale] = {n: after[n] - before[n] for n in before if not n.startswith("out/")}
        head = after["out/kernel"]
    for name, step in moved[1.0].items():
        assert np.abs(step).max() > 0, name
        np.testing.assert_allclose(moved[0.25][name], 0.25 * step, rtol=1e-4, atol=1e-7,
                                   err_msg=name)
    assert head.shape == before["out/kernel"].shape


def test_bad_init_from_and_pattern_errors(pretrained, tmp_path):
    with pytest.raises(Exception, match="nowhere"):
        experiment.train(smoke_config(num_steps=20, init_from=str(tmp_path / "nowhere")),
                         tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match=r"config.train.freeze: pattern '\^bogus/'"):
        experiment.train(smoke_config(num_steps=20, freeze=("^bogus/",)), tmp_path / "b",
                         progress=False)
    with pytest.raises(ValueError, match="body_lr_scale"):
        experiment.train(smoke_config(num_steps=20, body_lr_scale=0.0), tmp_path / "c",
                         progress=False)
