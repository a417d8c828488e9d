"""Device meshes and named shardings for data parallelism, on one host or many.

A run uses a mesh with a ``data`` axis (and room for a ``model`` axis). Parameters and optimiser
state are replicated; a batch is split along its leading axis over ``data``. ``jax.jit`` then
inserts the gradient all-reduce itself: the same code runs on 1 device, 8 devices or a pod.

With several processes (``hepjax.parallel.distributed.initialize``) the mesh spans the devices
of all processes, ordered by process, so process ``p`` of ``P`` owns the contiguous rows
``[p * B / P, (p + 1) * B / P)`` of every global batch of ``B`` rows: the same rows, on the same
mesh positions, as a single-process run on as many devices.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = "data"
MODEL = "model"


def _ordered_devices():
    # Process-major order: each process's devices form one contiguous block of the data axis.
    return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


def make_mesh(num_devices: int | None = None, model_parallel: int = 1) -> Mesh:
    """A (data, model) mesh over the first ``num_devices`` devices (all when None or 0).

    Several processes: the mesh must span every device of the job (``num_devices`` None, 0 or
    ``jax.device_count()``), since each process only drives its own devices.
    """
    devices = _ordered_devices()
    n = len(devices) if num_devices in (None, 0) else int(num_devices)
    if n > len(devices):
        raise ValueError(f"asked for {n} devices but JAX sees {len(devices)}: {devices}. On CPU, "
                         "set XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax")
    if jax.process_count() > 1 and n != len(devices):
        raise ValueError(f"asked for a mesh of {n} devices in a {jax.process_count()}-process job with "
                         f"{len(devices)} devices: a multi-process mesh spans all of them; set "
                         "config.train.num_devices=0 (all devices)")
    if model_parallel < 1 or n % model_parallel:
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


def process_rows(global_size: int) -> slice:
    """The rows of a global batch of ``global_size`` that this process feeds (all in one process)."""
    count, index = jax.process_count(), jax.process_index()
    if global_size % count:
        raise ValueError(f"global batch of {global_size} rows does not split over {count} processes")
    local = global_size // count
    return slice(index * local, (index + 1) * local)


def _check_divisible(batch, n: int, what: str) -> None:
    for leaf in jax.tree.leaves(batch):
        if leaf.shape[0] % n:
            raise ValueError(f"{what} of size {leaf.shape[0]} does not split over {n} devices "
                             f"of the data axis: choose a batch size divisible by {n}")


def shard_batch(batch, mesh: Mesh):
    """Places a host batch (pytree of arrays with a leading batch axis) split over ``data``.

    One device: the host batch as it is. Single process: ``device_put``. Several processes: each
    passes its own contiguous slice of the global batch (rows :func:`process_rows`), assembled
    into one global array (``make_array_from_process_local_data``).
    """
    if mesh.size == 1 and jax.process_count() == 1:
        return batch  # one device: jit transfers host arrays itself, with less overhead
    sharding = data_sharded(mesh)
    n = data_size(mesh)
    if jax.process_count() == 1:
        _check_divisible(batch, n, "batch axis")
        return jax.device_put(batch, sharding)
    _check_divisible(batch, n // jax.process_count(), "process-local batch axis")
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def shard_global_batch(batch, mesh: Mesh):
    """Like :func:`shard_batch`, but every process holds the whole global batch (e.g. an
    evaluation batch read on each host); each process transfers only the rows its devices own."""
    if jax.process_count() == 1:
        return shard_batch(batch, mesh)
    _check_divisible(batch, data_size(mesh), "global batch axis")
    sharding = data_sharded(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), batch)


def replicate(tree, mesh: Mesh):
    """A pytree (e.g. a freshly initialised TrainState, identical on every process) placed
    replicated on every device of ``mesh``; PRNG key leaves stay keys."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def place(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(place(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(place, tree)
