"""Attention: scaled dot-product attention, multi-head attention, transformer blocks, position
embeddings, ViT patch embedding and greedy auto-regressive decoding
(J. Kieseler, "Machine learning", ESHEP 2023 lectures, §2.2, doi:10.23730/CYRSP-2025-009.189).

Layout conventions
  * sequences / sets are (B, T, E) with a boolean mask (B, T): True = real token, False = padding;
  * per-head tensors are (B, T, H, D) (heads after the sequence axis, as jax.nn / flax);
  * attention masks are boolean and broadcastable to (B, H, Tq, Tk): True = query may attend to
    key. `padding_mask`, `causal_mask` and `combine_masks` build them;
  * an additive `bias` broadcastable to (B, H, Tq, Tk) is added to the logits before the softmax
    (the Particle Transformer adds its embedded pair features here).

The softmax is masked: masked keys get weight exactly 0 (not merely a small one), and a query row
with no allowed key gets all-zero weights and a zero output, with finite gradients — never NaN
(a NaN in the bias is the exception: it still poisons its row, masked or not). With a mask the
bias may hold +-inf on masked keys. Without a mask the bias must be finite (the fast kernel gives
NaN for a +inf, or a row of -inf), and `masked_logit()` is the finite way to mask a key through it: added to a
key's logits it gives it weight exactly 0 next to any allowed key (a row with no allowed key
then averages the masked ones instead of returning zeros). The Particle Transformer masks its
padded keys this way, inside the pair bias it computes anyway.
The two products and the masked softmax are kernels (`hepjax.kernels.bmm`,
`hepjax.kernels.softmax_matmul`): `hepjax.kernels.select` chooses between their references and
the fast forms written for XLA:CPU.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax import kernels
from hepjax.nn import initializers as inits
from hepjax.nn.activations import get_activation
from hepjax.nn.layers import Dense, Dropout, LayerNorm

Array = jax.Array

__all__ = [
    "dot_product_attention", "masked_logit", "padding_mask", "causal_mask", "combine_masks",
    "MultiHeadAttention", "TransformerEncoderBlock", "TransformerDecoderBlock",
    "LearnedPositionEmbedding", "sinusoidal_position_embedding", "PatchEmbedding",
    "greedy_decode",
]


# ----------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------

def dot_product_attention(query: Array, key: Array, value: Array, *, mask: Array | None = None,
                          bias: Array | None = None, weights_dropout: Callable | None = None,
                          return_weights: bool = False):
    """softmax(q k^T / sqrt(D) + bias, masked) v for every head.

    query (..., Tq, H, D), key (..., Tk, H, D), value (..., Tk, H, Dv).
    mask: bool, broadcastable to (..., H, Tq, Tk); False keys get weight 0 (a query with no
      allowed key returns zeros). bias: float, broadcastable to (..., H, Tq, Tk), added to the
      logits. weights_dropout: optional callable applied to the attention weights (nnx.Dropout).
    Returns (..., Tq, H, Dv) and, with return_weights=True, also the weights (..., H, Tq, Tk).
    """
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"dot_product_attention: query head dim {query.shape[-1]} (query shape "
                         f"{tuple(query.shape)}) != key head dim {key.shape[-1]} "
                         f"(key shape {tuple(key.shape)})")
    if key.shape[-3] != value.shape[-3]:
        raise ValueError(f"dot_product_attention: key length {key.shape[-3]} != value length "
                         f"{value.shape[-3]} (key {tuple(key.shape)}, value {tuple(value.shape)})")
    scale = 1.0 / math.sqrt(query.shape[-1])
    # heads before the sequence axes: the two products are plain batched matmuls over (..., H)
    q, k, v = (jnp.swapaxes(t, -2, -3) for t in (query * scale, key, value))
    logits = kernels.bmm(q, jnp.swapaxes(k, -1, -2))  # (..., H, Tq, Tk)
    if bias is not None:
        logits = logits + bias
    out = kernels.softmax_matmul(logits, v, mask, weights_dropout, return_weights)
    if return_weights:
        return jnp.swapaxes(out[0], -2, -3), out[1]
    return jnp.swapaxes(out, -2, -3)


def masked_logit(dtype=jnp.float32) -> float:
    """An additive bias that masks a key: -finfo(dtype).max / 4. Added to logits of ordinary
    size (|logit| << finfo.max / 4) it gives the key weight exactly 0 next to any unmasked key,
    and it stays finite (no inf - inf in the softmax)."""
    return -0.25 * float(jnp.finfo(dtype).max)


def padding_mask(key_mask: Array, query_mask: Array | None = None) -> Array:
    """Attention mask (B, 1, Tq, Tk) from token masks key_mask (B, Tk) and query_mask (B, Tq).

    Without query_mask the result is (B, 1, 1, Tk) (only keys are masked; padded queries still
    attend to the real keys, their outputs are simply ignored downstream).
    """
    key_mask = jnp.asarray(key_mask, bool)
    m = key_mask[:, None, None, :]
    if query_mask is not None:
        m = m & jnp.asarray(query_mask, bool)[:, None, :, None]
    return m


def causal_mask(length: int) -> Array:
    """(1, 1, T, T) bool, True where key position <= query position (no peeking at the future)."""
    idx = jnp.arange(length)
    return (idx[None, :] <= idx[:, None])[None, None]


def combine_masks(*masks: Array | None) -> Array | None:
    """Logical AND of the given boolean masks (broadcast); None entries are skipped."""
    present = [jnp.asarray(m, bool) for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m
    return out


def sinusoidal_position_embedding(length: int, dim: int, max_timescale: float = 10_000.0) -> Array:
    """(length, dim) fixed embedding of Vaswani et al. 2017:
    PE[t, 2i] = sin(t / max_timescale^(2i/dim)), PE[t, 2i+1] = cos(same). dim must be even."""
    if dim % 2:
        raise ValueError(f"sinusoidal_position_embedding: dim must be even, got {dim}")
    pos = jnp.arange(length, dtype=jnp.float32)[:, None]
    inv = max_timescale ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    ang = pos * inv[None, :]
    return jnp.stack([jnp.sin(ang), jnp.cos(ang)], axis=-1).reshape(length, dim)


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------

def _dropout(rate: float, rngs: nnx.Rngs):
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if rate == 0.0:
        return None
    if "dropout" not in rngs:
        raise ValueError("dropout > 0 needs a 'dropout' stream: build with "
                         "nnx.Rngs(params=seed, dropout=seed2)")
    return Dropout(rate, rngs=rngs)


def _apply(drop, x):
    return x if drop is None else drop(x)


def _stacked_glorot(parts: int):
    """Glorot-uniform for a (n_in, parts * n_out) kernel drawn as `parts` separate (n_in, n_out)
    blocks (as the q/k/v weights of PyTorch / weaver's 'moco' initialisation)."""
    def init(key, shape, dtype=jnp.float32):
        n_in, n_out = shape
        keys = jax.random.split(key, parts)
        return jnp.concatenate(
            [inits.glorot_uniform(k, (n_in, n_out // parts), dtype) for k in keys], axis=-1)
    return init


class MultiHeadAttention(nnx.Module):
    """Multi-head attention (Vaswani et al. 2017), self or cross.

    q = x W_q, [k, v] = context W_kv (context = x for self attention), split into `num_heads`
    heads of size embed_dim / num_heads, attention per head (`dot_product_attention`), heads
    concatenated and projected by W_o. Parameters: 3 E^2 + 3 E (q/k/v, with bias) + E^2 + E (out),
    the count of torch.nn.MultiheadAttention for kv_features = E.

    Call: mha(x (B, Tq, E), context=None (B, Tk, E_kv), *, mask=None (bool, broadcastable to
    (B, H, Tq, Tk)), bias=None (broadcastable to (B, H, Tq, Tk))) -> (B, Tq, E).
    `attn_dropout` drops attention weights in training mode.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, kv_features: int | None = None,
                 attn_dropout: float = 0.0, use_bias: bool = True, rngs: nnx.Rngs):
        if embed_dim % num_heads:
            raise ValueError(f"MultiHeadAttention: embed_dim={embed_dim} must be divisible by "
                             f"num_heads={num_heads}")
        kv_features = embed_dim if kv_features is None else kv_features
        self.embed_dim, self.num_heads, self.kv_features = embed_dim, num_heads, kv_features
        self.head_dim = embed_dim // num_heads
        self.q_proj = Dense(embed_dim, embed_dim, use_bias=use_bias, rngs=rngs)
        self.kv_proj = Dense(kv_features, 2 * embed_dim, use_bias=use_bias,
                             kernel_init=_stacked_glorot(2), rngs=rngs)
        self.out_proj = Dense(embed_dim, embed_dim, use_bias=use_bias, rngs=rngs)
        self.attn_dropout = _dropout(attn_dropout, rngs)

    def _qkv(self, x, context):
        if context is None and self.kv_features == self.embed_dim:
            # self attention: one matmul with the packed (E, 3E) kernel
            kernel = jnp.concatenate([self.q_proj.kernel[...], self.kv_proj.kernel[...]], axis=-1)
            y = kernels.dense_matmul(x, kernel)
            if self.q_proj.bias is not None:
                y = y + jnp.concatenate([self.q_proj.bias[...], self.kv_proj.bias[...]])
            return jnp.split(y, 3, axis=-1)
        context = x if context is None else context
        k, v = jnp.split(self.kv_proj(context), 2, axis=-1)
        return self.q_proj(x), k, v

    def __call__(self, x: Array, context: Array | None = None, *, mask: Array | None = None,
                 bias: Array | None = None) -> Array:
        if x.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiHeadAttention: x.shape[-1] must be embed_dim="
                             f"{self.embed_dim}, got x of shape {tuple(x.shape)}")
        q, k, v = self._qkv(x, context)
        split = lambda t: t.reshape(*t.shape[:-1], self.num_heads, self.head_dim)  # noqa: E731
        out = dot_product_attention(split(q), split(k), split(v), mask=mask, bias=bias,
                                    weights_dropout=self.attn_dropout)
        return self.out_proj(out.reshape(*out.shape[:-2], self.embed_dim))


class _FeedForward(nnx.Module):
    """Dense(E, r E) -> activation -> dropout -> Dense(r E, E)."""

    def __init__(self, dim: int, hidden: int, activation, dropout: float, rngs: nnx.Rngs):
        self.fc1 = Dense(dim, hidden, rngs=rngs)
        self.fc2 = Dense(hidden, dim, rngs=rngs)
        self.activation = get_activation(activation)
        self.drop = _dropout(dropout, rngs)

    def __call__(self, x):
        return self.fc2(_apply(self.drop, self.activation(self.fc1(x))))


class TransformerEncoderBlock(nnx.Module):
    """Pre-norm transformer encoder block ("Add & Norm" with the norm before each sublayer):

        x = x + drop(MHA(LN(x), mask, bias))
        x = x + drop(FFN(LN(x)))

    Call: block(x (B, T, E), mask=None (B, T) bool token mask, *, attn_mask=None (extra bool
    mask broadcastable to (B, H, T, T), e.g. `causal_mask`), bias=None (B or 1, H, T, T))
    -> (B, T, E). Padded tokens never influence real ones (they are masked as keys); their own
    outputs are zeroed. Without position embeddings the block is permutation equivariant.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, mlp_ratio: int = 4,
                 dropout: float = 0.1, attn_dropout: float = 0.1, activation: str = "gelu",
                 rngs: nnx.Rngs):
        self.norm1 = LayerNorm(embed_dim)
        self.attn = MultiHeadAttention(embed_dim, num_heads, attn_dropout=attn_dropout, rngs=rngs)
        self.norm2 = LayerNorm(embed_dim)
        self.ffn = _FeedForward(embed_dim, mlp_ratio * embed_dim, activation, dropout, rngs)
        self.drop = _dropout(dropout, rngs)

    def __call__(self, x: Array, mask: Array | None = None, *, attn_mask: Array | None = None,
                 bias: Array | None = None) -> Array:
        m = combine_masks(None if mask is None else padding_mask(mask), attn_mask)
        x = x + _apply(self.drop, self.attn(self.norm1(x), mask=m, bias=bias))
        x = x + _apply(self.drop, self.ffn(self.norm2(x)))
        return x if mask is None else jnp.where(mask[..., None], x, 0.0)


class TransformerDecoderBlock(nnx.Module):
    """Pre-norm transformer decoder block: causal self attention, cross attention to an encoder
    memory, feed-forward; each sublayer as x = x + drop(sublayer(LN(x))).

    Call: block(x (B, T, E), memory (B, S, E), mask=None (B, T), memory_mask=None (B, S), *,
    causal=True) -> (B, T, E). With causal=True position t sees only targets <= t.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, mlp_ratio: int = 4,
                 dropout: float = 0.1, attn_dropout: float = 0.1, activation: str = "gelu",
                 rngs: nnx.Rngs):
        self.norm1 = LayerNorm(embed_dim)
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, attn_dropout=attn_dropout,
                                            rngs=rngs)
        self.norm2 = LayerNorm(embed_dim)
        self.cross_attn = MultiHeadAttention(embed_dim, num_heads, attn_dropout=attn_dropout,
                                             rngs=rngs)
        self.norm3 = LayerNorm(embed_dim)
        self.ffn = _FeedForward(embed_dim, mlp_ratio * embed_dim, activation, dropout, rngs)
        self.drop = _dropout(dropout, rngs)

    def __call__(self, x: Array, memory: Array, mask: Array | None = None,
                 memory_mask: Array | None = None, *, causal: bool = True) -> Array:
        self_mask = combine_masks(None if mask is None else padding_mask(mask),
                                  causal_mask(x.shape[-2]) if causal else None)
        x = x + _apply(self.drop, self.self_attn(self.norm1(x), mask=self_mask))
        cross_mask = None if memory_mask is None else padding_mask(memory_mask)
        x = x + _apply(self.drop, self.cross_attn(self.norm2(x), memory, mask=cross_mask))
        x = x + _apply(self.drop, self.ffn(self.norm3(x)))
        return x if mask is None else jnp.where(mask[..., None], x, 0.0)


class LearnedPositionEmbedding(nnx.Module):
    """x (B, T, E) -> x + P[:T], P (max_len, E) a trained table initialised N(0, 0.02^2)."""

    def __init__(self, max_len: int, dim: int, *, rngs: nnx.Rngs):
        self.max_len = max_len
        self.table = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, dim)))

    def __call__(self, x: Array) -> Array:
        if x.shape[-2] > self.max_len:
            raise ValueError(f"LearnedPositionEmbedding: sequence length {x.shape[-2]} exceeds "
                             f"max_len={self.max_len}")
        return x + self.table[: x.shape[-2]]


class PatchEmbedding(nnx.Module):
    """ViT patch embedding (Dosovitskiy et al. 2021): images (B, H, W, C) cut into
    non-overlapping p x p patches, each flattened (p*p*C) and projected linearly to E.
    Returns (B, (H/p) (W/p), E), patches in row-major order. H and W must be multiples of p.
    Equivalent to a convolution with kernel p, stride p."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int, *, rngs: nnx.Rngs):
        self.patch_size = patch_size
        self.proj = Dense(patch_size * patch_size * in_channels, embed_dim, rngs=rngs)

    def __call__(self, images: Array) -> Array:
        b, h, w, c = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"PatchEmbedding: image size ({h}, {w}) must be a multiple of "
                             f"patch_size={p}")
        x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        return self.proj(x.reshape(b, (h // p) * (w // p), p * p * c))


# ----------------------------------------------------------------------------------------------
# Auto-regressive decoding
# ----------------------------------------------------------------------------------------------

def greedy_decode(logits_fn: Callable[[Array], Array], batch_size: int, max_len: int, *,
                  start_token: int, end_token: int, pad_token: int = 0):
    """Greedy auto-regressive decoding with static shapes
    (J. Kieseler, "Machine learning", ESHEP 2023 lectures, §2.2, doi:10.23730/CYRSP-2025-009.189).

    logits_fn(tokens) maps the int32 tokens (B, max_len + 1) — the start token followed by what
    has been generated so far, pad_token after it — to logits (B, max_len + 1, V); position t's
    logits predict token t + 1 (a causal decoder, so the padding ahead never matters).
    At every step the argmax token is appended; once a sequence has produced `end_token` the
    rest of it is pad_token. Runs max_len steps inside one lax.fori_loop.

    Returns (tokens (B, max_len) int32 without the start token, lengths (B,) int32 = number of
    tokens up to and including the end token, or max_len if none was produced).
    """
    tokens = jnp.full((batch_size, max_len + 1), pad_token, jnp.int32).at[:, 0].set(start_token)
    done = jnp.zeros((batch_size,), bool)
    lengths = jnp.full((batch_size,), max_len, jnp.int32)

    def body(t, carry):
        tokens, done, lengths = carry
        logits = logits_fn(tokens)
        nxt = jnp.argmax(logits[:, t], axis=-1).astype(jnp.int32)
        nxt = jnp.where(done, pad_token, nxt)
        tokens = tokens.at[:, t + 1].set(nxt)
        finished = (~done) & (nxt == end_token)
        lengths = jnp.where(finished, t + 1, lengths)
        return tokens, done | finished, lengths

    tokens, _, lengths = jax.lax.fori_loop(0, max_len, body, (tokens, done, lengths))
    return tokens[:, 1:], lengths
