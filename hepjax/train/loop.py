"""The training loop: the thin shell around the pure, compiled steps.

``fit`` trains from a config and in-memory arrays into a run directory::

    workdir/config.json       the config, completed with every declared default
    workdir/spec.json         the resolved run spec (``hepjax.train.spec``: durations in steps...)
    workdir/run_info.json     seed, versions of jax/jaxlib/flax/optax..., host and devices
    workdir/metrics.jsonl     one JSON line per train log / validation evaluation
    workdir/checkpoints/      last ``keep`` periodic orbax checkpoints (state + loop metadata)
    workdir/best/             the best checkpoint by the validation metric

If ``workdir`` already holds checkpoints, ``fit`` resumes from the newest. Batches are a pure
function of the step and steps are pure, so a run killed at any point (even SIGKILL) and resumed
ends bit-identical to one that never stopped.

Several processes (``hepjax.parallel.distributed.initialize``, a mesh over all devices): every
process runs ``fit`` with the same config and data; each reads the step's global batch (the same
rows in the same order as a single-process run) and transfers only the rows its own devices hold
(``shard_global_batch``), so the run matches a single-process one on as many devices. Only
process 0 writes config.json, run_info.json and metrics.jsonl; every process takes part in the
orbax saves, where process 0 writes the metadata.
"""
from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np
import tqdm

from hepjax import config as config_lib
from hepjax import optim, rng
from hepjax.data.pipeline import TrainBatches, eval_batches
from hepjax.parallel import mesh as mesh_lib
from hepjax.train import logging as log_lib
from hepjax.train import spec as spec_lib
from hepjax.train.checkpoint import Checkpointer
from hepjax.train.state import init_ensemble, init_state
from hepjax.train.step import Task, compile_steps


class NonFiniteError(FloatingPointError):
    """Raised when the loss, gradients or parameters stop being finite."""


def _scalar_metrics(metrics) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        value = np.asarray(value)
        out[name] = float(value.mean()) if name != "finite" else bool(value.all())
    return out


def check_finite(step: int, metrics: Mapping) -> None:
    """NaN/Inf guard: raises naming the step and which quantity (loss, gradient norm) went non-finite."""
    if bool(np.all(metrics["finite"])):
        return
    bad = [name for name in ("loss", "grad_norm") if not np.all(np.isfinite(metrics[name]))]
    what = " and ".join(bad)
    raise NonFiniteError(
        f"training step {step}: {what} became NaN/Inf (loss={np.asarray(metrics['loss']).tolist()}, "
        f"grad_norm={np.asarray(metrics['grad_norm']).tolist()}). Lower the learning rate, enable "
        "gradient clipping (config.optimizer.clip_norm) or check the inputs for extreme values.")


def evaluate(eval_step, state, arrays, batch_size: int, mesh, task: Task, ensemble: bool,
             return_outputs: bool = False, buckets=()):
    """Loss and the task's summary metrics over every example of ``arrays``; with
    ``return_outputs`` also the model outputs ((N, ...), or (K, N, ...) for an ensemble);
    ``buckets``: length buckets the batches are cut to (``hepjax.data.pipeline``)."""
    loss_sum = weight_sum = 0.0
    outputs = []
    for batch, n_valid in eval_batches(arrays, batch_size, buckets):
        loss, weight, out = eval_step(state, mesh_lib.shard_global_batch(batch, mesh))
        loss_sum = loss_sum + loss
        weight_sum = weight_sum + weight
        out = np.asarray(out)
        outputs.append(out[:, :n_valid] if ensemble else out[:n_valid])
    outputs = np.concatenate(outputs, axis=1 if ensemble else 0)
    labels = arrays.get("label")
    weights = arrays.get("weight")
    loss = np.asarray(loss_sum) / np.asarray(weight_sum)
    if not ensemble:
        result = {"loss": float(loss), **task.summarize(labels, outputs, weights)}
        return (result, outputs) if return_outputs else result
    members = [task.summarize(labels, member, weights) for member in outputs]
    result = {"loss": float(loss.mean()), "loss_members": loss.tolist()}
    for name in members[0]:
        values = np.array([m[name] for m in members], dtype=float)
        result[name] = float(values.mean())
        result[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    mean_ensemble = task.summarize(labels, outputs.mean(axis=0), weights)
    median_ensemble = task.summarize(labels, np.median(outputs, axis=0), weights)
    result.update({f"mean_ensemble_{k}": v for k, v in mean_ensemble.items()})
    result.update({f"median_ensemble_{k}": v for k, v in median_ensemble.items()})
    return (result, outputs) if return_outputs else result


def build_state(spec: spec_lib.RunSpec, model_fn, optimizer):
    """(graphdefs, state) for the spec's seed; an ensemble when ``spec.ensemble_size > 1``."""
    key = rng.key(spec.seed)
    if spec.ensemble:
        return init_ensemble(model_fn, optimizer, jax.random.split(key, spec.ensemble_size))
    return init_state(model_fn, optimizer, key)


class Fitted(NamedTuple):
    """What ``fit`` returns: the best (or last) state, the graphdefs, the last validation
    metrics, the compiled evaluation step (reused for testing: steps are compiled once per run)
    and the run spec."""
    state: Any
    graphdefs: Any
    last_eval: dict
    eval_step: Callable
    spec: spec_lib.RunSpec


def fit(config, workdir: str | pathlib.Path, *, task: Task, model_fn: Callable,
        optimizer, train_data: Mapping[str, np.ndarray], val_data: Mapping[str, np.ndarray],
        mesh=None, progress: bool | None = None, spec: spec_lib.RunSpec | None = None) -> Fitted:
    """Trains ``model_fn`` on ``train_data`` as ``spec`` says (default: ``config`` resolved for
    ``train_data``; ``optimizer`` must be built for the same spec's steps). ``spec.restore_step``
    > 0 resumes from that periodic checkpoint instead of the newest intact one."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if spec is None:
        spec = spec_lib.resolve(config, len(train_data["label"]))
    is_main = jax.process_index() == 0
    if is_main:
        (workdir / "config.json").write_text(config_lib.to_json(spec_lib.complete(config)))
        spec_lib.save(spec, workdir)
        if not (workdir / "run_info.json").exists():
            (workdir / "run_info.json").write_text(json.dumps(log_lib.run_info(spec.seed), indent=2))
    mesh = mesh if mesh is not None else mesh_lib.make_mesh(spec.num_devices)
    ensemble = spec.ensemble
    graphdefs, state = build_state(spec, model_fn, optimizer)
    state = mesh_lib.replicate(state, mesh)
    train_step, eval_step = compile_steps(graphdefs, task, optimizer, mesh, ensemble=ensemble,
                                          precision=spec.precision)

    es_cfg = spec.early_stopping
    stopper = optim.early_stopping(patience=int(es_cfg.patience), min_delta=float(es_cfg.min_delta),
                                   mode=es_cfg.mode)
    es_state = stopper.init()
    writer = log_lib.MetricsWriter(workdir, tensorboard=spec.tensorboard)
    ckpt = Checkpointer(workdir, keep=spec.keep_checkpoints)
    # the newest intact checkpoint (a corrupt one is skipped with a warning naming it), or the
    # one ``train.restore_step`` names
    restored = ckpt.restore_latest(state, step=spec.restore_step or None)
    if restored is not None:
        state, meta = restored
        es_state = type(es_state)(**meta["early_stopping"])
        writer.truncate_after(int(meta["step"]))
    start = int(np.asarray(state.step).reshape(-1)[0])

    # The global batch on every process; each places only its devices' rows (see the docstring).
    batches = TrainBatches(train_data, spec.batch_size, seed=spec.seed, buckets=spec.length_buckets,
                           sort_window=spec.length_sort_window)
    lengths = set()   # padded lengths met: one compilation of each step per length
    eval_bs = spec.eval_batch_size
    num_steps = spec.num_steps
    bar = tqdm.tqdm(total=num_steps, initial=start, unit="step", dynamic_ncols=True, mininterval=1.0,
                    disable=(not is_main) if progress is None else not progress)
    # Metrics stay on the device until a log, evaluation or checkpoint boundary; then one
    # transfer fetches them all and the NaN guard checks every step (naming the first bad one)
    # before anything is evaluated or saved. No per-step host sync.
    window, window_start, window_time = [], start, time.perf_counter()
    host_window = []
    last_eval = {}

    def meta_for(step):
        return {"step": step, "early_stopping": {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                                                  for k, v in es_state._asdict().items()}}

    def flush():
        fetched = jax.device_get([m for _, m in window])
        for (at, _), values in zip(window, fetched):
            check_finite(at, values)
        host_window.extend(fetched)
        window.clear()

    end = start if es_state.should_stop else num_steps  # a finished early-stopped run stays finished
    # One training step in flight on a CPU backend: XLA:CPU reserves an enqueued step's buffers
    # before it runs, so a queue of asynchronously dispatched steps multiplies the step's memory
    # (ParT at 128 jets x 128 particles: 8 GB resident with one step in flight, over 20 GB with
    # two). The next batch is prepared while the current step runs, then the loop waits for it.
    # Accelerators keep JAX's asynchronous dispatch (their allocators reserve in stream order).
    one_in_flight = jax.default_backend() == "cpu"
    batch = batches.batch(start) if start < end else None
    for step in range(start, end):
        if "mask" in batch:
            lengths.add(int(np.shape(batch["mask"])[1]))
        state, metrics = train_step(state, mesh_lib.shard_global_batch(batch, mesh))
        batch = batches.batch(step + 1) if step + 1 < end else None
        if one_in_flight:
            jax.block_until_ready(metrics)
        window.append((step, metrics))
        done = step + 1
        evaluate_now = done % spec.eval_every == 0 or done == num_steps
        save_now = done % spec.checkpoint_every == 0 or done == num_steps
        log_now = done % spec.log_every == 0 or done == num_steps
        if evaluate_now or save_now or log_now:
            flush()
        if log_now:
            elapsed = time.perf_counter() - window_time
            scalars = [_scalar_metrics(m) for m in host_window]
            record = {k: float(np.mean([m[k] for m in scalars])) for k in scalars[0] if k != "finite"}
            record["examples_per_s"] = (done - window_start) * spec.batch_size / max(elapsed, 1e-9)
            writer.write(done, "train", record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", ex_s=f"{record['examples_per_s']:.0f}")
            host_window.clear()
            window_start, window_time = done, time.perf_counter()
        bar.update(1)
        if evaluate_now:
            last_eval = evaluate(eval_step, state, val_data, eval_bs, mesh, task, ensemble,
                                 buckets=spec.length_buckets)
            writer.write(done, "val", last_eval)
            es_state, improved = stopper.update(es_state, last_eval[es_cfg.metric], done)
            if improved:
                ckpt.save_best(done, state, meta_for(done))
        if save_now or es_state.should_stop:
            ckpt.save(done, state, meta_for(done))
        if evaluate_now or save_now:
            window_time = time.perf_counter()  # throughput counts training steps only
        if es_state.should_stop:
            writer.write(done, "early_stop", {"best_step": es_state.best_step, "best": es_state.best})
            break
    bar.close()
    if spec.length_buckets and lengths:
        # how many shapes the training step was compiled for in this session (one per bucket)
        writer.write(done, "buckets", {"train_lengths": sorted(lengths)})
    if es_cfg.restore_best and ckpt.best_step() is not None:
        best = ckpt.restore_best(state)   # None (with a warning) if no best checkpoint is intact
        if best is not None:
            state, _ = best
    ckpt.close()
    return Fitted(state, graphdefs, last_eval, eval_step, spec)
