"""hepjax.kernels.attention: the fast attention product and masked softmax against their
references, values and gradients in float64 (masks with empty rows, +-inf logits on masked
keys, dropout, the returned weights)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.kernels.attention import bmm, softmax_matmul


@pytest.mark.parametrize("shapes", [((3, 2, 7, 6), (3, 2, 6, 4)),    # weights @ v: wide a
                                    ((3, 2, 7, 4), (3, 2, 4, 6)),    # q @ k^T: wide cotangent
                                    ((1, 5, 5), (1, 5, 5))])         # square, one batch axis
def test_bmm_fast_equals_reference_float64(shapes):
    """The fast product's own backward layouts (both branches) give a @ b's gradients."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        a, b = (jnp.asarray(rng.normal(size=s)) for s in shapes)
        ct = jnp.asarray(rng.normal(size=shapes[0][:-1] + shapes[1][-1:]))
        np.testing.assert_allclose(bmm.fast(a, b), bmm.reference(a, b), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(bmm.reference(a, b), np.asarray(a) @ np.asarray(b), rtol=1e-12)
        grads = [jax.grad(lambda a, b: jnp.sum(f(a, b) * ct), argnums=(0, 1))(a, b)
                 for f in (bmm.fast, bmm.reference)]
        for g, r in zip(*grads):
            assert g.dtype == jnp.float64
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


def _problem(rng, masked):
    logits = rng.normal(size=(2, 3, 5, 6)) * 2
    value = rng.normal(size=(2, 3, 6, 4))
    if not masked:
        return jnp.asarray(logits), jnp.asarray(value), None
    mask = rng.random((2, 1, 5, 6)) < 0.6
    mask[0, :, 1, :] = False  # a row with no allowed key
    mask[1, :, 2, :] = False
    mask[1, :, 2, 0] = True   # a row with one
    logits[..., 0][~np.broadcast_to(mask[..., 0], logits.shape[:-1])] = np.inf
    logits[..., 5][~np.broadcast_to(mask[..., 5], logits.shape[:-1])] = -np.inf
    return jnp.asarray(logits), jnp.asarray(value), jnp.asarray(mask)


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("dropped", [False, True])
def test_softmax_matmul_fast_equals_reference_float64(masked, dropped):
    """Same outputs, weights and gradients (logits and value); masked keys may hold +-inf; a
    row without an allowed key gives zeros and zero gradients. Dropout here is a fixed
    elementwise mask times 1 / keep, applied to the weights once by either form."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1 + masked + 2 * dropped)
        logits, value, mask = _problem(rng, masked)
        keep = jnp.asarray(rng.random(logits.shape) < 0.7) / 0.7
        drop = (lambda w: w * keep) if dropped else None
        ct = jnp.asarray(rng.normal(size=(2, 3, 5, 4)))
        ct_w = jnp.asarray(rng.normal(size=logits.shape))
        results = {}
        for name in ("fast", "reference"):
            f = getattr(softmax_matmul, name)

            def loss(logits, value, f=f):
                out, weights = f(logits, value, mask, drop, return_weights=True)
                return jnp.sum(out * ct) + jnp.sum(weights * ct_w), (out, weights)

            (_, (out, weights)), grads = jax.value_and_grad(loss, argnums=(0, 1),
                                                            has_aux=True)(logits, value)
            np.testing.assert_array_equal(out, f(logits, value, mask, drop))
            results[name] = (out, weights) + grads
        for a, b in zip(results["fast"], results["reference"]):
            assert np.all(np.isfinite(a)) and a.dtype == jnp.float64
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        out, weights, dlogits, _ = results["fast"]
        if masked:
            full = np.broadcast_to(np.asarray(mask), weights.shape)
            assert np.all(np.asarray(weights)[~full] == 0) and np.all(np.asarray(out)[0, :, 1] == 0)
            assert np.all(np.asarray(dlogits)[0, :, 1] == 0)
        if not dropped:  # rows of weights sum to 1 (or 0 without an allowed key)
            sums = np.asarray(weights).sum(-1)
            np.testing.assert_allclose(sums[np.abs(sums) > 0.5], 1.0, rtol=1e-12)
