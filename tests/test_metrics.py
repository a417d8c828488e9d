"""Tests for hepjax.metrics against scikit-learn, brute-force pair counting and hand-worked
examples; heavy ties and weights throughout."""
import math

import numpy as np
import pytest
from sklearn import metrics as skm

import jax.numpy as jnp

from hepjax import metrics as M


def tied_data(seed, n=2000, decimals=1, weighted=True):
    """Labels, scores rounded to `decimals` (heavy ties), and optional weights."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(0.6 * y, 1.0), decimals)
    w = rng.uniform(0.0, 3.0, n) if weighted else None
    return y, s, w


def brute_auc(y, s, w=None):
    """P(s_sig > s_bkg) + 0.5 P(tie), weighted over all signal-background pairs."""
    w = np.ones(len(y)) if w is None else w
    sp, wp = s[y == 1], w[y == 1]
    sn, wn = s[y == 0], w[y == 0]
    gt = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    return (wp[:, None] * wn[None, :] * gt).sum() / (wp.sum() * wn.sum())


# ------------------------------------------------------------------------------------------------
# ROC and AUC
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("decimals", [0, 1, 3])
def test_roc_curve_matches_sklearn(seed, weighted, decimals):
    y, s, w = tied_data(seed, decimals=decimals, weighted=weighted)
    fpr, tpr, thr = M.roc_curve(y, s, sample_weight=w)
    fpr2, tpr2, thr2 = skm.roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    assert len(fpr) == len(np.unique(s)) + 1  # one point per distinct score, plus (0, 0)
    np.testing.assert_allclose(fpr, fpr2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, tpr2, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(thr, thr2)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("decimals", [0, 1, 2])
def test_roc_auc_matches_sklearn(seed, weighted, decimals):
    y, s, w = tied_data(seed, decimals=decimals, weighted=weighted)
    got = M.roc_auc(y, s, sample_weight=w)
    assert isinstance(got, float)
    assert abs(got - skm.roc_auc_score(y, s, sample_weight=w)) < 1e-12


def test_roc_auc_matches_pair_counting():
    y, s, w = tied_data(5, n=600, decimals=1)
    assert abs(M.roc_auc(y, s, w) - brute_auc(y, s, w)) < 1e-12
    assert abs(M.roc_auc(y, s) - brute_auc(y, s)) < 1e-12


def test_roc_auc_input_types_and_extremes():
    y, s, _ = tied_data(9, n=500)
    ref = skm.roc_auc_score(y, s)
    assert abs(M.roc_auc(jnp.asarray(y), jnp.asarray(s, jnp.float32)) -
               skm.roc_auc_score(y, np.asarray(jnp.asarray(s, jnp.float32)))) < 1e-12
    assert abs(M.roc_auc(y.astype(bool), s) - ref) < 1e-12
    assert abs(M.roc_auc(y.astype(np.float32), list(s)) - ref) < 1e-12
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert M.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert M.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # Reversing the score ordering maps AUC -> 1 - AUC (ties stay 1/2).
    assert abs(M.roc_auc(y, -s) - (1 - ref)) < 1e-12


def test_roc_small_hand_example():
    #       sorted by score: 0.8(S) 0.5(S,B tie) 0.3(B) 0.1(S)
    y = [1, 1, 0, 0, 1]
    s = [0.8, 0.5, 0.5, 0.3, 0.1]
    fpr, tpr, thr = M.roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.5, 0.3, 0.1])
    # Area: 0.5*(1/3+2/3)/2 + 0.5*2/3 = 0.25 + 1/3
    assert abs(M.roc_auc(y, s) - (0.25 + 1 / 3)) < 1e-15


# ------------------------------------------------------------------------------------------------
# background rejection
# ------------------------------------------------------------------------------------------------


def test_background_rejection_hand_interpolation():
    # ROC points (tpr, fpr): (0,0) (0.25,0) (0.25,0.5) (0.5,0.5) (0.75,0.75) (1,0.75) (1,1)
    y = [1, 0, 1, 1, 0, 1, 0, 0]
    s = [0.9, 0.8, 0.7, 0.6, 0.6, 0.5, 0.4, 0.4]
    fpr, tpr, _ = M.roc_curve(y, s)
    np.testing.assert_allclose(tpr, [0, 0.25, 0.25, 0.5, 0.75, 1.0, 1.0])
    np.testing.assert_allclose(fpr, [0, 0, 0.25, 0.25, 0.5, 0.5, 1.0])
    eff = np.array([0.1, 0.25, 0.3, 0.5, 0.6, 0.75, 0.9, 1.0])
    # eps_B by hand:
    #   0.1  on (0,0)-(0.25,0)                      -> 0
    #   0.25 exact; lowest fpr at tpr=0.25          -> 0
    #   0.3  on (0.25,0.25)-(0.5,0.25)              -> 0.25
    #   0.5  exact                                  -> 0.25
    #   0.6  on (0.5,0.25)-(0.75,0.5): 0.25+0.4*0.25 -> 0.35
    #   0.75 exact                                  -> 0.5
    #   0.9  on (0.75,0.5)-(1,0.5)                  -> 0.5
    #   1.0  exact, lowest fpr at tpr=1             -> 0.5
    eps_b = np.array([0, 0, 0.25, 0.25, 0.35, 0.5, 0.5, 0.5])
    want = np.where(eps_b > 0, 1 / np.where(eps_b > 0, eps_b, 1), np.inf)
    got = M.background_rejection(y, s, eff)
    assert got.shape == eff.shape
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert M.background_rejection(y, s, 0.6) == pytest.approx(1 / 0.35, rel=1e-12)
    assert isinstance(M.background_rejection(y, s, 0.6), float)
    assert M.background_rejection(y, s, 0.0) == np.inf


def test_background_rejection_weighted_and_vs_sklearn_curve():
    y, s, w = tied_data(11, n=3000, decimals=2)
    fpr, tpr, _ = skm.roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    for eff in [0.3, 0.5, 0.7]:
        # Independent reference: bracket eff on sklearn's curve by hand.
        i = np.argmax(tpr >= eff)  # first point reaching eff
        if tpr[i] == eff:
            eb = fpr[i]
        else:
            eb = fpr[i - 1] + (eff - tpr[i - 1]) / (tpr[i] - tpr[i - 1]) * (fpr[i] - fpr[i - 1])
        got = M.background_rejection(y, s, eff, sample_weight=w)
        assert got == pytest.approx(1 / eb, rel=1e-12)
    # Rejection falls as the signal efficiency rises.
    r = M.background_rejection(y, s, np.linspace(0.05, 1, 20), sample_weight=w)
    assert np.all(np.diff(r) <= 0)


def test_background_rejection_errors():
    with pytest.raises(ValueError, match=r"signal_efficiency must lie in \[0, 1\]"):
        M.background_rejection([0, 1], [0.1, 0.9], 1.5)
    with pytest.raises(ValueError, match="signal_efficiency"):
        M.background_rejection([0, 1], [0.1, 0.9], [0.3, np.nan])


# ------------------------------------------------------------------------------------------------
# input validation
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [M.roc_auc, M.roc_curve,
                                lambda y, s: M.background_rejection(y, s, 0.3)])
def test_binary_input_errors(fn):
    with pytest.raises(ValueError, match=r"labels must be 0 or 1; found 1 of 4 .*\[2\]"):
        fn([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match=r"both classes; got 3 signal .* and 0 background"):
        fn([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"length mismatch: labels has 3 entries but scores has 2"
                       r"|length mismatch: labels have 3 .* scores has 2"):
        fn([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"scores contains 1 NaN value\(s\) out of 3"):
        fn([0, 1, 1], [0.1, np.nan, 0.2])
    with pytest.raises(ValueError, match=r"must be 1-D.*\(2, 2\)"):
        fn([[0, 1], [1, 0]], [[0.1, 0.2], [0.3, 0.4]])


def test_weight_errors():
    with pytest.raises(ValueError, match="sample_weight contains 1 negative"):
        M.roc_auc([0, 1, 1], [0.1, 0.2, 0.3], [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="length mismatch.*sample_weight has 2"):
        M.roc_auc([0, 1, 1], [0.1, 0.2, 0.3], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive total weight"):
        M.roc_auc([0, 1, 1], [0.1, 0.2, 0.3], [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="non-finite"):
        M.binary_counts([0, 1], [0.1, 0.9], weights=[1.0, np.inf])


# ------------------------------------------------------------------------------------------------
# counts at a threshold
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5])
def test_counts_and_rates_vs_sklearn(weighted, threshold):
    y, s, w = tied_data(3, n=1500, decimals=1, weighted=weighted)
    pred = (s >= threshold).astype(int)
    c = M.binary_counts(y, s, threshold=threshold, weights=w)
    cm = skm.confusion_matrix(y, pred, sample_weight=w)
    np.testing.assert_allclose([c.tn, c.fp, c.fn, c.tp], cm.ravel(), rtol=1e-12)
    assert c.total == pytest.approx(len(y) if w is None else w.sum(), rel=1e-12)
    assert M.accuracy(y, s, threshold, w) == pytest.approx(
        skm.accuracy_score(y, pred, sample_weight=w), rel=1e-12)
    assert M.purity(y, s, threshold, w) == pytest.approx(
        skm.precision_score(y, pred, sample_weight=w), rel=1e-12)
    assert M.efficiency(y, s, threshold, w) == pytest.approx(
        skm.recall_score(y, pred, sample_weight=w), rel=1e-12)
    # FPR = recall of the background class on inverted predictions.
    assert M.false_positive_rate(y, s, threshold, w) == pytest.approx(
        1 - skm.recall_score(1 - y, 1 - pred, sample_weight=w), rel=1e-12)
    assert c.accuracy == M.accuracy(y, s, threshold, w)


def test_counts_hard_predictions_and_undefined_rates():
    c = M.binary_counts([1, 0, 1, 0, 1], [1, 1, 0, 0, 1])
    assert (c.tp, c.fp, c.tn, c.fn) == (2.0, 1.0, 1.0, 1.0)
    assert c.purity == pytest.approx(2 / 3) and c.efficiency == pytest.approx(2 / 3)
    assert c.fpr == 0.5 and c.accuracy == 0.6
    # Nothing selected: purity is undefined -> nan, not a silent 0.
    none = M.binary_counts([1, 0], [0.1, 0.2])
    assert np.isnan(none.purity) and none.efficiency == 0.0
    assert np.isnan(M.binary_counts([0, 0], [0.1, 0.9]).efficiency)


# ------------------------------------------------------------------------------------------------
# confusion matrix
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
@pytest.mark.parametrize("weighted", [False, True])
def test_confusion_matrix_vs_sklearn(normalize, weighted):
    rng = np.random.default_rng(4)
    n, k = 1000, 4
    y = rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    w = rng.uniform(0, 2, n) if weighted else None
    got = M.confusion_matrix(y, p, k, normalize=normalize, weights=w)
    want = skm.confusion_matrix(y, p, labels=range(k), normalize=normalize, sample_weight=w)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    if normalize == "true":
        np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-12)
    if normalize == "pred":
        np.testing.assert_allclose(got.sum(0), 1.0, rtol=1e-12)
    if normalize == "all":
        assert got.sum() == pytest.approx(1.0, rel=1e-12)


def test_confusion_matrix_probs_empty_class_and_errors():
    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    cm = M.confusion_matrix(y, probs, 3)
    np.testing.assert_array_equal(cm, [[1, 0, 1], [1, 1, 0], [0, 0, 0]])
    nt = M.confusion_matrix(y, probs, 3, normalize="true")
    np.testing.assert_allclose(nt[:2], [[0.5, 0, 0.5], [0.5, 0.5, 0]])
    assert np.isnan(nt[2]).all()  # class 2 absent from truth: undefined, not 0
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\); found 1 entries"):
        M.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match=r"preds of shape \(4, 3\).*num_classes=2"):
        M.confusion_matrix(y, probs, 2)
    with pytest.raises(ValueError, match="normalize='rows'"):
        M.confusion_matrix(y, probs, 3, normalize="rows")
    with pytest.raises(ValueError, match="length mismatch"):
        M.confusion_matrix([0, 1, 2], [0, 1], 3)


# ------------------------------------------------------------------------------------------------
# multi-class
# ------------------------------------------------------------------------------------------------


def multiclass_data(seed=6, n=2000, k=4, weighted=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probs = np.round(probs, 2)  # ties
    probs /= probs.sum(1, keepdims=True)
    w = rng.uniform(0, 2, n) if weighted else None
    return y, probs, w


def test_one_vs_rest_auc_vs_sklearn():
    y, probs, w = multiclass_data()
    per, macro = M.one_vs_rest_auc(y, probs)
    for c in range(probs.shape[1]):
        assert abs(per[c] - skm.roc_auc_score(y == c, probs[:, c])) < 1e-12
    assert abs(macro - skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")) < 1e-12
    y, probs, w = multiclass_data(weighted=True)
    per_w, _ = M.one_vs_rest_auc(y, probs, sample_weight=w)
    for c in range(probs.shape[1]):
        assert abs(per_w[c] - skm.roc_auc_score(y == c, probs[:, c], sample_weight=w)) < 1e-12
    with pytest.raises(ValueError, match=r"class counts are \[2, 0, 1\]"):
        M.one_vs_rest_auc([0, 0, 2], np.full((3, 3), 1 / 3))


def test_pairwise_rejection():
    y, probs, _ = multiclass_data()
    a, b = 2, 0
    keep = (y == a) | (y == b)
    score = probs[keep, a] / (probs[keep, a] + probs[keep, b])
    want = M.background_rejection(y[keep] == a, score, [0.3, 0.5])
    np.testing.assert_array_equal(M.pairwise_rejection(y, probs, a, b, [0.3, 0.5]), want)
    # Sanity: the pairwise score separates classes a and b of this toy well.
    assert M.roc_auc(y[keep] == a, score) > 0.8
    with pytest.raises(ValueError, match="must be distinct classes"):
        M.pairwise_rejection(y, probs, 1, 1, 0.5)


# ------------------------------------------------------------------------------------------------
# bootstrap and summary
# ------------------------------------------------------------------------------------------------


def test_bootstrap_deterministic_and_sane():
    y, s, _ = tied_data(8, n=1000)
    r1 = M.bootstrap(M.roc_auc, y, s, n_resamples=100, seed=3)
    r2 = M.bootstrap(M.roc_auc, y, s, n_resamples=100, seed=3)
    r3 = M.bootstrap(M.roc_auc, y, s, n_resamples=100, seed=4)
    assert r1 == r2
    assert r1.mean != r3.mean
    assert r1.value == M.roc_auc(y, s)
    assert r1.low < r1.value < r1.high
    assert abs(r1.mean - r1.value) < 3 * r1.std
    # The 68% interval is about +-1 std for this near-Gaussian statistic.
    assert 1.5 < (r1.high - r1.low) / r1.std < 2.5
    # Weighted metrics get the weights resampled with the events.
    w = np.random.default_rng(0).uniform(0.5, 1.5, len(y))
    rw = M.bootstrap(M.roc_auc, y, s, n_resamples=20, seed=0, weights=w)
    assert rw.value == M.roc_auc(y, s, w)


def test_bootstrap_std_shrinks_like_inverse_sqrt_n():
    y, s, _ = tied_data(12, n=6400, weighted=False)
    small = M.bootstrap(M.roc_auc, y[:400], s[:400], n_resamples=200, seed=0)
    large = M.bootstrap(M.roc_auc, y, s, n_resamples=200, seed=0)
    ratio = small.std / large.std  # expected sqrt(6400/400) = 4
    assert 3.0 < ratio < 5.3, ratio


def test_bootstrap_errors():
    with pytest.raises(ValueError, match="n_resamples"):
        M.bootstrap(M.roc_auc, [0, 1], [0.1, 0.2], n_resamples=1)
    with pytest.raises(ValueError, match="confidence"):
        M.bootstrap(M.roc_auc, [0, 1], [0.1, 0.2], confidence=1.0)
    with pytest.raises(ValueError, match="same leading length"):
        M.bootstrap(M.roc_auc, [0, 1], [0.1, 0.2, 0.3])


def test_binary_summary():
    y, s, _ = tied_data(2, n=2000, decimals=2)
    p = 1 / (1 + np.exp(-s))
    summ = M.binary_summary(y, p)
    assert set(summ) == {"accuracy", "auc", "rej30", "rej50"}
    assert all(isinstance(v, float) for v in summ.values())
    assert summ["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert summ["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5), abs=1e-12)
    assert summ["rej30"] == M.background_rejection(y, p, 0.3)
    assert summ["rej50"] == M.background_rejection(y, p, 0.5)
    assert summ["rej30"] > summ["rej50"] > 1.0


def test_rejection_statistics_poisson_error_of_the_passing_background():
    """1/eps_B = 121.2 on 606 background jets: 5 pass, error 121.2 / sqrt(5); fewer than one
    passing event is counted as one."""
    n_pass, error = M.rejection_statistics(121.2, 606)
    assert math.isclose(n_pass, 5.0) and math.isclose(error, 121.2 / math.sqrt(5.0))
    assert n_pass < M.MIN_BACKGROUND_JETS == 10
    assert M.rejection_statistics(2000.0, 1000) == (0.5, 2000.0)
