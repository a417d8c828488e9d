"""Host-side evaluation metrics for classifiers (numpy; accepts numpy or JAX arrays).

Conventions
-----------
* Binary labels: 1 = signal (positive), 0 = background. Labels may be bool, integer or float,
  but every value must be exactly 0 or 1.
* A score ``s`` is classified as signal when ``s >= threshold``.
* Optional per-event ``weights`` (``sample_weight`` for the ROC functions) must be finite; ROC
  based metrics also require them to be non-negative (a negative weight makes the ROC curve
  non-monotonic and the rejection ill-defined).
* ROC quantities are exact with tied scores: events with equal scores form a single point of
  the curve (like scikit-learn's ``roc_curve(..., drop_intermediate=False)``), and the AUC is the
  trapezoid area of that curve (tied pairs count 1/2), matching ``roc_auc_score``.
* Background rejection follows the Top Tagging landscape protocol (Kasieczka et al.,
  arXiv:1902.09914): ``1 / eps_B`` at fixed signal efficiency ``eps_S``, with ``eps_B`` linearly
  interpolated along the ROC curve.

Everything here raises ``ValueError`` with counts and shapes on malformed input (labels outside
{0, 1}, a single class, length mismatch, NaN scores) rather than returning a quiet number.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import numpy as np

__all__ = [
    "MIN_BACKGROUND_JETS",
    "rejection_statistics",
    "BinaryCounts",
    "binary_counts",
    "accuracy",
    "purity",
    "efficiency",
    "false_positive_rate",
    "roc_curve",
    "roc_auc",
    "background_rejection",
    "confusion_matrix",
    "one_vs_rest_auc",
    "pairwise_rejection",
    "BootstrapResult",
    "bootstrap",
    "binary_summary",
]


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _as_1d(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, shape (N,); got shape {a.shape}.")
    return a


def _check_len(**arrays: np.ndarray) -> None:
    items = list(arrays.items())
    name0, a0 = items[0]
    for name, a in items[1:]:
        if len(a) != len(a0):
            raise ValueError(
                f"length mismatch: {name0} has {len(a0)} entries but {name} has {len(a)}."
            )


def _binary_labels(labels: Any) -> np.ndarray:
    y = _as_1d("labels", labels)
    if y.dtype == bool:
        return y
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"labels must be numeric or bool; got dtype {y.dtype}.")
    bad = ~((y == 0) | (y == 1))
    if np.any(bad):
        vals = np.unique(y[bad])[:5]
        raise ValueError(
            f"labels must be 0 or 1; found {int(bad.sum())} of {y.size} entries outside "
            f"{{0, 1}} (e.g. {vals.tolist()})."
        )
    return y == 1


def _scores(name: str, scores: Any) -> np.ndarray:
    s = _as_1d(name, scores)
    if not np.issubdtype(s.dtype, np.number) and s.dtype != bool:
        raise ValueError(f"{name} must be numeric; got dtype {s.dtype}.")
    s = s.astype(np.float64)
    n_nan = int(np.isnan(s).sum())
    if n_nan:
        raise ValueError(f"{name} contains {n_nan} NaN value(s) out of {s.size}.")
    return s


def _weights(name: str, weights: Any, n: int, nonnegative: bool) -> np.ndarray:
    if weights is None:
        return np.ones(n, np.float64)
    w = _as_1d(name, weights).astype(np.float64)
    if len(w) != n:
        raise ValueError(f"length mismatch: labels have {n} entries but {name} has {len(w)}.")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains {int((~np.isfinite(w)).sum())} non-finite value(s).")
    if nonnegative and np.any(w < 0):
        raise ValueError(
            f"{name} contains {int((w < 0).sum())} negative value(s); ROC-based metrics need "
            "non-negative weights."
        )
    return w


def _roc_inputs(labels, scores, sample_weight):
    y = _binary_labels(labels)
    s = _scores("scores", scores)
    _check_len(labels=y, scores=s)
    w = _weights("sample_weight", sample_weight, len(y), nonnegative=True)
    _require_both_classes(y, w)
    return y, s, w


def _require_both_classes(y: np.ndarray, w: np.ndarray) -> None:
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"ROC metrics need both classes; got {n_pos} signal (label 1) and {n_neg} background "
            "(label 0) events."
        )
    w_pos, w_neg = float(w[y].sum()), float(w[~y].sum())
    if w_pos <= 0 or w_neg <= 0:
        raise ValueError(
            f"ROC metrics need positive total weight in both classes; got {w_pos} for signal "
            f"and {w_neg} for background."
        )


# --------------------------------------------------------------------------------------------
# Counts at a threshold
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BinaryCounts:
    """Weighted confusion counts of a binary classifier at one threshold.

    Derived rates are ``nan`` when their denominator is zero (e.g. ``purity`` with no event
    selected), never a silent 0.
    """

    tp: float
    fp: float
    tn: float
    fn: float

    @property
    def total(self) -> float:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.total)

    @property
    def purity(self) -> float:
        """Precision: TP / (TP + FP)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def efficiency(self) -> float:
        """Signal efficiency, recall, TPR: TP / (TP + FN)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def fpr(self) -> float:
        """Background efficiency, false positive rate: FP / (FP + TN)."""
        return _ratio(self.fp, self.fp + self.tn)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den != 0 else float("nan")


def binary_counts(labels, scores_or_preds, threshold: float = 0.5, weights=None) -> BinaryCounts:
    """TP/FP/TN/FN with ``predicted signal = scores_or_preds >= threshold``.

    Args:
      labels: shape ``(N,)``, values in {0, 1}.
      scores_or_preds: shape ``(N,)``, scores (e.g. probabilities) or hard 0/1 predictions
        (the default threshold 0.5 works for both).
      threshold: decision threshold on the score.
      weights: optional finite per-event weights, shape ``(N,)``.

    Returns:
      :class:`BinaryCounts` (weighted sums; plain counts without weights).
    """
    y = _binary_labels(labels)
    s = _scores("scores_or_preds", scores_or_preds)
    _check_len(labels=y, scores_or_preds=s)
    w = _weights("weights", weights, len(y), nonnegative=False)
    pred = s >= threshold
    return BinaryCounts(
        tp=float(w[y & pred].sum()),
        fp=float(w[~y & pred].sum()),
        tn=float(w[~y & ~pred].sum()),
        fn=float(w[y & ~pred].sum()),
    )


def accuracy(labels, scores_or_preds, threshold: float = 0.5, weights=None) -> float:
    """(TP + TN) / total at ``threshold``; see :func:`binary_counts`."""
    return binary_counts(labels, scores_or_preds, threshold, weights).accuracy


def purity(labels, scores_or_preds, threshold: float = 0.5, weights=None) -> float:
    """Purity (precision) TP / (TP + FP) at ``threshold``; nan if nothing is selected."""
    return binary_counts(labels, scores_or_preds, threshold, weights).purity


def efficiency(labels, scores_or_preds, threshold: float = 0.5, weights=None) -> float:
    """Signal efficiency (recall, TPR) TP / (TP + FN) at ``threshold``; nan without signal."""
    return binary_counts(labels, scores_or_preds, threshold, weights).efficiency


def false_positive_rate(labels, scores_or_preds, threshold: float = 0.5, weights=None) -> float:
    """Background efficiency (FPR) FP / (FP + TN) at ``threshold``; nan without background."""
    return binary_counts(labels, scores_or_preds, threshold, weights).fpr


# --------------------------------------------------------------------------------------------
# ROC
# --------------------------------------------------------------------------------------------


def _roc_points(y: np.ndarray, s: np.ndarray, w: np.ndarray):
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted, w_sorted = s[order], y[order], w[order]
    # Last index of each run of equal scores: tied events enter the curve together.
    distinct = np.flatnonzero(np.diff(s_sorted))
    ends = np.r_[distinct, s_sorted.size - 1]
    tps = np.cumsum(w_sorted * y_sorted, dtype=np.float64)[ends]
    fps = np.cumsum(w_sorted * ~y_sorted, dtype=np.float64)[ends]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    thresholds = np.r_[np.inf, s_sorted[ends]]
    return fps / fps[-1], tps / tps[-1], thresholds


def roc_curve(labels, scores, sample_weight=None):
    """Exact ROC curve with tied scores collapsed.

    Equivalent to ``sklearn.metrics.roc_curve(labels, scores, sample_weight=...,
    drop_intermediate=False)``: one point per distinct score, in order of decreasing threshold,
    plus the starting point (0, 0) at threshold ``+inf``.

    Args:
      labels: shape ``(N,)``, values in {0, 1}; both classes must be present.
      scores: shape ``(N,)``, higher = more signal-like; no NaN.
      sample_weight: optional non-negative finite weights, shape ``(N,)``.

    Returns:
      ``(fpr, tpr, thresholds)``, each shape ``(K + 1,)`` for K distinct scores. ``fpr`` is the
      background efficiency and ``tpr`` the signal efficiency of ``scores >= thresholds``; both
      non-decreasing from 0 to 1.
    """
    y, s, w = _roc_inputs(labels, scores, sample_weight)
    return _roc_points(y, s, w)


def roc_auc(labels, scores, sample_weight=None) -> float:
    """Area under the ROC curve, exact with ties (trapezoid on the tie-collapsed curve).

    Equals the (weighted) probability that a random signal event scores above a random
    background event, ties counting 1/2; agrees with ``sklearn.metrics.roc_auc_score``.

    Args:
      labels: shape ``(N,)``, values in {0, 1}; both classes must be present.
      scores: shape ``(N,)``; no NaN.
      sample_weight: optional non-negative finite weights, shape ``(N,)``.

    Returns:
      AUC in [0, 1] as a Python float.
    """
    fpr, tpr, _ = roc_curve(labels, scores, sample_weight)
    return float(np.trapezoid(tpr, fpr))


def _interp_fpr(fpr: np.ndarray, tpr: np.ndarray, eff: np.ndarray) -> np.ndarray:
    """eps_B at signal efficiencies ``eff`` (in [0, 1]), linear along the ROC.

    ``tpr`` is non-decreasing from 0 to 1. Where ``eff`` equals the tpr of several points the
    first (lowest-fpr) one is used; otherwise the segment between the last point below ``eff``
    and the first point above it is interpolated (its end points have distinct tpr).
    """
    first = np.searchsorted(tpr, eff, side="left")  # first point with tpr >= eff; <= len-1
    exact = tpr[first] == eff
    lo = np.maximum(first - 1, 0)
    t0, t1, f0, f1 = tpr[lo], tpr[first], fpr[lo], fpr[first]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(t1 > t0, (eff - t0) / (t1 - t0), 1.0)  # t1 == t0 only at eff == 0
    # On a point, return its fpr exactly rather than f0 + 1.0 * (f1 - f0).
    return np.where(exact, fpr[first], f0 + frac * (f1 - f0))


# Fewer background jets than this behind a 1/eps_B: the figure is statistics-limited (its
# Poisson error is then >= 30 %) and tables say so.
MIN_BACKGROUND_JETS = 10


def rejection_statistics(rejection: float, n_background: int) -> tuple[float, float]:
    """(n_pass, error) of a finite background rejection 1/eps_B measured on ``n_background``
    background events: ``n_pass = n_background / rejection`` events pass the cut, and the
    Poisson error is ``rejection / sqrt(max(n_pass, 1))``. Below ``MIN_BACKGROUND_JETS``
    passing events the rejection is statistics-limited."""
    n_pass = n_background / rejection
    return n_pass, rejection / math.sqrt(max(n_pass, 1.0))


def background_rejection(labels, scores, signal_efficiency, sample_weight=None):
    """Background rejection ``1 / eps_B`` at fixed signal efficiency ``eps_S``.

    ``eps_B`` is linearly interpolated on the exact ROC curve (:func:`roc_curve`) between the two
    points bracketing ``eps_S``; where ``eps_S`` equals the signal efficiency of several points
    (a horizontal stretch of the curve, e.g. from background-only ties) the lowest ``eps_B`` is
    used. This is the protocol of the Top Tagging landscape (arXiv:1902.09914), which quotes
    ``1/eps_B`` at ``eps_S = 0.3`` (and 0.5).

    Args:
      labels: shape ``(N,)``, values in {0, 1}; both classes must be present.
      scores: shape ``(N,)``; no NaN.
      signal_efficiency: scalar or array of efficiencies in [0, 1].
      sample_weight: optional non-negative finite weights, shape ``(N,)``.

    Returns:
      ``1 / eps_B``, a float for a scalar ``signal_efficiency``, else an array of its shape.
      It is ``inf`` where ``eps_B`` interpolates to exactly 0 (e.g. at ``eps_S = 0``, or below
      the efficiency of the first background event): the background was fully rejected in this
      sample, and a larger sample is needed to measure the rejection there.
    """
    eff = np.asarray(signal_efficiency, dtype=np.float64)
    if np.any(np.isnan(eff)) or np.any(eff < 0) or np.any(eff > 1):
        raise ValueError(
            f"signal_efficiency must lie in [0, 1]; got {signal_efficiency!r}."
        )
    fpr, tpr, _ = roc_curve(labels, scores, sample_weight)
    eps_b = _interp_fpr(fpr, tpr, eff.ravel()).reshape(eff.shape)
    with np.errstate(divide="ignore"):
        rej = np.where(eps_b > 0, 1.0 / np.where(eps_b > 0, eps_b, 1.0), np.inf)
    return float(rej) if rej.ndim == 0 else rej


# --------------------------------------------------------------------------------------------
# Multi-class
# --------------------------------------------------------------------------------------------


def _class_labels(name: str, x: Any, num_classes: int) -> np.ndarray:
    a = _as_1d(name, x)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be integer class indices; got dtype {a.dtype}.")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must be integer class indices; got non-integer values.")
        a = a.astype(np.int64)
    bad = (a < 0) | (a >= num_classes)
    if np.any(bad):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}); found {int(bad.sum())} entries outside "
            f"(e.g. {np.unique(a[bad])[:5].tolist()})."
        )
    return a


def confusion_matrix(labels, preds, num_classes: int, normalize=None, weights=None) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = (weighted) number of events of true class i predicted j.

    Same orientation as ``sklearn.metrics.confusion_matrix`` (rows = truth, columns =
    prediction).

    Args:
      labels: true class indices, shape ``(N,)``, in ``[0, num_classes)``.
      preds: predicted class indices, shape ``(N,)``, or scores/probabilities of shape
        ``(N, num_classes)`` (argmax is taken).
      num_classes: number of classes C.
      normalize: ``None`` (counts), ``'true'`` (each row sums to 1: per-class efficiencies),
        ``'pred'`` (each column sums to 1: per-class purities) or ``'all'`` (the matrix sums to
        1). A row/column with zero total becomes ``nan`` (sklearn writes 0 there), so that an
        absent class is not mistaken for a 0% efficiency.
      weights: optional finite per-event weights, shape ``(N,)``.

    Returns:
      Float array of shape ``(C, C)``.
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize={normalize!r} is not one of None, 'true', 'pred', 'all'.")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
    num_classes = int(num_classes)
    p = np.asarray(preds)
    if p.ndim == 2:
        if p.shape[1] != num_classes:
            raise ValueError(
                f"preds of shape {p.shape} are read as scores (N, num_classes) but "
                f"num_classes={num_classes}."
            )
        if np.any(np.isnan(p)):
            raise ValueError(f"preds (scores) contain {int(np.isnan(p).sum())} NaN value(s).")
        p = np.argmax(p, axis=1)
    y = _class_labels("labels", labels, num_classes)
    p = _class_labels("preds", p, num_classes)
    _check_len(labels=y, preds=p)
    w = _weights("weights", weights, len(y), nonnegative=False)
    cm = np.zeros((num_classes, num_classes), np.float64)
    np.add.at(cm, (y, p), w)
    if normalize is None:
        return cm
    with np.errstate(divide="ignore", invalid="ignore"):
        if normalize == "true":
            den = cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            den = cm.sum(axis=0, keepdims=True)
        else:
            den = cm.sum()
        return np.where(den != 0, cm / np.where(den != 0, den, 1.0), np.nan)


def _multiclass_inputs(labels, probs, sample_weight):
    pr = np.asarray(probs, dtype=np.float64)
    if pr.ndim != 2 or pr.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, C) with C >= 2; got {pr.shape}.")
    y = _class_labels("labels", labels, pr.shape[1])
    _check_len(labels=y, probs=pr)
    if np.any(np.isnan(pr)):
        raise ValueError(f"probs contain {int(np.isnan(pr).sum())} NaN value(s).")
    w = _weights("sample_weight", sample_weight, len(y), nonnegative=True)
    return y, pr, w


def one_vs_rest_auc(labels, probs, sample_weight=None) -> tuple[np.ndarray, float]:
    """Per-class one-vs-rest AUC and their unweighted (macro) average.

    Class c's AUC uses ``probs[:, c]`` to separate class c (signal) from all others.

    Args:
      labels: integer class indices, shape ``(N,)``, in ``[0, C)``; every class present.
      probs: scores, shape ``(N, C)`` (need not be normalised).
      sample_weight: optional non-negative finite weights, shape ``(N,)``.

    Returns:
      ``(per_class, macro)``: an array of shape ``(C,)`` and its mean.
    """
    y, pr, w = _multiclass_inputs(labels, probs, sample_weight)
    counts = np.bincount(y, minlength=pr.shape[1])
    if np.any(counts == 0):
        raise ValueError(
            f"one_vs_rest_auc needs every class present; class counts are {counts.tolist()}."
        )
    per = np.array([roc_auc(y == c, pr[:, c], w) for c in range(pr.shape[1])])
    return per, float(per.mean())


def pairwise_rejection(
    labels, probs, signal_class: int, background_class: int, signal_efficiency,
    sample_weight=None,
):
    """One-vs-one background rejection, as in the JetClass benchmark (arXiv:2202.03772).

    Only events of ``signal_class`` (a) and ``background_class`` (b) are kept, scored with
    ``s_a / (s_a + s_b)``, and the rejection of b is quoted at signal efficiency of a
    (see :func:`background_rejection`).

    Args:
      labels: integer class indices, shape ``(N,)``.
      probs: non-negative class scores, shape ``(N, C)``; ``s_a + s_b`` must be > 0.
      signal_class, background_class: distinct class indices a and b.
      signal_efficiency: scalar or array in [0, 1].
      sample_weight: optional non-negative finite weights, shape ``(N,)``.

    Returns:
      ``1 / eps_B`` (float or array), inf where eps_B interpolates to 0.
    """
    y, pr, w = _multiclass_inputs(labels, probs, sample_weight)
    a, b = int(signal_class), int(background_class)
    c = pr.shape[1]
    if a == b or not (0 <= a < c and 0 <= b < c):
        raise ValueError(
            f"signal_class={signal_class} and background_class={background_class} must be "
            f"distinct classes in [0, {c})."
        )
    keep = (y == a) | (y == b)
    sa, sb = pr[keep, a], pr[keep, b]
    den = sa + sb
    if np.any(den <= 0):
        raise ValueError(
            f"s_a + s_b must be > 0 for the pairwise score; {int((den <= 0).sum())} events of "
            f"classes {a}/{b} have s_a + s_b <= 0."
        )
    return background_rejection(y[keep] == a, sa / den, signal_efficiency, w[keep])


# --------------------------------------------------------------------------------------------
# Bootstrap and summary
# --------------------------------------------------------------------------------------------


class BootstrapResult(NamedTuple):
    """Bootstrap estimate of a metric's uncertainty.

    Attributes:
      value: the metric on the full sample.
      mean: mean over resamples.
      std: standard deviation over resamples (ddof=1): the statistical uncertainty.
      low, high: central percentile interval over resamples with the requested ``confidence``.
    """

    value: float
    mean: float
    std: float
    low: float
    high: float


def bootstrap(
    metric_fn: Callable[..., float],
    labels,
    scores,
    n_resamples: int = 200,
    seed: int = 0,
    confidence: float = 0.68,
    weights=None,
) -> BootstrapResult:
    """Bootstrap uncertainty of ``metric_fn(labels, scores[, weights])``.

    Each resample draws N events with replacement from ``np.random.default_rng(seed)``, so the
    result is a deterministic function of ``seed``. Resampling is not stratified: if
    ``metric_fn`` raises on a resample (e.g. a ROC metric on a resample with a single class,
    possible for tiny samples), the error propagates rather than being skipped.

    Args:
      metric_fn: ``f(labels, scores) -> float``, or ``f(labels, scores, weights) -> float``
        when ``weights`` is given (e.g. :func:`roc_auc`, or ``lambda y, s:
        background_rejection(y, s, 0.3)``).
      labels: shape ``(N,)``.
      scores: shape ``(N,)`` or ``(N, ...)`` (rows are resampled).
      n_resamples: number of bootstrap resamples, >= 2.
      seed: integer seed.
      confidence: coverage of the percentile interval, in (0, 1); 0.68 is "1 sigma".
      weights: optional per-event weights, shape ``(N,)``, resampled with the events.

    Returns:
      :class:`BootstrapResult`.
    """
    if int(n_resamples) != n_resamples or n_resamples < 2:
        raise ValueError(f"n_resamples must be an integer >= 2; got {n_resamples!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}.")
    y = np.asarray(labels)
    s = np.asarray(scores)
    if y.ndim < 1 or s.ndim < 1 or len(y) != len(s):
        raise ValueError(
            f"labels (shape {y.shape}) and scores (shape {s.shape}) must have the same "
            "leading length."
        )
    n = len(y)
    if n == 0:
        raise ValueError("bootstrap needs at least one event; got 0.")
    w = None
    if weights is not None:
        w = np.asarray(weights)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},); got {w.shape}.")

    def call(idx):
        if w is None:
            return float(metric_fn(y[idx], s[idx]))
        return float(metric_fn(y[idx], s[idx], w[idx]))

    value = call(np.arange(n))
    rng = np.random.default_rng(seed)
    vals = np.array([call(rng.integers(0, n, size=n)) for _ in range(int(n_resamples))])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(vals, [alpha, 1.0 - alpha])
    return BootstrapResult(
        value=value, mean=float(vals.mean()), std=float(vals.std(ddof=1)),
        low=float(low), high=float(high),
    )


def binary_summary(labels, scores, threshold: float = 0.5, weights=None) -> dict[str, float]:
    """The metrics the training loop logs for a binary tagger.

    Args:
      labels: shape ``(N,)``, values in {0, 1}; both classes present.
      scores: shape ``(N,)``, e.g. signal probabilities (``accuracy`` uses ``scores >=
        threshold``, so pass probabilities with 0.5 or logits with ``threshold=0.0``).
      threshold: decision threshold for the accuracy.
      weights: optional non-negative per-event weights, shape ``(N,)``.

    Returns:
      ``{'accuracy', 'auc', 'rej30', 'rej50'}``: accuracy at ``threshold``, ROC AUC, and
      background rejection ``1/eps_B`` at signal efficiency 0.3 and 0.5 (Python floats; the
      rejections may be ``inf``, see :func:`background_rejection`).
    """
    rej = background_rejection(labels, scores, np.array([0.3, 0.5]), weights)
    return {
        "accuracy": accuracy(labels, scores, threshold, weights),
        "auc": roc_auc(labels, scores, weights),
        "rej30": float(rej[0]),
        "rej50": float(rej[1]),
    }
