import numpy as np
import pytest

from hepjax.data import pipeline
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


def _ragged(n=40, slots=16, seed=0):
    lengths = np.random.default_rng(seed).integers(0, slots + 1, n)
    mask = np.arange(slots)[None, :] < lengths[:, None]
    feats = np.where(mask[..., None], np.random.default_rng(seed + 1).normal(size=(n, slots, 3)), 0)
    return {"features": feats.astype(np.float32), "mask": mask, "jet": np.arange(n, dtype=np.float32),
            "label": np.arange(n) % 2}, lengths


def test_bucket_length_is_the_smallest_bucket_holding_the_longest_row():
    mask = np.zeros((3, 16), bool)
    mask[0, :5], mask[1, [2, 9]] = True, True               # a gap: the last real entry counts
    assert pipeline.bucket_length(mask, (4, 8, 12)) == 12    # longest = 10
    assert pipeline.bucket_length(mask[:1], (4, 8, 12)) == 8
    assert pipeline.bucket_length(mask, (4, 8)) == 16        # no bucket holds it: the full length
    assert pipeline.bucket_length(np.zeros((2, 16), bool), (4, 8)) == 4
    for bad in ((8, 4), (0, 4), (4, 4)):
        with pytest.raises(ValueError, match="strictly increasing positive"):
            pipeline.check_buckets(bad)


def test_bucketed_batches_are_the_full_batches_cut():
    arrays, lengths = _ragged()
    full = pipeline.TrainBatches(arrays, 8, seed=5)
    cut = pipeline.TrainBatches(arrays, 8, seed=5, buckets=(4, 8, 12))
    seen = set()
    for step in range(3 * full.steps_per_epoch):
        a, b = full.batch(step), cut.batch(step)
        n = b["mask"].shape[1]
        seen.add(n)
        longest = int(lengths[a["jet"].astype(int)].max())
        assert n == min((k for k in (4, 8, 12, 16) if k >= longest))
        assert not a["mask"][:, n:].any()                    # nothing real is cut off
        np.testing.assert_array_equal(b["features"], a["features"][:, :n])
        np.testing.assert_array_equal(b["jet"], a["jet"])    # arrays not aligned with the mask kept
    assert len(seen) >= 2
    # processes slice the same global batch and cut it to the global batch's bucket
    parts = [pipeline.TrainBatches(arrays, 8, seed=5, shard=(i, 2), buckets=(4, 8, 12)).batch(3)
             for i in range(2)]
    np.testing.assert_array_equal(np.concatenate([p["features"] for p in parts]),
                                  cut.batch(3)["features"])
    evals = list(pipeline.eval_batches(arrays, 16, buckets=(4, 8, 12)))
    assert sum(n for _, n in evals) == 40
    for (batch, n_valid), start in zip(evals, range(0, 40, 16)):
        k = batch["mask"].shape[1]
        np.testing.assert_array_equal(batch["features"][:n_valid],
                                      arrays["features"][start:start + n_valid, :k])
        assert not arrays["mask"][start:start + n_valid, k:].any()


def test_length_sorted_windows_group_lengths_and_keep_every_example_once():
    arrays, lengths = _ragged(n=2000, slots=64, seed=2)
    buckets = (8, 16, 24, 32, 48, 64)
    plain = pipeline.TrainBatches(arrays, 20, seed=7, buckets=buckets)
    w1 = pipeline.TrainBatches(arrays, 20, seed=7, buckets=buckets, sort_window=1)
    w10 = pipeline.TrainBatches(arrays, 20, seed=7, buckets=buckets, sort_window=10)
    again = pipeline.TrainBatches(arrays, 20, seed=7, buckets=buckets, sort_window=10)
    steps = plain.steps_per_epoch
    for epoch in (0, 1):
        ids = {name: [b.batch(epoch * steps + s)["jet"].astype(int) for s in range(steps)]
               for name, b in (("plain", plain), ("w1", w1), ("w10", w10))}
        # each training example exactly once per epoch, in every mode
        for name in ids:
            seen = np.concatenate(ids[name])
            assert len(seen) == len(set(seen.tolist())) == steps * 20
        # W = 1: the same batches (as sets), only their order shuffled
        assert sorted(map(tuple, ids["plain"])) == sorted(map(tuple, ids["w1"]))
        assert [tuple(b) for b in ids["plain"]] != [tuple(b) for b in ids["w1"]]
        # W = 10: batches of similar lengths, so much less padding
        spread = lambda batches: np.mean([np.ptp(lengths[b]) for b in batches])
        assert spread(ids["w10"]) < 0.25 * spread(ids["plain"])
        pad = lambda b: np.mean([b.batch(epoch * steps + s)["mask"].shape[1] for s in range(steps)])
        assert pad(w10) < 0.8 * pad(plain)
    # a pure function of (seed, step): any order of access, e.g. after a resume
    for step in (57, 3, steps + 4, 0):
        np.testing.assert_array_equal(again.batch(step)["features"], w10.batch(step)["features"])
    assert not np.array_equal(w10.batch(0)["jet"], w10.batch(steps)["jet"])   # reshuffled
    with pytest.raises(ValueError, match="needs length buckets"):
        pipeline.TrainBatches(arrays, 20, seed=7, sort_window=4)
