"""hepjax.kernels.dropout: the counter-hash fast form and the jax.random reference draw masks
with the same distribution (keep rate, one scale, unbiased, independent neighbours), the
reference is flax's nnx.Dropout bit for bit, and both pass gradients through the kept entries
only; the counter hash itself against statistical checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hepjax.kernels.dropout import counter_hash_bits, dropout


@pytest.mark.parametrize("form", ["fast", "reference"])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_mask_statistics(rate, form):
    x = jnp.ones((1001, 999), jnp.float32)
    y = np.asarray(getattr(dropout, form)(jax.random.key(3), rate, x))
    kept = y != 0
    scale = 2**32 / round((1 - rate) * 2**32) if form == "fast" else 1 / (1 - rate)
    np.testing.assert_allclose(y[kept], np.float32(scale), rtol=1e-7)  # one scale
    sigma = np.sqrt(rate * (1 - rate) / y.size)
    assert abs((1 - kept.mean()) - rate) < 5 * sigma
    assert abs(y.mean() - 1.0) < 5 * sigma * scale
    # neighbouring entries (along rows and along columns) are kept independently
    for a, b in ((kept[:, :-1], kept[:, 1:]), (kept[:-1], kept[1:])):
        p = (1 - rate) ** 2
        assert abs(np.mean(a & b) - p) < 5 * np.sqrt(p * (1 - p) / a.size)


def test_reference_is_nnx_dropout_and_gradients_follow_the_mask():
    x = jnp.arange(1.0, 3001.0).reshape(3, 1000)
    key = jax.random.key(7)
    np.testing.assert_array_equal(dropout.reference(key, 0.2, x),
                                  nnx.Dropout(0.2, rngs=nnx.Rngs(dropout=0))(x, rngs=key))
    for form in (dropout.fast, dropout.reference):
        y = form(key, 0.2, x)
        np.testing.assert_array_equal(y, form(key, 0.2, x))  # same key, same mask
        assert not np.array_equal(y, form(jax.random.key(8), 0.2, x))
        g = jax.grad(lambda x: jnp.sum(form(key, 0.2, x)))(x)
        np.testing.assert_array_equal(np.asarray(g) * np.asarray(x), np.asarray(y))


def test_counter_hash_bits_quality():
    n = 1 << 20
    bits = np.asarray(counter_hash_bits(jax.random.key(5), (n,)), np.uint64)
    # a bijection of the counter for a fixed key: no repeated word
    assert np.unique(bits).size == n
    # every bit position is fair
    freq = np.array([np.mean((bits >> k) & 1) for k in range(32)])
    assert np.max(np.abs(freq - 0.5)) < 5 * np.sqrt(0.25 / n)
    # uniform top byte (chi^2 with 255 degrees of freedom, 5 sigma ~ 370)
    counts = np.bincount((bits >> 24).astype(np.int64), minlength=256)
    assert np.sum((counts - n / 256) ** 2 / (n / 256)) < 370
    # no serial correlation, and another key gives an unrelated stream
    u = bits.astype(np.float64) / 2**32
    other = np.asarray(counter_hash_bits(jax.random.key(6), (n,)), np.float64) / 2**32
    for a, b in ((u[:-1], u[1:]), (u[:-2], u[2:]), (u, other)):
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(n)
    # the same key gives the same bits, shaped row-major
    again = np.asarray(counter_hash_bits(jax.random.key(5), (1024, 1024)), np.uint64)
    np.testing.assert_array_equal(again.reshape(-1), bits)
