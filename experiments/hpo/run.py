"""Grid vs Bayesian (TPE) vs random search on the MLP top tagger: trials needed to reach the
best grid result.

    PYTHONPATH=. python experiments/hpo/run.py --variant smoke|cpu --workdir runs/hpo

Every trial is a real training run (``hepjax.hpo.tune``: a normal run directory per trial, the
study in SQLite) of ``hepjax.configs.top_tagging_mlp`` (6000 cached Pythia 8 jets: 3600 train,
1200 validation, 1200 test; short runs of 200 steps of 128 jets, about 7 epochs, warm-up 20
steps and cosine decay) over a two-parameter space: the peak
learning rate (log scale) and the dropout rate. The objective is the best validation AUC of the
run; the test AUC of each trial is recorded and never used to choose.

* grid: the 4 x 3 grid (learning rate log-spaced 1e-4 ... 1e-1, dropout 0, 0.25, 0.5), all
  12 points trained once (training is deterministic, so a grid point's value does not depend on
  when it is visited). Optuna's grid sampler visits the points in a seeded random order; for
  sampler seeds 1, 2, ... the order is replayed from the same sampler (``GridSampler(seed=s)``)
  on the measured values, which is exactly what a fresh grid study with that seed would see.
* TPE (multivariate, 5 random start-up trials) and random search, ``N_TRIALS`` trials each, on
  the continuous space, for ``SEEDS`` sampler seeds.

``--variant cpu4d-discrete`` (or ``smoke-discrete``): TPE, random search and the grid's order
replayed for many sampler seeds on the 81-point grid's own discrete space, with the stored grid
objectives as a look-up (``discrete.py``; arguments there).

``--variant cpu4d``: the same trials over four parameters (``SPACE_4D``: learning rate, weight
decay, dropout, network width/depth), a 3 x 3 x 3 x 3 = 81-point grid, 40 adaptive trials per
seed; a grid visited in random order needs (81 + 1) / (k + 1) trials on average to hit one of
its k best points (written as ``grid_expected_random_order``).

"Trials to reach the grid best": the first trial whose validation AUC is at least the best
grid point's (a grid search needs all 12 of its trials to know it has the best); also the first
trial within one statistical standard error of it (Hanley-McNeil error of the validation AUC),
since validation AUCs of good settings differ by less than their error. Writes
``WORKDIR/results.json``, ``WORKDIR/trials_to_grid_best.png`` and each study's own results
(``WORKDIR/<sampler>_seed<s>/``).
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import time

import numpy as np

from hepjax import hpo

CONFIG = "hepjax.configs.top_tagging_mlp"
SPACE_GRID = ["optimizer.learning_rate=loguniform(1e-4, 1e-1, n=4)",
              "model.dropout=uniform(0.0, 0.5, n=3)"]
# four parameters, 3 grid points each (81 grid trials): learning rate, decoupled weight decay,
# dropout and the network (width and depth together)
SPACE_4D = ["optimizer.learning_rate=loguniform(1e-4, 1e-1, n=3)",
            "optimizer.weight_decay=loguniform(1e-5, 1e-1, n=3)",
            "model.dropout=uniform(0.0, 0.5, n=3)",
            "model.hidden=choice((32, 32), (64, 64, 64), (128, 128, 128))"]
SHORT = ["--config.train.num_steps=200", "--config.train.eval_every=100",
         "--config.train.log_every=100", "--config.train.checkpoint_every=200",
         "--config.optimizer.schedule.warmup_steps=20"]
VARIANTS = {
    "cpu": {"config": CONFIG, "seeds": (0, 1, 2), "n_trials": 12, "overrides": SHORT},
    "cpu4d": {"config": CONFIG, "seeds": (0, 1, 2), "n_trials": 40, "space": SPACE_4D,
              "overrides": SHORT},
    "smoke": {"config": CONFIG + ":smoke", "seeds": (0,), "n_trials": 3,
              "space": ["optimizer.learning_rate=loguniform(1e-3, 1e-2, n=2)",
                        "model.dropout=uniform(0.0, 0.2, n=2)"],
              "overrides": ["--config.train.num_steps=20", "--config.train.eval_every=10",
                            "--config.train.log_every=10", "--config.train.checkpoint_every=20",
                            "--config.optimizer.schedule.warmup_steps=2"]},
}


def _values(study_dir):
    import csv

    with (pathlib.Path(study_dir) / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    return [float(r["objective"]) if r["objective"] else math.nan for r in rows], rows


def _first_reaching(values, target) -> int | None:
    """1-based index of the first value >= target (None: never)."""
    for i, v in enumerate(values):
        if math.isfinite(v) and v >= target - 1e-12:
            return i + 1
    return None


def _key(params, raw: dict) -> tuple:
    """A grid point as a hashable key: Optuna's raw parameter values (a choice's index), in
    the space's order, floats to 12 significant digits."""
    return tuple(float(f"{float(raw[p.path]):.12g}") for p in params)


def _grid_points(study_dir, params) -> tuple[dict, list]:
    """{grid point: objective} and the visiting order of the grid study in ``study_dir``."""
    import optuna

    study = optuna.load_study(study_name="hepjax", storage=f"sqlite:///{study_dir}/study.db")
    trials = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)),
                    key=lambda t: t.number)
    return ({_key(params, t.params): t.value for t in trials},
            [_key(params, t.params) for t in trials])


def _grid_order(params, seed, n) -> list[tuple]:
    """The order in which Optuna's GridSampler(seed) visits the grid (keys as ``_key``)."""
    import optuna

    grid = {p.path: p.grid(0) for p in params}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=seed))
    order = []

    def record(trial):
        for p in params:
            p.suggest(trial)
        order.append(_key(params, trial.params))
        return 0.0

    study.optimize(record, n_trials=n)
    return order


def _expected_first_hit(n: int, k: int) -> float:
    """Expected position of the first of k marked points among n visited in uniformly random
    order: (n + 1) / (k + 1)."""
    return (n + 1) / (k + 1)


def _auc_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (Radiology 143 (1982) 29) standard error of an AUC."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def main(argv=None) -> dict:
    from experiments.hpo import discrete

    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--variant", default="cpu")
    if first.parse_known_args(argv)[0].variant in discrete.VARIANTS:
        return discrete.main(argv)      # the grid's own discrete space (discrete.py)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS) + sorted(discrete.VARIANTS),
                        default="cpu")
    parser.add_argument("--workdir", default="runs/hpo")
    parser.add_argument("--samplers", default="tpe,random")
    parser.add_argument("--seeds", default=None,
                        help="sampler seeds, comma-separated (default: the variant's); studies "
                             "already in WORKDIR resume")
    args = parser.parse_args(argv)
    v = dict(VARIANTS[args.variant])
    if args.seeds:
        try:
            v["seeds"] = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            raise SystemExit(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
    workdir = pathlib.Path(args.workdir)
    space = v.get("space", SPACE_GRID)
    params = hpo.load_space(space)
    # search space of the adaptive samplers: the grid's bounds, continuous
    continuous = [re.sub(r",\s*n=\d+\)", ")", s) for s in space]
    t0 = time.perf_counter()
    grid_points = int(np.prod([len(p.grid(0)) for p in params]))
    grid = hpo.tune(v["config"], space, study_dir=workdir / "grid_seed0", sampler="grid",
                    n_trials=grid_points, seed=0, overrides=v["overrides"], pruner="none")
    by_point, actual_order = _grid_points(workdir / "grid_seed0", params)
    grid_best = max(by_point.values())
    curves = {"grid": {}, **{s: {} for s in args.samplers.split(",")}}
    reached = {name: {} for name in curves}
    for seed in v["seeds"]:
        order = _grid_order(params, seed, grid_points)
        if seed == 0 and order != actual_order:   # the replay is what the grid study did
            raise RuntimeError("experiments/hpo: GridSampler(seed=0) replay differs from the "
                               f"grid study's own order in {workdir / 'grid_seed0'}")
        values = [by_point[point] for point in order]
        curves["grid"][seed] = values
        reached["grid"][seed] = _first_reaching(values, grid_best)
        for sampler in args.samplers.split(","):
            study_dir = workdir / f"{sampler}_seed{seed}"
            hpo.tune(v["config"], continuous, study_dir=study_dir, sampler=sampler,
                     n_trials=v["n_trials"], seed=seed, overrides=v["overrides"], pruner="none")
            values, _ = _values(study_dir)
            curves[sampler][seed] = values
            reached[sampler][seed] = _first_reaching(values, grid_best)
    best_test = {}
    for name in curves:
        folder = "grid_seed0" if name == "grid" else None
        for seed in v["seeds"]:
            d = workdir / (folder or f"{name}_seed{seed}")
            summary = json.loads((d / "summary.json").read_text())
            best_test.setdefault(name, {})[seed] = {"val_auc": summary["best_value"],
                                                    "test_auc": summary["best_test"].get("auc"),
                                                    "values": summary["best_values"]}
    sizes = json.loads((pathlib.Path(grid["best_workdir"]) / "data_sizes.json").read_text())
    labels = np.load(pathlib.Path(grid["best_workdir"]) / "test_outputs.npz")["labels"]
    sigma_val = _auc_error(grid_best, sizes["val"] // 2, sizes["val"] - sizes["val"] // 2)
    within = {name: {seed: _first_reaching(values, grid_best - sigma_val)
                     for seed, values in per_seed.items()} for name, per_seed in curves.items()}
    n_best = sum(val >= grid_best - 1e-12 for val in by_point.values())
    n_sigma = sum(val >= grid_best - sigma_val - 1e-12 for val in by_point.values())
    grid_expected = {"grid_best": _expected_first_hit(grid_points, n_best),
                     "grid_best_minus_1sigma": _expected_first_hit(grid_points, n_sigma),
                     "points_at_grid_best": n_best, "points_within_1sigma": n_sigma}
    for name in best_test:
        for seed, entry in best_test[name].items():
            auc = entry["test_auc"]
            entry["test_auc_stat_error"] = _auc_error(auc, int(labels.sum()),
                                                      int(len(labels) - labels.sum()))
    result = {"variant": args.variant, "config": v["config"], "overrides": v["overrides"],
              "space_grid": space, "space_continuous": continuous, "grid_points": grid_points,
              "grid_best_val_auc": grid_best, "grid_best_values": grid["best_values"],
              "val_auc_stat_error": sigma_val,
              "trials_to_grid_best_minus_1sigma": within,
              "grid_expected_random_order": grid_expected,
              "data_sizes": sizes, "n_trials": v["n_trials"], "seeds": list(v["seeds"]),
              "trials_to_grid_best": reached, "curves": curves, "best": best_test,
              "seconds": time.perf_counter() - t0}
    (workdir / "results.json").write_text(json.dumps(result, indent=1, default=str))
    plot(result, workdir / "trials_to_grid_best.png")
    return result


def plot(result, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = {"grid": "C0", "tpe": "C3", "random": "C2", "gp": "C1"}
    for name, per_seed in result["curves"].items():
        for i, (seed, values) in enumerate(sorted(per_seed.items())):
            best = hpo.best_so_far(values, "maximize")
            ax.step(np.arange(1, len(best) + 1), best, where="post", color=colours.get(name, "k"),
                    alpha=0.8, lw=1.4, label=f"{name}" if i == 0 else None)
    ax.axhline(result["grid_best_val_auc"], color="k", ls="--", lw=1, label="best grid point")
    sigma = result["val_auc_stat_error"]
    ax.axhspan(result["grid_best_val_auc"] - sigma, result["grid_best_val_auc"], color="0.85",
               label="best grid point - 1 sigma (stat.)")
    expected = result.get("grid_expected_random_order", {}).get("grid_best")
    if expected:
        ax.axvline(expected, color="C0", ls=":", lw=1.2,
                   label=f"grid, random order: expected {expected:.1f} trials")
    ax.set_ylim(result["grid_best_val_auc"] - max(4 * sigma, 0.01),
                result["grid_best_val_auc"] + max(sigma, 0.003))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("trial")
    ax.set_ylabel("best validation AUC so far")
    ax.set_title(f"MLP top tagger, {len(result['space_grid'])} parameters, "
                 f"{result['grid_points']}-point grid: sampler seeds {result['seeds']}",
                 fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
