"""Quark vs gluon jets: the Energy Flow Networks paper's PFN, PFN-ID and EFN on a sample generated
with the paper's recipe, ours beside theirs.

Komiske, Metodiev, Thaler, "Energy Flow Networks: Deep Sets for Particle Jets", JHEP 01 (2019)
121 (arXiv:1810.05165), section 4, on the energyflow ``qg_jets`` recipe: Pythia 8
qqbar -> Z(->nu nu) + g and qg -> Z(->nu nu) + (u, d, s) at 14 TeV with MPI, the hardest anti-kT
R = 0.4 jet with 500 < pT < 550 GeV, |y| < 1.7, generator-level particles; 2M jets.

    python -m experiments.quark_gluon.run --variant smoke|cpu [--workdir DIR] [--n-jets N]
        [--gen-minutes M] [--gen-workers W] [--gen-only] [--data-path FILE] [--epochs E] [--efn-epochs E] [--patience P] [--length-sort-window W] [--batch-size B]
        [--seed S] [--init torch|he] [--adam-eps EPS]
        [--models pfn_id,pfn,efn,pfn_onehot[,particlenet,particlenet_id,part,part_id]]
        [--curve-models pfn_id] [--curve-fractions 0.1,0.3]

1. Data (``hepjax.data.quark_gluon``): with ``--n-jets N`` exactly that sample (generated once and
   cached under ~/.cache/hepjax or $HEPJAX_CACHE); otherwise (cpu) chunks are simulated for
   ``--gen-minutes`` by ``--gen-workers`` processes into the seed's chunk pool, the class with
   fewer jets next, and the sample is the largest the pool covers (``--gen-only`` only grows the
   pool, e.g. over several sessions with ``HEPJAX_CACHE`` on a disk that persists)
   (a later run with that ``--n-jets`` reproduces it without simulating). Splits: 60 % train,
   30 % test, 10 % validation, seeded.
2. Training (``hepjax.train.experiment.train``, the configs ``hepjax/configs/quark_gluon_pfn.py``
   and ``quark_gluon_efn.py``; optionally ``quark_gluon_particlenet.py`` / ``quark_gluon_part.py``):
   PFN on (z, y, phi), PFN-ID with energyflow's PDG-id float, PFN with one-hot detector
   classes, EFN; Adam 1e-3, batch ``--batch-size`` (default the configs' 64: the energyflow
   examples' 500 gives too few updates an epoch below ~10^5 training jets),
   early stopping on the validation loss (patience 6 or ``--patience``, best checkpoint restored), at most
   ``--epochs`` (``--efn-epochs`` for the EFN). A learning curve: ``--curve-models`` on nested
   ``--curve-fractions`` of the training jets, each with the batch scaled by the fraction
   (at least 32), so that every point makes the same number of updates per epoch and only the
   number of distinct training jets changes.
3. Evaluation on the test split: the AUC with its bootstrap error (200 resamples, seeded) and
   1/eps_g at eps_q = 0.5 with the Poisson error of the passing gluon jets; the paper's AUCs
   beside ours; the constituent multiplicity alone as a baseline; paired bootstrap differences
   of every tagger from the PFN on the same test jets.

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
# section 4 comparing PFN-ID, PFN-Ex, PFN-Ch, PFN, EFN with EFPs and CNNs on 2M Pythia jets),
# as recalled: the stored sources searched could not confirm them (README, "Where the paper's
# AUCs come from").
PAPER_AUC = {"pfn_id": 0.9052, "pfn_onehot": 0.9005, "pfn": 0.8911, "efn": 0.8824}
PAPER_NAME = {"pfn_id": "PFN-ID", "pfn_onehot": "PFN-Ex", "pfn": "PFN", "efn": "EFN"}
LABEL = {"pfn": "PFN (z, y, phi)", "pfn_id": "PFN-ID (+ PDG-id float)",
         "pfn_onehot": "PFN + one-hot detector classes", "efn": "EFN (IRC safe)",
         "particlenet": "ParticleNet (log z, y, phi)", "particlenet_id": "ParticleNet + PDG-id float",
         "part": "ParT (log z, y, phi + pairs)", "part_id": "ParT + PDG-id float"}
MODELS = ("pfn_id", "pfn", "efn", "pfn_onehot")
EXTRA_MODELS = ("particlenet", "particlenet_id", "part", "part_id")
BOOTSTRAP = 200
SEED = 0          # the network seed (config.seed); the data seed is the section's (2019)


def model_config(name: str, variant: str):
    from hepjax.configs import (quark_gluon_efn, quark_gluon_part, quark_gluon_particlenet,
                                quark_gluon_pfn)

    tail = "smoke" if variant == "smoke" else "cpu"
    if name == "efn":
        return quark_gluon_efn.get_config(tail)
    family, _, pid = name.partition("_")
    pid = {"": "none", "id": "id", "onehot": "onehot"}[pid]
    module = {"pfn": quark_gluon_pfn, "particlenet": quark_gluon_particlenet,
              "part": quark_gluon_part}[family]
    return module.get_config(f"{pid},{tail}")


def fill_pool(args) -> int:
    """Simulates into the chunk pool for ``--gen-minutes``; returns the sample size it covers."""
    from hepjax.data import quark_gluon

    def progress(covered, seconds):
        print(f"generation: {covered} jets after {seconds:.0f} s", flush=True)
    return quark_gluon.fill_chunk_pool(model_config("pfn", args.variant).data,
                                       60.0 * args.gen_minutes, args.max_jets, progress,
                                       workers=args.gen_workers)


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
        n = fill_pool(args)
    cfg.n_jets = n
    start = time.perf_counter()
    path = quark_gluon.generate_cached(cfg)
    print(f"sample: {path} ({n} jets, {time.perf_counter() - start:.0f} s to write/read)", flush=True)
    return n


def train_one(name: str, args, n_jets: int, fraction: float = 1.0) -> dict:
    from hepjax.train import experiment

    config = model_config(name, args.variant)
    config.seed = args.seed
    config.data.n_jets = n_jets
    config.data.path = args.data_path
    config.data.train_fraction = fraction
    if args.variant != "smoke":
        epochs = args.efn_epochs if name == "efn" and args.efn_epochs else args.epochs
        if epochs:
            config.train.num_epochs = epochs
        if args.patience:
            config.train.early_stopping.patience = args.patience
        if args.length_sort_window >= 0:
            config.train.length_sort_window = args.length_sort_window
        if args.batch_size and name in MODELS:
            config.train.batch_size = args.batch_size
        if args.init and name in MODELS:
            config.model.init = args.init
        if args.adam_eps:
            config.optimizer.eps = args.adam_eps
        # the same updates per epoch at every point of the learning curve
        config.train.batch_size = max(32, int(round(config.train.batch_size * fraction)))
    tag = name if fraction == 1.0 else f"{name}_f{fraction:g}"
    workdir = pathlib.Path(args.workdir) / tag
    timing = workdir / "wall_seconds.json"
    if not (timing.is_file() and (workdir / "test_outputs.npz").is_file()):
        start = time.perf_counter()   # a finished run is read back, not trained again
        experiment.train(config, workdir)
        timing.write_text(json.dumps(round(time.perf_counter() - start, 1)))
    return summarise(name, workdir, fraction, json.loads(timing.read_text()))


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
    spec = json.loads((workdir / "spec.json").read_text())
    return {"model": name, "fraction": fraction, "train_jets": sizes["train"],
            "val_jets": sizes["val"], "test_jets": sizes["test"], "auc": auc.value,
            "auc_err": auc.std, "rej50": rej50, "rej50_err": rej50_err,
            "steps": int(last_step), "params": info["params"],
            "batch_size": spec["batch_size"],
            "epochs": round(last_step / spec["steps_per_epoch"], 2),
            "seconds": None if seconds is None else round(seconds, 1),
            "paper_auc": PAPER_AUC.get(name) if fraction == 1.0 else None,
            "workdir": str(workdir)}


def write_outputs(rows: list[dict], args, n_jets: int, gen_info: dict) -> str:
    from hepjax import plots

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    full = [r for r in rows if r["fraction"] == 1.0]
    paired = paired_differences(full)
    lines = ["| tagger | ours: test AUC | paper AUC | ours - paper | ours - our PFN (paired) "
             "| ours: 1/eps_g at eps_q = 0.5 | train / val / test jets | batch | updates (epochs) "
             "| train time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in full:
        paper = r["paper_auc"]
        diff = f"{r['auc'] - paper:+.4f} ± {r['auc_err']:.4f}" if paper else ""
        paper_text = f"{paper:.4f} ({PAPER_NAME[r['model']]})" if paper else ""
        pair = paired.get(r["model"])
        pair_text = f"{pair[0]:+.4f} ± {pair[1]:.4f}" if pair else ""
        r["minus_pfn_paired"] = pair
        lines.append(f"| {LABEL[r['model']]} | {r['auc']:.4f} ± {r['auc_err']:.4f} | {paper_text} "
                     f"| {diff} | {pair_text} | {r['rej50']:.1f} ± {r['rej50_err']:.1f} "
                     f"| {r['train_jets']} / {r['val_jets']} / {r['test_jets']} "
                     f"| {r['batch_size']} | {r['steps']} ({r['epochs']:g}) | {r['seconds']} s |")
    base = multiplicity_baseline(args, n_jets, full)
    if base:
        lines.append(f"| constituent multiplicity alone (no training) | {base['auc']:.4f} ± "
                     f"{base['auc_err']:.4f} | | | | {base['rej50']:.1f} | {base['test_jets']} test "
                     "| | | |")
    curve = [r for r in rows if r["fraction"] != 1.0]
    if curve:
        lines += ["", "Learning curve (the same test jets; nested subsets of the training jets, "
                  "the batch scaled with the subset):", "",
                  "| tagger | train jets | batch | updates (epochs) | test AUC |",
                  "|---|---|---|---|---|"]
        for r in sorted(rows, key=lambda r: (r["model"], r["train_jets"])):
            if any(c["model"] == r["model"] for c in curve):
                lines.append(f"| {LABEL[r['model']]} | {r['train_jets']} | {r['batch_size']} "
                             f"| {r['steps']} ({r['epochs']:g}) | {r['auc']:.4f} ± "
                             f"{r['auc_err']:.4f} |")
    table = "\n".join(lines)
    suffix = args.variant
    (out / f"table_{suffix}.md").write_text(table + "\n")
    result = {"variant": args.variant, "n_jets": n_jets, "data_seed": 2019, "network_seed": args.seed,
              "bootstrap_resamples": BOOTSTRAP, "init": args.init or "config", "adam_eps": args.adam_eps or "config",
              "generation": gen_info, "rows": rows,
              "multiplicity_baseline": base, "paper_auc": PAPER_AUC,
              "environment": _environment()}
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


def _scores(row: dict) -> tuple[np.ndarray, np.ndarray]:
    saved = np.load(pathlib.Path(row["workdir"]) / "test_outputs.npz")
    labels = np.asarray(saved["labels"]).astype(np.int64)
    return labels, np.asarray(saved["outputs"], np.float64).reshape(len(labels), -1)[:, -1]


def paired_differences(full: list[dict], reference: str = "pfn", seed: int = 3) -> dict:
    """{model: (AUC - the reference's AUC, its bootstrap std)} on the same test jets: each of
    ``BOOTSTRAP`` resamples (seeded) draws one set of jets for both taggers."""
    from hepjax import metrics

    ref = [r for r in full if r["model"] == reference]
    if not ref:
        return {}
    labels, ref_scores = _scores(ref[0])
    draws = np.random.default_rng(seed).integers(0, len(labels), (BOOTSTRAP, len(labels)))
    out = {}
    for r in full:
        if r["model"] == reference:
            continue
        other_labels, scores = _scores(r)
        if not np.array_equal(other_labels, labels):
            continue   # a different test set (another --data-path): no pairing
        diffs = [metrics.roc_auc(labels[i], scores[i]) - metrics.roc_auc(labels[i], ref_scores[i])
                 for i in draws]
        out[r["model"]] = (float(metrics.roc_auc(labels, scores) - metrics.roc_auc(labels, ref_scores)),
                           float(np.std(diffs)))
    return out


_BASELINE = {}


def multiplicity_baseline(args, n_jets: int, full: list[dict]) -> dict | None:
    """The test jets' constituent count as the score (fewer: quark), the tagger-free baseline."""
    from hepjax import metrics
    from hepjax.data import quark_gluon

    if not full:
        return None
    key = (args.data_path, n_jets)
    if key not in _BASELINE:
        cfg = model_config("pfn", args.variant).data
        cfg.n_jets, cfg.path = n_jets, args.data_path
        test = quark_gluon.load_jets(cfg)["test"]
        labels = np.asarray(test["label"], np.int64)
        if not np.array_equal(labels, _scores(full[0])[0]):
            return None
        score = -np.asarray(test["mask"], bool).sum(1).astype(np.float64)
        auc = metrics.bootstrap(metrics.roc_auc, labels, score, BOOTSTRAP, seed=1)
        counts = -score
        _BASELINE[key] = {
            "auc": auc.value, "auc_err": auc.std, "test_jets": int(len(labels)),
            "rej50": float(metrics.background_rejection(labels, score, 0.5)),
            "mean_constituents_quark": float(counts[labels == 1].mean()),
            "mean_constituents_gluon": float(counts[labels == 0].mean()),
            "max_constituents": int(counts.max())}
    return _BASELINE[key]


def _environment() -> dict:
    from hepjax.train import logging as train_logging

    return train_logging.environment("pythia8mc", "fastjet")


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
    parser.add_argument("--gen-workers", type=int, default=1,
                        help="processes simulating chunks at once (the jets do not depend on it)")
    parser.add_argument("--max-jets", type=int, default=2_000_000)
    parser.add_argument("--gen-only", action="store_true",
                        help="only simulate into the chunk pool for --gen-minutes, print its size")
    parser.add_argument("--epochs", type=int, default=0, help="maximum epochs (default: the config's)")
    parser.add_argument("--efn-epochs", type=int, default=0,
                        help="maximum epochs of the EFN (default: --epochs)")
    parser.add_argument("--patience", type=int, default=0,
                        help="early-stopping patience in epochs (default: the config's, 6)")
    parser.add_argument("--length-sort-window", type=int, default=-1,
                        help="batches of similar lengths from windows of this many batches "
                             "(default: the config's, 0 = off; the 2026-12-07 table used 8)")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="batch of the PFNs and the EFN (cpu variant; default: the config's "
                             "64; the energyflow examples' 500 once the sample is large)")
    parser.add_argument("--seed", type=int, default=SEED, help="the networks' seed (config.seed)")
    parser.add_argument("--init", choices=("", "torch", "he"), default="",
                        help="initialisation of the PFNs and the EFN (default: the configs'; "
                             "'he' is energyflow's: He-uniform kernels, Glorot output, zero biases)")
    parser.add_argument("--adam-eps", type=float, default=0.0,
                        help="Adam's epsilon (default: optax's 1e-8; Keras' is 1e-7)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--curve-models", default="pfn_id")
    parser.add_argument("--curve-fractions", default="0.1,0.3")
    args = parser.parse_args(argv)
    args.workdir = args.workdir or f"runs/quark_gluon/{args.variant}"
    names = [m for m in args.models.split(",") if m]
    known = MODELS + EXTRA_MODELS
    unknown = [m for m in names + args.curve_models.split(",") if m and m not in known]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {known}")
    start = time.perf_counter()
    if args.gen_only:   # grow the chunk pool (across sessions: it persists in the cache dir)
        n = fill_pool(args)
        print(f"the pool covers {n} jets (use --n-jets {n})", flush=True)
        return 0
    n_jets = prepare_data(args)
    gen_info = {"seconds": round(time.perf_counter() - start, 1), "n_jets": n_jets}
    jobs = [(name, 1.0) for name in names]
    fractions = [float(f) for f in args.curve_fractions.split(",") if f]
    jobs += [(name, f) for name in args.curve_models.split(",") if name for f in fractions]
    rows, table = [], ""
    for name, fraction in jobs:   # the outputs are rewritten after every run: a killed
        rows.append(train_one(name, args, n_jets, fraction))   # experiment keeps what it made
        table = write_outputs(rows, args, n_jets, gen_info)
    print(table)
    return 0


if __name__ == "__main__":
    from hepjax import runtime

    runtime.reexec_with_tuned_allocator()
    raise SystemExit(main())
