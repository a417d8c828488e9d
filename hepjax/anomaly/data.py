"""Input checks and jet representations for anomaly detection.

An anomaly detector trained on a sample that holds only the signal class, or nothing, or NaNs,
still "trains" and returns numbers; these checks turn each case into a one-line error that names
the array, its shape and what was expected.

Representations (all from four-momenta p4 (N, P, 4) = (E, px, py, pz) in GeV and a mask):

* :func:`observables` -- log-transformed jet observables (mass, constituent count,
  N-subjettiness, tau21, tau32, C2, D2; ``hepjax.data.features``), standardised with a
  :class:`Standardiser` fitted on the training sample only;
* :func:`images` -- Macaluso-Shih preprocessed jet images (``hepjax.data.images``), scaled so
  an image's pixels sum to ``scale``;
* :func:`constituents` -- sets (N, P, 3) of (delta eta, delta phi, log pT fraction) relative
  to the jet axis, with the mask and the pT fractions (weights of the Sinkhorn/EMD loss).
"""
from __future__ import annotations

import numpy as np

from hepjax.data import features as features_lib
from hepjax.data import images as images_lib
from hepjax.physics import numpy_kinematics as npkin

__all__ = ["check_training_data", "check_features", "check_images", "observables",
           "OBSERVABLES", "Standardiser", "images", "constituents"]

OBSERVABLES = ("mass", "n_constituents", "tau1", "tau2", "tau3", "tau21", "tau32", "c2", "d2")


def check_features(x, name: str = "features") -> np.ndarray:
    """``x`` as a float array; refuses an empty array and NaN/inf entries (naming the first)."""
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"{name}: no examples (shape {x.shape}); an autoencoder needs at least "
                         "one training example")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real numbers, got dtype {x.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise ValueError(f"{name}: {int(bad.sum())} NaN/inf entries in shape {x.shape}, the first "
                         f"at index {tuple(int(i) for i in where)}; clean or drop those examples")
    return x.astype(np.float32)


def check_images(x, image_size: int, channels: int = 1, name: str = "images") -> np.ndarray:
    """Refuses images that are not (N, image_size, image_size[, channels]); returns
    (N, S, S, C) float32."""
    x = check_features(x, name)
    if x.ndim == 3:
        x = x[..., None]
    want = (image_size, image_size, channels)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise ValueError(f"{name}: expected images of shape (N, {image_size}, {image_size}"
                         f"{', ' + str(channels) if channels != 1 else ''}), got {x.shape}")
    return x


def check_training_data(x, labels=None, *, background_label: int = 0,
                        name: str = "training data") -> np.ndarray:
    """Checks a sample an anomaly detector will be trained on: not empty, finite, and -- when
    ``labels`` are given -- containing the background class ``background_label`` (a sample of
    signal only would teach the detector that the signal is normal). Returns the rows labelled
    background (all rows when ``labels`` is None)."""
    x = check_features(x, name)
    if labels is None:
        return x
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"{name}: labels have shape {labels.shape}, expected ({x.shape[0]},) "
                         "(one per example)")
    keep = labels == background_label
    if not keep.any():
        found = sorted(int(v) for v in np.unique(labels))
        raise ValueError(f"{name}: none of the {len(labels)} examples has the background label "
                         f"{background_label} (labels found: {found}); an anomaly detector must "
                         "be trained on background, not on signal only")
    return x[keep]


class Standardiser:
    """(x - mean) / std per feature, fitted on one sample (the training background)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    @classmethod
    def fit(cls, x) -> "Standardiser":
        x = check_features(x, "standardiser input")
        std = x.std(0)
        return cls(x.mean(0), np.where(std > 0, std, 1.0))

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"Standardiser: fitted on {self.mean.shape[0]} features, got "
                             f"shape {x.shape}")
        return (x - self.mean) / self.std

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def observables(p4, mask, names=OBSERVABLES, *, computed=None) -> np.ndarray:
    """(N, len(names)) log(1 + observable) (all observables are >= 0), float32.
    ``computed``: the (values, names) of ``hepjax.data.features.jet_observables`` if at hand."""
    values, all_names = computed if computed is not None else features_lib.jet_observables(
        p4, mask)
    unknown = [n for n in names if n not in all_names]
    if unknown:
        raise ValueError(f"observables: unknown {unknown}; choose from {all_names}")
    x = values[:, [all_names.index(n) for n in names]].astype(np.float64)
    return np.log1p(np.maximum(x, 0.0)).astype(np.float32)


def images(p4, mask, npix: int = 40, scale: float = 100.0) -> np.ndarray:
    """(N, npix, npix, 1) preprocessed jet images with pixel sum ``scale``."""
    return (scale * images_lib.jet_images(p4, mask, npix))[..., None].astype(np.float32)


def constituents(p4, mask, max_particles: int = 40):
    """(features (N, P, 3) = (delta eta, delta phi, log z), mask (N, P), z (N, P)) for the
    ``max_particles`` leading constituents; z = pT / sum pT of those kept; 0 at padding."""
    p4 = np.asarray(p4, np.float64)[:, :max_particles]
    mask = np.asarray(mask, bool)[:, :max_particles]
    pt = np.where(mask, npkin.pt(p4), 0.0)
    eta, phi = npkin.eta(p4, pt), npkin.phi(p4, pt)
    jet = npkin.jet_momentum(p4, mask)
    deta = eta - npkin.eta(jet)[:, None]
    dphi = npkin.delta_phi(phi, npkin.phi(jet)[:, None])
    z = pt / np.maximum(pt.sum(1, keepdims=True), 1e-12)
    logz = np.log(np.where(mask & (z > 0), z, 1.0))
    feats = np.stack([deta, dphi, logz], -1)
    feats = np.where(mask[..., None], feats, 0.0).astype(np.float32)
    return feats, mask, np.where(mask, z, 0.0).astype(np.float32)
