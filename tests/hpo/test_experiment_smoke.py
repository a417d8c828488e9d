"""experiments/hpo/run.py --variant smoke: every stage (grid, grid-order replay, TPE, the
summary and the plot) on the 400-jet sample with 20-step trials."""
import json

import pytest

pytest.importorskip("optuna")


@pytest.mark.slow
def test_hpo_experiment_smoke(tmp_path):
    from experiments.hpo import run

    result = run.main(["--variant", "smoke", "--workdir", str(tmp_path), "--samplers", "tpe"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["grid_points"] == 4 and len(saved["curves"]["grid"]["0"]) == 4
    assert len(saved["curves"]["tpe"]["0"]) == 3
    # the grid replay visits every grid point once, and one of them is the grid best
    assert max(result["curves"]["grid"][0]) == result["grid_best_val_auc"]
    assert 1 <= result["trials_to_grid_best"]["grid"][0] <= 4
    assert result["grid_best_val_auc"] > 0.8     # trained (shuffled labels: ~0.5)
    assert (tmp_path / "trials_to_grid_best.png").stat().st_size > 5000
