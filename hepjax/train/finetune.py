"""Pre-training and fine-tuning: load a checkpoint by path, replace the head, freeze by pattern.

"Pre-train on one dataset and recycle weights for training on new data" (G. Kasieczka's lecture
notes on machine learning in particle physics); the recipe of ParT's JetClass fine-tuning
(H. Qu, C. Li, S. Qian, "Particle Transformer for Jet Tagging", ICML 2022, arXiv:2202.03772:
the pre-trained network is loaded, its output layer replaced, and the whole network trained on
the new task with a smaller learning rate for the pre-trained part).

A checkpoint is an orbax checkpoint written by ``hepjax.train.checkpoint.Checkpointer`` (a
``TrainState`` whose ``params`` are the model's ``nnx.Param`` state, and a JSON ``meta``), in a
run directory that also holds ``config.json`` (the model config: ``hepjax.train.loop.fit`` and
``save_checkpoint`` write it). ``init_from`` may name

* a run directory (``.../run``): its ``best/`` checkpoint if there is one, else the newest of
  ``checkpoints/``;
* a manager directory (``.../run/checkpoints`` or ``.../run/best``): its newest step;
* one step (``.../run/checkpoints/1200``).

Parameters are addressed by their NNX state path joined with "/", e.g. ``cpf/convs/0/kernel``,
``dense/2/bias``, ``out/kernel`` (``param_paths(model)`` lists them). Patterns are Python
regular expressions matched with ``re.search`` against that path:

* ``load_pretrained(model, init_from, reinit=(r"^out/",))``: copies every checkpoint
  parameter into ``model`` except those matching ``reinit`` (they keep the fresh
  initialisation: the *replaced head*, whose shape may differ, e.g. 4 classes -> 2); a
  parameter that is missing from the checkpoint or has another shape is an error naming it.
  Batch-normalisation running statistics (``nnx.BatchStat``: ParticleNet's, DeepJet's) are
  copied the same way, as loading a PyTorch ``state_dict`` copies ``running_mean`` /
  ``running_var``: a fine-tuned network starts from the pre-trained normalisation instead of
  mean 0, variance 1 (a checkpoint written without them, e.g. by an older ``save_checkpoint``,
  leaves them as initialised and says so in the report). Other model state (the dropout
  stream's key) is never copied: it belongs to the new run's seed.
* ``optimizer(model, learning_rate, body_lr_scale=0.1, head=(r"^out/",), freeze=(...))``: an
  ``optax.multi_transform`` with three groups: ``head`` (full learning rate), ``body`` (learning
  rate x ``body_lr_scale``) and ``frozen`` (``optax.set_to_zero``: frozen parameters stay
  bit-identical, and no optimiser state is kept for them).
"""
from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hepjax.train.checkpoint import CheckpointError

__all__ = ["CheckpointError", "resolve_checkpoint", "read_config", "restore_params",
           "restore_batch_stats",
           "param_paths", "load_pretrained", "param_labels", "optimizer", "set_learning_rate",
           "save_checkpoint",
           "matches"]


def _path_str(path) -> str:
    """"cpf/convs/0/kernel" from a pytree path of an nnx.State (ending in .value) or of a
    restored checkpoint (ending in the key 'value')."""
    path = tuple(path)
    if path and isinstance(path[-1], jax.tree_util.DictKey) and path[-1].key == "value":
        path = path[:-1]
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.GetAttrKey):
            if k.name == "value":
                continue
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        else:
            parts.append(str(k))
    return "/".join(parts)


def param_paths(model: nnx.Module) -> list[str]:
    """The "/"-joined NNX state paths of the model's parameters, in tree order."""
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    return [_path_str(p) for p, _ in leaves]


def matches(path: str, patterns: Sequence[str]) -> bool:
    return any(re.search(p, path) for p in patterns)


def _step_dirs(manager_dir: pathlib.Path) -> list[pathlib.Path]:
    return sorted((d for d in manager_dir.iterdir() if d.is_dir() and d.name.isdigit()),
                  key=lambda d: int(d.name))


def resolve_checkpoint(init_from) -> pathlib.Path:
    """The step directory ``init_from`` names (see the module docstring); FileNotFoundError for
    a path that does not exist, CheckpointError for a directory that holds no checkpoint."""
    path = pathlib.Path(init_from).expanduser().absolute()   # orbax needs absolute paths
    if not path.exists():
        raise FileNotFoundError(f"init_from={str(init_from)!r}: no such file or directory "
                                "(expected a run directory, its checkpoints/ or best/, or a step)")
    if not path.is_dir():
        raise CheckpointError(f"init_from={str(init_from)!r} is a file, not a checkpoint "
                              "directory (a run directory, its checkpoints/ or best/, or a step)")
    if (path / "state").is_dir():
        return path
    for sub in ("best", "checkpoints"):
        if (path / sub).is_dir() and _step_dirs(path / sub):
            return _step_dirs(path / sub)[-1]
    steps = _step_dirs(path)
    if steps:
        return steps[-1]
    raise CheckpointError(f"init_from={str(init_from)!r}: no checkpoint there (no 'state' "
                          "item, no numbered step directories, no best/ or checkpoints/ with "
                          "steps)")


def read_config(init_from) -> dict | None:
    """The run's ``config.json`` (searched from the step directory upwards, at most three
    levels: step -> manager -> run), or None."""
    step = resolve_checkpoint(init_from)
    for d in (step, step.parent, step.parent.parent):
        if (d / "config.json").is_file():
            return json.loads((d / "config.json").read_text())
    return None


def restore_params(init_from) -> dict[str, np.ndarray]:
    """{path: array} of the parameters stored in the checkpoint ``init_from``."""
    return _restore(init_from, "params")


def restore_batch_stats(init_from) -> dict[str, np.ndarray]:
    """{path: array} of the non-parameter model state stored in the checkpoint ``init_from``
    (batch-norm statistics, also the dropout stream's key data: ``load_pretrained`` copies only
    the entries the model holds as ``nnx.BatchStat``); {} for a checkpoint without any."""
    return _restore(init_from, "model_state", required=False)


def _restore(init_from, field: str, required: bool = True) -> dict[str, np.ndarray]:
    import orbax.checkpoint as ocp

    from hepjax.train.checkpoint import _attempt

    step = resolve_checkpoint(init_from)

    def read(path):
        with ocp.StandardCheckpointer() as ckptr:
            return ckptr.restore(path)

    state, reason = _attempt(read, step / "state")   # collects orbax's stray reads on failure
    if reason is not None:
        raise CheckpointError(f"{step}: cannot restore the checkpoint ({reason})")
    if not isinstance(state, dict) or "params" not in state:
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{step}: the checkpoint has no 'params' (a hepjax TrainState "
                              f"was expected; found {found})")
    if field not in state and not required:
        return {}
    leaves = jax.tree_util.tree_flatten_with_path(state[field])[0]
    return {_path_str(p): np.asarray(v) for p, v in leaves}


def load_pretrained(model: nnx.Module, init_from, reinit: Sequence[str] = (),
                    stored: dict[str, np.ndarray] | None = None,
                    stored_stats: dict[str, np.ndarray] | None = None) -> dict:
    """Copies the checkpoint's parameters and batch-norm statistics into ``model`` (in
    place), except those whose path matches a ``reinit`` pattern (left as initialised: a
    replaced head). Returns {"loaded": [...], "reinitialised": [...], "unused": [checkpoint
    parameters not copied: re-initialised or absent from the model], "batch_stats_loaded":
    [...], "batch_stats_reinitialised": [...] (matching ``reinit``, or every one when the
    checkpoint holds none), "checkpoint": step directory}. Errors name the parameter or
    statistic: absent from the checkpoint, or a shape that differs. ``stored`` /
    ``stored_stats``: ``restore_params(init_from)`` / ``restore_batch_stats(init_from)`` read
    beforehand (orbax cannot restore inside a traced function, e.g. a model built under
    ``jax.eval_shape``)."""
    step = resolve_checkpoint(init_from)
    if stored is None:
        stored = restore_params(init_from)
    if stored_stats is None:
        stored_stats = restore_batch_stats(init_from)
    loaded, skipped = _copy_state(model, nnx.Param, stored, reinit, step, "parameter",
                                  listing=True)
    stats = nnx.state(model, nnx.BatchStat)
    names = [_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(stats)[0]]
    if names and not any(n in stored_stats for n in names):  # a checkpoint written without them
        stats_loaded, stats_skipped = [], names
    else:
        stats_loaded, stats_skipped = _copy_state(model, nnx.BatchStat, stored_stats, reinit,
                                                  step, "batch statistic", listing=False)
    return {"loaded": loaded, "reinitialised": skipped,
            "unused": sorted(set(stored) - set(loaded)), "batch_stats_loaded": stats_loaded,
            "batch_stats_reinitialised": stats_skipped, "checkpoint": str(step)}


def _copy_state(model, kind, stored, reinit, step, what: str, listing: bool):
    """Copies ``stored`` {path: array} into the model's ``kind`` state (in place), leaving the
    entries matching ``reinit`` as initialised; (loaded, reinitialised) paths. A missing entry
    or another shape is an error naming it (``what``: 'parameter', 'batch statistic')."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(nnx.state(model, kind))
    new, loaded, skipped = [], [], []
    for p, v in leaves:
        name = _path_str(p)
        if matches(name, reinit):
            new.append(v)
            skipped.append(name)
            continue
        if name not in stored:
            have = f" (it has {len(stored)}: {sorted(stored)[:4]} ...)" if listing else ""
            raise ValueError(f"{step}: the checkpoint has no {what} {name!r}{have}; add a reinit "
                             "pattern to initialise it afresh")
        s = stored[name]
        if s.shape != v.shape:
            hint = ("; add a reinit pattern (e.g. the head) or build the model with the "
                    "checkpoint's config") if listing else ""
            raise ValueError(f"{step}: {what} {name!r} has shape {s.shape} in the checkpoint "
                             f"and {tuple(v.shape)} in the model{hint}")
        new.append(jnp.asarray(s, dtype=v.dtype))
        loaded.append(name)
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))
    return loaded, skipped


def param_labels(params, head: Sequence[str] = (r"^out/",),
                 freeze: Sequence[str] = ()):
    """The optimiser group of each parameter ("frozen" if a ``freeze`` pattern matches, else
    "head" if a ``head`` pattern matches, else "body"), as a pytree like ``params``."""
    def label(p, _):
        name = _path_str(p)
        if matches(name, freeze):
            return "frozen"
        return "head" if matches(name, head) else "body"
    return jax.tree_util.tree_map_with_path(label, params)


def optimizer(learning_rate: float, *, body_lr_scale: float = 0.1,
              head: Sequence[str] = (r"^out/",), freeze: Sequence[str] = (),
              base: str = "adamw", weight_decay: float = 0.0,
              check_against: nnx.Module | None = None,
              inject: bool = False) -> optax.GradientTransformation:
    """optax.multi_transform over the groups of ``param_labels``: the head at
    ``learning_rate``, the body at ``learning_rate * body_lr_scale``, frozen parameters not
    updated at all. ``base``: "adamw" or "sgd". ``check_against``: a model whose parameter paths
    every pattern must match at least once (a typo in a pattern is an error, not a silently
    unfrozen network). ``inject=True``: the learning rates live in the optimiser state
    (``optax.inject_hyperparams``), so one compiled training step serves every learning-rate
    choice; change them with ``set_learning_rate``."""
    if check_against is not None:
        names = param_paths(check_against)
        for pat in tuple(head) + tuple(freeze):
            if not any(re.search(pat, n) for n in names):
                raise ValueError(f"pattern {pat!r} matches no parameter of the model (paths "
                                 f"look like {names[:3]})")

    def make(lr):
        if base == "adamw":
            fn, kw = optax.adamw, {"weight_decay": weight_decay}
        elif base == "sgd":
            fn, kw = optax.sgd, {}
        else:
            raise ValueError(f"base={base!r}; valid: 'adamw', 'sgd'")
        return optax.inject_hyperparams(fn)(learning_rate=lr, **kw) if inject else fn(lr, **kw)

    return optax.multi_transform(
        {"head": make(learning_rate), "body": make(learning_rate * body_lr_scale),
         "frozen": optax.set_to_zero()},
        lambda params: param_labels(params, head, freeze))


def set_learning_rate(opt_state, group: str, learning_rate: float):
    """Sets the learning rate of one group ("head" or "body") in the state of an
    ``optimizer(..., inject=True)``; returns the state."""
    inner = opt_state.inner_states[group]
    inner = getattr(inner, "inner_state", inner)
    if not hasattr(inner, "hyperparams"):
        raise ValueError("set_learning_rate needs the state of optimizer(..., inject=True)")
    inner.hyperparams["learning_rate"] = jnp.asarray(
        learning_rate, jnp.asarray(inner.hyperparams["learning_rate"]).dtype)
    return opt_state


def save_checkpoint(workdir, model: nnx.Module, config: dict, step: int = 0,
                    meta: dict | None = None) -> pathlib.Path:
    """Writes ``model``'s parameters as a ``TrainState`` checkpoint (``workdir/checkpoints/<step>``,
    via ``Checkpointer``) and ``workdir/config.json`` (the model config, so a fine-tuning run can
    rebuild the model from the path alone). Returns the step directory."""
    from hepjax.train.checkpoint import Checkpointer
    from hepjax.train.state import TrainState

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config, indent=1, default=_json_default))
    params = nnx.state(model, nnx.Param)
    state = TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                       model_state=nnx.state(model, nnx.BatchStat), opt_state={},
                       key=jax.random.key(0))
    ck = Checkpointer(workdir, keep=1)
    try:
        ck.save(int(step), state, dict(meta or {}))
    finally:
        ck.close()
    return workdir / "checkpoints" / str(int(step))


def _json_default(x):
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, (np.ndarray, tuple)):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
