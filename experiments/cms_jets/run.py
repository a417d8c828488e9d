"""Flavour tagging, quark/gluon and jet-energy regression on real CMS jets (the DeepJet ntuple).

    python -m experiments.cms_jets.run [--variant cpu|smoke] [--workdir runs/cms_jets]
        [--data PATH] [--seed 0] [--models deepjet,part,particlenet] [--no-regression]
    python -m experiments.cms_jets.run --cv 5 [--variant cpu] [--workdir ...] [--cv-available]

Reads ``../shared/data/cms_deepjet_ttbar_ntuple/ntuple_ttbar.root`` (7,199 CMS full-simulation
ttbar jets with pile-up) with ``hepjax.data.deepjet_ntuple`` (charged candidates, neutral
candidates, secondary vertices, globals; ``order="physics"``), splits the jets by event
(seeded, 60/20/20 of the events), standardises the inputs with the training split's statistics,
and trains

* DeepJet with its four inputs (``hepjax.models.deepjet.DeepJetFull``), 4 classes b, c, uds, g,
  softmax cross-entropy, Adam, early stopping on the validation loss;
* ParT (Qu, Li, Qian 2022) and ParticleNet (H. Qu, L. Gouskos, "ParticleNet: jet tagging via
  particle clouds", Phys. Rev. D 101 (2020) 056019) on the same charged + neutral candidates
  as one set (ParticleNet's first kNN on (eta_rel, phi_rel)), same classes and recipe;
* the same network as a jet-energy regression of log(gen_pt / jet_pt), once with the log-ratio
  loss and once with a Gaussian negative log-likelihood that also predicts the per-jet
  resolution.

On the test split it reports the ROC and AUC of b vs udsg, c vs udsg and uds vs g (with CMS's
``jet_qgl`` on the same uds/g jets; AUC uncertainties from a paired bootstrap over the test
jets, and Hanley-McNeil), confusion matrices normalised by truth and by prediction, and the
response (median of pT / gen_pT) and resolution (half the 16-84 % interval of pT / gen_pT) in
bins of gen_pT before and after the correction. Writes ``WORKDIR/results.json``, ``table.md``,
``roc.png``, ``confusion.png``, ``response.png``.

``--cv K``: instead, K-fold cross-validation by event (``cross_validate``): every jet gets one
out-of-fold prediction from each network, uds vs g (and b, c vs udsg) on all of them against
``jet_qgl``, with the ensemble of the three networks (mean probability, fixed in the config).

``--variant smoke``: 2,500 jets, small networks, 2-3 epochs, for CI; numbers meaningless.
"""
from __future__ import annotations

import argparse
import json
import pathlib
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
                reg_epochs=25, n_bootstrap=1000, max_jets=None,
                models=("deepjet", "part", "particlenet"),
                # ParT (Qu, Li, Qian 2022) scaled down for 4,300 jets on 2 CPU cores
                part=dict(embed_dims=(64, 64), pair_embed_dims=(32, 32), num_heads=4,
                          num_layers=3, num_cls_layers=1, ffn_ratio=2, dropout=0.1,
                          attn_dropout=0.1, activation_dropout=0.1), part_epochs=12,
                # ParticleNet (Qu, Gouskos 2020) scaled down: two EdgeConv blocks (32-32,
                # 64-64), k = 8, the first kNN on (eta_rel, phi_rel) (the paper's three
                # blocks at k = 16 cost ~160 s per epoch on this shared CPU)
                particlenet=dict(conv_params=((8, (32, 32)), (8, (64, 64))),
                                 fc_params=((128, 0.1),)),
                particlenet_epochs=15,
                # the globals-only MLP of the cross-validation (not in the ensemble)
                globals=dict(hidden=(64, 64), dropout=0.1), globals_epochs=60,
                # cross-validation: the ensemble averages these networks' probabilities (fixed
                # before any cross-validated number was seen)
                cv_models=("globals", "deepjet", "particlenet", "part"),
                ensemble=("deepjet", "part", "particlenet"),
                # the cross-validation's 20 trainings must fit a shared 2-core CPU (load ~10
                # from other jobs): DeepJet at experiments/cms_finetune's widths (which reached
                # uds-vs-g AUC 0.751 +- 0.005 on the seeded split, as good as the wide one),
                # ParT at half the width and 2 blocks, ParticleNet as above; epoch caps with
                # early stopping on each fold's validation group (patience 3)
                cv_nets=dict(model=dict(cpf_conv=(32, 16, 16, 8), npf_conv=(16, 8, 4),
                                        sv_conv=(16, 16, 8), cpf_lstm=64, npf_lstm=16,
                                        sv_lstm=16, dense_dims=(100, 100, 100), dropout=0.1),
                             part=dict(embed_dims=(32, 32), pair_embed_dims=(16, 16),
                                       num_heads=4, num_layers=2, num_cls_layers=1,
                                       ffn_ratio=2, dropout=0.1, attn_dropout=0.1,
                                       activation_dropout=0.1)),
                cv_epochs=dict(deepjet=12, part=8, particlenet=10, globals=60),
                cv_patience=3),
    "smoke": dict(model=dict(cpf_conv=(16, 8), npf_conv=(8, 4), sv_conv=(8, 4), cpf_lstm=16,
                             npf_lstm=8, sv_lstm=8, dense_dims=(32,), dropout=0.0),
                  epochs=3, patience=3, batch_size=128, learning_rate=3e-3, weight_decay=0.0,
                  reg_epochs=2, n_bootstrap=50, max_jets=2500, models=("deepjet",),
                  fast_compile=True,
                  particlenet=dict(conv_params=((8, (16, 16)), (8, (16, 16))),
                                   fc_params=((16, 0.0),)), particlenet_epochs=2,
                  globals=dict(hidden=(16,), dropout=0.0), globals_epochs=3,
                  cv_models=("particlenet", "globals"), ensemble=("particlenet", "globals"),
                  cv_epochs=dict(particlenet=2, globals=3), cv_patience=3),
}


NET_SECTIONS = ("part", "particlenet", "globals")   # config sections of the other networks


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


def kfold_by_event(event_no: np.ndarray, k: int, seed: int):
    """K-fold cross-validation split by event: the distinct events permuted with ``seed`` and
    cut into ``k`` nearly equal groups; fold f tests on group f, validates (early stopping) on
    group (f + 1) mod k and trains on the other k - 2, so every jet is tested exactly once, by
    a model that never saw its event. Returns a list of ``{"train", "val", "test"}`` index
    dicts."""
    if k < 3:
        raise ValueError(f"kfold_by_event: k={k}; need k >= 3 (train, validation and test folds)")
    events = np.unique(event_no)
    groups = np.array_split(np.random.default_rng(seed).permutation(events), k)
    folds = []
    for f in range(k):
        val = (f + 1) % k
        train = np.concatenate([g for i, g in enumerate(groups) if i not in (f, val)])
        folds.append({name: np.flatnonzero(np.isin(event_no, ev))
                      for name, ev in (("train", train), ("val", groups[val]),
                                       ("test", groups[f]))})
    return folds


def read(path, max_jets=None):
    """The ntuple (``order="physics"``) with the candidate set added; returns (raw, info)."""
    from hepjax.data import deepjet_ntuple as dn

    raw = dn.read_deepjet_ntuple(path, order="physics")
    info = raw.pop("info")
    if max_jets:
        raw = {k: v[:max_jets] for k, v in raw.items()}
    raw.update(candidate_set(raw))
    return raw, info


def make_splits(raw, idx):
    """Splits ``idx`` (name -> jet indices) of ``raw``, standardised with the training split's
    statistics."""
    from hepjax.data import deepjet_ntuple as dn

    splits = {k: {f: v[i] for f, v in raw.items()} for k, i in idx.items()}
    splits["train"], stats = dn.standardise(splits["train"])
    for k in ("val", "test"):
        splits[k], _ = dn.standardise(splits[k], stats)
    cstats = _standardise_cands(splits["train"])
    for k in ("val", "test"):
        _standardise_cands(splits[k], cstats)
    return splits


def load(path, seed: int, max_jets=None):
    raw, info = read(path, max_jets)
    return make_splits(raw, split_by_event(raw["event_no"], seed)), info


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
    # ParticleNet: the same features plus the raw (eta_rel, phi_rel) as the last two columns,
    # the coordinates of its first EdgeConv's kNN (phi_rel is already wrapped around the jet)
    vec, ok = split["cand_vec"].astype(np.float64), m
    pt = np.hypot(vec[..., 1], vec[..., 2])
    eta = np.where(ok, np.arcsinh(vec[..., 3] / np.where(ok, pt, 1.0)), 0.0)
    phi = np.where(ok, np.arctan2(vec[..., 2], vec[..., 1]), 0.0)
    split["cand_pn"] = np.concatenate([out, eta[..., None], phi[..., None]], -1).astype(
        np.float32)
    return stats


INPUTS = ("cpf", "npf", "sv", "globals", "cpf_mask", "npf_mask", "sv_mask", "cand",
          "cand_mask", "cand_vec", "cand_pn")


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
    if kind == "particlenet":
        from hepjax.models import particlenet
        n_feat = split["cand_pn"].shape[-1]
        return particlenet.build(ml_collections.ConfigDict(
            {**mcfg, "coord_index": (n_feat - 2, n_feat - 1)}), split["cand_pn"].shape[1:],
            num_outputs, rngs)
    if kind == "globals":
        from hepjax.nn import MLP
        return _globals_mlp_class()(MLP(split["globals"].shape[-1], tuple(mcfg["hidden"]),
                                        num_outputs, dropout=mcfg["dropout"], rngs=rngs))
    dims = tuple(split[k].shape[-1] for k in ("cpf", "npf", "sv", "globals"))
    return deepjet.build_full(ml_collections.ConfigDict(mcfg), dims, num_outputs, rngs)


def _globals_mlp_class():
    """``GlobalsMLP(mlp)``: an MLP on the 12 jet globals only (QG_axis2, QG_mult, pT_D of the
    candidates, multiplicities, pT, eta, npv, ...), the quark/gluon information CMS's
    likelihood uses, without the candidates. Built on first use (flax is imported lazily)."""
    if "globals" not in _CLASSES:
        from flax import nnx

        class GlobalsMLP(nnx.Module):
            def __init__(self, mlp):
                self.mlp = mlp

            def __call__(self, g):
                return self.mlp(g)
        _CLASSES["globals"] = GlobalsMLP
    return _CLASSES["globals"]


_CLASSES: dict = {}


def _apply(model, b):
    from hepjax.models import deepjet, particlenet
    if isinstance(model, deepjet.DeepJetFull):
        return model(b["cpf"], b["npf"], b["sv"], b["globals"], b["cpf_mask"], b["npf_mask"],
                     b["sv_mask"])
    if isinstance(model, particlenet.ParticleNet):
        return model(b["cand_pn"], b["cand_mask"])
    if "globals" in _CLASSES and isinstance(model, _CLASSES["globals"]):
        return model(b["globals"])
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
    model = _model(kind, tr, num_outputs, cfg[kind] if kind in NET_SECTIONS else cfg["model"],
                   seed)
    if out_bias is not None:   # regression: start near a chosen output (no correction)
        model.out.kernel[...] = 0.01 * model.out.kernel[...]
        model.out.bias[...] = np.asarray(out_bias, np.float32)
    tx = optax.adamw(cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    if cfg.get("fast_compile") and kind != "particlenet":   # (its batch norms update state)
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
def run(variant="cpu", workdir="runs/cms_jets", data=None, seed=0, log=print,
        models=None, regression=True) -> dict:
    """The seeded split (``split_by_event``): the flavour networks, then (``regression``) the
    two jet-energy regressions; see the module docstring."""
    import jax

    from hepjax.metrics import confusion_matrix, roc_curve
    from hepjax.train.logging import environment

    cfg = VARIANTS[variant]
    if models:
        cfg = {**cfg, "models": tuple(models)}
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
                            cfg.get(f"{kind}_epochs", cfg["epochs"]), log, f"flavour {kind}",
                            kind)
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

    u = results["uds_vs_g"]
    uds_bars = {
        **{f"uds_vs_g_{k}_beats_jet_qgl": bool(u[k]["auc"] > u["jet_qgl"]["auc"])
           for k in cfg["models"]},
        **{f"uds_vs_g_{k}_minus_jet_qgl_in_sigma": float(
            u["difference"][k]["value"] / max(u["difference"][k]["bootstrap_std"], 1e-12))
           for k in cfg["models"]}}
    if not regression:     # flavour networks only (e.g. one more network on the same split)
        results["bars"] = uds_bars
        results["wall_s"] = time.perf_counter() - t_start
        results["environment"] = environment("uproot")
        (workdir / "results.json").write_text(json.dumps(results, indent=1))
        (workdir / "table.md").write_text(table(results))
        log(table(results))
        return results

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
    best_reg = {k: results["regression"][k]["overall"] for k in ("log_ratio", "gaussian_nll")}
    unc = results["regression"]["uncorrected"]["overall"]
    diff = results["regression_bootstrap_std"]["difference_to_uncorrected"]
    results["bars"] = {
        **uds_bars,
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
    results["environment"] = environment("uproot")
    (workdir / "results.json").write_text(json.dumps(results, indent=1))
    (workdir / "table.md").write_text(table(results))
    _plots(results, rocs, ratios, ter["gen_pt"], workdir)
    log(table(results))
    return results


# ----------------------------------------------------------------------------- cross-validation
def cross_validate(variant="cpu", workdir="runs/cms_jets", data=None, seed=0, k=5, log=print,
                   models=None, available_only=False) -> dict:
    """K-fold cross-validation by event (``kfold_by_event``): each network of
    ``cfg["cv_models"]`` trained once per fold (training seed ``seed`` in every fold, early
    stopping on the fold's validation group), its test-group probabilities kept, so every jet
    gets one out-of-fold prediction. Each (network, fold) is cached in ``WORKDIR/cv/`` as an
    .npz (a rerun resumes). On the pooled out-of-fold jets: AUCs of b vs udsg, c vs udsg and
    uds vs g (the last with ``jet_qgl`` on the same jets) for every network and for the
    ensemble (the mean of ``cfg["ensemble"]``'s probabilities, fixed in the config before any
    cross-validated number was seen), paired bootstrap errors and differences to ``jet_qgl``;
    and the per-fold uds-vs-g AUCs. ``available_only``: train nothing, evaluate the folds
    whose predictions are all cached (a run cut short). Writes ``cv_results.json``,
    ``cv_table.md``, ``cv_roc.png``."""
    from hepjax.train.logging import environment
    import jax

    cfg = VARIANTS[variant]
    models = tuple(models or cfg["cv_models"])
    workdir = pathlib.Path(workdir)
    cvdir = workdir / "cv"
    cvdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    raw, info = read(data or DEFAULT_DATA, cfg["max_jets"])
    folds = kfold_by_event(raw["event_no"], k, seed)
    n = len(raw["label"])
    probs = {m: np.full((n, 4), np.nan) for m in models}
    hist = {m: [] for m in models}
    tcfg = {**cfg, **cfg.get("cv_nets", {}), "patience": cfg["cv_patience"]}
    done = []
    for f, idx in enumerate(folds):          # fold-major: a partial run has whole folds
        splits = None
        caches = {kind: cvdir / f"{variant}_{kind}_k{k}_s{seed}_fold{f}.npz" for kind in models}
        if available_only and not all(c.exists() for c in caches.values()):
            continue
        done.append(f)
        for kind in models:
            cache = caches[kind]
            if cache.exists():
                with np.load(cache) as z:
                    p, h = z["probs"], json.loads(str(z["history"]))
                if len(p) != len(idx["test"]):
                    raise ValueError(f"{cache}: {len(p)} jets, the fold has "
                                     f"{len(idx['test'])}; delete it (another data file?)")
            else:
                if splits is None:
                    splits = make_splits(raw, idx)
                model, h = train(splits, {s: v["label"] for s, v in splits.items()}, 4,
                                 classification_loss, tcfg, seed, cfg["cv_epochs"][kind], log,
                                 f"cv fold {f} {kind}", kind)
                p = np.asarray(jax.nn.softmax(predict(model, splits["test"]), -1), np.float64)
                np.savez(cache, probs=p, history=json.dumps(h))
            probs[kind][idx["test"]] = p
            hist[kind].append(h)
    if not done:
        raise ValueError(f"{cvdir}: no fold has every network's predictions cached")
    keep = np.sort(np.concatenate([folds[f]["test"] for f in done]))
    res = cv_metrics(raw["label"][keep], raw["jet_qgl"][keep], raw["qgl_valid"][keep],
                     {m: p[keep] for m, p in probs.items()},
                     [np.searchsorted(keep, folds[f]["test"]) for f in done], cfg["ensemble"],
                     cfg["n_bootstrap"], seed)
    res.update({"variant": variant, "seed": seed, "k": k, "models": list(models),
                "folds_evaluated": done, "n_jets_evaluated": int(len(keep)),
                "ensemble": list(cfg["ensemble"]), "n_jets": int(n),
                "fold_sizes": [{s: int(len(v)) for s, v in fo.items()} for fo in folds],
                "epoch_caps": cfg["cv_epochs"], "patience": cfg["cv_patience"],
                "epochs_run_best": {m: [[len(h), int(np.argmin([e["val_loss"] for e in h])) + 1]
                                        for h in hist[m]] for m in models},
                "wall_s": time.perf_counter() - t_start, "environment": environment("uproot")})
    (workdir / "cv_results.json").write_text(json.dumps(res, indent=1))
    (workdir / "cv_table.md").write_text(cv_table(res))
    _cv_plot(res, raw["label"][keep], raw["jet_qgl"][keep], raw["qgl_valid"][keep],
             {m: p[keep] for m, p in probs.items()}, cfg["ensemble"], workdir)
    log(cv_table(res))
    return res


def cv_metrics(label, qgl, qgl_valid, probs: dict, test_groups, ensemble, n_bootstrap, seed):
    """Pooled out-of-fold metrics (see ``cross_validate``). ``probs``: name -> (N, 4) softmax
    outputs, each jet predicted by the fold that tested it."""
    label = np.asarray(label)
    probs = dict(probs)
    for name, p in probs.items():
        if np.isnan(p).any():
            raise ValueError(f"cv_metrics: {name} has no out-of-fold prediction for "
                             f"{int(np.isnan(p).any(1).sum())} jets")
    if len(ensemble) > 1 and all(m in probs for m in ensemble):
        probs["ensemble"] = np.mean([probs[m] for m in ensemble], 0)
    disc = {m: discriminants(p) for m, p in probs.items()}
    out = {"class_counts": np.bincount(label, minlength=4).tolist(),
           "accuracy": {m: float((p.argmax(1) == label).mean()) for m, p in probs.items()}}
    for name, sig, bkg in (("b_vs_udsg", [0], [2, 3]), ("c_vs_udsg", [1], [2, 3])):
        sel = np.isin(label, sig + bkg)
        y = np.isin(label[sel], sig).astype(int)
        out[name] = paired_bootstrap_auc(y, {m: d[name][sel] for m, d in disc.items()},
                                         n_bootstrap, seed)
        out[name]["n_jets"] = int(sel.sum())
    sel = np.isin(label, [2, 3]) & qgl_valid
    y = (label[sel] == 2).astype(int)
    scores = {**{m: d["uds_vs_g"][sel] for m, d in disc.items()}, "jet_qgl": qgl[sel]}
    u = out["uds_vs_g"] = paired_bootstrap_auc(y, scores, n_bootstrap, seed, reference="jet_qgl")
    u["n_jets"] = int(sel.sum())
    u["n_uds"], u["n_g"] = int(y.sum()), int((1 - y).sum())
    # the spread over folds: each fold's uds-vs-g AUC on its own test group
    u["per_fold"] = {m: [] for m in scores}
    for g in test_groups:
        s = np.zeros(len(label), bool)
        s[g] = True
        s &= sel
        yf = (label[s] == 2).astype(int)
        for m in scores:
            sc = qgl[s] if m == "jet_qgl" else disc[m]["uds_vs_g"][s]
            u["per_fold"][m].append(auc(yf, sc))
    return out


def cv_table(r) -> str:
    def a(d):
        return f"{d['auc']:.3f} ± {d['bootstrap_std']:.3f}"
    u = r["uds_vs_g"]
    names = [m for m in u if m not in ("difference", "n_jets", "n_uds", "n_g", "per_fold",
                                       "jet_qgl")]
    folds = r.get("folds_evaluated", list(range(r["k"])))
    scope = (f"every one of the {r['n_jets']} jets predicted once, out of fold"
             if len(folds) == r["k"] else
             f"folds {', '.join(map(str, folds))} of {r['k']} evaluated (a run cut short): "
             f"{r['n_jets_evaluated']} of the {r['n_jets']} jets, each predicted out of fold")
    lines = [f"{r['k']}-fold cross-validation by event (seed {r['seed']}): {scope} "
             f"(b, c, uds, g = "
             f"{', '.join(map(str, r['class_counts']))}); ensemble = mean probability of "
             f"{', '.join(r['ensemble'])}", "",
             "| discriminant | jets | " + " | ".join(f"{m} AUC" for m in names)
             + " | jet_qgl AUC |", "|---|---|" + "---|" * (len(names) + 1)]
    for key in ("b_vs_udsg", "c_vs_udsg"):
        lines.append(f"| {key.replace('_', ' ')} | {r[key]['n_jets']} | "
                     + " | ".join(a(r[key][m]) for m in names) + " | — |")
    lines.append(f"| uds vs g (jet_qgl computed) | {u['n_jets']} | "
                 + " | ".join(a(u[m]) for m in names) + f" | {a(u['jet_qgl'])} |")
    lines += ["", f"uds vs g on {u['n_jets']} out-of-fold jets ({u['n_uds']} uds, {u['n_g']} g), "
              "minus jet_qgl on the same jets (paired bootstrap, "
              f"{len(u['per_fold']['jet_qgl'])} folds pooled):", "",
              "| discriminant | AUC − jet_qgl AUC | in σ | positive in | per-fold AUCs |",
              "|---|---|---|---|---|"]
    for m in names + ["jet_qgl"]:
        folds = ", ".join(f"{x:.3f}" for x in u["per_fold"][m])
        if m == "jet_qgl":
            lines.append(f"| jet_qgl | — | — | — | {folds} |")
            continue
        d = u["difference"][m]
        lines.append(f"| {m} | {d['value']:+.4f} ± {d['bootstrap_std']:.4f} | "
                     f"{d['value'] / max(d['bootstrap_std'], 1e-12):+.2f} | "
                     f"{d['fraction_positive']:.1%} | {folds} |")
    acc = ", ".join(f"{m} {v:.3f}" for m, v in r["accuracy"].items())
    lines += ["", f"4-class accuracy (out of fold): {acc}",
              "Epochs run / best per fold: " + "; ".join(
                  f"{m} " + " ".join(f"{e}/{b}" for e, b in v)
                  for m, v in r["epochs_run_best"].items())]
    return "\n".join(lines) + "\n"


def _cv_plot(r, label, qgl, qgl_valid, probs, ensemble, workdir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hepjax.metrics import roc_curve
    sel = np.isin(label, [2, 3]) & qgl_valid
    y = (label[sel] == 2).astype(int)
    scores = {m: discriminants(p)["uds_vs_g"][sel] for m, p in probs.items()}
    if "ensemble" in r["uds_vs_g"]:
        scores["ensemble"] = discriminants(np.mean([probs[m] for m in ensemble], 0))[
            "uds_vs_g"][sel]
    scores["jet_qgl"] = qgl[sel]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for m, sc in scores.items():
        fpr, tpr, _ = roc_curve(y, sc)
        d = r["uds_vs_g"][m]
        ax.plot(tpr, fpr, label=f"{m}: AUC {d['auc']:.3f} ± {d['bootstrap_std']:.3f}",
                ls="--" if m == "jet_qgl" else "-")
    ax.set_xlabel("uds efficiency")
    ax.set_ylabel("gluon efficiency")
    ax.set_title(f"uds vs g, {r['k']}-fold out-of-fold, {r['uds_vs_g']['n_jets']} jets")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(workdir / "cv_roc.png", dpi=110)
    plt.close(fig)


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
    if "regression" not in r:
        lines += ["", "Bars: " + ", ".join(f"{k}: {v}" if not isinstance(v, float)
                                           else f"{k}: {v:.2f}" for k, v in r["bars"].items())]
        return "\n".join(lines) + "\n"
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
    parser.add_argument("--models", default=None,
                        help="comma-separated flavour networks of the seeded split (default: "
                        "the variant's; deepjet, part, particlenet)")
    parser.add_argument("--cv-available", action="store_true",
                        help="with --cv: train nothing, evaluate the folds already cached")
    parser.add_argument("--no-regression", action="store_true",
                        help="train the flavour networks only (table.md, results.json)")
    parser.add_argument("--cv", type=int, default=0, metavar="K",
                        help="instead: K-fold cross-validation by event (every jet predicted "
                        "out of fold; cv_results.json, cv_table.md, cv_roc.png)")
    args = parser.parse_args(argv)
    models = None
    if args.models:
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        valid = ("deepjet", "part", "particlenet", "globals")
        bad = [m for m in models if m not in valid]
        if bad:
            parser.error(f"--models: unknown {bad}; valid: {', '.join(valid)}")
    if args.cv:
        cross_validate(args.variant, args.workdir, args.data, args.seed, args.cv, models=models,
                       available_only=args.cv_available)
    else:
        run(args.variant, args.workdir, args.data, args.seed, models=models,
            regression=not args.no_regression)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
