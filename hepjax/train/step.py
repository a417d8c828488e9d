"""Pure training and evaluation steps, compiled once.

A *task* says what the model is trained to do; a *step* applies one optimiser update:

    loss_fn(model, batch, key) -> (scalar loss, dict of scalar metrics)
    predict_fn(model, batch)   -> per-example outputs (e.g. signal scores), shape (B, ...)

``batch`` is a dict of arrays with a leading batch axis; ``batch["weight"]`` (B,) weights each
example and is 0 for padding, so every loss and statistic must be weighted by it. The steps take
and return a :class:`TrainState`; the state argument is donated (its buffers are reused).

Mixed precision (``precision="bfloat16"``, ``config.train.precision``): inside the forward pass the
float parameters and float model inputs are cast to bfloat16, so matrix products and activations
run in bf16; the model's outputs are cast back to float32 before the task's loss, so the loss,
its weighted reductions, the metrics, the gradients with respect to the float32 *master*
parameters, the optimiser state and the update all stay float32. ``label``, ``weight`` and the
four-momenta ``vectors`` are never cast (invariant masses from E^2 - p^2 cancel catastrophically
in bf16).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from hepjax.optim import current_learning_rate
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


PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
FLOAT32_FIELDS = ("label", "weight", "vectors")  # batch fields never cast to the compute dtype


def compute_dtype(precision: str):
    """The dtype of the forward pass for ``precision`` ('float32' or 'bfloat16')."""
    if precision not in PRECISIONS:
        raise ValueError(f"config.train.precision={precision!r}: expected one of {sorted(PRECISIONS)}")
    return PRECISIONS[precision]


def cast_floats(tree, dtype):
    """Every floating leaf of ``tree`` cast to ``dtype``; integer, bool and key leaves unchanged."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def cast_batch(batch: dict, dtype) -> dict:
    """The model inputs of ``batch`` in ``dtype``; ``FLOAT32_FIELDS`` stay as they are."""
    return {k: (v if k in FLOAT32_FIELDS else cast_floats(v, dtype)) for k, v in batch.items()}


class _Float32Outputs:
    """Wraps a module computing in bf16 so that calling it returns float32 outputs; attribute
    access goes to the module."""

    def __init__(self, module):
        self._module = module

    def __call__(self, *args, **kwargs):
        return cast_floats(self._module(*args, **kwargs), jnp.float32)

    def __getattr__(self, name):
        return getattr(self._module, name)


def _value_and_grad(graphdefs: Graphdefs, loss_fn: LossFn, params, model_state, batch, key,
                    precision: str = "float32"):
    if precision != "float32":
        return _value_and_grad_mixed(graphdefs, loss_fn, params, model_state, batch, key,
                                     compute_dtype(precision))
    return _value_and_grad_fp32(graphdefs, loss_fn, params, model_state, batch, key)


def _value_and_grad_mixed(graphdefs, loss_fn, params, model_state, batch, key, dtype):
    """As :func:`_value_and_grad_fp32` with a ``dtype`` forward pass; the gradient flows through
    the casts, so it arrives float32 with the master parameters' structure."""
    batch = cast_batch(batch, dtype)

    def loss_of(master):
        # copy=True: fresh NNX variables of this trace (batch statistics are mutated in it)
        model = nnx.merge(graphdefs.train, cast_floats(master, dtype), model_state, copy=True)
        loss, metrics = loss_fn(_Float32Outputs(model), batch, key)
        _, _, new_state = nnx.split(model, nnx.Param, ...)
        return loss.astype(jnp.float32), (cast_floats(metrics, jnp.float32), new_state)

    (loss, (metrics, new_state)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    # running statistics keep their float32 storage dtype
    new_state = jax.tree.map(
        lambda new, old: new.astype(old.dtype) if jnp.issubdtype(old.dtype, jnp.floating) else new,
        new_state, model_state)
    return (loss, metrics), grads, new_state


def _value_and_grad_fp32(graphdefs: Graphdefs, loss_fn: LossFn, params, model_state, batch, key):
    """((loss, metrics), grads, new model_state) of the module in training mode.

    ``nnx.value_and_grad`` differentiates with respect to the ``nnx.Param`` leaves and carries
    the module's mutable state (batch statistics, the dropout counter) through the transform.
    """
    model = nnx.merge(graphdefs.train, params, model_state)
    (loss, metrics), grads = nnx.value_and_grad(
        lambda m: loss_fn(m, batch, key), has_aux=True)(model)
    _, _, model_state = nnx.split(model, nnx.Param, ...)
    return (loss, metrics), grads, model_state


def train_step_fn(graphdefs: Graphdefs, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                  precision: str = "float32"):
    """The pure, uncompiled step ``(state, batch) -> (state, metrics)``; ``precision`` is the
    forward pass's ('float32' or 'bfloat16', see the module docstring).

    metrics holds the task's metrics plus ``loss``, ``grad_norm``, ``finite`` (False if the loss
    or a gradient is NaN/Inf; the loop stops on it) and, for ``hepjax.optim.make_optimizer``
    chains, ``learning_rate`` (the rate this step's update applied).
    """

    compute_dtype(precision)  # validates the name before anything is traced

    def step(state: TrainState, batch):
        key = jax.random.fold_in(state.key, state.step)

        (loss, metrics), grads, model_state = _value_and_grad(
            graphdefs, loss_fn, state.params, state.model_state, batch, key, precision)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm,
                       finite=jnp.isfinite(loss) & jnp.isfinite(grad_norm))
        learning_rate = current_learning_rate(opt_state)
        if learning_rate is not None:   # the rate this update applied (optax.inject_hyperparams)
            metrics["learning_rate"] = learning_rate
        new_state = TrainState(state.step + 1, params, model_state, opt_state, state.key)
        return new_state, metrics

    return step


def eval_step_fn(graphdefs: Graphdefs, loss_fn: LossFn, predict_fn: PredictFn,
                 precision: str = "float32"):
    """Pure ``(state, batch) -> (weighted loss sum, weight sum, outputs)`` in eval mode; with
    ``precision='bfloat16'`` the forward pass runs in bf16 and loss and outputs are float32."""
    dtype = compute_dtype(precision)

    def step(state: TrainState, batch):
        mixed = dtype != jnp.float32
        params = cast_floats(state.params, dtype) if mixed else state.params
        model = nnx.merge(graphdefs.eval, params, state.model_state)
        if mixed:
            model, batch = _Float32Outputs(model), cast_batch(batch, dtype)
        loss, _ = loss_fn(model, batch, jax.random.fold_in(state.key, 2**31 - 1))  # eval: no dropout; key unused by most tasks
        weight_sum = jnp.sum(batch["weight"])
        return loss * weight_sum, weight_sum, cast_floats(predict_fn(model, batch), jnp.float32)

    return step


def compile_steps(graphdefs, task: Task, optimizer, mesh=None, ensemble: bool = False,
                  precision: str = "float32"):
    """jit-compiled (train_step, eval_step), sharded over ``mesh`` when given.

    With ``ensemble=True`` the state carries a leading axis of K independently seeded members and
    both steps are vmapped over it (every member sees the same batch): K trainings, one compile.
    ``precision``: the forward pass's, 'float32' or 'bfloat16' (module docstring).
    With several processes the evaluation outputs come back replicated (gathered over the data
    axis) so that every process can read them.
    """
    train = train_step_fn(graphdefs, task.loss_fn, optimizer, precision)
    evaluate = eval_step_fn(graphdefs, task.loss_fn, task.predict_fn, precision)
    if ensemble:
        train = jax.vmap(train, in_axes=(0, None))
        evaluate = jax.vmap(evaluate, in_axes=(0, None))
    if mesh is None or mesh.size == 1:  # one device: plain jit, no sharding annotations
        return jax.jit(train, donate_argnums=0), jax.jit(evaluate)
    repl, data = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
    out_axis = 1 if ensemble else 0
    out_sharding = jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(*([None] * out_axis), mesh_lib.DATA))
    if jax.process_count() > 1:
        out_sharding = repl
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
