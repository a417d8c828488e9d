"""experiments/generative: the smoke variant end to end (showers, preprocessing, models trained
and sampled, CaloChallenge metrics, classifier test, table, plots). To keep the suite's time,
the test trains the flow and the GAN only (each model costs ~8 s of XLA compilation); the
diffusion model's loss and DDIM sampler are covered by tests/models/test_generative.py and
``--variant smoke`` without ``--models`` runs all four. The smoke flow is calibrated after
training (``zero_calibration`` and ``layer_calibration`` in config.py) and also scored without
its calibrations (``flow_uncalibrated``)."""
import json

import numpy as np
import pytest

from experiments.generative import run


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("generative_smoke")
    results = run.main(["--dataset", "calo", "--variant", "smoke", "--workdir", str(workdir),
                        "--models", "flow,gan"])
    return workdir, results


def test_smoke_run_writes_every_output(smoke_run):
    workdir, results = smoke_run
    for name in ("results.json", "table.md", "features.png", "showers.png", "loss.png",
                 "showers.npz"):
        assert (workdir / name).stat().st_size > 0, name
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["variant"] == "smoke" and saved["dataset"] == "calo"
    # the flow's showers with the calibrated read-out thresholds, and without them
    assert set(saved["samples"]) == {"reference", "flow", "flow_uncalibrated", "gan"}
    cal = saved["samples"]["flow"]["zero_calibration"]
    assert cal["config"] == {"n_bins": 2, "n_layer_bins": 2} and cal["n_fit"] == 500
    # on its fitting sample (the training energies) the calibration gives the training
    # showers' zero fraction of every voxel in every E_inc bin exactly
    assert cal["fit_sample_max_abs_zero_fraction_diff"] == 0.0
    assert cal["fit_sample_max_abs_zero_fraction_diff_uncalibrated"] > 0.0
    assert (workdir / "models" / "flow_zero_calibration.npz").stat().st_size > 0
    assert saved["samples"]["flow"]["layer_calibration"]["config"] == {"n_bins": 2}
    assert (workdir / "models" / "flow_layer_calibration.npz").stat().st_size > 0
    assert "flow_uncalibrated" not in saved["best"]["model"]
    assert (workdir / "models" / "flow.pkl").stat().st_size > 0
    table = (workdir / "table.md").read_text()
    assert "classifier AUC" in table and "Bars (issue 27)" in table


def test_smoke_metrics_are_sane(smoke_run):
    workdir, results = smoke_run
    assert results["sim_s_per_shower"] > 0
    for name, r in results["samples"].items():
        assert 0.0 <= r["classifier"]["auc"] <= 1.0
        assert len(r["features"]) == 4 * 6 + 1          # E, cx, cy, wx, wy, sparsity; response
        for f in r["features"].values():
            assert 0.0 <= f["separation"] <= 1.0 and f["w1"] >= 0
        if name != "reference" and not name.endswith("_uncalibrated"):   # twins: no timing
            assert r["timing"]["s_per_shower"] > 0
            assert np.isfinite([h["loss"] for h in r["history"]]).all()
    # two independent simulated samples agree within their statistical band
    ref = results["samples"]["reference"]["features"]
    assert sum(f["in_band"] for f in ref.values()) >= 21
    # the flow's likelihood training made progress even in 40 steps
    hist = results["samples"]["flow"]["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    # rerunning reuses the cached showers (same seed, same data)
    data = np.load(workdir / "showers.npz")
    assert data["train_voxels"].shape == (500, 4, 5, 5)
    assert (data["train_voxels"] >= 0).all() and np.isfinite(data["train_voxels"]).all()
