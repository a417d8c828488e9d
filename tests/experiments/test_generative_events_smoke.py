"""experiments/generative/events.py, the smoke variant end to end: a small Pythia 8 Z(-> mu mu)
+ jets sample, the per-multiplicity flows in the dimuon + Collins-Soper representation trained
and sampled with rejection of events failing the selection, the observables compared with the
truth, the tables and plots. The representation must reproduce the truth events (1e-5), every
generated event must pass the selection, and the flow must beat a wrong reference (the
reference events with every representation column shuffled independently: right marginals, no
correlations) on the dimuon-jet transverse imbalance, which only a flow that learned the
recoil correlation can (trained on shuffled columns, the flow fails this test)."""
import json

import numpy as np
import pytest

pytest.importorskip("pythia8mc", reason="needs Pythia 8 (pip install 'hepjax[gen]')")
pytest.importorskip("fastjet", reason="needs FastJet (pip install 'hepjax[gen]')")

from experiments.generative import events  # noqa: E402


def test_smoke_run(tmp_path):
    results = events.main(["--variant", "smoke", "--workdir", str(tmp_path), "--quiet"])
    for name in ("results.json", "table.md", "observables.png", "multiplicity.png", "loss.png",
                 "model.pkl"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["variant"] == "smoke" and saved["sizes"]["generated"] == 60
    assert "Tails" in (tmp_path / "table.md").read_text()
    hist = results["training"]["history"]
    assert np.isfinite([h["loss"] for h in hist]).all() and hist[-1]["loss"] < hist[0]["loss"]
    assert results["representation"] == "dimuon" and results["rejection"]
    assert max(results["round_trip_max_rel"].values()) < 1e-5
    rej = results["sampling"]["rejected_fraction"]
    assert rej["n"] == 60 and 0 <= rej["fraction"] < 0.5
    tails = {t["name"]: t for t in results["tails"]}
    assert tails["m_mumu outside 66-116"]["flow"]["k"] == 0
    assert tails["dR_j1j2 < 0.4"]["flow"]["k"] == 0
    assert results["observables"]["all"]["m_mumu"]["reference"]["in_band"]
    b = results["observables"]["all"]["pT_imbalance"]
    # two truth samples agree; the flow beats the correlation-free wrong reference
    assert b["reference"]["in_band"]
    assert b["flow"]["w1"] < 0.25 * b["shuffled"]["w1"]
    assert results["speed"]["flow_s_per_event"] > 0
    assert results["speed"]["pythia_s_per_accepted_event"] > 0
