"""Evaluation of generated calorimeter showers: the CaloChallenge high-level features
(Krause et al., "CaloChallenge 2022", arXiv:2410.21611, sec. 4), per-feature distances with the
truth-vs-truth reference, and the classifier test (Krause & Shih, arXiv:2106.05285, sec. 5).

High-level features (``high_level_features``) of voxels (N, L, G, G) [GeV] with the incident
energy E_inc, transverse coordinates of voxel (i, j) x_i = (i - (G-1)/2) s, y_j = (j - (G-1)/2) s
(s the cell size, relative to the shower axis), per layer k:

* ``E_k``: energy in layer k [GeV];  ``E_tot/E_inc``: the response sum_k E_k / E_inc;
* ``cx_k``, ``cy_k``: centroids sum x E / sum E (0 for an empty layer) [cm];
* ``wx_k``, ``wy_k``: widths sqrt(sum x^2 E / sum E - cx^2) (0 for an empty layer) [cm];
* ``sparsity_k``: the fraction of the layer's voxels with zero energy.

Distances (``compare``): per feature, on 30 equal-width bins between the truth's 0.5 % and
99.5 % quantiles plus under- and overflow (for a feature with at most 40 distinct values, one bin
per value): the CaloChallenge separation power S = 1/2 sum_b (p_b - q_b)^2 / (p_b + q_b) of the
normalised histograms (0 identical, 1 disjoint), the 1-D Wasserstein distance W1 of the samples
(``wasserstein_1d``), and a chi^2 test of the "bulk" (the bins holding >= 1 % of the truth
sample): chi^2 = sum_b (p_b - q_b)^2 / (n_b / N^2 + m_b / M^2) with Poisson errors of both
samples, ndf = number of bulk bins, its p-value, and ``in_band``: p > 0.01 (the histogram agrees
with the truth within the statistical band of the two samples). The truth-vs-truth reference
(two independent simulated samples) gives the scale of each number for samples of these sizes.

Classifier test (``classifier_test``): an MLP (2 x 256, ReLU) trained with binary cross entropy to
separate generated (label 1) from simulated (label 0) showers on a 60/20/20 split; early stopping
on the validation loss; the test split's ROC AUC is reported (0.5: indistinguishable, 1:
perfectly separable). Inputs ("low level"): ln(1 + E_voxel / 5 MeV), E_voxel / E_inc and
ln E_inc, standardised on the training split; ``high_level=True`` uses the features above and
ln E_inc instead.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hepjax.metrics import roc_auc

__all__ = ["high_level_features", "separation_power", "wasserstein_1d", "feature_bins",
           "compare", "compare_all", "classifier_test", "FEATURE_GROUPS"]

FEATURE_GROUPS = ("E", "E_tot/E_inc", "cx", "cy", "wx", "wy", "sparsity")


def high_level_features(voxels, e_inc, cell_size: float = 1.0) -> dict[str, np.ndarray]:
    v = np.asarray(voxels, np.float64)
    n, L, gx, gy = v.shape
    x = (np.arange(gx) - (gx - 1) / 2) * cell_size
    y = (np.arange(gy) - (gy - 1) / 2) * cell_size
    e_layer = v.sum((2, 3))
    safe = np.where(e_layer > 0, e_layer, 1.0)
    ex, ey = v.sum(3), v.sum(2)                    # (n, L, G) projections
    cx = (ex * x).sum(-1) / safe
    cy = (ey * y).sum(-1) / safe
    wx = np.sqrt(np.maximum((ex * x * x).sum(-1) / safe - cx * cx, 0.0))
    wy = np.sqrt(np.maximum((ey * y * y).sum(-1) / safe - cy * cy, 0.0))
    empty = e_layer <= 0
    cx, cy, wx, wy = (np.where(empty, 0.0, a) for a in (cx, cy, wx, wy))
    sparsity = (v.reshape(n, L, -1) == 0).mean(-1)
    out = {}
    for k in range(L):
        out[f"E_{k}"] = e_layer[:, k]
    out["E_tot/E_inc"] = e_layer.sum(1) / np.asarray(e_inc, np.float64)
    for name, a in (("cx", cx), ("cy", cy), ("wx", wx), ("wy", wy), ("sparsity", sparsity)):
        for k in range(L):
            out[f"{name}_{k}"] = a[:, k]
    return out


def feature_bins(truth: np.ndarray, n_bins: int = 30) -> np.ndarray:
    """Bin edges: one bin per value for discrete features (<= 40 values), otherwise ``n_bins``
    between the 0.5 % and 99.5 % quantiles; -inf / +inf edges add under- and overflow."""
    t = np.asarray(truth, np.float64)
    values = np.unique(t)
    if len(values) <= 40:
        mids = (values[1:] + values[:-1]) / 2 if len(values) > 1 else np.zeros(0)
        return np.concatenate([[-np.inf], mids, [np.inf]])
    lo, hi = np.quantile(t, [0.005, 0.995])
    if hi <= lo:
        hi = lo + 1e-9
    return np.concatenate([[-np.inf], np.linspace(lo, hi, n_bins + 1), [np.inf]])


def _hist(a, edges):
    return np.histogram(np.clip(np.asarray(a, np.float64), -1e300, 1e300), edges)[0] \
        .astype(np.float64)


def separation_power(a, b, edges) -> float:
    """CaloChallenge's 1/2 sum (p - q)^2 / (p + q) of the normalised histograms."""
    p, q = _hist(a, edges), _hist(b, edges)
    p, q = p / max(p.sum(), 1), q / max(q.sum(), 1)
    s = p + q
    return float(0.5 * np.sum(np.where(s > 0, (p - q) ** 2 / np.where(s > 0, s, 1), 0.0)))


def wasserstein_1d(a, b) -> float:
    """W1 = integral |F_a(x) - F_b(x)| dx of the two empirical distribution functions."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    if len(a) == 0 or len(b) == 0:
        return math.nan
    allv = np.sort(np.concatenate([a, b]))
    dx = np.diff(allv)
    fa = np.searchsorted(a, allv[:-1], side="right") / len(a)
    fb = np.searchsorted(b, allv[:-1], side="right") / len(b)
    return float(np.sum(np.abs(fa - fb) * dx))


def compare(truth, other, edges=None, bulk_fraction: float = 0.01) -> dict:
    """Separation power, W1 and the bulk chi^2 test of ``other`` against ``truth``."""
    from scipy.stats import chi2 as chi2_dist
    edges = feature_bins(truth) if edges is None else edges
    n, m = _hist(truth, edges), _hist(other, edges)
    N, M = max(n.sum(), 1), max(m.sum(), 1)
    bulk = n >= bulk_fraction * N
    var = n / N ** 2 + m / M ** 2
    terms = np.where(bulk & (var > 0), (n / N - m / M) ** 2 / np.where(var > 0, var, 1), 0.0)
    ndf = int(bulk.sum())
    c2 = float(terms.sum())
    p = float(chi2_dist.sf(c2, ndf)) if ndf else math.nan
    pulls = (n / N - m / M)[bulk] / np.sqrt(np.maximum(var[bulk], 1e-300))
    return {"separation": separation_power(truth, other, edges),
            "w1": wasserstein_1d(truth, other), "chi2": c2, "ndf": ndf, "p_value": p,
            "frac_bulk_bins_within_2sigma": float(np.mean(np.abs(pulls) < 2)) if ndf else math.nan,
            "in_band": bool(p > 0.01) if ndf else False}


def compare_all(truth_feats: dict, other_feats: dict) -> dict:
    return {k: compare(truth_feats[k], other_feats[k], feature_bins(truth_feats[k]))
            for k in truth_feats}


# ------------------------------------------------------------------------------ classifier test

class _Classifier(nnx.Module):
    def __init__(self, d, hidden, rngs):
        self.l1 = nnx.Linear(d, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.l2(jax.nn.relu(self.l1(x)))))[..., 0]


@functools.partial(jax.jit, static_argnums=0)
def _logits(graphdef, params, x):
    return nnx.merge(graphdef, params)(x)


@functools.partial(jax.jit, static_argnums=0)
def _bce(graphdef, params, x, y):
    return jnp.mean(optax.sigmoid_binary_cross_entropy(nnx.merge(graphdef, params)(x), y))


@functools.partial(jax.jit, static_argnums=(0, 6, 7, 8))
def _epoch(graphdef, params, opt, key, xtr, ytr, n_batches, batch_size, lr):
    """One epoch of Adam over shuffled batches (jitted once per graph and data shape)."""
    tx = optax.adam(lr)
    perm = jax.random.permutation(key, xtr.shape[0])[:n_batches * batch_size]

    def step(carry, idx):
        params, opt = carry
        g = jax.grad(lambda p: _bce.__wrapped__(graphdef, p, xtr[idx], ytr[idx]))(params)
        upd, opt = tx.update(g, opt, params)
        return (optax.apply_updates(params, upd), opt), None
    (params, opt), _ = jax.lax.scan(step, (params, opt), perm.reshape(n_batches, batch_size))
    return params, opt


def _inputs(voxels, e_inc, high_level: bool, cell_size: float):
    v = np.asarray(voxels, np.float64)
    e = np.asarray(e_inc, np.float64)
    if high_level:
        f = high_level_features(v, e, cell_size)
        cols = [f[k] for k in f] + [np.log(e)]
        return np.stack(cols, -1)
    flat = v.reshape(len(v), -1)
    return np.concatenate([np.log1p(flat / 0.005), flat / e[:, None], np.log(e)[:, None]], -1)


def classifier_test(truth_vox, truth_e, gen_vox, gen_e, *, seed: int = 0,
                    high_level: bool = False, hidden: int = 256, epochs: int = 40,
                    batch_size: int = 256, lr: float = 1e-3, patience: int = 6,
                    cell_size: float = 1.0) -> dict:
    """AUC of a classifier separating generated from simulated showers on a held-out split."""
    xa = _inputs(truth_vox, truth_e, high_level, cell_size)
    xb = _inputs(gen_vox, gen_e, high_level, cell_size)
    x = np.concatenate([xa, xb]).astype(np.float64)
    y = np.concatenate([np.zeros(len(xa)), np.ones(len(xb))]).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_tr, n_va = int(0.6 * len(x)), int(0.2 * len(x))
    tr, va, te = order[:n_tr], order[n_tr:n_tr + n_va], order[n_tr + n_va:]
    mu, sd = x[tr].mean(0), np.maximum(x[tr].std(0), 1e-6)
    x = np.clip((x - mu) / sd, -10, 10).astype(np.float32)
    graphdef, params = nnx.split(_Classifier(x.shape[1], hidden, nnx.Rngs(seed)))
    opt = optax.adam(lr).init(params)
    batch_size = min(batch_size, len(tr))
    n_batches = max(1, len(tr) // batch_size)
    xtr, ytr = jnp.asarray(x[tr]), jnp.asarray(y[tr])
    xva, yva = jnp.asarray(x[va]), jnp.asarray(y[va])
    best, best_params, bad, key = np.inf, params, 0, jax.random.key(seed)
    for ep in range(epochs):
        params, opt = _epoch(graphdef, params, opt, jax.random.fold_in(key, ep), xtr, ytr,
                             n_batches, batch_size, lr)
        vl = float(_bce(graphdef, params, xva, yva))
        if vl < best - 1e-5:
            best, best_params, bad = vl, params, 0
        else:
            bad += 1
            if bad >= patience:
                break
    scores = np.asarray(_logits(graphdef, best_params, jnp.asarray(x[te])))
    auc = roc_auc(y[te], scores)
    return {"auc": float(auc), "val_bce": float(best), "epochs": ep + 1,
            "n_train": int(len(tr)), "n_test": int(len(te))}
