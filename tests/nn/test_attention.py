"""Attention: numpy reference, masks (padding, causal, fully masked rows), equivariance, blocks,
position/patch embeddings and greedy decoding (the trained encoder-decoder:
tests/models/test_seq2seq.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hepjax.nn import attention as att


def _np_attention(q, k, v, mask=None, bias=None):
    """Per-head loop reference: q (B, Tq, H, D)."""
    b, tq, h, d = q.shape
    out = np.zeros((b, tq, h, v.shape[-1]))
    for bi in range(b):
        for hi in range(h):
            logits = q[bi, :, hi] @ k[bi, :, hi].T / np.sqrt(d)
            if bias is not None:
                logits = logits + np.broadcast_to(bias, (b, h, tq, k.shape[1]))[bi, hi]
            allowed = (np.ones_like(logits, bool) if mask is None
                       else np.broadcast_to(mask, (b, h, tq, k.shape[1]))[bi, hi])
            for qi in range(tq):
                row = logits[qi]
                if not allowed[qi].any():
                    continue
                e = np.where(allowed[qi], np.exp(row - row[allowed[qi]].max()), 0.0)
                out[bi, qi, hi] = (e / e.sum()) @ v[bi, :, hi]
    return out


def _rand(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_attention_matches_numpy_with_mask_and_bias():
    q, k, v = _rand((2, 5, 3, 4), 0), _rand((2, 7, 3, 4), 1), _rand((2, 7, 3, 6), 2)
    bias = _rand((2, 3, 5, 7), 3)
    key_mask = np.ones((2, 7), bool)
    key_mask[1, 4:] = False
    mask = np.asarray(att.padding_mask(key_mask))
    got = jax.jit(lambda *a: att.dot_product_attention(*a, mask=mask, bias=bias))(q, k, v)
    np.testing.assert_allclose(np.asarray(got), _np_attention(q, k, v, mask, bias),
                               rtol=1e-5, atol=1e-5)
    got0 = att.dot_product_attention(q, k, v)
    np.testing.assert_allclose(np.asarray(got0), _np_attention(q, k, v), rtol=1e-5, atol=1e-5)


def test_fully_masked_rows_give_zeros_and_finite_grads():
    q, k, v = _rand((1, 3, 2, 4), 0), _rand((1, 3, 2, 4), 1), _rand((1, 3, 2, 4), 2)
    mask = np.zeros((1, 1, 3, 3), bool)
    mask[..., 0, :2] = True  # only query 0 may attend
    out = att.dot_product_attention(q, k, v, mask=mask)
    assert np.all(np.isfinite(np.asarray(out)))
    np.testing.assert_array_equal(np.asarray(out)[0, 1:], 0.0)
    grads = jax.grad(lambda q: att.dot_product_attention(q, k, v, mask=mask).sum())(q)
    assert np.all(np.isfinite(np.asarray(grads)))
    np.testing.assert_array_equal(np.asarray(grads)[0, 1:], 0.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_masked_keys_never_leak_whatever_their_logits(dtype):
    """The mask is applied as an additive -big and a 0/1 factor (a fusion-friendly form):
    masked keys with logits far above the real ones must still get weight exactly 0, and a
    row with no allowed key must return zeros, in every float type."""
    q, k, v = _rand((2, 4, 2, 4), 0), _rand((2, 6, 2, 4), 1), _rand((2, 6, 2, 4), 2)
    key_mask = np.ones((2, 6), bool)
    key_mask[0, 3:] = False
    key_mask[1, :] = False  # jet 1: nothing to attend to
    bias = np.zeros((2, 2, 4, 6), np.float32)
    bias[..., 3:] = 6e4 if dtype == jnp.float16 else 1e38  # masked keys: enormous logits
    cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    out = np.asarray(att.dot_product_attention(cast(q), cast(k), cast(v),
                                               mask=att.padding_mask(key_mask),
                                               bias=cast(bias)), np.float32)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[1], 0.0)
    ref = _np_attention(q[:1, :, :, :], k[:1, :3], v[:1, :3])  # only the 3 real keys
    tol = 1e-5 if dtype == jnp.float32 else 3e-2
    np.testing.assert_allclose(out[:1], ref, rtol=tol, atol=tol)


def _reference_attention(q, k, v, mask=None, bias=None):
    """Plain jnp reference: softmax with masked logits set to -inf via where, rows without an
    allowed key zeroed (differentiable through jax.nn.softmax)."""
    qh, kh, vh = (jnp.swapaxes(t, -2, -3) for t in (q / np.sqrt(q.shape[-1]), k, v))
    logits = qh @ jnp.swapaxes(kh, -1, -2)
    if bias is not None:
        logits = logits + bias
    if mask is None:
        return jnp.swapaxes(jax.nn.softmax(logits, axis=-1) @ vh, -2, -3)
    mask = jnp.broadcast_to(mask, logits.shape)
    any_key = jnp.any(mask, axis=-1, keepdims=True)
    w = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1, where=mask)
    w = jnp.where(mask & any_key, w, 0.0)
    return jnp.swapaxes(w @ vh, -2, -3)


@pytest.mark.parametrize("case", ["one_key", "causal", "sharp_no_mask", "padding_causal"])
def test_gradients_match_plain_softmax(case):
    """Gradients of the fused path equal those of a plain softmax, also where a row's weight
    sum is exactly 1 with one allowed key or one dominant logit (max(s, 1) would halve them)."""
    q, k, v = _rand((2, 5, 2, 4), 0), _rand((2, 5, 2, 4), 1), _rand((2, 5, 2, 4), 2)
    bias, mask = None, None
    if case == "one_key":
        mask = np.zeros((2, 1, 1, 5), bool)
        mask[..., 0] = True
    elif case == "causal":
        mask = np.asarray(att.causal_mask(5))
    elif case == "sharp_no_mask":
        bias = np.zeros((2, 2, 5, 5), np.float32)
        bias[..., 1:] = -40.0  # key 0 takes the whole weight: s == 1 in float32
    else:
        key_mask = np.ones((2, 5), bool)
        key_mask[1, 3:] = False
        mask = np.asarray(att.combine_masks(att.padding_mask(key_mask), att.causal_mask(5)))
    fused = lambda q, k, v: att.dot_product_attention(q, k, v, mask=mask, bias=bias)  # noqa: E731
    ref = lambda q, k, v: _reference_attention(q, k, v, mask, bias)  # noqa: E731
    ct = _rand((2, 5, 2, 4), 3)
    got = jax.grad(lambda *a: jnp.sum(fused(*a) * ct), argnums=(0, 1, 2))(q, k, v)
    want = jax.grad(lambda *a: jnp.sum(ref(*a) * ct), argnums=(0, 1, 2))(q, k, v)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)
    if case == "one_key":  # the output is v[key 0] whatever q is: dq = 0 up to round-off
        assert np.abs(np.asarray(got[0])).max() < 1e-6


def test_infinite_bias_on_masked_keys_and_empty_rows():
    """-inf / +inf biases (weaver-style padding) on masked keys change nothing; a row whose
    keys are all masked and all -inf still returns zeros."""
    q, k, v = _rand((1, 3, 1, 4), 0), _rand((1, 4, 1, 4), 1), _rand((1, 4, 1, 4), 2)
    key_mask = np.array([[True, True, False, False]])
    mask = att.padding_mask(key_mask)
    bias = np.zeros((1, 1, 3, 4), np.float32)
    bias[..., 2] = -np.inf
    bias[..., 3] = np.inf
    got = np.asarray(att.dot_product_attention(q, k, v, mask=mask, bias=bias))
    ref = np.asarray(att.dot_product_attention(q, k[:, :2], v[:, :2]))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    empty = att.padding_mask(np.zeros((1, 4), bool))
    out = np.asarray(att.dot_product_attention(q, k, v, mask=empty,
                                               bias=np.full((1, 1, 3, 4), -np.inf, np.float32)))
    np.testing.assert_array_equal(out, 0.0)


def test_causal_mask_blocks_the_future():
    mha = att.MultiHeadAttention(8, 2, rngs=nnx.Rngs(0))
    x = _rand((2, 6, 8), 0)
    mask = att.causal_mask(6)
    y = mha(x, mask=mask)
    x2 = x.copy()
    x2[:, 4:] += 10.0 * _rand((2, 2, 8), 1)  # change only positions 4, 5
    y2 = mha(x2, mask=mask)
    np.testing.assert_allclose(np.asarray(y)[:, :4], np.asarray(y2)[:, :4], atol=1e-5)
    assert np.abs(np.asarray(y)[:, 4:] - np.asarray(y2)[:, 4:]).max() > 1e-3
    # the Jacobian of output t w.r.t. input s is zero for s > t
    jac = jax.jacobian(lambda x: mha(x[None], mask=mask)[0, :, 0])(jnp.asarray(x[0]))
    jac = np.abs(np.asarray(jac)).sum(-1)  # (T_out, T_in)
    assert np.all(jac[np.triu_indices(6, 1)] == 0.0)
    assert np.all(jac[np.tril_indices(6)] > 0.0)


def test_mha_matches_numpy_and_cross_attention_shapes():
    mha = att.MultiHeadAttention(8, 2, kv_features=5, rngs=nnx.Rngs(0))
    x, ctx = _rand((2, 3, 8), 0), _rand((2, 4, 5), 1)
    y = mha(x, ctx)
    assert y.shape == (2, 3, 8)
    wq, bq = np.asarray(mha.q_proj.kernel[...]), np.asarray(mha.q_proj.bias[...])
    wkv, bkv = np.asarray(mha.kv_proj.kernel[...]), np.asarray(mha.kv_proj.bias[...])
    q = (x @ wq + bq).reshape(2, 3, 2, 4)
    kv = ctx @ wkv + bkv
    k, v = kv[..., :8].reshape(2, 4, 2, 4), kv[..., 8:].reshape(2, 4, 2, 4)
    ref = _np_attention(q, k, v).reshape(2, 3, 8) @ np.asarray(mha.out_proj.kernel[...]) \
        + np.asarray(mha.out_proj.bias[...])
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-5)
    # self attention: packed path equals the generic path with context = x
    sa = att.MultiHeadAttention(8, 2, rngs=nnx.Rngs(1))
    np.testing.assert_allclose(np.asarray(sa(x)), np.asarray(sa(x, x)), rtol=1e-5, atol=1e-6)


def test_encoder_permutation_equivariant_and_padding_invariant():
    block = att.TransformerEncoderBlock(8, 2, dropout=0.0, attn_dropout=0.0, rngs=nnx.Rngs(0))
    x = _rand((2, 6, 8), 0)
    mask = np.ones((2, 6), bool)
    perm = np.random.default_rng(0).permutation(6)
    y = np.asarray(block(x, mask))
    yp = np.asarray(block(x[:, perm], mask[:, perm]))
    np.testing.assert_allclose(yp, y[:, perm], rtol=1e-5, atol=1e-5)
    # padding: extra garbage tokens with mask False change nothing at the real tokens
    xpad = np.concatenate([x, 100 * _rand((2, 3, 8), 1)], axis=1)
    mpad = np.concatenate([mask, np.zeros((2, 3), bool)], axis=1)
    ypad = np.asarray(block(xpad, mpad))
    np.testing.assert_allclose(ypad[:, :6], y, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ypad[:, 6:], 0.0)


def test_decoder_block_causal_and_memory_padding():
    dec = att.TransformerDecoderBlock(8, 2, dropout=0.0, attn_dropout=0.0, rngs=nnx.Rngs(0))
    x, mem = _rand((1, 5, 8), 0), _rand((1, 4, 8), 1)
    mmask = np.array([[True, True, True, False]])
    y = np.asarray(dec(x, mem, memory_mask=mmask))
    mem2 = mem.copy()
    mem2[:, 3] = 50.0
    np.testing.assert_allclose(np.asarray(dec(x, mem2, memory_mask=mmask)), y, atol=1e-5)
    x2 = x.copy()
    x2[:, 3:] = -7.0
    np.testing.assert_allclose(np.asarray(dec(x2, mem, memory_mask=mmask))[:, :3], y[:, :3],
                               atol=1e-5)


def test_dropout_only_in_training_mode():
    block = att.TransformerEncoderBlock(8, 2, dropout=0.5, attn_dropout=0.5,
                                        rngs=nnx.Rngs(params=0, dropout=1))
    x = _rand((1, 4, 8), 0)
    block.eval()
    np.testing.assert_array_equal(np.asarray(block(x)), np.asarray(block(x)))
    block.train()
    assert np.abs(np.asarray(block(x)) - np.asarray(block(x))).max() > 1e-4


def test_position_embeddings():
    pe = np.asarray(att.sinusoidal_position_embedding(7, 6))
    t, i = 5, 1
    np.testing.assert_allclose(pe[t, 2 * i], np.sin(t / 10000 ** (2 * i / 6)), rtol=1e-5)
    np.testing.assert_allclose(pe[t, 2 * i + 1], np.cos(t / 10000 ** (2 * i / 6)), rtol=1e-5)
    lpe = att.LearnedPositionEmbedding(10, 4, rngs=nnx.Rngs(0))
    x = np.zeros((2, 3, 4), np.float32)
    np.testing.assert_array_equal(np.asarray(lpe(x))[1], np.asarray(lpe.table[...])[:3])
    with pytest.raises(ValueError, match="max_len"):
        lpe(np.zeros((1, 11, 4)))
    # position embeddings break permutation equivariance (the encoder alone does not see order)
    block = att.TransformerEncoderBlock(4, 1, dropout=0.0, attn_dropout=0.0, rngs=nnx.Rngs(1))
    xr = _rand((1, 5, 4), 2)
    perm = np.array([4, 3, 2, 1, 0])
    y = np.asarray(block(lpe(xr)))
    yp = np.asarray(block(lpe(xr[:, perm])))
    assert np.abs(yp - y[:, perm]).max() > 1e-3


def test_patch_embedding_equals_strided_conv():
    pe = att.PatchEmbedding(4, 2, 5, rngs=nnx.Rngs(0))
    img = _rand((2, 8, 12, 2), 0)
    y = np.asarray(pe(img))
    assert y.shape == (2, 6, 5)
    kernel = np.asarray(pe.proj.kernel[...]).reshape(4, 4, 2, 5)  # (p, p, C, E) order
    conv = jax.lax.conv_general_dilated(img, kernel, (4, 4), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    conv = np.asarray(conv).reshape(2, 6, 5) + np.asarray(pe.proj.bias[...])
    np.testing.assert_allclose(y, conv, rtol=1e-4, atol=1e-5)


def test_greedy_decode_with_scripted_logits():
    # a "model" that emits 3, 4, end(1) then would emit 5 forever: decoding stops at the end token
    script = jnp.array([3, 4, 1, 5, 5, 5])

    def logits_fn(tokens):
        return jax.nn.one_hot(script[: tokens.shape[1]], 6)[None].repeat(tokens.shape[0], 0)

    toks, lengths = att.greedy_decode(logits_fn, 2, 5, start_token=2, end_token=1, pad_token=0)
    np.testing.assert_array_equal(np.asarray(toks), [[3, 4, 1, 0, 0]] * 2)
    np.testing.assert_array_equal(np.asarray(lengths), [3, 3])
