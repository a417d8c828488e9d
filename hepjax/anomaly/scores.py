"""Anomaly scores (larger = more anomalous) and their figures of merit.

Scores: the reconstruction error of an autoencoder (Heimel et al. 2019; Farina et al. 2020),
the negative ELBO of a VAE and its KL term, and a latent-space distance (the Mahalanobis
distance of a jet's latent vector, or representation, to the training background's latent
distribution -- a Gaussian density estimate in latent space).

Figures of merit: the ROC AUC (``hepjax.metrics.roc_auc``), the significance-improvement curve
SIC = eps_S / sqrt(eps_B) and its maximum over working points with eps_B above a stated floor
(at eps_B -> 0 the SIC is set by a handful of background events), and the mass-sculpting
measure: the Jensen-Shannon divergence between the background jet-mass distribution before
and after a cut on the score (Farina et al. 2020 discuss the sculpting of the QCD mass).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hepjax import metrics
from hepjax.anomaly.train import apply_batched
from hepjax.models.autoencoders import reconstruction_loss

__all__ = ["reconstruction_error", "vae_scores", "LatentDistance", "sic_curve", "max_sic",
           "auc", "js_divergence", "mass_sculpting"]


def reconstruction_error(model, x, batch_size: int = 1024) -> np.ndarray:
    """|| model(x) - x ||^2 per example (clean inputs: also the DAE's score)."""
    fn = jax.jit(lambda b: reconstruction_loss(model(b), b))
    return apply_batched(fn, x, batch_size)


def vae_scores(model, x, seed: int = 0, num_samples: int = 8, batch_size: int = 1024) -> dict:
    """{'neg_elbo', 'kl', 'reco'}: -ELBO (``num_samples`` draws, a fixed key: deterministic),
    the analytic KL term, and the error of the mean reconstruction g(mu(x)), each (N,)."""
    key = jax.random.PRNGKey(seed)

    def f(b):
        rec, kl = model.elbo_terms(b, key, num_samples)
        return jnp.stack([kl - rec, kl, reconstruction_loss(model(b), b)], -1)

    out = apply_batched(jax.jit(f), x, batch_size)
    return {"neg_elbo": out[:, 0], "kl": out[:, 1], "reco": out[:, 2]}


class LatentDistance:
    """Mahalanobis distance to the background's latent (or representation) distribution:
    d(z)^2 = (z - m)^T C^-1 (z - m), m and C (plus ``ridge`` * I) fitted on training latents."""

    def __init__(self, ridge: float = 1e-6):
        self.ridge = ridge
        self.mean = self.precision = None

    def fit(self, z) -> "LatentDistance":
        z = np.asarray(z, np.float64)
        if z.ndim != 2 or len(z) < 2:
            raise ValueError(f"LatentDistance.fit: expected latents (N >= 2, D), got {z.shape}")
        self.mean = z.mean(0)
        cov = np.atleast_2d(np.cov(z, rowvar=False))
        cov = cov + self.ridge * np.trace(cov) / len(cov) * np.eye(len(cov))
        self.precision = np.linalg.inv(cov)
        return self

    def __call__(self, z) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("LatentDistance: call fit() on the training latents first")
        d = np.asarray(z, np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", d, self.precision, d), 0.0))


def auc(labels, scores) -> float:
    return float(metrics.roc_auc(labels, scores))


def sic_curve(labels, scores):
    """(eps_S, eps_B, SIC) over every threshold (score >= t counts as anomalous)."""
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    fpr, tpr = np.asarray(fpr), np.asarray(tpr)
    with np.errstate(divide="ignore", invalid="ignore"):
        sic = np.where(fpr > 0, tpr / np.sqrt(fpr), 0.0)
    return tpr, fpr, sic


def max_sic(labels, scores, eps_b_floor: float = 1e-3, min_background: int = 10) -> dict:
    """Maximum SIC over thresholds with eps_B >= max(eps_b_floor, min_background / N_B): below
    that floor the SIC rests on fewer than ``min_background`` background jets. Returns
    {'max_sic', 'eps_s', 'eps_b', 'eps_b_floor'}."""
    labels = np.asarray(labels)
    n_b = int((labels == 0).sum())
    floor = max(eps_b_floor, min_background / max(n_b, 1))
    tpr, fpr, sic = sic_curve(labels, scores)
    ok = fpr >= floor
    if not ok.any():
        raise ValueError(f"max_sic: no working point with eps_B >= {floor:g} ({n_b} background)")
    i = int(np.argmax(np.where(ok, sic, -np.inf)))
    return {"max_sic": float(sic[i]), "eps_s": float(tpr[i]), "eps_b": float(fpr[i]),
            "eps_b_floor": float(floor)}


def js_divergence(p, q) -> float:
    """Jensen-Shannon divergence (natural log, in [0, ln 2]) between two histograms."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    p, q = p / max(p.sum(), 1e-300), q / max(q.sum(), 1e-300)
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / b[nz])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def mass_sculpting(mass, scores, keep_fractions=(0.5, 0.1, 0.02), bins=None) -> list[dict]:
    """For background jets: the JS divergence between the mass histogram of all jets and of the
    ``keep`` fraction with the highest scores, per fraction, with the mean mass after the cut."""
    mass, scores = np.asarray(mass, np.float64), np.asarray(scores, np.float64)
    bins = np.linspace(0.0, 300.0, 31) if bins is None else bins
    before, _ = np.histogram(mass, bins)
    out = []
    for keep in keep_fractions:
        cut = np.quantile(scores, 1.0 - keep)
        sel = scores >= cut
        after, _ = np.histogram(mass[sel], bins)
        out.append({"keep": float(keep), "n": int(sel.sum()), "js": js_divergence(before, after),
                    "mean_mass": float(mass[sel].mean()) if sel.any() else float("nan")})
    return out
