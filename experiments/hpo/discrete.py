"""Grid vs Bayesian (TPE) vs random search on the grid's own discrete space, many sampler seeds.

    PYTHONPATH=. python experiments/hpo/run.py --variant cpu4d-discrete \
        --workdir runs/hpo_cpu4d_discrete [--seeds 400] [--verify-trials 8]

(or ``python experiments/hpo/discrete.py ...`` with the same arguments). Experiment 2 of the
README trained every point of the 3 x 3 x 3 x 3 = 81-point grid (learning rate, weight decay,
dropout, network) of the MLP top tagger once. Training is deterministic (same config, same
seed: the same validation AUC bit for bit), so those 81 values *are* the objective on the
discrete 81-point space, and a search restricted to that space can be replayed exactly by
looking the values up instead of training. That makes many sampler seeds affordable:

* ``tpe``: Optuna's TPE (Bergstra, Bardenet, Bengio, Kegl, "Algorithms for Hyper-Parameter
  Optimization", NeurIPS 2011), multivariate, 5 random start-up trials (``hepjax.hpo``'s
  setting), every parameter a ``choice`` of its grid values (categorical, exactly what
  ``hepjax tune --space 'PATH=choice(v1, v2, v3)' --sampler tpe`` searches);
* ``tpe-ordered``: the same, but the three numeric parameters as ``ordered`` values
  (``PATH=ordered(v1, v2, v3)``: Optuna sees an integer index, ``suggest_int(0, 2)``, so TPE's
  kernel knows that 0.1 is next to 3.2e-3 and not to 1e-4), the network categorical;
* ``random``: Optuna's RandomSampler on the categorical space (draws with replacement);
* ``grid``: the order in which Optuna's ``GridSampler(seed=s)`` visits the 81 points of the
  original study (``run._grid_order``: random order without replacement), and its exact
  distribution: the first of k marked points among n in random order is at position > t with
  probability C(n - t, k) / C(n, k), expectation (n + 1) / (k + 1).

Every method runs until it proposes the grid's best point (at most ``--max-trials`` trials).
A trial is one proposal, repeated points included (``hepjax tune`` would train a repeated
point again); the number of distinct points tried so far is recorded too (the cost if
repeated points were answered from a cache). Targets: the grid best, and any point within one
statistical standard error (Hanley-McNeil) of it.

Honesty of the look-up (``--verify-trials K``): for each TPE encoding a real
``hepjax.hpo.tune`` study with that space and TPE seed ``--verify-seed`` trains its first K
trials through the normal trial path (run directories under ``WORKDIR/verify_<method>_seed<S>``);
each trained objective
must equal the stored value bit for bit, and the points the real study proposed must equal the
simulation's for that seed (trials beyond the 5 start-up trials are TPE's model's picks).

Writes ``WORKDIR/results.json`` (the look-up table, per-seed trials, summaries, curves) and
``WORKDIR/trials_to_grid_best_discrete.png``.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
import warnings

import numpy as np

if __package__ in (None, ""):                       # run as a script
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from experiments.hpo import run as run_lib   # noqa: E402
from hepjax import hpo   # noqa: E402

METHODS = ("tpe", "tpe-ordered", "random", "grid")
VARIANTS = {
    "cpu4d-discrete": {"seeds": 400, "max_trials": 1000, "verify_trials": 8},
    "smoke-discrete": {"seeds": 3, "max_trials": 60, "verify_trials": 0},
}
DEFAULT_GRID = "experiments/hpo/results_cpu4d.json"


# --------------------------------------------------------------------------------------------
# the look-up table

def discrete_space(space_grid, ordered: bool = False) -> list[str]:
    """The grid's points as ``choice`` specs (the exact grid floats, by ``repr``); with
    ``ordered`` the numeric parameters as ``ordered`` specs."""
    specs = []
    for p in hpo.load_space(space_grid):
        values = p.choices if p.kind == "choice" else p.grid(0)
        kind = "ordered" if ordered and p.kind != "choice" else "choice"
        specs.append(f"{p.path}={kind}({', '.join(repr(v) for v in values)})")
    return specs


def method_space(method: str, space_grid) -> list[str]:
    """The ``hepjax tune`` space a method searches (tpe-ordered: ``ordered``, else ``choice``)."""
    return discrete_space(space_grid, ordered=method == "tpe-ordered")


def _index_key(params, raw: dict) -> tuple:
    """A grid point as the tuple of its values' indices (``raw``: Optuna's values of the
    original grid study: floats, or a choice's index)."""
    key = []
    for p in params:
        value = raw[p.path]
        if p.kind == "choice":
            key.append(int(value))
            continue
        grid = p.grid(0)
        hits = [i for i, g in enumerate(grid) if float(f"{g:.12g}") == float(f"{float(value):.12g}")]
        if len(hits) != 1:
            raise ValueError(f"grid look-up: {p.path}={value!r} is not one of the grid values {grid}")
        key.append(hits[0])
    return tuple(key)


def load_lookup(source) -> dict:
    """{"space_grid", "lookup": {index key: objective}, "order0": keys in the grid study's
    order, "val_auc_stat_error", "data_sizes"} from a cpu4d ``results.json`` (its seed-0 grid
    values in Optuna's ``GridSampler(seed=0)`` order, replayed) or from a grid study directory
    (``study.db``) next to which that results.json lies."""
    source = pathlib.Path(source)
    if source.is_dir():
        results = source.parent / "results.json"
        study = source
    else:
        results, study = source, None
    if not results.is_file():
        raise FileNotFoundError(f"{results}: no such file; expected the results.json of "
                                "`run.py --variant cpu4d` (e.g. experiments/hpo/results_cpu4d.json)")
    res = json.loads(results.read_text())
    missing = [k for k in ("space_grid", "curves", "grid_points", "val_auc_stat_error") if k not in res]
    if missing or "grid" not in res.get("curves", {}):
        raise ValueError(f"{results}: not a grid results.json (missing {missing or ['curves.grid']})")
    params = hpo.load_space(res["space_grid"])
    n = int(res["grid_points"])
    if study is not None:
        by_point, order = run_lib._grid_points(study, params)
        lookup = {_index_key(params, dict(zip([p.path for p in params], k))): by_point[k]
                  for k in order}
        order0 = [_index_key(params, dict(zip([p.path for p in params], k))) for k in order]
    else:
        values = res["curves"]["grid"].get("0", res["curves"]["grid"].get(0))
        if values is None or len(values) != n:
            raise ValueError(f"{results}: curves.grid.0 must hold all {n} grid values")
        order0 = [_index_key(params, dict(zip([p.path for p in params], k)))
                  for k in run_lib._grid_order(params, 0, n)]
        lookup = dict(zip(order0, map(float, values)))
    if len(lookup) != n:
        raise ValueError(f"{source}: {len(lookup)} distinct grid points, expected {n}")
    return {"space_grid": res["space_grid"], "lookup": lookup, "order0": order0,
            "val_auc_stat_error": float(res["val_auc_stat_error"]),
            "data_sizes": res.get("data_sizes"), "config": res.get("config", run_lib.CONFIG),
            "overrides": res.get("overrides", run_lib.SHORT), "source": str(source)}


# --------------------------------------------------------------------------------------------
# the searches, replayed on the look-up table

def _propose(params, trial) -> tuple:
    """The point ``hpo.Param.suggest`` picks (what a ``hepjax tune`` trial trains), as indices."""
    return tuple(p.choices.index(p.suggest(trial)) for p in params)


def simulate(method: str, space_grid, lookup: dict, seed: int, target: float, max_trials: int,
             min_trials: int = 0) -> list[tuple]:
    """Proposals [(index key, objective), ...] of ``method`` with sampler seed ``seed`` until
    one reaches ``target`` (and at least ``min_trials``), at most ``max_trials``. Points are
    proposed by ``hpo.Param.suggest`` of ``method_space`` (as in a trial of ``hepjax tune``),
    so a real study with that space and seed proposes the same points."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    params = hpo.load_space(space_grid)
    if method == "grid":
        order = [_index_key(params, dict(zip([p.path for p in params], k)))
                 for k in run_lib._grid_order(params, seed, len(lookup))]
        out = []
        for key in order:
            out.append((key, lookup[key]))
            if lookup[key] >= target - 1e-12 and len(out) >= min_trials:
                break
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if method in ("tpe", "tpe-ordered"):
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True)
        elif method == "random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            raise ValueError(f"method {method!r}: use one of {METHODS}")
        study = optuna.create_study(sampler=sampler, direction="maximize")
        space = hpo.load_space(method_space(method, space_grid))
        out = []
        for _ in range(max_trials):
            trial = study.ask()
            key = _propose(space, trial)
            study.tell(trial, lookup[key])
            out.append((key, lookup[key]))
            if lookup[key] >= target - 1e-12 and len(out) >= min_trials:
                break
    return out


def first_reaching(proposals, target: float):
    """(trials, distinct points) up to and including the first proposal >= target; None if
    never."""
    seen = set()
    for i, (key, value) in enumerate(proposals):
        seen.add(key)
        if value >= target - 1e-12:
            return i + 1, len(seen)
    return None


def grid_survival(n: int, k: int, t: int) -> float:
    """P(first of k marked points among n in uniformly random order is after position t) =
    C(n - t, k) / C(n, k)."""
    if t >= n - k + 1:
        return 0.0
    return math.comb(n - t, k) / math.comb(n, k)


def summarize(trials, n: int, k: int, cap: int) -> dict:
    """Median, mean +- standard error, 16/84 % quantiles of the trials needed (censored
    seeds, None, count as ``cap``: the mean is then a lower bound), the fraction of seeds
    faster than the grid's expectation (n + 1) / (k + 1), and P(faster than an independent
    random grid order) = mean over seeds of C(n - T, k) / C(n, k) (+- its standard error)."""
    censored = sum(t is None for t in trials)
    expectation = (n + 1) / (k + 1)
    arr = np.asarray([cap if t is None else t for t in trials], float)
    p_faster = np.asarray([grid_survival(n, k, t) if t is not None else 0.0 for t in trials])
    out = {"seeds": len(trials), "censored": censored,
           "median": float(np.median([t if t is not None else math.inf for t in trials])),
           "mean": float(arr.mean()) if len(arr) else None,
           "mean_stat_error": float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else None,
           "q16": _quantile(trials, 0.16), "q84": _quantile(trials, 0.84),
           "fraction_below_grid_expectation": float(np.mean([t is not None and t < expectation
                                                             for t in trials])),
           "p_faster_than_random_grid_order": float(p_faster.mean()),
           "p_faster_stat_error": float(p_faster.std(ddof=1) / math.sqrt(len(trials)))
           if len(trials) > 1 else None}
    return out


def _quantile(trials, q: float) -> float:
    """An order statistic (no interpolation; not reached counts as infinity)."""
    return float(np.quantile([t if t is not None else math.inf for t in trials], q,
                             method="inverted_cdf"))


def grid_exact(n: int, k: int) -> dict:
    """The same summary for a grid visited in uniformly random order (exact)."""
    cdf = np.array([1 - grid_survival(n, k, t) for t in range(0, n + 1)])
    pmf = np.diff(cdf)
    t = np.arange(1, n + 1)
    mean = float((t * pmf).sum())
    sd = float(math.sqrt(((t - mean) ** 2 * pmf).sum()))
    median = int(t[np.searchsorted(cdf[1:], 0.5)])
    p_tie = float((pmf ** 2).sum())
    return {"mean": mean, "sd": sd, "median": median,
            "q16": int(t[np.searchsorted(cdf[1:], 0.16)]), "q84": int(t[np.searchsorted(cdf[1:], 0.84)]),
            "fraction_below_grid_expectation": float(cdf[math.ceil((n + 1) / (k + 1)) - 1]),
            "p_faster_than_random_grid_order": float((1 - p_tie) / 2), "cdf": cdf[1:].tolist()}


def curves_band(per_seed, length: int, lookup_values) -> dict:
    """Median and 16/84 % over seeds of the best-so-far value and of its rank among the grid
    points (1: the grid best) at trials 1..length (a seed that stopped at the grid best keeps
    it)."""
    rows = []
    for proposals in per_seed:
        best = hpo.best_so_far([v for _, v in proposals], "maximize")
        if len(best) < length:
            best = np.concatenate([best, np.full(length - len(best), best[-1])])
        rows.append(best[:length])
    rows = np.asarray(rows)
    ordered = np.sort(np.asarray(list(lookup_values), float))
    ranks = len(ordered) - np.searchsorted(ordered, rows - 1e-12, side="left") + 0.0
    out = {}
    for name, arr in (("", rows), ("rank_", ranks)):
        out[name + "median"] = np.median(arr, 0).tolist()
        out[name + "q16"] = np.quantile(arr, 0.16, 0, method="inverted_cdf").tolist()
        out[name + "q84"] = np.quantile(arr, 0.84, 0, method="inverted_cdf").tolist()
    return out


# --------------------------------------------------------------------------------------------
# the check against real training

def verify(table: dict, workdir: pathlib.Path, seed: int, n_trials: int, method: str = "tpe") -> dict:
    """Trains the first ``n_trials`` trials of a real TPE study on ``method_space(method)``
    (``hpo.tune``: the normal trial path) and compares with the look-up and the simulation."""
    import optuna

    study_dir = workdir / f"verify_{method}_seed{seed}"
    space = method_space(method, table["space_grid"])
    params = hpo.load_space(table["space_grid"])
    hpo.tune(table["config"], space, study_dir=study_dir, sampler="tpe", n_trials=n_trials,
             seed=seed, overrides=table["overrides"], pruner="none", plots=False)
    study = optuna.load_study(study_name="hepjax", storage=f"sqlite:///{study_dir}/study.db")
    trials = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)),
                    key=lambda t: t.number)[:n_trials]
    simulated = simulate(method, table["space_grid"], table["lookup"], seed, math.inf, n_trials)
    rows = []
    for t, (sim_key, sim_value) in zip(trials, simulated):
        key = tuple(int(t.params[p.path]) for p in params)
        rows.append({"trial": t.number, "point": list(key), "trained": t.value,
                     "stored": table["lookup"][key], "simulated_point": list(sim_key),
                     "bit_identical": t.value == table["lookup"][key],
                     "same_point_as_simulation": key == sim_key,
                     "picked_by": "random start-up" if t.number < 5 else "TPE model",
                     "seconds": t.user_attrs.get("seconds")})
    return {"method": method, "space": space, "seed": seed, "study_dir": str(study_dir), "trials": rows,
            "all_bit_identical": all(r["bit_identical"] for r in rows) and len(rows) == n_trials,
            "all_same_points": all(r["same_point_as_simulation"] for r in rows)}


# --------------------------------------------------------------------------------------------

def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="cpu4d-discrete")
    parser.add_argument("--workdir", default="runs/hpo_cpu4d_discrete")
    parser.add_argument("--grid-from", default=DEFAULT_GRID,
                        help="results.json of `run.py --variant cpu4d`, or its grid_seed0 study "
                             f"directory (default {DEFAULT_GRID})")
    parser.add_argument("--seeds", type=int, default=None, help="sampler seeds 0..N-1")
    parser.add_argument("--max-trials", type=int, default=None)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--verify-trials", type=int, default=None,
                        help="train this many trials of a real TPE study (0: skip)")
    parser.add_argument("--verify-seed", type=int, default=0)
    args = parser.parse_args(argv)
    v = VARIANTS[args.variant]
    n_seeds = args.seeds if args.seeds is not None else v["seeds"]
    max_trials = args.max_trials if args.max_trials is not None else v["max_trials"]
    n_verify = args.verify_trials if args.verify_trials is not None else v["verify_trials"]
    methods = args.methods.split(",")
    bad = [m for m in methods if m not in METHODS]
    if bad or n_seeds < 1 or max_trials < 1:
        raise SystemExit(f"discrete: --methods {bad} not in {METHODS}, or --seeds/--max-trials < 1")
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = load_lookup(args.grid_from)
    lookup = table["lookup"]
    n = len(lookup)
    best = max(lookup.values())
    sigma = table["val_auc_stat_error"]
    targets = {"grid_best": best, "grid_best_minus_1sigma": best - sigma}
    k = {name: sum(val >= tgt - 1e-12 for val in lookup.values()) for name, tgt in targets.items()}
    per_method, seconds = {}, {}
    for method in methods:
        start = time.perf_counter()
        per_method[method] = [simulate(method, table["space_grid"], lookup, s, best, max_trials)
                              for s in range(n_seeds)]
        seconds[method] = time.perf_counter() - start
    result = {"variant": args.variant, "grid_from": table["source"], "config": table["config"],
              "overrides": table["overrides"], "space_grid": table["space_grid"],
              "spaces": {m: method_space(m, table["space_grid"]) for m in methods}, "grid_points": n,
              "grid_best_val_auc": best, "val_auc_stat_error": sigma,
              "points_at_target": k, "sampler_seeds": f"0..{n_seeds - 1}", "max_trials": max_trials,
              "lookup": [{"point": list(key), "values": _values(table["space_grid"], key),
                          "val_auc": val} for key, val in sorted(lookup.items())],
              "grid_exact": {name: {kk: vv for kk, vv in grid_exact(n, k[name]).items()}
                             for name in targets},
              "trials": {}, "distinct": {}, "summary": {}, "summary_distinct": {},
              "simulation_seconds": seconds}
    for method, runs in per_method.items():
        for name, target in targets.items():
            hits = [first_reaching(p, target) for p in runs]
            result["trials"].setdefault(method, {})[name] = [h[0] if h else None for h in hits]
            result["distinct"].setdefault(method, {})[name] = [h[1] if h else None for h in hits]
            result["summary"].setdefault(method, {})[name] = summarize(
                result["trials"][method][name], n, k[name], max_trials)
            result["summary_distinct"].setdefault(method, {})[name] = summarize(
                result["distinct"][method][name], n, k[name], max_trials)
    length = n
    result["curves"] = {m: curves_band(runs, length, lookup.values()) for m, runs in per_method.items()}
    if n_verify > 0:
        result["verify"] = [verify(table, workdir, args.verify_seed, n_verify, method)
                            for method in ("tpe", "tpe-ordered") if method in methods]
    result["seconds"] = time.perf_counter() - t0
    (workdir / "results.json").write_text(json.dumps(result, indent=1))
    plot(result, workdir / "trials_to_grid_best_discrete.png")
    (workdir / "table.md").write_text(table_md(result))
    return result


def _values(space_grid, key) -> dict:
    out = {}
    for p, i in zip(hpo.load_space(space_grid), key):
        out[p.path] = list(p.choices[i]) if p.kind == "choice" else p.grid(0)[i]
    return out


NAMES = {"tpe": "TPE, choice (categorical)", "tpe-ordered": "TPE, ordered",
         "random": "random (with replacement)", "grid": "grid, Optuna's random order"}


def table_md(result) -> str:
    """The README table: one row per method and target."""
    lines = ["| search | target | trials: median (16-84 %) | mean +- s.e. | distinct points: "
             "median, mean +- s.e. | seeds below the grid's expectation | P(faster than a "
             "random grid order) | not reached |", "|---|---|---|---|---|---|---|---|"]
    for name, label in (("grid_best", "grid best"), ("grid_best_minus_1sigma", "within 1 sigma")):
        ex = result["grid_exact"][name]
        lines.append(f"| grid, random order (exact) | {label} | {ex['median']} ({ex['q16']}-{ex['q84']}) "
                     f"| {ex['mean']:.1f} (s.d. {ex['sd']:.1f}) | same | "
                     f"{ex['fraction_below_grid_expectation']:.2f} | "
                     f"{ex['p_faster_than_random_grid_order']:.3f} | 0 |")
        for method, per in result["summary"].items():
            s, d = per[name], result["summary_distinct"][method][name]
            lines.append(
                f"| {NAMES[method]} | {label} | {_n(s['median'])} ({_n(s['q16'])}-{_n(s['q84'])}) | "
                f"{_pm(s)} | {_n(d['median'])}, {_pm(d)} | {s['fraction_below_grid_expectation']:.2f} | "
                f"{s['p_faster_than_random_grid_order']:.3f} +- {s['p_faster_stat_error']:.3f} | "
                f"{s['censored']} of {s['seeds']} |")
    return "\n".join(lines) + "\n"


def _n(x) -> str:
    return "not reached" if x is None or not math.isfinite(x) else f"{x:g}"


def _pm(s) -> str:
    if s["mean"] is None:
        return "-"
    bound = ">= " if s["censored"] else ""
    err = f" +- {s['mean_stat_error']:.1f}" if s["mean_stat_error"] is not None else ""
    return f"{bound}{s['mean']:.1f}{err}"


def plot(result, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"grid": "C0", "tpe": "C3", "tpe-ordered": "C1", "random": "C2"}
    n, best, sigma = result["grid_points"], result["grid_best_val_auc"], result["val_auc_stat_error"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.4))
    x = np.arange(1, n + 1)
    for ax, prefix in ((axes[0, 0], ""), (axes[0, 1], "rank_")):
        for method, band in result["curves"].items():
            ax.step(x, band[prefix + "median"], where="post", color=colours[method], lw=1.6,
                    label=f"{NAMES[method]}: median")
            ax.fill_between(x, band[prefix + "q16"], band[prefix + "q84"], step="post",
                            color=colours[method], alpha=0.12)
        ax.set_xscale("log")
        ax.set_xlabel("trial")
    ax = axes[0, 0]
    ax.axhline(best, color="k", ls="--", lw=1, label="best grid point")
    ax.axhspan(best - sigma, best, color="0.88", label="within 1 sigma (stat.)")
    ax.set_ylim(best - 2.5 * sigma, best + 0.3 * sigma)
    ax.set_ylabel("best validation AUC so far")
    ax.set_title("best so far: median, band 16-84 % of seeds", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[0, 1]
    ax.plot(x, (n + 1) / (x + 1), "k--", lw=1, label="grid, random order: expected (n+1)/(t+1)")
    ax.axhline(result["points_at_target"]["grid_best_minus_1sigma"], color="0.5", lw=0.8, ls=":",
               label="ranks within 1 sigma of the best")
    ax.set_yscale("log")
    ax.set_ylabel(f"rank of the best so far among the {n} (1: grid best)")
    ax.set_title("best so far as a rank: median, band 16-84 % of seeds", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    for ax, name, label in ((axes[1, 0], "grid_best", "the grid best"),
                            (axes[1, 1], "grid_best_minus_1sigma", "within 1 sigma of the grid best")):
        k = result["points_at_target"][name]
        ax.plot(np.arange(0, n + 1), [0.0] + result["grid_exact"][name]["cdf"], color="k", lw=1.2,
                ls="--", label=f"grid, random order (exact; mean {result['grid_exact'][name]['mean']:.1f})")
        for method, per in result["trials"].items():
            t = per[name]
            seeds = len(t)
            reached = np.sort([v for v in t if v is not None])
            frac = np.arange(1, len(reached) + 1) / seeds
            mean = result["summary"][method][name]
            ax.step(np.concatenate([[0], reached]), np.concatenate([[0], frac]), where="post",
                    color=colours[method], lw=1.4,
                    label=f"{NAMES[method]} (median {_n(mean['median'])})")
        ax.set_xlim(0, 1.5 * n if name == "grid_best" else 25)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("trial")
        ax.set_ylabel(f"fraction of {seeds} sampler seeds that reached it")
        ax.set_title(f"reaching {label} ({k} of {n} points)", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"MLP top tagger, {n}-point grid's own discrete space (stored objectives), "
                 f"sampler seeds {result['sampler_seeds']}", fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.91, wspace=0.2, hspace=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
