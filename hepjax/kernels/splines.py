"""Bin selection of a monotonic spline whose knots are shared by a batch.

A rational-quadratic spline (Durkan et al., "Neural spline flows", arXiv:1906.04032) evaluates,
for every input value, the parameters of the bin holding it. When the parameters are one set
per coordinate, shared by the batch (``flows.ElementwiseSpline``: tables of K arrays shaped like
one coordinate, P), the selection is a chain of ``where`` over the bins, broadcasting each
(P,)-shaped entry against the (B, *P) selectors.

Reference: that chain, differentiated by autodiff. Its backward pass makes, per bin and per
table, a (B, *P) select and its own reduction over the batch: ~440 XLA kernels for one 16-bin
spline of D = 104 coordinates (batch 256), which on the 2-core CPU cost ~20x the forward pass
(the calorimeter flow's 4 marginal splines made its training step 2.5x that of its 8 affine
couplings).

Fast form (XLA:CPU): the same forward chain (identical values), with the gradient written out
as one scatter-add of all tables' cotangents into their bins; XLA:CPU runs a scatter-add as one
ordered loop, so it is deterministic there (on a GPU its float additions are atomic, hence not
the default there). Gradients equal the reference's up to the order of the batch sums.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from hepjax.kernels.select import dispatch

Array = jax.Array

__all__ = ["select_bins"]


def _chain(sels, tables):
    out = []
    for t in tables:
        v = t[0]
        for i in range(1, len(t)):
            v = jnp.where(sels[i - 1], t[i], v)
        out.append(jnp.broadcast_to(v, sels[0].shape))
    return tuple(out)


def _bin_sums(j: Array, ct: Array, k: int) -> Array:
    """g[t, i, m] = sum_b [j[b, m] == i] ct[t, b, m] for j (B, M) in 0..k-1, ct (T, B, M)."""
    n_t, m = ct.shape[0], j.shape[1]
    flat = (j * m + jnp.arange(m, dtype=j.dtype)).reshape(-1)
    return jnp.zeros((n_t, k * m), ct.dtype).at[:, flat].add(
        ct.reshape(n_t, -1)).reshape(n_t, k, m)


@jax.custom_vjp
def _select_bins_fast(sels, tables):
    return _chain(sels, tables)


def _fwd(sels, tables):
    return _chain(sels, tables), (sels, tables)


def _bwd(res, cts):
    sels, tables = res
    j = jnp.zeros(sels[0].shape, jnp.int32)
    for i, sel in enumerate(sels):
        j = jnp.where(sel, i + 1, j)
    k, p_shape = len(tables[0]), tables[0][0].shape
    m = math.prod(p_shape)
    g = _bin_sums(j.reshape(-1, m), jnp.stack(cts).reshape(len(cts), -1, m), k)
    g = g.reshape((len(cts), k) + p_shape)
    grads = tuple([g[n, i].astype(t[i].dtype) for i in range(k)] for n, t in enumerate(tables))
    return tuple(np.zeros(sel.shape, jax.dtypes.float0) for sel in sels), grads


_select_bins_fast.defvjp(_fwd, _bwd)


@dispatch("spline_bins", fast=_select_bins_fast)
def select_bins(sels: tuple[Array, ...], tables: tuple[list[Array], ...]) -> tuple[Array, ...]:
    """For each table (a list of K arrays shaped P, one per bin) its entry of the bin
    j = the last i with ``sels[i - 1]`` true (0 if none), broadcast to the selectors' shape
    (..., *P). ``sels``: K - 1 boolean arrays (..., *P), monotonic (sels[i] implies sels[i-1])."""
    return _chain(sels, tables)
