"""An LHC-Olympics-style resonance search: QCD dijets with a small injected W' -> X Y -> (qq)(qq)
signal, anomaly scores per event trained on the data themselves, and a bump hunt
in m_jj before and after a cut on the score (Kasieczka et al., "The LHC Olympics 2020",
Rep. Prog. Phys. 84 (2021) 124201; issue 26 item 4).

    python -m experiments.anomaly.resonance --variant smoke|cpu --workdir runs/resonance_cpu

1. Events (hepjax.anomaly.resonance): Pythia 8 at 13 TeV, QCD (HardQCD:all, pT-hat > 1.1 TeV) and
   W' (3.5 TeV) -> X (500 GeV) Y (100 GeV), X, Y -> quarks; Delphes-ATLAS-like energy flow;
   anti-kT R = 1.0; leading jet pT > 1.2 TeV, two jets with |eta| < 2.5. Written to
   WORKDIR/events.h5; chunks kept in WORKDIR/chunks (a killed run resumes).
2. "Data" = all QCD events + n_inj signal events drawn (seeded) from one half of the signal
   sample (the injection pool); the other half (the evaluation pool) is never in the data and
   measures the signal efficiency of the cut. The background-only control is the QCD sample
   alone, put through the same procedure.
3. Anomaly scores, trained on the data only, each event scored by a model that never saw it
   (2-fold cross-scoring, so a model's lower score on its own training events cannot make a
   step in m_jj at the window edges):
   ``ae``: a dense autoencoder (6 -> 32 -> 16 -> 2 -> 16 -> 32 -> 6, GELU) on the per-event
   features of hepjax.anomaly.resonance.mass_sorted_features (log of m_j / m_jj of the
   heavier and the lighter jet, tau21 and tau32 of each), standardised, trained on the data
   *outside the signal window* in m_jj (the side bands), so that the signal the window holds is
   not learnt as normal; score = reconstruction error (an outlier score).
   ``density_ratio``: log p_SR(x) - log p_SB(x) on the two mass ratios and tau21s, Gaussian
   KDEs of the events in the window and in two adjacent side bands (their densities averaged),
   the idea of ANODE (Nachman, Shih, PRD 101 (2020) 075042) without its flows (an
   overdensity score).
4. Bump hunt (hepjax.anomaly.bumphunt): the dijet function fitted (binned Poisson likelihood)
   to the m_jj histogram with the window excluded; local Z of the window = Poisson likelihood
   ratio with the fitted b (= the Asimov formula at s = n - b), also with the fit's sigma_b
   profiled; before the cut and after keeping the 10 % and 1 % most anomalous events, per
   injection level, over ``draws`` injection draws (mean and standard deviation).

Writes experiments/anomaly/resonance_results.json and the plots resonance_mjj.png,
resonance_scores.png (for the smoke variant into WORKDIR only).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hepjax.anomaly import bumphunt as bh
from hepjax.anomaly import data as adata
from hepjax.anomaly import resonance as res
from hepjax.anomaly.train import fit
from hepjax.models import autoencoders as ae

HERE = pathlib.Path(__file__).resolve().parent

VARIANTS = {
    "smoke": dict(n_qcd=1500, n_signal=300, events_per_chunk=250, injections=(0, 60), draws=1,
                  steps=150, batch=128, fit_range=(2600.0, 5000.0), bin_width=200.0,
                  window=(3200.0, 3800.0), sidebands=(2600.0, 4400.0), keep=(0.1,),
                  methods=("ae", "density_ratio"), write_repo=False),
    "cpu": dict(n_qcd=31_500, n_signal=3000, events_per_chunk=500, injections=(0, 150, 300),
                draws=3, steps=1000, batch=256, fit_range=(2700.0, 5500.0), bin_width=100.0,
                window=(3300.0, 3700.0), sidebands=(3100.0, 3900.0), keep=(0.1, 0.01),
                methods=("ae", "density_ratio"), write_repo=True),
}
GEN_SEED = 2026


def mse_loss(m, b, k):
    return jnp.mean(ae.reconstruction_loss(m(b[0]), b[0]))


def transform(feats: np.ndarray) -> np.ndarray:
    """log of the mass ratios (they span a decade), tau ratios as they are."""
    out = np.array(feats, np.float64)
    out[:, :2] = np.log(np.maximum(out[:, :2], 1e-4))
    return adata.check_features(out, "resonance features")


def cross_scores(x, mjj, window, *, steps, batch, seed):
    """2-fold cross-scored AE reconstruction errors; each fold's AE is trained on the other
    fold's events outside ``window``."""
    rng = np.random.default_rng([seed, 11])
    fold = rng.integers(0, 2, len(x))
    side = (mjj < window[0]) | (mjj > window[1])
    scores = np.empty(len(x))
    models = []
    for f in (0, 1):
        train = x[(fold != f) & side]
        std = adata.Standardiser.fit(train)
        model = ae.DenseAE(x.shape[1], (32, 16), 2, activation="gelu", rngs=nnx.Rngs(seed + f))
        fit(model, mse_loss, std(train), steps=steps, batch_size=batch, learning_rate=2e-3,
            seed=seed + f)
        fn = jax.jit(lambda b, m=model: ae.reconstruction_loss(m(b), b))
        rows = fold == f
        scores[rows] = np.asarray(fn(jnp.asarray(std(x[rows]))))
        models.append((std, fn))
    return scores, fold, models


DENSITY_FEATURES = 4   # log m_heavy/m_jj, log m_light/m_jj, tau21 heavy, tau21 light


def density_ratio_scores(x, mjj, window, sidebands, *, seed):
    """2-fold cross-scored log [p_SR(x) / p_SB(x)] (ANODE-like, with Gaussian KDEs of Scott's
    bandwidth in place of normalising flows) on the first ``DENSITY_FEATURES`` features,
    standardised on the side bands. p_SB is the *average* of the densities in a lower and an
    upper side band of the same width around the window (``sidebands`` = (lower edge, upper
    edge)): a feature distribution that drifts linearly with m_jj then cancels at the window,
    where a density fitted to the pooled side bands (dominated by the lower one, the spectrum
    falls) would differ from the window's background and the cut would make a bump by itself.
    Each fold's events are scored with the KDEs of the other fold's events."""
    from scipy.stats import gaussian_kde

    xs = x[:, :DENSITY_FEATURES].astype(np.float64)
    fold = np.random.default_rng([seed, 13]).integers(0, 2, len(x))
    sr = (mjj >= window[0]) & (mjj < window[1])
    low = (mjj >= sidebands[0]) & (mjj < window[0])
    high = (mjj >= window[1]) & (mjj < sidebands[1])
    mu, sd = xs[low | high].mean(0), xs[low | high].std(0)
    scores = np.empty(len(x))
    models = []
    for f in (0, 1):
        train = fold != f
        samples = [((xs[train & band] - mu) / sd).T for band in (sr, low, high)]
        # one bandwidth for all three (Scott's factor of the smallest sample): with unequal
        # bandwidths the ratio would differ from 1 in the tails even without a signal
        factor = min(s_.shape[1] for s_ in samples) ** (-1.0 / (DENSITY_FEATURES + 4))
        kdes = [gaussian_kde(s_, bw_method=factor) for s_ in samples]

        def fn(u, kdes=kdes):
            z = ((np.asarray(u, np.float64)[:, :DENSITY_FEATURES] - mu) / sd).T
            return kdes[0].logpdf(z) - np.logaddexp(kdes[1].logpdf(z), kdes[2].logpdf(z)) \
                + np.log(2.0)

        rows = fold == f
        scores[rows] = fn(xs[rows])
        models.append((None, fn))
    return scores, fold, models


def score_with(models, x, fold):
    out = np.empty(len(x))
    for f, (std, fn) in enumerate(models):
        rows = fold == f
        if rows.any():
            out[rows] = (np.asarray(fn(jnp.asarray(std(x[rows])))) if std is not None
                         else np.asarray(fn(np.asarray(x[rows], np.float64))))
    return out


def hunt(mjj, v, seed=0):
    lo, hi = v["fit_range"]
    edges = np.arange(lo, hi + 0.5 * v["bin_width"], v["bin_width"])
    out = bh.bump_hunt(mjj, v["window"], edges=edges, seed=seed)
    fit_obj = out.pop("fit")
    out["theta"] = fit_obj.theta.tolist()
    return out, fit_obj


def binomial(k, n):
    p = k / n if n else float("nan")
    return p, (np.sqrt(p * (1 - p) / n) if n else float("nan"))


def run_level(n_inj, draw, qcd, sig_pool_inj, sig_pool_eval, v, log):
    """One pseudo-experiment: inject, score, cut, hunt."""
    seed = 1000 * draw + n_inj
    rng = np.random.default_rng([GEN_SEED, n_inj, draw])
    pick = rng.choice(len(sig_pool_inj["mjj"]), n_inj, replace=False) if n_inj else np.array([], int)
    mjj = np.concatenate([qcd["mjj"], sig_pool_inj["mjj"][pick]]).astype(np.float64)
    x = np.concatenate([qcd["x"], sig_pool_inj["x"][pick]])
    is_sig = np.concatenate([np.zeros(len(qcd["mjj"]), bool), np.ones(n_inj, bool)])
    lo, hi = v["window"]
    in_win = (mjj >= lo) & (mjj < hi)
    sig_eval_win = (sig_pool_eval["mjj"] >= lo) & (sig_pool_eval["mjj"] < hi)
    n_b_win = int((~is_sig & in_win).sum())
    n_s_win = int((is_sig & in_win).sum())
    result = {"n_injected": int(n_inj), "draw": draw, "seed": seed,
              "n_events": int(len(mjj)), "s_over_b_total": n_inj / len(qcd["mjj"]),
              "s_in_window": n_s_win, "b_in_window": n_b_win,
              "s_over_b_window": n_s_win / max(n_b_win, 1),
              "s_over_sqrt_b_window": n_s_win / np.sqrt(max(n_b_win, 1)), "methods": {}}
    before, fit_before = hunt(mjj, v, seed)
    result["before"] = before
    log(f"  n_inj={n_inj:4d} draw={draw}: S/B in window {result['s_over_b_window']:.4f}, "
        f"Z before {before['z']:+.2f} (n={before['n']}, b={before['b']:.1f}+-"
        f"{before['sigma_b']:.1f}, fit deviance {before['fit_deviance']:.1f}/{before['fit_ndf']})")
    extra = {"mjj": mjj, "is_sig": is_sig, "methods": {}}
    for method in v["methods"]:
        t0 = time.time()
        if method == "ae":
            scores, fold, models = cross_scores(x, mjj, v["window"], steps=v["steps"],
                                                batch=v["batch"], seed=seed)
        else:
            scores, fold, models = density_ratio_scores(x, mjj, v["window"], v["sidebands"],
                                                        seed=seed)
        eval_fold = np.random.default_rng([seed, 12]).integers(0, 2, len(sig_pool_eval["mjj"]))
        sig_eval_scores = score_with(models, sig_pool_eval["x"], eval_fold)
        cuts = []
        fits = {"before": (np.ones(len(mjj), bool), fit_before)}
        for keep in v["keep"]:
            thr = float(np.quantile(scores, 1.0 - keep))
            sel = scores >= thr
            after, fit_after = hunt(mjj[sel], v, seed)
            kq = int((sel & ~is_sig & in_win).sum())
            eff_s, err_s = binomial(int((sig_eval_scores[sig_eval_win] >= thr).sum()),
                                    int(sig_eval_win.sum()))
            eff_b, err_b = binomial(kq, n_b_win)
            eff_s_all, err_s_all = binomial(int((sig_eval_scores >= thr).sum()),
                                            len(sig_eval_scores))
            eff_b_all, err_b_all = binomial(int((sel & ~is_sig).sum()), int((~is_sig).sum()))
            cuts.append({
                "keep": keep, "threshold": thr, "after": after,
                "n_sig_injected_kept": int((sel & is_sig).sum()),
                "n_sig_injected_kept_window": int((sel & is_sig & in_win).sum()),
                "signal_efficiency_window": [eff_s, err_s],
                "background_efficiency_window": [eff_b, err_b],
                "background_rejection_window": 1 / eff_b if eff_b > 0 else float("inf"),
                "signal_efficiency": [eff_s_all, err_s_all],
                "background_efficiency": [eff_b_all, err_b_all],
                "sic_window": eff_s / np.sqrt(eff_b) if eff_b > 0 else float("nan")})
            fits[f"keep {keep:g}"] = (sel, fit_after)
        result["methods"][method] = {"cuts": cuts}
        extra["methods"][method] = {"fits": fits, "scores": scores,
                                    "sig_eval_scores": sig_eval_scores}
        log(f"    {method:14s}: " + "; ".join(
            f"keep {c['keep']:g}: Z {c['after']['z']:+.2f} (n={c['after']['n']}, "
            f"b={c['after']['b']:.1f}+-{c['after']['sigma_b']:.1f}, dev "
            f"{c['after']['fit_deviance']:.1f}/{c['after']['fit_ndf']}), eff_S "
            f"{c['signal_efficiency_window'][0]:.3f} eff_B "
            f"{c['background_efficiency_window'][0]:.4f}" for c in cuts)
            + f"  [{time.time() - t0:.0f} s]")
    return result, extra


def _ms(vals):
    vals = np.asarray(vals, np.float64)
    return [float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0]


def summarise(results, v):
    """Mean and standard deviation over the injection draws, per injection level and method."""
    out = []
    for n_inj in v["injections"]:
        rs = [r for r in results if r["n_injected"] == n_inj]
        row = {"n_injected": n_inj, "draws": len(rs), "s_over_b_total": rs[0]["s_over_b_total"],
               "s_in_window": _ms([r["s_in_window"] for r in rs]),
               "b_in_window": rs[0]["b_in_window"],
               "s_over_b_window": _ms([r["s_over_b_window"] for r in rs]),
               "s_over_sqrt_b_window": _ms([r["s_over_sqrt_b_window"] for r in rs]),
               "z_before": _ms([r["before"]["z"] for r in rs]),
               "z_before_with_sigma_b": _ms([r["before"]["z_with_sigma_b"] for r in rs]),
               "methods": {}}
        for method in v["methods"]:
            cuts = []
            for i, keep in enumerate(v["keep"]):
                cs = [r["methods"][method]["cuts"][i] for r in rs]
                cuts.append({
                    "keep": keep,
                    "z_after": _ms([c["after"]["z"] for c in cs]),
                    "z_after_with_sigma_b": _ms([c["after"]["z_with_sigma_b"] for c in cs]),
                    "signal_efficiency_window": _ms([c["signal_efficiency_window"][0]
                                                     for c in cs]),
                    "signal_efficiency_window_binomial": float(np.mean(
                        [c["signal_efficiency_window"][1] for c in cs])),
                    "background_efficiency_window": _ms([c["background_efficiency_window"][0]
                                                         for c in cs]),
                    "background_efficiency_window_binomial": float(np.mean(
                        [c["background_efficiency_window"][1] for c in cs])),
                    "n_after_window": _ms([c["after"]["n"] for c in cs]),
                    "b_after_window": _ms([c["after"]["b"] for c in cs]),
                    "s_kept_window": _ms([c["n_sig_injected_kept_window"] for c in cs]),
                    "fit_deviance_ndf": [_ms([c["after"]["fit_deviance"] for c in cs])[0],
                                         cs[0]["after"]["fit_ndf"]]})
            row["methods"][method] = cuts
        out.append(row)
    return out


def table_markdown(summary) -> str:
    """The README table: per injection level and method, Z before/after and the cut's
    efficiencies in the window (mean +- standard deviation over the draws; binomial error of
    one draw in brackets)."""
    lines = ["| injected signal (S/B total; in window) | S/sqrt(B) in window | Z before the cut "
             "| method | keep | Z after the cut | eps_S in window | eps_B in window "
             "| 1/eps_B |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in summary:
        head = (f"{row['n_injected']} ({row['s_over_b_total']:.4f}; "
                f"{row['s_over_b_window'][0]:.4f})")
        for method, cuts in row["methods"].items():
            for c in cuts:
                es, eb = c["signal_efficiency_window"], c["background_efficiency_window"]
                lines.append(
                    f"| {head} | {row['s_over_sqrt_b_window'][0]:.2f} | "
                    f"{row['z_before'][0]:+.2f} ± {row['z_before'][1]:.2f} | `{method}` | "
                    f"{c['keep']:g} | **{c['z_after'][0]:+.2f} ± {c['z_after'][1]:.2f}** | "
                    f"{es[0]:.3f} ± {es[1]:.3f} (±{c['signal_efficiency_window_binomial']:.3f}) | "
                    f"{eb[0]:.4f} ± {eb[1]:.4f} (±{c['background_efficiency_window_binomial']:.4f})"
                    f" | {1 / eb[0]:.1f} |")
    return "\n".join(lines)


def plots(extras, qcd, sig, v, outdir, log):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = v["fit_range"]
    edges = np.arange(lo, hi + 0.5 * v["bin_width"], v["bin_width"])
    centres = (edges[1:] + edges[:-1]) / 2
    rows = [(f"{name}, {method}", ex, mex) for name, ex in extras.items()
            for method, mex in ex["methods"].items()]
    ncol = 1 + len(v["keep"])
    fig, axes = plt.subplots(2 * len(rows), ncol, figsize=(4.6 * ncol, 4.2 * len(rows)),
                             gridspec_kw={"height_ratios": [3, 1] * len(rows)}, squeeze=False)
    for r, (name, ex, mex) in enumerate(rows):
        for c, (label, (sel, fit_obj)) in enumerate(mex["fits"].items()):
            ax, axr = axes[2 * r, c], axes[2 * r + 1, c]
            counts, _ = np.histogram(ex["mjj"][sel], edges)
            mu = fit_obj.expected(edges)
            ax.errorbar(centres, counts, yerr=np.sqrt(np.maximum(counts, 1)), fmt="k.", ms=3,
                        label="data")
            ax.plot(centres, mu, "r-", lw=1, label="dijet fit (window excluded)")
            ax.axvspan(*v["window"], color="y", alpha=0.2, label="signal window")
            sig_here = ex["is_sig"] & sel
            if sig_here.any():
                sc_, _ = np.histogram(ex["mjj"][sig_here], edges)
                ax.step(edges[:-1], np.maximum(sc_, 0.5), where="post", color="b", lw=1,
                        label="injected signal (truth)")
            ax.set_yscale("log")
            ax.set_ylim(0.5, None)
            ax.set_title(f"{name}: {label}", fontsize=8)
            ax.legend(fontsize=6)
            pull = (counts - mu) / np.sqrt(np.maximum(mu, 1e-9))
            axr.bar(centres, pull, width=v["bin_width"] * 0.9,
                    color=np.where(fit_obj.used, "gray", "orange"))
            axr.axhline(0, color="k", lw=0.5)
            axr.set_ylabel("(n-b)/sqrt(b)", fontsize=7)
            axr.set_xlabel("m_jj [GeV]")
    fig.tight_layout()
    fig.savefig(outdir / "resonance_mjj.png", dpi=80)
    plt.close(fig)

    ex = list(extras.values())[-1]
    methods = list(ex["methods"])
    fig, ax = plt.subplots(1, len(methods) + 1, figsize=(4.6 * (len(methods) + 1), 3.8))
    for i, method in enumerate(methods):
        mex = ex["methods"][method]
        allv = np.concatenate([mex["scores"], mex["sig_eval_scores"]])
        bins = np.linspace(*np.quantile(allv, [0.001, 0.999]), 60)
        ax[i].hist(mex["scores"][~ex["is_sig"]], bins, histtype="step", density=True,
                   label="QCD events of the data")
        ax[i].hist(mex["sig_eval_scores"], bins, histtype="step", density=True,
                   label="signal (evaluation pool)")
        for keep in v["keep"]:
            ax[i].axvline(np.quantile(mex["scores"], 1 - keep), color="gray", ls="--", lw=0.8)
        ax[i].set_yscale("log")
        ax[i].set_xlabel({"ae": "AE reconstruction error",
                          "density_ratio": "log p_SR(x) / p_SB(x)"}[method] + " (cuts dashed)")
        ax[i].legend(fontsize=7)
    feats = res.mass_sorted_features(qcd)
    feats_s = res.mass_sorted_features(sig)
    n = min(5000, len(feats))
    ax[-1].scatter(feats[:n, 0] * qcd["mjj"][:n], feats[:n, 1] * qcd["mjj"][:n],
                   s=1, alpha=0.3, label="QCD")
    ax[-1].scatter(feats_s[:1000, 0] * sig["mjj"][:1000], feats_s[:1000, 1] * sig["mjj"][:1000],
                   s=1, alpha=0.3, label="signal")
    ax[-1].set_xlabel("heavier jet mass [GeV]")
    ax[-1].set_ylabel("lighter jet mass [GeV]")
    ax[-1].set_xlim(0, 900)
    ax[-1].set_ylim(0, 600)
    ax[-1].legend(fontsize=7, markerscale=5)
    fig.tight_layout()
    fig.savefig(outdir / "resonance_scores.png", dpi=80)
    plt.close(fig)
    log(f"plots written to {outdir}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="smoke")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    v = VARIANTS[args.variant]
    workdir = pathlib.Path(args.workdir or f"runs/resonance_{args.variant}")
    workdir.mkdir(parents=True, exist_ok=True)
    outdir = HERE if v["write_repo"] else workdir
    logf = open(workdir / "log.txt", "a")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    t_start = time.time()
    lines = []
    res.print_decay_chain(GEN_SEED, out=lambda s: (lines.append(s), log(s)))
    h5 = workdir / "events.h5"
    gen_time = {}
    if h5.exists():
        samples = res.read_h5(h5)
        qcd, sig = samples["qcd"], samples["signal"]
        if len(qcd["mjj"]) != v["n_qcd"] or len(sig["mjj"]) != v["n_signal"]:
            raise SystemExit(f"{h5}: holds {len(qcd['mjj'])} QCD / {len(sig['mjj'])} signal "
                             f"events, the variant wants {v['n_qcd']} / {v['n_signal']}; "
                             "delete it (the chunks are kept) or use another --workdir")
    else:
        samples = {}
        for proc, n in (("signal", v["n_signal"]), ("qcd", v["n_qcd"])):
            t0 = time.time()
            samples[proc] = res.generate(
                proc, n, GEN_SEED, events_per_chunk=v["events_per_chunk"],
                chunk_dir=workdir / "chunks",
                progress=lambda c, got, dt, p=proc: log(f"{p}: chunk {c}, {got} events, {dt:.0f} s")
                if c % 10 == 0 else None)
            gen_time[proc] = time.time() - t0
        res.write_h5(h5, samples, {"seed": GEN_SEED, "sqrt_s": res.SQRT_S,
                                   "qcd_pthat_min": res.QCD_PTHAT_MIN})
        qcd, sig = samples["qcd"], samples["signal"]
    for name, s in (("qcd", qcd), ("signal", sig)):
        log(f"{name}: {len(s['mjj'])} events from {float(s['n_generated']):.0f} generated "
            f"(efficiency {len(s['mjj']) / float(s['n_generated']):.3f}); m_jj percentiles "
            f"5/50/95: {np.percentile(s['mjj'], [5, 50, 95]).round(0).tolist()}")
    qcd["x"] = transform(res.mass_sorted_features(qcd))
    sig["x"] = transform(res.mass_sorted_features(sig))
    half = len(sig["mjj"]) // 2
    perm = np.random.default_rng([GEN_SEED, 7]).permutation(len(sig["mjj"]))
    pool_inj = {k: sig[k][perm[:half]] for k in ("mjj", "x")}
    pool_eval = {k: sig[k][perm[half:]] for k in ("mjj", "x")}
    lo, hi = v["window"]
    sig_win = float(np.mean((sig["mjj"] >= lo) & (sig["mjj"] < hi)))
    log(f"signal fraction in the window {v['window']}: {sig_win:.3f}")

    results, extras = [], {}
    for n_inj in v["injections"]:
        for draw in range(v["draws"]):
            r, ex = run_level(n_inj, draw, qcd, pool_inj, pool_eval, v, log)
            results.append(r)
            if draw == 0 and (n_inj == 0 or n_inj == v["injections"][-1]):
                extras["background only" if n_inj == 0 else
                       f"{n_inj} signal (S/B {r['s_over_b_total']:.4f})"] = ex
    summary = summarise(results, v)
    out = {
        "variant": args.variant, "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": "python -m experiments.anomaly.resonance " + " ".join(sys.argv[1:] if argv is None else argv),
        "seeds": {"generation": GEN_SEED, "injection": "numpy default_rng([2026, n_inj, draw])",
                  "ae_and_folds": "1000 * draw + n_inj (+ fold index)"},
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "numpy": np.__version__},
        "settings": {k: (list(val) if isinstance(val, tuple) else val) for k, val in v.items()},
        "samples": {name: {"n_events": int(len(s["mjj"])), "n_generated": float(s["n_generated"]),
                           "generation_seconds": gen_time.get(name)}
                    for name, s in (("qcd", qcd), ("signal", sig))},
        "signal_fraction_in_window": sig_win,
        "decay_chain_example": lines,
        "summary": summary, "pseudo_experiments": results,
        "wall_seconds": time.time() - t_start,
    }
    path = (HERE / "resonance_results.json") if v["write_repo"] else workdir / "resonance_results.json"
    path.write_text(json.dumps(out, indent=1, default=float))
    log(f"results written to {path}")
    for row in summary:
        log(f"n_inj {row['n_injected']:4d} S/B {row['s_over_b_total']:.4f} (window "
            f"{row['s_over_b_window'][0]:.4f}): Z before {row['z_before'][0]:+.2f} +- "
            f"{row['z_before'][1]:.2f}")
        for method, cuts in row["methods"].items():
            log(f"    {method:14s} " + "; ".join(
                f"keep {c['keep']:g}: Z {c['z_after'][0]:+.2f} +- {c['z_after'][1]:.2f}, eff_S "
                f"{c['signal_efficiency_window'][0]:.3f}, eff_B "
                f"{c['background_efficiency_window'][0]:.4f}" for c in cuts))
    log(table_markdown(summary))
    if not args.no_plots:
        plots(extras, qcd, sig, v, outdir, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
