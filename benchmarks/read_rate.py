"""Read rate of the Top Tagging Reference Dataset layout, and the peak memory of a chunked read.

    python benchmarks/read_rate.py --n-jets 1200000 --chunk-size 20000 --path /tmp/big.h5

Writes a synthetic file of ``--n-jets`` jets in the reference layout (pandas HDF5, key 'table',
200 constituents; skipped if ``--path`` exists with that many rows), then streams it with
``hepjax.data.iter_top_tagging``, computing the jet mass of every chunk so the data are used,
and prints jets/s and the peak resident memory (ru_maxrss) of this process. The writer streams
too, so the 1.2M-jet file never sits in memory whole.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import resource
import time

import numpy as np

from hepjax.data import formats


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20   # KiB -> GiB (Linux)


def write_synthetic(path: pathlib.Path, n_jets: int, chunk: int, seed: int = 0) -> float:
    start = time.perf_counter()
    with formats.TopTaggingWriter(path) as writer:
        for lo in range(0, n_jets, chunk):
            n = min(chunk, n_jets - lo)
            rng = np.random.default_rng([seed, lo])
            counts = rng.integers(20, 120, n)
            pt = rng.exponential(10.0, (n, 200)).astype(np.float32) + 0.5
            eta = rng.normal(0, 0.3, (n, 200)).astype(np.float32)
            phi = rng.normal(0, 0.3, (n, 200)).astype(np.float32)
            p4 = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
            p4 *= (np.arange(200)[None] < counts[:, None])[..., None]
            writer.append(p4, None, rng.integers(0, 3, n), rng.integers(0, 2, n))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-jets", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=20_000)
    parser.add_argument("--path", default="/tmp/hepjax_read_rate.h5")
    args = parser.parse_args()
    path = pathlib.Path(args.path)
    write_s = None
    if not path.exists() or formats.count_rows(path) != args.n_jets:
        write_s = write_synthetic(path, args.n_jets, args.chunk_size)
    start = time.perf_counter()
    n, mass_sum = 0, 0.0
    for chunk in formats.iter_top_tagging(path, chunk_size=args.chunk_size):
        jet = chunk["p4"].astype(np.float64).sum(1)
        mass_sum += np.sqrt(np.maximum(jet[:, 0] ** 2 - (jet[:, 1:] ** 2).sum(1), 0)).sum()
        n += len(chunk["label"])
    seconds = time.perf_counter() - start
    print(json.dumps({"n_jets": n, "read_s": round(seconds, 2), "jets_per_s": round(n / seconds),
                      "write_s": None if write_s is None else round(write_s, 2),
                      "file_gib": round(path.stat().st_size / 2 ** 30, 3),
                      "chunk_size": args.chunk_size, "peak_rss_gib": round(_peak_rss_gib(), 3),
                      "mean_mass": round(mass_sum / max(n, 1), 2)}))


if __name__ == "__main__":
    main()
