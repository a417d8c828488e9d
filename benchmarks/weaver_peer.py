"""The PyTorch / weaver-core peer shared by benchmarks/particlenet_vs_weaver.py and
benchmarks/part_vs_weaver.py: its venv, the pipe worker the torch side runs in, and the
alternating timing of the two sides.

Protocol: the driver starts ``VENV_PY script --torch-worker ...`` (`TorchWorker`); the worker
(`serve`) answers one JSON line per JSON command on its stdin: first a hello (parameter count,
torch version, threads), then {"op": "data", ...} (answered by the script's own handler),
{"op": "train" | "infer", "steps": S, "warmup": W} -> {"seconds": per-call time} and
{"op": "quit"}. Standard library only at import: the worker imports it inside the weaver venv.
"""
from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
VENV = HERE / ".venv-weaver"
VENV_PY = VENV / "bin" / "python"
TORCH_VERSION = "2.13.0"


def time_fn(fn, steps: int, warmup: int = 0) -> float:
    """Seconds per call, averaged over `steps` consecutive calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def cpu_description() -> str:
    """The CPU as /proc/cpuinfo names it, with its family and model numbers, and the cores
    this process may use: e.g. 'AMD EPYC (family 26, model 2), 2 cores'. A bare marketing
    name such as 'AMD EPYC' (what a VM may show) covers several generations, and the figures
    of these benchmarks differ between them, so the tables record the numbers too."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first processor's block is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    ids = ", ".join(f"{k.split()[-1]} {fields[k]}" for k in ("cpu family", "model")
                    if k in fields)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}{f' ({ids})' if ids else ''}, {cores} cores"


def median(values):
    return sorted(values)[len(values) // 2]


def ensure_venv(model_module: str) -> None:
    """Creates/fills benchmarks/.venv-weaver (torch==TORCH_VERSION CPU, weaver-core) unless
    `torch` and `model_module` (e.g. 'weaver.nn.model.ParticleNet') already import there."""
    probe = [str(VENV_PY), "-c", f"import torch, {model_module}"]
    if VENV_PY.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return
    print(f"setting up {VENV} (torch=={TORCH_VERSION}, weaver-core) ...", flush=True)
    if not VENV_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV_PY), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [f"torch=={TORCH_VERSION}", "numpy"], check=True)
    # weaver-core's own requirements (uproot, tables, tensorboard, numba, ...) are for its
    # training framework and data pipeline; the model files need only torch.
    subprocess.run(pip + ["--no-deps", "weaver-core"], check=True)
    if subprocess.run(probe, capture_output=True).returncode != 0:
        raise RuntimeError(f"{VENV}: torch / {model_module} still do not import after "
                           f"installing; delete {VENV} and rerun")


# ------------------------------------------------------------------------- worker (torch) side

def serve(hello: dict, on_data, steps) -> None:
    """The worker loop: answers `hello`, then commands from stdin. on_data(cmd) handles
    {"op": "data"} and returns its answer; steps() -> {"train": fn, "infer": fn} for the
    current data. Weaver logs to stdout, so the answers keep the real stdout to themselves."""
    out = sys.stdout
    sys.stdout = sys.stderr

    def answer(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    answer(hello)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "data":
            answer(on_data(cmd))
        elif cmd["op"] in ("train", "infer"):
            fn = steps()[cmd["op"]]
            answer({"seconds": time_fn(fn, cmd["steps"], cmd.get("warmup", 0))})
        elif cmd["op"] == "quit":
            return


# ------------------------------------------------------------------------------ driver side

class TorchWorker:
    """`script --torch-worker --threads T [extra_args]` run by the weaver venv's python (or
    `python`, with `pythonpath` as its PYTHONPATH: e.g. a GPU machine's own torch and a carried
    weaver-core), driven over a pipe; a context manager (quit + wait on exit). `hello` holds
    the worker's first answer."""

    def __init__(self, script: str, threads: int, *, python: str | None = None,
                 pythonpath: str = "", extra_args: tuple[str, ...] = ()):
        env = {**os.environ, "PYTHONPATH": pythonpath}
        self.proc = subprocess.Popen(
            [python or str(VENV_PY), str(pathlib.Path(script).resolve()), "--torch-worker",
             "--threads", str(threads), *extra_args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.hello = self.ask()

    def ask(self, **cmd) -> dict:
        if cmd:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the torch worker exited; see its stderr above")
        return json.loads(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=60)


def compare(worker: TorchWorker, ours: dict, rounds: int, steps: int,
            first_round_warmup: int = 0) -> dict:
    """Times each op of `ours` ({"train": fn, "infer": fn}) against the worker's, alternating
    the sides round by round (weaver first), `steps` calls per side and round (round 0 after
    `first_round_warmup` extra calls on each side). Prints every round, a table of medians
    and a JSON line of the median ratios; returns {op: (weaver s, hepjax s, ratio)} medians."""
    summary = {}
    for op, fn in ours.items():
        theirs, mine, ratios = [], [], []
        for r in range(rounds):
            warmup = first_round_warmup if r == 0 else 0
            w = worker.ask(op=op, steps=steps, warmup=warmup)["seconds"]
            h = time_fn(fn, steps, warmup=warmup)
            theirs.append(w), mine.append(h), ratios.append(w / h)
            print(f"  {op} round {r}: weaver {1e3 * w:8.1f} ms  hepjax {1e3 * h:8.1f} ms  "
                  f"ratio {w / h:5.2f}", flush=True)
        summary[op] = (median(theirs), median(mine), median(ratios))
    print(f"{'':8s}{'weaver ms':>12s}{'hepjax ms':>12s}{'ratio':>8s}   (medians over {rounds} "
          f"alternating rounds of {steps} step(s))")
    for op, (w, h, ratio) in summary.items():
        print(f"{op:8s}{1e3 * w:12.1f}{1e3 * h:12.1f}{ratio:8.2f}")
    print(json.dumps({f"ratio_{op}": round(ratio, 3) for op, (_, _, ratio) in summary.items()}))
    return summary
