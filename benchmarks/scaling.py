"""Data-parallel scaling of the hepjax train step on 1, 2, 4, 8 devices.

For each device count n it builds the mesh, compiles the step once and trains an MLP on
generated dijet events, recording:

* ms/step and examples/s (median over ``--repeats`` timed windows of ``--steps`` steps),
* how many times the step was traced (must be 1: the step compiles once),
* the all-reduces in the compiled HLO and the bytes they carry: with n > 1 exactly the gradient
  (4 bytes x parameters) plus a few float32 scalars (loss/metric reductions), none with n = 1.

Weak scaling by default (``--per-device-batch`` rows per device); ``--global-batch B`` gives strong
scaling. On a CPU host the "devices" are fake (``--xla_force_host_platform_device_count``) and
share the host's cores, so the timings show overhead, not speed-up; the trace count and the HLO
are the point there. On a GPU/TPU host the real devices are used.

    python benchmarks/scaling.py [--devices 1,2,4,8] [--per-device-batch 128] [--steps 50]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time


def _parse():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--per-device-batch", type=int, default=128)
    parser.add_argument("--global-batch", type=int, default=0, help="strong scaling: fixed global batch")
    parser.add_argument("--hidden", default="256,256,256")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--out", default="", help="also write the rows as JSON here")
    return parser.parse_args()


ARGS = _parse()
COUNTS = [int(n) for n in ARGS.devices.split(",")]
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={max(COUNTS)}").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from hepjax.data import dijet  # noqa: E402
from hepjax.nn import MLP  # noqa: E402
from hepjax.parallel import make_mesh, replicate, shard_batch  # noqa: E402
from hepjax.train import state as state_lib, step as step_lib, tasks  # noqa: E402

_SHAPE = re.compile(r"(f32|bf16|f16|s32|u32|pred)\[([\d,]*)\]")
_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1}


def all_reduces(hlo_text: str) -> list[tuple[str, int]]:
    """(result types, bytes) of each all-reduce in compiled HLO text."""
    out = []
    for line in hlo_text.splitlines():
        if not re.search(r"= .*\ball-reduce(-start)?\(", line):
            continue
        result = line.split("=", 1)[1].split("all-reduce", 1)[0]
        size = 0
        for dtype, dims in _SHAPE.findall(result):
            size += _BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
        out.append((result.strip(), size))
    return out


def main():
    hidden = tuple(int(h) for h in ARGS.hidden.split(","))
    data = dijet.generate(20_000, seed=0)
    features = ((data["features"] - data["features"].mean(0)) / data["features"].std(0)).astype(np.float32)
    labels = data["label"].astype(np.float32)
    optimizer = optax.adam(1e-3)
    task = tasks.binary_classification()
    rows = []
    print(f"device: {jax.devices()[0].device_kind} (backend {jax.default_backend()}), jax {jax.__version__}, "
          f"MLP 10-{'-'.join(map(str, hidden))}-1, Adam, precision {ARGS.precision}")
    print(f"{'devices':>7} {'batch':>6} {'ms/step':>8} {'ex/s':>9} {'traces':>6} {'all-reduces':>11} "
          f"{'AR bytes':>9} {'grad bytes':>10}")
    for n in COUNTS:
        traces = []

        def counting(model, batch, key):
            traces.append(1)
            return task.loss_fn(model, batch, key)

        graphdefs, state = state_lib.init_state(lambda r: MLP(10, hidden, 1, rngs=r), optimizer,
                                                jax.random.key(0))
        grad_bytes = 4 * state_lib.count_params(state.params)
        mesh = make_mesh(n)
        train, _ = step_lib.compile_steps(graphdefs, task._replace(loss_fn=counting), optimizer, mesh,
                                          precision=ARGS.precision)
        batch_size = ARGS.global_batch or ARGS.per_device_batch * n
        state = replicate(state, mesh)

        def batch(t):
            idx = np.random.default_rng(t).integers(0, len(labels), batch_size)
            return shard_batch({"features": features[idx], "label": labels[idx],
                                "weight": np.ones(batch_size, np.float32)}, mesh)

        reduces = all_reduces(train.lower(state, batch(0)).compile().as_text())
        state, _ = train(state, batch(0))
        jax.block_until_ready(state)
        batches = [batch(t) for t in range(ARGS.steps)]
        times = []
        for _ in range(ARGS.repeats):
            start = time.perf_counter()
            for b in batches:
                state, metrics = train(state, b)
            jax.block_until_ready(metrics)
            times.append((time.perf_counter() - start) / ARGS.steps)
        per_step = float(np.median(times))
        row = {"devices": n, "global_batch": batch_size, "ms_per_step": per_step * 1e3,
               "examples_per_s": batch_size / per_step, "traces": len(traces),
               "all_reduces": len(reduces), "all_reduce_bytes": sum(b for _, b in reduces),
               "gradient_bytes": grad_bytes, "all_reduce_types": [t for t, _ in reduces]}
        rows.append(row)
        print(f"{n:>7} {batch_size:>6} {row['ms_per_step']:>8.3f} {row['examples_per_s']:>9.0f} "
              f"{row['traces']:>6} {row['all_reduces']:>11} {row['all_reduce_bytes']:>9} {grad_bytes:>10}")
    ok = all(r["traces"] == 1 for r in rows) and all(
        (r["all_reduces"] == 0) if r["devices"] == 1 else
        (grad_bytes <= r["all_reduce_bytes"] <= grad_bytes + 64) for r in rows)
    print("compiled once per mesh, gradient all-reduced once (n > 1), none on 1 device:", ok)
    if ARGS.out:
        with open(ARGS.out, "w") as f:
            json.dump({"jax": jax.__version__, "device": jax.devices()[0].device_kind,
                       "precision": ARGS.precision, "rows": rows}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
