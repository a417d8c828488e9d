"""Seedable, jit-compiled training loops for the generative models.

The model is split once (``graphdef, params = nnx.split(model)``); ``chunk`` optimisation steps
run inside one ``jax.lax.scan`` under ``jax.jit`` (batches drawn on device from the whole
training array with ``jax.random.randint``; step k uses ``fold_in(key, k)``), so the Python
overhead per step is nil and a run is a function of (model seed, data, key). An exponential
moving average of the parameters (``ema``) is kept for sampling, as is usual for diffusion models.

``fit(model, loss_fn, data, ...)``: maximum-likelihood style models (flow, diffusion, VAE) with
``loss_fn(model, batch, key) -> scalar``. ``fit_wgan(generator, critic, data, ...)``: the WGAN-GP
schedule, ``n_critic`` critic steps per generator step (Gulrajani et al.: 5, Adam with
lr 1e-4, beta1 = 0, beta2 = 0.9).
"""
from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from hepjax.models.generative.gan import critic_loss, generator_loss

__all__ = ["fit", "fit_wgan", "make_sampler"]


def _schedule(lr: float, steps: int, warmup: int):
    warmup = max(1, min(warmup, steps // 2))
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(steps, warmup + 1), lr * 0.02)


def _batch(data, key, batch_size):
    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    idx = jax.random.randint(key, (batch_size,), 0, n)
    return jax.tree_util.tree_map(lambda a: a[idx], data)


def fit(model: nnx.Module, loss_fn: Callable, data, *, steps: int, batch_size: int, key,
        lr: float = 1e-3, warmup: int = 100, weight_decay: float = 0.0, clip: float = 1.0,
        ema: float = 0.0, chunk: int = 200, log: Callable | None = None):
    """Trains ``model`` in place of a copy; returns (trained model, EMA model or None,
    history [{"step", "loss", "time_s"}])."""
    graphdef, params = nnx.split(model)
    tx = optax.chain(optax.clip_by_global_norm(clip),
                     optax.adamw(_schedule(lr, steps, warmup), weight_decay=weight_decay))
    opt_state = tx.init(params)
    ema_params = params if ema > 0 else None
    data = jax.tree_util.tree_map(jnp.asarray, data)

    def one(carry, k):
        params, opt_state, ema_params = carry
        kb, kl = jax.random.split(k)
        batch = _batch(data, kb, batch_size)
        loss, grads = jax.value_and_grad(
            lambda p: loss_fn(nnx.merge(graphdef, p), batch, kl))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if ema_params is not None:
            ema_params = jax.tree_util.tree_map(lambda e, p: ema * e + (1 - ema) * p,
                                                ema_params, params)
        return (params, opt_state, ema_params), loss

    @jax.jit
    def run(carry, start, n_key):
        keys = jax.vmap(lambda s: jax.random.fold_in(n_key, s))(start + jnp.arange(chunk))
        carry, losses = jax.lax.scan(one, carry, keys)
        return carry, jnp.mean(losses)

    carry, history, t0 = (params, opt_state, ema_params), [], time.perf_counter()
    for start in range(0, steps, chunk):
        carry, loss = run(carry, start, key)
        row = {"step": start + chunk, "loss": float(loss), "time_s": time.perf_counter() - t0}
        history.append(row)
        if log:
            log(row)
    params, _, ema_params = carry
    return (nnx.merge(graphdef, params),
            nnx.merge(graphdef, ema_params) if ema_params is not None else None, history)


def fit_wgan(generator: nnx.Module, critic: nnx.Module, data, *, steps: int, batch_size: int,
             key, lr: float = 1e-4, n_critic: int = 5, gp_weight: float = 10.0,
             drift: float = 1e-3, betas=(0.0, 0.9), ema: float = 0.0, chunk: int = 50,
             log: Callable | None = None):
    """``steps`` generator steps (each after ``n_critic`` critic steps) on data (x, cond).
    Returns (generator, EMA generator or None, critic, history with the critic's Wasserstein
    estimate and gradient penalty)."""
    g_def, g_params = nnx.split(generator)
    c_def, c_params = nnx.split(critic)
    g_tx = optax.adam(lr, b1=betas[0], b2=betas[1])
    c_tx = optax.adam(lr, b1=betas[0], b2=betas[1])
    g_opt, c_opt = g_tx.init(g_params), c_tx.init(c_params)
    ema_params = g_params if ema > 0 else None
    data = jax.tree_util.tree_map(jnp.asarray, data)

    def critic_step(carry, k):
        c_params, c_opt, g_params = carry
        kb, kl = jax.random.split(k)
        batch = _batch(data, kb, batch_size)
        gen = nnx.merge(g_def, g_params)
        (loss, parts), grads = jax.value_and_grad(
            lambda p: critic_loss(nnx.merge(c_def, p), gen, batch, kl, gp_weight=gp_weight,
                                  drift=drift), has_aux=True)(c_params)
        updates, c_opt = c_tx.update(grads, c_opt, c_params)
        return (optax.apply_updates(c_params, updates), c_opt, g_params), parts

    def one(carry, k):
        g_params, c_params, g_opt, c_opt, ema_params = carry
        kc, kb, kg = jax.random.split(k, 3)
        (c_params, c_opt, _), parts = jax.lax.scan(critic_step, (c_params, c_opt, g_params),
                                                   jax.random.split(kc, n_critic))
        cond = _batch(data, kb, batch_size)[1]
        crit = nnx.merge(c_def, c_params)
        g_loss, grads = jax.value_and_grad(
            lambda p: generator_loss(nnx.merge(g_def, p), crit, cond, kg))(g_params)
        updates, g_opt = g_tx.update(grads, g_opt, g_params)
        g_params = optax.apply_updates(g_params, updates)
        if ema_params is not None:
            ema_params = jax.tree_util.tree_map(lambda e, p: ema * e + (1 - ema) * p,
                                                ema_params, g_params)
        out = {"wasserstein": parts["wasserstein"][-1], "gp": parts["gp"][-1], "g_loss": g_loss}
        return (g_params, c_params, g_opt, c_opt, ema_params), out

    @jax.jit
    def run(carry, start, n_key):
        keys = jax.vmap(lambda s: jax.random.fold_in(n_key, s))(start + jnp.arange(chunk))
        carry, outs = jax.lax.scan(one, carry, keys)
        return carry, jax.tree_util.tree_map(jnp.mean, outs)

    carry = (g_params, c_params, g_opt, c_opt, ema_params)
    history, t0 = [], time.perf_counter()
    for start in range(0, steps, chunk):
        carry, outs = run(carry, start, key)
        row = {"step": start + chunk, **{k: float(v) for k, v in outs.items()},
               "time_s": time.perf_counter() - t0}
        history.append(row)
        if log:
            log(row)
    g_params, c_params, _, _, ema_params = carry
    return (nnx.merge(g_def, g_params),
            nnx.merge(g_def, ema_params) if ema_params is not None else None,
            nnx.merge(c_def, c_params), history)


def make_sampler(model: nnx.Module, sample_fn: Callable, batch_size: int = 4096):
    """A jitted ``sampler(key, cond (N, C)) -> (N, D)`` that draws in fixed-size batches (the last
    one padded) with ``sample_fn(model, key, cond_batch)``; batch b uses fold_in(key, b)."""
    graphdef, params = nnx.split(model)

    @jax.jit
    def one(params, key, cond):
        return sample_fn(nnx.merge(graphdef, params), key, cond)

    def sampler(key, cond):
        cond = jnp.asarray(cond)
        n = cond.shape[0]
        out = []
        for b, start in enumerate(range(0, n, batch_size)):
            c = cond[start:start + batch_size]
            pad = batch_size - c.shape[0]
            if pad:
                c = jnp.concatenate([c, jnp.broadcast_to(c[-1:], (pad,) + c.shape[1:])])
            out.append(one(params, jax.random.fold_in(key, b), c)[:batch_size - pad])
        return jnp.concatenate(out) if out else jnp.zeros((0,))
    return sampler
