"""Dropout masks.

Reference: a Bernoulli keep mask drawn by jax.random (threefry), as `flax.nnx.Dropout` draws
it. Fast form: the mask comes from a keyed counter hash of each element's index, a handful of
integer operations with no state, so that XLA fuses it into the op that applies the mask (and
recomputes it in the backward pass) instead of writing a random array first; on XLA:CPU,
threefry masks for ParT's attention weights (10^7 per block) were a large part of a training
step. The two forms draw different masks from the same key, with the same distribution.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hepjax.kernels.select import dispatch

Array = jax.Array

__all__ = ["counter_hash_bits", "dropout"]


def _mix32(x: Array) -> Array:
    """C. Wellons' "lowbias32" integer finalizer: a bijection of uint32 with near-ideal avalanche
    (every input bit flips each output bit with probability ~1/2)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x21F0AAAD)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x735A2D97)
    return x ^ (x >> 15)


def counter_hash_bits(key: Array, shape: tuple[int, ...]) -> Array:
    """uint32 random bits of `shape` from a counter-based hash keyed by `key`.

    Element i (row-major index) gets mix(mix(i * 0x9E3779B9 + k0) ^ k1), with (k0, k1) two words
    drawn from `key` by jax.random (threefry) and mix = `_mix32`. For a fixed key the map from
    index to bits is a bijection of uint32 (no two of 2^32 elements collide); different keys
    give independent-looking streams. Not cryptographic, made for dropout masks."""
    k0, k1 = jax.random.bits(key, (2,), jnp.uint32)
    size = int(np.prod(shape)) if shape else 1
    if size >= 2**32:
        raise ValueError(f"counter_hash_bits: at most 2^32 elements per call, got shape {shape}")
    counter = jax.lax.iota(jnp.uint32, size).reshape(shape)
    return _mix32(_mix32(counter * jnp.uint32(0x9E3779B9) + k0) ^ k1)


def _dropout_fast(key: Array, rate: float, x: Array) -> Array:
    """Each entry kept when its `counter_hash_bits` word is below round(keep * 2^32), kept
    entries scaled by 2^32 / that threshold: unbiased exactly, the keep probability rounded to
    a multiple of 2^-32."""
    threshold = max(1, min(2**32 - 1, round((1.0 - rate) * 2**32)))
    keep = counter_hash_bits(key, x.shape) < jnp.uint32(threshold)
    scale = jnp.asarray(2.0**32 / threshold, x.dtype)
    return jnp.where(keep, x * scale, jnp.zeros_like(x))


@dispatch("dropout", fast=_dropout_fast)
def dropout(key: Array, rate: float, x: Array) -> Array:
    """x with each entry zeroed with probability `rate` (0 <= rate < 1) and the kept ones
    divided by 1 - rate, so that the expectation is x; the same key gives the same mask."""
    keep_prob = 1.0 - rate
    keep = jax.random.bernoulli(key, p=keep_prob, shape=x.shape)
    return jax.lax.select(keep, x / keep_prob, jnp.zeros_like(x))
