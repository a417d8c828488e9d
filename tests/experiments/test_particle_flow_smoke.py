"""experiments/particle_flow: the metrics on hand-made inputs, and the smoke variant end to end
(Pythia events, elements, MLPF training, the rule-based baseline, jets, MET, plots)."""
import json

import numpy as np
import pytest

from experiments.particle_flow import metrics, run


def test_metrics_of_a_perfect_and_a_biased_reconstruction():
    rng = np.random.default_rng(0)
    tcls = [rng.integers(0, 6, 50).astype(np.int8) for _ in range(4)]
    target = [np.stack([rng.uniform(1, 50, 50), rng.uniform(-2, 2, 50), rng.uniform(-3, 3, 50),
                        rng.uniform(60, 100, 50)], 1) for _ in range(4)]
    perfect = metrics.class_metrics(tcls, target, tcls, target)
    for c in metrics.CLASS_NAMES[1:]:
        assert perfect[c]["efficiency"] == 1.0 and perfect[c]["fake_rate"] == 0.0
        assert perfect[c]["pt_response"]["median"] == pytest.approx(1.0)
    # every pT 10 % high: response 1.1, jets scale with it, MET too
    high = [t * np.array([1.1, 1, 1, 1.1]) for t in target]
    assert metrics.class_metrics(tcls, high, tcls, target)["photon"]["pt_response"]["median"] == \
        pytest.approx(1.1)
    gen_jets = metrics.jets(target)
    ratios, matched = metrics.match_jets(gen_jets, metrics.jets(high))
    assert matched == 1.0 and np.allclose(np.concatenate(ratios), 1.1, atol=1e-6)
    np.testing.assert_allclose(metrics.met(high), 1.1 * metrics.met(target), rtol=1e-9)
    px = sum(-t[:, 0] * np.cos(t[:, 2]) for t in target[:1])
    assert metrics.met(target[:1])[0, 0] == pytest.approx(px.sum())


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pf_smoke")
    return workdir, run.main(["--variant", "smoke", "--workdir", str(workdir)])


def test_smoke_run_writes_outputs_and_the_network_learns(smoke_run):
    workdir, results = smoke_run
    for name in ("results.json", "jets_met.png", "classes.png", "loss.png", "model.pkl"):
        assert (workdir / name).stat().st_size > 0, name
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["variant"] == "smoke" and "jet_pt" in saved["ttbar"]["mlpf"]
    # validation numbers (for choices) and the expected-momentum decoding are reported too
    assert "met_resolution_gev" in saved["val"]["mlpf"] and "jet_pt" in saved["ttbar"]["mlpf_soft"]
    log = results["train_log"]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    # the network beats always answering the most frequent class by a margin a network trained
    # on shuffled labels cannot reach (it can only learn the class frequencies)
    test = run.ensure_events(run.VARIANTS["smoke"], workdir / "data", 0)["test"]
    y = np.concatenate([test[i]["target_class"] for i in range(len(test))])
    majority = np.bincount(y).max() / len(y)
    acc = results["ttbar"]["mlpf"]["element_accuracy"]
    assert acc > majority + 0.15, (acc, majority)
    # the baseline finds most charged hadrons (all tracked ones; untracked ones in clusters
    # become neutral candidates) and jets near response 1
    b = results["ttbar"]["baseline"]
    assert b["classes"]["charged_hadron"]["efficiency"] > 0.7
    assert 0.8 < b["jet_pt"]["median"] < 1.2


def test_compare_uses_common_jets_and_paired_errors():
    # algorithm a: every jet exact; b: 10 % spread and it misses every third generator jet.
    # On the common jets a's resolution is 0, b's the spread; the paired difference of a with
    # itself is exactly 0 with 0 error
    rng = np.random.default_rng(1)
    every_a = [np.ones(6) for _ in range(30)]
    every_b = [np.where(np.arange(6) % 3 == 0, np.nan, 1 + 0.1 * rng.normal(size=6))
               for _ in range(30)]
    met_a = [rng.normal(size=2) for _ in range(30)]
    met_b = [3 * m for m in met_a]
    a = {"_jet_every": every_a, "_met_diff_per_event": met_a}
    b = {"_jet_every": every_b, "_met_diff_per_event": met_b}
    out = metrics.compare(a, b, n_boot=50)
    assert out["n_common_jets"] == 30 * 4
    assert out["jet_pt_common"]["a"]["resolution"] == 0.0
    assert 0.07 < out["jet_pt_common"]["b"]["resolution"] < 0.13
    d = out["jet_resolution_common_diff"]
    assert d["difference"] == pytest.approx(-out["jet_pt_common"]["b"]["resolution"])
    assert 0 < d["difference_err"] < 0.03
    m = out["met_resolution_diff"]
    assert m["difference"] < 0 and m["difference_err"] > 0
    same = metrics.compare(a, a, n_boot=20)["met_resolution_diff"]
    assert same == {"difference": 0.0, "difference_err": 0.0}
    # match_jets(every=True): one entry per selected generator jet, NaN when unmatched
    gen = [np.array([[30.0, 0.0, 0.0], [25.0, 1.0, 2.0], [5.0, 0.0, 1.0]])]
    reco = [np.array([[33.0, 0.05, 0.0]])]
    every, frac = metrics.match_jets(gen, reco, every=True)
    assert frac == 0.5 and every[0][0] == pytest.approx(1.1) and np.isnan(every[0][1])
    assert len(every[0]) == 2
