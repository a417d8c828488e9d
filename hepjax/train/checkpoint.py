"""Orbax checkpoints of a TrainState plus the loop's JSON metadata.

``workdir/checkpoints/<step>`` keeps the last ``keep`` periodic checkpoints; ``workdir/best/<step>``
keeps the single best one by the validation metric. Each holds the state and a JSON ``meta`` (the
early-stopping state, the best metric so far). Writes are synchronous and atomic (orbax writes to
a temporary directory and renames it), so a run killed at any moment resumes from the last
complete checkpoint. PRNG keys are stored as their raw key data and re-wrapped on restore.

Several processes: every process calls ``save`` and ``restore`` (they synchronise); each writes
the shards its devices hold and process 0 writes the metadata and the JSON ``meta``. A
checkpoint restores onto any device count and mesh: ``restore_*(like)`` reads each array
straight into ``like``'s sharding (abstract arrays carrying the target mesh), so a state saved
by 2 processes x 4 devices restores into one process on 1 or 8 devices, and vice versa.

A checkpoint can still go bad after it was written (a data file truncated or deleted by a disk,
a copy or a quota). ``restore_latest`` walks back from the newest step to the newest one that
restores, warning for each one it skips; ``restore_best`` does the same and returns None when no
best checkpoint restores. ``restore_latest(like, step=S)`` restores exactly step S. After a
restore at step S, the first save into each directory removes the checkpoints after S there
(skipped unreadable ones, or a later history the caller chose not to continue), so a new save
never collides with an old step and ``max_to_keep`` only ever drops checkpoints older than the
new ones: the newest intact checkpoint is kept until ``keep`` newer saves have completed (orbax
deletes old steps only after a save has committed). Every process must see the same files: a
step that fails on one process and restores on another is not handled.
"""
from __future__ import annotations

import gc
import pathlib
import re
import sys
import warnings

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _unwrap_keys(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _rewrap_keys(tree, like):
    return jax.tree.map(
        lambda x, ref: jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref)) if _is_key(ref) else x,
        tree, like)


class CheckpointError(ValueError):
    """No checkpoint to restore where one was asked for: every step unreadable, or no such step."""


def _reason(err: BaseException) -> str:
    """One short line for why a restore failed: the innermost error of the chain, without
    TensorStore's file paths and specs."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = re.sub(r' in OCDBT database at local file "[^"]*"', "", lines[0]) if lines else ""
    text = text or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _drop_stray_read_reports() -> None:
    """After a failed restore, orbax leaves the other array reads of that step pending on a closed
    event loop; as they finish or are garbage-collected, each prints through
    ``sys.unraisablehook`` (a 60-line TensorStore spec, or "Event loop is closed"), possibly much
    later. Installs, once per process, a hook that drops exactly those two reports and passes
    every other one to the hook it replaces. (orbax's read coroutine catches BaseException, so
    even their GeneratorExit becomes an Exception.)"""
    if getattr(sys.unraisablehook, "_hepjax_drops_stray_reads", False):
        return
    previous = sys.unraisablehook

    def hook(report):
        if getattr(report.object, "__name__", "") == "_read_array_index_and_device_put":
            return
        if (report.object is None and isinstance(report.exc_value, RuntimeError)
                and str(report.exc_value) == "Event loop is closed"):
            return
        previous(report)

    hook._hepjax_drops_stray_reads = True
    sys.unraisablehook = hook


def _attempt(restore, *args):
    """``restore(*args)`` -> (result, None), or (None, short reason) if it raises. The error is
    not kept: its traceback holds orbax's pending reads, which are collected here."""
    try:
        return restore(*args), None
    except Exception as err:  # noqa: BLE001 - TensorStore raises plain Exceptions
        reason = _reason(err)
    _drop_stray_read_reports()
    gc.collect()
    return None, reason


class Checkpointer:
    """Periodic (last ``keep``) and best checkpoints in one run directory."""

    def __init__(self, workdir: str | pathlib.Path, keep: int = 3):
        workdir = pathlib.Path(workdir).absolute()
        options = dict(enable_async_checkpointing=False, create=True)
        self._last = ocp.CheckpointManager(
            workdir / "checkpoints", options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options))
        self._best = ocp.CheckpointManager(
            workdir / "best", options=ocp.CheckpointManagerOptions(max_to_keep=1, **options))
        self._resumed_step = None   # the step restore_latest restored, until each manager saves
        self._pruned = set()        # names of the managers whose later steps are gone

    def _save(self, manager, name: str, step: int, state, meta: dict):
        if self._resumed_step is not None and name not in self._pruned:
            self._pruned.add(name)
            later = sorted(s for s in manager.all_steps() if s > self._resumed_step)
            if later:
                warnings.warn(f"{manager.directory}: removing checkpoint steps {later}, saved after "
                              f"the restored step {self._resumed_step}; the run continues from there",
                              stacklevel=3)
            for old in later:
                manager.delete(old)
        if step in manager.all_steps():  # e.g. saved by an attempt killed before its other save
            manager.delete(step)
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_unwrap_keys(state)), meta=ocp.args.JsonSave(meta)),
            force=True)
        manager.wait_until_finished()

    def save(self, step: int, state, meta: dict) -> None:
        self._save(self._last, "checkpoints", step, state, meta)

    def save_best(self, step: int, state, meta: dict) -> None:
        self._save(self._best, "best", step, state, meta)

    @staticmethod
    def _restore(manager, like, abstract, step):
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return _rewrap_keys(restored["state"], like), dict(restored["meta"])

    def _walk_back(self, manager, like, what: str):
        """((state, meta, step), tried) for the newest step of ``manager`` that restores, warning
        for each one skipped; (None, tried) if none does; tried = [(step, reason), ...]."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _unwrap_keys(like))
        steps = sorted(manager.all_steps(), reverse=True)
        tried = []
        for i, step in enumerate(steps):
            restored, reason = _attempt(self._restore, manager, like, abstract, step)
            if reason is None:
                return restored + (step,), tried
            tried.append((step, reason))
            if i + 1 < len(steps):
                warnings.warn(f"{manager.directory}: {what} step {step} is unreadable ({reason}); "
                              f"restoring step {steps[i + 1]} instead", stacklevel=3)
        return None, tried

    def latest_step(self) -> int | None:
        return self._last.latest_step()

    def best_step(self) -> int | None:
        return self._best.latest_step()

    def all_steps(self) -> list[int]:
        """The periodic checkpoints' steps, oldest first (whether or not they restore)."""
        return sorted(self._last.all_steps())

    def restore_latest(self, like, step: int | None = None):
        """(state, meta) of the newest periodic checkpoint that restores, or None if there is
        none at all. ``like``: a state of the same structure placed as the result should be (e.g.
        ``hepjax.parallel.replicate(state, mesh)``); only its shapes, dtypes and shardings are used.

        An unreadable step (a data file truncated or missing) is skipped with a warning naming it
        and the older step tried next; if no step restores, ``CheckpointError`` names the
        directory and the steps tried. ``step``: restore exactly this step (``CheckpointError`` if
        it is absent or unreadable; no walking back). The next save removes the steps after the
        restored one (see the module docstring)."""
        if step is not None:
            steps = self.all_steps()
            if int(step) not in steps:
                raise CheckpointError(f"{self._last.directory}: no checkpoint at step {step} to "
                                      f"restore; the steps there are {steps}")
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _unwrap_keys(like))
            restored, reason = _attempt(self._restore, self._last, like, abstract, int(step))
            if reason is not None:
                raise CheckpointError(f"{self._last.directory}: checkpoint step {step} is "
                                      f"unreadable ({reason})")
            self._resumed_step = int(step)
            return restored
        found, tried = self._walk_back(self._last, like, "checkpoint")
        if found is not None:
            self._resumed_step = found[2]
            return found[:2]
        if not tried:
            return None
        raise CheckpointError(
            f"{self._last.directory}: no intact checkpoint; tried steps {[s for s, _ in tried]}, "
            f"all unreadable (step {tried[0][0]}: {tried[0][1]}); delete the directory to start "
            "the run afresh")

    def restore_best(self, like):
        """(state, meta) of the newest best checkpoint that restores, or None: when there is
        none, or when none restores (with a warning for each unreadable one; the caller can use
        ``restore_latest`` instead)."""
        found, tried = self._walk_back(self._best, like, "best checkpoint")
        if found is None and tried:
            warnings.warn(f"{self._best.directory}: best checkpoint step {tried[-1][0]} is unreadable "
                          f"({tried[-1][1]}); no intact best checkpoint, none restored", stacklevel=2)
        return None if found is None else found[:2]

    def close(self) -> None:
        self._last.close()
        self._best.close()
