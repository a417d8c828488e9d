"""Toy jets shared by the model tests (small, seeded, numpy only)."""
import numpy as np

from hepjax.physics import kinematics


def four_vector_jets(rng, b, n, signal):
    """Massless constituents of 1-prong (QCD-like) or 3-prong (top-like) jets, pT ~ 400 GeV."""
    pt = rng.uniform(350, 450, b)
    eta0, phi0 = rng.uniform(-1, 1, b), rng.uniform(-np.pi, np.pi, b)
    out = np.zeros((b, n, 4))
    for i in range(b):
        prongs = 3 if signal[i] else 1
        offset = rng.normal(0, 0.4, (prongs, 2)) if prongs == 3 else np.zeros((1, 2))
        k = np.arange(n) % prongs
        z = rng.dirichlet(np.ones(n))
        share = rng.dirichlet(np.full(prongs, 3.0))
        pts = pt[i] * share[k] * z / np.array([z[k == j].sum() for j in k])
        eta = eta0[i] + offset[k, 0] + rng.normal(0, 0.05, n)
        phi = phi0[i] + offset[k, 1] + rng.normal(0, 0.05, n)
        out[i] = np.asarray(kinematics.from_pt_eta_phi_m(pts, eta, phi, 0.0))
    return out


def prong_jets(n_jets, n_max=8, seed=0):
    """2-prong (label 0) vs 3-prong (label 1) toy jets: features (eta, phi, log pT), mask, labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_jets)
    feats = np.zeros((n_jets, n_max, 3), np.float32)
    mask = np.zeros((n_jets, n_max), bool)
    for j, lab in enumerate(labels):
        prongs = rng.normal(scale=0.3, size=(2 + lab, 2))
        n = rng.integers(n_max // 2, n_max + 1)
        ang = prongs[rng.integers(0, 2 + lab, n)] + rng.normal(scale=0.03, size=(n, 2))
        feats[j, :n] = np.concatenate([ang, np.log(rng.exponential(20.0, (n, 1)) + 1.0)], -1)
        mask[j, :n] = True
    return feats, mask, labels.astype(np.float32)
