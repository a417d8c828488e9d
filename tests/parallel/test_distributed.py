"""Two processes x 4 fake CPU devices (JAX's distributed runtime, gloo collectives on localhost)
train the smoke config and match the single-process 8-device run; their checkpoint restores into
a single process on 1 and on 8 devices, and a 1-device run resumes from it."""
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from hepjax import config as config_lib
from hepjax import data as data_lib
from hepjax import optim
from hepjax.models import model_fn_from_config
from hepjax.parallel import distributed, make_mesh, replicate
from hepjax.train import experiment, loop
from hepjax.train import spec as spec_lib
from hepjax.train.checkpoint import Checkpointer
from hepjax.train.logging import read_metrics

OVERRIDES = {"num_steps": 12, "log_every": 4, "eval_every": 12, "checkpoint_every": 6}


def _config(**train):
    config = config_lib.load_config("hepjax.configs.dijet_mlp:smoke")
    for key, value in {**OVERRIDES, **train}.items():
        config.train[key] = value
    return config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch_two_processes(workdir, timeout=300):
    port = _free_port()
    args = [f"--config.train.{k}={v}" for k, v in OVERRIDES.items()]
    procs = []
    for i in range(2):
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4 "
                   "--xla_backend_optimization_level=0",   # the level tests/conftest.py sets
                   HEPJAX_COORDINATOR_ADDRESS=f"localhost:{port}", HEPJAX_NUM_PROCESSES="2",
                   HEPJAX_PROCESS_ID=str(i))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "hepjax.parallel", "train", "hepjax.configs.dijet_mlp:smoke",
             "--workdir", str(workdir), "--config.train.num_devices=0", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        outputs.append((proc.returncode, out, err))
    for i, (code, _, err) in enumerate(outputs):
        assert code == 0, f"process {i} failed:\n{err[-4000:]}"
    return outputs


def _like(config, mesh):
    """A freshly initialised state placed on ``mesh``: the template a checkpoint restores into."""
    splits = data_lib.load_splits(config.data)
    model_fn = model_fn_from_config(config.model, splits["train"]["features"].shape[1:], 1)
    spec = spec_lib.resolve(config, len(splits["train"]["label"]))
    optimizer = optim.make_optimizer(config.optimizer, total_steps=spec.num_steps)
    _, state = loop.build_state(spec, model_fn, optimizer)
    return replicate(state, mesh)


def _max_rel_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / (np.abs(np.asarray(y)) + 1e-6)))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_two_processes_match_eight_devices_and_restore_into_one_process(tmp_path):
    assert jax.device_count() == 8, "tests/conftest.py should fake 8 CPU devices"
    two = tmp_path / "two_processes"
    outputs = _launch_two_processes(two)
    # both processes evaluated the same test metrics; only process 0 wrote the run records
    results = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in outputs]
    assert results[0] == results[1]
    assert [r["step"] for r in read_metrics(two, "train")] == [4, 8, 12]
    info = json.loads((two / "run_info.json").read_text())
    assert info["devices"]["process_count"] == 2 and info["devices"]["count"] == 8

    eight = tmp_path / "eight_devices"
    reference = experiment.train(_config(num_devices=8), eight, progress=False)
    config = _config()
    states = {}
    for name, mesh in (("one_device", make_mesh(1)), ("eight_devices", make_mesh(8))):
        ckpt = Checkpointer(two)
        like = _like(config, mesh)
        states[name], meta = ckpt.restore_latest(like)
        ckpt.close()
        assert meta["step"] == 12 and int(states[name].step) == 12
        leaf = jax.tree.leaves(states[name].params)[0]
        assert leaf.sharding.mesh.size == mesh.size  # placed with the target's sharding
    ckpt = Checkpointer(eight)
    single, _ = ckpt.restore_latest(_like(config, make_mesh(1)))
    ckpt.close()
    assert _max_rel_diff(states["one_device"].params, single.params) < 1e-4
    assert _max_rel_diff(states["one_device"].opt_state, single.opt_state) < 1e-3
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(states["one_device"].params),
                                                    jax.tree.leaves(states["eight_devices"].params)))
    assert abs(results[0]["auc"] - reference["auc"]) < 1e-4
    assert abs(results[0]["loss"] - reference["loss"]) < 1e-4
    # training moved the parameters far more than the tolerance above
    assert _max_rel_diff(single.params, _like(config, make_mesh(1)).params) > 1e-2

    # a 1-process, 1-device run resumes from the 2-process checkpoint and carries on
    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed)
    experiment.train(_config(num_steps=16, num_devices=1), resumed, progress=False)
    assert [r["step"] for r in read_metrics(resumed, "train")] == [4, 8, 12, 16]
    ckpt = Checkpointer(resumed)
    assert ckpt.latest_step() == 16
    ckpt.close()


def test_detect_reads_the_environment():
    env = {"HEPJAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "HEPJAX_NUM_PROCESSES": "4",
           "HEPJAX_PROCESS_ID": "3", "HEPJAX_LOCAL_DEVICE_IDS": "0,1"}
    spec = distributed.detect(env)
    assert (spec.source, spec.coordinator_address, spec.num_processes, spec.process_id,
            spec.local_device_ids) == ("env", "10.0.0.1:1234", 4, 3, (0, 1))
    slurm = {"SLURM_JOB_ID": "77", "SLURM_STEP_NODELIST": "gpu[01-02]", "SLURM_NTASKS": "8",
             "SLURM_PROCID": "5", "SLURM_LOCALID": "1"}
    spec = distributed.detect(slurm)
    assert (spec.source, spec.num_processes, spec.process_id, spec.coordinator_address) == (
        "slurm", 8, 5, None)
    assert distributed.detect(dict(slurm, SLURM_NTASKS="1")).source != "slurm"
    with pytest.raises(ValueError, match="HEPJAX_PROCESS_ID"):
        distributed.detect({"HEPJAX_COORDINATOR_ADDRESS": "h:1", "HEPJAX_NUM_PROCESSES": "2"})
    with pytest.raises(ValueError, match="outside"):
        distributed.detect(dict(env, HEPJAX_PROCESS_ID="4"))
    with pytest.raises(ValueError, match="host:port"):
        distributed.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="together"):
        distributed.initialize("localhost:1", 2)
    if importlib.util.find_spec("libtpu") is None:  # no cluster in the environment: a no-op
        assert distributed.initialize(environ={}) == distributed.ClusterSpec("single")
        assert not jax.distributed.is_initialized()
