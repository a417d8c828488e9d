"""Generation rate of top-tagging jets (Pythia 8 + fast detector + FastJet), jets/s per core.

    python benchmarks/generation_rate.py --n-jets 400 --workers 1 [--detector fast|none]

Prints one JSON line: jets, seconds, jets/s, jets/s per worker, and the signal/background rates
measured separately (one chunk sequence each, single process).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

from hepjax.data import generation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-jets", type=int, default=400)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--detector", default="fast")
    parser.add_argument("--events-per-chunk", type=int, default=200)
    args = parser.parse_args()
    generation.simulate_chunk("top-tagging", 1, 0, 0, events_per_chunk=5)   # imports, banners
    start = time.perf_counter()
    jets = generation.generate("top-tagging", args.n_jets, args.seed, detector=args.detector,
                               workers=args.workers, events_per_chunk=args.events_per_chunk)
    seconds = time.perf_counter() - start
    n = len(jets["label"])
    print(json.dumps({"n_jets": n, "seconds": round(seconds, 2), "jets_per_s": round(n / seconds, 2),
                      "jets_per_s_per_worker": round(n / seconds / args.workers, 2),
                      "workers": args.workers, "detector": args.detector,
                      "events_per_chunk": args.events_per_chunk, "cpus": os.cpu_count(),
                      "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
