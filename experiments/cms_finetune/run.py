"""Pre-training DeepJet on generated jets, fine-tuning on the CMS DeepJet ntuple.

    python -m experiments.cms_finetune.run --variant cpu|smoke --workdir runs/cms_finetune \\
        [--gen PATH.root] [--data ntuple_ttbar.root]

1. **Pre-training**: ``DeepJetFull`` (Bols et al., "Jet flavour classification using DeepJet",
   JINST 15 (2020) P12012; four inputs: charged, neutral, SVs, globals), 4 classes b, c, uds,
   g, on jets generated in the same schema by ``hepjax.data.deepjet_generation`` (Pythia 8
   tt-bar at 13 TeV, pile-up, fast detector with impact parameters and truth-seeded SVs),
   inputs standardised with the generated training jets' statistics; early stopping on a
   held-out 10 % of the generated events. Saved with ``hepjax.train.finetune.save_checkpoint``.
2. **CMS splits**: ``../shared/data/cms_deepjet_ttbar_ntuple/ntuple_ttbar.root`` read and split
   by event exactly as ``experiments/cms_jets`` (seed 0, 60/20/20 of the events): the test split
   is the one that experiment reports on. Inputs standardised with the statistics of the whole
   CMS training split (inputs only, no labels: the same for every arm and size).
3. For each training size N (250, 500, 1000, all) (a random N-jet subset of the CMS training split, drawn with the
   seed) and each seed: **fine-tuned** (weights loaded by path with
   ``finetune.load_pretrained``, the output layer re-initialised, the body at
   ``body_lr_scale`` x the learning rate: ``finetune.optimizer``) and **from scratch** (the same
   network, freshly initialised, all at the full learning rate); both trained on the same N
   jets with early stopping on the CMS validation split's loss (the same 1,439 jets for every
   N: a best case for small N, equal for both arms). The **generated-only** model (pre-trained,
   never fine-tuned) is evaluated too.
4. Metrics on the CMS test split: b vs udsg AUC (discriminant p_b / (p_b + p_uds + p_g)), uds vs
   g AUC (p_uds / (p_uds + p_g)), 4-class accuracy; mean over seeds with the standard error
   of the mean, and the paired difference fine-tuned - scratch (same subset, same seed).

Fine-tuning recipe after H. Qu, C. Li, S. Qian, "Particle Transformer for Jet Tagging", ICML
2022 (pre-trained on JetClass, fine-tuned on smaller sets with a new head), and G. Kasieczka's
lecture notes: "pre-train on one dataset and recycle weights for training on new data".

Writes ``WORKDIR/results.json``, ``table.md``, ``learning_curve.png``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cms_deepjet_ttbar_ntuple" / "ntuple_ttbar.root"
DEFAULT_GEN = pathlib.Path.home() / ".cache" / "hepjax" / "deepjet_gen_ttbar_pu20_s0.root"
CLASSES = ("b", "c", "uds", "g")
HEAD = (r"^out/",)

VARIANTS = {
    # DeepJet's structure at reduced widths (2 shared CPU cores, 19 trainings)
    "cpu": dict(model=dict(cpf_conv=(32, 16, 16, 8), npf_conv=(16, 8, 4), sv_conv=(16, 16, 8),
                           cpf_lstm=64, npf_lstm=16, sv_lstm=16, dense_dims=(100, 100, 100),
                           dropout=0.1),
                batch_size=64, learning_rate=1e-3, weight_decay=1e-4, body_lr_scale=0.3,
                pre_steps=3000, pre_eval_every=150, pre_patience=4,
                max_steps=1200, eval_every=40, patience=6,
                sizes=(250, 500, 1000, None), seeds=(0, 1, 2), max_gen=None, max_cms=None),
    "smoke": dict(model=dict(cpf_conv=(8,), npf_conv=(4,), sv_conv=(4,), cpf_lstm=8,
                             npf_lstm=4, sv_lstm=4, dense_dims=(16,), dropout=0.0),
                  batch_size=32, learning_rate=3e-3, weight_decay=0.0, body_lr_scale=0.3,
                  pre_steps=30, pre_eval_every=30, pre_patience=1,
                  max_steps=30, eval_every=30, patience=1,
                  sizes=(100, None), seeds=(0,), max_gen=None, max_cms=1500,
                  fast_compile=True),
}
# XLA options that halve the compile time of the smoke network (compiling dominates its run
# time; as experiments/cms_jets); the cpu variant compiles with the defaults
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
INPUTS = ("cpf", "npf", "sv", "globals", "cpf_mask", "npf_mask", "sv_mask")


# ----------------------------------------------------------------------------- data
def read(path, max_jets=None):
    from hepjax.data import deepjet_ntuple as dn
    raw = dn.read_deepjet_ntuple(path, order="physics", entry_stop=max_jets)
    info = raw.pop("info")
    return raw, info


def subset(d, idx):
    return {k: v[idx] for k, v in d.items()}


def load_cms(path, max_jets=None):
    """CMS train/val/test as experiments/cms_jets splits them (by event, seed 0)."""
    from experiments.cms_jets.run import split_by_event
    from hepjax.data import deepjet_ntuple as dn
    raw, info = read(path, max_jets)
    idx = split_by_event(raw["event_no"], 0)
    splits = {k: subset(raw, i) for k, i in idx.items()}
    splits["train"], stats = dn.standardise(splits["train"])
    for k in ("val", "test"):
        splits[k], _ = dn.standardise(splits[k], stats)
    return splits, info


def read_many(paths, max_jets=None):
    """Several generated files (e.g. tt-bar, QCD, Z+jet) as one sample: the arrays
    concatenated, each file's ``event_no`` shifted past the previous files' (so a split by
    event never merges events of different files), class counts summed."""
    paths = [paths] if isinstance(paths, (str, pathlib.Path)) else list(paths)
    raws, infos = zip(*(read(p, max_jets) for p in paths))
    if len(raws) == 1:
        return raws[0], infos[0]
    offset, shifted = 0, []
    for r in raws:
        r = dict(r)
        r["event_no"] = r["event_no"].astype(np.int64) + offset
        offset = int(r["event_no"].max()) + 1 if len(r["event_no"]) else offset
        shifted.append(r)
    keys = set(shifted[0])
    for p, r in zip(paths, shifted):
        if set(r) != keys:
            raise ValueError(f"{p}: fields {sorted(set(r) ^ keys)} differ from {paths[0]}")
    raw = {k: np.concatenate([r[k] for r in shifted]) for k in shifted[0]}
    info = dict(infos[0])
    info["class_counts"] = np.sum([i["class_counts"] for i in infos], 0).tolist()
    info["n_unlabelled"] = int(sum(i["n_unlabelled"] for i in infos))
    info["files"] = [{"path": str(p), "class_counts": list(i["class_counts"]),
                      "n_unlabelled": i["n_unlabelled"]} for p, i in zip(paths, infos)]
    return raw, info


def load_gen(path, max_jets=None):
    """Generated jets (one path or several, ``read_many``): 90/10 train/val by event (seed 1),
    standardised with their own stats."""
    from experiments.cms_jets.run import split_by_event
    from hepjax.data import deepjet_ntuple as dn
    raw, info = read_many(path, max_jets)
    idx = split_by_event(raw["event_no"], 1, fractions=(0.9, 0.1))
    splits = {"train": subset(raw, idx["train"]), "val": subset(raw, idx["val"])}
    splits["train"], stats = dn.standardise(splits["train"])
    splits["val"], _ = dn.standardise(splits["val"], stats)
    return splits, info


# ----------------------------------------------------------------------------- training
def build(mcfg, split, seed):
    import ml_collections
    from flax import nnx

    from hepjax.models import deepjet
    dims = tuple(int(split[k].shape[-1]) for k in ("cpf", "npf", "sv", "globals"))
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    return deepjet.build_full(ml_collections.ConfigDict(mcfg), dims, 4, rngs), dims


def _apply(model, b):
    return model(b["cpf"], b["npf"], b["sv"], b["globals"], b["cpf_mask"], b["npf_mask"],
                 b["sv_mask"])


_STEPS: dict = {}


def _jit(fn, fast):
    import jax
    return jax.jit(fn, compiler_options=FAST_COMPILE) if fast else jax.jit(fn)


def _step_fn(graphdef, tx, fast=False):
    """One jitted step per (architecture, optimiser object), compiled once and reused."""
    import optax
    from flax import nnx
    key = (graphdef, id(tx), fast)
    if key in _STEPS:
        return _STEPS[key][0]

    def step(params, rest, opt_state, batch, y):
        m = nnx.merge(graphdef, params, rest)

        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(_apply(model, batch),
                                                                   y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(m)   # w.r.t. nnx.Param; dropout keys advance
        updates, opt_state = tx.update(grads, opt_state, params)
        _, _, rest = nnx.split(m, nnx.Param, ...)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    _STEPS[key] = (_jit(step, fast), tx)   # tx kept alive: its id stays unique
    return _STEPS[key][0]


def predict(model, split, batch_size=512, fast=False):
    """Softmax outputs on a whole split in fixed-size chunks (one compiled shape)."""
    import jax
    from flax import nnx
    model.eval()
    graphdef, state = nnx.split(model)
    key = ("predict", graphdef, fast)
    if key not in _STEPS:
        _STEPS[key] = (_jit(lambda s, b: jax.nn.softmax(_apply(nnx.merge(graphdef, s), b), -1),
                            fast), None)
    fn = _STEPS[key][0]
    n = len(split["label"])
    out = []
    for i in range(0, n, batch_size):
        idx = np.arange(i, i + batch_size) % n
        out.append(np.asarray(fn(state, {k: split[k][idx] for k in INPUTS}))[:min(batch_size,
                                                                                  n - i)])
    return np.concatenate(out)


def val_loss(model, split, fast=False):
    p = predict(model, split, fast=fast)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(p)), split["label"]], 1e-12, None))))


def fit(model, tx, train, val, *, lr, body_lr, batch_size, max_steps, eval_every, patience,
        seed, log, name, fast=False):
    """Mini-batch training (the order drawn with ``seed``), validation loss every
    ``eval_every`` steps, early stopping after ``patience`` evaluations without improvement;
    the best parameters are restored. Returns the history."""
    import jax
    from flax import nnx

    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    step = _step_fn(graphdef, tx, fast)
    from hepjax.train import finetune as ft
    opt_state = ft.set_learning_rate(ft.set_learning_rate(tx.init(params), "head", lr), "body",
                                     body_lr)
    rng = np.random.default_rng(seed + 1000)
    n = len(train["label"])
    bs = min(batch_size, n)
    order, pos = rng.permutation(n), 0
    best, best_params, bad, hist = np.inf, params, 0, []
    t0 = time.perf_counter()
    for s in range(1, max_steps + 1):
        if pos + bs > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + bs]
        pos += bs
        params, rest, opt_state, loss = step(params, rest, opt_state,
                                             {k: train[k][idx] for k in INPUTS},
                                             train["label"][idx])
        if s % eval_every == 0 or s == max_steps:
            nnx.update(model, params, rest)
            v = val_loss(model, val, fast)
            model.train()
            hist.append({"step": s, "train_loss": float(loss), "val_loss": v})
            if v < best - 1e-5:
                best, bad = v, 0
                best_params = jax.tree.map(np.array, params)
            else:
                bad += 1
            if bad >= patience:
                break
    nnx.update(model, best_params, rest)
    model.eval()
    log(f"[{name}] {s} steps, best val loss {best:.4f} ({time.perf_counter() - t0:.0f} s)")
    return hist


def make_tx(cfg):
    """The one optimiser of every training here: head and body groups (AdamW), learning rates
    in the state (set per run by ``fit``'s ``body_lr``), so one compiled step serves all."""
    from hepjax.train import finetune as ft
    return ft.optimizer(cfg["learning_rate"], head=HEAD, weight_decay=cfg["weight_decay"],
                        inject=True)


# ----------------------------------------------------------------------------- metrics
def metrics(probs, label) -> dict:
    from hepjax.metrics import roc_auc
    out = {"accuracy": float((probs.argmax(1) == label).mean())}
    sel = np.isin(label, (0, 2, 3))
    out["b_vs_udsg"] = float(roc_auc((label[sel] == 0).astype(int),
                                     probs[sel, 0] / probs[sel][:, [0, 2, 3]].sum(1)))
    sel = np.isin(label, (2, 3))
    out["uds_vs_g"] = float(roc_auc((label[sel] == 2).astype(int),
                                    probs[sel, 2] / probs[sel][:, [2, 3]].sum(1)))
    return out


def _mean_sem(x):
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()),
            "sem": float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan"),
            "values": x.tolist()}


# ----------------------------------------------------------------------------- main
def run(variant="cpu", workdir="runs/cms_finetune", data=None, gen=None, log=print,
        init_from=None, sizes=None) -> dict:
    """``gen``: one generated file or a list (mixed into one pre-training sample);
    ``sizes``: CMS training sizes (None = all jets) instead of the variant's."""
    from hepjax.train import finetune as ft
    from hepjax.train.logging import environment

    cfg = VARIANTS[variant]
    if sizes is not None:
        cfg = {**cfg, "sizes": tuple(sizes)}
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    gen_paths = ([pathlib.Path(p) for p in gen] if isinstance(gen, (list, tuple))
                 else [pathlib.Path(gen or DEFAULT_GEN)])
    for gen_path in gen_paths:
        if not gen_path.is_file():
            raise FileNotFoundError(f"{gen_path}: no generated DeepJet sample; make one with "
                                    "`python -m hepjax.data.deepjet_generation --out PATH` "
                                    "(or `hepjax generate deepjet`) and pass --gen PATH")
    gen_path = gen_paths[0] if len(gen_paths) == 1 else gen_paths
    g, ginfo = load_gen(gen_path, cfg["max_gen"])
    cms, cinfo = load_cms(data or DEFAULT_DATA, cfg["max_cms"])
    te = cms["test"]
    log(f"generated: train {len(g['train']['label'])} val {len(g['val']['label'])} "
        f"(classes {ginfo['class_counts']}); CMS: "
        + ", ".join(f"{k} {len(v['label'])}" for k, v in cms.items()))
    fast = bool(cfg.get("fast_compile", False))
    train_kw = dict(batch_size=cfg["batch_size"], log=log, fast=fast)

    # 1. pre-training on generated jets (or a pre-trained checkpoint given by path)
    tx = make_tx(cfg)
    lr = cfg["learning_rate"]
    model, dims = build(cfg["model"], g["train"], seed=100)
    if init_from is None:
        pre_hist = fit(model, tx, g["train"], g["val"], max_steps=cfg["pre_steps"],
                       eval_every=cfg["pre_eval_every"], patience=cfg["pre_patience"],
                       seed=100, lr=lr, body_lr=lr, name="pre-train (generated)", **train_kw)
        pretrained = workdir / "pretrained"
    else:
        ft.load_pretrained(model, init_from)
        pre_hist = [{"step": 0, "loaded_from": str(init_from)}]
        pretrained = pathlib.Path(init_from)
        log(f"pre-trained model loaded from {ft.resolve_checkpoint(init_from)}")
    gen_val = metrics(predict(model, g["val"], fast=fast), g["val"]["label"])
    if init_from is None:
        ckpt = ft.save_checkpoint(pretrained, model,
                                  {"model": "deepjet_full", **cfg["model"], "dims": list(dims),
                                   "num_outputs": 4, "classes": list(CLASSES),
                                   "generated_sample": ",".join(map(str, gen_paths))},
                                  step=pre_hist[-1]["step"], meta={"gen_val": gen_val})
    else:
        ckpt = ft.resolve_checkpoint(init_from)
    gen_only = metrics(predict(model, te, fast=fast), te["label"])
    log(f"generated-only model: on generated val {gen_val}; on CMS test {gen_only}")

    # 2. fine-tuning vs scratch at each training size
    n_train = len(cms["train"]["label"])
    rows = []
    for size in cfg["sizes"]:
        n = n_train if size is None else min(int(size), n_train)
        for seed in cfg["seeds"]:
            idx = np.sort(np.random.default_rng([seed, n]).permutation(n_train)[:n])
            tr = subset(cms["train"], idx)
            common = dict(max_steps=cfg["max_steps"], eval_every=cfg["eval_every"],
                          patience=cfg["patience"], seed=seed, **train_kw)
            out = {"n_train": n, "seed": seed}
            m, _ = build(cfg["model"], tr, seed)
            h = fit(m, tx, tr, cms["val"], lr=lr, body_lr=lr,
                    name=f"scratch N={n} seed={seed}",
                    **common)
            out["scratch"] = {**metrics(predict(m, te, fast=fast), te["label"]),
                              "steps": h[-1]["step"]}
            m, _ = build(cfg["model"], tr, seed)
            report = ft.load_pretrained(m, pretrained, reinit=HEAD)
            h = fit(m, tx, tr, cms["val"], lr=lr, body_lr=lr * cfg["body_lr_scale"],
                    name=f"finetune N={n} seed={seed}",
                    **common)
            out["finetune"] = {**metrics(predict(m, te, fast=fast), te["label"]),
                               "steps": h[-1]["step"],
                               "loaded": len(report["loaded"]),
                               "reinitialised": report["reinitialised"]}
            log(f"N={n} seed={seed}: scratch {out['scratch']}, finetune {out['finetune']}")
            rows.append(out)

    summary = []
    for n in sorted({r["n_train"] for r in rows}):
        rs = [r for r in rows if r["n_train"] == n]
        s = {"n_train": n, "n_seeds": len(rs)}
        for metric in ("b_vs_udsg", "uds_vs_g", "accuracy"):
            for arm in ("scratch", "finetune"):
                s[f"{arm}_{metric}"] = _mean_sem([r[arm][metric] for r in rs])
            s[f"diff_{metric}"] = _mean_sem([r["finetune"][metric] - r["scratch"][metric]
                                             for r in rs])
        summary.append(s)
    small = summary[:2]
    results = {
        "variant": variant, "config": {k: v for k, v in cfg.items()},
        "generated_sample": {"path": ([str(p) for p in gen_paths] if len(gen_paths) > 1
                                      else str(gen_paths[0])),
                             "n_train": len(g["train"]["label"]),
                             "n_val": len(g["val"]["label"]),
                             "class_counts": ginfo["class_counts"],
                             "n_unlabelled": ginfo["n_unlabelled"],
                             **({"files": ginfo["files"]} if "files" in ginfo else {})},
        "cms": {k: len(v["label"]) for k, v in cms.items()},
        "test_class_counts": np.bincount(te["label"], minlength=4).tolist(),
        "pretrain": {"history": pre_hist, "generated_val": gen_val, "checkpoint": str(ckpt)},
        "generated_only_on_cms_test": gen_only, "runs": rows, "summary": summary,
        "bars": {f"finetune_beats_scratch_{m}_N{s['n_train']}": bool(
            s[f"diff_{m}"]["mean"] > 0) for s in small for m in ("b_vs_udsg", "uds_vs_g")},
        "wall_s": time.perf_counter() - t_start, "environment": environment()}
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (workdir / "table.md").write_text(table(results))
    _plot(results, workdir)
    log(table(results))
    return results


def table(r) -> str:
    def ms(d):
        return f"{d['mean']:.3f} ± {d['sem']:.3f}"
    go = r["generated_only_on_cms_test"]
    lines = [f"CMS test split: {r['cms']['test']} jets (b, c, uds, g = "
             f"{', '.join(map(str, r['test_class_counts']))}); mean over "
             f"{r['summary'][0]['n_seeds']} seeds ± standard error of the mean; diff = "
             "fine-tuned − scratch, paired by seed (same jets)", "",
             "| CMS training jets | b vs udsg AUC: scratch | fine-tuned | diff | uds vs g AUC: "
             "scratch | fine-tuned | diff | 4-class acc.: scratch | fine-tuned | diff |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in r["summary"]:
        cells = []
        for m in ("b_vs_udsg", "uds_vs_g", "accuracy"):
            cells += [ms(s[f"scratch_{m}"]), ms(s[f"finetune_{m}"]),
                      f"{s[f'diff_{m}']['mean']:+.3f} ± {s[f'diff_{m}']['sem']:.3f}"]
        lines.append(f"| {s['n_train']} | " + " | ".join(cells) + " |")
    lines.append(f"| 0 (generated only) | — | {go['b_vs_udsg']:.3f} | — | — | "
                 f"{go['uds_vs_g']:.3f} | — | — | {go['accuracy']:.3f} | — |")
    lines += ["", "Bars: " + ", ".join(f"{k}: {v}" for k, v in r["bars"].items())]
    return "\n".join(lines) + "\n"


def _plot(r, workdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    n = [s["n_train"] for s in r["summary"]]
    for ax, m, title in zip(axes, ("b_vs_udsg", "uds_vs_g", "accuracy"),
                            ("b vs udsg AUC", "uds vs g AUC", "4-class accuracy")):
        for arm, style in (("scratch", "o-"), ("finetune", "s-")):
            ax.errorbar(n, [s[f"{arm}_{m}"]["mean"] for s in r["summary"]],
                        yerr=[s[f"{arm}_{m}"]["sem"] for s in r["summary"]], fmt=style,
                        capsize=3, label="fine-tuned" if arm == "finetune" else "from scratch")
        ax.axhline(r["generated_only_on_cms_test"][m], color="grey", ls="--",
                   label="generated only")
        ax.set_xscale("log")
        ax.set_xticks(n, [str(v) for v in n])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("CMS training jets")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(workdir / "learning_curve.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="cpu")
    parser.add_argument("--workdir", default="runs/cms_finetune")
    parser.add_argument("--data", default=None, help=f"CMS ntuple (default {DEFAULT_DATA})")
    parser.add_argument("--gen", default=None, help=f"generated sample (default {DEFAULT_GEN}); "
                        "several comma-separated files are mixed into one pre-training sample")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated CMS training sizes ('all' = the whole split) "
                             "instead of the variant's, e.g. 250,500")
    parser.add_argument("--init-from", default=None,
                        help="skip pre-training: a pre-trained checkpoint (run directory, "
                             "checkpoints/ or a step), e.g. WORKDIR/pretrained of an earlier run")
    args = parser.parse_args(argv)
    gen = args.gen.split(",") if args.gen and "," in args.gen else args.gen
    sizes = None
    if args.sizes:
        try:
            sizes = [None if x.strip() == "all" else int(x) for x in args.sizes.split(",")]
        except ValueError:
            parser.error(f"--sizes {args.sizes!r}: expected comma-separated integers or 'all'")
    run(args.variant, args.workdir, args.data, gen, init_from=args.init_from, sizes=sizes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
