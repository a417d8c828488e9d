"""hepjax.kernels.rowwise: the tiled BatchNorm + GELU MLP (fast form) against autodiff of its
layer-by-layer reference (float64): values, batch statistics, every gradient; both eval forms
against the closed form; the reference against the test's own layer-by-layer form."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.kernels.rowwise import bn_gelu_mlp as _bn_gelu_mlp
from hepjax.kernels.rowwise import bn_gelu_mlp_eval, tile_shape
from hepjax.nn.activations import gelu

bn_gelu_mlp = _bn_gelu_mlp.fast  # the tiled form, whatever HEPJAX_KERNELS says
reference = _bn_gelu_mlp.reference

DIMS = [4, 16, 16, 8]


def _reference(x, mask, kernels, scales, biases, eps=1e-5):
    """Layer by layer, statistics over the masked rows, two-pass variance."""
    h = jnp.where(mask[:, None], x, 0.0)
    w = mask.astype(x.dtype)[:, None]
    n = jnp.sum(w)
    means, variances = [], []
    for k, s, b in zip(kernels, scales, biases):
        z = h @ k
        mu = jnp.sum(w * z, 0) / n
        var = jnp.sum(w * (z - mu) ** 2, 0) / n
        h = jnp.where(mask[:, None], gelu((z - mu) / jnp.sqrt(var + eps) * s + b), 0.0)
        means.append(mu), variances.append(var)
    return h, means, variances


def _problem(rows, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, DIMS[0])) * 3 + 1
    mask = rng.random(rows) < 0.8
    x[~mask] = 1e3  # whatever padded rows hold must not matter
    kernels = [jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a)) for a, b in zip(DIMS, DIMS[1:])]
    scales = [jnp.asarray(rng.normal(size=b) * 0.5 + 1) for b in DIMS[1:]]
    biases = [jnp.asarray(rng.normal(size=b) * 0.3) for b in DIMS[1:]]
    return jnp.asarray(x), jnp.asarray(mask), kernels, scales, biases, rng


def test_tile_shape_covers_rows_evenly():
    assert tile_shape(1000, 4096) == (1, 1000)
    assert tile_shape(8192, 4096) == (2, 4096)
    tiles, size = tile_shape(1003, 100)
    assert tiles * size >= 1003 and tiles * size - 1003 < tiles and size <= 100
    with pytest.raises(ValueError, match="tile_rows"):
        tile_shape(10, 0)


@pytest.mark.parametrize("tile_rows,parts,channels_first,depth", [
    (64, 1, False, 3), (100, 2, False, 3), (4096, 1, False, 3), (37, 3, False, 3),
    (64, 1, True, 3), (100, 2, True, 3), (37, 3, True, 1)])
def test_bn_gelu_mlp_matches_layer_by_layer_autodiff_float64(tile_rows, parts, channels_first,
                                                            depth):
    """channels_first=True returns y.T and takes its cotangent so (last layer channel-major)."""
    with jax.enable_x64(True):
        x, mask, kernels, scales, biases, rng = _problem(1003)
        kernels, scales, biases = kernels[:depth], scales[:depth], biases[:depth]

        def tiled(*a):
            y, means, variances = bn_gelu_mlp(a[0], mask, *a[1:], 1e-5, tile_rows, parts,
                                              channels_first=channels_first)
            return (y.T if channels_first else y), means, variances
        if channels_first:
            assert bn_gelu_mlp(x, mask, kernels, scales, biases, 1e-5, tile_rows, parts,
                               channels_first=True)[0].shape == (DIMS[depth], 1003)
        y, means, variances = tiled(x, kernels, scales, biases)
        y_ref, means_ref, var_ref = reference(x, mask, kernels, scales, biases)
        np.testing.assert_allclose(y_ref, _reference(x, mask, kernels, scales, biases)[0],
                                   rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-12)
        assert np.all(np.asarray(y)[~np.asarray(mask)] == 0)
        for a, b in zip(list(means) + list(variances), list(means_ref) + list(var_ref)):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)

        ct = jnp.asarray(rng.normal(size=y.shape))

        def loss(fn):
            return lambda x, k, s, b: jnp.sum(fn(x, k, s, b) * ct)

        ours = jax.grad(loss(lambda *a: tiled(*a)[0]), argnums=(0, 1, 2, 3))
        ref = jax.grad(loss(lambda *a: reference(a[0], mask, *a[1:])[0]), argnums=(0, 1, 2, 3))
        g, g_ref = ours(x, kernels, scales, biases), ref(x, kernels, scales, biases)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)
        assert np.all(np.asarray(g[0])[~np.asarray(mask)] == 0)


def test_bn_gelu_mlp_jit_float32_close_to_float64():
    x, mask, kernels, scales, biases, _ = _problem(5000, seed=1)
    y32 = jax.jit(lambda x: bn_gelu_mlp(x, mask, [k.astype(jnp.float32) for k in kernels],
                                        [s.astype(jnp.float32) for s in scales],
                                        [b.astype(jnp.float32) for b in biases],
                                        tile_rows=512)[0])(x.astype(jnp.float32))
    with jax.enable_x64(True):
        ref = _reference(jnp.asarray(np.asarray(x), jnp.float64), mask,
                         [jnp.asarray(np.asarray(k), jnp.float64) for k in kernels],
                         [jnp.asarray(np.asarray(s), jnp.float64) for s in scales],
                         [jnp.asarray(np.asarray(b), jnp.float64) for b in biases])[0]
    assert y32.dtype == jnp.float32
    np.testing.assert_allclose(y32, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("form", ["fast", "reference"])
@pytest.mark.parametrize("channels_first", [False, True])
def test_bn_gelu_mlp_eval_matches_closed_form(channels_first, form):
    with jax.enable_x64(True):
        x, mask, kernels, scales, biases, rng = _problem(777, seed=2)
        shifts = [jnp.asarray(rng.normal(size=b)) for b in DIMS[1:]]
        means = [jnp.asarray(rng.normal(size=b)) for b in DIMS[1:]]
        variances = [jnp.asarray(rng.uniform(0.5, 2.0, size=b)) for b in DIMS[1:]]
        y = getattr(bn_gelu_mlp_eval, form)(x, mask, kernels, shifts, means, variances, scales,
                                            biases, tile_rows=100, channels_first=channels_first)
        if channels_first:
            assert y.shape == (DIMS[-1], 777)
            y = y.T
        h = x
        for k, t, mu, v, s, b in zip(kernels, shifts, means, variances, scales, biases):
            h = gelu((h @ k + t - mu) / jnp.sqrt(v + 1e-5) * s + b)
        np.testing.assert_allclose(y, jnp.where(mask[:, None], h, 0.0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", [bn_gelu_mlp, reference])
def test_bn_gelu_mlp_errors_name_the_shapes(form):
    x, mask, kernels, scales, biases, _ = _problem(10)
    with pytest.raises(ValueError, match=r"mask \(R,\).*\(9,\)"):
        form(x, mask[:9], kernels, scales, biases)
    with pytest.raises(ValueError, match="as many kernels"):
        form(x, mask, kernels, scales[:2], biases)


def test_bn_gelu_mlp_bfloat16_keeps_float32_statistics_and_gradients_near_float32():
    """bf16 activations (mixed precision): outputs and gradients stay bf16 (the dtypes of the
    primals), the returned batch statistics are float32 (accumulated in float32 across the tiles;
    the running averages are stored in float32), and everything follows the float32
    computation as closely as the plain layer-by-layer form computed in bf16 does."""
    x, mask, kernels, scales, biases, rng = _problem(20000, seed=3)
    ct = jnp.asarray(rng.normal(size=(20000, DIMS[-1])), jnp.float32)

    def run(dtype):
        cast = [[a.astype(dtype) for a in group] for group in (kernels, scales, biases)]

        def loss(x, ks, ss, bs):
            y, means, variances = bn_gelu_mlp(x, mask, ks, ss, bs, tile_rows=512)
            return jnp.sum(y.astype(jnp.float32) * ct), (y, means, variances)

        (_, aux), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(
            x.astype(dtype), *cast)
        return aux, grads

    (y32, m32, v32), g32 = run(jnp.float32)
    (y16, m16, v16), g16 = run(jnp.bfloat16)
    assert y16.dtype == jnp.bfloat16
    assert all(m.dtype == jnp.float32 and v.dtype == jnp.float32 for m, v in zip(m16, v16))
    assert all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(g16))
    for a, b in zip(m16 + v16, m32 + v32):  # statistics of bf16-rounded inputs: ~1 %
        np.testing.assert_allclose(a, b, rtol=3e-2, atol=3e-2 * float(jnp.abs(b).max()))
    # as close to float32 as the plain layer-by-layer form computed in bf16 is
    plain = _reference(x.astype(jnp.bfloat16), mask,
                       *[[a.astype(jnp.bfloat16) for a in g] for g in (kernels, scales, biases)])[0]

    def errors(y):
        e = np.abs(np.asarray(y, np.float32) - np.asarray(y32))
        return np.array([e.mean(), np.quantile(e, 0.999), e.max()])
    assert np.all(errors(y16) < 1.5 * errors(plain)), (errors(y16), errors(plain))
    assert errors(y16)[0] < 1e-2
    for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
        a = np.asarray(a, np.float32)
        assert np.abs(a - b).max() < 0.05 * np.abs(b).max() + 1e-3, (np.abs(a - b).max(),
                                                                     np.abs(b).max())
