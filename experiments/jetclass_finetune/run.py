"""ParT pre-trained 10-class on the JetClass-style sample, fine-tuned on generated top tagging.

    python -m experiments.jetclass_finetune.run --variant cpu|smoke --workdir runs/jetclass_finetune \\
        [--jetclass PATH.root] [--top PATH.h5] [--init-from RUN]

Issue 29, item 2: the recipe of H. Qu, C. Li, S. Qian, "Particle Transformer for Jet Tagging",
ICML 2022 (arXiv:2202.03772): pre-train ParT on the ten JetClass classes, load it, replace the
output layer and train the whole network on top tagging with a smaller learning rate for the
body; G. Kasieczka's lecture notes: "Boost by fine-tuning across datasets".

1. **Pre-training**: a small ParT (``VARIANTS``) trained 10-class through the harness
   (``hepjax.train.experiment.train``, ``data.name = "jetclass"``) on the JetClass-style sample
   of ``hepjax.data.jetclass_generation`` (70/20/10 train/test/val, seeded), with the
   *kinematic* per-particle inputs only (``particle_id`` and ``impact_parameters`` off): the
   generated top-tagging sample in the reference layout has four-momenta only, so both stages
   see the same seven features (checked: the run stops if the feature names differ). Reported
   on its held-out test split: accuracy, macro one-vs-rest AUC, and the ParT paper's
   per-class rejections of QCD, 1/eps_B at eps_S = 50 % (99 % for H->lvqq', 99.5 % for
   t->blv), each class scored s_X / (s_X + s_QCD) (``hepjax.metrics.pairwise_rejection``).
2. **Top tagging**: the generated sample (150,000 jets, 80/10/10, ``data.seed`` 2024); for each
   training size N (a seeded nested subset of the training split: the *same* N jets for every
   training seed, since ``data.seed`` also names the generated file) and each seed, a
   **fine-tuned** run (``train.init_from`` = the pre-trained run, ``train.init_reinit`` the
   output layer, ``train.body_lr_scale``) and a **from-scratch** run (same network, same
   optimiser, same steps, same seed), both with early stopping on the same validation jets,
   tested on the whole test split (15,000 jets): AUC (bootstrap error) and 1/eps_B at
   eps_S = 0.3 (binomial error, ``hepjax.metrics.rejection_statistics``); mean over seeds with
   the seed-to-seed standard deviation, and the paired difference fine-tuned - scratch.

Writes ``WORKDIR/results.json``, ``table.md``, ``learning_curve.png`` (and every run directory).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

CACHE = pathlib.Path.home() / ".cache" / "hepjax"
DEFAULT_JETCLASS = CACHE / "jetclass_gen_v1_n1000_s0.root"
DEFAULT_TOP = CACHE / "top-tagging_n150000_seed2024_fast_epc200_ttv80-10-10_recipe2_pythia8.317.2.h5"
# the ParT paper's JetClass table: Rej at eps_S = 50 %, 99 % (H->lvqq'), 99.5 % (t->blv)
PAPER_EFF = {"Hbb": 0.5, "Hcc": 0.5, "Hgg": 0.5, "H4q": 0.5, "Hqql": 0.99, "Zqq": 0.5,
             "Wqq": 0.5, "Tbqq": 0.5, "Tbl": 0.995}

VARIANTS = {
    # a small ParT for 2 shared CPU cores: embed 64, 2 particle + 1 class attention blocks,
    # pair embedding 32-32, 4 heads; 64 constituents
    "cpu": dict(model=dict(embed_dims=(64, 64), pair_embed_dims=(32, 32), num_heads=4,
                           num_layers=2, num_cls_layers=1, ffn_ratio=2),
                max_particles=64, learning_rate=1e-3, weight_decay=0.01, body_lr_scale=0.3,
                pre_epochs=20, pre_batch=128, pre_eval_epochs=1.0,
                ft_steps=300, ft_batch=64, ft_eval_every=30, ft_patience=5, ft_val_jets=2000,
                sizes=(200, 1000), seeds=(0, 1, 2), max_pre_train=0, bootstrap=100,
                warmup_steps=20),
    # ParticleNet (Qu, Gouskos, "ParticleNet: Jet Tagging via Particle Clouds",
    # arXiv:1902.08570) at reduced size: two EdgeConv blocks of k = 16 neighbours, channels
    # (32, 32, 32) and (64, 64, 64), one fully connected layer of 128 (dropout 0.1); the paper:
    # (64, 64, 64), (128, 128, 128), (256, 256, 256), FC 256. Same data, optimiser and budgets as
    # the ParT variant.
    "cpu_particlenet": dict(model_name="particlenet",
                            model=dict(conv_params=((16, (32, 32, 32)), (16, (64, 64, 64))),
                                       fc_params=((128, 0.1),)),
                            max_particles=64, learning_rate=1e-3, weight_decay=0.01,
                            body_lr_scale=0.3, pre_epochs=20, pre_batch=128, pre_eval_epochs=1.0,
                            ft_steps=300, ft_batch=64, ft_eval_every=30, ft_patience=5,
                            ft_val_jets=2000, sizes=(200, 1000), seeds=(0, 1, 2), max_pre_train=0,
                            bootstrap=100, warmup_steps=20),
    "smoke_particlenet": dict(model_name="particlenet",
                              model=dict(conv_params=((4, (8, 8)),), fc_params=((8, 0.0),)),
                              max_particles=16, learning_rate=3e-3, weight_decay=0.0,
                              body_lr_scale=0.3, pre_epochs=1, pre_batch=64, pre_eval_epochs=1.0,
                              ft_steps=20, ft_batch=32, ft_eval_every=10, ft_patience=2,
                              ft_val_jets=200, sizes=(100,), seeds=(0,), max_pre_train=500,
                              bootstrap=10, warmup_steps=2),
    "smoke": dict(model=dict(embed_dims=(8,), pair_embed_dims=(4,), num_heads=2,
                             num_layers=1, num_cls_layers=1, ffn_ratio=1),
                  max_particles=16, learning_rate=3e-3, weight_decay=0.0, body_lr_scale=0.3,
                  pre_epochs=1, pre_batch=64, pre_eval_epochs=1.0,
                  ft_steps=20, ft_batch=32, ft_eval_every=10, ft_patience=2, ft_val_jets=200,
                  sizes=(100,), seeds=(0,), max_pre_train=500, bootstrap=10,
                  warmup_steps=2),
}


# ----------------------------------------------------------------------------- configs
def _base(cfg, seed, task, num_classes, data):
    import ml_collections

    from hepjax import models
    c = ml_collections.ConfigDict()
    c.seed = int(seed)
    c.task = task
    c.data = data
    c.preprocessing = ml_collections.ConfigDict({"log_features": (), "standardize": True})
    c.model = models.default_config(cfg.get("model_name", "part"))
    for key, value in cfg["model"].items():
        with c.model.ignore_type():
            c.model[key] = value
    c.model.num_classes = num_classes
    c.optimizer = ml_collections.ConfigDict({
        "name": "adamw", "learning_rate": cfg["learning_rate"],
        "weight_decay": cfg["weight_decay"], "clip_norm": 1.0,
        "schedule": {"name": "warmup_cosine", "warmup_steps": cfg["warmup_steps"]}})
    return c


def pretrain_config(cfg, path, seed=100):
    """10-class ParT on the JetClass-style file, kinematic inputs only."""
    from hepjax.configs import defaults
    data = defaults.jetclass_data(path=str(path), max_particles=cfg["max_particles"],
                                  particle_id=False, impact_parameters=False,
                                  max_train_jets=cfg["max_pre_train"])
    c = _base(cfg, seed, "multiclass", 10, data)
    c.train = defaults.train(
        num_steps=0, num_epochs=cfg["pre_epochs"], batch_size=cfg["pre_batch"],
        eval_batch_size=512, log_every=20, eval_every=0, eval_every_epochs=cfg["pre_eval_epochs"],
        checkpoint_every=0, checkpoint_every_epochs=cfg["pre_eval_epochs"],
        early_stopping=defaults.early_stopping(patience=3))
    return c


def finetune_config(cfg, path, n_train, seed, init_from=""):
    """Binary top tagging on ``n_train`` jets; with ``init_from`` the pre-trained body loaded
    (output layer re-initialised) at ``body_lr_scale`` x the learning rate."""
    from hepjax.configs import defaults
    data = defaults.top_tagging_data(path=str(path), n_jets=150_000,
                                     ttv_fractions=(0.8, 0.1, 0.1),
                                     representation="particles",
                                     max_particles=cfg["max_particles"],
                                     max_train_jets=int(n_train),
                                     max_val_jets=cfg["ft_val_jets"])
    c = _base(cfg, seed, "binary", 2, data)
    c.train = defaults.train(
        num_steps=cfg["ft_steps"], batch_size=min(cfg["ft_batch"], int(n_train)),
        eval_batch_size=512, log_every=cfg["ft_eval_every"], eval_every=cfg["ft_eval_every"],
        checkpoint_every=cfg["ft_eval_every"],
        early_stopping=defaults.early_stopping(patience=cfg["ft_patience"]))
    if init_from:
        c.train.init_from = str(init_from)
        c.train.body_lr_scale = cfg["body_lr_scale"]
    return c


# ----------------------------------------------------------------------------- metrics
def _history(workdir):
    rows = [json.loads(x) for x in (pathlib.Path(workdir) / "metrics.jsonl").read_text().split("\n")
            if x.strip()]
    return rows


def multiclass_metrics(workdir) -> dict:
    """Accuracy, macro AUC and per-class rejections of QCD (the ParT paper's table) of a
    finished 10-class run, from its saved test outputs."""
    from hepjax import metrics as M
    from hepjax.data.jetclass_generation import CLASSES
    names = sorted(CLASSES)                       # label_* branches sorted (read_jetclass)
    z = np.load(pathlib.Path(workdir) / "test_outputs.npz")
    probs, y = np.asarray(z["outputs"], np.float64), np.asarray(z["labels"])
    per, macro = M.one_vs_rest_auc(y, probs)
    qcd = names.index("QCD")
    n_qcd = int((y == qcd).sum())
    acc = float((probs.argmax(1) == y).mean())
    out = {"n_test": int(len(y)), "n_qcd": n_qcd, "accuracy": acc,
           "accuracy_err": float(np.sqrt(acc * (1 - acc) / len(y))),
           "macro_auc": macro, "auc_per_class": dict(zip(names, map(float, per))),
           "rejection": {}}
    for name, eff in PAPER_EFF.items():
        r = float(M.pairwise_rejection(y, probs, names.index(name), qcd, eff))
        n_pass, err = (M.rejection_statistics(r, n_qcd) if np.isfinite(r)
                       else (0.0, float("nan")))
        out["rejection"][name] = {"eff_s": eff, "value": r, "err": float(err),
                                  "n_qcd_pass": float(n_pass)}
    return out


def binary_metrics(workdir, n_boot=100) -> dict:
    from hepjax import metrics as M
    z = np.load(pathlib.Path(workdir) / "test_outputs.npz")
    s, y = np.asarray(z["outputs"], np.float64).reshape(-1), np.asarray(z["labels"])
    auc = float(M.roc_auc(y, s))
    boot = M.bootstrap(M.roc_auc, y, s, n_resamples=n_boot, seed=0)
    r30 = float(M.background_rejection(y, s, 0.3))
    n_b = int((y == 0).sum())
    return {"auc": auc, "auc_err": float(boot.std), "r30": r30,
            "r30_err": float(M.rejection_statistics(r30, n_b)[1]) if np.isfinite(r30) else None,
            "n_test": int(len(y)), "n_background": n_b}


def _spread(x):
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else float("nan"),
            "values": x.tolist()}


# ----------------------------------------------------------------------------- main
def _train(config, workdir, log):
    from hepjax.train import experiment
    t0 = time.perf_counter()
    if (pathlib.Path(workdir) / "test_outputs.npz").is_file():
        log(f"{workdir}: finished earlier, reused")
        return 0.0
    experiment.train(config, workdir, progress=False)
    dt = time.perf_counter() - t0
    log(f"{workdir}: {dt:.0f} s")
    return dt


def run(variant="cpu", workdir="runs/jetclass_finetune", jetclass=None, top=None,
        init_from=None, log=print) -> dict:
    from hepjax.data import jetclass_generation, top_tagging
    from hepjax.train.logging import environment
    cfg = VARIANTS[variant]
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    jetclass = pathlib.Path(jetclass or DEFAULT_JETCLASS)
    top = pathlib.Path(top or DEFAULT_TOP)
    for p, what in ((jetclass, "JetClass-style sample (python -m experiments.jetclass.run)"),
                    (top, "generated top-tagging sample (hepjax generate top-tagging)")):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file; expected the {what}")
    t_start = time.perf_counter()

    # the per-particle inputs of both stages must be the same features, in the same order
    pre_cfg = pretrain_config(cfg, jetclass)
    ft_probe = finetune_config(cfg, top, cfg["sizes"][0], 0)
    names_pre = jetclass_generation.load_splits(pre_cfg.data, ("val",))["feature_names"]
    names_ft = top_tagging.load_splits(ft_probe.data, ("val",))["feature_names"]
    if tuple(names_pre) != tuple(names_ft):
        raise ValueError(f"input features differ: JetClass {names_pre} vs top tagging {names_ft}")
    log(f"inputs (both stages): {list(names_pre)}")

    # 1. pre-training
    pre_dir = pathlib.Path(init_from) if init_from else workdir / "pretrain"
    pre_s = 0.0 if init_from else _train(pre_cfg, pre_dir, log)
    pre = multiclass_metrics(pre_dir)
    pre["wall_s"] = pre_s
    pre["sizes"] = json.loads((pre_dir / "data_sizes.json").read_text())
    pre["history"] = _history(pre_dir)
    log(f"pre-trained: accuracy {pre['accuracy']:.3f}, macro AUC {pre['macro_auc']:.3f}")

    # 2. fine-tuned vs scratch
    rows = []
    for n in cfg["sizes"]:
        for seed in cfg["seeds"]:
            row = {"n_train": int(n), "seed": int(seed)}
            for arm, src in (("scratch", ""), ("finetune", pre_dir)):
                d = workdir / f"{arm}_n{n}_s{seed}"
                dt = _train(finetune_config(cfg, top, n, seed, src), d, log)
                hist = _history(d)
                row[arm] = {**binary_metrics(d, cfg["bootstrap"]), "wall_s": dt,
                            "steps": max(h.get("step", 0) for h in hist),
                            "val": [{"step": h["step"], "loss": h["loss"], "auc": h.get("auc")}
                                    for h in hist if h.get("split") == "val"]}
                row[arm]["best_step"] = min(row[arm]["val"], key=lambda v: v["loss"])["step"]
            log(f"N={n} seed={seed}: scratch AUC {row['scratch']['auc']:.4f} "
                f"R30 {row['scratch']['r30']:.1f}; fine-tuned AUC {row['finetune']['auc']:.4f} "
                f"R30 {row['finetune']['r30']:.1f}")
            rows.append(row)

    summary = []
    for n in cfg["sizes"]:
        rs = [r for r in rows if r["n_train"] == n]
        s = {"n_train": int(n), "n_seeds": len(rs)}
        for m in ("auc", "r30"):
            for arm in ("scratch", "finetune"):
                s[f"{arm}_{m}"] = _spread([r[arm][m] for r in rs])
            s[f"diff_{m}"] = _spread([r["finetune"][m] - r["scratch"][m] for r in rs])
        summary.append(s)
    small = summary[0]
    margin = small["finetune_auc"]["mean"] - small["scratch_auc"]["mean"]
    spread = max(small["finetune_auc"]["std"], small["scratch_auc"]["std"])
    results = {
        "variant": variant, "model": cfg.get("model_name", "part"), "config": cfg,
        "jetclass_sample": str(jetclass),
        "top_sample": str(top), "input_features": list(names_pre),
        "pretrain": pre, "runs": rows, "summary": summary,
        "bar": {"n_train": small["n_train"], "auc_margin": margin, "largest_seed_spread": spread,
                "finetune_beats_scratch_beyond_spread": bool(margin > spread)},
        "wall_s": time.perf_counter() - t_start, "environment": environment()}
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (workdir / "table.md").write_text(table(results))
    _plot(results, workdir)
    log(table(results))
    return results


def table(r) -> str:
    p = r["pretrain"]
    lines = [f"Pre-training (JetClass-style test split, {p['n_test']} jets, {p['n_qcd']} QCD): "
             f"accuracy {p['accuracy']:.3f} ± {p['accuracy_err']:.3f}, macro AUC "
             f"{p['macro_auc']:.3f}", "",
             "| class | one-vs-rest AUC | 1/ε_B (QCD) | at ε_S |", "|---|---|---|---|"]
    for name, rej in p["rejection"].items():
        v = rej["value"]
        cell = (f"{v:.1f} ± {rej['err']:.1f} ({rej['n_qcd_pass']:.0f} QCD jets pass)"
                if np.isfinite(v) else f"> {p['n_qcd']} (no QCD jet passes)")
        lines.append(f"| {name} | {p['auc_per_class'][name]:.3f} | {cell} | {rej['eff_s']} |")
    n_test = r["runs"][0]["scratch"]["n_test"]
    lines += ["", f"Top tagging, generated test split ({n_test} jets); mean ± seed-to-seed "
              f"standard deviation over {r['summary'][0]['n_seeds']} seeds; diff = fine-tuned − "
              "scratch paired by seed", "",
              "| training jets | AUC scratch | AUC fine-tuned | AUC diff | 1/ε_B(0.3) scratch | "
              "1/ε_B(0.3) fine-tuned | 1/ε_B diff |", "|---|---|---|---|---|---|---|"]
    for s in r["summary"]:
        def ms(d, f):
            return f"{d['mean']:{f}} ± {d['std']:{f}}"
        lines.append(f"| {s['n_train']} | {ms(s['scratch_auc'], '.4f')} | "
                     f"{ms(s['finetune_auc'], '.4f')} | {s['diff_auc']['mean']:+.4f} ± "
                     f"{s['diff_auc']['std']:.4f} | {ms(s['scratch_r30'], '.1f')} | "
                     f"{ms(s['finetune_r30'], '.1f')} | {s['diff_r30']['mean']:+.1f} ± "
                     f"{s['diff_r30']['std']:.1f} |")
    b = r["bar"]
    lines += ["", f"Bar (N = {b['n_train']}): AUC margin {b['auc_margin']:+.4f} vs largest seed "
              f"spread {b['largest_seed_spread']:.4f}: "
              f"{'met' if b['finetune_beats_scratch_beyond_spread'] else 'not met'}"]
    return "\n".join(lines) + "\n"


def _plot(r, workdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    n = [s["n_train"] for s in r["summary"]]
    for ax, m, title in zip(axes, ("auc", "r30"), ("AUC", "1/ε_B at ε_S = 0.3")):
        for arm, style, label in (("scratch", "o-", "from scratch"),
                                  ("finetune", "s-", "fine-tuned (JetClass-style pre-training)")):
            ax.errorbar(n, [s[f"{arm}_{m}"]["mean"] for s in r["summary"]],
                        yerr=[s[f"{arm}_{m}"]["std"] for s in r["summary"]], fmt=style,
                        capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xticks(n, [str(v) for v in n])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("top-tagging training jets")
        ax.set_title(f"{r.get('model', 'part')}, {title}")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(workdir / "learning_curve.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="cpu")
    parser.add_argument("--workdir", default="runs/jetclass_finetune")
    parser.add_argument("--jetclass", default=None, help=f"default {DEFAULT_JETCLASS}")
    parser.add_argument("--top", default=None, help=f"default {DEFAULT_TOP}")
    parser.add_argument("--init-from", default=None,
                        help="skip pre-training: a finished pre-training run directory")
    args = parser.parse_args(argv)
    run(args.variant, args.workdir, args.jetclass, args.top, args.init_from)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
