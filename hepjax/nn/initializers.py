"""Weight initialisers with the textbook variances (Glorot & Bengio 2010; He et al. 2015).

Each public initialiser is a jax initializer `init(key, shape, dtype=jnp.float32) -> Array`.

Fans: a kernel of shape (..., n_in, n_out) has
    receptive_field = prod(shape[:-2])          (1 for a dense (n_in, n_out) kernel)
    fan_in  = n_in  * receptive_field
    fan_out = n_out * receptive_field
exactly as `jax.nn.initializers.variance_scaling` with its default in_axis=-2, out_axis=-1
(so a conv kernel (kh, kw, c_in, c_out) has fan_in = kh*kw*c_in).

Variances (the variance-preservation argument: Var(y) = n_in Var(w) Var(x) for y = sum_i w_i x_i,
so Var(w) = 1/n_in keeps the forward signal O(1); averaging with the backward pass gives
2/(n_in+n_out); ReLU zeroes half of its inputs, hence the extra factor 2 for He):
    glorot_normal : N(0, sigma^2),  sigma^2 = 2 / (fan_in + fan_out)
    glorot_uniform: U(-a, a),       a = sqrt(6 / (fan_in + fan_out))   (variance a^2/3)
    he_normal     : N(0, sigma^2),  sigma^2 = 2 / fan_in
    he_uniform    : U(-a, a),       a = sqrt(6 / fan_in)
    torch_uniform : U(-a, a),       a = 1 / sqrt(fan_in)               (variance 1 / (3 fan_in))

``torch_uniform`` is PyTorch's default for ``nn.Linear`` / ``nn.Conv*`` weights
(``kaiming_uniform_(a=sqrt(5))``), and ``fan_in_uniform_bias(fan_in)`` its default bias,
U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the scheme the published PyTorch taggers were trained with.
Its variance is a sixth of He's, so a ReLU stack shrinks its signal layer by layer; for sums
over many set elements (PFN, EFN) that is what keeps the pooled latent, and so the first loss,
O(1).

'normal' here is a plain (untruncated) Gaussian, as in the papers' formulas. This differs from
`jax.nn.initializers.glorot_normal` / `he_normal`, which draw from a normal truncated at +-2
sigma rescaled so that the *variance* still equals the formula; both have the same variance.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "compute_fans", "variance_scaling", "glorot_normal", "glorot_uniform", "he_normal",
    "he_uniform", "torch_uniform", "fan_in_uniform_bias", "normal", "zeros", "ones",
]


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a kernel of shape (..., n_in, n_out); see the module docstring."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(
            f"Fan-based initialisers need a kernel with at least 2 dims (..., n_in, n_out); got "
            f"shape {shape}. Initialise biases / 1-D parameters with zeros or ones instead.")
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def variance_scaling(scale: float, mode: str, distribution: str):
    """Initializer with Var(w) = scale / n, n = fan_in, fan_out or (fan_in+fan_out)/2.

    mode: 'fan_in' | 'fan_out' | 'fan_avg'; distribution: 'normal' (plain Gaussian) | 'uniform'.
    """
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"variance_scaling: mode={mode!r}; valid: 'fan_in', 'fan_out', 'fan_avg'")
    if distribution not in ("normal", "uniform"):
        raise ValueError(
            f"variance_scaling: distribution={distribution!r}; valid: 'normal', 'uniform'")

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": 0.5 * (fan_in + fan_out)}[mode]
        variance = scale / n
        if distribution == "normal":
            return math.sqrt(variance) * jax.random.normal(key, shape, dtype)
        limit = math.sqrt(3.0 * variance)
        return jax.random.uniform(key, shape, dtype, minval=-limit, maxval=limit)

    init.__doc__ = f"variance_scaling(scale={scale}, mode={mode!r}, distribution={distribution!r})"
    return init


glorot_normal = variance_scaling(1.0, "fan_avg", "normal")
glorot_normal.__doc__ = "w ~ N(0, 2/(fan_in+fan_out)), untruncated."
glorot_uniform = variance_scaling(1.0, "fan_avg", "uniform")
glorot_uniform.__doc__ = "w ~ U(-a, a), a = sqrt(6/(fan_in+fan_out))."
he_normal = variance_scaling(2.0, "fan_in", "normal")
he_normal.__doc__ = "w ~ N(0, 2/fan_in), untruncated."
he_uniform = variance_scaling(2.0, "fan_in", "uniform")
he_uniform.__doc__ = "w ~ U(-a, a), a = sqrt(6/fan_in)."
torch_uniform = variance_scaling(1.0 / 3.0, "fan_in", "uniform")
torch_uniform.__doc__ = "w ~ U(-a, a), a = 1/sqrt(fan_in) (PyTorch's nn.Linear default)."


def fan_in_uniform_bias(fan_in: int):
    """Bias initializer U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's nn.Linear default bias;
    ``fan_in`` is that of the layer's kernel)."""
    if int(fan_in) < 1:
        raise ValueError(f"fan_in_uniform_bias: fan_in must be >= 1, got {fan_in}")
    limit = 1.0 / math.sqrt(int(fan_in))

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-limit, maxval=limit)

    return init


def normal(stddev: float = 1.0):
    """Plain N(0, stddev^2) initializer, ignoring fans (the 'naive' init the variance argument
    above improves on)."""

    def init(key, shape, dtype=jnp.float32):
        return stddev * jax.random.normal(key, shape, dtype)

    return init


def zeros(key, shape, dtype=jnp.float32):
    """All zeros (key unused)."""
    del key
    return jnp.zeros(shape, dtype)


def ones(key, shape, dtype=jnp.float32):
    """All ones (key unused)."""
    del key
    return jnp.ones(shape, dtype)
