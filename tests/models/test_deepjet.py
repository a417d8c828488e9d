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


# ----------------------------------------------------------------------------- DeepJetFull
FULL_SMALL = dict(cpf_conv=(8, 4), npf_conv=(4,), sv_conv=(8, 4), cpf_lstm=8, npf_lstm=4,
                  sv_lstm=4, dense_dims=(16,), dropout=0.0)
DIMS = (5, 3, 4, 2)    # charged, neutral, SV features; globals


def _full_inputs(b, seed, signal=None, n=(7, 5, 3)):
    """Random four-input jets; real entries first, each jet with its own counts (some with no
    SV). With ``signal``, label-1 jets have charged feature 0 shifted by +1.5 and more SVs."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, dim, size in zip(("cpf", "npf", "sv"), DIMS, n):
        x = rng.normal(size=(b, size, dim)).astype(np.float32)
        lo = 0 if name == "sv" else 1
        counts = rng.integers(lo, size + 1, b)
        if signal is not None and name == "sv":
            counts = np.where(signal == 1, rng.integers(1, size + 1, b), rng.integers(0, 2, b))
        if signal is not None and name == "cpf":
            x[..., 0] += 1.5 * signal[:, None]
        mask = np.arange(size)[None] < counts[:, None]
        out[name], out[f"{name}_mask"] = np.where(mask[..., None], x, 0).astype(np.float32), mask
    out["globals"] = rng.normal(size=(b, DIMS[3])).astype(np.float32)
    return out


def _run(model, x):
    return model(x["cpf"], x["npf"], x["sv"], x["globals"], x["cpf_mask"], x["npf_mask"],
                 x["sv_mask"])


_run_jit = nnx.jit(_run)


def test_full_shapes_and_padding_invariance():
    model = deepjet.DeepJetFull(*DIMS, 4, rngs=nnx.Rngs(params=0), **FULL_SMALL)
    x = _full_inputs(6, 0)
    x["sv_mask"][0] = False                       # a jet without secondary vertices
    x["sv"][0] = 0
    y = np.asarray(_run_jit(model, x))
    assert y.shape == (6, 4) and np.isfinite(y).all()
    rng = np.random.default_rng(1)
    padded = dict(x)
    for name in ("cpf", "npf", "sv"):            # junk in padded slots, and 3 more padded slots
        junk = rng.normal(size=x[name].shape).astype(np.float32) * 1e3
        data = np.where(x[f"{name}_mask"][..., None], x[name], junk)
        extra = rng.normal(size=(6, 3, x[name].shape[-1])).astype(np.float32) * 1e3
        padded[name] = np.concatenate([data, extra], 1)
        padded[f"{name}_mask"] = np.concatenate([x[f"{name}_mask"], np.zeros((6, 3), bool)], 1)
    np.testing.assert_allclose(np.asarray(_run_jit(model, padded)), y, rtol=1e-5, atol=1e-5)
    # the real entries matter
    changed = dict(x, cpf=x["cpf"] + 1.0 * x["cpf_mask"][..., None])
    assert np.abs(np.asarray(_run_jit(model, changed)) - y).max() > 1e-4
    with pytest.raises(ValueError, match="sv must be"):
        model(x["cpf"], x["npf"], x["sv"][..., :2], x["globals"])


def test_full_builder_has_the_paper_sizes():
    cfg = deepjet.default_full_config()
    model = nnx.eval_shape(lambda: deepjet.build_full(cfg, (16, 6, 12, 15), 4,
                                                      nnx.Rngs(params=0, dropout=1)))
    n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))

    def mlp(dims):
        return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))

    conv = mlp((16, 64, 32, 32, 8)) + mlp((6, 32, 16, 4)) + mlp((12, 64, 32, 32, 8))
    lstm = 4 * 150 * (8 + 150 + 1) + 4 * 50 * (4 + 50 + 1) + 4 * 50 * (8 + 50 + 1)
    dense = mlp((150 + 50 + 50 + 15, 200) + (100,) * 7 + (4,))
    assert n == conv + lstm + dense
    with pytest.raises(ValueError, match="four inputs"):
        deepjet.build_full(cfg, (16, 6, 12), 4, nnx.Rngs(params=0))


def _train_and_auc(labels_train, seed=0, steps=60):
    import optax

    from hepjax.metrics import roc_auc

    sig = (np.arange(384) % 2)
    x = _full_inputs(384, 3, signal=sig)
    tr = {k: v[:256] for k, v in x.items()}
    te = {k: v[256:] for k, v in x.items()}
    y_tr = labels_train(sig[:256])
    model = deepjet.build_full(ml_collections.ConfigDict(FULL_SMALL), DIMS, 2,
                               nnx.Rngs(params=seed))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    for _ in range(steps):
        _full_step(model, opt, tr, y_tr)
    scores = np.asarray(jax.nn.softmax(_run_jit(model, te), -1))[:, 1]
    return roc_auc(sig[256:], scores)


@nnx.jit
def _full_step(model, opt, batch, labels):
    import optax

    def loss_fn(m):
        return optax.softmax_cross_entropy_with_integer_labels(_run(m, batch), labels).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads)
    return loss


def test_full_learns_and_fails_on_shuffled_labels():
    """Held-out AUC well above chance when trained on the true labels; near chance when the
    training labels are shuffled (the mutation the test must catch)."""
    assert _train_and_auc(lambda y: y) > 0.9
    shuffled = _train_and_auc(lambda y: np.random.default_rng(5).permutation(y))
    assert shuffled < 0.7, shuffled
