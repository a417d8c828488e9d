"""Pure training and evaluation steps, compiled once.

A *task* says what the model is trained to do; a *step* applies one optimiser update:

    loss_fn(model, batch, key) -> (scalar loss, dict of scalar metrics)
    predict_fn(model, batch)   -> per-example outputs (e.g. signal scores), shape (B, ...)

``batch`` is a dict of arrays with a leading batch axis; ``batch["weight"]`` (B,) weights each
example and is 0 for padding, so every loss and statistic must be weighted by it. The steps take
and return a :class:`TrainState`; the state argument is donated (its buffers are reused).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from hepjax.parallel import mesh as mesh_lib
from hepjax.train.state import Graphdefs, TrainState

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]
PredictFn = Callable[[nnx.Module, dict], jax.Array]


class Task(NamedTuple):
    """loss_fn and predict_fn as above; ``summarize(labels, outputs, weights) -> dict`` runs on the
    host over a whole evaluation set (e.g. AUC, 1/eps_B)."""

    loss_fn: LossFn
    predict_fn: PredictFn
    summarize: Callable[..., dict]


def _value_and_grad(graphdefs: Graphdefs, loss_fn: LossFn, params, model_state, batch, key):
    """((loss, metrics), grads, new model_state) of the module in training mode.

    ``nnx.value_and_grad`` differentiates with respect to the ``nnx.Param`` leaves and carries
    the module's mutable state (batch statistics, the dropout counter) through the transform.
    """
    model = nnx.merge(graphdefs.train, params, model_state)
    (loss, metrics), grads = nnx.value_and_grad(
        lambda m: loss_fn(m, batch, key), has_aux=True)(model)
    _, _, model_state = nnx.split(model, nnx.Param, ...)
    return (loss, metrics), grads, model_state


def train_step_fn(graphdefs: Graphdefs, loss_fn: LossFn, optimizer: optax.GradientTransformation):
    """The pure, uncompiled step ``(state, batch) -> (state, metrics)``.

    metrics holds the task's metrics plus ``loss``, ``grad_norm`` and ``finite`` (False if the loss
    or a gradient is NaN/Inf; the loop stops on it).
    """

    def step(state: TrainState, batch):
        key = jax.random.fold_in(state.key, state.step)

        (loss, metrics), grads, model_state = _value_and_grad(
            graphdefs, loss_fn, state.params, state.model_state, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm,
                       finite=jnp.isfinite(loss) & jnp.isfinite(grad_norm))
        new_state = TrainState(state.step + 1, params, model_state, opt_state, state.key)
        return new_state, metrics

    return step


def eval_step_fn(graphdefs: Graphdefs, loss_fn: LossFn, predict_fn: PredictFn):
    """Pure ``(state, batch) -> (weighted loss sum, weight sum, outputs)`` in eval mode."""

    def step(state: TrainState, batch):
        model = nnx.merge(graphdefs.eval, state.params, state.model_state)
        loss, _ = loss_fn(model, batch, jax.random.fold_in(state.key, 2**31 - 1))  # eval: no dropout; key unused by most tasks
        weight_sum = jnp.sum(batch["weight"])
        return loss * weight_sum, weight_sum, predict_fn(model, batch)

    return step


def compile_steps(graphdefs, task: Task, optimizer, mesh=None, ensemble: bool = False):
    """jit-compiled (train_step, eval_step), sharded over ``mesh`` when given.

    With ``ensemble=True`` the state carries a leading axis of K independently seeded members and
    both steps are vmapped over it (every member sees the same batch): K trainings, one compile.
    """
    train = train_step_fn(graphdefs, task.loss_fn, optimizer)
    evaluate = eval_step_fn(graphdefs, task.loss_fn, task.predict_fn)
    if ensemble:
        train = jax.vmap(train, in_axes=(0, None))
        evaluate = jax.vmap(evaluate, in_axes=(0, None))
    if mesh is None or mesh.size == 1:  # one device: plain jit, no sharding annotations
        return jax.jit(train, donate_argnums=0), jax.jit(evaluate)
    repl, data = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
    out_axis = 1 if ensemble else 0
    out_sharding = jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(*([None] * out_axis), mesh_lib.DATA))
    train = jax.jit(train, in_shardings=(repl, data), out_shardings=(repl, repl), donate_argnums=0)
    evaluate = jax.jit(evaluate, in_shardings=(repl, data), out_shardings=(repl, repl, out_sharding))
    return train, evaluate


def pmap_train_step(graphdefs: Graphdefs, loss_fn: LossFn, optimizer, axis_name: str = "batch"):
    """The same update with ``jax.pmap``, for teaching (pmap is in maintenance mode in JAX).

    Each device computes the gradient of its shard's loss; ``lax.pmean`` averages gradients,
    loss and metrics across devices, so the update equals the jit step on the global batch when
    the per-shard losses are means over equally weighted, equally sized shards. Per-device
    model state (batch statistics) is averaged too; dropout masks differ from the jit step
    (each device draws its own), so compare the two on models without dropout.
    The state must carry a leading device axis (``jnp.stack([x] * n)`` per leaf) and the batch reshaped to
    (devices, B / devices, ...).
    """

    def step(state: TrainState, batch):
        key = jax.random.fold_in(state.key, state.step)

        (loss, metrics), grads, model_state = _value_and_grad(
            graphdefs, loss_fn, state.params, state.model_state, batch, key)
        grads = jax.lax.pmean(grads, axis_name)
        loss, metrics = jax.lax.pmean((loss, metrics), axis_name)
        model_state = jax.tree.map(
            lambda x: jax.lax.pmean(x, axis_name) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            model_state)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
        return TrainState(state.step + 1, params, model_state, opt_state, state.key), metrics

    return jax.pmap(step, axis_name=axis_name, donate_argnums=0)
