"""experiments/hpo/discrete.py: the look-up replay of grid / TPE / random search on the grid's
own discrete space (no training: synthetic objectives on small grids)."""
import itertools
import json
import math
import types

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from experiments.hpo import discrete, run  # noqa: E402
from hepjax import hpo  # noqa: E402

SPACE = ["optimizer.learning_rate=loguniform(1e-4, 1e-1, n=3)",
         "model.dropout=uniform(0.0, 0.5, n=3)",
         "model.hidden=choice((32, 32), (64, 64, 64))"]


def _lookup():
    """18 points; the objective rises with the learning rate index and falls with dropout."""
    return {key: 0.9 + 0.02 * key[0] - 0.01 * key[1] + 0.001 * key[2]
            for key in itertools.product(range(3), range(3), range(2))}


def test_grid_order_distribution_matches_enumeration():
    """C(n - t, k) / C(n, k), the expectation (n + 1) / (k + 1) and P(faster) of two
    independent random orders, against all permutations of n = 6 with k = 2 marked points."""
    n, k = 6, 2
    firsts = [min(perm.index(0), perm.index(1)) + 1 for perm in itertools.permutations(range(n))]
    counts = np.bincount(firsts, minlength=n + 1)[1:] / len(firsts)
    for t in range(n + 1):
        assert discrete.grid_survival(n, k, t) == pytest.approx(counts[t:].sum(), abs=1e-12)
    exact = discrete.grid_exact(n, k)
    assert exact["mean"] == pytest.approx((n + 1) / (k + 1))
    p_faster = sum(counts[a] * counts[b] for a in range(n) for b in range(n) if a < b)
    assert exact["p_faster_than_random_grid_order"] == pytest.approx(p_faster)
    # a method always at trial 1 beats a random order unless the order also starts on a mark
    s = discrete.summarize([1, 1, None], n, k, cap=10)
    assert s["p_faster_than_random_grid_order"] == pytest.approx(2 / 3 * (1 - k / n))
    assert s["censored"] == 1 and s["mean"] == pytest.approx(4.0)


def test_simulation_is_what_a_tune_study_proposes():
    """The replayed TPE / random proposals equal those of an Optuna study driven exactly like
    ``hepjax tune`` (``hpo._sampler``, ``Param.suggest`` of the choice space), and the grid
    replay visits every point once, stopping at the best."""
    lookup = _lookup()
    best = max(lookup.values())
    assert [p.kind for p in hpo.load_space(discrete.method_space("tpe-ordered", SPACE))] == \
        ["ordered", "ordered", "choice"]
    for method, sampler in (("tpe", "tpe"), ("tpe-ordered", "tpe"), ("random", "random")):
        params = hpo.load_space(discrete.method_space(method, SPACE))
        assert params[0].choices == tuple(hpo.load_space(SPACE)[0].grid(0))    # exact floats
        search = types.SimpleNamespace(sampler=sampler, seed=3, params=params)
        study = optuna.create_study(sampler=hpo._sampler(search), direction="maximize")
        keys = []

        def objective(trial):
            values = hpo._values_of(search, trial)
            key = tuple(p.choices.index(values[p.path]) for p in params)
            keys.append(key)
            return lookup[key]

        study.optimize(objective, n_trials=9)
        replay = discrete.simulate(method, SPACE, lookup, 3, math.inf, 9)
        assert [key for key, _ in replay] == keys
    order = discrete.simulate("grid", SPACE, lookup, 1, math.inf, 100)
    assert sorted(key for key, _ in order) == sorted(lookup)
    stopped = discrete.simulate("grid", SPACE, lookup, 1, best, 100)
    assert stopped[-1][1] == best and len(stopped) == [v for _, v in order].index(best) + 1
    assert discrete.first_reaching(stopped, best)[0] == len(stopped)


def test_ordered_kind():
    """``ordered(v1, v2, ...)``: the value by an integer index (Optuna's ``suggest_int``), every
    value on the grid; bad specs fail naming the spec."""
    p = hpo.parse_param("optimizer.learning_rate=ordered(1e-4, 3e-3, 0.1)")
    assert p.kind == "ordered" and p.grid(7) == [0, 1, 2] and p.value(2) == 0.1
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    value = p.suggest(trial)
    assert value == p.choices[trial.params[p.path]] and isinstance(trial.params[p.path], int)
    # the suggested index covers every value, no more (Optuna records the int range it drew from)
    dist = trial.distributions[p.path]
    assert (dist.low, dist.high) == (0, len(p.choices) - 1)
    for bad in ("x=ordered(0.1, 1e-4)", "x=ordered(1)", "x=ordered('a', 'b')"):
        with pytest.raises(ValueError, match="increasing order"):
            hpo.parse_param(bad)


def test_main_on_a_stored_grid(tmp_path):
    """End to end from a cpu4d-style results.json: table, plot, same seeds -> same result."""
    lookup = _lookup()
    params = hpo.load_space(SPACE)
    order = [discrete._index_key(params, dict(zip([p.path for p in params], key)))
             for key in run._grid_order(params, 0, len(lookup))]
    stored = {"space_grid": SPACE, "grid_points": len(lookup), "val_auc_stat_error": 0.015,
              "curves": {"grid": {"0": [lookup[key] for key in order]}}}
    (tmp_path / "grid.json").write_text(json.dumps(stored))
    args = ["--variant", "smoke-discrete", "--grid-from", str(tmp_path / "grid.json"),
            "--seeds", "2", "--max-trials", "40", "--methods", "tpe,random,grid"]
    first = discrete.main(args + ["--workdir", str(tmp_path / "a")])
    for method in ("tpe", "random"):        # same seed -> same proposals
        again = [discrete.simulate(method, SPACE, lookup, s, max(lookup.values()), 40)
                 for s in range(2)]
        assert [(discrete.first_reaching(a, max(lookup.values())) or (None,))[0] for a in again] == \
            first["trials"][method]["grid_best"]
    assert first["points_at_target"] == {"grid_best": 1, "grid_best_minus_1sigma": 4}
    assert first["grid_exact"]["grid_best"]["mean"] == pytest.approx(9.5)
    for method in ("tpe", "random", "grid"):
        for t, t1 in zip(first["trials"][method]["grid_best"],
                         first["trials"][method]["grid_best_minus_1sigma"]):
            assert t is None or t1 <= t
    assert len(first["lookup"]) == 18 and "grid, random order (exact)" in (tmp_path / "a" / "table.md").read_text()
    assert (tmp_path / "a" / "trials_to_grid_best_discrete.png").stat().st_size > 20000
    with pytest.raises(ValueError, match="curves.grid.0"):
        stored["curves"]["grid"]["0"] = stored["curves"]["grid"]["0"][:5]
        (tmp_path / "bad.json").write_text(json.dumps(stored))
        discrete.load_lookup(tmp_path / "bad.json")
