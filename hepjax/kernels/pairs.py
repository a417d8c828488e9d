"""Every unordered pair of a set once, and back to the symmetric (N, N) array.

References: the lower triangle i >= j of the full (N, N) pair array, gathered by index, and the
symmetric array rebuilt by the mirrored gather. Fast form, for XLA:CPU, which compiles per-pair
gathers into (P, B) gathers plus transposes: the "rectangular full packed" layout of LAPACK's
RFP format, built from three k x k blocks of pairs (N = 2k) by slices, pads and selects
(`rfp_pack`, `rfp_unpack`), the features computed block by block; the packed features and the
cotangents of the unpacking each computed once into a buffer of their own (the fast forms of
`hepjax.kernels.buffers`). The two forms order the pairs differently: read them back only
through `unpack_symmetric_pairs` in the same mode.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hepjax.kernels.buffers import materialize, materialize_cotangent
from hepjax.kernels.select import dispatch

Array = jax.Array

__all__ = ["symmetric_pairs", "unpack_symmetric_pairs", "rfp_pack", "rfp_unpack"]


def rfp_pack(a11: Array, a22: Array, a21: Array) -> Array:
    """Packs a symmetric (2k, 2k) array A, given by its blocks A11 = A[:k, :k], A22 = A[k:, k:]
    and A21 = A[k:, :k] on axes 1 and 2 (any leading batch axis 0 and trailing axes), into the
    (2k + 1, k) rectangle that holds every unordered pair (i, j) once, diagonal included:
        R[r, c] = A22[r, c] for r <= c < k,   R[r, c] = A11[r - 1, c] for c < r <= k,
        R[k + 1 + r, c] = A21[r, c].
    Only the upper triangle of A22 and the lower triangle of A11 are read. Slices, pads and one
    select: no gathers, and `rfp_unpack` inverts it the same way."""
    k = a11.shape[1]
    tail = (1,) * (a11.ndim - 3)
    upper = (np.arange(k + 1)[:, None] <= np.arange(k)[None, :]).reshape((1, k + 1, k) + tail)
    pad = [(0, 0)] * a11.ndim
    r1 = jnp.where(upper, jnp.pad(a22, pad[:1] + [(0, 1)] + pad[2:]),
                   jnp.pad(a11, pad[:1] + [(1, 0)] + pad[2:]))
    return jnp.concatenate([r1, a21], axis=1)


def rfp_unpack(packed: Array) -> Array:
    """(..., 2k + 1, k) of `rfp_pack` (pair axes last) -> the symmetric (..., 2k, 2k) array."""
    k = packed.shape[-1]
    upper = np.arange(k)[:, None] <= np.arange(k)[None, :]

    def mirror(t, keep):  # t where keep holds, its transpose elsewhere (t's keep-part, mirrored)
        return jnp.where(keep, t, jnp.swapaxes(t, -1, -2))
    a22 = mirror(packed[..., :k, :], upper)
    a11 = mirror(packed[..., 1:k + 1, :], upper.T)
    a21 = packed[..., k + 1:, :]
    top = jnp.concatenate([a11, jnp.swapaxes(a21, -1, -2)], axis=-1)
    return jnp.concatenate([top, jnp.concatenate([a21, a22], axis=-1)], axis=-2)


def _symmetric_pairs_fast(pair_fn, points, mask):
    if points.shape[-2] % 2:  # the packed layout takes an even count: one padded point more
        points = jnp.pad(points, ((0, 0), (0, 1), (0, 0)))
        mask = jnp.pad(mask, ((0, 0), (0, 1)))
    k = points.shape[-2] // 2
    lo, hi = (points[:, :k], mask[:, :k]), (points[:, k:], mask[:, k:])
    feats = rfp_pack(pair_fn(*lo), pair_fn(*hi), pair_fn(*hi, others=lo[0], others_mask=lo[1]))
    pmask = rfp_pack(*(a[:, :, None] & b[:, None, :]
                       for a, b in ((lo[1], lo[1]), (hi[1], hi[1]), (hi[1], lo[1]))))
    b = points.shape[0]
    # computed feature by feature (B, F, 2k + 1, k) into a buffer of its own, then made
    # pair-major: fused into their consumers as (B, P, F) the features were evaluated with an
    # F-wide inner axis and recomputed per consumer
    feats = materialize.fast(jnp.moveaxis(feats, -1, 1)).reshape(b, feats.shape[-1], -1)
    return jnp.moveaxis(feats, 1, -1), pmask.reshape(b, -1)


@dispatch("pairs", fast=_symmetric_pairs_fast)
def symmetric_pairs(pair_fn: Callable, points: Array, mask: Array) -> tuple[Array, Array]:
    """The features of every unordered pair {i, j} of points (i >= j, diagonal included), once.

    pair_fn(points (B, N, D), mask (B, N), others=None, others_mask=None) -> (B, N, M, F) gives
    the features of the pairs (a from points, b from others, or from points when others is
    None); `hepjax.physics.pairwise_features` is one. Returns (features (B, P, F), pair mask
    (B, P) = both points real), P = N (N + 1) / 2 (the fast form may hold more pairs, masked).
    The pairs are in the kernel's own order: `unpack_symmetric_pairs` maps per-pair values back
    to (N, N)."""
    i, j = np.tril_indices(points.shape[-2])
    return pair_fn(points, mask)[:, i, j], mask[:, i] & mask[:, j]


def _unpack_symmetric_pairs_fast(values, n):
    b, k = values.shape[0], (n + 1) // 2
    # the cotangent of the packed values, gathered from the full array's by the unpacking's
    # transposes, into a buffer of its own (not fused into the per-pair backward pass before it);
    # the full array's cotangent (the sum of its consumers') computed once, not inside the
    # unpacking
    packed = materialize_cotangent.fast(values.reshape(b, -1, 2 * k + 1, k))
    return materialize_cotangent.fast(rfp_unpack(packed))[:, :, :n, :n]


@dispatch("pairs", fast=_unpack_symmetric_pairs_fast)
def unpack_symmetric_pairs(values: Array, n: int) -> Array:
    """Per-pair values (B, C, P) in the order of `symmetric_pairs` -> the symmetric (B, C, N, N)
    array, entry (i, j) = entry (j, i) = the value of the pair {i, j}."""
    i, j = np.tril_indices(n)
    index = np.zeros((n, n), np.int32)
    index[i, j] = index[j, i] = np.arange(i.size)
    return values[..., index]
