"""``hepjax.hpo.tune`` end to end on the 400-jet smoke sample: real trainings as run
directories, the study resumed from its SQLite storage, the results table, the best config and
the plots."""
import csv
import json

import pytest

pytest.importorskip("optuna")

from hepjax import config as config_lib  # noqa: E402
from hepjax import hpo  # noqa: E402
from hepjax.train.logging import read_metrics  # noqa: E402

SHORT = ["--config.train.num_steps=20", "--config.train.eval_every=10",
         "--config.train.log_every=10", "--config.train.checkpoint_every=20",
         "--config.optimizer.schedule.warmup_steps=2"]
SPACE = ["optimizer.learning_rate=loguniform(2e-3, 2e-2)", "model.dropout=choice(0.0, 0.2)"]


def _rows(study_dir):
    with (study_dir / "results.csv").open() as f:
        return list(csv.DictReader(f))


def test_tune_trains_trials_and_resumes(tmp_path):
    study_dir = tmp_path / "study"
    kwargs = dict(study_dir=study_dir, sampler="random", seed=3, overrides=SHORT, pruner="none")
    first = hpo.tune("hepjax.configs.top_tagging_mlp:smoke", SPACE, n_trials=1, **kwargs)
    assert first["n_trials"] == 1 and (study_dir / "study.db").is_file()
    before = _rows(study_dir)
    # the same command with a larger budget continues the stored study: one new trial
    summary = hpo.tune("hepjax.configs.top_tagging_mlp:smoke", SPACE, n_trials=2, **kwargs)
    rows = _rows(study_dir)
    assert [r["trial"] for r in rows] == ["0", "1"]
    assert rows[0] == before[0]
    assert all(r["state"] == "COMPLETE" for r in rows)
    for r in rows:
        workdir = tmp_path / "study" / "trials" / f"trial_{int(r['trial']):04d}"
        assert r["workdir"] == str(workdir)
        config = config_lib.from_json((workdir / "config.json").read_text())
        assert config.optimizer.learning_rate == pytest.approx(float(r["optimizer.learning_rate"]))
        assert 2e-3 <= config.optimizer.learning_rate <= 2e-2
        # the objective is the best validation AUC the run logged; test metrics recorded
        val = [rec["auc"] for rec in read_metrics(workdir) if rec["split"] == "val"]
        assert float(r["objective"]) == pytest.approx(max(val))
        test = json.loads((workdir / "test_metrics.json").read_text())
        assert float(r["test_auc"]) == pytest.approx(test["auc"])
    # trained, not guessed: 20 steps separate top from QCD jets (shuffled labels would give ~0.5)
    assert max(float(r["objective"]) for r in rows) > 0.8
    best = max(rows, key=lambda r: float(r["objective"]))
    assert summary["best_trial"] == int(best["trial"])
    best_config = config_lib.from_json((study_dir / "best_config.json").read_text())
    assert best_config.optimizer.learning_rate == pytest.approx(float(best["optimizer.learning_rate"]))
    assert best_config.model.dropout == float(best["model.dropout"])
    assert best_config.train.num_steps == 20
    assert (study_dir / "results.md").read_text().count("\n") == 4
    for png in ("objective.png", "slices.png"):
        assert (study_dir / png).stat().st_size > 5000


def test_tune_rejects_bad_requests_before_training(tmp_path):
    with pytest.raises(ValueError, match="--space optimizer.lr: .*no field 'lr'"):
        hpo.tune("hepjax.configs.top_tagging_mlp:smoke", ["optimizer.lr=uniform(0, 1)"],
                 study_dir=tmp_path)
    with pytest.raises(ValueError, match="--sampler 'bayes'"):
        hpo.tune("hepjax.configs.top_tagging_mlp:smoke", SPACE, study_dir=tmp_path, sampler="bayes")
    with pytest.raises(ValueError, match="only .* may vary inside a population"):
        hpo.tune("hepjax.configs.top_tagging_mlp:smoke", SPACE, study_dir=tmp_path / "p",
                 population=2, n_trials=2, overrides=SHORT)
    assert not list((tmp_path / "p").glob("trials/*"))
