"""Segment reductions over edges (or nodes) with a static number of segments.

All functions take ``data`` (E, ...) and ``segment_ids`` (E,) int in [0, num_segments) and return
(num_segments, ...). ``num_segments`` must be a Python int (static), so the output shape is known
at trace time and XLA fuses the scatter. An optional boolean ``mask`` (E,) drops entries (padded
edges) from every reduction. Ids outside [0, num_segments) are dropped (jax.ops behaviour).

Empty segments (no unmasked entry) give 0 for sum, mean, max and min — never -inf or NaN, in value
or gradient — so padded nodes stay finite.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["segment_sum", "segment_count", "segment_mean", "segment_max", "segment_min",
           "segment_softmax"]


def _check(data, segment_ids, num_segments, mask, where):
    if not isinstance(num_segments, int) or isinstance(num_segments, bool):
        raise TypeError(f"{where}: num_segments must be a static Python int, got {num_segments!r}")
    if segment_ids.ndim != 1 or segment_ids.shape[0] != data.shape[0]:
        raise ValueError(f"{where}: segment_ids must have shape (data.shape[0],) = ({data.shape[0]},), "
                         f"got {tuple(segment_ids.shape)}")
    if mask is not None and tuple(mask.shape) != (data.shape[0],):
        raise ValueError(f"{where}: mask must have shape ({data.shape[0]},), got {tuple(mask.shape)}")


def _bcast(mask, data):
    return jnp.reshape(jnp.asarray(mask, bool), mask.shape + (1,) * (data.ndim - 1))


def segment_sum(data: Array, segment_ids: Array, num_segments: int, mask: Array | None = None) -> Array:
    """out[s] = sum of data[e] over unmasked e with segment_ids[e] == s."""
    _check(data, segment_ids, num_segments, mask, "segment_sum")
    if mask is not None:
        data = jnp.where(_bcast(mask, data), data, jnp.zeros((), data.dtype))
    return jax.ops.segment_sum(data, segment_ids, num_segments)


def segment_count(segment_ids: Array, num_segments: int, mask: Array | None = None,
                  dtype=jnp.float32) -> Array:
    """Number of unmasked entries per segment, (num_segments,)."""
    ones = jnp.ones(segment_ids.shape, dtype)
    return segment_sum(ones, segment_ids, num_segments, mask)


def segment_mean(data: Array, segment_ids: Array, num_segments: int, mask: Array | None = None) -> Array:
    """Mean over each segment's unmasked entries; 0 for empty segments."""
    total = segment_sum(data, segment_ids, num_segments, mask)
    count = segment_count(segment_ids, num_segments, mask, data.dtype)
    return total / jnp.maximum(count, 1).reshape((num_segments,) + (1,) * (data.ndim - 1))


def _segment_extreme(data, segment_ids, num_segments, mask, op, fill, where):
    _check(data, segment_ids, num_segments, mask, where)
    if mask is not None:
        data = jnp.where(_bcast(mask, data), data, jnp.asarray(fill, data.dtype))
    out = op(data, segment_ids, num_segments)
    count = segment_count(segment_ids, num_segments, mask, jnp.int32)
    nonempty = (count > 0).reshape((num_segments,) + (1,) * (data.ndim - 1))
    return jnp.where(nonempty, out, jnp.zeros((), data.dtype))


def segment_max(data: Array, segment_ids: Array, num_segments: int, mask: Array | None = None) -> Array:
    """Maximum over each segment's unmasked entries; 0 for empty segments."""
    return _segment_extreme(data, segment_ids, num_segments, mask, jax.ops.segment_max,
                            -jnp.inf, "segment_max")


def segment_min(data: Array, segment_ids: Array, num_segments: int, mask: Array | None = None) -> Array:
    """Minimum over each segment's unmasked entries; 0 for empty segments."""
    return _segment_extreme(data, segment_ids, num_segments, mask, jax.ops.segment_min,
                            jnp.inf, "segment_min")


def segment_softmax(logits: Array, segment_ids: Array, num_segments: int,
                    mask: Array | None = None) -> Array:
    """Softmax of ``logits`` (E, ...) within each segment: exp(l_e - max_s) / sum_{e' in s} exp(...).

    Returns (E, ...); masked entries get exactly 0 and are left out of the normalisation. The
    per-segment maximum is subtracted (under stop_gradient) for numerical stability.
    """
    _check(logits, segment_ids, num_segments, mask, "segment_softmax")
    seg_max = jax.lax.stop_gradient(segment_max(logits, segment_ids, num_segments, mask))
    shifted = logits - seg_max[segment_ids]
    if mask is not None:
        shifted = jnp.where(_bcast(mask, logits), shifted, -jnp.inf)
    ex = jnp.exp(shifted)
    denom = jax.ops.segment_sum(ex, segment_ids, num_segments)[segment_ids]
    return ex / jnp.where(denom > 0, denom, 1.0)
