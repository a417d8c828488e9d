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


def test_kfold_by_event_tests_every_jet_once_with_disjoint_events():
    events = np.repeat(np.arange(300), 1 + np.arange(300) % 4)
    folds = cms.kfold_by_event(events, 5, 0)
    tested = np.concatenate([f["test"] for f in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(len(events)))
    for f, fold in enumerate(folds):
        ev = {k: set(events[v]) for k, v in fold.items()}
        assert not (ev["train"] & ev["val"]) and not (ev["train"] & ev["test"])
        assert not (ev["val"] & ev["test"]) and len(ev["test"]) == 60
        assert sum(len(v) for v in fold.values()) == len(events)
        # the validation group of fold f is the test group of fold f + 1
        np.testing.assert_array_equal(fold["val"], folds[(f + 1) % 5]["test"])
    again = cms.kfold_by_event(events, 5, 0)
    assert all(np.array_equal(a["test"], b["test"]) for a, b in zip(folds, again))
    assert not np.array_equal(cms.kfold_by_event(events, 5, 1)[0]["test"], folds[0]["test"])
    with pytest.raises(ValueError, match="k=2"):
        cms.kfold_by_event(events, 2, 0)


def _rank_auc(y, s):
    """Mann-Whitney AUC by brute force over all pairs (ties count one half)."""
    pos, neg = s[y == 1], s[y == 0]
    d = pos[:, None] - neg[None, :]
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def test_cv_metrics_pool_out_of_fold_scores_and_average_the_ensemble():
    rng = np.random.default_rng(3)
    n = 400
    label = rng.integers(0, 4, n)
    logits = {m: rng.normal(size=(n, 4)) + s * np.eye(4)[label] for m, s in (("a", 1.0),
                                                                            ("b", 0.5))}
    probs = {m: np.exp(v) / np.exp(v).sum(1, keepdims=True) for m, v in logits.items()}
    qgl = rng.uniform(size=n) + 0.3 * (label == 2)
    valid = rng.uniform(size=n) > 0.05
    groups = np.array_split(rng.permutation(n), 4)
    r = cms.cv_metrics(label, qgl, valid, probs, groups, ("a", "b"), 50, 0)
    sel = np.isin(label, [2, 3]) & valid
    y = (label[sel] == 2).astype(int)
    ens = (probs["a"] + probs["b"]) / 2
    for m, p in (("a", probs["a"]), ("b", probs["b"]), ("ensemble", ens)):
        disc = p[sel, 2] / (p[sel, 2] + p[sel, 3])
        assert r["uds_vs_g"][m]["auc"] == pytest.approx(_rank_auc(y, disc), abs=1e-12)
    assert r["uds_vs_g"]["jet_qgl"]["auc"] == pytest.approx(_rank_auc(y, qgl[sel]), abs=1e-12)
    d = r["uds_vs_g"]["difference"]["a"]
    assert d["value"] == pytest.approx(r["uds_vs_g"]["a"]["auc"] - r["uds_vs_g"]["jet_qgl"]["auc"])
    assert r["uds_vs_g"]["n_jets"] == sel.sum() and len(r["uds_vs_g"]["per_fold"]["a"]) == 4
    g0 = np.zeros(n, bool)
    g0[groups[0]] = True
    s0 = g0 & sel
    assert r["uds_vs_g"]["per_fold"]["jet_qgl"][0] == pytest.approx(
        _rank_auc((label[s0] == 2).astype(int), qgl[s0]))
    sel_b = np.isin(label, [0, 2, 3])
    pb = ens[sel_b, 0] / (ens[sel_b, 0] + ens[sel_b, 2] + ens[sel_b, 3])
    assert r["b_vs_udsg"]["ensemble"]["auc"] == pytest.approx(
        _rank_auc((label[sel_b] == 0).astype(int), pb), abs=1e-12)
    assert r["accuracy"]["a"] == pytest.approx(np.mean(probs["a"].argmax(1) == label))
    missing = dict(probs, b=np.where(np.arange(n)[:, None] == 7, np.nan, probs["b"]))
    with pytest.raises(ValueError, match="b has no out-of-fold prediction for 1 jets"):
        cms.cv_metrics(label, qgl, valid, missing, groups, ("a", "b"), 10, 0)


def test_particlenet_candidates_carry_raw_eta_phi_as_knn_coordinates():
    from hepjax.data import deepjet_ntuple as dn
    rng = np.random.default_rng(4)
    b, nc, nn = 6, 5, 4
    cpf = rng.normal(size=(b, nc, len(dn.CPF_FEATURES))).astype(np.float32)
    npf = rng.normal(size=(b, nn, len(dn.NPF_FEATURES))).astype(np.float32)
    ci, ni = dn.CPF_FEATURES.index("etarel"), dn.NPF_FEATURES.index("etarel")
    cpf[..., ci:ci + 2] = rng.uniform(-0.4, 0.4, (b, nc, 2))
    npf[..., ni:ni + 2] = rng.uniform(-0.4, 0.4, (b, nn, 2))
    npf[..., dn.NPF_FEATURES.index("pt_over_jet")] = rng.uniform(0.01, 0.3, (b, nn))
    cmask = rng.uniform(size=(b, nc)) > 0.3
    nmask = rng.uniform(size=(b, nn)) > 0.3
    raw = {"cpf": cpf, "npf": npf, "cpf_mask": cmask, "npf_mask": nmask,
           "jet_pt": rng.uniform(20, 100, b).astype(np.float32)}
    split = dict(raw, **cms.candidate_set(raw))
    cms._standardise_cands(split)
    pn, m = split["cand_pn"], split["cand_mask"]
    assert pn.shape[-1] == split["cand"].shape[-1] + 2
    np.testing.assert_array_equal(pn[..., :-2], split["cand"])
    for j in range(b):   # the set of real (eta_rel, phi_rel) pairs is the reader's
        want = np.concatenate([cpf[j, cmask[j], ci:ci + 2], npf[j, nmask[j], ni:ni + 2]])
        got = pn[j, m[j], -2:]
        assert len(got) == len(want)
        np.testing.assert_allclose(np.sort(got[:, 0]), np.sort(want[:, 0]), atol=1e-6)
        np.testing.assert_allclose(np.sort(got[:, 1]), np.sort(want[:, 1]), atol=1e-6)
    assert np.all(pn[~m] == 0)
