"""Graph building on fixed-size point sets: all-to-all, radius, kNN and LSH bins.

Sets are dense, padded arrays: coordinates (B, N, D) (any feature space, learned ones included)
with a boolean mask (B, N) (False = padding). Neighbourhoods come in the *dense* form

    idx   (B, N, k) int32   index j of the neighbours of point i (in [0, N))
    valid (B, N, k) bool    False where the slot holds no real neighbour

which avoids scatters (``gather_neighbours`` turns it into (B, N, k, C) features). Padded points
are never neighbours of anything and have no valid neighbours themselves; a point with fewer
than k real neighbours gets ``valid=False`` in the spare slots. ``to_edge_list`` converts the dense
form to (senders, receivers, edge_mask) over the B*N flattened nodes for the segment-op blocks.

``k`` is static. Ties in distance are broken by lax.top_k (lowest index first).
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from hepjax.physics.kinematics import delta_phi

Array = jax.Array

__all__ = ["pairwise_sq_distances", "eta_phi_sq_distances", "knn", "radius_neighbours",
           "all_to_all", "gather_neighbours", "to_edge_list", "lsh_permutation", "knn_in_bins"]


def pairwise_sq_distances(x: Array) -> Array:
    """Squared euclidean distances (..., N, D) -> (..., N, N), clamped at 0.

    Uses |x_i|^2 + |x_j|^2 - 2 x_i.x_j (one matmul) for D > 3 and explicit differences otherwise
    (exact for the low-dimensional coordinates of the first ParticleNet / GravNet layers).
    """
    if x.shape[-1] <= 3:
        diff = x[..., :, None, :] - x[..., None, :, :]
        return jnp.sum(diff * diff, axis=-1)
    sq = jnp.sum(x * x, axis=-1)
    inner = jnp.einsum("...id,...jd->...ij", x, x)
    return jnp.maximum(sq[..., :, None] + sq[..., None, :] - 2.0 * inner, 0.0)


def eta_phi_sq_distances(x: Array) -> Array:
    """Delta R^2 from (..., N, 2) columns (eta, phi) with the phi difference wrapped to [-pi, pi)."""
    deta = x[..., :, None, 0] - x[..., None, :, 0]
    dphi = delta_phi(x[..., :, None, 1], x[..., None, :, 1])
    return deta * deta + dphi * dphi


def _check_set(coords, mask, where):
    if coords.ndim < 2:
        raise ValueError(f"{where}: coords must be (..., N, D), got shape {tuple(coords.shape)}")
    if tuple(mask.shape) != tuple(coords.shape[:-1]):
        raise ValueError(f"{where}: mask must have shape coords.shape[:-1] = "
                         f"{tuple(coords.shape[:-1])}, got {tuple(mask.shape)}")


def _masked_distances(coords, mask, exclude_self, distance_fn):
    mask = jnp.asarray(mask, bool)
    d = distance_fn(coords)
    n = coords.shape[-2]
    allowed = mask[..., None, :]
    if exclude_self:
        allowed = allowed & ~jnp.eye(n, dtype=bool)
    return jnp.where(allowed, d, jnp.inf), allowed


def knn(coords: Array, mask: Array, k: int, *, exclude_self: bool = True,
        distance_fn: Callable[[Array], Array] = pairwise_sq_distances) -> tuple[Array, Array]:
    """The k nearest neighbours of every point, (idx, valid) each (..., N, k), nearest first.

    coords (..., N, D); mask (..., N) bool. Distances come from ``distance_fn`` (default squared
    euclidean; ``eta_phi_sq_distances`` wraps phi). Padded points get +inf distance, so they are
    chosen only when fewer than k real candidates exist, and then flagged ``valid=False``.
    """
    _check_set(coords, mask, "knn")
    n = coords.shape[-2]
    limit = n - 1 if exclude_self else n
    if not 0 < k <= limit:
        raise ValueError(f"knn: k={k} must be in [1, {limit}] for sets of N={n} points "
                         f"(exclude_self={exclude_self})")
    # neighbour indices are piecewise constant in the coordinates: no gradient flows through them
    d, _ = _masked_distances(jax.lax.stop_gradient(coords), mask, exclude_self, distance_fn)
    neg, idx = jax.lax.top_k(-d, k)
    valid = jnp.isfinite(neg) & jnp.asarray(mask, bool)[..., None]
    return idx.astype(jnp.int32), valid


def radius_neighbours(coords: Array, mask: Array, radius: float, max_neighbours: int, *,
                      exclude_self: bool = True,
                      distance_fn: Callable[[Array], Array] = pairwise_sq_distances):
    """Neighbours within ``radius`` (distance_fn gives squared distances), at most
    ``max_neighbours`` (the nearest), as (idx, valid) (..., N, max_neighbours)."""
    _check_set(coords, mask, "radius_neighbours")
    n = coords.shape[-2]
    k = min(max_neighbours, n - 1 if exclude_self else n)
    d, _ = _masked_distances(jax.lax.stop_gradient(coords), mask, exclude_self, distance_fn)
    neg, idx = jax.lax.top_k(-d, k)
    valid = (-neg <= radius * radius) & jnp.asarray(mask, bool)[..., None]
    return idx.astype(jnp.int32), valid


def all_to_all(mask: Array, *, self_loops: bool = False) -> Array:
    """Dense adjacency (..., N, N) bool of the complete graph on the real points:
    adj[i, j] = mask[i] & mask[j] (& i != j unless self_loops)."""
    mask = jnp.asarray(mask, bool)
    adj = mask[..., :, None] & mask[..., None, :]
    if not self_loops:
        adj = adj & ~jnp.eye(mask.shape[-1], dtype=bool)
    return adj


def gather_neighbours(x: Array, idx: Array) -> Array:
    """Neighbour features (B, N, C), idx (B, N, k) -> (B, N, k, C): out[b, i, a] = x[b, idx[b, i, a]]."""
    if x.ndim != 3 or idx.ndim != 3 or x.shape[0] != idx.shape[0]:
        raise ValueError(f"gather_neighbours: expected x (B, N, C) and idx (B, N, k), got "
                         f"{tuple(x.shape)} and {tuple(idx.shape)}")
    return jax.vmap(lambda xb, ib: xb[ib])(x, idx)


def to_edge_list(idx: Array, valid: Array) -> tuple[Array, Array, Array]:
    """Dense neighbours (B, N, k) -> edge list over the B*N flattened nodes (node b*N + i).

    Returns senders (B*N*k,) = neighbour j, receivers (B*N*k,) = point i, edge_mask (B*N*k,).
    Messages flow neighbour -> point, so ``segment_*(…, receivers, B*N)`` aggregates
    each point's neighbourhood.
    """
    b, n, k = idx.shape
    offset = (jnp.arange(b, dtype=jnp.int32) * n)[:, None, None]
    senders = (idx + offset).reshape(-1)
    receivers = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[None, :, None] + offset,
                                 (b, n, k)).reshape(-1)
    return senders, receivers, valid.reshape(-1)


def lsh_permutation(coords: Array, mask: Array, projections: Array) -> Array:
    """Locality-sensitive ordering of one set (MLPF-style): (N, D), (N,), (D, P) -> perm (N,).

    Each point's code is argmax([c R, -c R]) in [0, 2P) (random rotation hashing); points are
    sorted by code, ties by their first projection; padded points sort last. Chunking the sorted
    order into fixed-size bins groups nearby points together. Apply to batches with jax.vmap.
    """
    proj = coords @ projections
    codes = jnp.argmax(jnp.concatenate([proj, -proj], axis=-1), axis=-1)
    codes = jnp.where(jnp.asarray(mask, bool), codes, 2 * projections.shape[-1])
    # lexsort: primary key code, secondary the first projection (keeps bins spatially compact)
    order = jnp.lexsort((proj[:, 0], codes))
    return order.astype(jnp.int32)


def knn_in_bins(coords: Array, mask: Array, k: int, bin_size: int, projections: Array, *,
                exclude_self: bool = False,
                distance_fn: Callable[[Array], Array] = pairwise_sq_distances):
    """kNN restricted to LSH bins of ``bin_size`` points, for one set: (N, D), (N,) -> (idx, valid)
    (N, k) in the original point order. Cost O(N * bin_size), linear in N. N must be a multiple
    of bin_size (pad the set). Sort into bins, dense kNN per bin, undo the permutation."""
    _check_set(coords, mask, "knn_in_bins")
    n = coords.shape[0]
    if n % bin_size:
        raise ValueError(f"knn_in_bins: N={n} points is not a multiple of bin_size={bin_size}; "
                         "pad the set to a multiple")
    perm = lsh_permutation(coords, mask, projections)
    nb = n // bin_size
    binned = coords[perm].reshape(nb, bin_size, coords.shape[-1])
    bmask = jnp.asarray(mask, bool)[perm].reshape(nb, bin_size)
    local, valid = knn(binned, bmask, k, exclude_self=exclude_self, distance_fn=distance_fn)
    glob = jax.vmap(lambda p, l: p[l])(perm.reshape(nb, bin_size), local).reshape(n, k)
    inv = jnp.argsort(perm)
    return glob[inv], valid.reshape(n, k)[inv]
