"""Particle Transformer: paper parameter count, pair embedding, padding/permutation invariance,
the plain-transformer ablation, and a training smoke test through hepjax.train."""
import jax
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from hepjax import kernels
from hepjax.models import part
from hepjax.physics import from_pt_eta_phi_m, pairwise_features
from hepjax.train import compile_steps, init_state, tasks

from .toyjets import random_particles as _jets

SMALL = dict(embed_dims=(16, 32, 16), pair_embed_dims=(8, 8), num_heads=2, num_layers=1,
             num_cls_layers=1)


def _count(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_paper_config_parameter_count_matches_weaver():
    # JetClass head: 17 features, 10 classes -> 2,143,486 parameters in weaver-core (counted by
    # benchmarks/part_vs_weaver.py from the torch module; by hand: embed 135,364, pair embed
    # 9,568, 10 blocks x 199,688, class token 128, final norm 256, fc 1,290).
    cfg = part.default_config()
    model = nnx.eval_shape(lambda: part.build(cfg, (128, 17), 10, nnx.Rngs(params=0, dropout=1)))
    assert _count(model) == 2_143_486
    plain = nnx.eval_shape(
        lambda: part.build_transformer(cfg, (128, 17), 10, nnx.Rngs(params=0, dropout=1)))
    assert _count(plain) == 2_143_486 - 9_568


def test_pair_embedding_symmetric_masked_and_matches_dense_reference():
    pe = part.PairEmbedding((6,), 3, rngs=nnx.Rngs(0))
    _, mask, vec = _jets(2, 5, 1, 0, n_real=[5, 3])
    out = np.asarray(pe(vec, mask))
    assert out.shape == (2, 3, 5, 5)
    np.testing.assert_allclose(out, np.swapaxes(out, -1, -2), rtol=1e-6, atol=1e-6)
    assert np.all(out[1][:, 3:, :] == 0) and np.all(out[1][:, :, 3:] == 0)
    # dense reference: BatchNorm statistics over the real pairs i >= j, as in weaver's sparse mode
    u = np.asarray(pairwise_features(vec, mask), np.float64)
    pair = mask[:, :, None] & mask[:, None, :] & np.tril(np.ones((5, 5), bool))[None]
    sel = u[pair]

    def bn(x, sel_x):
        mu, var = sel_x.mean(0), sel_x.var(0)
        return (x - mu) / np.sqrt(var + 1e-5)

    h = bn(u, sel)
    gelu = lambda z: np.asarray(jax.nn.gelu(z, approximate=False))  # noqa: E731
    for layer in pe.layers:
        z = h @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
        h = gelu(bn(z, z[pair]))
    ref = np.where(mask[:, :, None, None] & mask[:, None, :, None], h, 0).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out, ref, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("use_pair", [True, False])
def test_padding_and_permutation_invariance(use_pair):
    model = part.ParticleTransformer(5, 3, use_pair_features=use_pair, dropout=0.0,
                                     attn_dropout=0.0, activation_dropout=0.0,
                                     rngs=nnx.Rngs(params=0), **SMALL)
    feats, mask, vec = _jets(3, 6, 5, 1)
    call = nnx.jit(lambda m, f, k, v: m(f, k, v))
    # padding: 4 extra particles full of garbage, masked out; training mode (batch statistics
    # from real particles only) and eval mode must both be unchanged
    rng = np.random.default_rng(2)
    fpad = np.concatenate([feats, 1e3 * rng.normal(size=(3, 4, 5))], 1).astype(np.float32)
    vpad = np.concatenate([vec, 1e3 * np.abs(rng.normal(size=(3, 4, 4)))], 1).astype(np.float32)
    mpad = np.concatenate([mask, np.zeros((3, 4), bool)], 1)
    perm = rng.permutation(6)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        y = np.asarray(call(model, feats, mask, vec))
        ypad = np.asarray(call(model, fpad, mpad, vpad))
        np.testing.assert_allclose(ypad, y, rtol=1e-4, atol=1e-4)
        yperm = np.asarray(call(model, feats[:, perm], mask[:, perm], vec[:, perm]))
        np.testing.assert_allclose(yperm, y, rtol=1e-4, atol=1e-4)
        # the padded slots scattered among the real particles, not only at the end
        mixed = rng.permutation(10)
        ymixed = np.asarray(call(model, fpad[:, mixed], mpad[:, mixed], vpad[:, mixed]))
        np.testing.assert_allclose(ymixed, y, rtol=1e-4, atol=1e-4)
        assert np.all(np.isfinite(y))


def test_pair_features_change_the_output_and_plain_transformer_ignores_vectors():
    kw = dict(dropout=0.0, attn_dropout=0.0, activation_dropout=0.0, rngs=nnx.Rngs(params=0))
    feats, mask, vec = _jets(2, 5, 4, 3)
    vec2 = vec.copy()
    vec2[:, :, 1:] *= np.random.default_rng(1).uniform(0.5, 2.0, (2, 5, 1)).astype(np.float32)
    call = nnx.jit(lambda m, f, k, v: m(f, k, v))
    with_pair = part.ParticleTransformer(4, 2, **SMALL, **kw)
    with_pair.eval()
    assert np.abs(np.asarray(call(with_pair, feats, mask, vec)
                             - call(with_pair, feats, mask, vec2))).max() > 1e-4
    plain = part.ParticleTransformer(4, 2, use_pair_features=False, **SMALL, **kw)
    plain.eval()
    np.testing.assert_array_equal(np.asarray(call(plain, feats, mask, vec)),
                                  np.asarray(call(plain, feats, mask, vec2)))
    with pytest.raises(ValueError, match="vectors"):
        with_pair(feats, mask)


def test_builder_reads_config_fields():
    cfg = ml_collections.ConfigDict(dict(SMALL, fc_params=((12, 0.1),), dropout=0.0))
    model = part.build(cfg, (6, 4), 1, nnx.Rngs(params=0, dropout=1))
    assert len(model.blocks) == 1 and len(model.cls_blocks) == 1 and len(model.fcs) == 1
    assert model.out.kernel.shape == (12, 1)
    with pytest.raises(ValueError, match="particle sets"):
        part.build(cfg, (40, 40, 1), 1, nnx.Rngs(params=0))


@pytest.mark.parametrize("use_pair", [True, False])
def test_smoke_training_loss_decreases(use_pair):
    """A few Adam steps through hepjax.train on a fixed synthetic batch: the loss must drop,
    for ParT and for the plain transformer of the ablation. Signal jets: a hard 3-prong core
    (wider in eta, higher pair masses); background: one soft core."""
    b, n = 32, 8
    rng = np.random.default_rng(0)
    label = (np.arange(b) % 2).astype(np.float32)
    pt = rng.exponential(10.0, (b, n)) + 1.0
    eta = rng.normal(0, 0.05, (b, n)) + label[:, None] * rng.choice([-0.4, 0.0, 0.4], (b, n))
    phi = rng.normal(0, 0.05, (b, n))
    vec = np.asarray(from_pt_eta_phi_m(pt, eta, phi, 0.14)).astype(np.float32)
    mask = np.arange(n)[None] < rng.integers(4, n + 1, b)[:, None]
    feats = np.stack([np.log(pt), eta, phi], -1).astype(np.float32)
    batch = {"features": feats, "mask": mask, "vectors": vec, "label": label,
             "weight": np.ones(b, np.float32)}
    cfg = ml_collections.ConfigDict(dict(SMALL, dropout=0.0, attn_dropout=0.0,
                                         activation_dropout=0.0, use_pair_features=use_pair))
    opt = optax.adam(3e-3)
    graphdefs, state = init_state(lambda r: part.build(cfg, (n, 3), 1, r), opt,
                                  jax.random.key(0))
    train_step, _ = compile_steps(graphdefs, tasks.binary_classification(), opt)
    losses = []
    for _ in range(15):
        state, metrics = train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses


def test_pair_embedding_reference_kernels_match_the_fast_ones():
    """PairEmbedding with the reference kernels (pairs by index, the pair MLP layer by layer)
    gives the fast forms' bias (packed pairs, tiled MLP), running statistics and parameter
    gradients, in training and eval mode; odd N (the packed form pads one particle)."""
    import jax.numpy as jnp
    _, mask, vec = _jets(3, 9, 1, 4, n_real=[9, 6, 2])
    ct = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4, 9, 9)), jnp.float32)
    results = {}
    for mode in ("fast", "reference"):
        with kernels.use(mode):
            pe = part.PairEmbedding((8, 8), 4, rngs=nnx.Rngs(3))

            def loss(m):
                return jnp.sum(m(vec, mask) * ct)

            value, grads = nnx.value_and_grad(loss)(pe)
            stats = nnx.state(pe, nnx.BatchStat)
            pe.eval()
            results[mode] = (value, grads, stats, pe(vec, mask))
    for a, b in zip(jax.tree.leaves(results["fast"]), jax.tree.leaves(results["reference"])):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    assert float(jnp.max(jnp.abs(results["fast"][3]))) > 0.1  # not trivially zero


def test_reference_kernels_give_the_fast_kernels_logits():
    """ParT (1 + 1 blocks) with every kernel in its reference form gives the logits of the fast
    forms to float32 round-off: |difference| < 1e-5 * max |logit| in eval mode; and in training
    mode (no dropout) the same parameter gradients to 1e-4 of the largest one."""
    import jax.numpy as jnp
    feats, mask, vec = _jets(4, 13, 5, 8, n_real=[13, 10, 4, 1])
    cfg = ml_collections.ConfigDict(dict(SMALL, dropout=0.0, attn_dropout=0.0,
                                         activation_dropout=0.0))
    results = {}
    for mode in ("fast", "reference"):
        with kernels.use(mode):
            model = part.build(cfg, (13, 5), 3, nnx.Rngs(params=0, dropout=1))
            grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(feats, mask, vec) ** 2)))(model)
            model.eval()
            results[mode] = (np.asarray(nnx.jit(lambda m: m(feats, mask, vec))(model)),
                             [np.asarray(g) for g in jax.tree.leaves(grads)])
    fast, ref = results["fast"][0], results["reference"][0]
    scale = np.abs(fast).max()
    assert scale > 0.1
    assert np.abs(fast - ref).max() < 1e-5 * scale
    grad_scale = max(np.abs(g).max() for g in results["fast"][1])
    for a, b in zip(results["fast"][1], results["reference"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * grad_scale)


def test_key_masking_bias_equals_the_attention_mask():
    """PairEmbedding(mask_keys=True) puts masked_logit() on padded keys and leaves the rest;
    a block fed that bias with bias_masks_keys=True gives the outputs of the block masking the
    keys itself (for every jet with a real particle)."""
    from hepjax.nn.attention import masked_logit
    _, mask, vec = _jets(3, 7, 1, 5, n_real=[7, 4, 2])
    pe = part.PairEmbedding((6,), 2, rngs=nnx.Rngs(0))
    pe.eval()
    plain, keyed = np.asarray(pe(vec, mask)), np.asarray(pe(vec, mask, mask_keys=True))
    cols = np.broadcast_to(mask[:, None, None, :], plain.shape)
    np.testing.assert_array_equal(keyed[cols], plain[cols])
    assert np.all(keyed[~cols] == np.float32(masked_logit()))
    block = part.ParTBlock(8, 2, dropout=0.0, attn_dropout=0.0, activation_dropout=0.0,
                           rngs=nnx.Rngs(1))
    x = np.random.default_rng(3).normal(size=(3, 7, 8)).astype(np.float32)
    own = np.asarray(block(x, mask, bias=plain))
    folded = np.asarray(block(x, mask, bias=keyed, bias_masks_keys=True))
    np.testing.assert_allclose(folded, own, rtol=1e-6, atol=1e-6)
    # and the masked keys matter: the same bias without any mask differs
    unmasked = np.asarray(block(x, np.ones_like(mask), bias=plain))
    assert np.abs(unmasked[1:] - own[1:]).max() > 1e-3


@pytest.mark.parametrize("mode", ["fast", "reference"])
@pytest.mark.parametrize("train", [True, False])
def test_bfloat16_forward_runs_every_matmul_in_bf16_and_tracks_float32(mode, train):
    """Mixed precision (hepjax.train.step: parameters and features cast to bf16, four-momenta
    kept float32): every product of ParT's forward pass, the pair embedding's included, is a
    bf16 product (float32 pair features and running statistics used to promote the whole
    network back to float32), and the logits follow the float32 ones to bf16 accuracy; with
    the fast kernels and with their references."""
    import re

    import jax.numpy as jnp

    from hepjax.train.step import cast_floats
    feats, mask, vec = _jets(4, 12, 5, 7, n_real=[12, 9, 5, 3])
    cfg = ml_collections.ConfigDict(dict(SMALL, num_layers=2, dropout=0.0, attn_dropout=0.0,
                                         activation_dropout=0.0))
    model = part.build(cfg, (12, 5), 3, nnx.Rngs(params=0, dropout=1))
    if not train:
        model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def logits(p, dtype):
        m = nnx.merge(graphdef, cast_floats(p, dtype), rest, copy=True)
        return m(jnp.asarray(feats, dtype), mask, vec).astype(jnp.float32)

    with kernels.use(mode):
        hlo = jax.jit(lambda p: logits(p, jnp.bfloat16)).lower(params).as_text()
        dots = re.findall(r"stablehlo.dot_general.*", hlo)
        assert len(dots) >= 10 and all("xbf16>" in d.split("->")[-1] for d in dots), dots
        ref = np.asarray(jax.jit(lambda p: logits(p, jnp.float32))(params))
        low = np.asarray(jax.jit(lambda p: logits(p, jnp.bfloat16))(params))
    scale = np.abs(ref).max()
    assert scale > 0.1
    assert np.abs(low - ref).max() < 0.1 * scale  # ~3-5 % here: bf16 rounding, 2 blocks deep
    assert not np.array_equal(low, ref)  # it really ran in another precision


def test_batch_norm_eval_keeps_the_bf16_compute_dtype():
    """Eval-mode BatchNorm with bf16 parameters (mixed precision) returns bf16 although its
    running statistics are stored in float32; float32 inputs with float32 parameters stay
    float32, and the values are the float32 ones rounded."""
    import jax.numpy as jnp

    from hepjax.nn.layers import BatchNorm
    from hepjax.train.step import cast_floats
    bn = BatchNorm(3, rngs=nnx.Rngs(0))
    bn.mean[...] = jnp.array([0.5, -1.0, 2.0])
    bn.var[...] = jnp.array([4.0, 0.25, 1.0])
    bn.eval()
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    y32 = bn(x)
    assert y32.dtype == jnp.float32
    graphdef, params, rest = nnx.split(bn, nnx.Param, ...)
    bn16 = nnx.merge(graphdef, cast_floats(params, jnp.bfloat16), rest)
    assert bn16.mean[...].dtype == jnp.float32  # the running statistics stay float32
    y16 = bn16(jnp.asarray(x, jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32, rtol=2e-2, atol=2e-2)
