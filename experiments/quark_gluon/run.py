"""Quark vs gluon jets: the Energy Flow Networks paper's PFN, PFN-ID and EFN on a sample generated
with the paper's recipe, ours beside theirs.

Komiske, Metodiev, Thaler, "Energy Flow Networks: Deep Sets for Particle Jets", JHEP 01 (2019)
121 (arXiv:1810.05165), section 4: Pythia 8 Z(->nu nu) + q / + g at 14 TeV with MPI, the hardest
anti-kT R = 0.4 jet with 500 < pT < 550 GeV, |y| < 2, generator-level particles; 2M jets.

    python -m experiments.quark_gluon.run --variant smoke|cpu [--workdir DIR] [--n-jets N]
        [--gen-minutes M] [--data-path FILE] [--epochs E] [--models pfn,pfn_id,pfn_onehot,efn]
        [--curve-models pfn_id] [--curve-fractions 0.1,0.3]

1. Data (``hepjax.data.quark_gluon``): with ``--n-jets N`` exactly that sample (generated once and
   cached under ~/.cache/hepjax); otherwise (cpu) chunks are simulated for ``--gen-minutes`` into
   the seed's chunk pool, alternating the classes, and the sample is the largest the pool covers
   (a later run with that ``--n-jets`` reproduces it without simulating). Splits: 60 % train,
   30 % test, 10 % validation, seeded.
2. Training (``hepjax.train.experiment.train``, the configs ``hepjax/configs/quark_gluon_pfn.py``
   and ``quark_gluon_efn.py``): PFN on (z, y, phi), PFN-ID with energyflow's PDG-id float, PFN
   with one-hot detector classes, EFN; Adam 1e-3, batch 64 (the paper's 500 gives too few
   updates on a CPU-sized sample), early stopping on the validation loss (best checkpoint
   restored). A learning curve: ``--curve-models`` on nested
   ``--curve-fractions`` of the training jets.
3. Evaluation on the test split: the AUC with its bootstrap error (200 resamples, seeded) and
   1/eps_g at eps_q = 0.5 with the Poisson error of the passing gluon jets; the paper's AUCs
   beside ours.

Writes into the experiment folder (``experiments/quark_gluon/``, or ``--out``): ``results_VARIANT.json``,
``table_VARIANT.md``, ``roc_VARIANT.png``, ``learning_curve_VARIANT.png``; runs under ``--workdir``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

HERE = pathlib.Path(__file__).parent

# The paper's quark/gluon AUCs (Komiske, Metodiev, Thaler, JHEP 01 (2019) 121, the table of
# section 4 comparing PFN-ID, PFN-Ex, PFN-Ch, PFN, EFN with EFPs and CNNs on 2M Pythia jets);
# see the README for where these figures were read and how firmly.
PAPER_AUC = {"pfn_id": 0.9052, "pfn_onehot": 0.9005, "pfn": 0.8911, "efn": 0.8824}
PAPER_NAME = {"pfn_id": "PFN-ID", "pfn_onehot": "PFN-Ex", "pfn": "PFN", "efn": "EFN"}
LABEL = {"pfn": "PFN (z, y, phi)", "pfn_id": "PFN-ID (+ PDG-id float)",
         "pfn_onehot": "PFN + one-hot detector classes", "efn": "EFN (IRC safe)"}
MODELS = ("pfn_id", "pfn", "efn", "pfn_onehot")
BOOTSTRAP = 200
SEED = 0          # the network seed (config.seed); the data seed is the section's (2019)


def model_config(name: str, variant: str):
    from hepjax.configs import quark_gluon_efn, quark_gluon_pfn

    tail = "smoke" if variant == "smoke" else "cpu"
    if name == "efn":
        return quark_gluon_efn.get_config(tail)
    pid = {"pfn": "none", "pfn_id": "id", "pfn_onehot": "onehot"}[name]
    return quark_gluon_pfn.get_config(f"{pid},{tail}")


def prepare_data(args) -> int:
    """Makes the cached sample; returns its number of jets."""
    from hepjax.data import quark_gluon

    cfg = model_config("pfn", args.variant).data
    if args.data_path:
        return 0
    if args.n_jets:
        n = args.n_jets
    elif args.variant == "smoke":
        n = 400
    else:
        def progress(covered, seconds):
            print(f"generation: {covered} jets after {seconds:.0f} s", flush=True)
        n = quark_gluon.fill_chunk_pool(cfg, 60.0 * args.gen_minutes, args.max_jets, progress)
    cfg.n_jets = n
    start = time.perf_counter()
    path = quark_gluon.generate_cached(cfg)
    print(f"sample: {path} ({n} jets, {time.perf_counter() - start:.0f} s to write/read)", flush=True)
    return n


def train_one(name: str, args, n_jets: int, fraction: float = 1.0) -> dict:
    from hepjax.train import experiment

    config = model_config(name, args.variant)
    config.seed = SEED
    config.data.n_jets = n_jets
    config.data.path = args.data_path
    config.data.train_fraction = fraction
    if args.epochs and args.variant != "smoke":
        config.train.num_epochs = args.epochs
    tag = name if fraction == 1.0 else f"{name}_f{fraction:g}"
    workdir = pathlib.Path(args.workdir) / tag
    start = time.perf_counter()
    experiment.train(config, workdir)
    seconds = time.perf_counter() - start
    return summarise(name, workdir, fraction, seconds)


def summarise(name: str, workdir: pathlib.Path, fraction: float, seconds: float | None) -> dict:
    from hepjax import metrics

    saved = np.load(workdir / "test_outputs.npz")
    labels = np.asarray(saved["labels"]).astype(np.int64)
    scores = np.asarray(saved["outputs"], np.float64).reshape(len(labels), -1)[:, -1]
    auc = metrics.bootstrap(metrics.roc_auc, labels, scores, BOOTSTRAP, seed=1)
    rej50 = float(metrics.background_rejection(labels, scores, 0.5))
    # the Poisson error of the gluon jets passing at eps_q = 0.5 (hepjax.metrics)
    rej50_err = (metrics.rejection_statistics(rej50, int((labels == 0).sum()))[1]
                 if np.isfinite(rej50) else float("nan"))
    sizes = json.loads((workdir / "data_sizes.json").read_text())
    steps = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    last_step = max((s.get("step", 0) for s in steps), default=0)
    info = json.loads((workdir / "model_info.json").read_text())
    return {"model": name, "fraction": fraction, "train_jets": sizes["train"],
            "val_jets": sizes["val"], "test_jets": sizes["test"], "auc": auc.value,
            "auc_err": auc.std, "rej50": rej50, "rej50_err": rej50_err,
            "steps": int(last_step), "params": info["params"],
            "seconds": None if seconds is None else round(seconds, 1),
            "paper_auc": PAPER_AUC.get(name) if fraction == 1.0 else None,
            "workdir": str(workdir)}


def write_outputs(rows: list[dict], args, n_jets: int, gen_info: dict) -> str:
    from hepjax import plots

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    full = [r for r in rows if r["fraction"] == 1.0]
    lines = ["| tagger | ours: test AUC | paper AUC | ours - paper "
             "| ours: 1/eps_g at eps_q = 0.5 | train / val / test jets | steps | train time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in full:
        paper = r["paper_auc"]
        diff = f"{r['auc'] - paper:+.4f} ± {r['auc_err']:.4f}" if paper else ""
        paper_text = f"{paper:.4f} ({PAPER_NAME[r['model']]})" if paper else ""
        lines.append(f"| {LABEL[r['model']]} | {r['auc']:.4f} ± {r['auc_err']:.4f} | {paper_text} "
                     f"| {diff} | {r['rej50']:.1f} ± {r['rej50_err']:.1f} | {r['train_jets']} / "
                     f"{r['val_jets']} / {r['test_jets']} | {r['steps']} | {r['seconds']} s |")
    curve = [r for r in rows if r["fraction"] != 1.0]
    if curve:
        lines += ["", "Learning curve (the same test jets; nested subsets of the training jets):", "",
                  "| tagger | train jets | test AUC |", "|---|---|---|"]
        for r in sorted(rows, key=lambda r: (r["model"], r["train_jets"])):
            if any(c["model"] == r["model"] for c in curve):
                lines.append(f"| {LABEL[r['model']]} | {r['train_jets']} | "
                             f"{r['auc']:.4f} ± {r['auc_err']:.4f} |")
    table = "\n".join(lines)
    suffix = args.variant
    (out / f"table_{suffix}.md").write_text(table + "\n")
    result = {"variant": args.variant, "n_jets": n_jets, "data_seed": 2019, "network_seed": SEED,
              "bootstrap_resamples": BOOTSTRAP, "generation": gen_info, "rows": rows,
              "paper_auc": PAPER_AUC}
    (out / f"results_{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    curves = {}
    for r in full:
        saved = np.load(pathlib.Path(r["workdir"]) / "test_outputs.npz")
        labels = np.asarray(saved["labels"]).astype(np.int64)
        curves[LABEL[r["model"]]] = (labels, np.asarray(saved["outputs"], np.float64).reshape(
            len(labels), -1)[:, -1])
    plots.rejection_curves(curves, out / f"roc_{suffix}.png",
                           title=f"quark (signal) vs gluon, {n_jets} generated jets")
    if curve:
        plot_learning_curve(rows, out / f"learning_curve_{suffix}.png")
    return table


def plot_learning_curve(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    names = sorted({r["model"] for r in rows if r["fraction"] != 1.0})
    for i, name in enumerate(names):
        pts = sorted((r for r in rows if r["model"] == name), key=lambda r: r["train_jets"])
        color = f"C{i}"
        ax.errorbar([r["train_jets"] for r in pts], [r["auc"] for r in pts],
                    yerr=[r["auc_err"] for r in pts], marker="o", color=color, label=f"{LABEL[name]}")
        if name in PAPER_AUC:
            ax.axhline(PAPER_AUC[name], color=color, ls="--", lw=1,
                       label=f"paper {PAPER_NAME[name]} (2M-jet sample)")
    ax.set_xscale("log")
    ax.set_xlabel("training jets")
    ax.set_ylabel("test AUC")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=("smoke", "cpu"), default="smoke")
    parser.add_argument("--workdir", default=None, help="runs (default runs/quark_gluon/VARIANT)")
    parser.add_argument("--out", default=str(HERE), help="where results, tables and plots go")
    parser.add_argument("--n-jets", type=int, default=0,
                        help="exactly this many jets (default: smoke 400; cpu: what --gen-minutes makes)")
    parser.add_argument("--data-path", default="",
                        help="an energyflow .npz (X, y; e.g. energyflow's own QG_jets files) or a "
                             "native .h5 instead of the generated sample")
    parser.add_argument("--gen-minutes", type=float, default=40.0)
    parser.add_argument("--max-jets", type=int, default=2_000_000)
    parser.add_argument("--epochs", type=int, default=0, help="maximum epochs (default: the config's)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--curve-models", default="pfn_id")
    parser.add_argument("--curve-fractions", default="0.1,0.3")
    args = parser.parse_args(argv)
    args.workdir = args.workdir or f"runs/quark_gluon/{args.variant}"
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names + args.curve_models.split(",") if m and m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {MODELS}")
    start = time.perf_counter()
    n_jets = prepare_data(args)
    gen_info = {"seconds": round(time.perf_counter() - start, 1), "n_jets": n_jets}
    rows = [train_one(name, args, n_jets) for name in names]
    fractions = [float(f) for f in args.curve_fractions.split(",") if f]
    for name in [m for m in args.curve_models.split(",") if m]:
        for fraction in fractions:
            rows.append(train_one(name, args, n_jets, fraction))
    table = write_outputs(rows, args, n_jets, gen_info)
    print(table)
    return 0


if __name__ == "__main__":
    from hepjax import runtime

    runtime.reexec_with_tuned_allocator()
    raise SystemExit(main())
