"""experiments/generative/jets.py end to end on the smoke variant: the 1,000-jet cached
top-tagging sample (generated with Pythia 8 on first use), the flow-matching generator with the
EPiC backbone (width 32, 2 layers; cheaper to compile than the set transformer, which the model
tests cover) trained for 1,200 steps, every JetNet metric and the table (plots are
skipped to save time; ``--variant smoke`` without ``--no-plots`` writes them). The trained
model must beat the trivially wrong generator (independent Gaussian particles with the right
marginal means and widths: the untrained flow's prior) by a wide margin on the FPD, and the
trivially wrong uniform generator (particles uniform in the cone, equal pT) on the W1 of the
jet mass. (With the smoke sample's 99 test jets, W1M alone cannot separate the model from
the untrained one: their W1M differ by less than its error.)"""
import json

import numpy as np
import pytest

pytest.importorskip("pythia8mc", reason="the smoke sample is generated with Pythia 8 "
                    "(pip install pythia8mc) when it is not cached")

from experiments.generative import jets  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("generative_jets_smoke")
    return workdir, jets.main(["--variant", "smoke", "--workdir", str(workdir), "--no-plots"])


def test_smoke_writes_metrics_and_table(smoke):
    workdir, res = smoke
    for name in ("results.json", "table.md", "generated_top.npz", "models/flow_matching_top.pkl"):
        assert (workdir / name).stat().st_size > 0, name
    saved = json.loads((workdir / "results.json").read_text())
    top = saved["classes"]["top"]
    assert set(top["samples"]) == {"reference", "flow_matching", "noise", "uniform"}
    for s in top["samples"].values():
        for key in ("w1m", "w1p_pt_rel", "w1p_eta_rel", "w1p_phi_rel", "w1efp", "fpd", "kpd"):
            value, err = s[key]
            assert np.isfinite(value) and np.isfinite(err) and err >= 0, key
        assert s["w1m"][0] > 0 and s["fpd"][0] >= 0
    assert top["samples"]["flow_matching"]["timing"]["s_per_jet"] > 0
    assert "W1M" in (workdir / "table.md").read_text()


def test_smoke_model_beats_the_trivially_wrong_generator(smoke):
    workdir, res = smoke
    top = res["classes"]["top"]
    fm, noise, uniform = (top["samples"][k] for k in ("flow_matching", "noise", "uniform"))
    assert fm["w1m"][0] + 3 * fm["w1m"][1] < uniform["w1m"][0], (fm["w1m"], uniform["w1m"])
    assert fm["fpd"][0] < 0.2 * noise["fpd"][0], (fm["fpd"], noise["fpd"])
    # the generated clouds: finite, pT_rel > 0 and mostly below the jet pT, padding zero
    data = np.load(workdir / "generated_top.npz")
    clouds, mask = data["clouds"], data["mask"]
    assert np.isfinite(clouds).all() and (clouds[..., 2][mask] > 0).all()
    assert np.median(clouds[..., 2][mask]) < 0.2
    assert (clouds[~mask] == 0).all() and mask.sum(1).min() >= 1
    hist = top["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]


def test_smoke_two_stage_model(tmp_path):
    """``--two-stage``: the jet-level flow (relative mass, sum pT_rel given n) and the cloud
    conditioned on them. Its first stage must reproduce the test jets' mass far better than the
    uniform generator, and the generated clouds must follow the masses they were given (the
    second stage uses its condition: correlation of generated and given mass well above the
    ~0 of a network ignoring it (± 0.1 with 99 test jets), for both the sampled and the test
    jets' own conditions; the smoke model, 1,200 steps on 283 jets, reaches ~0.5)."""
    res = jets.main(["--variant", "smoke", "--workdir", str(tmp_path), "--no-plots",
                     "--two-stage"])
    top = res["classes"]["top"]
    s1 = top["stage1"]
    assert res["config"]["two_stage"] is True
    assert s1["stage1_w1m"][0] + 3 * s1["stage1_w1m"][1] < top["samples"]["uniform"]["w1m"][0]
    assert s1["tracking"]["mass"]["corr"] > 0.3, s1["tracking"]
    assert s1["oracle_tracking"]["mass"]["corr"] > 0.3, s1["oracle_tracking"]
    assert np.isfinite(s1["oracle_w1m"][0])
    assert top["samples"]["flow_matching"]["timing"]["stage1_s_per_jet"] > 0
    assert "two-stage" in (tmp_path / "table.md").read_text()
