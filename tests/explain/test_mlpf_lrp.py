"""hepjax.explain.mlpf on a small random MLPF (LSH/principal-axis bins, with and without the
shifted second binning and the physics (link) inputs), float64: the LRP forward gives the
model's logits, input plus bias relevance equals the explained logit (eps -> 0), relevance
stays on real elements and only reaches elements that share a bin with the explained one (one
graph layer)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

mlpf_lib = pytest.importorskip("hepjax.models.mlpf")

from hepjax.explain import lrp  # noqa: E402
from hepjax.explain import mlpf as explain_mlpf  # noqa: E402


@pytest.fixture(scope="module")
def x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def _model(seed, **kw):
    model = mlpf_lib.MLPF(rngs=nnx.Rngs(seed), **kw)
    rng = np.random.default_rng(seed)
    graphdef, state = nnx.split(model)

    def leaf(path, a):  # float64, biases random (so that they absorb relevance)
        if not jnp.issubdtype(a.dtype, jnp.floating):
            return a
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        a = np.asarray(a, np.float64)
        if "bias" in names:
            a = a + 0.2 * rng.normal(size=a.shape)
        return jnp.asarray(a)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(leaf, state))


def _events(b=2, n=16, seed=0, links=False):
    """Random elements; ``links``: with the 8 (positive) hepjax.pf.links columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, n, mlpf_lib.N_FEATURES + links * mlpf_lib.N_LINK))
    x[..., 0] = rng.integers(1, 4, (b, n))
    x[..., 1] = rng.uniform(0.5, 20, (b, n))
    x[..., 5] = x[..., 1] * rng.uniform(1, 3, (b, n))
    x[..., 13] = rng.integers(0, 5, (b, n))
    x[..., mlpf_lib.N_FEATURES:] = np.abs(x[..., mlpf_lib.N_FEATURES:]) * 5
    mask = np.arange(n)[None] < np.array([n, n - 3])[:, None]
    return jnp.asarray(x), jnp.asarray(mask)


def test_mlpf_lrp_matches_model_and_conserves(x64):
    # shift=True: the main binning and the shifted second one (partial, scattered back);
    # physics_inputs: the link columns enter through the (kept) input layer
    model = _model(1, width=8, num_layers=2, dist_dim=3, bin_size=4, shift=True,
                   physics_inputs=True)
    x, mask = _events(links=True)
    element, cls = jnp.asarray([3, 5]), 2
    rule = lrp.epsilon(1e-12)

    def run(x, mask):
        logits, _ = model(x, mask)
        y, r = explain_mlpf.explain_element(model, x, mask, element, cls, rule=rule)
        rb = explain_mlpf.bias_relevance(model, x, mask, element, cls, rule=rule)
        return logits, y, r, rb

    logits, y, r, rb = jax.jit(run)(x, mask)
    np.testing.assert_allclose(np.asarray(y), np.asarray(logits[jnp.arange(2), element, cls]),
                               rtol=1e-9)
    np.testing.assert_allclose(np.asarray(jnp.sum(r, 1) + rb), np.asarray(y), rtol=1e-7,
                               atol=1e-9)
    assert np.min(np.abs(np.asarray(rb))) > 1e-4
    assert float(jnp.max(jnp.abs(jnp.where(mask, 0.0, r)))) == 0.0


def test_one_layer_relevance_stays_in_the_bin(x64):
    model = _model(2, width=8, num_layers=1, dist_dim=3, bin_size=4)
    x, mask = _events(seed=3)
    element = jnp.asarray([6, 2])

    def run(x, mask):
        _, r = explain_mlpf.explain_element(model, x, mask, element, 1, rule=lrp.epsilon(1e-9))
        # the bins of the one graph layer, as the model forms them
        e = model.embed2(jax.nn.gelu(model.embed1(mlpf_lib.inputs(x))))
        e = jnp.where(mask[..., None], e, 0.0)
        coords = model.layers[0].distance(e)
        return r, jax.vmap(lambda c, m: mlpf_lib.bin_permutation(c, m, 4))(coords, mask)

    r, perms = jax.jit(run)(x, mask)
    for b in range(2):
        perm = np.asarray(perms[b]).reshape(-1, 4)
        same = perm[(perm == int(element[b])).any(1)][0]
        outside = np.setdiff1d(np.arange(16), same)
        assert np.abs(np.asarray(r[b])[outside]).max() == 0.0
        assert np.abs(np.asarray(r[b])[same]).max() > 0.0
        assert (np.abs(np.asarray(r[b])[same]) > 0).sum() >= 2  # neighbours get some
