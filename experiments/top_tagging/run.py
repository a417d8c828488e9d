"""Train and test every landscape tagger, then write the table and the ROC plot.

    python -m experiments.top_tagging.run --models all [--smoke] [--workdir runs/top_tagging]
        [--data-path DIR] [--n-jets N] [--ensemble K] [--config.section.field=value ...]

Each model is trained by ``hepjax.train.experiment.train`` from
``experiments/top_tagging/config.py:MODEL`` into ``WORKDIR/MODEL`` (a finished model is not
retrained: its run directory resumes at the end). Writes ``WORKDIR/table.md``,
``WORKDIR/table.json`` and ``WORKDIR/roc.png`` (background rejection 1/eps_B against signal
efficiency, log scale, as in the landscape paper). With ``--ensemble K`` each tagger is K
independently seeded trainings in one vmapped step: the table gives the single-model mean and
spread, and the mean- and median-ensemble numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import pathlib
import time

import numpy as np

from hepjax import config as config_lib
from hepjax import metrics, plots
from hepjax.train import experiment
from hepjax.train import spec as spec_lib
from hepjax.train.logging import read_metrics

from experiments.top_tagging.config import MODELS

CONFIG = pathlib.Path(__file__).with_name("config.py")

# Published single-model numbers on the reference dataset (1.2M training, 404k test jets), each
# (source, accuracy, AUC, 1/eps_B at eps_S = 0.3, 1/eps_B at eps_S = 0.5 or None). Checked
# 2026-11-25: the landscape rows (arXiv:1902.09914, Table 1) against the authors' analysis
# notebook (github.com/SebastianMacaluso/TopTagComparison, jet_study_allTaggers.ipynb: the median
# of 9 trainings, +- their spread; the table itself prints AUC to 3 decimals); the ParticleNet /
# ParT rows (ParT paper arXiv:2202.03772, Table 5) and LorentzNet (arXiv:2201.08187) as quoted in
# the L-GATr paper's Table 1 (the papers' own tables were not at hand).
PUBLISHED = {
    "particlenet": [("landscape", 0.9384, 0.9848, "1298 ± 46", None),
                    ("ParT paper", 0.940, 0.9858, "1615 ± 93", "397 ± 7")],
    "part": [("ParT paper", 0.940, 0.9858, "1602 ± 81", "413 ± 16")],
    "lorentznet": [("LorentzNet paper", 0.942, 0.9868, "2195 ± 173", "498 ± 18")],
    "pfn": [("landscape", 0.9322, 0.9819, "891 ± 18", None)],
    "cnn": [("landscape", 0.9308, 0.9814, "914 ± 14", None)],
    "lola": [("landscape", 0.9292, 0.9802, "722 ± 17", None)],
    "efn": [("landscape", 0.9265, 0.9789, "633 ± 31", None)],
}


def run_model(name: str, args, overrides) -> dict:
    variant = "smoke" if args.smoke else args.variant
    config = config_lib.load_config(f"{CONFIG}:{name}{',' + variant if variant else ''}")
    if args.data_path:
        config.data.path = args.data_path
    if args.n_jets:
        config.data.n_jets = args.n_jets
    config.train.ensemble_size = args.ensemble
    config_lib.parse_overrides(config, overrides)
    workdir = pathlib.Path(args.workdir) / name
    start = time.perf_counter()
    # each tagger trains in a fresh process: memory freed by one (kept by the tuned allocator,
    # hepjax.runtime) is not carried into the next; the computation is the same
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_train, args=(config_lib.to_json(config), str(workdir)))
    process.start()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"training {name} failed (exit status {process.exitcode}); its error is "
                           "printed above")
    wall = round(time.perf_counter() - start, 1)
    (workdir / "runner.json").write_text(json.dumps({"wall_s": wall}))
    return collect_row(name, workdir, wall)


def _train(config_json: str, workdir: str) -> None:
    experiment.train(config_lib.from_json(config_json), workdir)


def collect_row(name: str, workdir: pathlib.Path, wall_s=None) -> dict:
    """The table row of a finished run directory (test metrics, sizes, throughput) and the
    statistical uncertainty of its background rejections."""
    result = json.loads((workdir / "test_metrics.json").read_text())
    labels = np.load(workdir / "test_outputs.npz")["labels"]
    info = json.loads((workdir / "model_info.json").read_text())
    train_log = read_metrics(workdir, "train")
    resolved = json.loads((workdir / "config.json").read_text())
    data = resolved["data"]
    particles = data["max_particles"] if data["representation"] == "particles" else None
    n_background = int(np.sum(labels == 0))
    stat = {}
    for key in ("rej30", "rej50"):
        rejection = result.get(key)
        if rejection and math.isfinite(rejection) and rejection > 0:
            n_pass, stat[f"{key}_stat"] = metrics.rejection_statistics(rejection, n_background)
            stat[f"{key}_n_pass"] = max(n_pass, 1.0)
    spec = spec_lib.load(workdir)
    steps_per_epoch = spec.steps_per_epoch
    steps_run = max([r["step"] for r in train_log], default=0)
    best = read_metrics(workdir, "early_stop")
    val = read_metrics(workdir, "val")
    best_step = best[-1]["best_step"] if best else (
        min(val, key=lambda r: r["loss"])["step"] if val else None)
    return {"model": name, "params": info["params"], "wall_s": wall_s,
            "epochs_run": round(steps_run / steps_per_epoch, 2),
            "best_epoch": None if best_step is None else round(best_step / steps_per_epoch, 2),
            "train_jets": _count(workdir, "train"), "test_jets": _count(workdir, "test"),
            "test_background_jets": n_background,
            "epochs": int(spec.num_epochs) if spec.num_epochs.is_integer() else round(spec.num_epochs, 2),
            "particles": particles,
            "batch_size": spec.batch_size, "steps": spec.num_steps,
            "examples_per_s": float(np.median([r["examples_per_s"] for r in train_log])) if train_log else None,
            "recipe": resolved["recipe_source"], **result, **stat}


def rebuild_rows(names, workdir: pathlib.Path) -> list[dict]:
    """Rows of finished runs without training (``--table-only``); wall times from each run's
    runner.json, else from an earlier table.json."""
    previous = {}
    if (workdir / "table.json").exists():
        previous = {r["model"]: r.get("wall_s") for r in json.loads((workdir / "table.json").read_text())}
    rows = []
    for name in names:
        run = workdir / name
        if not (run / "test_metrics.json").exists():
            raise FileNotFoundError(f"{run}: no finished run (test_metrics.json); train it first")
        wall = (json.loads((run / "runner.json").read_text())["wall_s"]
                if (run / "runner.json").exists() else previous.get(name))
        rows.append(collect_row(name, run, wall))
    return rows


def _count(workdir, split) -> int | None:
    info = workdir / "data_sizes.json"
    return json.loads(info.read_text())[split] if info.exists() else None


def _rej(row, key) -> str:
    """'1/eps_B ± stat (n bkg)', the n background jets that pass the cut; marked '†' when fewer
    than metrics.MIN_BACKGROUND_JETS pass (statistics-limited)."""
    value, stat, n_pass = row.get(key), row.get(f"{key}_stat"), row.get(f"{key}_n_pass")
    if value is None:
        return ""
    if stat is None:
        return _fmt(value, 1)
    limited = " †" if n_pass is not None and n_pass < metrics.MIN_BACKGROUND_JETS else ""
    return f"{value:.0f} ± {stat:.0f} ({n_pass:.0f} bkg){limited}"


def _epochs(row) -> str:
    """'run / maximum (best)': early stopping may end a run before its maximum."""
    if row.get("epochs_run") is None:
        return _fmt(row.get("epochs"))
    best = "" if row.get("best_epoch") is None else f" (best {row['best_epoch']:g})"
    return f"{row['epochs_run']:g} / {_fmt(row.get('epochs'))}{best}"


def _fmt(value, digits=4):
    if value is None:
        return ""
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def write_table(rows, workdir: pathlib.Path, ensemble: int) -> str:
    head = ["tagger", "params", "accuracy", "AUC", "1/eps_B (0.3) ± stat", "1/eps_B (0.5) ± stat"]
    if ensemble > 1:
        head += ["AUC spread", "mean-ens. AUC", "median-ens. AUC", "mean-ens. 1/eps_B (0.3)"]
    head += ["train jets", "epochs run / max (best)", "particles", "examples/s", "wall s",
             "published AUC / 1/eps_B(0.3)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], str(r["params"]), _fmt(r["accuracy"]), _fmt(r["auc"]),
                 _rej(r, "rej30"), _rej(r, "rej50")]
        if ensemble > 1:
            cells += [_fmt(r.get("auc_std")), _fmt(r.get("mean_ensemble_auc")),
                      _fmt(r.get("median_ensemble_auc")), _fmt(r.get("mean_ensemble_rej30"), 1)]
        published = "; ".join(f"{auc} / {rej} ({src})" for src, _, auc, rej, _ in PUBLISHED.get(r["model"], []))
        cells += [str(r["train_jets"]), _epochs(r), _fmt(r.get("particles")) or "-",
                  _fmt(r["examples_per_s"], 0), _fmt(r.get("wall_s"), 0), published]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    if any("†" in line for line in lines[2:]):
        table += (f"\n† fewer than {metrics.MIN_BACKGROUND_JETS} background test jets pass the cut: the "
                  "rejection is statistics-limited (Poisson error >= 30 %).\n")
    (workdir / "table.md").write_text(table)
    (workdir / "table.json").write_text(json.dumps(rows, indent=2, default=str))
    return table


def plot_rocs(names, workdir: pathlib.Path) -> None:
    curves = {}
    for name in names:
        data = np.load(workdir / name / "test_outputs.npz")
        scores = data["outputs"]
        curves[name] = (data["labels"], scores.mean(axis=0) if scores.ndim == 2 else scores)
    plots.rejection_curves(curves, workdir / "roc.png", "top tagging", figsize=(6, 4.5))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="all", help="'all' or a comma-separated list of " + ", ".join(MODELS))
    parser.add_argument("--smoke", action="store_true", help="the CI variants (seconds per model)")
    parser.add_argument("--variant", default="", choices=("", "cpu"),
                        help="'cpu': the sizes a 2-core CPU finishes in under an hour for all "
                             "taggers (config.py's docstring); default: the papers' recipes")
    parser.add_argument("--workdir", default="runs/top_tagging")
    parser.add_argument("--data-path", default="", help="directory with the reference train/val/test.h5")
    parser.add_argument("--n-jets", type=int, default=0, help="generated jets (default: the config's)")
    parser.add_argument("--ensemble", type=int, default=1, help="independently seeded trainings per tagger")
    parser.add_argument("--table-only", action="store_true",
                        help="rebuild table and plot from the finished runs in WORKDIR (no training)")
    args, overrides = parser.parse_known_args(argv)
    names = MODELS if args.models == "all" else tuple(args.models.split(","))
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {MODELS}")
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        rows = rebuild_rows(names, workdir)
    else:
        rows = [run_model(name, args, overrides) for name in names]
    table = write_table(rows, workdir, args.ensemble)
    plot_rocs(names, workdir)
    print(table)
    print(f"table: {workdir / 'table.md'}, {workdir / 'table.json'}; ROC plot: {workdir / 'roc.png'}")
    return 0


if __name__ == "__main__":
    from hepjax import runtime

    runtime.reexec_with_tuned_allocator()
    raise SystemExit(main())
