"""Segment ops against numpy loops; masks; empty segments; gradients finite."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.graphs import segment

RNG = np.random.default_rng(0)
E, S = 40, 7
DATA = RNG.normal(size=(E, 3)).astype(np.float32)
IDS = RNG.integers(0, S - 1, size=E)  # segment S-1 stays empty
MASK = RNG.random(E) > 0.3


def _np_reduce(op, data, ids, mask):
    out = np.zeros((S,) + data.shape[1:], np.float32)
    for s in range(S):
        rows = data[(ids == s) & mask]
        if len(rows):
            out[s] = op(rows, axis=0)
    return out


@pytest.mark.parametrize("name,op", [("segment_sum", np.sum), ("segment_mean", np.mean),
                                     ("segment_max", np.max), ("segment_min", np.min)])
@pytest.mark.parametrize("use_mask", [False, True])
def test_segment_reductions_match_numpy(name, op, use_mask):
    mask = MASK if use_mask else np.ones(E, bool)
    fn = getattr(segment, name)
    got = jax.jit(fn, static_argnums=2)(DATA, IDS, S, jnp.asarray(mask) if use_mask else None)
    np.testing.assert_allclose(got, _np_reduce(op, DATA, IDS, mask), rtol=1e-5, atol=1e-6)
    assert np.all(got[S - 1] == 0)  # empty segment -> 0, never -inf


def test_segment_softmax_matches_numpy_and_ignores_masked():
    logits = DATA[:, 0] * 5
    got = np.asarray(segment.segment_softmax(logits, IDS, S, MASK))
    ref = np.zeros(E, np.float32)
    for s in range(S):
        sel = (IDS == s) & MASK
        if sel.any():
            ex = np.exp(logits[sel] - logits[sel].max())
            ref[sel] = ex / ex.sum()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
    assert np.all(got[~MASK] == 0)
    # changing masked logits (even to huge values) changes nothing
    poisoned = np.where(MASK, logits, 1e30).astype(np.float32)
    np.testing.assert_allclose(segment.segment_softmax(poisoned, IDS, S, MASK), got, rtol=1e-6)


def test_segment_gradients_finite_with_empty_segments():
    def f(d):
        return (segment.segment_max(d, IDS, S, jnp.asarray(MASK)).sum()
                + segment.segment_softmax(d[:, 0], IDS, S, jnp.asarray(MASK)).sum()
                + segment.segment_mean(d, IDS, S).sum())
    g = jax.grad(f)(jnp.asarray(DATA))
    assert np.all(np.isfinite(g))
    # finite difference on the mean/sum part only (max is piecewise linear)
    h = lambda d: segment.segment_mean(d, IDS, S, jnp.asarray(MASK)).sum()  # noqa: E731
    gd = np.asarray(jax.grad(h)(jnp.asarray(DATA)))
    counts = np.bincount(IDS[MASK], minlength=S)
    expect = np.where(MASK, 1.0 / np.maximum(counts[IDS], 1), 0.0)[:, None] * np.ones((1, 3))
    np.testing.assert_allclose(gd, expect, rtol=1e-6)


def test_num_segments_must_be_static_and_shapes_checked():
    with pytest.raises(TypeError, match="num_segments"):
        segment.segment_sum(DATA, IDS, np.int64(S))
    with pytest.raises(ValueError, match="segment_ids"):
        segment.segment_sum(DATA, IDS[:-1], S)
