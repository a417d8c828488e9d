"""The tracking experiment's smoke variant end to end (simulation, cuts, two trained
networks, working point, test metrics, the real event when present, plots, submission)."""
import json

import numpy as np

from experiments.tracking import run
from experiments.tracking.run import REAL_DEFAULT


def test_smoke_variant_end_to_end(tmp_path, event_dir):
    # event_dir: the simulation needs the real TrackML geometry; skips when ../shared is absent
    real = REAL_DEFAULT.parent / (REAL_DEFAULT.name + "-hits.csv.gz")
    args = ["--variant", "smoke", "--workdir", str(tmp_path)]
    if not real.exists():
        args += ["--real", ""]
    res = run.main(args)
    for name in ("results.json", "table.md", "cuts.json", "efficiency.png",
                 "event_display.png", "loss.png", "model_all.pkl", "model_filtered.pkl"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    for setting in ("filtered", "all"):
        r = saved["test"][setting]
        assert 0 <= r["auc"] <= 1
        assert 0 <= r["edge_pt1"]["efficiency"] <= 1 and 0 <= r["edge_pt1"]["purity"] <= 1
        assert r["track_pt1"]["n_particles"] > 0
        assert 0 < saved["threshold"][setting]["threshold"] < 1
    assert 0 <= saved["test"]["all"]["trackml_score"] <= 1
    if real.exists():
        assert (tmp_path / "submission_real.csv").exists()
        assert (tmp_path / "event_display_real.png").exists()
        assert np.isfinite(res["real"]["all"]["trackml_score"])
