"""Generation rate of top-tagging jets (Pythia 8 + detector + FastJet), jets/s per core.

    python benchmarks/generation_rate.py --n-jets 400 --workers 1 [--detector fast|none]

Prints one JSON line: jets, seconds, jets/s, jets/s per worker, the recipe version, and with one
worker the signal (tt̄) and background (QCD) rates separately (the signal chunks run first),
the CPU model and the versions of Pythia (pythia8mc), FastJet, awkward and numpy. Run it with
another checkout's ``hepjax`` first on ``PYTHONPATH`` to compare two recipes on one machine.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import time

from hepjax.data import generation


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-jets", type=int, default=400)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--detector", default="fast")
    parser.add_argument("--events-per-chunk", type=int, default=200)
    args = parser.parse_args()
    generation.simulate_chunk("top-tagging", 1, 0, 0, events_per_chunk=5)   # imports, banners
    n_signal = args.n_jets // 2 + args.n_jets % 2
    stamps = []

    def progress(k):
        stamps.append((time.perf_counter(), k))

    start = time.perf_counter()
    jets = generation.generate("top-tagging", args.n_jets, args.seed, detector=args.detector,
                               workers=args.workers, events_per_chunk=args.events_per_chunk,
                               progress=progress)
    seconds = time.perf_counter() - start
    n = len(jets["label"])
    result = {"n_jets": n, "seconds": round(seconds, 2), "jets_per_s": round(n / seconds, 2),
              "jets_per_s_per_worker": round(n / seconds / args.workers, 2),
              "workers": args.workers, "detector": args.detector,
              "events_per_chunk": args.events_per_chunk,
              "recipe": generation.RECIPE_VERSION}
    if args.workers == 1:   # class 0 (tt̄) is generated to its target before class 1 (QCD)
        done, t_signal = 0, None
        for t, k in stamps:
            done += k
            if done >= n_signal and t_signal is None:
                t_signal = t
        result["signal_jets_per_s"] = round(n_signal / (t_signal - start), 2)
        result["background_jets_per_s"] = round((n - n_signal) / (start + seconds - t_signal), 2)
    versions = {}
    for package in ("pythia8mc", "fastjet", "awkward", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    result.update(cpus=os.cpu_count(), cpu=cpu_model(), versions=versions,
                  hepjax=os.path.dirname(os.path.dirname(generation.__file__)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
