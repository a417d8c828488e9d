"""experiments/cms_jets: regression losses and resolution metrics against numpy formulas, the
event split, AUC uncertainties, and the smoke variant end to end on the real CMS ntuple."""
import json
import math

import numpy as np
import pytest

from experiments.cms_jets import run as cms


def test_regression_losses_match_numpy():
    rng = np.random.default_rng(0)
    jet = rng.uniform(20, 100, 50)
    gen = jet * rng.lognormal(0.0, 0.2, 50)
    target = np.stack([jet, gen], 1).astype(np.float32)
    out = rng.normal(0, 0.3, (50, 2)).astype(np.float32)
    t = np.log(gen / jet)
    np.testing.assert_allclose(float(cms.log_ratio_loss(out[:, :1], target)),
                               np.mean((out[:, 0] - t) ** 2), rtol=1e-5)
    mean, log_var = out[:, 0], out[:, 1]
    nll = 0.5 * (log_var + (t - mean) ** 2 / np.exp(log_var)) + 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(float(cms.gaussian_nll_loss(out, target)), nll.mean(), rtol=1e-5)
    # the exact NLL of a standard normal at its mean
    zero = np.zeros((1, 2), np.float32)
    np.testing.assert_allclose(float(cms.gaussian_nll_loss(zero, np.ones((1, 2), np.float32))),
                               0.5 * math.log(2 * math.pi), rtol=1e-6)


def test_response_and_resolution_match_numpy():
    rng = np.random.default_rng(1)
    gen = rng.uniform(20, 120, 4000)
    ratio = rng.normal(1.05, 0.1, 4000)
    r = cms.response_resolution(ratio, gen)
    q16, q50, q84 = np.quantile(ratio, [0.16, 0.5, 0.84])
    assert r["overall"]["response"] == pytest.approx(q50)
    assert r["overall"]["resolution"] == pytest.approx((q84 - q16) / 2)
    assert r["overall"]["resolution"] == pytest.approx(0.1, rel=0.05)   # a Gaussian's sigma
    assert r["overall"]["rel_resolution"] == pytest.approx((q84 - q16) / 2 / q50)
    assert sum(b["n"] for b in r["bins"]) == 4000
    sel = (gen >= 30) & (gen < 40)
    b = [b for b in r["bins"] if b["lo"] == 30][0]
    assert b["n"] == sel.sum() and b["response"] == pytest.approx(np.median(ratio[sel]))


def test_split_by_event_is_disjoint_seeded_and_keeps_events_whole():
    events = np.repeat(np.arange(500), 1 + np.arange(500) % 3)
    s = cms.split_by_event(events, 0)
    all_idx = np.concatenate(list(s.values()))
    assert len(all_idx) == len(events) and len(np.unique(all_idx)) == len(events)
    sets = {k: set(events[v]) for k, v in s.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"])
    assert not (sets["val"] & sets["test"])
    assert [len(sets[k]) for k in ("train", "val", "test")] == [300, 100, 100]
    np.testing.assert_array_equal(cms.split_by_event(events, 0)["test"], s["test"])
    assert not np.array_equal(cms.split_by_event(events, 1)["test"], s["test"])


def test_auc_uncertainties_agree_and_pair():
    rng = np.random.default_rng(2)
    y = (np.arange(600) % 2).astype(int)
    a = rng.normal(size=600) + 1.0 * y
    b = a + rng.normal(size=600) * 0.5
    r = cms.paired_bootstrap_auc(y, {"a": a, "b": b}, 200, 0, reference="b")
    assert r["a"]["auc"] > r["b"]["auc"]
    # bootstrap and Hanley-McNeil standard errors agree to 25 %
    assert r["a"]["bootstrap_std"] == pytest.approx(r["a"]["hanley_mcneil"], rel=0.25)
    # pairing: the difference is known better than either AUC
    d = r["difference"]["a"]
    assert d["value"] == pytest.approx(r["a"]["auc"] - r["b"]["auc"])
    assert d["bootstrap_std"] < r["a"]["bootstrap_std"] and d["fraction_positive"] > 0.9


def test_smoke_variant_end_to_end(shared_data, tmp_path):
    path = shared_data / "cms_deepjet_ttbar_ntuple" / "ntuple_ttbar.root"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    r = cms.run("smoke", tmp_path, path, seed=0, log=lambda *a: None)
    for name in ("results.json", "table.md", "roc.png", "confusion.png", "response.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["split_sizes"] == r["split_sizes"] and sum(r["split_sizes"].values()) == 2500
    assert saved["reader"]["n_unlabelled"] == 0
    u = r["uds_vs_g"]
    assert u["n_jets"] + u["n_excluded_qgl_missing"] == sum(r["test_class_counts"][2:])
    assert 0.6 < u["jet_qgl"]["auc"] < 0.85          # CMS's likelihood on these jets
    assert r["b_vs_udsg"]["deepjet"]["auc"] > 0.7     # three epochs already find the b jets
    np.testing.assert_allclose(np.array(r["confusion_true"]).sum(1), 1.0, atol=1e-6)
    cols = np.array(r["confusion_pred"]).sum(0)      # a class never predicted: a NaN column
    assert np.all(np.isnan(cols) | (np.abs(cols - 1) < 1e-6)) and np.isfinite(cols).any()
    for k in ("uncorrected", "log_ratio", "gaussian_nll"):
        assert np.isfinite(r["regression"][k]["overall"]["resolution"])
    assert set(r["bars"]) >= {"uds_vs_g_deepjet_beats_jet_qgl", "log_ratio_improves_resolution",
                              "gaussian_nll_response_within_1pct"}
    assert "deepjet" in u["difference"] and "deepjet" in u["on_all_uds_g_jets"]
