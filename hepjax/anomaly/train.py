"""A small seeded training loop for unsupervised models (autoencoders, JetCLR).

``fit(model, loss_fn, arrays, ...)`` minimises ``loss_fn(model, batch, key)`` with Adam over
shuffled mini-batches of ``arrays`` (a tuple of arrays sharing their first axis). The batches
come from ``numpy.random.default_rng(seed)`` epoch permutations and the per-step key from
``jax.random.fold_in(PRNGKey(seed), step)``, so the same seed gives bit-identical parameters.
The step is one ``jax.jit`` of a pure function of the model state (``nnx.split``/``merge``);
non-parameter state the model mutates (e.g. batch statistics) is carried along.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = ["fit", "apply_batched"]


def _as_tuple(arrays) -> tuple[np.ndarray, ...]:
    arrays = tuple(arrays) if isinstance(arrays, (tuple, list)) else (arrays,)
    if not arrays:
        raise ValueError("fit: no training arrays given")
    n = len(arrays[0])
    if n == 0:
        raise ValueError("fit: the training arrays hold no examples")
    for i, a in enumerate(arrays):
        if len(a) != n:
            raise ValueError(f"fit: training array {i} has {len(a)} rows, array 0 has {n}")
    return arrays


def fit(model: nnx.Module, loss_fn: Callable, arrays: Sequence[np.ndarray] | np.ndarray, *,
        steps: int, batch_size: int = 128, learning_rate: float = 1e-3, seed: int = 0,
        weight_decay: float = 0.0, log_every: int = 0, progress: Callable | None = None
        ) -> list[float]:
    """Trains ``model`` in place; returns the mean loss of each ``log_every`` steps (or of
    all steps when ``log_every`` is 0)."""
    arrays = _as_tuple(arrays)
    n = len(arrays[0])
    batch_size = min(int(batch_size), n)
    if steps < 1:
        raise ValueError(f"fit: steps={steps} must be >= 1")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(learning_rate, weight_decay=weight_decay) if weight_decay else \
        optax.adam(learning_rate)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, rest, opt_state, batch, key):
        def loss(p):
            m = nnx.merge(graphdef, p, rest)
            value = loss_fn(m, batch, key)
            return value, nnx.state(m, nnx.Not(nnx.Param))

        (value, new_rest), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_rest, opt_state, value

    rng = np.random.default_rng(seed)
    base = jax.random.PRNGKey(seed)
    order, pos = rng.permutation(n), 0
    history, window = [], []
    for i in range(steps):
        if pos + batch_size > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        batch = tuple(jnp.asarray(a[idx]) for a in arrays)
        params, rest, opt_state, value = step(params, rest, opt_state, batch,
                                              jax.random.fold_in(base, i))
        window.append(value)
        if log_every and (i + 1) % log_every == 0:
            history.append(float(np.mean(jax.device_get(window))))
            window = []
            if progress is not None:
                progress(i + 1, history[-1])
    if window:
        history.append(float(np.mean(jax.device_get(window))))
    if not np.isfinite(history[-1]):
        raise FloatingPointError(f"fit: the training loss became {history[-1]}; lower the "
                                 "learning rate or check the inputs")
    nnx.update(model, params, rest)
    return history


def apply_batched(fn: Callable, arrays, batch_size: int = 1024) -> np.ndarray:
    """``fn(*batch)`` (a jitted per-example function) over ``arrays`` in batches, concatenated."""
    arrays = _as_tuple(arrays)
    n = len(arrays[0])
    out = []
    for start in range(0, n, batch_size):
        out.append(np.asarray(fn(*(jnp.asarray(a[start:start + batch_size]) for a in arrays))))
    return np.concatenate(out)
