"""hepjax.kernels.matmul: dense_matmul and edge_matmul (fast forms with their own backward
layouts) against the plain product: values, gradients (float64), finite differences and second
order."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.kernels.matmul import dense_matmul, edge_matmul


@pytest.mark.parametrize("kernel", [dense_matmul, edge_matmul], ids=["dense", "edge"])
@pytest.mark.parametrize("shape", [(5,), (4, 5), (3, 4, 5), (2, 3, 4, 5)])
def test_fast_equals_reference_values_and_gradients_float64(kernel, shape):
    with jax.enable_x64(True):
        rng = np.random.default_rng(len(shape))
        x = jnp.asarray(rng.normal(size=shape))
        w = jnp.asarray(rng.normal(size=(5, 6)))
        out = kernel.fast(x, w)
        assert out.shape == shape[:-1] + (6,) and out.dtype == jnp.float64
        np.testing.assert_allclose(out, kernel.reference(x, w), rtol=1e-12)
        np.testing.assert_allclose(kernel.reference(x, w), np.asarray(x) @ np.asarray(w),
                                   rtol=1e-12)
        cot = jnp.asarray(rng.normal(size=out.shape))
        grads = [jax.grad(lambda a, b: jnp.sum(f(a, b) * cot), argnums=(0, 1))(x, w)
                 for f in (kernel.fast, kernel.reference)]
        for g, r in zip(*grads):
            np.testing.assert_allclose(g, r, rtol=1e-12)


def test_edge_matmul_fast_finite_differences_and_second_order():
    rng = np.random.default_rng(3)
    h = jnp.asarray(rng.normal(size=(2, 5, 3, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(2, 5, 3, 6)), jnp.float32)
    loss = lambda f: (lambda h, w: jnp.sum(jnp.sin(f(h, w)) * g))  # noqa: E731
    dw = jax.jit(jax.grad(loss(edge_matmul.fast), argnums=1))(h, w)
    # central finite differences in float64 numpy along a random direction of w
    hn, wn, gn = (np.asarray(a, np.float64) for a in (h, w, g))
    v = rng.normal(size=wn.shape)
    f = lambda ww: np.sum(np.sin(hn @ ww) * gn)  # noqa: E731
    fd = (f(wn + 1e-6 * v) - f(wn - 1e-6 * v)) / 2e-6
    np.testing.assert_allclose(np.sum(np.asarray(dw) * v), fd, rtol=1e-4)
    # second order: grad of grad still works (the custom backward is differentiable)
    hv, hr = (jax.grad(lambda w: jnp.sum(jax.grad(loss(k), argnums=1)(h, w) ** 2))(w)
              for k in (edge_matmul.fast, edge_matmul.reference))
    np.testing.assert_allclose(hv, hr, rtol=1e-4, atol=1e-4)
