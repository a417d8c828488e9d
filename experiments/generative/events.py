"""Event generation with a conditional flow (issue 27, item 4): Z(-> mu mu) + {1, 2, 3} jets from
Pythia 8 at hadron level (``hepjax.data.zjets_generation``), learned by one flow per jet
multiplicity in the dimuon representation (the dimuon's pT, rapidity and Breit-Wigner-mapped
mass plus the Collins-Soper decay angles; generated events failing the truth's selection are
re-drawn; ``--model dimuon``, the default), or in the muons' own columns (``--model per-n``), or
one flow conditioned on the multiplicity (``--model padded``); ``EventFlow`` and the
preprocessors in ``hepjax.models.generative.events``), checked as in Butter, Heimel, Hummerich, Krebs, Plehn,
Rousselot, Vent, "Generative networks for precision enthusiasts" (arXiv:2110.13632):
distributions and their ratio to the truth, tails included.

    python -m experiments.generative.events --variant smoke --workdir runs/generative_events_smoke
    python -m experiments.generative.events --variant cpu   --workdir runs/generative_events_cpu

Samples (seed S, default 27): training S, truth ("test") S + 1, reference S + 2 (a second,
independent truth sample of the same size: the truth-vs-truth scale of every metric); the smoke
variant splits one small sample of seed S in order instead. The flow generates as many events as
the test sample, with the reference sample's multiplicities. Per observable and multiplicity:
the bulk chi^2 band test and W1 (``hepjax.models.generative.metrics.compare``, W1 errors by
bootstrap), generated vs truth next to reference vs truth and next to a *wrong reference* (the
reference sample with every representation column shuffled independently among events of the
same multiplicity: right marginals, no correlations); tail fractions with binomial errors; the
test NLL per dimension against the standard normal in the standardised representation (the best
Gaussian with independent columns), per multiplicity on training and test events (the gap is
the overfitting), and for the padded flow given the wrong multiplicity; the sampling time per
event against Pythia's.

Outputs in the work directory: ``results.json``, ``table.md``, ``observables.png`` (inclusive
histograms with ratio panels and the truth's statistical band), ``multiplicity.png`` (per
multiplicity), ``loss.png``, ``model.pkl`` and the cached samples in ``data/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import pickle
import platform
import time

import numpy as np

VARIANTS = {
    # smoke: one small Pythia sample (one chunk) split in order, a tiny flow, a few hundred steps
    "smoke": dict(n_train=150, n_test=60, n_ref=60, split_one=True, events_per_chunk=1000,
                  model="dimuon", kind="affine", n_layers=4, hidden=(64, 64), bins=8,
                  steps_per_n=(400, 200, 100), steps=400, batch=128, lr=2e-3,
                  warmup=50, chunk=100, bootstrap=5, workers=1),
    "cpu": dict(n_train=15000, n_test=5000, n_ref=5000, split_one=False, events_per_chunk=500,
                model="dimuon", kind="spline", n_layers=6, hidden=(64, 64), bins=8,
                steps_per_n=(4000, 1500, 500), steps=5000, batch=256, lr=1e-3,
                weight_decay=1e-4,
                warmup=300, chunk=500, bootstrap=20, workers=2),
}

TAILS = (("pT_j1", ">", 150.0), ("pT_j1", ">", 300.0), ("pT_mu1", ">", 100.0),
         ("pT_mumu", ">", 150.0), ("m_mumu", "<", 80.0), ("m_mumu", ">", 100.0),
         ("m_mumu outside 66-116", "out", (66.0, 116.0)), ("dR_j1j2", "<", 0.4),
         ("pT_imbalance", ">", 50.0))

PLOTS = (("pT_mu1", "log"), ("pT_j1", "log"), ("pT_j2", "log"), ("eta_j1", "lin"),
         ("m_mumu", "mll"), ("pT_mumu", "log"), ("dR_j1j2", "lin"), ("dphi_j1j2", "lin"))
TABLE_OBS = ("pT_mu1", "pT_mu2", "eta_mu1", "m_mumu", "pT_mumu", "dphi_mumu", "pT_j1", "eta_j1",
             "m_j1", "pT_j2", "eta_j2", "dR_j1j2", "dphi_j1j2", "m_j1j2", "pT_j3", "eta_j3",
             "pT_imbalance")
MODELS = {"mass": ("mass", "per-n", True), "dimuon": ("dimuon", "per-n", True), "per-n": ("muons", "per-n", False),
          "padded": ("muons", "padded", False)}   # representation, EventFlow mode, rejection


@dataclasses.dataclass
class Sample:
    mu: np.ndarray
    jets: np.ndarray
    n_jets: np.ndarray
    charge: np.ndarray

    def events(self):
        return {"mu": self.mu, "jets": self.jets, "n_jets": self.n_jets}

    def take(self, rows):
        return Sample(self.mu[rows], self.jets[rows], self.n_jets[rows], self.charge[rows])


class _Loader:
    """The Pythia samples (cached in ``workdir/data``): ``train()`` first, so that the flow
    trains while ``evaluation()`` still waits for (or generates) the truth and reference."""

    def __init__(self, args, cfg, log):
        self.args, self.cfg, self.log = args, cfg, log
        self.pythia_s, self.n_pythia, self.n_acc, self.counts = 0.0, 0, 0, {}
        self.whole = None

    def _get(self, n, seed):
        from hepjax.data import zjets_generation as zg
        t = time.perf_counter()
        d = zg.load_or_generate(pathlib.Path(self.args.workdir) / "data", n, seed,
                                events_per_chunk=self.cfg["events_per_chunk"],
                                workers=self.args.workers or self.cfg["workers"])
        self.log(f"sample seed {seed}: {n} events ({time.perf_counter() - t:.1f} s, "
                 f"{int(d['n_generated'])} Pythia events)")
        self.pythia_s += float(d["pythia_s"])
        self.n_pythia += int(d["n_generated"])
        self.n_acc += n
        for k in ("n_generated", "n_fail_muons", "n_fail_window", "n_0jet", "n_4jet"):
            self.counts[k] = self.counts.get(k, 0) + int(d[k])
        return Sample(d["mu"], d["jets"], d["n_jets"], d["mu_charge"])

    def train(self) -> Sample:
        cfg, s = self.cfg, self.args.seed
        if cfg["split_one"]:
            self.whole = self._get(cfg["n_train"] + cfg["n_test"] + cfg["n_ref"], s)
            return self.whole.take(slice(0, cfg["n_train"]))
        return self._get(cfg["n_train"], s)

    def evaluation(self):
        cfg, s = self.cfg, self.args.seed
        if cfg["split_one"]:
            a, b = cfg["n_train"], cfg["n_train"] + cfg["n_test"]
            test, ref = self.whole.take(slice(a, b)), self.whole.take(slice(b, None))
        else:
            test, ref = self._get(cfg["n_test"], s + 1), self._get(cfg["n_ref"], s + 2)
        counts = dict(self.counts)
        counts["accepted_fraction"] = self.n_acc / max(counts["n_generated"], 1)
        speed = {"pythia_s_total": self.pythia_s, "pythia_events": self.n_pythia,
                 "accepted_events": self.n_acc,
                 "pythia_s_per_accepted_event": self.pythia_s / max(self.n_acc, 1),
                 "pythia_s_per_pythia_event": self.pythia_s / max(self.n_pythia, 1),
                 "accepted_events_per_s_one_core": self.n_acc / max(self.pythia_s, 1e-9)}
        return test, ref, counts, speed


def _w1_err(a, b, n_boot, seed):
    from hepjax.models.generative.metrics import wasserstein_1d
    rng = np.random.default_rng(seed)
    vals = [wasserstein_1d(rng.choice(a, len(a)), rng.choice(b, len(b))) for _ in range(n_boot)]
    return float(np.std(vals, ddof=1)) if n_boot > 1 else math.nan


def _compare(truth, other, n_boot, seed):
    from hepjax.models.generative.metrics import compare
    t, o = truth[np.isfinite(truth)], other[np.isfinite(other)]
    if len(t) < 10 or len(o) < 10:
        return None
    r = compare(t, o)
    r["w1_err"] = _w1_err(t, o, n_boot, seed)
    r["n_truth"], r["n_other"] = int(len(t)), int(len(o))
    return r


def _tail(obs, name, op, cut):
    if op == "out":
        v = obs["m_mumu"]
        sel = (v < cut[0]) | (v > cut[1])
        den = np.isfinite(v)
    else:
        v = obs[name]
        den = np.isfinite(v)
        sel = den & ((v > cut) if op == ">" else (v < cut))
    n = int(den.sum())
    k = int(sel.sum())
    p = k / max(n, 1)
    return {"k": k, "n": n, "fraction": p, "err": math.sqrt(max(p * (1 - p), 1.0 / max(n, 1) ** 2)
                                                            / max(n, 1))}


def _shuffled_reference(ref: Sample, pre, seed):
    """The reference with every representation column permuted independently among events of
    the same multiplicity (a wrong reference: right marginals, no correlations)."""
    x, mask, _, phi0 = pre.transform(ref.mu, ref.jets, ref.n_jets, ref.charge)
    rng = np.random.default_rng(seed)
    x = x.copy()
    for n in (1, 2, 3):
        rows = np.flatnonzero(ref.n_jets == n)
        for c in range(x.shape[1]):
            if mask[rows[0], c] if len(rows) else False:
                x[rows, c] = x[rng.permutation(rows), c]
    from hepjax.models.generative.events import sort_objects
    mu, jets = pre.inverse(np.nan_to_num(x), ref.n_jets, phi0)
    mu, jets, _, _ = sort_objects(mu, jets, ref.n_jets)
    return Sample(mu, jets, ref.n_jets, np.zeros((len(mu), 2), np.int64))


def _stat(v):
    return {"mean": float(np.mean(v)), "err": float(np.std(v, ddof=1) / math.sqrt(max(len(v), 1)))
            if len(v) > 1 else math.nan}


def _nll(model, pre, sample: Sample, seed, wrong_n=False):
    """Test NLL per dimension of the flow, of the standard normal in the same columns (the best
    Gaussian with independent standardised columns) and their difference, per event averaged;
    and the flow's per multiplicity."""
    from hepjax.models.generative.flows import standard_normal_logpdf
    x, mask, _, _ = pre.transform(sample.mu, sample.jets, sample.n_jets, sample.charge)
    lp, dim = model.log_prob(x, mask, sample.n_jets, seed=seed, wrong_n=wrong_n)
    if model.mode == "padded":
        filled = np.where(mask, np.nan_to_num(x),
                          np.random.default_rng(seed).standard_normal(x.shape))
        lp0 = np.asarray(standard_normal_logpdf(filled), np.float64)
    else:
        lp0 = np.asarray(standard_normal_logpdf(np.where(mask, np.nan_to_num(x), 0.0)),
                         np.float64) + 0.5 * (x.shape[1] - dim) * math.log(2 * math.pi)
    out = {"flow": _stat(-lp / dim), "standard_normal": _stat(-lp0 / dim),
           "flow_minus_normal": _stat(-(lp - lp0) / dim)}
    out["flow_by_n"] = {str(n): _stat(-lp[sample.n_jets == n] / dim[sample.n_jets == n])
                        for n in (1, 2, 3) if (sample.n_jets == n).sum() > 1}
    return out


def _round_trip(pre, s: Sample) -> float:
    """Max relative error of the muons' and jets' (pT, eta, phi, m) after the representation
    and back (phi errors relative to pi; eta and phi absolute over max(1, |value|))."""
    from hepjax.models.generative.events import sort_objects
    x, _, _, phi0 = pre.transform(s.mu, s.jets, s.n_jets, s.charge)
    mu, jets = pre.inverse(np.nan_to_num(x), s.n_jets, phi0)
    mu, jets, _, _ = sort_objects(mu, jets, s.n_jets)
    err = [np.abs(mu[:, :, 0] / s.mu[:, :, 0] - 1),
           np.abs(mu[:, :, 1] - s.mu[:, :, 1]) / np.maximum(1, np.abs(s.mu[:, :, 1])),
           np.abs(np.mod(mu[:, :, 2] - s.mu[:, :, 2] + math.pi, 2 * math.pi) - math.pi) / math.pi,
           np.abs(jets - s.jets) / np.maximum(1, np.abs(s.jets))]
    return float(max(e.max() for e in err))


def _bins(name, kind, truth):
    t = truth[np.isfinite(truth)]
    if kind == "log":
        lo = 20.0 if name.startswith("pT_j") or name.startswith("pT_mu") and name != "pT_mumu" \
            else max(1.0, np.quantile(t, 0.001))
        return np.geomspace(lo, t.max() * 1.001, 40)
    if kind == "mll":
        return np.linspace(60.0, 122.0, 63)
    if name.startswith("eta"):
        return np.linspace(-5, 5, 41)
    if name.startswith("dphi"):
        return np.linspace(0, math.pi, 33)
    return np.linspace(0, max(7.0, float(t.max())), 36)


def _panel(ax, axr, name, kind, truth, ref, gen, label=None):
    edges = _bins(name, kind, truth)
    t = truth[np.isfinite(truth)]
    r, g = ref[np.isfinite(ref)], gen[np.isfinite(gen)]
    ht = np.histogram(t, edges)[0].astype(float)
    hr = np.histogram(r, edges)[0].astype(float)
    hg = np.histogram(g, edges)[0].astype(float)
    w = np.diff(edges)
    norm = lambda h, n: h / max(n, 1) / w   # noqa: E731
    ax.stairs(norm(ht, len(t)), edges, color="k", label="truth (Pythia)")
    ax.stairs(norm(hr, len(r)), edges, color="0.55", ls="--", label="reference (Pythia)")
    ax.stairs(norm(hg, len(g)), edges, color="C3", label="flow")
    ax.set_yscale("log")
    if kind == "log":
        from matplotlib.ticker import NullFormatter
        for a in (ax, axr):
            a.set_xscale("log")
            a.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title(label or name, fontsize=9)
    safe = np.where(ht > 0, ht, np.nan)
    band = 1.0 / np.sqrt(safe)
    axr.stairs(np.nan_to_num(1 + band, nan=1.0), edges, baseline=np.nan_to_num(1 - band, nan=1.0),
               fill=True, color="0.85", label="truth stat.")
    ratio_g = (hg / max(len(g), 1)) / (safe / max(len(t), 1))
    err_g = ratio_g * np.sqrt(1 / np.maximum(hg, 1) + 1 / safe)
    ratio_r = (hr / max(len(r), 1)) / (safe / max(len(t), 1))
    mids = 0.5 * (edges[1:] + edges[:-1])
    axr.errorbar(mids, ratio_g, err_g, fmt="o", ms=2, color="C3", lw=0.8)
    axr.plot(mids, ratio_r, "_", color="0.4", ms=5)
    axr.axhline(1, color="k", lw=0.6)
    axr.set_ylim(0.5, 1.5)
    axr.set_xlabel(name, fontsize=8)
    axr.set_ylabel("/ truth", fontsize=7)


def _plots(workdir, obs_t, obs_r, obs_g, n_t, n_r, n_g, history):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(16, 8))
    gs = fig.add_gridspec(4, 4, height_ratios=[3, 1, 3, 1], hspace=0.6, wspace=0.3)
    for i, (name, kind) in enumerate(PLOTS):
        r, c = 2 * (i // 4), i % 4
        ax, axr = fig.add_subplot(gs[r, c]), fig.add_subplot(gs[r + 1, c])
        _panel(ax, axr, name, kind, obs_t[name], obs_r[name], obs_g[name],
               f"{name} (all multiplicities)")
        if i == 0:
            ax.legend(fontsize=7)
    fig.savefig(workdir / "observables.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    cols = (("pT_j1", "log"), ("pT_mumu", "log"), ("m_mumu", "mll"), ("dR_j1j2", "lin"))
    fig = plt.figure(figsize=(16, 12))
    gs = fig.add_gridspec(6, 4, height_ratios=[3, 1] * 3, hspace=0.65, wspace=0.3)
    for row, n in enumerate((1, 2, 3)):
        for c, (name, kind) in enumerate(cols):
            if name == "dR_j1j2" and n == 1:
                name, kind = "pT_mu2", "log"
            ax, axr = fig.add_subplot(gs[2 * row, c]), fig.add_subplot(gs[2 * row + 1, c])
            _panel(ax, axr, name, kind, obs_t[name][n_t == n], obs_r[name][n_r == n],
                   obs_g[name][n_g == n], f"{name}, {n} jet{'s' if n > 1 else ''}")
    fig.savefig(workdir / "multiplicity.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for n in sorted({h.get("n", 0) for h in history}):
        rows = [h for h in history if h.get("n", 0) == n]
        ax.plot([h["step"] for h in rows], [h["loss"] for h in rows],
                label=f"{n} jet(s)" if n else "padded flow")
    ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("NLL per dimension (training batches)")
    fig.savefig(workdir / "loss.png", dpi=90, bbox_inches="tight")
    plt.close(fig)


def _fmt(v, e=None, digits=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if e is None or not math.isfinite(e):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}g} ± {e:.2g}"


def _table(res) -> str:
    nll = {k: _fmt(v["mean"], v["err"]) for k, v in res["nll"].items() if "mean" in v}
    by_test = res["nll"]["flow_by_n"]
    lines = [f"# Z -> mu mu + jets with a conditional flow ({res['variant']} variant)", "",
             f"Samples: train {res['sizes']['train']}, truth {res['sizes']['test']}, reference "
             f"{res['sizes']['ref']}, generated {res['sizes']['generated']} (seed {res['seed']}).",
             "",
             f"Model: {res['config']['model']} ({res['config']['n_layers']} {res['config']['kind']} "
             f"couplings per flow, hidden {res['config']['hidden']}; representation "
             f"{res['representation']}, round trip to the events and back: max relative error "
             + ", ".join(f"{k} {v:.1e}" for k, v in res["round_trip_max_rel"].items()) + ").",
             "",
             (("Generated events failing the truth selection (muon pT/eta, 66-116 GeV window, "
               "jet Delta R >= 0.4), re-drawn: " + _fmt(res["sampling"]["rejected_fraction"]
                                                         ["fraction"],
                                                         res["sampling"]["rejected_fraction"]
                                                         ["err"])
               + " of the first draw (" + ", ".join(
                   f"{n} jet(s) {_fmt(v['fraction'], v['err'])}"
                   for n, v in res["sampling"]["rejected_fraction_by_n"].items())
               + f"; {res['sampling']['rounds']} re-draw rounds).")
              if res["rejection"] else "No rejection of generated events."), "",
             f"Test NLL per dimension [nats] (in this representation's columns: not comparable "
             f"between representations): flow {nll['flow']}, standard normal in the same "
             f"standardised columns {nll['standard_normal']}, flow - standard normal "
             f"{nll['flow_minus_normal']}"
             + (f", padded flow given the wrong multiplicity {nll['flow_wrong_n']}"
                if "flow_wrong_n" in nll else "") + ".", "",
             "Flow NLL per dimension by multiplicity, training events / test events (the gap is "
             "overfitting): " + ", ".join(
                 f"{n} jet(s) {_fmt(v['mean'], v['err'])} / "
                 f"{_fmt(by_test[n]['mean'], by_test[n]['err'])}"
                 for n, v in res["nll"]["train_flow_by_n"].items() if n in by_test) + ".",
             "", "## Per observable (all multiplicities)", "",
             "| observable | flow: χ²/ndf (p) | flow: W1 | reference: χ²/ndf (p) | reference: W1 "
             "| shuffled ref.: W1 | flow in band |", "|---|---|---|---|---|---|---|"]
    for name in TABLE_OBS:
        row = res["observables"]["all"].get(name)
        if row is None:
            continue
        g, r, s = row["flow"], row["reference"], row["shuffled"]
        lines.append(f"| {name} | {g['chi2']:.1f}/{g['ndf']} ({g['p_value']:.2g}) | "
                     f"{_fmt(g['w1'], g['w1_err'])} | {r['chi2']:.1f}/{r['ndf']} "
                     f"({r['p_value']:.2g}) | {_fmt(r['w1'], r['w1_err'])} | "
                     f"{_fmt(s['w1'], s['w1_err'])} | {'yes' if g['in_band'] else 'no'} |")
    lines += ["", "## In band (p > 0.01) per multiplicity: flow / reference", "",
              "| multiplicity | flow | reference | shuffled reference |", "|---|---|---|---|"]
    for key in ("1", "2", "3", "all"):
        rows = [v for v in res["observables"][key].values() if v is not None]
        lines.append(f"| {key} | {sum(v['flow']['in_band'] for v in rows)}/{len(rows)} | "
                     f"{sum(v['reference']['in_band'] for v in rows)}/{len(rows)} | "
                     f"{sum(v['shuffled']['in_band'] for v in rows)}/{len(rows)} |")
    lines += ["", "## Tails (fraction of events, binomial errors)", "",
              "| region | truth | reference | flow | flow / truth |", "|---|---|---|---|---|"]
    for t in res["tails"]:
        tr, rf, fl = t["truth"], t["reference"], t["flow"]
        ratio = fl["fraction"] / tr["fraction"] if tr["fraction"] > 0 else math.nan
        rerr = (ratio * math.sqrt((fl["err"] / max(fl["fraction"], 1e-300)) ** 2
                                  + (tr["err"] / tr["fraction"]) ** 2)
                if tr["fraction"] > 0 and fl["fraction"] > 0 else math.nan)
        lines.append(f"| {t['name']} | {_fmt(tr['fraction'], tr['err'])} | "
                     f"{_fmt(rf['fraction'], rf['err'])} | {_fmt(fl['fraction'], fl['err'])} | "
                     f"{_fmt(ratio, rerr)} |")
    sp = res["speed"]
    lines += ["", "## Speed", "",
              f"Pythia + selection + FastJet: {sp['pythia_s_per_accepted_event'] * 1e3:.2f} ms "
              f"per accepted event ({sp['pythia_s_per_pythia_event'] * 1e3:.2f} ms per Pythia "
              f"event, {sp['accepted_events_per_s_one_core']:.1f} accepted events/s per core, "
              f"acceptance {res['counts']['accepted_fraction']:.3f}); flow sampling "
              f"{sp['flow_s_per_event'] * 1e6:.1f} µs per event (+ "
              f"{sp['inverse_s_per_event'] * 1e6:.1f} µs numpy inverse): "
              f"{sp['speedup']:.0f}x faster.", "",
              f"Training: {res['training']['steps']} steps x {res['training']['batch']}, "
              f"{res['training']['time_s']:.0f} s; generated events whose muons (jets) had to be "
              f"re-sorted by pT: {res['sampling']['frac_muons_swapped']:.3f} "
              f"({res['sampling']['frac_jets_reordered']:.3f})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="smoke")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seed", type=int, default=27)
    ap.add_argument("--workers", type=int, default=0, help="Pythia processes (0: the variant's)")
    ap.add_argument("--model", choices=tuple(MODELS), default=None,
                    help="dimuon: one flow per multiplicity in the dimuon + Collins-Soper "
                         "representation with rejection of events failing the selection (the "
                         "variants' default); per-n: one flow per multiplicity in the muons' "
                         "(log pT, eta, phi) columns; padded: one flow conditioned on n with "
                         "N(0, 1) padding (both without rejection)")
    ap.add_argument("--reuse-model", action="store_true",
                    help="load workdir/model.pkl (and the training history from results.json) "
                         "instead of training")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    cfg = dict(VARIANTS[args.variant])
    if args.model:
        cfg["model"] = args.model
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg):
        if not args.quiet:
            print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    import jax
    from hepjax.data import zjets_generation as zg
    from hepjax.models.generative import events as ev

    loader = _Loader(args, cfg, log)
    train = loader.train()
    representation, mode, reject = MODELS[cfg["model"]]
    pre = ev.make_preprocessor(representation).fit(train.mu, train.jets, train.n_jets,
                                                   train.charge)
    x, mask, cond, _ = pre.transform(train.mu, train.jets, train.n_jets, train.charge)
    model = ev.EventFlow(mode, n_layers=cfg["n_layers"], kind=cfg["kind"],
                         hidden=cfg["hidden"], bins=cfg["bins"], seed=args.seed)
    t0 = time.perf_counter()
    if args.reuse_model:
        # the saved parameters of an earlier run with this config (same results and new plots)
        with open(workdir / "model.pkl", "rb") as f:
            saved = pickle.load(f)
        if saved["config"] != cfg:
            raise ValueError(f"{workdir / 'model.pkl'}: saved config {saved['config']} differs "
                             f"from this run's {cfg}")
        model.load_state(saved["params"])
        old = json.loads((workdir / "results.json").read_text())["training"]
        history, train_s = old["history"], old["time_s"]
        log(f"reusing {workdir / 'model.pkl'} (trained in {train_s:.0f} s)")
    else:
        steps = cfg["steps"] if mode == "padded" else dict(zip((1, 2, 3),
                                                                        cfg["steps_per_n"]))
        history = model.fit(x, mask, train.n_jets, steps=steps, batch_size=cfg["batch"],
                            key=jax.random.key(args.seed), lr=cfg["lr"], warmup=cfg["warmup"],
                            chunk=cfg["chunk"], weight_decay=cfg.get("weight_decay", 0.0),
                            log=lambda r: log(f"step {r['step']}: NLL/dim {r['loss']:.4f}"))
        train_s = time.perf_counter() - t0
        with open(workdir / "model.pkl", "wb") as f:
            pickle.dump({"params": model.state(), "preprocessor": pre.state(), "config": cfg}, f)

    test, ref, counts, speed = loader.evaluation()
    # generation: the reference sample's multiplicities, as many events as the truth sample
    n_gen = len(test.n_jets)
    n_cond = ref.n_jets[:n_gen]
    key = jax.random.fold_in(jax.random.key(args.seed), 7)
    model.sample(key, n_cond)                                              # compile
    times = []
    for _ in range(3):
        t = time.perf_counter()
        model.sample(key, n_cond)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    gen_events, samp_info = ev.sample_event_flow(model, key, n_cond, pre, phi_seed=args.seed + 7,
                                                 reject=reject)
    total_s = time.perf_counter() - t
    flow_s = min(times) / n_gen
    inverse_s = max(total_s - min(times), 0.0) / n_gen
    speed.update({"flow_s_per_event": flow_s, "inverse_s_per_event": inverse_s,
                  "speedup": speed["pythia_s_per_accepted_event"] / (flow_s + inverse_s),
                  "flow_batch": min(8192, n_gen), "n_timed": n_gen})
    gen = Sample(gen_events["mu"], gen_events["jets"], gen_events["n_jets"],
                 gen_events.get("mu_charge", np.zeros((n_gen, 2), np.int64)))
    shuffled = _shuffled_reference(ref.take(slice(0, n_gen)), pre, args.seed + 9)
    log(f"trained {train_s:.0f} s; sampled {n_gen} events, {flow_s * 1e6:.1f} µs/event")

    obs = {k: ev.observables(s.events()) for k, s in
           (("truth", test), ("reference", ref), ("flow", gen), ("shuffled", shuffled))}
    results_obs = {}
    for key_n in ("1", "2", "3", "all"):
        sel = {k: (np.ones(len(s.n_jets), bool) if key_n == "all" else s.n_jets == int(key_n))
               for k, s in (("truth", test), ("reference", ref), ("flow", gen),
                            ("shuffled", shuffled))}
        results_obs[key_n] = {}
        for i, name in enumerate(ev.OBSERVABLES):
            truth = obs["truth"][name][sel["truth"]]
            row = {}
            for j, other in enumerate(("reference", "flow", "shuffled")):
                row[other] = _compare(truth, obs[other][name][sel[other]], cfg["bootstrap"],
                                      args.seed + 100 * i + j)
            results_obs[key_n][name] = row if all(v is not None for v in row.values()) else None
    log("observables compared")
    tails = []
    for name, op, cut in TAILS:
        label = name if op == "out" else f"{name} {op} {cut:g}"
        tails.append({"name": label, **{k: _tail(obs[k], name, op, cut)
                                        for k in ("truth", "reference", "flow")}})
    nll = _nll(model, pre, test, args.seed + 11)
    nll_train = _nll(model, pre, train.take(slice(0, len(test.n_jets))), args.seed + 12)
    nll["train_flow_by_n"] = nll_train["flow_by_n"]
    if model.mode == "padded":
        nll["flow_wrong_n"] = _nll(model, pre, test, args.seed + 11, wrong_n=True)["flow"]
    round_trip = {k: _round_trip(pre, smp) for k, smp in (("train", train), ("truth", test),
                                                          ("reference", ref))}
    log(f"metrics done; representation round trip, max relative error {round_trip}")
    mult = {k: np.bincount(s.n_jets, minlength=4)[1:].tolist()
            for k, s in (("train", train), ("truth", test), ("reference", ref))}
    results = {
        "variant": args.variant, "seed": args.seed,
        "config": {**cfg, "hidden": list(cfg["hidden"])},
        "seeds": {"train": args.seed, "truth": args.seed + (0 if cfg["split_one"] else 1),
                  "reference": args.seed + (0 if cfg["split_one"] else 2),
                  "model_and_training_key": args.seed, "sampling_key": f"fold_in({args.seed}, 7)",
                  "phi_mu1": args.seed + 7},
        "recipe": {"version": zg.RECIPE_VERSION, "settings": list(zg.SETTINGS),
                   "pythia": zg.pythia_version(), "mu_pt_min": zg.MU_PT_MIN,
                   "mu_eta_max": zg.MU_ETA_MAX, "jet_pt_min": zg.JET_PT_MIN,
                   "jet_eta_max": zg.JET_ETA_MAX, "jet_radius": zg.JET_RADIUS,
                   "mll_window": list(zg.MLL_WINDOW)},
        "sizes": {"train": len(train.n_jets), "test": len(test.n_jets), "ref": len(ref.n_jets),
                  "generated": n_gen},
        "multiplicities": mult, "counts": counts, "speed": speed,
        "representation": representation, "rejection": reject,
        "round_trip_max_rel": round_trip,
        "training": {"steps": (cfg["steps"] if mode == "padded"
                               else list(cfg["steps_per_n"])),
                     "batch": cfg["batch"], "time_s": train_s,
                     "history": history},
        "sampling": samp_info,
        "nll": nll,
        "observables": results_obs, "tails": tails, "preprocessor": pre.state(),
        "environment": {"jax": jax.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "devices": str(jax.devices())},
        "wall_s": time.perf_counter() - t_start,
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    (workdir / "table.md").write_text(_table(results))
    _plots(workdir, obs["truth"], obs["reference"], obs["flow"], test.n_jets, ref.n_jets,
           gen.n_jets, history)
    log(f"wrote {workdir}/results.json, table.md, observables.png, multiplicity.png")
    return results


if __name__ == "__main__":
    main()
