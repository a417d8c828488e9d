"""LRP for MLPF: which detector elements drive a neutral-hadron prediction (after F. Mokhtar et
al., "Explaining machine-learned particle-flow reconstruction", arXiv:2111.12840).

    python -m experiments.explain.mlpf_lrp --model runs/particle_flow_cpu/model.pkl \\
        --events runs/particle_flow_cpu/data/cpu_test_ttbar_pu10_seed2.h5 \\
        --workdir runs/explain_mlpf [--n-events 10 --per-event 8]

Takes a trained MLPF (the pickle ``experiments/particle_flow/run.py`` writes) and test events,
picks in each event up to ``per-event`` real elements the model classifies as neutral hadrons
(the highest neutral-hadron logits), and explains that logit with ``hepjax.explain.mlpf``
(epsilon rule, eps = 1e-6; bins and kernels held fixed). Per explained element it records the
share of |relevance| on the element itself, on the other elements by distance dR (eta, phi
of the elements; calorimeter clusters at their cluster position) and by element type (track,
ECAL, HCAL), next to the share of elements at that distance (what a uniform spread would
give), and the conservation residual (input + bias relevance vs the logit, float32).
Writes results.json and mlpf_relevance.png to WORKDIR.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import pickle
import time

import jax
import jax.numpy as jnp
import numpy as np

from hepjax.explain import lrp
from hepjax.explain import mlpf as explain_mlpf

NEUTRAL_HADRON = 2
TYPES = {1: "track", 2: "ecal", 3: "hcal"}
DR_EDGES = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, np.inf)


def _eta_phi(x):
    return x[..., 2], np.arctan2(x[..., 3], x[..., 4])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--n-events", type=int, default=10)
    ap.add_argument("--per-event", type=int, default=8)
    ap.add_argument("--eps", type=float, default=1e-6)
    args = ap.parse_args(argv)
    from hepjax.models import mlpf
    from hepjax.pf import events as pfe

    model_path = pathlib.Path(args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"--model {model_path}: no such file (train one with "
                                "python -m experiments.particle_flow.run)")
    with open(model_path, "rb") as f:
        model = pickle.load(f)[0]
    events = pfe.read(args.events)
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rule = lrp.epsilon(args.eps)
    bin_size = model.bin_size

    @jax.jit
    def run(x, m, element):
        xb = jnp.broadcast_to(x, (element.shape[0],) + x.shape[1:])
        mb = jnp.broadcast_to(m, (element.shape[0],) + m.shape[1:])
        y, r = explain_mlpf.explain_element(model, xb, mb, element, NEUTRAL_HADRON, rule=rule)
        rb = explain_mlpf.bias_relevance(model, xb, mb, element, NEUTRAL_HADRON, rule=rule)
        return y, r, rb

    forward = jax.jit(lambda x, m: model(x, m)[0])
    rows = []
    example = None
    start = time.perf_counter()
    for i in range(min(args.n_events, len(events))):
        n = int(events.n_elements()[i])
        size = mlpf.padded_size(n, bin_size) if bin_size else n
        x, y_true, _, m = events.padded([i], size, links=getattr(model, "physics_inputs", False))
        logits = np.asarray(forward(jnp.asarray(x), jnp.asarray(m)))[0, :n]
        pred = logits.argmax(-1)
        cand = np.flatnonzero(pred == NEUTRAL_HADRON)
        if len(cand) == 0:
            continue
        cand = cand[np.argsort(-logits[cand, NEUTRAL_HADRON])][:args.per_event]
        k = args.per_event  # fixed batch (one compilation per padded size): repeat the last
        elements = np.concatenate([cand, np.full(k - len(cand), cand[-1])])
        y, r, rb = (np.asarray(a) for a in run(jnp.asarray(x), jnp.asarray(m),
                                                jnp.asarray(elements, jnp.int32)))
        eta, phi = _eta_phi(x[0, :n])
        typ = x[0, :n, 0].astype(int)
        for j, el in enumerate(cand):
            rel = r[j, :n]
            total = np.abs(rel).sum()
            dphi = np.angle(np.exp(1j * (phi - phi[el])))
            dr = np.hypot(eta - eta[el], dphi)
            others = np.arange(n) != el
            row = {"event": i, "element": int(el), "type": TYPES.get(int(typ[el]), "?"),
                   "true_class": int(y_true[0, el]), "logit": float(y[j]),
                   "conservation_residual": float(abs(rel.sum() + rb[j] - y[j]) / abs(y[j])),
                   "self_share": float(abs(rel[el]) / total)}
            for lo, hi in zip(DR_EDGES[:-1], DR_EDGES[1:]):
                sel = others & (dr >= lo) & (dr < hi)
                row[f"share_dr_{lo}_{hi}"] = float(np.abs(rel[sel]).sum() / total)
                row[f"elements_dr_{lo}_{hi}"] = float(sel.sum() / others.sum())
            for t, name in TYPES.items():
                row[f"share_{name}"] = float(np.abs(rel[others & (typ == t)]).sum() / total)
            rows.append(row)
            if example is None and row["self_share"] < 0.9:
                example = (x[0, :n], rel, int(el))
    seconds = time.perf_counter() - start
    if not rows:
        raise RuntimeError("no element was classified as a neutral hadron in the events read")
    keys = [k for k in rows[0] if k.startswith(("share", "self", "elements", "conservation"))]
    summary = {k: [float(np.mean([r[k] for r in rows])),
                   float(np.std([r[k] for r in rows]) / np.sqrt(len(rows)))] for k in keys}
    summary["conservation_residual_max"] = float(max(r["conservation_residual"] for r in rows))
    summary["true_neutral_hadron_fraction"] = float(np.mean([r["true_class"] == NEUTRAL_HADRON
                                                             for r in rows]))
    out = {"model": str(model_path), "events": str(args.events), "n_explained": len(rows),
           "rule": rule._asdict(), "seconds": round(seconds, 1), "summary": summary,
           "rows": rows, "date": time.strftime("%Y-%m-%d", time.gmtime())}
    (workdir / "results.json").write_text(json.dumps(out, indent=1))
    _plot(workdir / "mlpf_relevance.png", summary, example)
    return out


def _plot(path, summary, example):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    labels = [f"{lo}-{hi}" for lo, hi in zip(DR_EDGES[:-1], DR_EDGES[1:])]
    share = [summary[f"share_dr_{lo}_{hi}"][0] for lo, hi in zip(DR_EDGES[:-1], DR_EDGES[1:])]
    err = [summary[f"share_dr_{lo}_{hi}"][1] for lo, hi in zip(DR_EDGES[:-1], DR_EDGES[1:])]
    frac = [summary[f"elements_dr_{lo}_{hi}"][0] for lo, hi in zip(DR_EDGES[:-1], DR_EDGES[1:])]
    pos = np.arange(len(labels))
    ax.bar(pos - 0.2, share, 0.4, yerr=err, label="share of |relevance|")
    ax.bar(pos + 0.2, frac, 0.4, label="share of elements")
    ax.set_xticks(pos, labels, rotation=30)
    ax.set_xlabel("dR to the explained element (other elements)")
    ax.set_title(f"self: {summary['self_share'][0]:.2f} of |R|", fontsize=9)
    ax.legend(fontsize=8)
    if example is not None:
        x, rel, el = example
        eta, phi = _eta_phi(x)
        dphi = np.angle(np.exp(1j * (phi - phi[el])))
        near = np.hypot(eta - eta[el], dphi) < 0.6
        r = rel / np.abs(rel).sum()
        lim = np.abs(r[near]).max()
        ax = axes[1]
        for t, marker in ((1, "^"), (2, "o"), (3, "s")):
            s = near & (x[:, 0] == t)
            sc = ax.scatter(eta[s] - eta[el], dphi[s], c=r[s], cmap="RdBu_r", vmin=-lim, vmax=lim,
                            marker=marker, s=20 + 200 * np.sqrt(x[s, 5] / x[near, 5].max()),
                            edgecolors="k", linewidths=0.3, label=TYPES[t])
        ax.scatter([0], [0], marker="x", c="k", s=80, label="explained element")
        fig.colorbar(sc, ax=ax, label="R / sum |R|")
        ax.set_xlabel("eta - eta_el")
        ax.set_ylabel("phi - phi_el")
        ax.legend(fontsize=7)
        ax.set_title("one neutral-hadron prediction: neighbouring elements", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
