"""PFN and EFN: EnergyFlow parameter counts, permutation/padding invariance, IRC safety of the EFN
(collinear splitting, zero-energy particles), a short training run that lowers the loss."""
import functools

import jax
import numpy as np
import optax
from flax import nnx

from hepjax.models import pfn

from .toyjets import prong_jets, train_losses

# features (deta, dphi, log pT) of up to 10 particles, mask, four-momenta, labels
toy_jets = functools.partial(prong_jets, n_max=10)


def _n(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def small(name):
    cfg = pfn.default_config(name)
    cfg.phi_sizes, cfg.f_sizes = (16, 16, 8), (16,)
    return cfg


def test_energyflow_parameter_counts():
    def n(builder, shape):
        return _n(nnx.eval_shape(lambda: builder(None, shape, 2, nnx.Rngs(params=0, dropout=1))))
    # EnergyFlow PFN(input_dim=3, Phi_sizes=(100,100,256), F_sizes=(100,100,100)), 2 outputs
    assert n(pfn.build_pfn, (50, 3)) == 82_458
    assert n(pfn.build_pfn, (50, 4)) == 82_558
    assert n(pfn.build_efn, (50, 3)) == 82_358


def test_pfn_and_efn_permutation_and_padding_invariant():
    feats, mask, vecs, _ = toy_jets(5, seed=1)
    rng = np.random.default_rng(2)
    p = np.stack([rng.permutation(feats.shape[1]) for _ in range(5)])
    perm = lambda a: np.take_along_axis(a, p[..., None] if a.ndim == 3 else p, 1)  # noqa: E731
    pad = lambda a, m: (np.concatenate([np.where(m[..., None], a, 1e3), 7 * np.ones((5, 4, a.shape[-1]), np.float32)], 1)  # noqa: E731
                        .astype(np.float32))
    mpad = np.concatenate([mask, np.zeros((5, 4), bool)], 1)
    for builder, name in ((pfn.build_pfn, "pfn"), (pfn.build_efn, "efn")):
        model = builder(small(name), feats.shape[1:], 1, nnx.Rngs(params=0, dropout=1))
        run = nnx.jit(lambda m, x, k, v: m(x, k, vectors=v))
        y = np.asarray(run(model, feats, mask, vecs))
        np.testing.assert_allclose(run(model, perm(feats), perm(mask), perm(vecs)), y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(run(model, pad(feats, mask), mpad, pad(vecs, mask)), y, rtol=1e-5, atol=1e-6)


def test_efn_is_irc_safe():
    feats, mask, vecs, _ = toy_jets(4, seed=3)
    model = pfn.build_efn(small("efn"), feats.shape[1:], 3, nnx.Rngs(params=0, dropout=1))
    run = nnx.jit(lambda m, k, v: m(None, k, vectors=v))
    y = np.asarray(run(model, mask, vecs))
    # collinear split: particle 0 -> 0.3 p0 and 0.7 p0 (same direction), in a free padded slot
    n = mask.sum(1)
    split_v = np.concatenate([vecs, np.zeros((4, 1, 4), np.float32)], 1)
    split_m = np.concatenate([mask, np.zeros((4, 1), bool)], 1)
    for j in range(4):
        split_v[j, n[j]] = 0.7 * vecs[j, 0]
        split_v[j, 0] = 0.3 * vecs[j, 0]
        split_m[j, n[j]] = True
    np.testing.assert_allclose(run(model, split_m, split_v), y, rtol=1e-4, atol=1e-5)
    # soft emission: a real particle with zero energy at some arbitrary angle
    soft_v, soft_m = np.concatenate([vecs, np.zeros((4, 1, 4), np.float32)], 1), np.concatenate([mask, np.ones((4, 1), bool)], 1)
    np.testing.assert_allclose(run(model, soft_m, soft_v), y, rtol=1e-5, atol=1e-6)
    # and a genuinely soft one (1e-7 GeV) at a wide angle changes the output only by ~1e-7
    soft_v[:, -1] = np.array([1e-7 * np.cosh(1.0), 1e-7, 0.0, 1e-7 * np.sinh(1.0)], np.float32)
    np.testing.assert_allclose(run(model, soft_m, soft_v), y, rtol=1e-4, atol=1e-5)
    # sanity (the checks above can fail): moving the hardest particle by 0.2 in phi changes y
    moved = vecs.copy()
    c, s_ = np.cos(0.2), np.sin(0.2)
    px, py = vecs[:, 0, 1], vecs[:, 0, 2]
    moved[:, 0, 1], moved[:, 0, 2] = c * px - s_ * py, s_ * px + c * py
    assert np.max(np.abs(np.asarray(run(model, mask, moved)) - y)) > 1e-4


def test_pfn_and_efn_train():
    feats, mask, vecs, labels = toy_jets(64, seed=5)
    batch = {"features": feats, "mask": mask, "vectors": vecs, "label": labels,
             "weight": np.ones(64, np.float32)}
    for builder, name in ((pfn.build_pfn, "pfn"), (pfn.build_efn, "efn")):
        losses = train_losses(lambda r: builder(small(name), feats.shape[1:], 1, r), batch, 1e-2,
                              40)
        assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:3]), (name, losses)


def test_pfn_first_loss_is_order_one_on_hundred_particle_jets():
    """The paper-size PFN (Phi (100, 100, 256) summed over 100 particles of seven standardised
    features) starts with BCE ~ log 2 with the default PyTorch-style initialisation; He-uniform
    weights make the summed latent, and the loss, an order of magnitude larger."""
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((256, 100, 7)).astype(np.float32)
    mask = np.ones((256, 100), bool)
    labels = rng.integers(0, 2, 256).astype(np.float32)

    def first_loss(init):
        cfg = pfn.default_config("pfn")
        cfg.init = init
        model = pfn.build_pfn(cfg, (100, 7), 1, nnx.Rngs(params=0))
        logits = np.asarray(model(feats, mask))[:, 0]
        return float(np.mean(optax.sigmoid_binary_cross_entropy(logits, labels)))

    assert pfn.default_config("pfn").init == "torch" and pfn.default_config("efn").init == "he"
    assert first_loss("torch") < 1.0
    assert first_loss("he") > 2.0
