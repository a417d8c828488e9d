"""JAX's own distributed runtime, configured from the environment: no home-made launcher.

Every process of a multi-host job (one per TPU-VM worker, one per SLURM task, or one per
``localhost`` process in a test) runs the same program and calls :func:`initialize` before any
JAX computation. ``jax.distributed.initialize`` then connects the processes to a coordinator;
afterwards ``jax.devices()`` lists the devices of *all* processes, ``jax.local_devices()`` this
process's, and a ``jax.jit`` over a global mesh runs the collectives across hosts.

Where the settings come from, first match wins (:func:`detect`):

1. explicit arguments ``initialize(coordinator_address=..., num_processes=..., process_id=...)``;
2. environment variables ``HEPJAX_COORDINATOR_ADDRESS`` (``host:port``), ``HEPJAX_NUM_PROCESSES``,
   ``HEPJAX_PROCESS_ID`` (and optionally ``HEPJAX_LOCAL_DEVICE_IDS``, comma separated);
3. SLURM (``SLURM_JOB_ID``, ``SLURM_STEP_NODELIST``, ``SLURM_NTASKS`` > 1, ``SLURM_PROCID``,
   ``SLURM_LOCALID``): JAX derives the coordinator from the node list;
4. a Cloud TPU VM (``libtpu`` installed): JAX reads the workers from the TPU metadata server;
5. otherwise a single process: nothing to initialise.

Run the training CLI under the runtime with ``hepjax --distributed train ...`` or, the same,
``python -m hepjax.parallel train ...`` (both in ``hepjax.cli``); see ``tpu/README.md``.

CPU collectives across processes use gloo (``jax_cpu_collectives_implementation``, the default
in jaxlib 0.10), which is what the localhost tests run on.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Mapping, Sequence

import jax

ENV_COORDINATOR = "HEPJAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "HEPJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "HEPJAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "HEPJAX_LOCAL_DEVICE_IDS"
_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """How this process joins the job.

    source: 'explicit', 'env', 'slurm', 'tpu' or 'single'. Fields left None are filled in by
    JAX's own cluster detection (SLURM, TPU) inside ``jax.distributed.initialize``.
    """

    source: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None

    @property
    def distributed(self) -> bool:
        return self.source != "single"


def _int_env(env: Mapping[str, str], name: str) -> int:
    value = env.get(name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def _device_ids(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{ENV_LOCAL_DEVICE_IDS}={text!r}: expected comma-separated integers, "
                         "e.g. '0,1,2,3'") from None


def detect(environ: Mapping[str, str] | None = None) -> ClusterSpec:
    """The :class:`ClusterSpec` the environment asks for (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    given = [name for name in (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID) if env.get(name)]
    if given:
        missing = sorted({ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID} - set(given))
        if missing:
            raise ValueError(f"distributed run: {given} are set but {missing} are not; set all three "
                             f"({ENV_COORDINATOR}=host:port, {ENV_NUM_PROCESSES}=N, {ENV_PROCESS_ID}=i)")
        return _checked(ClusterSpec("env", env[ENV_COORDINATOR], _int_env(env, ENV_NUM_PROCESSES),
                                    _int_env(env, ENV_PROCESS_ID),
                                    _device_ids(env.get(ENV_LOCAL_DEVICE_IDS))))
    if all(name in env for name in _SLURM_VARS) and _int_env(env, "SLURM_NTASKS") > 1:
        return ClusterSpec("slurm", num_processes=_int_env(env, "SLURM_NTASKS"),
                           process_id=_int_env(env, "SLURM_PROCID"))
    if importlib.util.find_spec("libtpu") is not None:
        return ClusterSpec("tpu")
    return ClusterSpec("single")


def _checked(spec: ClusterSpec) -> ClusterSpec:
    if spec.num_processes is not None and spec.num_processes < 1:
        raise ValueError(f"num_processes={spec.num_processes}: must be >= 1")
    if spec.process_id is not None and spec.num_processes is not None and not (
            0 <= spec.process_id < spec.num_processes):
        raise ValueError(f"process_id={spec.process_id} is outside [0, num_processes="
                         f"{spec.num_processes})")
    if spec.coordinator_address is not None and ":" not in spec.coordinator_address:
        raise ValueError(f"coordinator_address={spec.coordinator_address!r}: expected 'host:port'")
    return spec


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_ids: Sequence[int] | None = None, *,
               environ: Mapping[str, str] | None = None) -> ClusterSpec:
    """Joins the job described by the arguments or, when they are None, by the environment.

    Must run before anything touches a JAX device (JAX raises otherwise). Calling it again after
    a successful initialisation returns the spec without reconnecting. Returns the spec used;
    ``source == 'single'`` means nothing was initialised.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if any(x is not None for x in explicit):
        if any(x is None for x in explicit):
            raise ValueError("initialize: give coordinator_address, num_processes and process_id "
                             f"together (got {explicit}), or none to read the environment")
        spec = _checked(ClusterSpec("explicit", coordinator_address, int(num_processes), int(process_id),
                                    None if local_device_ids is None else tuple(local_device_ids)))
    else:
        spec = detect(environ)
    if not spec.distributed or jax.distributed.is_initialized():
        return spec
    jax.distributed.initialize(
        coordinator_address=spec.coordinator_address, num_processes=spec.num_processes,
        process_id=spec.process_id,
        local_device_ids=None if spec.local_device_ids is None else list(spec.local_device_ids))
    return spec


def is_main_process() -> bool:
    """True on process 0, the one that writes logs, configs and checkpoint metadata."""
    return jax.process_index() == 0


def describe() -> dict:
    """This process's view of the job: process index/count, local and global device counts."""
    return {"process_index": jax.process_index(), "process_count": jax.process_count(),
            "local_devices": jax.local_device_count(), "devices": jax.device_count(),
            "backend": jax.default_backend()}
