"""Length bucketing (hepjax.data.pipeline): the set and graph taggers give the same outputs on a
batch padded to two bucket sizes; training compiles once per bucket; a bucketed run resumed
after an interruption is bit-identical to an uninterrupted one."""
import json

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from hepjax import config as config_lib
from hepjax import rng
from hepjax.data import pipeline
from hepjax.models import model_fn_from_config
from hepjax.train import loop, tasks

from ..models.toyjets import random_particles
from .helpers import leaves_equal

CONFIG = "experiments/top_tagging/config.py"
SET_MODELS = ("pfn", "efn", "particlenet", "part", "lorentznet")


def _jets(b=16, n=32, seed=0):
    real = np.random.default_rng(seed).integers(3, 21, b)      # 3..20 real of 32 slots
    feats, mask, vecs = random_particles(b, n, 7, seed, n_real=real)[:3]
    feats = np.where(mask[..., None], feats, 0.0).astype(np.float32)
    vecs = np.where(mask[..., None], vecs, 0.0).astype(np.float32)
    return {"features": feats, "mask": mask, "vectors": vecs}


@pytest.mark.parametrize("name", SET_MODELS)
def test_set_and_graph_taggers_ignore_the_bucket_size(name):
    """Eval-mode logits of one batch padded to 32 and cut to its bucket (24): equal to float
    round-off (a model that let padding in would differ at O(1))."""
    cfg = config_lib.load_config(f"{CONFIG}:{name},smoke").model
    batch = _jets()
    model = model_fn_from_config(cfg, batch["features"].shape[1:], 1)(nnx.Rngs(0, dropout=1))
    model.eval()
    cut = pipeline.bucketed(batch, (8, 16, 24, 32))
    assert cut["features"].shape[1] == 24 and cut["mask"].shape == (16, 24)
    full = np.asarray(tasks.apply_model(model, batch))
    short = np.asarray(tasks.apply_model(model, cut))
    assert np.all(np.isfinite(full))
    np.testing.assert_allclose(short, full, rtol=2e-4, atol=2e-5 * np.abs(full).max())


def _train(tmp_path, steps, data, traces, buckets=(8, 16, 24), sort_window=0):
    config = config_lib.load_config("hepjax.configs.dijet_mlp:smoke")
    config.train.update(num_steps=steps, batch_size=8, log_every=5, eval_every=5,
                        checkpoint_every=5, length_buckets=buckets, length_sort_window=sort_window)
    config.train.early_stopping.patience = 1000
    base = tasks.binary_classification()

    def loss_fn(model, batch, key):
        traces.append(batch["features"].shape[:2])    # runs once per compilation (trace)
        return base.loss_fn(model, batch, key)

    task = base._replace(loss_fn=loss_fn)
    model_fn = model_fn_from_config(config_lib.load_config(f"{CONFIG}:pfn,smoke").model,
                                    data["features"].shape[1:], 1)
    return loop.fit(config, tmp_path, task=task, model_fn=model_fn, optimizer=optax.adam(1e-3),
                    train_data=data, val_data=data, progress=False)


@pytest.mark.parametrize("sort_window", [0, 3])
def test_one_compilation_per_bucket_and_bit_identical_resume(tmp_path, sort_window):
    data = _jets(b=64, n=32, seed=3)
    data["label"] = (np.arange(64) % 2).astype(np.float32)
    traces = []
    run = _train(tmp_path / "a", 20, data, traces, sort_window=sort_window)
    lengths = [r for r in map(json.loads, (tmp_path / "a" / "metrics.jsonl").read_text().splitlines())
               if r["split"] == "buckets"][0]["train_lengths"]
    assert set(lengths) <= {8, 16, 24, 32} and len(lengths) >= 2   # several buckets met
    assert len(traces) == len(set(traces))                          # one trace per shape ...
    assert sorted(n for b, n in traces if b == 8) == sorted(lengths)  # ... and per training bucket

    # interrupted after step 10 (its checkpoint), resumed: bit-identical to the straight run
    _train(tmp_path / "b", 10, data, [], sort_window=sort_window)
    resumed = _train(tmp_path / "b", 20, data, [], sort_window=sort_window)
    assert leaves_equal(resumed.state.params, run.state.params)
