"""GravNet time per event against the number of points: kNN inside LSH bins is linear in N.

One event of N points (4 random features; N padded up to a multiple of the bin size, the padding
masked) goes through the GravNet model (hepjax.models.gravnet, paper sizes: 4 blocks, dense 64,
S = 4, F_LR = 22, F_out = 48, k = 40) with the kNN restricted to LSH bins of --bin-size points
(random projections of the learned coordinates, sort into bins, dense kNN per bin, undo the
permutation). Prints ms per event and ms per 1k points for each N: a flat last column means
linear growth. --exact also times the all-pairs kNN (quadratic) for N <= 10k for contrast.

    .venv/bin/python benchmarks/gravnet_scaling.py [--sizes 1000 10000 100000] [--bin-size 128]
                                                   [--repeats 3] [--exact]
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hepjax.models import gravnet


def time_event(n_points: int, bin_size: int | None, repeats: int) -> float:
    pad = bin_size or 1
    n = -(-n_points // pad) * pad
    cfg = gravnet.default_config()
    cfg.bin_size = bin_size or 0
    model = gravnet.build(cfg, (n, 4), 1, nnx.Rngs(params=0, dropout=1))
    model.eval()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, n, 4)).astype(np.float32))
    mask = jnp.asarray(np.arange(n)[None] < n_points)
    run = nnx.jit(lambda m, x, k: m(x, k))
    jax.block_until_ready(run(model, x, mask))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(model, x, mask))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--bin-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--exact", action="store_true")
    args = ap.parse_args(argv)
    print(f"GravNet inference, jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"LSH bin size {args.bin_size}")
    print(f"{'points':>8s} {'kNN':>6s} {'ms/event':>10s} {'ms/1k pts':>10s}")
    for n in args.sizes:
        t = time_event(n, args.bin_size, args.repeats)
        print(f"{n:8d} {'LSH':>6s} {1e3 * t:10.1f} {1e6 * t / n:10.2f}", flush=True)
        if args.exact and n <= 10000:
            t = time_event(n, None, args.repeats)
            print(f"{n:8d} {'exact':>6s} {1e3 * t:10.1f} {1e6 * t / n:10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
