"""Config -> trained run directory, and run directory -> metrics: what ``hepjax train`` and
``hepjax evaluate`` do.

Preprocessing (log transforms of the listed features, then standardisation) is fitted on the
training split (over real particles only where the split has a ``mask``), saved as ``workdir/preprocessing.json`` and re-applied unchanged to validation,
test and any data evaluated later.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, NamedTuple

import jax
import numpy as np

from hepjax import config as config_lib
from hepjax import data as data_lib
from hepjax import optim, preprocessing
from hepjax.data.pipeline import eval_batches
from hepjax.models import model_fn_from_config
from hepjax.parallel import mesh as mesh_lib
from hepjax.train import spec as spec_lib
from hepjax.train.checkpoint import Checkpointer
from hepjax.train.loop import build_state, evaluate, fit
from hepjax.train.step import compile_steps
from hepjax.train.state import count_params
from hepjax.train.tasks import make_task


def _num_outputs(config) -> int:
    return 1 if config.task == "binary" else int(config.model.num_classes)


def _preprocessing(config, feature_names) -> preprocessing.Pipeline:
    cfg = config.preprocessing
    steps = []
    unknown = [n for n in cfg.log_features if n not in feature_names]
    if unknown:
        raise ValueError(f"config.preprocessing.log_features names {unknown}, not among the "
                         f"dataset's features {list(feature_names)}")
    if cfg.log_features:
        steps.append(preprocessing.LogTransform(
            tuple(feature_names.index(n) for n in cfg.log_features)))
    if cfg.standardize:
        steps.append(preprocessing.Standardize())
    return preprocessing.Pipeline(tuple(steps))


def _transform(fitted, split: dict) -> dict:
    out = dict(split)
    if fitted.pipeline.steps:
        out["features"] = np.asarray(fitted.transform(split["features"], split.get("mask")), np.float32)
    return out


def train(config, workdir, progress=None) -> dict:
    """Trains per ``config`` into ``workdir`` (resuming if it holds checkpoints); evaluates the
    best model on the test split; returns and writes ``test_metrics.json``. ``config`` is not
    modified: it is completed (``spec.complete``) and resolved (``spec.resolve``) once here."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = spec_lib.complete(config)
    splits = data_lib.load_splits(config.data)
    fitted = _preprocessing(config, tuple(splits["feature_names"])).fit(
        splits["train"]["features"], splits["train"].get("mask"))
    if jax.process_index() == 0:
        fitted.save(workdir / "preprocessing.json")
    train_data, val_data, test_data = (_transform(fitted, splits[s]) for s in data_lib.SPLITS)
    spec = spec_lib.resolve(config, len(train_data["label"]))
    if jax.process_index() == 0:
        sizes = {split: int(len(splits[split]["label"])) for split in data_lib.SPLITS}
        (workdir / "data_sizes.json").write_text(json.dumps(sizes))
    task = make_task(config)
    model_fn = model_fn_from_config(config.model, train_data["features"].shape[1:], _num_outputs(config))
    model_fn = _pretrained(config, model_fn, workdir)
    optimizer = _optimizer(config, spec)
    mesh = mesh_lib.make_mesh(spec.num_devices)
    run = fit(config, workdir, task=task, model_fn=model_fn, optimizer=optimizer,
              train_data=train_data, val_data=val_data, mesh=mesh, progress=progress, spec=spec)
    result, outputs = evaluate(run.eval_step, run.state, test_data, spec.eval_batch_size, mesh,
                               task, spec.ensemble, return_outputs=True, buckets=spec.length_buckets)
    if jax.process_index() == 0:
        (workdir / "test_metrics.json").write_text(json.dumps(result, indent=2))
        # the test outputs of the best model (what `predict_run` recomputes), and its size
        np.savez_compressed(workdir / "test_outputs.npz", outputs=outputs,
                            labels=np.asarray(test_data["label"]))
        (workdir / "model_info.json").write_text(json.dumps(
            {"params": count_params(run.state.params) // spec.ensemble_size,
             "ensemble_size": spec.ensemble_size, "num_steps": spec.num_steps}))
    return result


def _optimizer(config, spec: spec_lib.RunSpec):
    """The config's optimiser for the run's resolved length and epoch; with ``train.freeze`` or
    ``train.body_lr_scale != 1`` split into groups (``finetune.param_labels``): the head
    (``train.init_reinit`` patterns) at the full rate, the body's updates scaled by
    ``body_lr_scale``, frozen parameters never updated."""
    tx = optim.make_optimizer(config.optimizer, total_steps=spec.num_steps,
                              steps_per_epoch=spec.steps_per_epoch)
    tc = spec_lib.complete(config).train
    freeze, scale = tuple(tc.freeze), float(tc.body_lr_scale)
    if scale <= 0:
        raise ValueError(f"config.train.body_lr_scale={scale}: expected > 0 (use train.freeze "
                         "to keep parameters fixed)")
    if not freeze and scale == 1.0:
        return tx
    import optax

    from hepjax.train import finetune
    head = tuple(tc.init_reinit)
    return optax.multi_transform(
        {"head": tx, "body": optax.chain(tx, optax.scale(scale)), "frozen": optax.set_to_zero()},
        lambda params: finetune.param_labels(params, head, freeze))


def _pretrained(config, model_fn, workdir):
    """``model_fn`` building the model with ``train.init_from``'s parameters (those matching
    ``train.init_reinit`` excepted); checks that every ``freeze`` and ``init_reinit`` pattern
    names a parameter (a typo is an error, not a silently trained layer). Writes
    ``init_from.json`` (what was loaded) once."""
    tc = spec_lib.complete(config).train
    patterns = {"train.freeze": tuple(tc.freeze)}
    if tc.init_from:
        patterns["train.init_reinit"] = tuple(tc.init_reinit)
    from hepjax.train import finetune
    record = {}
    stored = finetune.restore_params(tc.init_from) if tc.init_from else None   # read eagerly
    stats = finetune.restore_batch_stats(tc.init_from) if tc.init_from else None

    def build(rngs):
        model = model_fn(rngs)
        names = finetune.param_paths(model)
        for field, pats in patterns.items():
            for pat in pats:
                if not any(finetune.matches(n, (pat,)) for n in names):
                    raise ValueError(f"config.{field}: pattern {pat!r} matches no parameter of "
                                     f"the model (paths look like {names[:3]})")
        if tc.init_from:
            info = finetune.load_pretrained(model, tc.init_from, reinit=tuple(tc.init_reinit),
                                            stored=stored, stored_stats=stats)
            if not record:
                record.update(info)
                if jax.process_index() == 0:
                    (pathlib.Path(workdir) / "init_from.json").write_text(json.dumps(
                        {"init_from": str(tc.init_from), **info}, indent=2))
        return model

    return build if (tc.init_from or tc.freeze) else model_fn


def load_eval_data(config, data_path: str | None = None) -> dict:
    """The arrays to evaluate on: the config's test split, an .npz (``features``, ``label``), or
    for top-tagging configs any reference-layout / native .h5 file (every jet in it)."""
    if data_path is None:
        return data_lib.load_splits(config.data, ("test",))["test"]
    if str(data_path).endswith(".npz"):
        classes = 2 if config.task == "binary" else _num_outputs(config)
        arrays = data_lib.read_npz(data_path, num_classes=classes)
        arrays.pop("feature_names", None)
        return arrays
    if config.data.name == "top_tagging":
        from hepjax.data import top_tagging
        return top_tagging.load_file(config.data, data_path)
    raise ValueError(f"--data {data_path}: for dataset {config.data.name!r} give an .npz with "
                     "'features' and 'label'")


class RestoredRun(NamedTuple):
    config: Any
    spec: spec_lib.RunSpec
    graphdefs: Any
    state: Any
    step: int
    fitted: preprocessing.FittedPipeline
    task: Any
    optimizer: Any


def restore_run(workdir, input_shape, which: str = "best", config=None) -> RestoredRun:
    """The run's config, preprocessing and model state from its best (or latest) checkpoint
    (``config``: the run's, if already read)."""
    workdir = pathlib.Path(workdir)
    config = _read_config(workdir) if config is None else config
    spec = spec_lib.load(workdir)
    fitted = preprocessing.FittedPipeline.load(workdir / "preprocessing.json")
    model_fn = model_fn_from_config(config.model, input_shape, _num_outputs(config))
    optimizer = _optimizer(config, spec)
    graphdefs, like = build_state(spec, model_fn, optimizer)
    ckpt = Checkpointer(workdir, keep=spec.keep_checkpoints)
    restored = ckpt.restore_best(like) if which == "best" else None
    restored = restored or ckpt.restore_latest(like)
    ckpt.close()
    if restored is None:
        raise FileNotFoundError(f"{workdir}: no checkpoint to evaluate (looked in best/ and checkpoints/)")
    state, meta = restored
    return RestoredRun(config, spec, graphdefs, state, int(meta["step"]), fitted, make_task(config),
                       optimizer)


def _read_config(workdir):
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{workdir}: no config.json here; is this a hepjax run directory?")
    return spec_lib.complete(config_lib.from_json(path.read_text()))


def _restored_steps(workdir, data_path, which, mesh_of, raw=None):
    """(run, raw arrays, preprocessed arrays, compiled eval step, mesh) of a finished run for
    evaluation on ``data_path`` (or on ``raw``, model inputs as ``load_eval_data`` returns them);
    ``config.json`` is read once."""
    config = _read_config(workdir)
    if raw is None:
        raw = load_eval_data(config, data_path)
    run = restore_run(workdir, raw["features"].shape[1:], which, config=config)
    mesh = mesh_of(run.spec)
    _, eval_step = compile_steps(run.graphdefs, run.task, run.optimizer, mesh,
                                 ensemble=run.spec.ensemble, precision=run.spec.precision)
    return run, raw, _transform(run.fitted, raw), eval_step, mesh


def evaluate_run(workdir, data_path: str | None = None, which: str = "best") -> dict:
    """Metrics of a finished run on its test split or on ``data_path`` (see ``load_eval_data``;
    raw inputs: the run's saved preprocessing is applied)."""
    workdir = pathlib.Path(workdir)
    run, _, arrays, eval_step, mesh = _restored_steps(
        workdir, data_path, which, lambda spec: mesh_lib.make_mesh(spec.num_devices))
    result = evaluate(eval_step, run.state, arrays, run.spec.eval_batch_size, mesh, run.task,
                      run.spec.ensemble, buckets=run.spec.length_buckets)
    result["checkpoint_step"] = run.step
    result["data"] = str(data_path) if data_path else "test split of the config"
    (workdir / "eval_metrics.json").write_text(json.dumps(result, indent=2))
    return result


def predict_run(workdir, data_path: str | None = None, which: str = "best", arrays=None):
    """(outputs, labels) of a finished run on its test split, ``data_path``, or ``arrays`` (model
    inputs before the run's preprocessing: ``features``, ``label`` and the dataset's other
    inputs, e.g. ``mask``): signal probabilities (N,) for binary tasks, class probabilities
    (N, C) for multi-class; with an ensemble, (K, N[, C]) per member."""
    run, raw, arrays, eval_step, _ = _restored_steps(workdir, data_path, which, lambda spec: None,
                                                     raw=arrays)
    ensemble = run.spec.ensemble
    outputs = []
    for batch, n_valid in eval_batches(arrays, run.spec.eval_batch_size, run.spec.length_buckets):
        out = np.asarray(eval_step(run.state, batch)[2])
        outputs.append(out[:, :n_valid] if ensemble else out[:n_valid])
    return np.concatenate(outputs, axis=1 if ensemble else 0), np.asarray(raw["label"])
