"""experiments/explain end to end on the smoke variant (ParticleNet only, to keep it short):
training, test AUC, LRP of the test jets with the conservation residuals (float32 and float64,
with the bias relevance), the subjet shares, the removal curves and the three plots."""
import json

import numpy as np
import pytest

pytest.importorskip("pythia8mc", reason="generated top-tagging data need the 'gen' extra")
pytest.importorskip("fastjet", reason="subjet axes need the 'gen' extra")

from experiments.explain import run  # noqa: E402


@pytest.mark.slow
def test_smoke_variant(tmp_path):
    out = run.main(["--variant", "smoke", "--workdir", str(tmp_path), "--models", "particlenet"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["models"].keys() == out["models"].keys() == {"particlenet"}
    res = saved["models"]["particlenet"]
    assert 0.0 <= res["test_auc"][0] <= 1.0 and res["test_auc"][1] > 0
    ex = res["explain"]
    # relevance + bias relevance = output: float32 rounding, and float64 to 1e-9
    assert ex["float32"]["with_bias_rel_residual_max"] < 1e-3
    assert ex["float64"]["with_bias_rel_residual_max"] < 1e-9
    for cls in ("top", "qcd"):
        share = ex[f"subjets_{cls}"]["pt_share"][0]
        assert 0.0 < share <= 1.0
    rem = ex["removal"]
    assert len(rem["relevance"]) == len(rem["k"]) and rem["relevance"][0] == rem["random"][0]
    rel = np.load(tmp_path / "relevance.npz")["particlenet"]
    assert rel.shape == (ex["n_jets"], run.VARIANTS["smoke"]["max_particles"])
    for name in ("jet_images.png", "examples.png", "removal.png"):
        assert (tmp_path / name).stat().st_size > 10_000
