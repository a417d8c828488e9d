"""Time of K = 8 learning rates trained as one vmapped population vs one (``hepjax.hpo``).

On the MLP top-tagging config (``hepjax.configs.top_tagging_mlp``, 6000 cached Pythia jets, MLP
64-64-64, batch 128): ``train_population`` with K members for ``--steps`` steps (validation
only at the end), the first (compiling) step excluded; repeated ``--repeats`` times, the median
reported (wall and this process's CPU time: the machine is shared).
The bar (issue 29): time(K=8) / time(K=1) < 3.

    PYTHONPATH=. python benchmarks/hpo_population.py --steps 400 --repeats 3 --out runs/bench/hpo_population.json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import tempfile

import jax
import numpy as np

from hepjax import hpo
from hepjax.configs import top_tagging_mlp


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="1,8")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    config = top_tagging_mlp.get_config()
    config.train.update({"num_steps": args.steps, "eval_every": args.steps,
                         "checkpoint_every": args.steps, "log_every": args.steps})
    sizes = [int(k) for k in args.sizes.split(",")]
    from hepjax import data as data_lib

    data_lib.load_splits = hpo._DataCache(data_lib.load_splits)   # read the jets once
    result = {"config": "hepjax.configs.top_tagging_mlp", "steps": args.steps,
              "batch_size": int(config.train.batch_size), "repeats": args.repeats,
              "device": str(jax.devices()[0]), "cpu": platform.processor() or platform.machine(),
              "jax": jax.__version__, "seconds": {}, "aucs": {}}
    lrs = {k: list(np.geomspace(3e-4, 1e-2, k)) if k > 1 else [2e-3] for k in sizes}
    times = {k: [] for k in sizes}
    cpu = {k: [] for k in sizes}
    for _ in range(args.repeats):   # interleaved, so that load changes hit every K alike
        for k in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                out = hpo.train_population(config, tmp, learning_rates=lrs[k])
            times[k].append(out["seconds"])
            cpu[k].append(out["cpu_seconds"])
            result["aucs"][k] = {"learning_rates": [float(v) for v in lrs[k]],
                                 "val_auc": [c[-1] for c in out["val"]["auc"]]}
            print(f"K={k}: {out['seconds']:.2f} s wall, {out['cpu_seconds']:.2f} s CPU for "
                  f"{args.steps} steps", flush=True)
    for k in sizes:
        result["seconds"][k] = {"median": statistics.median(times[k]), "all": times[k],
                                "cpu_median": statistics.median(cpu[k]), "cpu_all": cpu[k]}
    if 1 in sizes and len(sizes) > 1:
        base = result["seconds"][1]["median"]
        result["ratio"] = {k: result["seconds"][k]["median"] / base for k in sizes if k != 1}
        cpu_base = result["seconds"][1]["cpu_median"]
        result["cpu_ratio"] = {k: result["seconds"][k]["cpu_median"] / cpu_base
                               for k in sizes if k != 1}
        print("wall time(K) / time(1):", {k: round(v, 2) for k, v in result["ratio"].items()},
              "CPU time(K) / time(1):", {k: round(v, 2) for k, v in result["cpu_ratio"].items()})
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
