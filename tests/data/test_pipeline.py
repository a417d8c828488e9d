import numpy as np
import pytest

from hepjax.data.pipeline import TrainBatches, eval_batches


def _arrays(n=103):
    return {"features": np.arange(n * 2, dtype=np.float32).reshape(n, 2), "label": np.arange(n) % 2}


def test_batches_are_a_pure_function_of_the_step():
    a, b = TrainBatches(_arrays(), 10, seed=3), TrainBatches(_arrays(), 10, seed=3)
    for step in (0, 5, 11, 10, 37):  # any order, e.g. after a resume
        assert all(np.array_equal(a.batch(step)[k], b.batch(step)[k]) for k in ("features", "label"))
    epoch = np.concatenate([a.batch(s)["label"] * 0 + a.batch(s)["features"][:, 0] / 2
                            for s in range(a.steps_per_epoch)])
    assert len(set(epoch.tolist())) == 100  # one epoch: each example at most once
    assert not np.array_equal(a.batch(0)["features"], a.batch(10)["features"])  # reshuffled


def test_process_shards_partition_the_global_batch():
    whole = TrainBatches(_arrays(), 12, seed=0).batch(4)["features"][:, 0]
    parts = [TrainBatches(_arrays(), 12, seed=0, shard=(i, 3)).batch(4)["features"][:, 0] for i in range(3)]
    assert np.concatenate(parts).tolist() == whole.tolist()  # same rows, same order


def test_eval_batches_pad_with_zero_weight():
    seen = []
    for batch, n in eval_batches(_arrays(), 25):
        assert batch["features"].shape == (25, 2)
        assert batch["weight"][:n].sum() == n and batch["weight"][n:].sum() == 0
        seen.extend(batch["label"][:n].tolist())
    assert len(seen) == 103


def test_bad_data_is_named():
    bad = _arrays()
    bad["features"][7, 1] = np.nan
    with pytest.raises(ValueError, match="'features' has NaN/Inf values in 1 of 103 rows"):
        TrainBatches(bad, 10, seed=0)
    with pytest.raises(ValueError, match="different numbers of examples"):
        TrainBatches({"features": np.zeros((5, 2)), "label": np.zeros(4)}, 2, seed=0)
