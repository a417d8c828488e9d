"""Object-condensation inference time per calorimeter event against its number of hits.

One simulated event of N hits (hepjax.sim: particles of 10-200 GeV spread over the whole face,
|x|, |y| < 38 cm, as many as needed for N hits; N of its hits drawn at random, padded to a
multiple of the bin size and masked) goes through the network (``CondensationNet``, eval mode)
and the condensation-point selection (``hepjax.reco.condensation.condense``), both compiled
once per shape beforehand; the time is the median of ``--repeats`` runs of forward + condense
(``block_until_ready``). The network's kNN runs in LSH bins of ``--bin-size`` hits (default:
the trained network's bin size, else 256), linear in N; ``--exact`` also times the all-pairs
kNN for N <= 10^4. With ``--workdir`` of a finished
``experiments.calo_clustering.run`` the trained network and its tuned (t_beta, t_d) are used (the
number of condensation points then is realistic; condense costs O(K_found * N)); otherwise a
freshly initialised network with t_beta = 0.5, t_d = 0.5.

    .venv/bin/python benchmarks/calo_inference.py [--workdir runs/calo_cpu] [--variant cpu]
        [--sizes 1000 10000 100000] [--bin-size B] [--repeats 5] [--exact]

Last line: JSON with ms per event per size and ``ratio_1e5_1e4`` = time(10^5) / time(10^4)
(the issue's bar: <= 15).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import pickle
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hepjax.models import condensation_net as cn
from hepjax.reco import condensation as oc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # experiments/


def event_hits(n_hits: int, seed: int = 0) -> dict:
    """n_hits hits (a seeded random subset, in cell order) of one simulated event with enough
    particles for them."""
    from hepjax.sim import event_rng, make_particles, simulate_event
    rng = event_rng(seed, n_hits)
    n_part = max(2, int(np.ceil(n_hits / 250)))
    while True:
        pdg = np.asarray([11, 22, 211, -211])[rng.integers(0, 4, n_part)]
        x, y = rng.uniform(-38, 38, (2, n_part))
        ev = simulate_event(make_particles(pdg, rng.uniform(10, 200, n_part), x, y,
                                           direction=np.stack([x, y, np.full(n_part, 320.0)],
                                                              -1)), rng)
        if len(ev["hit_energy"]) >= n_hits:
            keep = np.sort(rng.choice(len(ev["hit_energy"]), n_hits, replace=False))
            return {k: v[keep] for k, v in ev.items() if k.startswith("hit_")}
        n_part = int(n_part * 1.5) + 1


def load_model(workdir, variant: str):
    from experiments.calo_clustering.run import build_model
    from experiments.calo_clustering.config import get
    v = get(variant)
    model = build_model(v, 0)
    t_beta, t_d = 0.5, 0.5
    trained = False
    if workdir is not None:
        wd = pathlib.Path(workdir)
        with open(wd / "model.pkl", "rb") as fh:
            nnx.update(model, pickle.load(fh)["state"])
        if (wd / "results.json").exists():
            res = json.loads((wd / "results.json").read_text())
            t_beta, t_d = res["network"]["t_beta"], res["network"]["t_d"]
        trained = True
    return model, t_beta, t_d, trained


def time_event(model, hits: dict, bin_size: int | None, t_beta, t_d, max_objects: int,
               repeats: int, assign: str = "greedy") -> dict:
    n_hits = len(hits["hit_energy"])
    net = cn.with_bins(model, bin_size)
    net.eval()
    pad = bin_size or 1
    n = -(-n_hits // pad) * pad
    mask = np.arange(n) < n_hits
    padn = lambda a: np.concatenate([a, np.zeros((n - n_hits,) + a.shape[1:], a.dtype)])  # noqa
    feats = cn.hit_features(padn(hits["hit_position"]), padn(hits["hit_layer"]),
                            padn(hits["hit_energy"]), mask)[None]
    xy = padn(hits["hit_position"][:, :2])[None]
    graphdef, state = nnx.split(net)

    @jax.jit
    def run(state, feats, mask, xy):
        out = nnx.merge(graphdef, state)(feats, mask, xy)
        res = oc._condense_impl(out["beta"][0], out["coords"][0], mask[0], t_beta, t_d,
                                {"energy_correction": out["energy_correction"][0]}, max_objects,
                                assign)
        return res.object_id, res.num_objects, res.overflow

    args = (state, jnp.asarray(feats), jnp.asarray(mask[None]), jnp.asarray(xy))
    t0 = time.perf_counter()
    jax.block_until_ready(run(*args))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, k, overflow = jax.block_until_ready(run(*args))
        times.append(time.perf_counter() - t0)
    return {"hits": n_hits, "padded": n, "knn": f"LSH bins of {bin_size}" if bin_size else "exact",
            "ms_per_event": 1e3 * float(np.median(times)), "compile_s": round(compile_s, 2),
            "objects": int(k), "overflow": bool(overflow)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="a finished calo_clustering run directory")
    ap.add_argument("--variant", default="cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--bin-size", type=int, default=None,
                    help="LSH bin size (default: the trained network's, else 256)")
    ap.add_argument("--max-objects", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--exact", action="store_true")
    ap.add_argument("--t-beta", type=float, default=None, help="override the tuned t_beta")
    ap.add_argument("--t-d", type=float, default=None, help="override the tuned t_d")
    ap.add_argument("--assign", choices=("greedy", "nearest"), default=None,
                    help="hit assignment of condense (default: the run's, else greedy)")
    args = ap.parse_args(argv)
    model, t_beta, t_d, trained = load_model(args.workdir, args.variant)
    t_beta = t_beta if args.t_beta is None else args.t_beta
    t_d = t_d if args.t_d is None else args.t_d
    args.bin_size = args.bin_size or model.bin_size or 256
    if args.assign is None:
        wd = pathlib.Path(args.workdir) if args.workdir else None
        res = wd / "results.json" if wd else None
        args.assign = (json.loads(res.read_text())["network"].get("assign", "greedy")
                       if res is not None and res.exists() else "greedy")
    print(f"calorimeter OC inference, jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"{'trained' if trained else 'untrained'} network, t_beta={t_beta}, t_d={t_d}, "
          f"assign={args.assign}",
          flush=True)
    rows = []
    for n in args.sizes:
        hits = event_hits(n)
        row = time_event(model, hits, args.bin_size, t_beta, t_d, args.max_objects, args.repeats,
                         args.assign)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.exact and n <= 10000:
            row = time_event(model, hits, None, t_beta, t_d, args.max_objects, args.repeats,
                         args.assign)
            rows.append(row)
            print(json.dumps(row), flush=True)
    lsh = {r["hits"]: r["ms_per_event"] for r in rows if r["knn"] != "exact"}
    out = {"benchmark": "calo_inference", "bin_size": args.bin_size, "trained": trained,
           "ms_per_event": {str(k): round(v, 2) for k, v in lsh.items()},
           "exact_ms_per_event": {str(r["hits"]): round(r["ms_per_event"], 2) for r in rows
                                  if r["knn"] == "exact"}}
    if 10000 in lsh and 100000 in lsh:
        out["ratio_1e5_1e4"] = round(lsh[100000] / lsh[10000], 2)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
