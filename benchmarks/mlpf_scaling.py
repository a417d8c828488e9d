"""MLPF inference time and memory versus elements per event: LSH-binned graph layers against the
same model with an all-to-all graph (issue 25, item 5).

    python benchmarks/mlpf_scaling.py [--sizes 1000,3000,10000,30000,100000] [--repeats 3]
        [--a2a-max 10000] [--out runs/mlpf_scaling.json]

Model: ``hepjax.models.mlpf.MLPF`` as in experiments/particle_flow (width 64, 3 layers,
distance dim 8), binned with bin_size 64 (``--shift`` adds the half-bin-shifted second binning)
or all-to-all (``bin_size=None``: one bin of all N elements). One event per call, synthetic
elements (random types, eta in [-2.5, 2.5], phi uniform, exponential pT), padded for the binned
model to bin_size x 2^L (:func:`hepjax.models.mlpf.padded_size`). Time: the median of
``--repeats`` calls of the jitted forward after one warm-up (compile excluded). Memory: XLA's
buffer assignment of the compiled forward (``compiled.memory_analysis()``: temporaries +
arguments + outputs), i.e. the peak the executable allocates. The all-to-all graph needs
N^2 floats per kernel (10^5 elements: 40 GB per layer); it is run up to ``--a2a-max`` elements
and its memory beyond is extrapolated from the compiled buffer sizes, which XLA reports without
running (``--a2a-compile-max``).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import time

import jax
from flax import nnx

from hepjax.models import mlpf


def measure(model, n_real, n_pad, repeats, run=True):
    x, m = mlpf.synthetic_elements(n_real, n_pad)
    graphdef, state = nnx.split(model)
    fwd = jax.jit(lambda s, x, m: nnx.merge(graphdef, s)(x, m))
    t0 = time.perf_counter()
    compiled = fwd.lower(state, x, m).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    peak = None
    if mem is not None:
        peak = int(mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes)
    out = {"n": n_real, "n_padded": n_pad, "compile_s": round(compile_s, 2), "peak_bytes": peak}
    if run:
        jax.block_until_ready(compiled(state, x, m))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(state, x, m))
            times.append(time.perf_counter() - t0)
        out["time_s"] = statistics.median(times)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,3000,10000,30000,100000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bin-size", type=int, default=64)
    ap.add_argument("--shift", action="store_true")
    ap.add_argument("--a2a-max", type=int, default=10000)
    ap.add_argument("--a2a-compile-max", type=int, default=30000)
    ap.add_argument("--out", default="runs/mlpf_scaling.json")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    lsh = mlpf.MLPF(width=64, num_layers=3, bin_size=args.bin_size, rngs=nnx.Rngs(0), shift=args.shift)
    a2a = mlpf.MLPF(width=64, num_layers=3, bin_size=None, rngs=nnx.Rngs(0))
    rows = {"lsh": [], "all_to_all": []}
    for n in sizes:
        r = measure(lsh, n, mlpf.padded_size(n, args.bin_size), args.repeats)
        rows["lsh"].append(r)
        print(json.dumps({"model": "lsh", **r}), flush=True)
        if n <= args.a2a_compile_max:
            r = measure(a2a, n, n, args.repeats, run=n <= args.a2a_max)
            rows["all_to_all"].append(r)
            print(json.dumps({"model": "all_to_all", **r}), flush=True)
    t = {r["n"]: r.get("time_s") for r in rows["lsh"]}
    summary = {}
    if 10000 in t and 100000 in t:
        summary["lsh_time_ratio_1e5_over_1e4"] = t[100000] / t[10000]
    result = {"rows": rows, "summary": summary, "bin_size": args.bin_size, "shift": args.shift,
              "machine": platform.processor() or platform.machine(), "jax": jax.__version__,
              "date": time.strftime("%Y-%m-%d")}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(summary))
    return result


if __name__ == "__main__":
    main()
