"""Conditional denoising diffusion: DDPM (Ho, Jain, Abbeel, arXiv:2006.11239) with the
deterministic DDIM sampler (Song, Meng, Ermon, arXiv:2010.02502); for calorimeter showers as in
CaloDiffusion (Amram & Pedro, arXiv:2308.03876), here with an MLP noise predictor on the
preprocessed voxel vector instead of their 3-D U-Net.

Forward process, T steps of variances beta_1..beta_T (``cosine_betas``: Nichol & Dhariwal,
arXiv:2102.09672; ``linear_betas``: Ho et al.):

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s<=t} (1 - beta_s)

(``q_step`` and ``q_sample``; ``marginal_moments`` is the closed form, ``iterated_moments`` the
recursion mean_t = sqrt(1 - beta_t) mean_{t-1}, var_t = (1 - beta_t) var_{t-1} + beta_t that the
tests compare it with.) The network eps_theta(x_t, t, c) predicts the noise; the loss is
Ho et al.'s simple objective E |eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t, c)|^2
with t uniform.

Reverse process: ``ddpm_sample`` is ancestral sampling with all T steps,
x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t) + sigma_t z with the
posterior variance sigma_t^2 = beta_t (1 - abar_{t-1}) / (1 - abar_t); ``ddim_sample`` the DDIM
update on a sub-sequence of S << T steps (eta = 0: deterministic given x_T),
x_{t'} = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') eps_theta, x0_hat = (x_t - sqrt(1 - abar_t)
eps_theta) / sqrt(abar_t).

Time index convention: arrays are 0-based, index i is step t = i + 1 (``betas[i]`` = beta_{i+1}).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hepjax.models.generative.nets import TimeResMLP

Array = jax.Array

__all__ = ["cosine_betas", "linear_betas", "Schedule", "make_schedule", "q_sample", "q_step",
           "marginal_moments", "iterated_moments", "Diffusion", "diffusion_loss", "ddpm_sample",
           "ddim_sample"]


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's schedule: abar(t) = cos^2((t/T + s) / (1 + s) pi / 2) / abar(0)."""
    t = np.arange(T + 1, dtype=np.float64) / T
    f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def linear_betas(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> np.ndarray:
    """Ho et al.'s schedule, scaled to T steps as beta_1 1000/T ... beta_T 1000/T."""
    scale = 1000.0 / T
    return np.linspace(beta_1 * scale, beta_T * scale, T, dtype=np.float64)


class Schedule(NamedTuple):
    betas: Array        # (T,)
    alphas: Array       # 1 - betas
    alpha_bar: Array    # cumulative products


def make_schedule(T: int, kind: str = "cosine") -> Schedule:
    if kind == "cosine":
        b = cosine_betas(T)
    elif kind == "linear":
        b = linear_betas(T)
    else:
        raise ValueError(f"schedule {kind!r}: use 'cosine' or 'linear'")
    return Schedule(jnp.asarray(b, jnp.float32), jnp.asarray(1 - b, jnp.float32),
                    jnp.asarray(np.cumprod(1 - b), jnp.float32))


def _bcast(v: Array, x: Array) -> Array:
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def q_sample(x0: Array, i: Array, eps: Array, sched: Schedule) -> Array:
    """A draw of q(x_t | x_0) at step index i (t = i + 1) with noise eps."""
    ab = _bcast(sched.alpha_bar[i], x0)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps


def q_step(x_prev: Array, i: Array, eps: Array, sched: Schedule) -> Array:
    """A draw of q(x_t | x_{t-1}) at step index i with noise eps."""
    b = _bcast(sched.betas[i], x_prev)
    return jnp.sqrt(1.0 - b) * x_prev + jnp.sqrt(b) * eps


def marginal_moments(x0, i: int, betas) -> tuple[np.ndarray, float]:
    """Closed-form mean and variance of q(x_t | x_0), t = i + 1 (float64, numpy)."""
    ab = float(np.prod(1.0 - np.asarray(betas, np.float64)[:i + 1]))
    return math.sqrt(ab) * np.asarray(x0, np.float64), 1.0 - ab


def iterated_moments(x0, i: int, betas) -> tuple[np.ndarray, float]:
    """The same moments by iterating q(x_t | x_{t-1}) from x_0 (a point mass) t times."""
    mean, var = np.asarray(x0, np.float64), 0.0
    for b in np.asarray(betas, np.float64)[:i + 1]:
        mean = math.sqrt(1.0 - b) * mean
        var = (1.0 - b) * var + b
    return mean, var


class Diffusion(nnx.Module):
    """eps_theta(x_t, t, c) for D-dimensional data with C conditions; the schedule (``T``,
    ``schedule``) is part of the model's static definition."""

    def __init__(self, dim: int, cond_features: int, *, T: int = 400, schedule: str = "cosine",
                 width: int = 256, depth: int = 3, time_dim: int = 64, rngs: nnx.Rngs):
        self.dim, self.T, self.schedule_kind = int(dim), int(T), schedule
        make_schedule(T, schedule)   # validate
        self.net = TimeResMLP(dim, cond_features, width=width, depth=depth, time_dim=time_dim,
                              rngs=rngs)

    @property
    def schedule(self) -> Schedule:
        return make_schedule(self.T, self.schedule_kind)

    def eps(self, x_t: Array, i: Array, cond: Array) -> Array:
        """Predicted noise at step indices i (B,) (t = i + 1, fed to the net as t / T)."""
        t = (jnp.asarray(i, jnp.float32) + 1.0) / self.T
        return self.net(x_t, jnp.broadcast_to(t, x_t.shape[:1]), cond)


def diffusion_loss(model: Diffusion, batch: tuple[Array, Array], key: Array) -> Array:
    """Ho et al.'s simple loss: mean squared error of the predicted noise (per dimension)."""
    x0, cond = batch
    k1, k2 = jax.random.split(key)
    i = jax.random.randint(k1, x0.shape[:1], 0, model.T)
    eps = jax.random.normal(k2, x0.shape, x0.dtype)
    x_t = q_sample(x0, i, eps, model.schedule)
    return jnp.mean((model.eps(x_t, i, cond) - eps) ** 2)


def ddpm_sample(model: Diffusion, key: Array, cond: Array) -> Array:
    """Ancestral sampling through all T steps (one sample per row of cond)."""
    s = model.schedule
    n = cond.shape[0]
    k0, key = jax.random.split(key)
    x = jax.random.normal(k0, (n, model.dim))
    ab_prev = jnp.concatenate([jnp.ones(1), s.alpha_bar[:-1]])

    def step(x, args):
        i, k = args
        eps = model.eps(x, jnp.full((n,), i), cond)
        mean = (x - s.betas[i] / jnp.sqrt(1.0 - s.alpha_bar[i]) * eps) / jnp.sqrt(s.alphas[i])
        var = s.betas[i] * (1.0 - ab_prev[i]) / (1.0 - s.alpha_bar[i])
        z = jax.random.normal(k, x.shape)
        return mean + jnp.where(i > 0, jnp.sqrt(var), 0.0) * z, None

    idx = jnp.arange(model.T - 1, -1, -1)
    x, _ = jax.lax.scan(step, x, (idx, jax.random.split(key, model.T)))
    return x


def ddim_sample(model: Diffusion, key: Array, cond: Array, steps: int = 25,
                eta: float = 0.0, x0_range: tuple[Array, Array] | None = None,
                start: int | None = None) -> Array:
    """DDIM on ``steps`` evenly spaced step indices from T-1 down to 0; ``eta`` = 0 is the
    deterministic sampler (Song et al. eq. 12), eta = 1 recovers DDPM's variance.

    ``x0_range`` = (lo, hi), arrays broadcastable to (D,): the predicted x0_hat is clipped to it
    at every step ("clip_denoised" of Ho et al.'s code). With the cosine schedule abar_T ~ 1e-8,
    so x0_hat = (x_T - sqrt(1 - abar_T) eps) / sqrt(abar_T) multiplies any error of eps by ~1e4
    at the first step; without the clip few-step DDIM can diverge. ``start``: the step index the
    sampler starts from with x ~ N(0, I) (default T - 1; a lower one skips the last, nearly pure
    noise steps where abar is tiny)."""
    s = model.schedule
    n = cond.shape[0]
    first = model.T - 1 if start is None else int(start)
    seq = np.unique(np.linspace(0, first, steps).round().astype(np.int64))[::-1]
    nxt = np.concatenate([seq[1:], [-1]])
    k0, key = jax.random.split(key)
    x = jax.random.normal(k0, (n, model.dim))
    ab_all = jnp.concatenate([s.alpha_bar, jnp.ones(1)])     # index -1 -> abar_0 = 1

    def step(x, args):
        i, j, k = args
        ab, ab_next = s.alpha_bar[i], ab_all[j]
        eps = model.eps(x, jnp.full((n,), i), cond)
        x0 = (x - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)
        if x0_range is not None:
            x0 = jnp.clip(x0, x0_range[0], x0_range[1])
            eps = (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)     # consistent with the clip
        sigma = eta * jnp.sqrt((1.0 - ab_next) / (1.0 - ab) * (1.0 - ab / ab_next))
        direction = jnp.sqrt(jnp.maximum(1.0 - ab_next - sigma ** 2, 0.0)) * eps
        return jnp.sqrt(ab_next) * x0 + direction + sigma * jax.random.normal(k, x.shape), None

    x, _ = jax.lax.scan(step, x, (jnp.asarray(seq), jnp.asarray(nxt),
                                  jax.random.split(key, len(seq))))
    return x
