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
"""
from __future__ import annotations

import pathlib

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


class Checkpointer:
    """Periodic (last ``keep``) and best checkpoints in one run directory."""

    def __init__(self, workdir: str | pathlib.Path, keep: int = 3):
        workdir = pathlib.Path(workdir).absolute()
        options = dict(enable_async_checkpointing=False, create=True)
        self._last = ocp.CheckpointManager(
            workdir / "checkpoints", options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options))
        self._best = ocp.CheckpointManager(
            workdir / "best", options=ocp.CheckpointManagerOptions(max_to_keep=1, **options))

    @staticmethod
    def _save(manager, step: int, state, meta: dict):
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_unwrap_keys(state)), meta=ocp.args.JsonSave(meta)),
            force=True)
        manager.wait_until_finished()

    def save(self, step: int, state, meta: dict) -> None:
        self._save(self._last, step, state, meta)

    def save_best(self, step: int, state, meta: dict) -> None:
        self._save(self._best, step, state, meta)

    @staticmethod
    def _restore(manager, like, step=None):
        step = manager.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _unwrap_keys(like))
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return _rewrap_keys(restored["state"], like), dict(restored["meta"])

    def latest_step(self) -> int | None:
        return self._last.latest_step()

    def best_step(self) -> int | None:
        return self._best.latest_step()

    def restore_latest(self, like):
        """(state, meta) of the newest periodic checkpoint, or None. ``like``: a state of the same
        structure placed as the result should be (e.g. ``hepjax.parallel.replicate(state, mesh)``);
        only its shapes, dtypes and shardings are used."""
        return self._restore(self._last, like)

    def restore_best(self, like):
        return self._restore(self._best, like)

    def close(self) -> None:
        self._last.close()
        self._best.close()
