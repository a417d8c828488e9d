"""Where hepjax's ParT spends its time on this machine: an op-time table of one compiled call.

Builds the step of benchmarks/part_vs_weaver.py (same model, batch and data; no weaver), warms
it up, times --calls calls (wall and process CPU time), then traces one more call with
`jax.profiler` and prints the ops of the compiled XLA program by total op time, each with its
call count, output shape and the JAX operation it came from (read from XLA's optimised HLO,
dumped while compiling). Ops run --calls times per call inside a loop (e.g. the pair MLP's
`lax.scan` over 128 jet tiles) show counts of 100 and more. --group sums the ops by
(backend kind, forward/backward, shape, operation) instead.

Op times are per thread: XLA:CPU runs independent ops concurrently and splits large ones over
both cores, so the table sums to more than the wall time. Use it to find where the time goes;
measure a change with an alternating A/B of both variants in one process, and the claim with
part_vs_weaver.py.

    .venv/bin/python benchmarks/part_profile.py [--mode train|infer] [--batch 128]
                                                [--particles 128] [--calls 5] [--top 40]
                                                [--group]
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

from weaver_peer import cpu_description

_RUNTIME = ("ThunkExecutor", "$", "PjitFunction", "SlinkyThreadPool", "CommonPjRt",
            "ParseArguments", "end: ", "ThreadpoolListener")


def op_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
    """(total microseconds, calls) per op name from the perfetto trace `jax.profiler` wrote."""
    files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))
    if not files:
        raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir}")
    with gzip.open(files[-1]) as f:
        events = json.load(f)["traceEvents"]
    total, calls = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") == "X" and "dur" in e and not name.startswith(_RUNTIME):
            total[name] += e["dur"]
            calls[name] += 1
    return total, calls


def hlo_info(hlo_text: str) -> dict[str, tuple[str, str]]:
    """op name -> (output shape, JAX op_name metadata) from an optimised HLO module's text."""
    info = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%(\S+) = (\S+) .*$", hlo_text, re.M):
        meta = re.search(r'op_name="([^"]*)"', m.group(0))
        info[m.group(1)] = (m.group(2).split("{")[0], meta.group(1) if meta else "")
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("train", "infer"), default="train")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--particles", type=int, default=128)
    p.add_argument("--calls", type=int, default=5, help="timed calls before the traced one")
    p.add_argument("--top", type=int, default=40, help="rows printed")
    p.add_argument("--group", action="store_true",
                   help="sum by (kind, fwd/bwd, shape, op) instead of per op")
    args = p.parse_args(argv)
    if args.calls < 1 or args.top < 1:
        p.error("--calls and --top must be >= 1")

    from hepjax import runtime
    allocator = runtime.same_allocator_for_all("tuned")
    work = tempfile.mkdtemp(prefix="part_profile_")
    dump = os.path.join(work, "hlo")
    module = "step" if args.mode == "train" else "forward"
    # set before JAX starts: the optimised HLO of the timed program, for shapes and op names
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={dump}"
                               f" --xla_dump_hlo_module_re=jit_{module}$"
                               " --xla_dump_hlo_pass_re=NONE").strip()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax
    import numpy as np
    from part_vs_weaver import hepjax_steps, make_data

    _, train, infer = hepjax_steps(make_data(args.batch, args.particles))
    fn = train if args.mode == "train" else infer
    fn()
    fn()
    wall, cpu = [], []
    for _ in range(args.calls):
        c, t = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    trace = os.path.join(work, "trace")
    with jax.profiler.trace(trace, create_perfetto_trace=True):
        fn()
    total, calls = op_times(trace)
    hlo_files = glob.glob(os.path.join(dump, f"*jit_{module}.cpu_after_optimizations.txt"))
    info = {}
    for f in hlo_files:
        with open(f) as fh:
            info.update(hlo_info(fh.read()))

    print(f"ParT {args.mode}, batch {args.batch} x {args.particles}, CPU: {cpu_description()}, "
          f"jax {jax.__version__}, malloc: {allocator}")
    looped = sum(us for name, us in total.items() if calls[name] >= 100)
    print(f"{args.calls} calls: median wall {1e3 * np.median(wall):.1f} ms, median process CPU "
          f"{1e3 * np.median(cpu):.1f} ms; traced call: op time {sum(total.values()) / 1e3:.1f} "
          f"ms in {sum(calls.values())} ops ({looped / 1e3:.1f} ms in ops called >= 100 times)")
    rows, counts = total, calls
    if args.group:
        rows, counts = collections.Counter(), collections.Counter()
        for name, us in total.items():
            shape, op = info.get(name, ("?", ""))
            kind = "ynn" if name.startswith("ynn") else "xla"
            side = "bwd" if "transpose(jvp" in op else "fwd"
            key = f"{kind} {side} {shape} {op.split('/')[-1] or '?'}"
            rows[key] += us
            counts[key] += calls[name]
    print(f"{'op ms':>9s} {'calls':>6s}  {'kind side shape op' if args.group else 'op':40s}")
    for key, us in rows.most_common(args.top):
        if args.group:
            print(f"{us / 1e3:9.2f} {counts[key]:6d}  {key}")
        else:
            shape, op = info.get(key, ("?", ""))
            print(f"{us / 1e3:9.2f} {counts[key]:6d}  {key:38s} {shape:28s} {op[-60:]}")
    if not hlo_files:
        print(f"(no optimised HLO found under {dump}: shapes and op names missing)")
    print(f"trace (open in Perfetto) and optimised HLO kept under {work}")


if __name__ == "__main__":
    main()
