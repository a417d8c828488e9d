"""hepjax.kernels.select_bins: the fast form (gradient written out as one scatter-add) equals
the reference (a where chain over the bins, differentiated by autodiff) in value bit for bit
and in gradient to float64 rounding, for tables of vectors and of matrices, and for inputs
below the first knot and above the last."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.kernels import select_bins


def _inputs(shape_p, batch=(40,), k=5, seed=0):
    rng = np.random.default_rng(seed)
    knots = np.sort(rng.normal(size=(k - 1,) + shape_p), axis=0)
    x = rng.normal(scale=1.5, size=batch + shape_p)
    sels = tuple(jnp.asarray(x >= knots[i]) for i in range(k - 1))
    tables = tuple([jnp.asarray(rng.normal(size=shape_p)) for _ in range(k)] for _ in range(3))
    weights = [jnp.asarray(rng.normal(size=batch + shape_p)) for _ in range(3)]
    return sels, tables, weights


@pytest.mark.parametrize("shape_p", [(6,), (3, 4)])
def test_fast_equals_reference_values_and_float64_gradients(shape_p):
    with jax.enable_x64(True):
        sels, tables, weights = _inputs(shape_p)
        # some entries below the first knot (bin 0) and above the last (bin k - 1)
        assert bool(jnp.any(~sels[0])) and bool(jnp.any(sels[-1]))

        def loss(form, tabs):
            outs = form(sels, tabs)
            return sum(jnp.sum(jnp.sin(o) * w) for o, w in zip(outs, weights))

        for a, b in zip(jax.jit(select_bins.fast)(sels, tables),
                        jax.jit(select_bins.reference)(sels, tables)):
            np.testing.assert_array_equal(a, b)
        g_fast = jax.grad(lambda t: loss(select_bins.fast, t))(tables)
        g_ref = jax.grad(lambda t: loss(select_bins.reference, t))(tables)
        for ta, tb in zip(g_fast, g_ref):
            for a, b in zip(ta, tb):
                assert a.dtype == jnp.float64
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        # each bin's gradient is the sum over the entries in that bin (explicitly)
        j = np.sum([np.asarray(s) for s in sels], axis=0)
        first = np.asarray(weights[0]) * np.cos(np.asarray(select_bins.reference(sels, tables)[0]))
        for i in range(len(tables[0])):
            np.testing.assert_allclose(g_fast[0][i], np.where(j == i, first, 0.0).sum(0),
                                       rtol=1e-12, atol=1e-12)
