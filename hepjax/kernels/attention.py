"""Attention's per-head products and its masked softmax.

References: `bmm` is a @ b; `softmax_matmul` is dropout(softmax(logits, masked)) @ value with
`hepjax.nn.activations.softmax`. The fast forms are written for XLA:CPU, where the speed of
these small batched products depends on operand layouts far more than on their FLOPs, and
where the products and the softmax compile to one fused kernel only when no select on the
(..., H, Tq, Tk) logits comes between them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from hepjax.kernels.select import dispatch
from hepjax.nn.activations import softmax

Array = jax.Array

__all__ = ["bmm", "softmax_matmul"]


@jax.custom_vjp
def _bmm_fast(a: Array, b: Array) -> Array:
    """a @ b with a backward pass laid out for XLA:CPU. For the gradient of b, autodiff's
    a^T g contracts both operands over their leading axis M, a form XLA:CPU runs at about half
    the speed of the same numbers as (M, X) x (Y, M) -> (Y, X), the large operand's rows
    contracted with a transposed copy of the small one; here the gradient of b takes that form,
    the small operand transposed into its own buffer and the result fenced by
    `lax.optimization_barrier` so that XLA cannot fold the transposes back. The gradient of a
    is g b^T as autodiff writes it. Same values as autodiff up to the order of the sums."""
    return a @ b


def _bmm_fwd(a, b):
    return a @ b, (a, b)


def _bmm_bwd(residuals, g):
    a, b = residuals
    da = g @ jnp.swapaxes(b, -1, -2)
    fence = jax.lax.optimization_barrier
    if a.shape[-1] >= g.shape[-1]:
        # a is the large operand (attention weights (M, K=Tk), g = dout (M, N=D)):
        # db^T (N, K) = g^T a, contracting a's rows
        db_t = fence(jnp.einsum("...mk,...nm->...nk", a, fence(jnp.swapaxes(g, -1, -2))))
        db = jnp.swapaxes(db_t, -1, -2)
    else:
        # g is the large one (logit gradient (M, N=Tk), a = q (M, K=D)): db (K, N) = a^T g
        db = fence(jnp.einsum("...mn,...km->...kn", g, fence(jnp.swapaxes(a, -1, -2))))
    return da.astype(a.dtype), db.astype(b.dtype)


_bmm_fast.defvjp(_bmm_fwd, _bmm_bwd)


@dispatch("attention", fast=_bmm_fast)
def bmm(a: Array, b: Array) -> Array:
    """a @ b for batched (..., M, K) @ (..., K, N): the per-head products q k^T and weights v."""
    return a @ b


@jax.custom_jvp
def _row_sum_or_one(s: Array) -> Array:
    """A masked softmax row sum s as a divisor: s itself where s >= 1, 1 where s = 0 (the only
    values it takes: a row with an allowed key has its max entry exp(0) = 1), with derivative
    1. Not jnp.maximum's derivative, which halves the gradient at s = 1 exactly (a row with one
    allowed key, or one dominant logit); not `where(s > 0, s, 1)` or
    `s + stop_gradient(max(s, 1) - s)`, which split XLA:CPU's fused attention kernel."""
    return jnp.maximum(s, 1.0)


@_row_sum_or_one.defjvp
def _row_sum_or_one_jvp(primals, tangents):
    return _row_sum_or_one(primals[0]), tangents[0]


def _softmax_matmul_fast(logits, value, mask=None, weights_dropout=None, return_weights=False):
    """The unnormalised e = exp(logit - max) on allowed keys, the normalisation applied after
    the product with v (one division per output row instead of one per weight);
    dropout(e / s) v = dropout(e) v / s since s is constant along a row. The mask enters through
    small float tensors of the mask's own shape, not as selects on the logits, so that XLA:CPU
    compiles the two products and the softmax into one fused kernel (its YNNPACK fusions take
    no select): the logits are clipped to +-finfo.max / 4 (an inf in the bias becomes finite),
    masked keys are pushed down by finfo.max / 2 (below every allowed key, so out of the row
    max) and their e multiplied by 0. A row with an allowed key then has s >= 1 (its max entry
    is exp(0) = 1); a row without one has e = 0, s = 0 and returns 0. Without a mask nothing is
    clipped (the clip would cost the fused kernel a pass)."""
    keep = None
    if mask is not None:
        mask = jnp.asarray(mask, bool)
        keep = mask.astype(logits.dtype)
        big = 0.25 * float(jnp.finfo(logits.dtype).max)
        # the clip bounds as tensors of the mask's shape (keep * 0 + big): clipping to scalar
        # constants also splits the fused kernel
        bound = keep * 0 + big
        logits = jnp.minimum(jnp.maximum(logits, -bound), bound) + (keep - 1) * (2 * big)
    row_max = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    e = jnp.exp(logits - row_max)
    if keep is not None:
        e = e * keep
    denom = jnp.sum(e, axis=-1, keepdims=True)
    if weights_dropout is not None:
        e = weights_dropout(e)
    norm = _row_sum_or_one(denom)
    out = _bmm_fast(e, value) / norm
    return (out, e / norm) if return_weights else out


@dispatch("attention", fast=_softmax_matmul_fast)
def softmax_matmul(logits: Array, value: Array, mask: Array | None = None,
                   weights_dropout=None, return_weights: bool = False):
    """weights @ value with weights = dropout(softmax(logits)) over the keys allowed by mask.

    logits (..., Tq, Tk), value (..., Tk, Dv); mask bool broadcastable to the logits (False:
    weight exactly 0; a row with no allowed key has all-zero weights and a zero output, with
    finite gradients; the logits of masked keys may be +-inf); weights_dropout an optional
    callable applied to the weights once. Without a mask the logits must be finite (the fast
    form gives NaN for a +inf, or a row of -inf). Returns (..., Tq, Dv), and with
    return_weights=True also the weights (..., Tq, Tk) that produced it (after dropout)."""
    weights = softmax(logits, axis=-1, where=mask)
    if weights_dropout is not None:
        weights = weights_dropout(weights)
    out = weights @ value
    return (out, weights) if return_weights else out
