"""hepjax.kernels.batchnorm: batch_norm_gelu's hand-written VJP against autodiff of its
reference (float64: values, statistics, gradients), and the reference against the closed form."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.kernels.batchnorm import batch_norm_gelu


@pytest.mark.parametrize("masked", [True, False])
def test_batch_norm_gelu_fast_equals_reference_float64(masked):
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(3, 7, 5)) * 2 + 1)
        mask = jnp.asarray(rng.random((3, 7)) < 0.7) if masked else None
        full = jnp.ones((3, 7), bool) if mask is None else mask
        scale, bias = jnp.asarray(rng.normal(size=5)), jnp.asarray(rng.normal(size=5))
        dy = jnp.asarray(rng.normal(size=(3, 7, 5)))

        def closed_form(x, s, b):
            w = full.astype(x.dtype)[..., None]
            n = w.sum()
            mean = (w * x).sum((0, 1)) / n
            var = (w * (x - mean) ** 2).sum((0, 1)) / n
            u = (x - mean) / jnp.sqrt(var + 1e-5) * s + b
            y = 0.5 * u * (1 + jax.scipy.special.erf(u / np.sqrt(2)))
            return jnp.where(full[..., None], y, 0), mean, var

        forms = {name: (lambda x, s, b, f=getattr(batch_norm_gelu, name):
                        f(x, mask, s, b, 1e-5, (0, 1)))
                 for name in ("fast", "reference")}
        want = closed_form(x, scale, bias)
        for name, f in forms.items():
            for a, b in zip(f(x, scale, bias), want):
                np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14, err_msg=name)
        # gradients of y (the statistics carry none)
        grads = [jax.vjp(lambda *a, f=f: f(*a)[0], x, scale, bias)[1](dy)
                 for f in forms.values()]
        for g, r in zip(*grads):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)
        ref = jax.vjp(lambda *a: closed_form(*a)[0], x, scale, bias)[1](dy)
        for g, r in zip(grads[1], ref):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)
        stats_grad = jax.grad(lambda x: jnp.sum(forms["reference"](x, scale, bias)[1]))(x)
        assert np.all(np.asarray(stats_grad) == 0)
