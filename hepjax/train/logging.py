"""Run records: resolved config, seed and versions, metrics as JSON lines, optional TensorBoard.

Only process 0 writes (``jax.process_index() == 0``); other processes get a writer that does nothing.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import pathlib
import platform
import socket
import sys

import jax
import numpy as np

VERSIONED = ("hepjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "jraph", "numpy")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def environment(*packages: str) -> dict:
    """When and on what an experiment ran, for its results file: the UTC date, the versions of
    Python, of ``VERSIONED`` and of ``packages`` (distribution names), the CPU and JAX's first
    device."""
    out = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           **versions()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["machine"] = platform.processor() or platform.machine()
    out["device"] = str(jax.devices()[0])
    return out


def run_info(seed: int) -> dict:
    """Everything needed to reproduce a result besides the config: seed, versions, host, devices."""
    devices = jax.devices()
    return {
        "seed": seed,
        "versions": versions(),
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                 "machine": platform.machine(), "processor": platform.processor()},
        "devices": {"backend": jax.default_backend(), "count": len(devices),
                    "kind": devices[0].device_kind, "process_count": jax.process_count()},
        "argv": sys.argv,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _plain(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


class MetricsWriter:
    """Appends ``{"step": s, "split": name, ...}`` lines to ``workdir/metrics.jsonl``."""

    def __init__(self, workdir: str | pathlib.Path, tensorboard: bool = False):
        self.active = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._tb = None
        if self.active and tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as err:
                raise ImportError("TensorBoard logging needs tensorboardX: "
                                  "pip install 'hepjax[tensorboard]'") from err
            self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

    def write(self, step: int, split: str, metrics: dict) -> None:
        if not self.active:
            return
        record = {"step": int(step), "split": split, **{k: _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for name, value in record.items():
                if name not in ("step", "split") and np.ndim(value) == 0:
                    self._tb.add_scalar(f"{split}/{name}", value, step)
            self._tb.flush()

    def truncate_after(self, step: int) -> None:
        """Drops records written after ``step`` (by a run killed after its last checkpoint)."""
        if not self.active or not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in keep))


def read_metrics(workdir: str | pathlib.Path, split: str | None = None) -> list[dict]:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r["split"] == split]
