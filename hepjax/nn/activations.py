"""Activation functions as pure jnp functions, plus a name -> function registry.

All functions act elementwise unless stated otherwise and accept arrays of any shape.
`softmax` / `log_softmax` take an optional boolean `where` mask (broadcastable to `x`) so that
padded entries of a fixed-size set get zero probability; a fully masked row gives all zeros,
never NaN, in both value and gradient.
"""
from __future__ import annotations

from collections.abc import Callable

import math

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = [
    "relu", "leaky_relu", "elu", "tanh", "sigmoid", "gelu", "gelu_tanh", "silu", "softplus",
    "identity", "maxout", "softmax", "log_softmax", "get_activation", "ACTIVATIONS",
]


def relu(x: Array) -> Array:
    """max(x, 0). The derivative at 0 is taken as 0 (as jax.nn.relu)."""
    return jax.nn.relu(x)


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    """x for x >= 0, negative_slope * x otherwise."""
    x = jnp.asarray(x)
    return jnp.where(x >= 0, x, negative_slope * x)


def elu(x: Array, alpha: float = 1.0) -> Array:
    """x for x > 0, alpha * (exp(x) - 1) otherwise (expm1, safe for large positive x)."""
    x = jnp.asarray(x)
    safe = jnp.where(x > 0, 0.0, x)  # keeps expm1 of large positive x out of the gradient
    return jnp.where(x > 0, x, alpha * jnp.expm1(safe))


def tanh(x: Array) -> Array:
    """Hyperbolic tangent."""
    return jnp.tanh(x)


def sigmoid(x: Array) -> Array:
    """Logistic function 1 / (1 + exp(-x))."""
    return jax.nn.sigmoid(x)


def gelu(x: Array, approximate: bool = False) -> Array:
    """Gaussian error linear unit x * Phi(x).

    approximate=False: exact, 0.5 x (1 + erf(x / sqrt 2)).
    approximate=True:  tanh form, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    Note jax.nn.gelu defaults to approximate=True; this one defaults to the exact form.
    """
    x = jnp.asarray(x)
    if approximate:
        c = jnp.sqrt(2.0 / jnp.pi).astype(x.dtype)
        return 0.5 * x * (1.0 + jnp.tanh(c * (x + 0.044715 * x ** 3)))
    return _gelu_exact(x)


@jax.custom_jvp
def _gelu_exact(x: Array) -> Array:
    return x * normal_cdf_pdf(x)[0]


def normal_cdf_pdf(x: Array) -> tuple[Array, Array]:
    """(Phi(x), phi(x)) of the standard normal, in x's dtype: the exact GELU x Phi(x) and its
    derivative Phi(x) + x phi(x) are built from them."""
    cdf = 0.5 * (1.0 + jax.lax.erf(x * jnp.asarray(1.0 / math.sqrt(2.0), x.dtype)))
    pdf = jnp.exp(-0.5 * x * x) * jnp.asarray(1.0 / math.sqrt(2.0 * math.pi), x.dtype)
    return cdf, pdf


@_gelu_exact.defjvp
def _gelu_exact_jvp(primals, tangents):
    # d/dx x Phi(x) = Phi(x) + x phi(x), written out: XLA's own derivative of the erf form
    # recomputes more and fuses worse (the pair embedding of ParT runs it on ~10^8 entries)
    (x,), (dx,) = primals, tangents
    cdf, pdf = normal_cdf_pdf(x)
    return x * cdf, (cdf + x * pdf) * dx


def gelu_tanh(x: Array) -> Array:
    """gelu(x, approximate=True)."""
    return gelu(x, approximate=True)


def silu(x: Array) -> Array:
    """x * sigmoid(x) (a.k.a. swish)."""
    return jax.nn.silu(x)


def softplus(x: Array) -> Array:
    """log(1 + exp(x)), numerically stable."""
    return jax.nn.softplus(x)


def identity(x: Array) -> Array:
    """Returns x unchanged (a 'linear' activation)."""
    return x


def maxout(x: Array, num_pieces: int, axis: int = -1) -> Array:
    """Maxout (Goodfellow et al. 2013): max over groups of `num_pieces` consecutive features.

    x has size F along `axis`, F divisible by num_pieces; output has size F // num_pieces there,
    output feature j = max(x[j*num_pieces : (j+1)*num_pieces]).
    """
    x = jnp.asarray(x)
    axis = axis % x.ndim
    size = x.shape[axis]
    if num_pieces < 1 or size % num_pieces != 0:
        raise ValueError(
            f"maxout: the size {size} of axis {axis} of x (shape {x.shape}) must be divisible by "
            f"num_pieces={num_pieces}; use a preceding layer with a multiple of num_pieces units")
    new_shape = x.shape[:axis] + (size // num_pieces, num_pieces) + x.shape[axis + 1:]
    return jnp.max(x.reshape(new_shape), axis=axis + 1)


def _masked_shift(x: Array, axis: int, where: Array | None):
    """Returns (x - max over unmasked, mask) with masked entries set to 0; max is stop-gradient."""
    x = jnp.asarray(x)
    if where is None:
        mask = jnp.ones(x.shape, bool)
    else:
        mask = jnp.broadcast_to(jnp.asarray(where, bool), x.shape)
    xmax = jnp.max(jnp.where(mask, x, -jnp.inf), axis=axis, keepdims=True)
    xmax = jax.lax.stop_gradient(jnp.where(jnp.isfinite(xmax), xmax, 0.0))
    shifted = jnp.where(mask, x - xmax, 0.0)
    return shifted, mask


def softmax(x: Array, axis: int = -1, where: Array | None = None) -> Array:
    """exp(x_i) / sum_j exp(x_j) along `axis`, over unmasked entries only.

    where: optional boolean mask broadcastable to x; False entries get probability 0 and do not
    enter the normalisation. A row with no True entry returns zeros (not NaN), with a zero
    (finite) gradient.
    """
    shifted, mask = _masked_shift(x, axis, where)
    e = jnp.where(mask, jnp.exp(shifted), 0.0)
    denom = jnp.sum(e, axis=axis, keepdims=True)
    return e / jnp.where(denom > 0, denom, 1.0)


def log_softmax(x: Array, axis: int = -1, where: Array | None = None) -> Array:
    """x_i - logsumexp(x) along `axis`, over unmasked entries only.

    Masked entries (and fully masked rows) are filled with 0 rather than -inf, so that
    multiplying by zero targets stays finite; gradients are NaN-free.
    """
    shifted, mask = _masked_shift(x, axis, where)
    e = jnp.where(mask, jnp.exp(shifted), 0.0)
    denom = jnp.sum(e, axis=axis, keepdims=True)
    lse = jnp.log(jnp.where(denom > 0, denom, 1.0))
    return jnp.where(mask, shifted - lse, 0.0)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "silu": silu,
    "swish": silu,
    "softplus": softplus,
    "identity": identity,
    "linear": identity,
}


def get_activation(name: str | Callable[[Array], Array]) -> Callable[[Array], Array]:
    """Maps a name (case-insensitive) to an elementwise activation; a callable is returned as is.

    Valid names: see `ACTIVATIONS` (relu, leaky_relu, elu, tanh, sigmoid, gelu, gelu_tanh, silu,
    swish, softplus, identity, linear). maxout and softmax change or couple features and are not
    in the registry; call them directly.
    """
    if callable(name):
        return name
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {name!r}; valid names are {sorted(ACTIVATIONS)} "
            "(or pass a callable)")
    return ACTIVATIONS[name.lower()]
