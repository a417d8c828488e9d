"""Device meshes and named shardings for data parallelism.

A run uses a mesh with a ``data`` axis (and room for a ``model`` axis). Parameters and optimiser
state are replicated; a batch is split along its leading axis over ``data``. ``jax.jit`` then
inserts the gradient all-reduce itself: the same code runs on 1 device, 8 devices or a pod.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = "data"
MODEL = "model"


def make_mesh(num_devices: int | None = None, model_parallel: int = 1) -> Mesh:
    """A (data, model) mesh over the first ``num_devices`` devices (all when None)."""
    devices = jax.devices()
    n = len(devices) if num_devices in (None, 0) else num_devices
    if n > len(devices):
        raise ValueError(f"asked for {n} devices but JAX sees {len(devices)}: {devices}. On CPU, "
                         "set XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax")
    if n % model_parallel:
        raise ValueError(f"{n} devices do not split into model-parallel groups of {model_parallel}")
    grid = np.asarray(devices[:n]).reshape(n // model_parallel, model_parallel)
    return Mesh(grid, (DATA, MODEL))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the ``data`` mesh axis."""
    return NamedSharding(mesh, P(DATA))


def data_size(mesh: Mesh) -> int:
    return mesh.shape[DATA]


def shard_batch(batch, mesh: Mesh):
    """Places a host batch (pytree of arrays with a leading batch axis) split over ``data``.

    One device: the host batch as it is. Single process: ``device_put``. Several processes: each holds its own slice of the global
    batch, assembled into one global array (``make_array_from_process_local_data``).
    """
    if mesh.size == 1 and jax.process_count() == 1:
        return batch  # one device: jit transfers host arrays itself, with less overhead
    sharding = data_sharded(mesh)
    n = data_size(mesh)
    for leaf in jax.tree.leaves(batch):
        if leaf.shape[0] % (n // jax.process_count() if jax.process_count() > 1 else n):
            raise ValueError(f"batch axis of size {leaf.shape[0]} does not split over {n} devices "
                             f"of the data axis: choose a batch size divisible by {n}")
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
