"""Flavour tagging, quark/gluon and jet-energy regression on real CMS jets (the DeepJet ntuple).

    python -m experiments.cms_jets.run [--variant cpu|smoke] [--workdir runs/cms_jets]
        [--data PATH] [--seed 0]

Reads ``../shared/data/cms_deepjet_ttbar_ntuple/ntuple_ttbar.root`` (7,199 CMS full-simulation
ttbar jets with pile-up) with ``hepjax.data.deepjet_ntuple`` (charged candidates, neutral
candidates, secondary vertices, globals; ``order="physics"``), splits the jets by event
(seeded, 60/20/20 of the events), standardises the inputs with the training split's statistics,
and trains

* DeepJet with its four inputs (``hepjax.models.deepjet.DeepJetFull``), 4 classes b, c, uds, g,
  softmax cross-entropy, Adam, early stopping on the validation loss;
* the same network as a jet-energy regression of log(gen_pt / jet_pt), once with the log-ratio
  loss and once with a Gaussian negative log-likelihood that also predicts the per-jet
  resolution.

On the test split it reports the ROC and AUC of b vs udsg, c vs udsg and uds vs g (with CMS's
``jet_qgl`` on the same uds/g jets; AUC uncertainties from a paired bootstrap over the test
jets, and Hanley-McNeil), confusion matrices normalised by truth and by prediction, and the
response (median of pT / gen_pT) and resolution (half the 16-84 % interval of pT / gen_pT) in
bins of gen_pT before and after the correction. Writes ``WORKDIR/results.json``, ``table.md``,
``roc.png``, ``confusion.png``, ``response.png``.

``--variant smoke``: 2,500 jets, small networks, 2-3 epochs, for CI; numbers meaningless.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import time

import numpy as np

DEFAULT_DATA = (pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
                / "cms_deepjet_ttbar_ntuple" / "ntuple_ttbar.root")
CLASSES = ("b", "c", "uds", "g")
PT_BINS = (0.0, 30.0, 40.0, 50.0, 65.0, 85.0, 1e4)   # gen pT, GeV

VARIANTS = {
    # the paper's DeepJet widths (Bols et al. 2020), shorter dense stack (3 x 100 instead of
    # 7 x 100: 4,300 training jets)
    "cpu": dict(model=dict(cpf_conv=(64, 32, 32, 8), npf_conv=(32, 16, 4),
                           sv_conv=(64, 32, 32, 8), cpf_lstm=150, npf_lstm=50, sv_lstm=50,
                           dense_dims=(200, 100, 100, 100), dropout=0.1),
                epochs=30, patience=6, batch_size=128, learning_rate=1e-3, weight_decay=1e-4,
                reg_epochs=25, n_bootstrap=1000, max_jets=None, models=("deepjet", "part"),
                # ParT (Qu, Li, Qian 2022) scaled down for 4,300 jets on 2 CPU cores
                part=dict(embed_dims=(64, 64), pair_embed_dims=(32, 32), num_heads=4,
                          num_layers=3, num_cls_layers=1, ffn_ratio=2, dropout=0.1,
                          attn_dropout=0.1, activation_dropout=0.1), part_epochs=12),
    "smoke": dict(model=dict(cpf_conv=(16, 8), npf_conv=(8, 4), sv_conv=(8, 4), cpf_lstm=16,
                             npf_lstm=8, sv_lstm=8, dense_dims=(32,), dropout=0.0),
                  epochs=3, patience=3, batch_size=128, learning_rate=3e-3, weight_decay=0.0,
                  reg_epochs=2, n_bootstrap=50, max_jets=2500, models=("deepjet",),
                  fast_compile=True),
}


# ----------------------------------------------------------------------------- data
def split_by_event(event_no: np.ndarray, seed: int, fractions=(0.6, 0.2, 0.2)):
    """Jet indices of train/val/test: the distinct events permuted with ``seed`` and cut at
    the cumulative ``fractions``, so all jets of one event land in the same split."""
    events = np.unique(event_no)
    perm = np.random.default_rng(seed).permutation(events)
    cuts = np.round(np.cumsum(fractions)[:-1] * len(events)).astype(int)
    parts = np.split(perm, cuts)
    return {name: np.flatnonzero(np.isin(event_no, part))
            for name, part in zip(("train", "val", "test"), parts)}


def load(path, seed: int, max_jets=None):
    from hepjax.data import deepjet_ntuple as dn

    raw = dn.read_deepjet_ntuple(path, order="physics")
    info = raw.pop("info")
    if max_jets:
        raw = {k: v[:max_jets] for k, v in raw.items()}
    raw.update(candidate_set(raw))
    idx = split_by_event(raw["event_no"], seed)
    splits = {k: {f: v[i] for f, v in raw.items()} for k, i in idx.items()}
    splits["train"], stats = dn.standardise(splits["train"])
    for k in ("val", "test"):
        splits[k], _ = dn.standardise(splits[k], stats)
    cstats = _standardise_cands(splits["train"])
    for k in ("val", "test"):
        _standardise_cands(splits[k], cstats)
    return splits, info


def candidate_set(raw):
    """Charged and neutral candidates as one set for ParT: four-momenta (E, px, py, pz) of
    massless particles at (pT, eta_rel, phi_rel) around the jet axis (the file has no absolute
    directions or energies), pT-ordered, and the features [charged 16 | neutral 6 | is_charged]
    with the other type's columns zero. ``cand_raw`` is standardised like the other inputs."""
    from hepjax.data import deepjet_ntuple as dn
    c, n = raw["cpf"], raw["npf"]
    ci = {k: i for i, k in enumerate(dn.CPF_FEATURES)}
    ni = {k: i for i, k in enumerate(dn.NPF_FEATURES)}
    pt = np.concatenate([np.where(raw["cpf_mask"], np.exp(c[..., ci["log_pt"]]), 0.0),
                         n[..., ni["pt_over_jet"]] * raw["jet_pt"][:, None]], 1)
    eta = np.concatenate([c[..., ci["etarel"]], n[..., ni["etarel"]]], 1)
    phi = np.concatenate([c[..., ci["phirel"]], n[..., ni["phirel"]]], 1)
    mask = np.concatenate([raw["cpf_mask"], raw["npf_mask"]], 1)
    b, nc, nn = len(c), c.shape[1], n.shape[1]
    feats = np.zeros((b, nc + nn, c.shape[-1] + n.shape[-1] + 1), np.float32)
    feats[:, :nc, :c.shape[-1]] = c
    feats[:, nc:, c.shape[-1]:-1] = n
    feats[:, :nc, -1] = 1.0
    vec = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    order = np.argsort(np.where(mask, -pt, np.inf), axis=1, kind="stable")

    def take(x):
        return np.take_along_axis(x, order[..., None] if x.ndim == 3 else order, 1)

    feats, vec, mask = take(feats), take(vec), take(mask)
    vec[~mask] = 0.0
    return {"cand_raw": feats, "cand_vec": vec.astype(np.float32), "cand_mask": mask}


def _standardise_cands(split, stats=None):
    x = split["cand_raw"].astype(np.float64)
    m = split["cand_mask"]
    if stats is None:
        real = x[m]
        std = real.std(0)
        stats = (real.mean(0), np.where(std > 1e-8, std, 1.0))
    out = (x - stats[0]) / stats[1]
    out[~m] = 0.0
    split["cand"] = out.astype(np.float32)
    return stats


INPUTS = ("cpf", "npf", "sv", "globals", "cpf_mask", "npf_mask", "sv_mask", "cand",
          "cand_mask", "cand_vec")


def _batch(split, idx):
    return {k: split[k][idx] for k in INPUTS if k in split}


# ----------------------------------------------------------------------------- training
def _model(kind, split, num_outputs, mcfg, seed):
    import ml_collections
    from flax import nnx

    from hepjax.models import deepjet, part

    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    if kind == "part":
        return part.build(ml_collections.ConfigDict(mcfg), split["cand"].shape[1:], num_outputs,
                          rngs)
    dims = tuple(split[k].shape[-1] for k in ("cpf", "npf", "sv", "globals"))
    return deepjet.build_full(ml_collections.ConfigDict(mcfg), dims, num_outputs, rngs)


def _apply(model, b):
    from hepjax.models import deepjet
    if isinstance(model, deepjet.DeepJetFull):
        return model(b["cpf"], b["npf"], b["sv"], b["globals"], b["cpf_mask"], b["npf_mask"],
                     b["sv_mask"])
    return model(b["cand"], b["cand_mask"], b["cand_vec"])


def classification_loss(outputs, target):
    import optax
    return optax.softmax_cross_entropy_with_integer_labels(outputs, target).mean()


def log_ratio_loss(outputs, target):
    """outputs (B, 1): log correction; target (B, 2): (jet_pt, gen_pt)."""
    from hepjax import losses
    return losses.log_ratio_loss(outputs[:, 0], target[:, 0], target[:, 1])


def gaussian_nll_loss(outputs, target):
    """outputs (B, 2): mean and log-variance of log(gen_pt / jet_pt); target (B, 2)."""
    import jax.numpy as jnp

    from hepjax import losses
    t = jnp.log(target[:, 1]) - jnp.log(target[:, 0])
    return losses.gaussian_nll(outputs[:, 0], outputs[:, 1], t, include_constant=True)


def train(splits, targets, num_outputs, loss_fn, cfg, seed, epochs, log=print, name="model",
          kind="deepjet", out_bias=None):
    """Adam(W) on mini-batches of the training split (the last partial batch dropped, the
    order reshuffled each epoch with ``seed``), the validation loss after each epoch, early
    stopping with ``patience``; ``out_bias``: the output layer starts with this bias and a
    kernel scaled by 0.01 (a regression starting from "no correction"); returns the model
    with the best validation loss restored and
    the history."""
    import jax
    import optax
    from flax import nnx

    tr, va = splits["train"], splits["val"]
    model = _model(kind, tr, num_outputs, cfg["part"] if kind == "part" else cfg["model"], seed)
    if out_bias is not None:   # regression: start near a chosen output (no correction)
        model.out.kernel[...] = 0.01 * model.out.kernel[...]
        model.out.bias[...] = np.asarray(out_bias, np.float32)
    tx = optax.adamw(cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    if cfg.get("fast_compile"):
        run_step = _fast_step(model, tx, loss_fn)
    else:
        opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

        @nnx.jit
        def step(model, opt, batch, target):
            def lf(m):
                return loss_fn(_apply(m, batch), target)
            loss, grads = nnx.value_and_grad(lf)(model)
            opt.update(model, grads)
            return loss

        def run_step(batch, target):
            return step(model, opt, batch, target)

    rng = np.random.default_rng(seed + 100)
    n, bs = len(tr["label"]), min(cfg["batch_size"], len(tr["label"]))
    best, best_state, history, bad = np.inf, None, [], 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = rng.permutation(n)
        losses = [float(run_step(_batch(tr, perm[i:i + bs]), targets["train"][perm[i:i + bs]]))
                  for i in range(0, n - bs + 1, bs)]
        model.eval()
        val = float(loss_fn(predict(model, va), targets["val"]))
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val})
        log(f"[{name}] epoch {epoch + 1:3d}  train {np.mean(losses):.4f}  val {val:.4f}  "
            f"({time.perf_counter() - t0:.0f} s)")
        if val < best:
            best, bad = val, 0
            best_state = jax.tree.map(np.array,
                                      nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat)))
        else:
            bad += 1
            if bad >= cfg["patience"]:
                break
    nnx.update(model, best_state)
    model.eval()
    return model, history


# XLA options that halve the compile time of the small smoke networks (their training takes
# far less time than compiling it); the cpu variant compiles with the defaults
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _fast_step(model, tx, loss_fn):
    """A functional training step (jax.jit with FAST_COMPILE) for dropout-free models; it
    writes the new parameters back into ``model`` after each step."""
    import jax
    import optax
    from flax import nnx

    if any(isinstance(m, nnx.Dropout) for _, m in model.iter_modules()):
        raise ValueError("fast_compile needs a model without dropout (dropout=0.0)")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    state = {"params": params, "opt": tx.init(params)}

    def update(params, opt_state, batch, target):
        def lf(p):
            return loss_fn(_apply(nnx.merge(graphdef, p, rest), batch), target)
        loss, grads = jax.value_and_grad(lf)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    update = jax.jit(update, compiler_options=FAST_COMPILE)

    def run_step(batch, target):
        state["params"], state["opt"], loss = update(state["params"], state["opt"], batch, target)
        nnx.update(model, state["params"])
        return loss
    return run_step


def predict(model, split, batch_size=512):
    """Outputs on a whole split, in chunks of ``batch_size`` (the last padded by repeating
    jets and cut back), so one compiled shape serves every split."""
    from flax import nnx
    fn = _PREDICT.setdefault("fn", nnx.jit(_apply))
    n = len(split["label"])
    out = []
    for i in range(0, n, batch_size):
        idx = np.arange(i, i + batch_size) % n if n >= batch_size else np.arange(batch_size) % n
        out.append(np.asarray(fn(model, _batch(split, idx)))[:min(batch_size, n - i)])
    return np.concatenate(out)


_PREDICT: dict = {}


# ----------------------------------------------------------------------------- metrics
def auc(labels, scores) -> float:
    from hepjax.metrics import roc_auc
    return roc_auc(labels, scores)


def hanley_mcneil(a: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC (Hanley & McNeil, "The meaning and use of the area under a
    receiver operating characteristic (ROC) curve", Radiology 143 (1982) 29)."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return float(np.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a))
                         / (n_pos * n_neg)))


def paired_bootstrap_auc(labels, scores: dict, n: int, seed: int, reference=None) -> dict:
    """AUC of each score on the same jets, with the std over ``n`` bootstrap resamples of the
    jets (the same resamples for every score, so differences are paired) and Hanley-McNeil's
    standard error; with ``reference``, each other score's AUC minus the reference's, its
    bootstrap std and the fraction of resamples where it is positive (``difference``)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    vals = {k: [] for k in scores}
    for _ in range(n):
        i = rng.integers(0, len(labels), len(labels))
        if labels[i].min() == labels[i].max():
            continue
        for k, s in scores.items():
            vals[k].append(auc(labels[i], s[i]))
    out = {}
    for k, s in scores.items():
        a = auc(labels, s)
        out[k] = {"auc": a, "bootstrap_std": float(np.std(vals[k], ddof=1)),
                  "hanley_mcneil": hanley_mcneil(a, int(labels.sum()), int((1 - labels).sum()))}
    if reference is not None:
        out["difference"] = {}
        for k in scores:
            if k == reference:
                continue
            d = np.array(vals[k]) - np.array(vals[reference])
            out["difference"][k] = {"value": out[k]["auc"] - out[reference]["auc"],
                                    "bootstrap_std": float(np.std(d, ddof=1)),
                                    "fraction_positive": float(np.mean(d > 0))}
    return out


def discriminants(probs):
    pb, pc, pu, pg = probs.T
    return {"b_vs_udsg": pb / (pb + pu + pg), "c_vs_udsg": pc / (pc + pu + pg),
            "uds_vs_g": pu / (pu + pg)}


def response_resolution(ratio, gen_pt, bins=PT_BINS):
    """Per gen-pT bin and overall: median of ratio (response), half the 16-84 % interval
    (resolution) and that divided by the median (relative resolution)."""
    def stats(r):
        q16, q50, q84 = np.quantile(r, [0.16, 0.5, 0.84])
        return {"n": int(len(r)), "response": float(q50), "resolution": float((q84 - q16) / 2),
                "rel_resolution": float((q84 - q16) / 2 / q50)}
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (gen_pt >= lo) & (gen_pt < hi)
        if sel.sum() >= 10:
            rows.append({"lo": lo, "hi": hi, **stats(ratio[sel])})
    return {"overall": stats(ratio), "bins": rows}


def bootstrap_resolution(ratios: dict, n: int, seed: int) -> dict:
    """Bootstrap std of each resolution, and of each one minus the uncorrected one (paired:
    the same resampled jets)."""
    rng = np.random.default_rng(seed)
    m = len(next(iter(ratios.values())))
    out = {k: [] for k in ratios}
    for _ in range(n):
        i = rng.integers(0, m, m)
        for k, r in ratios.items():
            q16, q84 = np.quantile(r[i], [0.16, 0.84])
            out[k].append((q84 - q16) / 2)
    res = {k: float(np.std(v, ddof=1)) for k, v in out.items()}
    res["difference_to_uncorrected"] = {
        k: float(np.std(np.array(v) - np.array(out["uncorrected"]), ddof=1))
        for k, v in out.items() if k != "uncorrected"}
    return res


# ----------------------------------------------------------------------------- main
def run(variant="cpu", workdir="runs/cms_jets", data=None, seed=0, log=print) -> dict:
    import jax

    from hepjax.metrics import confusion_matrix, roc_curve

    cfg = VARIANTS[variant]
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    splits, info = load(data or DEFAULT_DATA, seed, cfg["max_jets"])
    sizes = {k: int(len(v["label"])) for k, v in splits.items()}
    log(f"jets: {sizes}; unlabelled (excluded): {info['n_unlabelled']}; jet_qgl missing: "
        f"{info['n_qgl_missing']}")

    # --- flavour: DeepJet (and ParT) on the same jets; the confusion matrices are DeepJet's
    targets = {k: v["label"] for k, v in splits.items()}
    te = splits["test"]
    label = te["label"]
    results = {"variant": variant, "seed": seed, "split_sizes": sizes, "reader": {
        k: v for k, v in info.items() if k not in ("unlabelled_rows",)},
        "test_class_counts": np.bincount(label, minlength=4).tolist(),
        "models": list(cfg["models"]),
        "accuracy": {}, "history_flavour": {}}
    disc = {}
    for kind in cfg["models"]:
        model, hist = train(splits, targets, 4, classification_loss, cfg, seed,
                            cfg["part_epochs"] if kind == "part" else cfg["epochs"], log,
                            f"flavour {kind}", kind)
        probs = np.asarray(jax.nn.softmax(predict(model, te), -1))
        disc[kind] = discriminants(probs)
        results["history_flavour"][kind] = hist
        results["accuracy"][kind] = float((probs.argmax(1) == label).mean())
        if kind == "deepjet":
            results["confusion_true"] = confusion_matrix(label, probs, 4, normalize="true").tolist()
            results["confusion_pred"] = confusion_matrix(label, probs, 4, normalize="pred").tolist()
    rocs = {}
    for name, sig, bkg in (("b_vs_udsg", [0], [2, 3]), ("c_vs_udsg", [1], [2, 3])):
        sel = np.isin(label, sig + bkg)
        y = np.isin(label[sel], sig).astype(int)
        scores = {k: d[name][sel] for k, d in disc.items()}
        results[name] = paired_bootstrap_auc(y, scores, cfg["n_bootstrap"], seed)
        rocs[name] = {k: roc_curve(y, v) for k, v in scores.items()}
    # uds vs g: ours and jet_qgl on the same jets (those where jet_qgl was computed)
    sel_all = np.isin(label, [2, 3])
    sel = sel_all & te["qgl_valid"]
    y = (label[sel] == 2).astype(int)
    scores = {**{k: d["uds_vs_g"][sel] for k, d in disc.items()}, "jet_qgl": te["jet_qgl"][sel]}
    u = results["uds_vs_g"] = paired_bootstrap_auc(y, scores, cfg["n_bootstrap"], seed,
                                                   reference="jet_qgl")
    u["n_jets"] = int(sel.sum())
    u["n_excluded_qgl_missing"] = int((sel_all & ~te["qgl_valid"]).sum())
    u["on_all_uds_g_jets"] = {k: auc((label[sel_all] == 2).astype(int), d["uds_vs_g"][sel_all])
                              for k, d in disc.items()}
    rocs["uds_vs_g"] = {k: roc_curve(y, v) for k, v in scores.items()}

    # --- regression: log(gen_pt / jet_pt)
    reg_splits = {k: {f: v[f][v["gen_valid"]] for f in v} for k, v in splits.items()}
    rt = {k: np.stack([v["jet_pt"], v["gen_pt"]], 1).astype(np.float32)
          for k, v in reg_splits.items()}
    ter = reg_splits["test"]
    ratios = {"uncorrected": ter["jet_pt"] / ter["gen_pt"]}
    reg_hist = {}
    log_t = np.log(reg_splits["train"]["gen_pt"] / reg_splits["train"]["jet_pt"])
    for name, bias, lf in (("log_ratio", [0.0], log_ratio_loss),
                           ("gaussian_nll", [0.0, np.log(np.var(log_t))], gaussian_nll_loss)):
        m, h = train(reg_splits, rt, len(bias), lf, cfg, seed, cfg["reg_epochs"], log, name,
                     out_bias=bias)
        reg_hist[name] = h
        out = predict(m, ter)
        ratios[name] = ter["jet_pt"] * np.exp(out[:, 0]) / ter["gen_pt"]
        if name == "gaussian_nll":
            sigma = np.exp(0.5 * out[:, 1])
            pull = (np.log(ter["gen_pt"] / ter["jet_pt"]) - out[:, 0]) / sigma
            results["gaussian_nll_sigma"] = {
                "median_predicted_sigma": float(np.median(sigma)),
                "fraction_within_1sigma": float(np.mean(np.abs(pull) < 1)),
                "pull_half_width_16_84": float(np.diff(np.quantile(pull, [0.16, 0.84]))[0] / 2)}
            # the predicted resolution sorts jets by their actual resolution: the quarter with
            # the smallest predicted sigma against the quarter with the largest
            q = np.quantile(sigma, [0.25, 0.75])
            for tag, s in (("lowest_sigma_quarter", sigma <= q[0]),
                           ("highest_sigma_quarter", sigma >= q[1])):
                r = ratios[name][s]
                lo, hi = np.quantile(r, [0.16, 0.84])
                results["gaussian_nll_sigma"][tag] = {"resolution": float((hi - lo) / 2),
                                                      "median_sigma": float(np.median(sigma[s]))}
    results["regression"] = {k: response_resolution(r, ter["gen_pt"]) for k, r in ratios.items()}
    results["regression_bootstrap_std"] = bootstrap_resolution(ratios, cfg["n_bootstrap"], seed)
    results["regression_test_jets"] = int(len(ter["gen_pt"]))
    results["history_regression"] = reg_hist

    # --- bars
    u = results["uds_vs_g"]
    best_reg = {k: results["regression"][k]["overall"] for k in ("log_ratio", "gaussian_nll")}
    unc = results["regression"]["uncorrected"]["overall"]
    diff = results["regression_bootstrap_std"]["difference_to_uncorrected"]
    results["bars"] = {
        **{f"uds_vs_g_{k}_beats_jet_qgl": bool(u[k]["auc"] > u["jet_qgl"]["auc"])
           for k in cfg["models"]},
        **{f"uds_vs_g_{k}_minus_jet_qgl_in_sigma": float(
            u["difference"][k]["value"] / max(u["difference"][k]["bootstrap_std"], 1e-12))
           for k in cfg["models"]},
        **{f"{k}_improves_resolution": bool(v["resolution"] < unc["resolution"])
           for k, v in best_reg.items()},
        **{f"{k}_resolution_change_in_sigma": float(
            (v["resolution"] - unc["resolution"]) / max(diff[k], 1e-12))
           for k, v in best_reg.items()},
        **{f"{k}_improves_relative_resolution": bool(v["rel_resolution"] < unc["rel_resolution"])
           for k, v in best_reg.items()},
        **{f"{k}_response_within_1pct": bool(abs(v["response"] - 1) < 0.01)
           for k, v in best_reg.items()}}
    results["wall_s"] = time.perf_counter() - t_start
    results["environment"] = _environment()
    (workdir / "results.json").write_text(json.dumps(results, indent=1))
    (workdir / "table.md").write_text(table(results))
    _plots(results, rocs, ratios, ter["gen_pt"], workdir)
    log(table(results))
    return results


def _environment():
    import flax
    import jax
    import optax
    import uproot
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "uproot": uproot.__version__,
            "devices": [str(d) for d in jax.devices()][:1], "machine": platform.processor()
            or platform.machine()}


def table(r) -> str:
    def a(d):
        return f"{d['auc']:.3f} ± {d['bootstrap_std']:.3f} (HM ± {d['hanley_mcneil']:.3f})"
    u, models = r["uds_vs_g"], r["models"]
    counts = r["test_class_counts"]
    acc = ", ".join(f"{k} {v:.3f}" for k, v in r["accuracy"].items())
    lines = [f"Test split: {r['split_sizes']['test']} jets (b, c, uds, g = "
             f"{', '.join(map(str, counts))}); 4-class accuracy: {acc}", "",
             "| discriminant | jets | " + " | ".join(f"{m} AUC" for m in models)
             + " | jet_qgl AUC |", "|---|---|" + "---|" * (len(models) + 1)]
    for name, cls in (("b_vs_udsg", (0, 2, 3)), ("c_vs_udsg", (1, 2, 3))):
        lines.append(f"| {name.replace('_', ' ')} | {sum(counts[i] for i in cls)} | "
                     + " | ".join(a(r[name][m]) for m in models) + " | — |")
    lines.append(f"| uds vs g (jet_qgl computed) | {u['n_jets']} | "
                 + " | ".join(a(u[m]) for m in models) + f" | {a(u['jet_qgl'])} |")
    lines.append("")
    for m in models:
        d = u["difference"][m]
        lines.append(f"uds vs g, {m} − jet_qgl (paired bootstrap, same jets): "
                     f"{d['value']:+.3f} ± "
                     f"{d['bootstrap_std']:.3f} (positive in {d['fraction_positive']:.1%} of "
                     f"resamples); {m} on all {u['n_jets'] + u['n_excluded_qgl_missing']} uds/g "
                     f"test jets: {u['on_all_uds_g_jets'][m]:.3f}")
    lines += ["", f"Regression ({r['regression_test_jets']} test jets): response = "
              "median(pT/gen_pT), resolution = half the 16-84 % interval of pT/gen_pT "
              "(± bootstrap std; change: paired bootstrap)", "",
              "| | response | resolution | change vs uncorrected | resolution / response |",
              "|---|---|---|---|---|"]
    bs = r["regression_bootstrap_std"]
    unc = r["regression"]["uncorrected"]["overall"]["resolution"]
    for k in ("uncorrected", "log_ratio", "gaussian_nll"):
        o = r["regression"][k]["overall"]
        change = "—" if k == "uncorrected" else \
            f"{o['resolution'] - unc:+.4f} ± {bs['difference_to_uncorrected'][k]:.4f}"
        lines.append(f"| {k} | {o['response']:.3f} | {o['resolution']:.4f} ± {bs[k]:.4f} | "
                     f"{change} | {o['rel_resolution']:.4f} |")
    lines += ["", "| gen pT bin (GeV) | jets | uncorrected resp. / res. | log-ratio resp. / res. | "
              "Gaussian-NLL resp. / res. |", "|---|---|---|---|---|"]
    for i, b in enumerate(r["regression"]["uncorrected"]["bins"]):
        cells = [f"{r['regression'][k]['bins'][i]['response']:.3f} / "
                 f"{r['regression'][k]['bins'][i]['resolution']:.3f}"
                 for k in ("uncorrected", "log_ratio", "gaussian_nll")]
        hi = "∞" if b["hi"] > 1e3 else f"{b['hi']:.0f}"
        lines.append(f"| {b['lo']:.0f}-{hi} | {b['n']} | " + " | ".join(cells) + " |")
    g = r.get("gaussian_nll_sigma")
    if g:
        lines += ["", f"Gaussian-NLL per-jet resolution: median predicted sigma "
                  f"{g['median_predicted_sigma']:.3f}; |pull| < 1 for "
                  f"{g['fraction_within_1sigma']:.1%}"
                  f" of test jets (68 % if calibrated); measured resolution "
                  f"{g['lowest_sigma_quarter']['resolution']:.3f} in the quarter with the smallest "
                  f"predicted sigma ({g['lowest_sigma_quarter']['median_sigma']:.3f}), "
                  f"{g['highest_sigma_quarter']['resolution']:.3f} in the quarter with the largest "
                  f"({g['highest_sigma_quarter']['median_sigma']:.3f})"]
    lines += ["", "Bars: " + ", ".join(f"{k}: {v}" if not isinstance(v, float) else f"{k}: {v:.2f}"
                                       for k, v in r["bars"].items())]
    return "\n".join(lines) + "\n"


def _plots(r, rocs, ratios, gen_pt, workdir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, name in zip(axes, ("b_vs_udsg", "c_vs_udsg", "uds_vs_g")):
        for tag, (fpr, tpr, _) in rocs[name].items():
            d = r[name][tag]
            ax.plot(tpr, np.maximum(fpr, 1e-4), label=f"{tag}: AUC {d['auc']:.3f} ± "
                                                      f"{d['bootstrap_std']:.3f}")
        ax.set_yscale("log")
        ax.set_xlabel("signal efficiency")
        ax.set_ylabel("background efficiency")
        ax.set_title(name.replace("_", " "))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(workdir / "roc.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
    for ax, key, title in zip(axes, ("confusion_true", "confusion_pred"),
                              ("normalised by truth (rows)", "normalised by prediction (columns)")):
        m = np.array(r[key])
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        for i in range(4):
            for j in range(4):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center",
                        color="white" if m[i, j] > 0.5 else "black")
        ax.set_xticks(range(4), CLASSES)
        ax.set_yticks(range(4), CLASSES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(workdir / "confusion.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for k in ratios:
        bins = r["regression"][k]["bins"]
        x = [0.5 * (b["lo"] + min(b["hi"], 120.0)) for b in bins]
        axes[0].plot(x, [b["response"] for b in bins], "o-", label=k)
        axes[1].plot(x, [b["resolution"] for b in bins], "o-", label=k)
    axes[0].axhline(1.0, color="grey", lw=0.8)
    for ax, lab in zip(axes, ("response: median pT / gen pT",
                              "resolution: half 16-84 % of pT / gen pT")):
        ax.set_xlabel("gen pT (GeV, bin centre)")
        ax.set_ylabel(lab)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(workdir / "response.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="cpu")
    parser.add_argument("--workdir", default="runs/cms_jets")
    parser.add_argument("--data", default=None, help=f"the ntuple (default {DEFAULT_DATA})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run(args.variant, args.workdir, args.data, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
