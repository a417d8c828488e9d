"""Small building blocks shared by the generative models: a conditional MLP, a residual MLP with a
time embedding (the diffusion model's noise predictor) and the sinusoidal embedding.

All modules are Flax NNX with ``nnx.Param`` state only (no batch statistics, no dropout), so a
model is a pure function of its parameters: ``graphdef, params = nnx.split(model)`` and
``nnx.merge(graphdef, params)`` inside a jitted step (``hepjax.models.generative.training``).
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax.nn import Dense
from hepjax.nn import initializers as inits

Array = jax.Array

__all__ = ["ConditionalMLP", "TimeResMLP", "sinusoidal_embedding"]

_ACT = {"relu": jax.nn.relu, "silu": jax.nn.silu, "gelu": jax.nn.gelu, "elu": jax.nn.elu,
        "tanh": jnp.tanh, "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.2)}


def _act(name: str):
    if name not in _ACT:
        raise ValueError(f"activation {name!r}: choose one of {sorted(_ACT)}")
    return _ACT[name]


class ConditionalMLP(nnx.Module):
    """``mlp(x (B, in), cond (B, C) or None)`` -> (B, out): dense layers on concat(x, cond).

    ``zero_init_output``: the output layer starts at zero (a coupling layer then starts as the
    identity). ``layer_norm``: a LayerNorm after each hidden dense layer (no batch statistics:
    the critic of a WGAN-GP must not use batch normalisation, Gulrajani et al. 2017, sec. 4)."""

    def __init__(self, in_features: int, cond_features: int, hidden: Sequence[int],
                 out_features: int, *, activation: str = "silu", zero_init_output: bool = False,
                 layer_norm: bool = False, rngs: nnx.Rngs):
        self.act = _act(activation)
        self.cond_features = int(cond_features)
        widths = [in_features + cond_features, *hidden]
        kinit = inits.he_uniform if activation in ("relu", "leaky_relu", "elu", "silu",
                                                   "gelu") else inits.glorot_uniform
        self.hidden = nnx.List([Dense(a, b, kernel_init=kinit, rngs=rngs)
                                for a, b in zip(widths[:-1], widths[1:])])
        self.norms = nnx.List([nnx.LayerNorm(b, rngs=rngs) for b in hidden]) if layer_norm \
            else None
        self.out = Dense(widths[-1], out_features,
                         kernel_init=inits.zeros if zero_init_output else inits.glorot_uniform,
                         rngs=rngs)

    def __call__(self, x: Array, cond: Array | None = None) -> Array:
        if self.cond_features:
            if cond is None:
                raise ValueError("ConditionalMLP: this network needs a condition")
            x = jnp.concatenate([x, jnp.broadcast_to(cond, x.shape[:-1] + cond.shape[-1:])], -1)
        for i, layer in enumerate(self.hidden):
            x = layer(x)
            if self.norms is not None:
                x = self.norms[i](x)
            x = self.act(x)
        return self.out(x)


def sinusoidal_embedding(t: Array, dim: int, max_period: float = 10_000.0) -> Array:
    """Transformer-style embedding of (B,) times (any real scale) -> (B, dim)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], -1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros_like(emb[:, :1])], -1)
    return emb


class _ResBlock(nnx.Module):
    def __init__(self, width: int, emb: int, act, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.dense1 = Dense(width, width, kernel_init=inits.he_uniform, rngs=rngs)
        self.emb = Dense(emb, width, rngs=rngs)
        self.dense2 = Dense(width, width, kernel_init=inits.zeros, rngs=rngs)
        self.act = act

    def __call__(self, h, e):
        y = self.act(self.dense1(self.norm(h)) + self.emb(e))
        return h + self.dense2(y)


class TimeResMLP(nnx.Module):
    """``net(x (B, D), t (B,) in [0, 1], cond (B, C))`` -> (B, D): an input projection, ``depth``
    pre-norm residual blocks that each add a projection of the embedding of (t, cond), and a
    zero-initialised output layer (the noise predictor of the diffusion model)."""

    def __init__(self, dim: int, cond_features: int, *, width: int = 256, depth: int = 3,
                 time_dim: int = 64, activation: str = "silu", rngs: nnx.Rngs):
        self.act = _act(activation)
        self.time_dim = time_dim
        self.inp = Dense(dim, width, rngs=rngs)
        self.emb1 = Dense(time_dim + cond_features, width, kernel_init=inits.he_uniform,
                          rngs=rngs)
        self.emb2 = Dense(width, width, rngs=rngs)
        self.blocks = nnx.List([_ResBlock(width, width, self.act, rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.out = Dense(width, dim, kernel_init=inits.zeros, rngs=rngs)

    def __call__(self, x: Array, t: Array, cond: Array) -> Array:
        e = jnp.concatenate([sinusoidal_embedding(1000.0 * t, self.time_dim), cond], -1)
        e = self.emb2(self.act(self.emb1(e)))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, e)
        return self.out(self.act(self.norm(h)))
