"""The training state: one pytree holding everything a step reads and writes.

A Flax NNX model is split at the functional boundary into a static ``graphdef`` (kept outside
the state, it never changes) and two pytrees: ``params`` (``nnx.Param`` leaves, what the optimiser
updates) and ``model_state`` (everything else: batch-norm statistics, the dropout stream's key and
counter). Merging them back (``nnx.merge``) inside the pure step gives a live module again.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx


class TrainState(NamedTuple):
    """step: int32 scalar; params / model_state: nnx.State pytrees; opt_state: optax state;
    key: the run's base PRNG key (per-step keys are ``fold_in(key, step)``)."""

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    key: jax.Array


class Graphdefs(NamedTuple):
    """Static module structure in training mode (dropout on, batch stats updated) and eval mode."""

    train: Any
    eval: Any


def split_model(model: nnx.Module) -> tuple[Graphdefs, Any, Any]:
    """(graphdefs, params, model_state) of a live module; leaves the module in eval mode."""
    model.train()
    graph_train, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    graph_eval, _, _ = nnx.split(model, nnx.Param, ...)
    return Graphdefs(graph_train, graph_eval), params, rest


def init_state(model_fn: Callable[[nnx.Rngs], nnx.Module], optimizer: optax.GradientTransformation,
               key: jax.Array) -> tuple[Graphdefs, TrainState]:
    """Builds the model from ``key`` and the matching TrainState.

    ``model_fn(rngs)`` constructs the module; its parameters come from the ``params`` stream and
    its dropout from the ``dropout`` stream, both derived from ``key``.
    """
    graphdefs, _ = _abstract_graphdefs(model_fn)
    params, rest = _init_arrays(model_fn, key)
    return graphdefs, TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=rest,
                                 opt_state=optimizer.init(params), key=key)


def init_ensemble(model_fn, optimizer, keys: jax.Array) -> tuple[Graphdefs, TrainState]:
    """K independently seeded states stacked on a leading axis (``keys``: shape (K,)), for vmap."""
    graphdefs, _ = _abstract_graphdefs(model_fn)

    def one(key):
        params, rest = _init_arrays(model_fn, key)
        return TrainState(jnp.zeros((), jnp.int32), params, rest, optimizer.init(params), key)

    return graphdefs, jax.vmap(one)(keys)


def _model_keys(key):
    params_key, dropout_key = jax.random.split(jax.random.fold_in(key, 0))
    return nnx.Rngs(params=params_key, dropout=dropout_key)


def _init_arrays(model_fn, key):
    model = model_fn(_model_keys(key))
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return params, rest


def _abstract_graphdefs(model_fn):
    # Build once on abstract values to read the static structure without computing anything.
    holder = {}

    def build(key):
        model = model_fn(_model_keys(key))
        holder["graphdefs"], params, rest = split_model(model)
        return params, rest

    shapes = jax.eval_shape(build, jax.random.key(0))
    return holder["graphdefs"], shapes


def count_params(params) -> int:
    """Number of scalar parameters in a params pytree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))
