"""Generative models for fast calorimeter simulation: two flows, diffusion, WGAN-GP and VAE learn
single-photon showers of ``hepjax.sim`` and are evaluated with the CaloChallenge metrics.

    python -m experiments.generative.run --dataset calo [--variant smoke|cpu|full]
        [--workdir DIR] [--seed S] [--models flow,flow_affine,diffusion,gan,vae]

Steps (each writes into DIR, default runs/generative_calo_<variant>; the simulated showers are
cached there as ``showers.npz``, so a rerun only retrains):

1. showers (``hepjax.models.generative.calo_data``): training (seed S), test (S + 1) and an
   independent reference sample (S + 2), with the simulator's time per shower;
2. preprocessing fitted on the training showers (CaloFlow-style, ``CaloPreprocessor``); a flow
   with ``dequantise_per_step`` trains on the raw showers and redraws the dequantisation noise
   in its loss at every step;
3. each model trained (``hepjax.models.generative.training``), then sampled conditioned on the
   reference sample's energies (so generated and reference samples are alike in everything but
   their origin), with the batch sampling time per shower; a flow whose config sets
   ``zero_calibration`` / ``layer_calibration`` is then calibrated on the training showers
   (``calo_data.ZeroCalibration`` / ``LayerCalibration``, from its showers generated at the
   training energies) and evaluated with and without (``<name>_uncalibrated``);
4. evaluation against the test showers (``hepjax.models.generative.metrics``): per-feature
   separation power, W1 and bulk chi^2 band test, the classifier AUC (low- and high-level), for
   every model and for the reference (truth vs truth);
5. ``results.json``, ``table.md``, ``features.png`` (histograms with ratio panels),
   ``showers.png`` (average shower images per layer) and ``loss.png``; the sampling models'
   parameters in ``models/<name>.pkl``.

``--dataset jets`` (point-cloud jet generation, ``experiments.generative.jets``) and
``--dataset events`` (Z -> mu mu + jets with conditional flows, ``experiments.generative.events``)
hand every other argument to those runners.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import pickle
import sys
import time

import numpy as np

from experiments.generative.config import Variant, get

MODELS = ("flow", "flow_affine", "diffusion", "gan", "vae")
FLOWS = ("flow", "flow_affine")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------- data

def ensure_showers(v: Variant, workdir: pathlib.Path, seed: int) -> dict:
    from hepjax.models.generative.calo_data import simulate_showers
    path = workdir / "showers.npz"
    key = json.dumps({"data": dataclasses.asdict(v.data), "n": [v.n_train, v.n_test, v.n_ref],
                      "seed": seed}, sort_keys=True)
    if path.exists():
        z = np.load(path, allow_pickle=False)
        if str(z["key"]) == key:
            log(f"showers from {path}")
            return {k: z[k] for k in z.files if k != "key"}
    out = {}
    sim_times = []
    for name, n, s in (("train", v.n_train, seed), ("test", v.n_test, seed + 1),
                       ("ref", v.n_ref, seed + 2)):
        t0 = time.perf_counter()
        d = simulate_showers(n, s, v.data, workers=v.workers)
        out[f"{name}_voxels"], out[f"{name}_e"] = d["voxels"], d["e_inc"]
        sim_times.append((n, d["sim_s_per_shower"]))
        log(f"simulated {n} {name} showers in {time.perf_counter() - t0:.1f} s "
            f"({1e3 * d['sim_s_per_shower']:.2f} ms per shower per core)")
    total = sum(n for n, _ in sim_times)
    out["sim_s_per_shower"] = np.array(sum(n * t for n, t in sim_times) / total)
    np.savez_compressed(path, key=np.array(key), **out)
    return out


# ------------------------------------------------------------------------------------- models

def new_model(name: str, v: Variant, dim: int, cdim: int, seed: int, rngs):
    """The untrained network of model ``name`` as the variant configures it (for the GAN, the
    generator and the critic, in that order from ``rngs``): shared by the training here and by
    ``speed.py``, so both build the same architecture."""
    from hepjax.models import generative as G
    if name in ("flow", "flow_affine"):
        cfg = getattr(v, name)
        return G.ConditionalFlow(dim, cdim, n_layers=cfg["n_layers"], kind=cfg["kind"],
                                 hidden=tuple(cfg["hidden"]), bins=cfg.get("bins", 8),
                                 layout=cfg.get("layout", "per_dim"), perm_seed=seed,
                                 bound=cfg.get("bound", 4.0),
                                 marginal_splines=cfg.get("marginal_splines", 0),
                                 marginal_bins=cfg.get("marginal_bins", 16), rngs=rngs)
    if name == "diffusion":
        cfg = v.diffusion
        return G.Diffusion(dim, cdim, T=cfg["T"], width=cfg["width"], depth=cfg["depth"],
                           rngs=rngs)
    if name == "gan":
        cfg = v.gan
        gen = G.Generator(dim, cdim, latent=cfg["latent"], hidden=tuple(cfg["hidden"]),
                          rngs=rngs)
        return gen, G.Critic(dim, cdim, hidden=tuple(cfg["hidden"]), rngs=rngs)
    if name == "vae":
        cfg = v.vae
        return G.ConditionalVAE(dim, cdim, latent=cfg["latent"], hidden=tuple(cfg["hidden"]),
                                rngs=rngs)
    raise ValueError(f"model {name!r}: choose from {MODELS}")


def build_and_train(name: str, v: Variant, x: np.ndarray, cond: np.ndarray, seed: int,
                    load: pathlib.Path | None = None, showers: tuple | None = None, pre=None):
    """Returns (sample_fn(model, key, cond), model used for sampling, history, train seconds).
    ``load``: a ``save_params`` file; the model is restored from it instead of trained.
    ``showers`` (training voxels, E_inc) and ``pre`` (the fitted ``CaloPreprocessor``): a flow
    whose config sets ``dequantise_per_step`` trains on them, dequantised afresh at every step
    (``flows.dequantised_flow_loss``), instead of on the once-dequantised vectors ``x``."""
    import jax
    from flax import nnx

    from hepjax.models import generative as G
    dim, cdim = x.shape[1], cond.shape[1]
    rngs = nnx.Rngs(seed)
    key = jax.random.key(seed + 1)
    data = (x, cond)
    t0 = time.perf_counter()

    def trained(model, loss_fn, data=data, **kw):
        if load is not None:
            with open(load, "rb") as f:
                params = pickle.load(f)
            state = nnx.state(model)
            nnx.replace_by_pure_dict(state, params)
            nnx.update(model, state)
            return model, model, []
        return G.fit(model, loss_fn, data, steps=cfg["steps"], batch_size=cfg["batch"],
                     key=key, lr=cfg["lr"], chunk=cfg["chunk"], log=logger,
                     weight_decay=cfg.get("weight_decay", 0.0), **kw)

    def logger(row):
        if row["step"] % max(1, cfg["chunk"] * 4) == 0 or row["step"] >= cfg["steps"]:
            log(f"  {name} step {row['step']}: " + ", ".join(
                f"{k} {val:.4g}" for k, val in row.items() if k not in ("step",)))

    if name in ("flow", "flow_affine"):
        cfg = getattr(v, name)
        model = new_model(name, v, dim, cdim, seed, rngs)
        if cfg.get("dequantise_per_step", False):
            if showers is None or pre is None:
                raise ValueError(f"{name}: dequantise_per_step needs the training showers and "
                                 f"the fitted preprocessor")
            loss_fn = G.flows.dequantised_flow_loss(pre.transform_jax)
            model, _, hist = trained(model, loss_fn, data=(
                (np.asarray(showers[0], np.float32), np.asarray(showers[1], np.float32)), cond))
        else:
            model, _, hist = trained(model, G.flow_loss)
        return (lambda m, k, c: m.sample(k, c)), model, hist, time.perf_counter() - t0
    if name == "diffusion":
        cfg = v.diffusion
        model = new_model(name, v, dim, cdim, seed, rngs)
        model, ema, hist = trained(model, G.diffusion_loss, ema=cfg["ema"])
        steps = cfg["ddim_steps"]
        # x0_hat clipped to the training data's range per coordinate, widened by 1 (std units);
        # DDIM starts at the last step with abar >= ddim_start_abar (the nearly pure-noise end
        # of the cosine schedule, abar down to 1e-8, is where the MLP's noise prediction is
        # least accurate and 1/sqrt(abar) amplifies its errors)
        lo, hi = x.min(0) - 1.0, x.max(0) + 1.0
        ab = np.asarray(model.schedule.alpha_bar)
        start = int(np.max(np.flatnonzero(ab >= cfg.get("ddim_start_abar", 0.0))))
        return ((lambda m, k, c: G.ddim_sample(m, k, c, steps, x0_range=(lo, hi), start=start)),
                ema, hist, time.perf_counter() - t0)
    if name == "gan":
        cfg = v.gan
        gen, crit = new_model(name, v, dim, cdim, seed, rngs)
        if load is not None:
            gen, _, _ = trained(gen, None)
            return (lambda m, k, c: m.sample(k, c)), gen, [], time.perf_counter() - t0
        gen, _, _, hist = G.fit_wgan(gen, crit, data, steps=cfg["steps"],
                                     batch_size=cfg["batch"], key=key, lr=cfg["lr"],
                                     n_critic=cfg["n_critic"], chunk=cfg["chunk"], log=logger)
        for row in hist:
            row["loss"] = -row["wasserstein"]
        return (lambda m, k, c: m.sample(k, c)), gen, hist, time.perf_counter() - t0
    if name == "vae":
        cfg = v.vae
        model = new_model(name, v, dim, cdim, seed, rngs)
        model, _, hist = trained(model, G.cvae_loss)
        return (lambda m, k, c: m.sample(k, c)), model, hist, time.perf_counter() - t0
    raise ValueError(f"model {name!r}: choose from {MODELS}")


def save_params(model, path: pathlib.Path) -> None:
    """The sampling model's parameters as nested dicts of numpy arrays (``nnx.State
    .to_pure_dict``); ``nnx.replace_by_pure_dict(nnx.state(fresh), params)`` restores them into
    a model built with the same config."""
    import pickle

    import jax
    from flax import nnx
    path.parent.mkdir(parents=True, exist_ok=True)
    pure = jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(nnx.state(model)))
    with open(path, "wb") as f:
        pickle.dump(pure, f)


def flow_nll(model, vectors: dict) -> dict:
    """The flow's negative log-likelihood per dimension (nats) of each set of standardised
    vectors, with its statistical error (std / sqrt(N) of the per-shower values)."""
    import jax
    from flax import nnx
    graphdef, params = nnx.split(model)
    lp = jax.jit(lambda p, x, c: nnx.merge(graphdef, p).log_prob(x, c))
    out = {}
    for name, (x, c) in vectors.items():
        vals = np.concatenate([np.asarray(lp(params, x[i:i + 2500], c[i:i + 2500]))
                               for i in range(0, len(x), 2500)]) / -x.shape[1]
        out[name] = {"nll": float(vals.mean()), "error": float(vals.std() / np.sqrt(len(vals))),
                     "n": len(vals)}
    return out


def calibration_configs(v: Variant, name: str, args, pre) -> tuple[dict | None, dict | None]:
    """(zero_calibration, layer_calibration) keyword arguments of ``ZeroCalibration.fit`` and
    ``LayerCalibration.fit`` for model ``name`` (None: not applied): the variant's config,
    overridden by --zero-calibration / --zero-layer-bins / --zero-floor / --layer-calibration."""
    if name not in FLOWS:
        return None, None
    cfg = getattr(v, name)
    zero, layer = cfg.get("zero_calibration"), cfg.get("layer_calibration")
    if args.zero_calibration is not None:
        zero = (dict(n_bins=args.zero_calibration, n_layer_bins=args.zero_layer_bins or 1)
                if args.zero_calibration > 0 else None)
    if zero and args.zero_floor is not None:
        zero = dict(zero, floor=pre.noise if args.zero_floor == "threshold" else 0.0)
    if args.layer_calibration is not None:
        layer = dict(n_bins=args.layer_calibration) if args.layer_calibration > 0 else None
    return zero, layer


def sample_and_time(sample_fn, model, cond: np.ndarray, seed: int,
                    sampler=None) -> tuple[np.ndarray, dict]:
    """Samples one vector per condition row in one batch; the time per shower is the median of
    three jitted runs after compilation (block_until_ready). ``sampler``: a ``make_sampler`` of
    this batch size to reuse (built here otherwise)."""
    import jax
    from hepjax.models.generative.training import make_sampler
    sampler = sampler or make_sampler(model, sample_fn, batch_size=len(cond))
    key = jax.random.key(seed)
    t0 = time.perf_counter()
    x = np.asarray(jax.block_until_ready(sampler(key, cond)))
    first = time.perf_counter() - t0
    times = []
    for r in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(sampler(jax.random.fold_in(key, r + 1), cond))
        times.append(time.perf_counter() - t0)
    return x, {"batch": len(cond), "first_call_s": first,
               "s_per_shower": float(np.median(times)) / len(cond),
               "load_average": os.getloadavg()[0]}


# ------------------------------------------------------------------------------------- report

def _short(name: str) -> str:
    return name.replace("E_tot/E_inc", "Etot/Einc")


def table_md(res: dict) -> str:
    lines = [f"# Generative models, calorimeter showers ({res['variant']} variant)", "",
             res["data"]["description"], "",
             f"Showers: {res['data']['n_train']} training, {res['data']['n_test']} test (truth),"
             f" {res['data']['n_ref']} reference (second truth sample). Simulator: "
             f"{1e3 * res['sim_s_per_shower']:.2f} ms per shower per core.", "",
             "| sample | classifier AUC (low-level) | AUC (high-level) | features in band | "
             "mean separation | max separation | train [s] | sampling [us/shower] | "
             "speed-up vs sim |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["samples"].items():
        seps = [f["separation"] for f in r["features"].values()]
        n_in = sum(f["in_band"] for f in r["features"].values())
        t = r.get("timing")
        lines.append(
            f"| {name} | {r['classifier']['auc']:.3f} | {r['classifier_high']['auc']:.3f} | "
            f"{n_in}/{len(seps)} | {np.mean(seps):.4f} | {np.max(seps):.4f} | "
            + (f"{r['train_s']:.0f} | {1e6 * t['s_per_shower']:.1f} | "
               f"{res['sim_s_per_shower'] / t['s_per_shower']:.0f}x |" if t else "- | - | - |"))
    lines += ["", "Per feature: separation power (CaloChallenge) / bulk chi2 p-value "
              "(* = outside the statistical band, p < 0.01).", ""]
    names = list(res["samples"])
    feats = list(next(iter(res["samples"].values()))["features"])
    lines.append("| feature | " + " | ".join(names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for f in feats:
        cells = []
        for n in names:
            c = res["samples"][n]["features"][f]
            cells.append(f"{c['separation']:.4f} / {c['p_value']:.2g}"
                         + ("" if c["in_band"] else " *"))
        lines.append(f"| {_short(f)} | " + " | ".join(cells) + " |")
    lines += ["", f"Bars (issue 27): best model {res['best']['model']} with classifier AUC "
              f"{res['best']['auc']:.3f} (bar <= 0.75: "
              f"{'met' if res['best']['auc'] <= 0.75 else 'not met'}); features in band "
              f"{res['best']['in_band']}; sampling speed-up {res['best']['speedup']:.0f}x "
              f"(bar >= 100x: {'met' if res['best']['speedup'] >= 100 else 'not met'})."]
    return "\n".join(lines) + "\n"


def plots(workdir: pathlib.Path, feats: dict, voxels: dict, histories: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hepjax.models.generative.metrics import feature_bins
    # y centroids and widths look like the x ones (the showers are symmetric): not plotted
    names = [f for f in feats["truth"] if not f.startswith(("cy_", "wy_"))]
    ncol = 6
    nrow = math.ceil(len(names) / ncol)
    fig = plt.figure(figsize=(4 * ncol, 4 * nrow))
    outer = fig.add_gridspec(nrow, ncol, hspace=0.35, wspace=0.3)
    colours = {"truth": "k", "reference": "grey", "flow": "C0", "diffusion": "C1", "gan": "C2",
               "vae": "C3", "flow_affine": "C4"}
    for idx, f in enumerate(names):
        inner = outer[idx // ncol, idx % ncol].subgridspec(2, 1, height_ratios=(3, 1), hspace=0)
        ax, axr = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
        truth = feats["truth"][f]
        edges = feature_bins(truth)[1:-1]
        if len(edges) < 3:
            lo, hi = np.quantile(truth, [0.005, 0.995])
            edges = np.linspace(lo - 0.5, hi + 0.5, 4)
        centres = 0.5 * (edges[1:] + edges[:-1])
        ht = np.histogram(truth, edges)[0].astype(float)
        nt = max(len(truth), 1)
        for name, fd in feats.items():
            h = np.histogram(fd[f], edges)[0].astype(float)
            n = max(len(fd[f]), 1)
            style = dict(color=colours.get(name, None), lw=1.2, label=name)
            if name == "truth":
                ax.fill_between(centres, h / n, step="mid", color="0.85", label="truth")
                band = np.sqrt(np.maximum(ht, 1)) / np.maximum(ht, 1)
                axr.fill_between(centres, 1 - band, 1 + band, step="mid", color="0.85")
                continue
            ax.step(centres, h / n, where="mid", **style)
            with np.errstate(divide="ignore", invalid="ignore"):
                axr.step(centres, (h / n) / (ht / nt), where="mid", color=style["color"], lw=1)
        ax.set_title(f, fontsize=9)
        ax.set_xticklabels([])
        axr.set_ylim(0.5, 1.5)
        axr.axhline(1, color="k", lw=0.5)
        if idx == 0:
            ax.legend(fontsize=7)
    fig.savefig(workdir / "features.png", dpi=80, bbox_inches="tight")
    plt.close(fig)

    rows = list(voxels)
    L = next(iter(voxels.values())).shape[1]
    fig, axes = plt.subplots(len(rows), L, figsize=(2.6 * L, 2.4 * len(rows)), squeeze=False)
    for r, name in enumerate(rows):
        mean = voxels[name].mean(0)
        for k in range(L):
            im = axes[r, k].imshow(np.log10(np.maximum(mean[k].T, 1e-4)), origin="lower",
                                   vmin=-3, vmax=1.5, cmap="viridis")
            axes[r, k].set_xticks([])
            axes[r, k].set_yticks([])
            if r == 0:
                axes[r, k].set_title(f"layer group {k}")
            if k == 0:
                axes[r, k].set_ylabel(name)
    fig.colorbar(im, ax=axes, label="log10 <E voxel / GeV>", shrink=0.6)
    fig.savefig(workdir / "showers.png", dpi=80, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3), squeeze=False)
    for ax, (name, hist) in zip(axes[0], histories.items()):
        ax.plot([h["step"] for h in hist], [h["loss"] for h in hist])
        ax.set_title(name)
        ax.set_xlabel("step")
    axes[0, 0].set_ylabel("training loss (GAN: -W estimate)")
    fig.savefig(workdir / "loss.png", dpi=80, bbox_inches="tight")
    plt.close(fig)


# ------------------------------------------------------------------------------------- main

def main(argv=None) -> dict:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--dataset", default="calo", choices=("calo", "jets", "events"))
    known, rest = pre.parse_known_args(argv)
    if known.dataset == "jets":
        from experiments.generative import jets
        return jets.main(rest)
    if known.dataset == "events":
        from experiments.generative import events
        return events.main(rest)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="calo", choices=("calo", "jets", "events"))
    ap.add_argument("--variant", default="cpu", choices=("smoke", "cpu", "full"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--models", default=None, help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--reuse-models", action="store_true",
                    help="restore models/<name>.pkl of the work directory instead of training")
    ap.add_argument("--zero-calibration", type=int, default=None, metavar="N_BINS",
                    help="flows: per-voxel read-out thresholds calibrated on the training "
                         "showers in N_BINS bins of E_inc (0: off); default: the variant's "
                         "zero_calibration")
    ap.add_argument("--zero-layer-bins", type=int, default=None, metavar="N",
                    help="with --zero-calibration: N bins of each layer's energy (by rank) "
                         "within each E_inc bin (default 1)")
    ap.add_argument("--n-train", type=int, default=None,
                    help="number of training showers (default: the variant's n_train)")
    ap.add_argument("--layer-calibration", type=int, default=None, metavar="N_BINS",
                    help="flows: quantile mapping of the layer-energy coordinates calibrated on "
                         "the training showers in N_BINS bins of E_inc (0: off); default: the "
                         "variant's layer_calibration")
    ap.add_argument("--band-seeds", type=int, default=0, metavar="K",
                    help="also run the band test on K more samples (other sampling seeds) of "
                         "each model, with and without its calibrations")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps of every model (default: the variant's)")
    ap.add_argument("--zero-floor", choices=("none", "threshold"), default=None,
                    help="with --zero-calibration: raise kept voxels below the read-out "
                         "threshold to it ('threshold') or keep them ('none', the default)")
    args = ap.parse_args(argv)
    v = get(args.variant)
    if args.n_train is not None:
        v = dataclasses.replace(v, n_train=args.n_train)
    if args.steps is not None:
        v = dataclasses.replace(v, **{m: dict(getattr(v, m), steps=args.steps) for m in MODELS})
    seed = v.seed if args.seed is None else args.seed
    models = v.models if args.models is None else tuple(args.models.split(","))
    for m in models:
        if m not in MODELS:
            ap.error(f"--models: unknown model {m!r}")
    workdir = pathlib.Path(args.workdir or f"runs/generative_calo_{v.name}")
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    import jax

    from hepjax.models.generative import metrics as M
    from hepjax.models.generative.calo_data import (CaloPreprocessor, LayerCalibration,
                                                    ZeroCalibration)
    from hepjax.models.generative.training import make_sampler
    data = ensure_showers(v, workdir, seed)
    sim_s = float(data["sim_s_per_shower"])
    shape = v.data.shape
    pre = CaloPreprocessor(energy=v.data.energy, box=tuple(v.dequant_box)).fit(
        data["train_voxels"], data["train_e"], np.random.default_rng(seed))
    x = pre.transform(data["train_voxels"], data["train_e"], np.random.default_rng(seed + 3))
    cond = pre.condition(data["train_e"])
    ref_cond = pre.condition(data["ref_e"])
    log(f"training vectors {x.shape}, conditions {cond.shape}")

    voxels = {"truth": data["test_voxels"], "reference": data["ref_voxels"]}
    energies = {"truth": data["test_e"], "reference": data["ref_e"]}
    timing, train_s, histories, nll, cal_info, band_seeds = {}, {}, {}, {}, {}, {}
    truth_feats = M.high_level_features(data["test_voxels"], data["test_e"])
    # the flows' NLL on 5,000 showers each (at most): the training vectors as dequantised once
    # (what a flow without dequantise_per_step trains on), the same training showers with a
    # fresh dequantisation draw, and the test showers (held out; their own draw)
    m = min(5000, len(x), len(data["test_e"]))
    nll_sets = {
        "train_fixed": (x[:m], cond[:m]),
        "train_fresh": (pre.transform(data["train_voxels"][:m], data["train_e"][:m],
                                      np.random.default_rng(seed + 4)), cond[:m]),
        "test": (pre.transform(data["test_voxels"][:m], data["test_e"][:m],
                               np.random.default_rng(seed + 5)),
                 pre.condition(data["test_e"][:m]))}
    for i, name in enumerate(models):
        log(f"training {name}")
        saved = workdir / "models" / f"{name}.pkl"
        load = saved if args.reuse_models and saved.exists() else None
        sample_fn, model, hist, secs = build_and_train(
            name, v, x, cond, seed + 10 + i, load,
            showers=(data["train_voxels"], data["train_e"]), pre=pre)
        histories[name], train_s[name] = hist, (math.nan if load else secs)
        if load is None:
            save_params(model, saved)
        if name in ("flow", "flow_affine"):
            nll[name] = flow_nll(model, nll_sets)
            log(f"  {name}: NLL per dimension " + ", ".join(
                f"{k} {r['nll']:.3f} +- {r['error']:.3f}" for k, r in nll[name].items()))
        sampler = make_sampler(model, sample_fn, batch_size=len(ref_cond))
        gen, timing[name] = sample_and_time(sample_fn, model, ref_cond, seed + 20 + i, sampler)
        bad = int((~np.isfinite(gen)).any(1).sum())
        zero_cfg, layer_cfg = calibration_configs(v, name, args, pre)
        lcal = zcal = None

        def to_voxels(g, calibrated=True):
            """Model vectors at the reference energies -> voxels, through this model's
            calibrations (fitted below; none fitted: the plain inverse)."""
            if calibrated and lcal is not None:
                g = lcal.apply(g, data["ref_e"])
            return pre.inverse(g, data["ref_e"], shape, zcal if calibrated else None)

        if zero_cfg or layer_cfg:
            # calibrations fitted after training on the TRAINING showers only (never the test
            # or reference showers), from the model's vectors generated at the training energies
            t0 = time.perf_counter()
            gen_train = np.asarray(sampler(jax.random.key(seed + 30 + i), cond))
            info = {}
            if layer_cfg:
                x_train = pre.transform(data["train_voxels"], data["train_e"],
                                        np.random.default_rng(seed + 6))
                lcal = LayerCalibration.fit(gen_train, data["train_e"], x_train, data["train_e"],
                                            n_layers=shape[0], **layer_cfg)
                np.savez(workdir / "models" / f"{name}_layer_calibration.npz", **lcal.to_dict())
                gen_train = lcal.apply(gen_train, data["train_e"])
                info["layer_calibration"] = {"config": layer_cfg, "n_fit": len(cond),
                                             "seed": seed + 30 + i, "dequantisation_seed": seed + 6}
            if zero_cfg:
                uncut = pre.inverse_uncut(gen_train, data["train_e"], shape)
                zcal = ZeroCalibration.fit(uncut, data["train_e"], data["train_voxels"],
                                           data["train_e"], default_cut=pre.cut, **zero_cfg)
                np.savez(workdir / "models" / f"{name}_zero_calibration.npz", **zcal.to_dict())
                # the check on the fitting sample: per energy bin and voxel, the calibrated zero
                # fraction of the generated showers against the training showers' one
                zc, zt = zcal.apply(uncut, data["train_e"]) == 0, data["train_voxels"] == 0
                bins = zcal.bin_of(data["train_e"])
                nb = zcal.n_bins
                thr = zcal.thresholds
                info["zero_calibration"] = {
                    "config": zero_cfg, "n_fit": len(cond), "seed": seed + 30 + i,
                    "fit_sample_max_abs_zero_fraction_diff": max(
                        float(np.abs(zc[bins == b].mean(0) - zt[bins == b].mean(0)).max())
                        for b in range(nb)),
                    "fit_sample_max_abs_zero_fraction_diff_uncalibrated": max(
                        float(np.abs((uncut[bins == b] < pre.cut).mean(0)
                                     - zt[bins == b].mean(0)).max()) for b in range(nb)),
                    "fraction_thresholds_at_default_cut": float((thr == pre.cut).mean()),
                    "threshold_over_cut_quantiles": np.quantile(
                        thr / pre.cut, [0.0, 0.05, 0.5, 0.95, 1.0]).tolist()}
            cal_info[name] = info
            log(f"  {name}: calibrated on {len(cond)} training showers in "
                f"{time.perf_counter() - t0:.1f} s: " + json.dumps(info, default=float))
        voxels[name] = to_voxels(gen)
        if name in cal_info:
            voxels[f"{name}_uncalibrated"] = to_voxels(gen, calibrated=False)
            energies[f"{name}_uncalibrated"] = data["ref_e"]
        energies[name] = data["ref_e"]
        if args.band_seeds:
            # the band test for more sampling seeds of the same model (and calibrations): how
            # often each feature is in band, beyond the one sample of the table
            t0 = time.perf_counter()
            for tag, calibrated in ((name, True), (f"{name}_uncalibrated", False)):
                if not calibrated and tag not in voxels:
                    continue
                counts, outside = [], {}
                for r in range(args.band_seeds):
                    g = np.asarray(sampler(jax.random.fold_in(jax.random.key(seed + 20 + i),
                                                              1000 + r), ref_cond))
                    vx = to_voxels(g, calibrated)
                    cmp = M.compare_all(truth_feats, M.high_level_features(vx, data["ref_e"]))
                    counts.append(sum(c["in_band"] for c in cmp.values()))
                    for f, c in cmp.items():
                        outside[f] = outside.get(f, 0) + int(not c["in_band"])
                band_seeds[tag] = {"in_band": counts,
                                   "keys": "fold_in(key(seed + 20 + i), 1000 + r)",
                                   "times_outside": {f: k for f, k in outside.items() if k}}
                log(f"  {tag}: features in band over {args.band_seeds} more sampling seeds: "
                    f"{counts}; outside: {band_seeds[tag]['times_outside']} "
                    f"({time.perf_counter() - t0:.0f} s)")
        log(f"  {name}: trained in {secs:.0f} s; sampling {1e6 * timing[name]['s_per_shower']:.1f}"
            f" us per shower ({sim_s / timing[name]['s_per_shower']:.0f}x the simulator); "
            f"{bad} non-finite samples")

    feats = {k: M.high_level_features(vx, energies[k]) for k, vx in voxels.items()}
    samples = {}
    for name in voxels:
        if name == "truth":
            continue
        t0 = time.perf_counter()
        samples[name] = {
            "features": M.compare_all(feats["truth"], feats[name]),
            "classifier": M.classifier_test(voxels["truth"], energies["truth"], voxels[name],
                                            energies[name], seed=seed,
                                            epochs=v.classifier_epochs),
            "classifier_high": M.classifier_test(voxels["truth"], energies["truth"],
                                                 voxels[name], energies[name], seed=seed,
                                                 high_level=True,
                                                 epochs=v.classifier_epochs)}
        if name in timing:
            samples[name]["timing"] = timing[name]
            samples[name]["train_s"] = train_s[name]
            samples[name]["history"] = histories[name]
        if name in nll:
            samples[name]["nll"] = nll[name]
        samples[name].update(cal_info.get(name, {}))
        if name in band_seeds:
            samples[name]["band_over_sampling_seeds"] = band_seeds[name]
        # fraction of showers in which each voxel is empty (L, G, G), with the binomial error
        zf = (voxels[name] == 0).mean(0)
        samples[name]["zero_fraction"] = {
            "value": zf.tolist(), "error": np.sqrt(zf * (1 - zf) / len(voxels[name])).tolist()}
        log(f"{name}: AUC {samples[name]['classifier']['auc']:.3f} (low level), "
            f"{samples[name]['classifier_high']['auc']:.3f} (high level); features in band "
            f"{sum(f['in_band'] for f in samples[name]['features'].values())}/"
            f"{len(samples[name]['features'])} ({time.perf_counter() - t0:.0f} s)")
    gen_names = [n for n in samples if n in timing]     # not the uncalibrated twins
    best = min(gen_names, key=lambda n: samples[n]["classifier"]["auc"]) if gen_names else None
    res = {"variant": v.name, "dataset": "calo", "seed": seed,
           "data": {"description": v.data.describe(), "n_train": v.n_train,
                    "n_test": v.n_test, "n_ref": v.n_ref, "config": dataclasses.asdict(v.data)},
           "models_config": {m: getattr(v, m) for m in models},
           "zero_calibration_override": {"n_bins": args.zero_calibration,
                                         "n_layer_bins": args.zero_layer_bins,
                                         "floor": args.zero_floor,
                                         "layer_n_bins": args.layer_calibration},
           "sim_s_per_shower": sim_s, "samples": samples,
           "truth_zero_fraction": (voxels["truth"] == 0).mean(0).tolist()}
    if best:
        b = samples[best]
        res["best"] = {"model": best, "auc": b["classifier"]["auc"],
                       "in_band": f"{sum(f['in_band'] for f in b['features'].values())}/"
                                  f"{len(b['features'])}",
                       "speedup": sim_s / b["timing"]["s_per_shower"]}
        (workdir / "table.md").write_text(table_md(res))
    res["wall_s"] = time.perf_counter() - t_start
    (workdir / "results.json").write_text(json.dumps(res, indent=1, default=float))
    plots(workdir, feats, {k: voxels[k] for k in voxels}, histories)
    log(f"done in {res['wall_s']:.0f} s; outputs in {workdir}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
