"""hepjax.hpo: the search-space language, the grid, results helpers and the pruning hook."""
import math

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from hepjax import hpo  # noqa: E402
from hepjax.configs import top_tagging_mlp  # noqa: E402


def test_parse_each_distribution():
    p = hpo.parse_param("optimizer.learning_rate=loguniform(1e-4, 1e-1)")
    assert (p.path, p.kind, p.low, p.high, p.log) == ("optimizer.learning_rate", "loguniform",
                                                      1e-4, 1e-1, True)
    np.testing.assert_allclose(p.grid(4), [1e-4, 1e-3, 1e-2, 1e-1], rtol=1e-12)
    assert hpo.parse_param("model.dropout=uniform(0, 0.3, n=4)").grid(99) == pytest.approx(
        [0.0, 0.1, 0.2, 0.3])
    assert hpo.parse_param("train.batch_size=int(30, 33)").grid(2) == [30, 31, 32, 33]
    assert hpo.parse_param("train.batch_size=intlog(16, 256)").grid(5) == [16, 32, 64, 128, 256]
    c = hpo.parse_param("model.hidden=choice((32, 32), (64, 64, 64))")
    assert c.choices == ((32, 32), (64, 64, 64)) and c.grid(7) == [0, 1]
    assert c.value(1) == (64, 64, 64)


@pytest.mark.parametrize("text,needle", [
    ("optimizer.learning_rate", "expected PATH=DIST(ARGS)"),
    ("x=normal(0, 1)", "unknown distribution 'normal'"),
    ("x=uniform(1, 0)", "need low < high"),
    ("x=loguniform(0, 1)", "needs low > 0"),
    ("x=int(0.5, 3)", "bounds must be integers"),
    ("x=uniform(0, 1, m=3)", "unknown keyword"),
    ("x=choice()", "at least one value"),
    ("x=uniform(a, b)", "not Python literals"),
])
def test_bad_specs_say_what_is_wrong(text, needle):
    with pytest.raises(ValueError, match=None) as err:
        hpo.parse_param(text)
    assert needle in str(err.value) and text in str(err.value)


def test_space_files_and_duplicates(tmp_path):
    yaml_file = tmp_path / "space.yaml"
    yaml_file.write_text("optimizer.learning_rate: loguniform(1e-4, 1e-2)\n"
                         "model.dropout: choice(0.0, 0.1)\n")
    json_file = tmp_path / "space.json"
    json_file.write_text('["optimizer.weight_decay=uniform(0, 0.001)"]')
    params = hpo.load_space([str(yaml_file), str(json_file), "seed=int(0, 3)"])
    assert [p.path for p in params] == ["optimizer.learning_rate", "model.dropout",
                                        "optimizer.weight_decay", "seed"]
    with pytest.raises(ValueError, match="given twice"):
        hpo.load_space(["seed=int(0, 1)", "seed=int(0, 2)"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        hpo.load_space([str(tmp_path / "missing.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model.dropout: gauss(0, 1)\n")
    with pytest.raises(ValueError, match="bad.yaml: model.dropout"):
        hpo.load_space([str(bad)])


def test_values_are_written_into_a_copy_of_the_config():
    config = top_tagging_mlp.get_config("smoke")
    new = hpo.apply_values(config, {"optimizer.learning_rate": 3e-3, "model.hidden": (8, 8),
                                    "seed": 7})
    assert (new.optimizer.learning_rate, tuple(new.model.hidden), new.seed) == (3e-3, (8, 8), 7)
    assert config.optimizer.learning_rate == 2e-3 and config.seed == 0
    with pytest.raises(ValueError, match="--space optimizer.learnign_rate: .*no field 'learnign_rate'"):
        hpo.check_space(config, [hpo.parse_param("optimizer.learnign_rate=uniform(0, 1)")])


def test_best_so_far():
    got = hpo.best_so_far([0.5, math.nan, 0.7, 0.6, 0.9], "maximize")
    np.testing.assert_array_equal(got, [0.5, 0.5, 0.7, 0.7, 0.9])
    np.testing.assert_array_equal(hpo.best_so_far([3.0, 1.0, 2.0], "minimize"), [3.0, 1.0, 1.0])


def test_grid_sampler_visits_the_whole_grid_once():
    params = (hpo.parse_param("a=loguniform(1e-3, 1e-1, n=3)"), hpo.parse_param("b=choice(1, 2)"))
    search = hpo.Search("c", (), params, "/tmp", "sqlite://", "s", "grid", 0, 6, "auc",
                        "maximize", "none", 4, 60)
    study = optuna.create_study(sampler=hpo._sampler(search), direction="maximize")
    seen = []
    study.optimize(lambda t: seen.append(tuple(p.value(v) for p, v in zip(params, (
        t.suggest_float("a", 1e-3, 1e-1, log=True), t.suggest_categorical("b", [0, 1]))))) or 0.0,
                   n_trials=10)
    assert sorted(seen) == sorted((a, b) for a in (1e-3, 1e-2, 1e-1) for b in (1, 2))


class _Writer:
    def __init__(self, workdir, tensorboard=False):
        self.records = []

    def write(self, step, split, metrics):
        self.records.append((step, split, metrics))


def test_reporter_reports_validations_and_prunes():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=0.8))
    trial = study.ask()
    steps = []
    writer = hpo._Reporter(_Writer, trial, "auc", steps)("unused")
    writer.write(10, "train", {"loss": 0.5})           # training logs are not reported
    writer.write(20, "val", {"auc": 0.9, "loss": 0.3})
    assert steps == [20]
    with pytest.raises(hpo._Pruned):
        writer.write(40, "val", {"auc": 0.7})
    assert [r[0] for r in writer.records] == [10, 20, 40]   # the record is written first
    frozen = study._storage.get_trial(trial._trial_id)
    assert frozen.intermediate_values == {20: 0.9, 40: 0.7}
