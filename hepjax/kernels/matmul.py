"""Dense products whose weight gradient is one 2-D matmul.

Reference: x @ w. For x with two or more leading axes, autodiff's weight gradient contracts
over all of them, and XLA canonicalises that contraction by materialising a transposed
(K, rows) copy of the incoming gradient, fused into the elementwise op that produces it:
strided writes of the whole activation (on ParT's pair embedding and ParticleNet's edge
tensors, the largest arrays of the step). Written over the flattened rows, the gradient is one
product with a transposed-operand flag and no copy.
"""
from __future__ import annotations

import jax

from hepjax.kernels.select import dispatch

Array = jax.Array

__all__ = ["dense_matmul", "edge_matmul"]


def _dense_matmul_fast(x: Array, kernel: Array) -> Array:
    """The product over the leading axes flattened into one: autodiff then writes both
    gradients as 2-D products."""
    if x.ndim <= 2:
        return x @ kernel
    return (x.reshape(-1, x.shape[-1]) @ kernel).reshape(*x.shape[:-1], kernel.shape[-1])


@dispatch("matmul", fast=_dense_matmul_fast)
def dense_matmul(x: Array, kernel: Array) -> Array:
    """x (..., K) @ kernel (K, M) -> (..., M): the product of `hepjax.nn.Dense`."""
    return x @ kernel


@jax.custom_vjp
def _edge_matmul_fast(h: Array, w: Array) -> Array:
    """h @ w with a hand-written backward pass: dh = g @ w^T and dw = h_flat^T @ g_flat on the
    (M, C), (M, D) flattenings."""
    return h @ w


def _edge_matmul_fwd(h, w):
    return h @ w, (h, w)


def _edge_matmul_bwd(res, g):
    h, w = res
    dw = h.reshape(-1, h.shape[-1]).T @ g.reshape(-1, g.shape[-1])
    return g @ w.T, dw.astype(w.dtype)


_edge_matmul_fast.defvjp(_edge_matmul_fwd, _edge_matmul_bwd)


@dispatch("matmul", fast=_edge_matmul_fast)
def edge_matmul(h: Array, w: Array) -> Array:
    """h (..., C) @ w (C, D) -> (..., D) for edge tensors (B, N, k, C) (EdgeConv's edge MLP)."""
    return h @ w
