"""hepjax.explain.taggers on small ParticleNet and ParT models with random (non-zero) biases
and BatchNorm statistics, in float64: the LRP forward reproduces the model's logits, and input
relevance plus the relevance absorbed by the biases equals the explained output (eps -> 0);
padded constituents get none."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hepjax.explain import lrp, taggers
from hepjax.models.part import ParticleTransformer
from hepjax.models.particlenet import ParticleNet

B, N, F = 3, 9, 7


@pytest.fixture(scope="module")
def x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def _randomise(model, seed):
    """float64 copy of the eval-mode model with every bias, shift and running statistic random."""
    rng = np.random.default_rng(seed)

    def leaf(path, a):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            return a
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        name = [n for n in names if n not in ("value", "raw_value")][-1]
        a = np.asarray(a, np.float64)
        if name in ("bias", "mean", "cls_token"):
            a = a + 0.3 * rng.normal(size=a.shape)
        elif name in ("var", "scale"):
            a = a * rng.uniform(0.5, 1.5, a.shape)
        return jnp.asarray(a)

    graphdef, state = nnx.split(model)
    model = nnx.merge(graphdef, jax.tree_util.tree_map_with_path(leaf, state))
    model.eval()
    return model


def _jets(seed=0):
    rng = np.random.default_rng(seed)
    mask = np.arange(N)[None] < np.array([N, 6, 5])[:, None]
    pt = rng.uniform(1, 50, (B, N))
    eta, phi = rng.normal(0, 0.3, (B, N)), rng.normal(0, 0.3, (B, N))
    vec = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    feats = np.concatenate([eta[..., None], phi[..., None], rng.normal(size=(B, N, F - 2))], -1)
    # padded entries hold junk: they must not matter
    feats = np.where(mask[..., None], feats, 7.0)
    return jnp.asarray(feats), jnp.asarray(mask), jnp.asarray(vec)


def _check(model, feats, mask, vec):
    """One compilation: logits of the model itself, then LRP output, relevance, bias part."""
    rule = lrp.epsilon(1e-12)

    def run(f, m, v):
        y, r = taggers.explain_jets(model, f, m, v, rule=rule)
        return model(f, m, v), y, r, taggers.bias_relevance(model, f, m, v, rule=rule)

    ref, y, r, rb = jax.jit(run)(feats, mask, vec)
    # the LRP forward is the model: z_1 - z_0 of its own logits
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref[:, 1] - ref[:, 0]), rtol=1e-9)
    total = np.asarray(jnp.sum(r, (1, 2)) + rb)
    np.testing.assert_allclose(total, np.asarray(y), rtol=1e-7, atol=1e-9)
    # the biases really absorb something here (so the check above is not vacuous)
    assert np.min(np.abs(np.asarray(rb))) > 1e-4
    assert float(jnp.max(jnp.abs(jnp.where(mask[..., None], 0.0, r)))) == 0.0
    # jet 3 is jet 1 with its real constituents permuted: relevance permutes with them
    np.testing.assert_allclose(np.asarray(r[3][:5]), np.asarray(r[1][PERM]), rtol=1e-8,
                               atol=1e-10)
    return r


PERM = np.asarray([4, 0, 3, 1, 2])


def _with_permuted(feats, mask, vec):
    perm = np.concatenate([PERM, np.arange(5, N)])
    cat = lambda a: jnp.concatenate([a, a[1:2][:, perm]])  # noqa: E731
    return cat(feats), cat(mask), cat(vec)


def test_particlenet_lrp_mean_and_max(x64):
    model = _randomise(ParticleNet(F, 2, conv_params=((3, (8, 8)), (3, (12, 12))),
                                   fc_params=((16, 0.1),), aggregation="max",
                                   rngs=nnx.Rngs(0)), 1)
    # block 1 reduces by the mean, block 2 by the max (winner-take-all)
    model.edge_convs[0].aggregation = "mean"
    _check(model, *_with_permuted(*_jets()))


def test_part_lrp(x64):
    model = _randomise(ParticleTransformer(
        F, 2, embed_dims=(8,), pair_embed_dims=(4,), num_heads=2, num_layers=1,
        num_cls_layers=1, fc_params=((8, 0.0),), rngs=nnx.Rngs(params=0, dropout=1)), 2)
    _check(model, *_with_permuted(*_jets(1)))


def test_unsupported_model_and_target_errors():
    with pytest.raises(TypeError, match="no LRP forward for int"):
        taggers.forward_fn(3)
    model = ParticleNet(F, 3, conv_params=((3, (4,)),), fc_params=(), rngs=nnx.Rngs(0))
    feats, mask, _ = _jets()
    with pytest.raises(ValueError, match="target='diff' needs 2 output logits, the model has 3"):
        taggers.explain_jets(model, feats, mask)
    with pytest.raises(ValueError, match="target=5 is not one of the model's 3 logits"):
        taggers.explain_jets(model, feats, mask, target=5)
