"""ParticleNet: paper/weaver parameter counts, permutation and padding invariance, no leak from
padded rows, a short training run that lowers the loss."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from hepjax.models import particlenet

from .toyjets import prong_jets, train_losses

# features (deta, dphi, log pT, pT fraction) of up to 12 particles, mask, four-momenta, labels
toy_jets = functools.partial(prong_jets, n_max=12, pt_fraction=True)


def small_cfg():
    cfg = particlenet.default_config()
    cfg.conv_params = ((3, (8, 8)), (3, (12, 12)))
    cfg.fc_params = ((16, 0.1),)
    return cfg


def _num_params(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_paper_config_parameter_counts_equal_weaver():
    rngs = lambda: nnx.Rngs(params=0, dropout=1)  # noqa: E731
    paper = nnx.eval_shape(lambda: particlenet.build(particlenet.default_config(), (100, 7), 2, rngs()))
    assert _num_params(paper) == 366_160  # weaver ParticleNet(7, 2, paper conv/fc, use_fusion=False)
    cfg = particlenet.default_config()
    cfg.use_fusion = True
    fused = nnx.eval_shape(lambda: particlenet.build(cfg, (100, 7), 2, rngs()))
    assert _num_params(fused) == 571_728  # + Conv1d(448 -> 384, no bias) + BatchNorm(384)
    # builder accepts a partial config (defaults fill the rest)
    part = ml_collections.ConfigDict({"name": "particlenet"})
    assert _num_params(nnx.eval_shape(lambda: particlenet.build(part, (30, 7), 2, rngs()))) == 366_160


def test_invariances_and_no_leak_from_padding():
    feats, mask, vecs, _ = toy_jets(6, seed=1)
    model = particlenet.build(small_cfg(), feats.shape[1:], 1, nnx.Rngs(params=0, dropout=1))
    run = nnx.jit(lambda m, x, k: m(x, k))
    for mode in ("train", "eval"):
        getattr(model, mode)()
        model.drops[0].deterministic = True  # dropout off: compare outputs
        y = np.asarray(run(model, feats, mask))
        rng = np.random.default_rng(3)
        p = np.stack([rng.permutation(feats.shape[1]) for _ in range(6)])
        yp = run(model, np.take_along_axis(feats, p[..., None], 1), np.take_along_axis(mask, p, 1))
        np.testing.assert_allclose(yp, y, rtol=1e-4, atol=1e-5)
        junk = np.where(mask[..., None], feats, 1e4 * rng.normal(size=feats.shape)).astype(np.float32)
        more = np.concatenate([junk, rng.normal(size=(6, 5, 4)).astype(np.float32)], 1)
        more_mask = np.concatenate([mask, np.zeros((6, 5), bool)], 1)
        np.testing.assert_allclose(run(model, more, more_mask), y, rtol=1e-4, atol=1e-5)


def test_gradients_ignore_padded_rows():
    feats, mask, _, _ = toy_jets(4, seed=2)
    model = particlenet.build(small_cfg(), feats.shape[1:], 1, nnx.Rngs(params=0, dropout=1))
    model.eval()
    g = jax.jit(jax.grad(lambda x: model(x, mask).sum()))(jnp.asarray(feats))
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~mask] == 0)


def test_training_lowers_the_loss():
    feats, mask, vecs, labels = toy_jets(64, seed=4)
    batch = {"features": feats, "mask": mask, "label": labels, "weight": np.ones(64, np.float32)}
    losses = train_losses(lambda r: particlenet.build(small_cfg(), feats.shape[1:], 1, r), batch,
                          3e-3, 25)
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses
