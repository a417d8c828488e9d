"""DeepJet-style tagger: pT ordering, padding / order invariance, builder, training smoke test."""
import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from hepjax.models import deepjet
from hepjax.physics import from_pt_eta_phi_m

from .toyjets import random_particles, train_losses

SMALL = dict(conv_dims=(8, 4), lstm_units=6, dense_dims=(8,), dropout=0.0)


def test_pt_order_puts_hardest_first_and_padding_last():
    _, mask, vec = random_particles(2, 5, 1, 0)
    pt = np.hypot(vec[..., 1], vec[..., 2])
    mask[0, 1] = False
    order = np.asarray(deepjet.pt_order(vec, mask))
    assert order[0, -1] == 1
    real = order[0, :-1]
    assert np.all(np.diff(pt[0, real]) < 0)
    assert np.all(np.diff(pt[1, order[1]]) < 0)


@pytest.mark.parametrize("cell,bidirectional", [("lstm", False), ("gru", True)])
def test_invariant_to_input_order_and_padding_with_vectors(cell, bidirectional):
    model = deepjet.DeepJetTagger(3, 2, cell=cell, bidirectional=bidirectional,
                                  rngs=nnx.Rngs(params=0), **SMALL)
    feats, mask, vec = random_particles(3, 6, 3, 1)
    call = nnx.jit(lambda m, f, k, v: m(f, k, v))
    y = np.asarray(call(model, feats, mask, vec))
    perm = np.random.default_rng(0).permutation(6)
    np.testing.assert_allclose(np.asarray(call(model, feats[:, perm], mask[:, perm],
                                               vec[:, perm])), y, rtol=1e-5, atol=1e-5)
    rng = np.random.default_rng(1)
    fpad = np.concatenate([rng.normal(size=(3, 2, 3)) * 1e3, feats], 1).astype(np.float32)
    vpad = np.concatenate([np.abs(rng.normal(size=(3, 2, 4))) * 1e3, vec], 1).astype(np.float32)
    mpad = np.concatenate([np.zeros((3, 2), bool), mask], 1)
    np.testing.assert_allclose(np.asarray(call(model, fpad, mpad, vpad)), y, rtol=1e-5,
                               atol=1e-5)
    # without vectors the input order matters (it is taken as the pT order)
    yn = np.asarray(call(model, feats[:, perm], mask[:, perm], None))
    assert np.abs(yn - np.asarray(call(model, feats, mask, None))).max() > 1e-6


def test_builder_and_paper_sized_default():
    cfg = deepjet.default_config()
    model = nnx.eval_shape(lambda: deepjet.build(cfg, (50, 16), 1, nnx.Rngs(params=0,
                                                                            dropout=1)))
    n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    conv = 16 * 64 + 64 + 64 * 32 + 32 + 32 * 32 + 32 + 32 * 8 + 8
    lstm = 4 * 150 * (8 + 150 + 1)
    dense = 150 * 200 + 200 + 200 * 100 + 100 + 100 * 100 + 100 + 100 + 1
    assert n == conv + lstm + dense
    with pytest.raises(ValueError, match="particle sequences"):
        deepjet.build(cfg, (40, 40, 1), 1, nnx.Rngs(params=0))


def test_smoke_training_loss_decreases():
    b, n = 32, 10
    rng = np.random.default_rng(0)
    label = (np.arange(b) % 2).astype(np.float32)
    pt = rng.exponential(10.0, (b, n)) + 1.0
    eta = rng.normal(0, 0.1 + 0.3 * label[:, None], (b, n))
    vec = np.asarray(from_pt_eta_phi_m(pt, eta, rng.normal(0, .1, (b, n)), 0.14))
    feats = np.stack([np.log(pt), eta], -1).astype(np.float32)
    mask = np.arange(n)[None] < rng.integers(4, n + 1, b)[:, None]
    batch = {"features": feats, "mask": mask, "vectors": vec.astype(np.float32),
             "label": label, "weight": np.ones(b, np.float32)}
    cfg = ml_collections.ConfigDict(SMALL)
    losses = train_losses(lambda r: deepjet.build(cfg, (n, 2), 1, r), batch, 1e-2, 25)
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses
