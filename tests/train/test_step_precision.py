"""Mixed precision (config.train.precision='bfloat16'): the forward pass computes in bf16 while the
master parameters, optimiser state, loss, metrics and gradient all-reduces stay float32; the
bf16 step tracks the float32 step closely and compiles once."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hepjax import data as data_lib
from hepjax.nn import MLP
from hepjax.parallel import make_mesh, replicate, shard_batch
from hepjax.train import state as state_lib, step as step_lib, tasks


def _batch(n=64, seed=0):
    data = data_lib.dijet.generate(n, seed)
    features = (data["features"] - data["features"].mean(0)) / data["features"].std(0)
    return {"features": features.astype(np.float32), "label": data["label"].astype(np.float32),
            "weight": np.ones(n, np.float32)}


def _setup(norm=None, dropout=0.0):
    optimizer = optax.adam(1e-3)
    graphdefs, state = state_lib.init_state(
        lambda r: MLP(10, (32, 32), 1, norm=norm, dropout=dropout, rngs=r), optimizer, jax.random.key(3))
    return optimizer, graphdefs, state


def _dtypes(tree):
    return {str(x.dtype) for x in jax.tree.leaves(tree)}


def test_bf16_step_keeps_float32_state_and_tracks_float32():
    optimizer, graphdefs, state = _setup(norm="batch", dropout=0.1)
    task = tasks.binary_classification()
    fp32, _ = step_lib.compile_steps(graphdefs, task, optimizer, precision="float32")
    bf16, _ = step_lib.compile_steps(graphdefs, task, optimizer, precision="bfloat16")
    before = jax.tree.map(lambda x: x.dtype, state)
    initial = jax.device_get(state.params)
    s32, s16 = state, jax.tree.map(jnp.copy, state)  # the steps donate their state
    for i in range(5):
        s32, m32 = fp32(s32, _batch(seed=i))
        s16, m16 = bf16(s16, _batch(seed=i))
        assert m16["loss"].dtype == jnp.float32 and m16["grad_norm"].dtype == jnp.float32
        rel = abs(float(m16["loss"]) - float(m32["loss"])) / float(m32["loss"])
        assert 0 < rel < 2e-2, rel  # bf16 rounding is visible but small
    # master params, optimiser moments and batch statistics keep their float32 storage
    assert jax.tree.map(lambda x: x.dtype, s16) == before
    assert _dtypes(s16.params) == {"float32"} and "bfloat16" not in _dtypes(s16.opt_state)
    # the float32 updates are not rounded to bf16: parameters move by less than a bf16 ulp
    moved = np.concatenate([np.abs(np.asarray(a) - np.asarray(b)).ravel()
                            for a, b in zip(jax.tree.leaves(s16.params), jax.tree.leaves(initial))])
    assert np.sum((moved > 0) & (moved < 1e-4)) > 0
    # the bf16 trajectory stays close to the float32 one (Adam moves every weight by ~lr per
    # step, so compare the whole update: their difference is a small part of it)
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
    update32, update16 = flat(s32.params) - flat(initial), flat(s16.params) - flat(initial)
    assert np.linalg.norm(update16 - update32) < 0.25 * np.linalg.norm(update32)


def test_bf16_gradient_matches_float32_gradient_direction():
    optimizer, graphdefs, state = _setup()
    loss_fn = tasks.binary_classification().loss_fn
    batch = _batch(256)
    grads = {}
    for precision in ("float32", "bfloat16"):
        value_and_grad = jax.jit(lambda p, s, b, k: step_lib._value_and_grad(
            graphdefs, loss_fn, p, s, b, k, precision))
        (loss, _), g, _ = value_and_grad(state.params, state.model_state, batch, jax.random.key(0))
        assert loss.dtype == jnp.float32 and _dtypes(g) == {"float32"}
        grads[precision] = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
    a, b = grads["float32"], grads["bfloat16"]
    cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert 0.99 < cosine < 1.0 and not np.array_equal(a, b)


def test_bf16_forward_really_runs_in_bf16_and_all_reduces_are_float32():
    optimizer, graphdefs, state = _setup()
    mesh = make_mesh(8)
    batch = shard_batch(_batch(64), mesh)
    placed = replicate(state, mesh)
    texts = {}
    for precision in ("float32", "bfloat16"):
        train, _ = step_lib.compile_steps(graphdefs, tasks.binary_classification(), optimizer, mesh,
                                          precision=precision)
        lowered = train.lower(placed, batch)
        dots = re.findall(r"stablehlo.dot_general.*", lowered.as_text())
        texts[precision] = (dots, lowered.compile().as_text())
    dots32, _ = texts["float32"]
    dots16, hlo16 = texts["bfloat16"]
    assert dots32 and not any("bf16" in d for d in dots32)
    assert dots16 and all("bf16" in d for d in dots16)  # every matmul, forward and backward
    reduces = [line for line in hlo16.splitlines() if re.search(r"all-reduce(-start)?\(", line)]
    assert reduces and not any("bf16" in line.split("all-reduce")[0] for line in reduces)


def test_bf16_compiles_once_and_bad_precision_is_named():
    optimizer, graphdefs, state = _setup(dropout=0.2)
    traces = []
    task = tasks.binary_classification()

    def counting(model, batch, key):
        traces.append(1)
        return task.loss_fn(model, batch, key)

    train, evaluate = step_lib.compile_steps(graphdefs, task._replace(loss_fn=counting), optimizer,
                                             precision="bfloat16")
    for i in range(4):
        state, _ = train(state, _batch(seed=i))
    assert len(traces) == 1
    loss_sum, weight, scores = evaluate(state, _batch(seed=9))
    assert scores.dtype == jnp.float32 and loss_sum.dtype == jnp.float32 and float(weight) == 64
    with pytest.raises(ValueError, match="config.train.precision='float16'"):
        step_lib.compile_steps(graphdefs, task, optimizer, precision="float16")


def test_fit_honours_config_train_precision(tmp_path):
    from hepjax import config as config_lib
    from hepjax.train import loop

    data = _batch(512, seed=11)
    data.pop("weight")
    finals = {}
    for precision in ("float32", "bfloat16", "float16"):
        config = config_lib.load_config("hepjax.configs.dijet_mlp:smoke")
        config.train.num_steps, config.train.batch_size, config.train.precision = 8, 64, precision
        config.train.log_every = config.train.eval_every = config.train.checkpoint_every = 8
        kwargs = dict(task=tasks.binary_classification(), optimizer=optax.adam(1e-2),
                      model_fn=lambda r: MLP(10, (32,), 1, rngs=r), train_data=data, val_data=data,
                      progress=False)
        if precision == "float16":
            with pytest.raises(ValueError, match="config.train.precision='float16'"):
                loop.fit(config, tmp_path / precision, **kwargs)
            continue
        run = loop.fit(config, tmp_path / precision, **kwargs)
        state, last = run.state, run.last_eval
        finals[precision] = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params)])
        assert _dtypes(state.params) == {"float32"} and np.isfinite(last["loss"])
    a, b = finals["float32"], finals["bfloat16"]
    assert not np.array_equal(a, b)  # the switch reached the step
    assert np.linalg.norm(a - b) < 0.1 * np.linalg.norm(a)
