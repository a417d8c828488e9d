"""Values computed once, into a buffer of their own.

XLA fuses elementwise producers into every consumer; when one large intermediate feeds several
consumers (ParT's pair bias, read by 8 attention blocks) or a gather, it may be recomputed per
consumer or read through a transposed layout each time. References: the identity. Fast forms
(XLA:CPU): an identity `lax.cond`, which is a fusion boundary there (XLA:CPU drops
`lax.optimization_barrier` before fusion), so the value is computed once. On a GPU a
conditional costs a device-to-host sync and the fusion choices differ.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from hepjax.kernels.select import dispatch

Array = jax.Array

__all__ = ["materialize", "materialize_cotangent"]


def _materialize_fast(x: Array) -> Array:
    """Same value bit for bit (NaN included); the predicate reads one element."""
    return jax.lax.cond(jnp.isnan(x[(0,) * x.ndim]), lambda t: t + 0.0, lambda t: t, x)


@dispatch("materialize", fast=_materialize_fast)
def materialize(x: Array) -> Array:
    """x, unchanged (the fast form computes it once, in the default row-major layout)."""
    return x


@jax.custom_vjp
def _materialize_cotangent_fast(x: Array) -> Array:
    return x


def _cotangent_fwd(x):
    return x, None


def _cotangent_bwd(_, g):
    return (_materialize_fast(g),)


_materialize_cotangent_fast.defvjp(_cotangent_fwd, _cotangent_bwd)


@dispatch("materialize", fast=_materialize_cotangent_fast)
def materialize_cotangent(x: Array) -> Array:
    """x, unchanged, with the identity as its derivative. The fast form computes the incoming
    cotangent once into its own buffer: where x feeds several consumers (the pair bias of
    ParT's 8 particle blocks) XLA would otherwise recompute each consumer's backward pass
    inside the sum of their cotangents."""
    return x
