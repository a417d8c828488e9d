"""Jet observables, particle features and jet images against brute-force references and symmetries."""
import itertools

import numpy as np
import pytest

from hepjax.data import features, images


def _jets(n=6, m=12, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(4, m + 1, n)
    pt = rng.exponential(30, (n, m)) + 1
    eta, phi = rng.normal(0.5, 0.3, (n, m)), rng.normal(1.0, 0.3, (n, m))
    p4 = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    mask = np.arange(m)[None] < counts[:, None]
    return np.where(mask[..., None], p4, 0), mask


def _y_phi(p):
    return 0.5 * np.log((p[..., 0] + p[..., 3]) / (p[..., 0] - p[..., 3])), np.arctan2(p[..., 2], p[..., 1])


def test_ecf_ratios_match_brute_force_triple_sums():
    p4, mask = _jets()
    c2, d2 = features.energy_correlation_ratios(p4, mask)
    for j in range(len(p4)):
        p = p4[j][mask[j]]
        y, phi = _y_phi(p)
        pt = np.hypot(p[:, 1], p[:, 2])
        z = pt / pt.sum()

        def r(a, b):
            return np.hypot(y[a] - y[b], np.mod(phi[a] - phi[b] + np.pi, 2 * np.pi) - np.pi)
        e2 = sum(z[a] * z[b] * r(a, b) for a, b in itertools.combinations(range(len(p)), 2))
        e3 = sum(z[a] * z[b] * z[c] * r(a, b) * r(a, c) * r(b, c)
                 for a, b, c in itertools.combinations(range(len(p)), 3))
        np.testing.assert_allclose([c2[j], d2[j]], [e3 / e2 ** 2, e3 / e2 ** 3], rtol=1e-10)


def test_nsubjettiness_closed_forms():
    pytest.importorskip("fastjet")
    p4, mask = _jets()
    taus = features.nsubjettiness(p4, mask, radius=0.8)
    # tau1: the exclusive-kT 1-jet axis is the jet (E-scheme sum)
    for j in range(len(p4)):
        p = p4[j][mask[j]]
        y, phi = _y_phi(p)
        jy, jphi = _y_phi(p.sum(0))
        pt = np.hypot(p[:, 1], p[:, 2])
        dr = np.hypot(y - jy, np.mod(phi - jphi + np.pi, 2 * np.pi) - np.pi)
        np.testing.assert_allclose(taus[j, 0], (pt * dr).sum() / (0.8 * pt.sum()), rtol=1e-9)
    assert np.all(taus[:, 0] >= taus[:, 1]) and np.all(taus[:, 1] >= taus[:, 2])
    # a jet of exactly two particles: tau2 = tau3 = 0
    two = np.zeros((1, 4, 4))
    two[0, :2] = p4[0, :2]
    t = features.nsubjettiness(two, np.array([[True, True, False, False]]))
    assert t[0, 0] > 0 and t[0, 1] == 0 and t[0, 2] == 0


def test_observables_permutation_and_padding_invariant():
    pytest.importorskip("fastjet")
    p4, mask = _jets()
    obs, names = features.jet_observables(p4, mask)
    assert obs.shape == (6, len(features.JET_OBSERVABLES)) and names == features.JET_OBSERVABLES
    perm = np.random.default_rng(1).permutation(p4.shape[1])
    padded_p4 = np.concatenate([p4[:, perm], np.zeros((6, 5, 4))], 1)
    padded_mask = np.concatenate([mask[:, perm], np.zeros((6, 5), bool)], 1)
    np.testing.assert_allclose(features.jet_observables(padded_p4, padded_mask)[0], obs, rtol=1e-5)
    np.testing.assert_array_equal(obs[:, names.index("n_constituents")], mask.sum(1))
    jet = (p4 * mask[..., None]).sum(1)
    np.testing.assert_allclose(obs[:, 0], np.sqrt(jet[:, 0] ** 2 - (jet[:, 1:] ** 2).sum(1)), rtol=1e-5)


def test_particle_features_reference_values():
    p4, mask = _jets()
    pid = np.where(mask, np.array([211, 22, 130, 11, 13, -211] * 2)[None], 0)
    charge = np.where(mask, np.array([1, 0, 0, -1, 1, -1] * 2)[None], 0)
    f, names = features.particle_features(p4, mask, pid, charge)
    assert f.shape == (6, 12, 13) and np.all(f[~mask] == 0)
    jet = features.jet_kinematics(p4, mask)
    pt = np.hypot(p4[..., 1], p4[..., 2])
    eta = np.arcsinh(np.divide(p4[..., 3], pt, where=pt > 0, out=np.zeros_like(pt)))
    np.testing.assert_allclose(f[..., names.index("deta")][mask], (eta - jet["eta"][:, None])[mask], atol=1e-5)
    np.testing.assert_allclose(f[..., names.index("log_pt_rel")][mask],
                               np.log(pt / jet["pt"][:, None])[mask], atol=1e-5)
    flags = f[..., names.index("is_charged_hadron"):][mask]
    assert np.all(flags.sum(1) == 1)                  # exactly one category per particle
    assert np.all(f[..., names.index("is_photon")][mask] == (pid[mask] == 22))


def test_jet_images_normalised_centred_and_flip_invariant():
    p4, mask = _jets(20, 30)
    img = images.jet_images(p4, mask, npix=33, half_width=1.2)
    assert img.shape == (20, 33, 33)
    np.testing.assert_allclose(img.sum((1, 2)), 1.0, rtol=1e-5)
    # centroid at the centre pixel (up to a pixel), and the upper/right halves dominate
    grid = (np.arange(33) + 0.5) * (2.4 / 33) - 1.2
    assert np.all(np.abs((img.sum(2) * grid).sum(1)) < 2.4 / 33)
    wide = images.jet_images(p4, mask, npix=32, half_width=3.0)   # every particle inside
    assert np.all(wide[:, 16:].sum((1, 2)) >= wide[:, :16].sum((1, 2)))
    assert np.all(wide[:, :, 16:].sum((1, 2)) >= wide[:, :, :16].sum((1, 2)))
    # mirror the jet in phi about its axis: the preprocessed image does not change
    mirrored = p4.copy()
    mirrored[..., 2] *= -1
    np.testing.assert_allclose(images.jet_images(mirrored, mask, 33, 1.2), img, atol=1e-6)
    raw = images.jet_images(p4, mask, 33, 1.2, centre=False, rotate=False, flip=False, normalise=False)
    np.testing.assert_allclose(raw.sum((1, 2)), np.where(mask, np.hypot(p4[..., 1], p4[..., 2]), 0).sum(1), rtol=1e-4)
