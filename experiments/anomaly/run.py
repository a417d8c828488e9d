"""Unsupervised anomaly detection on generated top-tagging jets: train on QCD jets only, score
top jets as anomalies, and boosted hadronic W jets as a second anomaly scored by the same
QCD-trained models (hepjax.anomaly.wjets: Pythia's ffbar2WW, same kinematics and pipeline); and
the inverse task: train on top jets, QCD as the anomaly (Finke et al., JHEP 06 (2021) 161).

    python -m experiments.anomaly.run --variant smoke|cpu --workdir runs/anomaly

Methods (hepjax.models.autoencoders, hepjax.models.jetclr, hepjax.anomaly):
  mass, mass_density   jet-mass baselines: the mass itself, and -log p_B(m) from a histogram of
                       the training background's masses (unsupervised, no sign chosen)
  ae_obs               dense AE on 9 log jet observables, 2-D latent; reconstruction error,
                       and ae_obs_latent: Mahalanobis distance in its latent space
  vae_obs              beta-VAE on the observables: -ELBO, KL term, latent Mahalanobis
  ae_img               dense AE on 40x40 jet images (Farina, Nakai, Shih 2020)
  cae_img              convolutional AE on the images (Heimel et al., "QCD or What?", 2019)
  dae_img              the same CAE trained on images with Gaussian pixel noise, scored clean
  setae                Deep Sets set AE on the leading constituents, Sinkhorn (EMD-like) loss
  jetclr               contrastive representation (Dillon et al. 2021) trained on the
                       background, Mahalanobis distance in representation space

Data: the generated top-tagging sample cached under ~/.cache/hepjax (``hepjax generate``
recipe 2; the ``cpu`` variant reads the 150k-jet 80/10/10 sample, the ``smoke`` variant the
1,000-jet CI sample). Training: ``n_train`` background jets of the train split; the validation
split is scored too (methods were compared and settings chosen there), the test split gives
the reported numbers. The W jets (``w_jets``: the cpu variant generates 6,000 once, cached beside
the top-tagging sample; none in the smoke variant unless ``--w-jets N``) are a test set only:
QCD test jets vs W jets. Writes WORKDIR/results.json and the plots (roc_sic.png, roc_sic_w.png,
latent.png, sculpting.png).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hepjax import metrics
from hepjax.anomaly import data as adata
from hepjax.anomaly import scores as sc
from hepjax.anomaly import wjets
from hepjax.anomaly.train import apply_batched, fit
from hepjax.configs import defaults
from hepjax.data import top_tagging
from hepjax.data import features as features_lib
from hepjax.models import autoencoders as ae
from hepjax.models import jetclr

VARIANTS = {
    "smoke": dict(data=dict(n_jets=1000, workers=1, events_per_chunk=100), npix=16, n_train=300,
                  n_val=0, n_test=0, ecf_particles=30, steps=60, batch=64, particles=20, widths=0.25, bootstrap=5,
                  probe_labels=(50,), channels=(4, 8), heavy_steps=60, max_particles=30,
                  w_jets=dict(n_jets=0, seed=2026, events_per_chunk=100)),
    "cpu": dict(data=dict(n_jets=150_000, workers=2, events_per_chunk=200,
                          ttv_fractions=(0.8, 0.1, 0.1)), npix=40, n_train=5_000,
                n_val=3000, n_test=6000, steps=1500, batch=128, particles=30, widths=1.0,
                bootstrap=30, probe_labels=(100, 1000), channels=(8, 16), heavy_steps=600,
                max_particles=100, ecf_particles=40,
                w_jets=dict(n_jets=6000, seed=2026, events_per_chunk=200)),
}


def load(variant: dict) -> dict:
    cfg = defaults.top_tagging_data(**variant["data"], max_particles=variant["max_particles"])
    jets = top_tagging.load_jets(cfg)
    return jets, str(top_tagging.cache_path(cfg).name)


def represent(jets: dict, v: dict) -> dict:
    p4, mask = jets["p4"], jets["mask"]
    computed = features_lib.jet_observables(p4, mask, ecf_particles=v["ecf_particles"])
    obs_all, names = computed
    feats, cmask, z = adata.constituents(p4, mask, v["particles"])
    return {"label": np.asarray(jets["label"]), "mass": obs_all[:, names.index("mass")],
            "obs": adata.observables(p4, mask, computed=computed),
            "img": adata.images(p4, mask, v["npix"]),
            "set": feats, "set_mask": cmask, "set_z": z}


def take(rep: dict, rows) -> dict:
    return {k: v[rows] for k, v in rep.items()}


def _w(n, v):
    return max(int(round(n * v["widths"])), 2)


# ---------------------------------------------------------------------------------- methods


def mse_loss(m, b, k):
    return jnp.mean(ae.reconstruction_loss(m(b[0]), b[0]))


def method_mass(train, evals, v, seed):
    bins = np.linspace(0, 400, 41)
    hist, _ = np.histogram(train["mass"], bins)
    density = (hist + 0.5) / (hist.sum() + 0.5 * len(hist))
    idx = lambda m: np.clip(np.digitize(m, bins) - 1, 0, len(hist) - 1)  # noqa: E731
    return ({"mass": [e["mass"] for e in evals],
             "mass_density": [-np.log(density[idx(e["mass"])]) for e in evals]}, {})


def method_ae_obs(train, evals, v, seed):
    std = adata.Standardiser.fit(train["obs"])
    x = std(train["obs"])
    model = ae.DenseAE(x.shape[1], (_w(32, v), _w(16, v)), 2, activation="gelu",
                       rngs=nnx.Rngs(seed))
    fit(model, mse_loss, x, steps=v["steps"], batch_size=v["batch"], learning_rate=1e-3, seed=seed)
    enc = jax.jit(model.encode)
    lat = sc.LatentDistance().fit(apply_batched(enc, x))
    out = {"ae_obs": [], "ae_obs_latent": []}
    latents = []
    for e in evals:
        xe = std(e["obs"])
        out["ae_obs"].append(sc.reconstruction_error(model, xe))
        ze = apply_batched(enc, xe)
        latents.append(ze)
        out["ae_obs_latent"].append(lat(ze))
    return out, {"latents": latents}


def method_vae_obs(train, evals, v, seed):
    std = adata.Standardiser.fit(train["obs"])
    x = std(train["obs"])
    model = ae.VAE(x.shape[1], (_w(32, v), _w(16, v)), 4, decoder_sigma=0.3, beta=1.0,
                   activation="gelu", rngs=nnx.Rngs(seed))
    fit(model, lambda m, b, k: m.loss(b[0], k), x, steps=v["steps"], batch_size=v["batch"],
        learning_rate=1e-3, seed=seed)
    mu = jax.jit(lambda b: model.encode(b)[0])
    lat = sc.LatentDistance().fit(apply_batched(mu, x))
    out = {"vae_obs_elbo": [], "vae_obs_kl": [], "vae_obs_latent": []}
    for e in evals:
        xe = std(e["obs"])
        s = sc.vae_scores(model, xe, seed=seed)
        out["vae_obs_elbo"].append(s["neg_elbo"])
        out["vae_obs_kl"].append(s["kl"])
        out["vae_obs_latent"].append(lat(apply_batched(mu, xe)))
    return out, {}


def method_ae_img(train, evals, v, seed):
    npix = v["npix"]
    x = adata.check_images(train["img"], npix).reshape(len(train["img"]), -1)
    model = ae.DenseAE(npix * npix, (_w(256, v), _w(64, v)), 16, rngs=nnx.Rngs(seed))
    fit(model, mse_loss, x, steps=v["steps"], batch_size=v["batch"], learning_rate=1e-3, seed=seed)
    return {"ae_img": [sc.reconstruction_error(model, e["img"].reshape(len(e["img"]), -1))
                       for e in evals]}, {}


def _cae(train, evals, v, seed, noise):
    x = adata.check_images(train["img"], v["npix"])
    model = ae.ConvAE(v["npix"], v["channels"], 16, rngs=nnx.Rngs(seed))
    if noise is None:
        loss = mse_loss
    else:
        def loss(m, b, k):
            return ae.denoising_loss(m, k, b[0], noise)
    fit(model, loss, x, steps=v["heavy_steps"], batch_size=v["batch"], learning_rate=1e-3,
        seed=seed)
    return [sc.reconstruction_error(model, e["img"], batch_size=512) for e in evals]


def method_cae_img(train, evals, v, seed):
    return {"cae_img": _cae(train, evals, v, seed, None)}, {}


def method_dae_img(train, evals, v, seed):
    # pixel noise of ~ the typical pixel intensity of a QCD image (scale 100 per image)
    return {"dae_img": _cae(train, evals, v, seed, ae.NoiseModel("gaussian", 1.0))}, {}


def method_setae(train, evals, v, seed):
    f = train["set"]
    model = ae.SetAE(3, 16, num_points=v["particles"], encoder="deepsets", loss="sinkhorn",
                     phi_sizes=(_w(64, v), _w(64, v)), hidden=(_w(128, v),), epsilon=0.005,
                     sinkhorn_iters=20, rngs=nnx.Rngs(seed))
    # epsilon 0.005 in (delta eta, delta phi)^2: a blur of ~0.07, the scale of a subjet

    def loss(m, b, k):
        return jnp.mean(m.score(b[0], b[1], b[2]))

    fit(model, loss, (f, train["set_mask"], train["set_z"]), steps=v["heavy_steps"],
        batch_size=v["batch"], learning_rate=1e-3, seed=seed)
    score = jax.jit(lambda a, b, c: model.score(a, b, c))
    return {"setae": [apply_batched(score, (e["set"], e["set_mask"], e["set_z"]), 512)
                      for e in evals]}, {}


def method_jetclr(train, evals, v, seed, probe=None):
    model = jetclr.JetCLR(_w(32, v), phi_sizes=(_w(64, v), _w(64, v)), rho_sizes=(_w(64, v),),
                          head_sizes=(_w(64, v),), proj_dim=_w(32, v), rngs=nnx.Rngs(seed))
    pos = lambda r: r["set"][..., :2]  # noqa: E731
    fit(model, lambda m, b, k: jetclr.contrastive_loss(m, b, k, temperature=0.1),
        (pos(train), train["set_z"], train["set_mask"]), steps=v["heavy_steps"],
        batch_size=v["batch"], learning_rate=1e-3, seed=seed)
    rep = jax.jit(lambda a, b, c: model.represent(a, b, c))
    r = lambda e: apply_batched(rep, (pos(e), e["set_z"], e["set_mask"]), 512)  # noqa: E731
    lat = sc.LatentDistance().fit(r(train))
    reps = [r(e) for e in evals]
    extra = {}
    if probe is not None:
        extra["probe_reps"] = r(probe)
        extra["reps"] = reps
    return {"jetclr": [lat(x) for x in reps]}, extra


METHODS = {"mass": method_mass, "ae_obs": method_ae_obs, "vae_obs": method_vae_obs,
           "ae_img": method_ae_img, "cae_img": method_cae_img, "dae_img": method_dae_img,
           "setae": method_setae, "jetclr": method_jetclr}


# ---------------------------------------------------------------------------------- figures


def figures_of_merit(labels, score, n_boot, seed=0) -> dict:
    a = metrics.bootstrap(sc.auc, labels, score, n_resamples=n_boot, seed=seed)
    s = sc.max_sic(labels, score)
    sb = metrics.bootstrap(lambda y, x: sc.max_sic(y, x)["max_sic"], labels, score,
                           n_resamples=n_boot, seed=seed)
    return {"auc": a.value, "auc_err": a.std, "max_sic": s["max_sic"], "max_sic_err": sb.std,
            "sic_eps_s": s["eps_s"], "sic_eps_b": s["eps_b"], "eps_b_floor": s["eps_b_floor"]}


def run_task(name, rep, train_rows, eval_sets, v, seed, methods, log, probe_rows=None,
             quick_auc=None):
    """Trains every method on rep[train_rows] (one class) and scores the eval sets."""
    train = take(rep, train_rows)
    evals = [take(rep, rows) for _, rows in eval_sets]
    all_scores, extras, timings = {}, {}, {}
    for m in methods:
        t0 = time.time()
        kwargs = {}
        if m == "jetclr" and probe_rows is not None:
            kwargs["probe"] = take(rep, probe_rows)
        out, extra = METHODS[m](train, evals, v, seed, **kwargs)
        timings[m] = round(time.time() - t0, 1)
        all_scores.update(out)
        extras[m] = extra
        aucs = "" if quick_auc is None else "  test AUC " + ", ".join(
            f"{k} {quick_auc(s[1]):.4f}" for k, s in out.items())
        log(f"[{name}] {m}: {timings[m]} s{aucs}")
    return all_scores, extras, timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="smoke")
    parser.add_argument("--workdir", default="runs/anomaly")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--tasks", default="qcd_trained,top_trained",
                        help="qcd_trained (anomaly: top) and/or top_trained (anomaly: QCD)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--w-jets", type=int, default=None,
                        help="number of W jets scored by the qcd_trained task (0: none; "
                             "default: the variant's)")
    args = parser.parse_args(argv)
    v = VARIANTS[args.variant]
    w_cfg = dict(v["w_jets"])
    if args.w_jets is not None:
        if args.w_jets < 0:
            parser.error(f"--w-jets {args.w_jets}: expected a number of jets >= 0")
        w_cfg["n_jets"] = args.w_jets
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; known: {sorted(METHODS)}")
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    log = lambda s: print(f"{time.time() - t_start:7.1f}s {s}", flush=True)  # noqa: E731

    jets, source = load(v)
    rng = np.random.default_rng(args.seed)
    train_all = jets["train"]
    bg_rows = np.flatnonzero(train_all["label"] == 0)
    sig_rows = np.flatnonzero(train_all["label"] == 1)
    n_train = min(v["n_train"], len(bg_rows), len(sig_rows))
    bg_rows = np.sort(rng.permutation(bg_rows)[:n_train])
    sig_rows = np.sort(rng.permutation(sig_rows)[:n_train])
    # a labelled pool for the JetCLR linear probe, disjoint from the unsupervised training jets
    rest = np.setdiff1d(np.arange(len(train_all["label"])), np.concatenate([bg_rows, sig_rows]))
    probe_pool = np.sort(rng.permutation(rest)[:max(v["probe_labels"])])
    keep = np.concatenate([bg_rows, sig_rows, probe_pool])
    train_jets = {k: a[keep] for k, a in train_all.items()}
    n_b, n_s = len(bg_rows), len(sig_rows)
    log(f"loaded {source}; representing {len(keep)} training + "
        f"{v['n_val'] or len(jets['val']['label'])} val + "
        f"{v['n_test'] or len(jets['test']['label'])} test jets")
    rep_train = represent(train_jets, v)
    def subset(split, n, seed):
        sel = jets[split]
        if n:
            rows = np.sort(np.random.default_rng(seed).permutation(len(sel["label"]))[:n])
            sel = {k: a[rows] for k, a in sel.items()}
        return sel

    rep_val = represent(subset("val", v["n_val"], args.seed + 1), v)
    rep_test = represent(subset("test", v["n_test"], args.seed + 2), v)
    parts = [("train", rep_train), ("val", rep_val), ("test", rep_test)]
    w_source = None
    if w_cfg["n_jets"] and "qcd_trained" in args.tasks.split(","):
        w_path = wjets.cache_path(w_cfg["n_jets"], w_cfg["seed"],
                                  events_per_chunk=w_cfg["events_per_chunk"])
        log(f"W jets: {w_path.name}" + ("" if w_path.is_file() else " (generating)"))
        w_jets = wjets.load_w_jets(w_cfg["n_jets"], w_cfg["seed"],
                                   events_per_chunk=w_cfg["events_per_chunk"],
                                   workers=v["data"]["workers"], max_particles=v["max_particles"])
        w_source = w_path.name
        parts.append(("w", represent(w_jets, v)))
    for name, r in parts:
        for key in ("obs", "img", "set"):
            adata.check_features(r[key], f"{w_source if name == 'w' else source} {name} {key}")
    # one array holding every jet, so a task can take rows of it (W jets after the test jets)
    rep = {k: np.concatenate([r[k] for _, r in parts]) for k in rep_train}
    off_val, off_test = len(keep), len(keep) + len(rep_val["label"])
    val_rows = np.arange(off_val, off_test)
    test_rows = np.arange(off_test, off_test + len(rep_test["label"]))
    w_rows = np.arange(test_rows[-1] + 1, len(rep["label"])) if w_source else None
    probe_rows = np.arange(n_b + n_s, len(keep))
    log("representations done")

    results = {"variant": args.variant, "data": source, "seed": args.seed,
               "n_train": n_train, "n_val": len(val_rows), "n_test": len(test_rows),
               "versions": {"jax": jax.__version__, "flax": flax.__version__,
                            "python": platform.python_version(), "numpy": np.__version__},
               "host": platform.processor() or platform.machine(), "tasks": {}}
    if w_source:
        results["w_data"] = {"file": w_source, "n_jets": len(w_rows), "seed": w_cfg["seed"],
                             "pythia": list(wjets.W_SETTINGS)}
    plots = {}
    for task, train_rows, anomaly in (("qcd_trained", np.arange(n_b), 1),
                                      ("top_trained", np.arange(n_b, n_b + n_s), 0)):
        if task not in args.tasks.split(","):
            continue
        adata.check_training_data(rep["obs"][train_rows], rep["label"][train_rows],
                                  background_label=1 - anomaly, name=f"{task} training jets")
        eval_sets = [("val", val_rows), ("test", test_rows)]
        with_w = task == "qcd_trained" and w_rows is not None
        if with_w:
            eval_sets.append(("w", w_rows))   # scored by the same models, after val and test
        all_scores, extras, timings = run_task(
            task, rep, train_rows, eval_sets, v, args.seed,
            methods, log, probe_rows if task == "qcd_trained" else None,
            quick_auc=lambda s: sc.auc((rep["label"][test_rows] == anomaly).astype(int), s))
        table, w_table = {}, {}
        for m, (s_val, s_test, *s_w) in all_scores.items():
            y_val = (rep["label"][val_rows] == anomaly).astype(int)
            y_test = (rep["label"][test_rows] == anomaly).astype(int)
            table[m] = {"val_auc": sc.auc(y_val, s_val),
                        **figures_of_merit(y_test, s_test, v["bootstrap"])}
            log(f"[{task}] {m}: val AUC {table[m]['val_auc']:.4f}  test AUC "
                f"{table[m]['auc']:.4f} +- {table[m]['auc_err']:.4f}  max SIC "
                f"{table[m]['max_sic']:.2f}")
            if s_w:   # QCD test jets (0) vs W jets (1), same definitions as for top
                qcd_test = rep["label"][test_rows] == 0
                y_w = np.concatenate([np.zeros(qcd_test.sum(), int), np.ones(len(w_rows), int)])
                w_table[m] = figures_of_merit(y_w, np.concatenate([s_test[qcd_test], s_w[0]]),
                                              v["bootstrap"])
                log(f"[{task}] {m}: W vs QCD test AUC {w_table[m]['auc']:.4f} +- "
                    f"{w_table[m]['auc_err']:.4f}  max SIC {w_table[m]['max_sic']:.2f}")
        entry = {"methods": table, "train_seconds": timings,
                 "anomaly": "top" if anomaly == 1 else "qcd"}
        if with_w:
            entry["w_anomaly"] = {"n_qcd": int((rep["label"][test_rows] == 0).sum()),
                                  "n_w": len(w_rows), "methods": w_table}
        if task == "qcd_trained":
            qcd = rep["label"][test_rows] == 0
            entry["mass_sculpting"] = {m: sc.mass_sculpting(rep["mass"][test_rows][qcd],
                                                            s[1][qcd], (0.1, 0.02))
                                       for m, s in all_scores.items()}
            if "jetclr" in extras and "probe_reps" in extras["jetclr"]:
                entry["jetclr_linear_probe"] = probe_results(
                    extras["jetclr"], rep["label"][probe_rows], rep["label"][test_rows],
                    v["probe_labels"], rep["obs"][probe_rows], rep["obs"][test_rows], v)
            plots = {"scores": all_scores, "extras": extras, "labels": rep["label"][test_rows],
                     "mass": rep["mass"][test_rows],
                     "w_mass": rep["mass"][w_rows] if with_w else None}
        results["tasks"][task] = entry
    results["seconds"] = round(time.time() - t_start, 1)
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table_markdown(results))
    if not args.no_plots and plots:
        make_plots(plots, workdir)
    log(f"wrote {workdir / 'results.json'}")
    return 0


def probe_results(extra, probe_labels, test_labels, sizes, probe_obs, test_obs, v) -> dict:
    """Linear classifier (logistic regression) with n labelled jets on the frozen JetCLR
    representation, beside the same linear classifier on the 9 log observables."""
    out = {}
    for n in sizes:
        y = probe_labels[:n]
        if len(np.unique(y)) < 2:
            continue
        s_rep = jetclr.linear_probe(extra["probe_reps"][:n], y, extra["reps"][1])
        s_obs = jetclr.linear_probe(probe_obs[:n], y, test_obs)
        out[str(n)] = {"jetclr_auc": sc.auc(test_labels, s_rep),
                       "observables_auc": sc.auc(test_labels, s_obs)}
    return out


def table_markdown(results) -> str:
    lines = []
    for task, entry in results["tasks"].items():
        lines += [f"\n{task} (anomaly: {entry['anomaly']})",
                  "| method | val AUC | test AUC | max SIC (eps_S, eps_B) | QCD JS div. at 10% |",
                  "|---|---|---|---|---|"]
        for m, r in entry["methods"].items():
            js = entry.get("mass_sculpting", {}).get(m, [{}])[0].get("js", float("nan"))
            lines.append(f"| {m} | {r['val_auc']:.3f} | {r['auc']:.3f} ± {r['auc_err']:.3f} | "
                         f"{r['max_sic']:.2f} ± {r['max_sic_err']:.2f} ({r['sic_eps_s']:.2f}, "
                         f"{r['sic_eps_b']:.3f}) | {js:.3f} |")
        if "w_anomaly" in entry:
            w = entry["w_anomaly"]
            lines += [f"\n{task} (anomaly: W jets; {w['n_w']} W vs {w['n_qcd']} QCD test jets)",
                      "| method | test AUC | max SIC (eps_S, eps_B) |", "|---|---|---|"]
            for m, r in w["methods"].items():
                lines.append(f"| {m} | {r['auc']:.3f} ± {r['auc_err']:.3f} | "
                             f"{r['max_sic']:.2f} ± {r['max_sic_err']:.2f} "
                             f"({r['sic_eps_s']:.2f}, {r['sic_eps_b']:.3f}) |")
    return "\n".join(lines)


def make_plots(p, workdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def roc_sic(y, scores, signal, filename):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
        floor = max(1e-3, 10 / max((y == 0).sum(), 1))
        for m, s in scores.items():
            tpr, fpr, sic = sc.sic_curve(y, s)
            ok = fpr > 0
            ax1.plot(tpr[ok], 1 / fpr[ok], label=f"{m} ({sc.auc(y, s):.3f})")
            ok2 = fpr >= floor
            ax2.plot(tpr[ok2], sic[ok2], label=m)
        ax1.set(yscale="log", xlabel=f"eps_S ({signal})", ylabel="1 / eps_B (QCD)",
                title=f"trained on QCD only, {signal} anomalous: ROC (AUC)")
        ax2.set(xlabel=f"eps_S ({signal})", ylabel="eps_S / sqrt(eps_B)",
                title=f"SIC (eps_B >= {floor:.3g})")
        ax1.legend(fontsize=7)
        ax2.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(workdir / filename, dpi=110)
        plt.close(fig)

    y = p["labels"]
    scores = {m: s[1] for m, s in p["scores"].items()}
    roc_sic(y, scores, "top", "roc_sic.png")
    if p.get("w_mass") is not None:
        qcd = y == 0
        n_w = len(p["w_mass"])
        roc_sic(np.concatenate([np.zeros(qcd.sum(), int), np.ones(n_w, int)]),
                {m: np.concatenate([s[1][qcd], s[2]]) for m, s in p["scores"].items()},
                "W", "roc_sic_w.png")

    lat = p["extras"].get("ae_obs", {}).get("latents")
    if lat:
        z = lat[1]
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for lab, name, col in ((0, "QCD", "tab:blue"), (1, "top", "tab:red")):
            sel = y == lab
            ax.scatter(z[sel, 0][:3000], z[sel, 1][:3000], s=2, alpha=0.4, c=col, label=name)
        ax.set(xlabel="z1", ylabel="z2", title="ae_obs 2-D latent space (trained on QCD)")
        ax.legend(markerscale=5)
        fig.tight_layout()
        fig.savefig(workdir / "latent.png", dpi=110)
        plt.close(fig)

    mass = p["mass"]
    qcd = y == 0
    fig, ax = plt.subplots(figsize=(6.5, 5))
    bins = np.linspace(0, 300, 31)
    ax.hist(mass[qcd], bins, density=True, histtype="step", color="k", lw=2, label="QCD, no cut")
    for m in [m for m in ("mass_density", "ae_obs", "ae_img", "cae_img", "setae", "jetclr")
              if m in scores]:
        s = scores[m][qcd]
        sel = s >= np.quantile(s, 0.9)
        ax.hist(mass[qcd][sel], bins, density=True, histtype="step", label=f"{m}, top 10%")
    ax.set(xlabel="jet mass [GeV]", ylabel="density", title="QCD mass after the score cut")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(workdir / "sculpting.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
