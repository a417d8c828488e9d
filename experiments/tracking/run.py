"""Tracking with an interaction-network edge classifier, trained on simulation (issue 24).

    python -m experiments.tracking.run [--variant smoke|cpu] --workdir DIR [--seed S]
        [--real PREFIX]

Steps (outputs in DIR):

1. events (``hepjax.tracking.sim``): ttbar + Poisson pile-up in the real TrackML geometry.
   Training events: mu uniform in the variant's ``mu_train`` (per event); validation and test:
   ``mu_test``. Seeds: event i of set k (train 0, val 1, test 2) is ``simulate_event(
   SeedSequence([seed, k, i]))``; the training mu from ``default_rng([seed, 9])``.
2. graph cuts learned on the first ``n_cut_events`` training events
   (``hepjax.tracking.graph.learn_cuts``; ``cuts.json``), graphs built for every event in two
   settings:
   * ``filtered``: only the hits of particles with pT > 1 GeV (no noise, no low-pT hits), the
     setting of the published HEP.TrkX / Exa.TrkX interaction-network edge numbers (truth
     information used to select the hits: an upper bound, not a reconstruction);
   * ``all``: every hit, noise included (the realistic setting).
3. one interaction network per setting (``hepjax.tracking.train``; ``model_<setting>.pkl``,
   ``train_log.json``), weighted BCE, Adam, seeded.
4. the edge threshold (working point) chosen on the *validation* events: the one maximising
   min(edge efficiency of pT > 1 GeV true edges, edge purity).
5. test events: edge ROC AUC, edge efficiency / purity at the working point (pT > 1 GeV true
   edges and all true edges), graph efficiency and size, tracks (connected components of the
   selected edges): efficiency (double majority), fake and duplicate rates for pT > 1 GeV and
   all particles, the TrackML score; binned in pT and eta. ``results.json``, ``table.md``.
6. the real TrackML event (``--real``, default ../shared/data/trackml_event_gnn_tracking):
   the simulation-trained networks applied as they are (domain transfer), the same metrics
   with the file's truth weights, and ``submission_real.csv`` (all-hits setting).
7. plots: ``event_display.png`` (a test event) and ``event_display_real.png`` (r-z and x-y,
   true and predicted tracks), ``efficiency.png`` (track and edge efficiency vs pT and eta),
   ``loss.png``.

Definitions of true edges, efficiencies and purity: ``hepjax.tracking.graph`` and
``hepjax.tracking.metrics`` docstrings. "pT > 1 GeV" efficiencies count the true edges (or
particles) of pT > 1 GeV particles; purities count every selected edge, and an edge of a
low-pT particle that joins two consecutive hits is a correct edge.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import pickle
import platform
import sys
import time

import numpy as np

from experiments.tracking.config import Variant, get

REAL_DEFAULT = (pathlib.Path(__file__).resolve().parents[2]
                / "../shared/data/trackml_event_gnn_tracking/event000000001")
PT_BINS = np.array([0.1, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0])
ETA_BINS = np.linspace(-4.0, 4.0, 17)
SETTINGS = ("filtered", "all")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------ events

def event_seed(seed: int, kind: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, kind, i]).generate_state(1)[0])


def simulate_set(seed: int, kind: int, n: int, mus) -> list[dict]:
    from hepjax.tracking import sim
    out = []
    for i in range(n):
        ev = sim.simulate_event(event_seed(seed, kind, i), sim.SimConfig(pileup_mu=float(mus[i])))
        ev["mu"] = float(mus[i])
        out.append(ev)
    return out


def hit_pt(ev) -> np.ndarray:
    """pT of each hit's particle (0 for noise and particles missing from the table)."""
    pid = np.asarray(ev["truth"]["particle_id"])
    parts = ev["particles"]
    order = np.argsort(parts["particle_id"])
    pos = np.clip(np.searchsorted(parts["particle_id"][order], pid), 0, len(order) - 1)
    rows = order[pos]
    known = (parts["particle_id"][rows] == pid) & (pid != 0)
    return np.where(known, np.hypot(parts["px"], parts["py"])[rows], 0.0)


def subset_event(ev, keep: np.ndarray) -> dict:
    """The event restricted to the hits ``keep`` (bool), particles with a kept hit."""
    hits = {k: np.asarray(v)[keep] for k, v in ev["hits"].items()}
    truth = {k: np.asarray(v)[keep] for k, v in ev["truth"].items()}
    pk = np.isin(ev["particles"]["particle_id"], truth["particle_id"])
    parts = {k: np.asarray(v)[pk] for k, v in ev["particles"].items()}
    return {"hits": hits, "truth": truth, "particles": parts}


def prepare(ev, cuts, setting: str, pt_min: float) -> dict:
    """Graph, truth and labels of one event in one setting."""
    from hepjax.tracking import graph as G
    from hepjax.tracking import metrics as M
    if setting == "filtered":
        ev = subset_event(ev, hit_pt(ev) > pt_min)
    t0 = time.perf_counter()
    s, r = G.build_graph(ev["hits"], cuts)
    t_build = time.perf_counter() - t0
    truth = G.graph_truth(ev["hits"], ev["truth"], ev["particles"])
    labels = M.edge_labels(s, r, truth)
    pt = hit_pt(ev)
    return {"ev": ev, "s": s, "r": r, "truth": truth, "labels": labels,
            "target": labels & (pt[s] > pt_min), "t_build": t_build}


def pad_all(items: list[dict], bucket_factor: float | None = 1.5) -> int:
    """Adds the padded graph to each item: one node budget for the set, edge budgets in
    steps of ``bucket_factor`` (few compilations; None: one edge budget for the set)."""
    from hepjax.tracking import graph as G
    n_node = G.budget_round(max(len(it["ev"]["hits"]["x"]) for it in items) + 1)
    e_max = G.budget_round(max(len(it["s"]) for it in items), base=512, factor=1.5)
    for it in items:
        n_edge = e_max if bucket_factor is None else G.budget_round(
            len(it["s"]), base=512, factor=bucket_factor)
        it["graph"], it["lab"] = G.to_graphs_tuple(
            it["ev"]["hits"], it["s"], it["r"], it["labels"], n_node=n_node, n_edge=n_edge)
    return n_node


def score_items(model, items: list[dict]) -> None:
    from hepjax.tracking.train import predict
    for it in items:
        it["scores"] = predict(model, it["graph"])[:len(it["s"])]


# --------------------------------------------------------------------------------- metrics

def choose_threshold(items: list[dict]) -> dict:
    """The threshold maximising min(efficiency of pT>1 true edges, purity), pooled over the
    (validation) items, on a grid of 0.01 to 0.99."""
    sc = np.concatenate([it["scores"] for it in items])
    lab = np.concatenate([it["labels"] for it in items])
    tgt = np.concatenate([it["target"] for it in items])
    best = None
    for t in np.round(np.arange(0.01, 1.0, 0.01), 2):
        sel = sc >= t
        eff = (tgt & sel).sum() / max(tgt.sum(), 1)
        pur = (lab & sel).sum() / max(sel.sum(), 1)
        if best is None or min(eff, pur) > best["min"]:
            best = {"threshold": float(t), "efficiency": float(eff), "purity": float(pur),
                    "min": float(min(eff, pur))}
    return best


def _ratio(a, b):
    return float(a / b) if b else float("nan")


def _err(a, b):
    return float(np.sqrt(max(a, 0) * max(b - a, 0) / b**3)) if b else float("nan")


def _mean_sem(x):
    x = np.asarray([v for v in x if np.isfinite(v)], np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def evaluate(items: list[dict], threshold: float, pt_min: float, with_score: bool = True,
             build_method: str = "components") -> dict:
    """All metrics of the scored items at ``threshold`` (pooled counts, binomial errors;
    per-event mean and standard error of the mean for the AUC and the TrackML score)."""
    from hepjax.tracking import building as B
    from hepjax.tracking import metrics as M
    from hepjax.tracking.train import roc_auc
    res: dict = {"n_events": len(items)}
    lab = np.concatenate([it["labels"] for it in items])
    sc = np.concatenate([it["scores"] for it in items])
    tgt = np.concatenate([it["target"] for it in items])
    res["auc"] = roc_auc(lab, sc)
    res["auc_event_mean"], res["auc_event_sem"] = _mean_sem(
        [roc_auc(it["labels"], it["scores"]) for it in items])
    # the ROC restricted to the pT>1 true edges against all false edges
    res["auc_pt1"] = roc_auc(tgt[tgt | ~lab], sc[tgt | ~lab])
    keys = ("n_true", "n_edges", "n_true_edges", "n_selected", "n_true_selected",
            "n_true_in_graph", "n_true_found")
    for name, ptm in (("pt1", pt_min), ("all", None)):
        tot = dict.fromkeys(keys, 0)
        for it in items:
            m = M.edge_metrics(it["s"], it["r"], it["scores"], it["truth"], threshold,
                               particles=it["ev"]["particles"], pt_min=ptm)
            for k in keys:
                tot[k] += m[k]
        res[f"edge_{name}"] = {
            **tot,
            "efficiency": _ratio(tot["n_true_found"], tot["n_true_in_graph"]),
            "efficiency_err": _err(tot["n_true_found"], tot["n_true_in_graph"]),
            "purity": _ratio(tot["n_true_selected"], tot["n_selected"]),
            "purity_err": _err(tot["n_true_selected"], tot["n_selected"]),
            "graph_efficiency": _ratio(tot["n_true_in_graph"], tot["n_true"]),
            "graph_purity": _ratio(tot["n_true_edges"], tot["n_edges"]),
            "total_efficiency": _ratio(tot["n_true_found"], tot["n_true"])}
    res["mean_hits"] = float(np.mean([len(it["ev"]["hits"]["x"]) for it in items]))
    res["mean_edges"] = float(np.mean([len(it["s"]) for it in items]))
    res["mean_mu"] = float(np.mean([it.get("mu", np.nan) for it in items]))
    # tracks
    tkeys = ("n_particles", "n_matched", "n_tracks", "n_fake", "n_majority_tracks",
             "n_duplicates")
    tk = {"pt1": dict.fromkeys(tkeys, 0), "all": dict.fromkeys(tkeys, 0)}
    binned = {}
    scores = []
    for it in items:
        ev = it["ev"]
        n = len(ev["hits"]["x"])
        tid = B.build_tracks(n, it["s"], it["r"], it["scores"], threshold, method=build_method,
                             unassigned="minus_one")
        it["track_id"] = tid
        pid = ev["truth"]["particle_id"]
        for name, ptm in (("pt1", pt_min), ("all", None)):
            m = M.track_metrics(tid, pid, ev["particles"], pt_min=ptm)
            for k in tkeys:
                tk[name][k] += m[k]
        for key, var, bins, ptm in (("pt", "pt", PT_BINS, None), ("eta_pt1", "eta", ETA_BINS,
                                                                   pt_min),
                                    ("eta", "eta", ETA_BINS, None)):
            b = M.track_metrics_binned(tid, pid, ev["particles"], var, bins, pt_min=ptm)
            e = M.edge_efficiency_binned(it["s"], it["r"], it["scores"], it["truth"],
                                         ev["particles"], var, bins, threshold, pt_min=ptm)
            acc = binned.setdefault(key, {"edges": bins.tolist(), "n_particles": 0,
                                          "n_matched": 0, "n_true_in_graph": 0,
                                          "n_true_found": 0, "n_true": 0})
            acc["n_particles"] = acc["n_particles"] + b["n_particles"]
            acc["n_matched"] = acc["n_matched"] + b["n_matched"]
            for k in ("n_true_in_graph", "n_true_found", "n_true"):
                acc[k] = acc[k] + e[k]
        if with_score:
            sub = B.make_submission(0, ev["hits"]["hit_id"], tid)
            scores.append(M.score_event(ev["truth"], sub))
    for name in ("pt1", "all"):
        t = tk[name]
        res[f"track_{name}"] = {
            **t, "efficiency": _ratio(t["n_matched"], t["n_particles"]),
            "efficiency_err": _err(t["n_matched"], t["n_particles"]),
            "fake_rate": _ratio(t["n_fake"], t["n_tracks"]),
            "fake_rate_err": _err(t["n_fake"], t["n_tracks"]),
            "duplicate_rate": _ratio(t["n_duplicates"], t["n_majority_tracks"]),
            "duplicate_rate_err": _err(t["n_duplicates"], t["n_majority_tracks"])}
    for key, acc in binned.items():
        npart = np.asarray(acc["n_particles"], float)
        nm = np.asarray(acc["n_matched"], float)
        ni = np.asarray(acc["n_true_in_graph"], float)
        nf = np.asarray(acc["n_true_found"], float)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc["track_efficiency"] = (nm / npart).tolist()
            acc["track_efficiency_err"] = [_err(a, b) for a, b in zip(nm, npart)]
            acc["edge_efficiency"] = (nf / ni).tolist()
            acc["edge_efficiency_err"] = [_err(a, b) for a, b in zip(nf, ni)]
        for k in ("n_particles", "n_matched", "n_true_in_graph", "n_true_found", "n_true"):
            acc[k] = np.asarray(acc[k]).astype(int).tolist()
    res["binned"] = binned
    if with_score:
        res["trackml_score"], res["trackml_score_sem"] = _mean_sem(scores)
        res["trackml_scores"] = [float(x) for x in scores]
    return res


# ---------------------------------------------------------------------------------- models

def save_model(model, path: pathlib.Path) -> None:
    import jax
    from flax import nnx
    with open(path, "wb") as f:
        pickle.dump(jax.device_get(nnx.to_pure_dict(nnx.state(model, nnx.Param))), f)


def load_model(path: pathlib.Path, model_kwargs: dict, seed: int):
    from flax import nnx
    from hepjax.tracking.train import make_model
    model = make_model(seed, **model_kwargs)
    with open(path, "rb") as f:
        pure = pickle.load(f)
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model


# ----------------------------------------------------------------------------------- plots

def event_display(item: dict, threshold: float, path: pathlib.Path, title: str,
                  pt_min: float = 1.0) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    ev = item["ev"]
    x, y, z = (np.asarray(ev["hits"][c]) for c in ("x", "y", "z"))
    r = np.hypot(x, y)
    pt = hit_pt(ev)
    tr = item["truth"]
    keep_t = pt[tr.senders] > pt_min
    ts, trr = tr.senders[keep_t], tr.receivers[keep_t]
    tcol = np.asarray(tr.particle_id[keep_t] % 9973, float)
    sel = item["scores"] >= threshold
    ps, pr = item["s"][sel], item["r"][sel]
    tid = item.get("track_id")
    if tid is None:
        tid = np.zeros(len(x), int)
    big = np.bincount(np.maximum(tid, 0))
    ok = (tid[ps] >= 0) & (big[np.maximum(tid[ps], 0)] >= 5)
    ps, pr = ps[ok], pr[ok]
    pcol = np.asarray(tid[ps] % 9973, float)
    fig, axes = plt.subplots(2, 2, figsize=(13, 11))
    for row, (u, v, xl, yl) in enumerate(((x, y, "x [mm]", "y [mm]"),
                                          (z, r, "z [mm]", "r [mm]"))):
        for col, (s, rr, c, lab) in enumerate(
                ((ts, trr, tcol, f"true tracks, pT > {pt_min:g} GeV"),
                 (ps, pr, pcol, "predicted tracks (>= 5 hits), selected edges"))):
            ax = axes[row, col]
            ax.scatter(u, v, s=0.3, c="0.75", rasterized=True)
            seg = np.stack([np.stack([u[s], v[s]], -1), np.stack([u[rr], v[rr]], -1)], 1)
            lc = LineCollection(seg, array=c, cmap="tab20", linewidths=0.7)
            ax.add_collection(lc)
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.set_title(lab, fontsize=10)
            if row == 0:
                ax.set_aspect("equal")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def efficiency_plot(results: dict, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    curves = [("sim test, all hits", results["test"].get("all")),
              ("sim test, pT>1 hits only", results["test"].get("filtered")),
              ("real event, all hits (sim-trained)", (results.get("real") or {}).get("all"))]
    for row, kind in enumerate(("track", "edge")):
        for col, (key, xl) in enumerate((("pt", "particle pT [GeV]"),
                                         ("eta_pt1", "particle eta (pT > 1 GeV)"))):
            ax = axes[row, col]
            for name, res in curves:
                if not res or key not in res.get("binned", {}):
                    continue
                if name.startswith("sim test, pT>1") and key == "pt":
                    pass
                b = res["binned"][key]
                e = np.asarray(b["edges"])
                c = 0.5 * (e[1:] + e[:-1]) if key != "pt" else np.sqrt(e[1:] * e[:-1])
                ax.errorbar(c, b[f"{kind}_efficiency"], yerr=b[f"{kind}_efficiency_err"],
                            xerr=None, fmt="o-", ms=3, label=name)
            if key == "pt":
                ax.set_xscale("log")
            ax.set_xlabel(xl)
            ax.set_ylabel("track efficiency (double majority)" if kind == "track"
                          else "edge efficiency (classifier, true edges in graph)")
            ax.set_ylim(0, 1.05)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_plot(train_log: dict, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, h in train_log.items():
        ax.plot(h["step"], h["loss"], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("weighted BCE (training)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------- table

def _pct(v, e=None):
    if v is None or not np.isfinite(v):
        return "-"
    return f"{100 * v:.1f} ± {100 * e:.1f}" if e is not None and np.isfinite(e) else \
        f"{100 * v:.1f}"


def _mu(m):
    return "-" if m is None or not np.isfinite(m) else f"{m:.3g}"


def table_md(results: dict) -> str:
    rows = []
    head = ("| setting | events | mu | hits | edges | graph eff. pT>1 | graph purity | AUC | "
            "threshold | edge eff. pT>1 | edge purity | edge eff. all | track eff. pT>1 | "
            "track eff. all | fake | duplicate | TrackML score |")
    rows.append(head)
    rows.append("|" + "|".join(["---"] * (head.count("|") - 1)) + "|")
    blocks = [(f"sim test, {s}", results["test"].get(s), results["threshold"].get(s))
              for s in SETTINGS]
    real = results.get("real") or {}
    blocks += [(f"REAL event (sim-trained), {s}", real.get(s), results["threshold"].get(s))
               for s in SETTINGS]
    for name, r, thr in blocks:
        if not r:
            continue
        e1, ea, t1, ta = r["edge_pt1"], r["edge_all"], r["track_pt1"], r["track_all"]
        score = r.get("trackml_score")
        score_s = "-" if score is None or not np.isfinite(score) else (
            f"{score:.3f} ± {r.get('trackml_score_sem', 0):.3f}" if r["n_events"] > 1
            else f"{score:.3f}")
        auc = f"{r['auc']:.4f}"
        rows.append(
            f"| {name} | {r['n_events']} | {_mu(r.get('mean_mu'))} | "
            f"{r['mean_hits']:.0f} | {r['mean_edges']:.0f} | "
            f"{_pct(e1['graph_efficiency'])} | {_pct(e1['graph_purity'])} | {auc} | "
            f"{thr['threshold']:.2f} | "
            f"{_pct(e1['efficiency'], e1['efficiency_err'])} | "
            f"{_pct(e1['purity'], e1['purity_err'])} | "
            f"{_pct(ea['efficiency'], ea['efficiency_err'])} | "
            f"{_pct(t1['efficiency'], t1['efficiency_err'])} | "
            f"{_pct(ta['efficiency'], ta['efficiency_err'])} | "
            f"{_pct(ta['fake_rate'], ta['fake_rate_err'])} | "
            f"{_pct(ta['duplicate_rate'], ta['duplicate_rate_err'])} | {score_s} |")
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------------ main

def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="cpu", choices=("smoke", "cpu"))
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--real", default=str(REAL_DEFAULT),
                    help="prefix of the real TrackML event ('' to skip)")
    args = ap.parse_args(argv)
    v: Variant = get(args.variant)
    if args.seed is not None:
        v = dataclasses.replace(v, seed=args.seed)
    wd = pathlib.Path(args.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    from hepjax.tracking import building as B
    from hepjax.tracking import graph as G
    from hepjax.tracking import trackml
    from hepjax.tracking import train as T

    log(f"variant {v.name}, seed {v.seed}, workdir {wd}")
    rng = np.random.default_rng([v.seed, 9])
    mus_train = rng.integers(v.mu_train[0], v.mu_train[1] + 1, v.n_train)
    t0 = time.perf_counter()
    train_ev = simulate_set(v.seed, 0, v.n_train, mus_train)
    val_ev = simulate_set(v.seed, 1, v.n_val, [v.mu_test] * v.n_val)
    test_ev = simulate_set(v.seed, 2, v.n_test, [v.mu_test] * v.n_test)
    t_sim = time.perf_counter() - t0
    log(f"simulated {v.n_train}+{v.n_val}+{v.n_test} events in {t_sim:.0f} s")

    cuts = G.learn_cuts(train_ev[:v.n_cut_events], keep=v.cut_keep, pt_min=v.pt_min,
                        pair_coverage=v.pair_coverage)
    (wd / "cuts.json").write_text(json.dumps(cuts.to_dict(), indent=1))
    log(f"learned cuts: {len(cuts.pairs)} layer pairs "
        f"({sum(p.frm == p.to for p in cuts.pairs)} same-layer)")

    results: dict = {"variant": v.name, "seed": v.seed, "config": repr(v),
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "machine": f"{platform.node()} {platform.processor() or platform.machine()}"
                                f", {__import__('os').cpu_count()} cores",
                     "threshold": {}, "val": {}, "test": {}, "real": {}, "train_log": {},
                     "graph_vs_mu": {}, "timing": {"simulation_s": t_sim}}
    real = None
    if args.real:
        real = trackml.load_event(args.real, parts=("hits", "particles", "truth"))
        real["mu"] = float("nan")
    (wd / "models.json").write_text(json.dumps({"filtered": v.model_filtered,
                                                 "all": v.model_all, "seed": v.seed}))
    sets = {}
    models = {}
    for setting in SETTINGS:
        t0 = time.perf_counter()
        tr_items = [prepare(e, cuts, setting, v.pt_min) for e in train_ev]
        va_items = [prepare(e, cuts, setting, v.pt_min) for e in val_ev]
        te_items = [prepare(e, cuts, setting, v.pt_min) for e in test_ev]
        for it, e in zip(tr_items + va_items + te_items, train_ev + val_ev + test_ev):
            it["mu"] = e["mu"]
        nn = pad_all(tr_items, v.bucket_factor)
        pad_all(va_items, None)
        pad_all(te_items, None)
        log(f"[{setting}] graphs built in {time.perf_counter() - t0:.0f} s; train mean "
            f"{np.mean([len(i['s']) for i in tr_items]):.0f} edges, "
            f"{np.mean([len(i['ev']['hits']['x']) for i in tr_items]):.0f} hits; node budget {nn}")
        mk = v.model_filtered if setting == "filtered" else v.model_all
        tc = v.train_filtered if setting == "filtered" else v.train_all
        tc = dataclasses.replace(tc, seed=v.seed)
        path = wd / f"model_{setting}.pkl"
        if path.exists():
            model = load_model(path, mk, v.seed)
            log(f"[{setting}] loaded {path}")
        else:
            pos = np.concatenate([i["labels"] for i in tr_items]).mean()
            model = T.make_model(v.seed, **mk)
            t0 = time.perf_counter()
            hist = T.train(model, [(i["graph"], i["lab"]) for i in tr_items], tc,
                           log=lambda m, s=setting: log(f"[{s}] {m}"))
            hist["train_seconds"] = time.perf_counter() - t0
            hist["true_edge_fraction"] = float(pos)
            results["train_log"][setting] = hist
            save_model(model, path)
            log(f"[{setting}] trained {tc.num_steps} steps in {hist['train_seconds']:.0f} s")
        models[setting] = model
        score_items(model, va_items)
        thr = choose_threshold(va_items)
        results["threshold"][setting] = thr
        log(f"[{setting}] validation working point {thr}")
        t0 = time.perf_counter()
        score_items(model, te_items)
        results["test"][setting] = evaluate(te_items, thr["threshold"], v.pt_min,
                                            with_score=(setting == "all"))
        r = results["test"][setting]
        log(f"[{setting}] test: AUC {r['auc']:.4f}, edge eff pT>1 "
            f"{r['edge_pt1']['efficiency']:.4f}, purity {r['edge_pt1']['purity']:.4f}, track "
            f"eff pT>1 {r['track_pt1']['efficiency']:.4f} ({time.perf_counter() - t0:.0f} s)")
        sets[setting] = te_items
        if real is not None:
            it = prepare(real, cuts, setting, v.pt_min)
            pad_all([it])
            score_items(model, [it])
            results["real"][setting] = evaluate([it], thr["threshold"], v.pt_min,
                                                with_score=(setting == "all"))
            r = results["real"][setting]
            log(f"[{setting}] REAL event: AUC {r['auc']:.4f}, edge eff pT>1 "
                f"{r['edge_pt1']['efficiency']:.4f}, purity {r['edge_pt1']['purity']:.4f}, "
                f"track eff pT>1 {r['track_pt1']['efficiency']:.4f}, score "
                f"{r.get('trackml_score', float('nan'))}")
            if setting == "all":
                sub = B.make_submission(1, real["hits"]["hit_id"], it["track_id"])
                trackml.write_submission(wd / "submission_real.csv", **sub)
                results["real"]["submission"] = str(wd / "submission_real.csv")
                event_display(it, thr["threshold"], wd / "event_display_real.png",
                              "real TrackML event, network trained on simulation only")
        if setting == "all":
            event_display(te_items[0], thr["threshold"], wd / "event_display.png",
                          f"simulated test event (ttbar + pile-up mu = {v.mu_test:g}), all hits")
        del tr_items, va_items
    # graph size and efficiency of the learned cuts vs pile-up (on the test events' mu too)
    results["graph_vs_mu"][str(v.mu_test)] = {
        "n_hits": results["test"]["all"]["mean_hits"],
        "n_edges": results["test"]["all"]["mean_edges"],
        "graph_efficiency_pt1": results["test"]["all"]["edge_pt1"]["graph_efficiency"],
        "graph_purity": results["test"]["all"]["edge_pt1"]["graph_purity"]}
    efficiency_plot(results, wd / "efficiency.png")
    if results["train_log"]:
        loss_plot(results["train_log"], wd / "loss.png")
    results["timing"]["total_s"] = time.perf_counter() - t_start
    (wd / "results.json").write_text(json.dumps(results, indent=1, default=float))
    table = table_md(results)
    (wd / "table.md").write_text(table)
    print(table)
    log(f"done in {results['timing']['total_s']:.0f} s")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
