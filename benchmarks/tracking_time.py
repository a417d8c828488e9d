"""Time per event of the tracking chain (graph building + interaction-network inference + track
building) against pile-up, with the graph sizes.

For each mu (default 0, 50, 200) ``--events`` simulated events (ttbar + Poisson pile-up,
``hepjax.tracking.sim``; seeds 1000 + i; simulation not timed) go through:

* graph building: ``hepjax.tracking.graph.build_graph`` with the learned cuts, plus the node /
  edge features and padding to static budgets (``to_graphs_tuple``, budgets rounded up in
  steps of 1.25x);
* inference: the interaction network on the padded graph (compiled once per budget
  beforehand: the compilation time is reported apart), ``block_until_ready``;
* track building: connected components of the edges above the working-point threshold
  (``hepjax.tracking.building.build_tracks``).

Also reported (not timed): the graph's efficiency for the true edges of pT > 1 GeV particles
and its purity (``hepjax.tracking.graph.graph_stats``), i.e. the learned cuts against pile-up.

With ``--workdir`` of a finished ``experiments.tracking.run`` the learned cuts, the trained
all-hits network and its validation threshold are used; otherwise cuts learned here on 20
mu = 10 events and a freshly initialised network of the cpu variant's size (threshold 0.5).
Each mu runs in its own subprocess, so that one that runs out of memory is reported as such.

    .venv/bin/python benchmarks/tracking_time.py [--workdir runs/tracking_cpu] [--mus 0 50 200]
        [--events 3] [--readme experiments/tracking/README.md]

Prints a markdown table (medians over the events) and, last, JSON; with ``--readme`` the table
replaces the block between ``<!-- tracking_time:begin -->`` and ``<!-- tracking_time:end -->``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _setup(workdir: str | None):
    from experiments.tracking.config import get
    from experiments.tracking.run import load_model
    from hepjax.tracking import graph as G
    from hepjax.tracking import sim
    from hepjax.tracking import train as T
    v = get("cpu")
    wd = pathlib.Path(workdir) if workdir else None
    if wd and (wd / "cuts.json").exists() and (wd / "model_all.pkl").exists():
        cuts = G.GraphCuts.from_dict(json.loads((wd / "cuts.json").read_text()))
        res = json.loads((wd / "results.json").read_text()) if (wd / "results.json").exists() \
            else {}
        mcfg = json.loads((wd / "models.json").read_text()) if (wd / "models.json").exists() \
            else {"all": v.model_all, "seed": v.seed}
        model = load_model(wd / "model_all.pkl", mcfg["all"], mcfg["seed"])
        thr = res.get("threshold", {}).get("all", {}).get("threshold", 0.5)
        what = f"trained network and cuts of {wd}"
    else:
        evs = [sim.simulate_event(500 + i, sim.SimConfig(pileup_mu=10)) for i in range(20)]
        cuts = G.learn_cuts(evs, keep=v.cut_keep, pt_min=v.pt_min,
                            pair_coverage=v.pair_coverage)
        model = T.make_model(0, **v.model_all)
        thr = 0.5
        what = "freshly initialised network (cpu variant size), cuts learned on 20 mu=10 events"
    return cuts, model, thr, what


def one_mu(mu: float, n_events: int, workdir: str | None) -> dict:
    import jax
    from flax import nnx
    from hepjax.tracking import building as B
    from hepjax.tracking import graph as G
    from hepjax.tracking import sim
    cuts, model, thr, what = _setup(workdir)
    fwd = nnx.jit(lambda m, g: jax.nn.sigmoid(m(g)))
    rows = []
    for i in range(n_events):
        ev = sim.simulate_event(1000 + i, sim.SimConfig(pileup_mu=mu))
        hits = ev["hits"]
        t0 = time.perf_counter()
        s, r = G.build_graph(hits, cuts)
        t1 = time.perf_counter()
        g, _ = G.to_graphs_tuple(hits, s, r)
        t2 = time.perf_counter()
        g = jax.device_put(g)
        tc = time.perf_counter()
        fwd(model, g).block_until_ready()             # compile (and run) for this budget
        t_compile = time.perf_counter() - tc
        t3 = time.perf_counter()
        sc = np.asarray(fwd(model, g).block_until_ready())[:len(s)]
        t4 = time.perf_counter()
        B.build_tracks(len(hits["x"]), s, r, sc, thr)
        t5 = time.perf_counter()
        # graph quality (not timed): the learned cuts vs pile-up
        q = G.graph_stats(s, r, G.graph_truth(hits, ev["truth"], ev["particles"]),
                          ev["particles"])
        rows.append({"n_hits": len(hits["x"]), "n_edges": int(len(s)),
                     "graph_efficiency_pt1": q["graph_efficiency"],
                     "graph_purity": q["graph_purity"],
                     "graph_s": t1 - t0, "features_pad_s": t2 - t1, "inference_s": t4 - t3,
                     "tracks_s": t5 - t4, "compile_s": t_compile,
                     "total_s": (t1 - t0) + (t2 - t1) + (t4 - t3) + (t5 - t4)})
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    return {"mu": mu, "events": rows, "median": med, "model": what, "threshold": thr}


def table(results: list[dict]) -> str:
    head = ("| mu | hits | edges | graph eff. pT>1 [%] | graph purity [%] | graph build [s] | features + pad [s] | IN inference [s] | "
            "track building [s] | total [s] | total / edges [us] | (compile [s]) |")
    out = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in results:
        if "error" in r:
            out.append(f"| {r['mu']:g} | - | - | {r['error']} | | | | | | | | |")
            continue
        m = r["median"]
        out.append(f"| {r['mu']:g} | {m['n_hits']:.0f} | {m['n_edges']:.0f} | "
                   f"{100 * m['graph_efficiency_pt1']:.1f} | {100 * m['graph_purity']:.1f} | "
                   f"{m['graph_s']:.3f} | {m['features_pad_s']:.3f} | {m['inference_s']:.3f} | "
                   f"{m['tracks_s']:.3f} | {m['total_s']:.3f} | "
                   f"{1e6 * m['total_s'] / max(m['n_edges'], 1):.2f} | {m['compile_s']:.1f} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--mus", type=float, nargs="+", default=[0, 50, 200])
    ap.add_argument("--events", type=int, default=3)
    ap.add_argument("--readme", default=None)
    ap.add_argument("--one-mu", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one_mu is not None:
        print("RESULT " + json.dumps(one_mu(args.one_mu, args.events, args.workdir)))
        return
    results = []
    for mu in args.mus:
        cmd = [sys.executable, __file__, "--one-mu", str(mu), "--events", str(args.events)]
        if args.workdir:
            cmd += ["--workdir", args.workdir]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode == 0 and line:
            results.append(json.loads(line[-1][7:]))
        else:
            why = "killed (out of memory?)" if p.returncode in (-9, 137) else \
                f"failed (rc {p.returncode}): {p.stderr.strip().splitlines()[-1:]}"
            results.append({"mu": mu, "error": why})
        print(f"mu {mu:g}: " + json.dumps(results[-1].get("median", results[-1])), flush=True)
    what = next((r["model"] for r in results if "model" in r), "")
    header = (f"{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.node()} "
              f"({os.cpu_count()} cores, CPU), medians of {args.events} events per mu "
              f"(simulation seeds 1000..{999 + args.events}); {what}.\n\n")
    tab = header + table(results)
    print(tab)
    if args.readme:
        path = pathlib.Path(args.readme)
        text = path.read_text()
        b, e = "<!-- tracking_time:begin -->", "<!-- tracking_time:end -->"
        if b in text and e in text:
            text = text[:text.index(b) + len(b)] + "\n" + tab + text[text.index(e):]
            path.write_text(text)
        else:
            print(f"no {b} ... {e} block in {path}; not written")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
