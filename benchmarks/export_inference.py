"""CPU inference time of exported taggers: onnxruntime vs JAX (``hepjax.export``).

For MLP, PFN, ParticleNet and ParT at their papers' sizes (``hepjax.models.default_config``;
particle models on the 64 leading particles of the cached top-tagging jets), a restorable run
directory holding the seeded initial model (inference time does not depend on the weights'
values) is exported to ONNX and StableHLO, and the same inference function (preprocessing +
network + sigmoid) is timed on the test jets:

* ``jax``: ``jax.jit`` of the function in-process (the default, fast kernels on CPU);
* ``jax.export``: the deserialized StableHLO artefact, ``jax.jit(exported.call)`` (without the
  jit every call is traced and dispatched again: ~40x slower at batch 1);
* ``onnxruntime``: a CPU session (default threads, graph optimisations on).

Batch sizes 1 (latency) and 256 (throughput); the median of ``--repeats`` timed calls after
warm-up (the three methods' calls interleaved), as jets per second. The machine is a shared 2-core VM: compare columns of one run.

    PYTHONPATH=. python benchmarks/export_inference.py --out runs/bench/export_inference.json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import tempfile
import time

import jax
import numpy as np

from hepjax import data as data_lib
from hepjax import export, hpo, kernels
from hepjax.configs import top_tagging_mlp
from hepjax.models import default_config
from hepjax.train import experiment
from tests.export.runs import init_run   # a restorable run without training (the export tests')


def config_for(model: str, max_particles: int):
    c = top_tagging_mlp.get_config()
    if model == "mlp":
        return c
    c.data.representation = "particles"
    c.data.max_particles = max_particles
    c.preprocessing.log_features = ()
    c.model = default_config(model)
    return c


def _time(fns: dict, repeats: int) -> dict:
    """Median seconds per call of each function, the calls interleaved (fn1, fn2, ..., fn1, ...)
    so that load changes on the shared machine hit every method alike."""
    for fn in fns.values():
        fn()
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,pfn,particlenet,part")
    parser.add_argument("--max-particles", type=int, default=64)
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import onnxruntime

    data_lib.load_splits = hpo._DataCache(data_lib.load_splits)   # each data section read once

    result = {"cpu": platform.processor() or platform.machine(), "jax": jax.__version__,
              "onnxruntime": onnxruntime.__version__, "max_particles": args.max_particles,
              "repeats": args.repeats, "models": {}}
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            run = init_run(config_for(model, args.max_particles), pathlib.Path(tmp) / "run")
            onnx_info = export.export(run, "onnx", pathlib.Path(tmp) / "m.onnx")
            hlo_info = export.export(run, "stablehlo", pathlib.Path(tmp) / "m.jaxexport")
            inference = export.inference_function(run)
            raw = experiment.load_eval_data(inference.config)
            session = export.onnx_session(onnx_info["path"])
            exported = jax.jit(jax.export.deserialize(   # jit: compiled once, not per call
                bytearray(pathlib.Path(hlo_info["path"]).read_bytes())).call)
            jitted = jax.jit(inference.fn)
            rows = {}
            for batch in (int(b) for b in args.batches.split(",")):
                inputs = [np.asarray(raw[n][:batch], d) for n, d in zip(inference.input_names,
                                                                        inference.input_dtypes)]
                t = _time({"jax": lambda: jax.block_until_ready(jitted(*inputs)),
                           "hlo": lambda: jax.block_until_ready(exported(*inputs)),
                           "ort": lambda: session(inputs)}, args.repeats)
                t_jax, t_hlo, t_ort = t["jax"], t["hlo"], t["ort"]
                rows[batch] = {"jax_jets_per_s": batch / t_jax,
                               "jax_export_jets_per_s": batch / t_hlo,
                               "onnxruntime_jets_per_s": batch / t_ort,
                               "onnxruntime_over_jax": t_jax / t_ort,
                               "max_abs_diff_onnx": float(np.max(np.abs(
                                   session(inputs) - np.asarray(jitted(*inputs)))))}
                print(f"{model:12s} B={batch:4d}: jax {batch / t_jax:9.0f}  jax.export "
                      f"{batch / t_hlo:9.0f}  onnxruntime {batch / t_ort:9.0f} jets/s "
                      f"(onnxruntime / jax speed {t_jax / t_ort:.2f})", flush=True)
            result["models"][model] = {"kernels": kernels.mode(), "batches": rows}
        if args.out:   # after each model: a partial run keeps what it measured
            pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            pathlib.Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
