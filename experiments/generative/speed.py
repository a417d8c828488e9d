"""Sampling speed of the generative models against the simulator, in one process and
interleaved (so both see the same machine load):

    python -m experiments.generative.speed [--variant cpu] [--models flow,flow_affine,...]
        [--repeats 5] [--n-sim 60] [--batch 5000] [--out runs/generative_calo_cpu/speed.json]
    taskset -c 0 python -m experiments.generative.speed ...     # one core for both

Sampling cost does not depend on the parameter values (fixed architectures, fixed numbers of
coupling layers and DDIM steps), so the models are built with the variant's sizes and freshly
initialised. Each of ``repeats`` rounds simulates ``n_sim`` showers (``simulate_showers``:
simulation + voxelisation, one process) and then times one jitted batch of ``batch`` showers per
model (after compilation, ``block_until_ready``); the report gives the medians over the rounds,
the median of the per-round speed-ups with their range, the load average before and after and
the CPUs the process may use (``taskset`` restricts both the simulator and XLA's threads).
``inverse_us`` is the numpy preprocessing inverse (vectors to voxels) per shower (the fastest of
``repeats`` calls on the whole batch), reported apart;
for a flow whose config sets ``zero_calibration`` it includes the calibrated read-out thresholds
(``ZeroCalibration.apply``: a table look-up per shower and a comparison per voxel), and with
``layer_calibration`` the quantile mapping of the layer coordinates (``LayerCalibration.apply``);
their cost does not depend on the fitted values, so tables of the default cut and an identity
mapping are timed.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np


def _best_us(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn`` [us]."""
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * min(times)


def build(name: str, v, dim: int, rngs):
    """(untrained model, sample_fn) of ``name``: the architecture of ``run.new_model``."""
    from experiments.generative.run import new_model
    from hepjax.models import generative as G
    model = new_model(name, v, dim, 1, 0, rngs)
    if name == "diffusion":
        return model, (lambda m, k, cc, s=v.diffusion["ddim_steps"]: G.ddim_sample(m, k, cc, s))
    if name == "gan":
        return model[0], (lambda m, k, c: m.sample(k, c))
    return model, (lambda m, k, c: m.sample(k, c))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="cpu")
    ap.add_argument("--n-sim", type=int, default=60, help="showers simulated per round")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--models", default="flow,flow_affine,diffusion,gan,vae")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import jax
    from flax import nnx

    from experiments.generative.config import get
    from hepjax.models.generative.calo_data import (CaloPreprocessor, LayerCalibration,
                                                    ZeroCalibration, simulate_showers)
    from hepjax.models.generative.training import make_sampler
    v = get(args.variant)
    load_before = os.getloadavg()
    warm = simulate_showers(args.n_sim, 12345, v.data, workers=1)
    pre = CaloPreprocessor(energy=v.data.energy, box=tuple(v.dequant_box)).fit(
        warm["voxels"], warm["e_inc"], np.random.default_rng(0))
    rng = np.random.default_rng(1)
    e = np.exp(rng.uniform(np.log(v.data.energy[0]), np.log(v.data.energy[1]), args.batch))
    cond = pre.condition(e)
    dim = 4 + int(np.prod(v.data.shape))
    names = args.models.split(",")
    samplers = {}
    for name in names:
        model, fn = build(name, v, dim, nnx.Rngs(0))
        samplers[name] = make_sampler(model, fn, batch_size=args.batch)
        jax.block_until_ready(samplers[name](jax.random.key(0), cond))     # compile
    sim_t, times = [], {n: [] for n in names}
    for r in range(args.repeats):
        sim_t.append(simulate_showers(args.n_sim, 1000 + r, v.data, workers=1)
                     ["sim_s_per_shower"])
        for name in names:
            t0 = time.perf_counter()
            x = jax.block_until_ready(samplers[name](jax.random.key(r + 1), cond))
            times[name].append((time.perf_counter() - t0) / args.batch)
    sim_s = float(np.median(sim_t))
    out = {"variant": v.name, "batch": args.batch, "n_sim_per_round": args.n_sim,
           "repeats": args.repeats, "sim_s_per_shower": sim_s, "sim_s_rounds": sim_t,
           "load_average_before": load_before, "load_average_after": os.getloadavg(),
           "cpus": sorted(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
           "models": {}}
    print(f"simulator: {1e3 * sim_s:.2f} ms per shower (median of {args.repeats} rounds of "
          f"{args.n_sim}); load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; "
          f"cpus {out['cpus']}", flush=True)
    for name in names:
        x = np.asarray(samplers[name](jax.random.key(0), cond))
        cfg = getattr(v, name) if hasattr(v, name) else {}
        cal_cfg, layer_cfg = cfg.get("zero_calibration"), cfg.get("layer_calibration")
        cal = lcal = None
        if layer_cfg:
            nb, q = layer_cfg.get("n_bins", 5), layer_cfg.get("n_quantiles", 101)
            ident = np.broadcast_to(np.linspace(-10, 10, q), (nb, v.data.shape[0], q)).copy()
            lcal = LayerCalibration(
                edges=np.linspace(np.log(v.data.energy[0]), np.log(v.data.energy[1]), nb + 1),
                q_gen=ident, q_train=ident.copy())
        if cal_cfg:
            nb, nl = cal_cfg.get("n_bins", 10), cal_cfg.get("n_layer_bins", 1)
            inner = np.linspace(0.0, 0.5, nl + 1)[1:-1]        # E_k / E_inc bin edges
            cal = ZeroCalibration(
                edges=np.linspace(np.log(v.data.energy[0]), np.log(v.data.energy[1]), nb + 1),
                thresholds=np.full((nb, nl) + v.data.shape, pre.cut),
                layer_edges=np.broadcast_to(np.concatenate([[-np.inf], inner, [np.inf]]),
                                            (nb, v.data.shape[0], nl + 1)).copy(),
                floor=cal_cfg.get("floor", 0.0))
        inv_us = _best_us(lambda: pre.inverse(x if lcal is None else lcal.apply(x, e), e,
                                              v.data.shape, cal), args.repeats) / len(e)
        inv_plain_us = _best_us(lambda: pre.inverse(x, e, v.data.shape), args.repeats) / len(e)
        s = float(np.median(times[name]))
        ratios = np.asarray(sim_t) / np.asarray(times[name])
        t = {"s_per_shower": s, "s_rounds": times[name], "inverse_us": inv_us,
             "speedup": float(np.median(ratios)),
             "speedup_range": [float(ratios.min()), float(ratios.max())],
             "speedup_with_inverse": sim_s / (s + 1e-6 * inv_us),
             "zero_calibration": bool(cal), "layer_calibration": bool(lcal),
             "inverse_us_without_calibrations": inv_plain_us}
        out["models"][name] = t
        print(f"{name}: {1e6 * s:.1f} us per shower; speed-up {t['speedup']:.0f}x "
              f"(rounds {ratios.min():.0f}-{ratios.max():.0f}x); with the numpy inverse "
              f"({inv_us:.1f} us{', calibrations included' if cal or lcal else ''}; "
              f"{inv_plain_us:.1f} us without) {t['speedup_with_inverse']:.0f}x", flush=True)
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    return out


if __name__ == "__main__":
    main()
