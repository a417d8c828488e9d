"""Kinematics vs numpy closed forms; safety at zero momentum; pair features vs a direct loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax import physics as P


def _particles(rng, n=(3, 6), mass=0.14):
    pt = rng.uniform(1, 200, n)
    eta = rng.normal(0, 1.5, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    return np.stack([e, px, py, pz], -1), pt, eta, phi


def test_single_particle_quantities_match_numpy():
    with jax.enable_x64(True):
        p, pt, eta, phi = _particles(np.random.default_rng(0))
        np.testing.assert_allclose(P.pt(p), pt, rtol=1e-12)
        np.testing.assert_allclose(P.eta(p), eta, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(P.phi(p), phi, rtol=1e-12)
        np.testing.assert_allclose(P.mass(p), 0.14, rtol=1e-6)
        y = 0.5 * np.log((p[..., 0] + p[..., 3]) / (p[..., 0] - p[..., 3]))
        np.testing.assert_allclose(P.rapidity(p), y, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(P.from_pt_eta_phi_m(pt, eta, phi, 0.14), p, rtol=1e-12)


def test_delta_phi_wraps():
    np.testing.assert_allclose(P.delta_phi(jnp.array([3.0, -3.0]), jnp.array([-3.0, 3.0])),
                               [6.0 - 2 * np.pi, 2 * np.pi - 6.0], atol=1e-6)
    assert float(P.delta_r(0.0, 3.1, 0.0, -3.1)) < 0.1


def test_zero_momentum_is_finite_with_finite_gradients():
    zero = jnp.zeros((2, 4))
    for fn in (P.pt, P.eta, P.phi, P.rapidity, P.mass):
        value = fn(zero)
        grad = jax.grad(lambda p: fn(p).sum())(zero)
        assert jnp.all(value == 0) and jnp.all(jnp.isfinite(grad)), fn.__name__


def test_pairwise_features_match_a_direct_computation():
    with jax.enable_x64(True):
        p, pt, _, phi = _particles(np.random.default_rng(1), (2, 5))
        mask = np.array([[True] * 5, [True] * 3 + [False] * 2])
        p[1, 3:] = 0.0
        out = np.asarray(P.pairwise_features(p, mask))
        y = 0.5 * np.log((p[..., 0] + p[..., 3]) / (p[..., 0] - p[..., 3] + 1e-300))
        for b in range(2):
            for i in range(5):
                for j in range(5):
                    if not (mask[b, i] and mask[b, j]):
                        assert np.all(out[b, i, j] == 0)
                        continue
                    dphi = (phi[b, i] - phi[b, j] + np.pi) % (2 * np.pi) - np.pi
                    delta = np.hypot(y[b, i] - y[b, j], dphi)
                    ptmin = min(pt[b, i], pt[b, j])
                    s = p[b, i] + p[b, j]
                    m2 = s[0] ** 2 - s[1] ** 2 - s[2] ** 2 - s[3] ** 2
                    # m^2 floored at 1e-6 (E_a + E_b)^2: below resolution, and otherwise
                    # float32 rounding noise (pairwise_features' docstring); here it floors the
                    # self-pairs (4 m_pi^2) of particles above 140 GeV (4 of the 50 pairs)
                    m2 = max(m2, 1e-6 * s[0] ** 2)
                    expected = np.log(np.maximum([delta, ptmin * delta, ptmin / (pt[b, i] + pt[b, j]), m2], 1e-8))
                    np.testing.assert_allclose(out[b, i, j], expected, rtol=1e-9, atol=1e-9)


def test_unresolved_pair_masses_are_floored_at_the_resolution_in_float32():
    """Massless particles: the self-pair's m^2 = E^2 - p^2 (and that of a pair 0.1 mrad apart)
    is float32 rounding noise; the feature is ln(1e-6 (E_a + E_b)^2) there, not the noise, and
    resolved pairs are untouched (against float64 without the floor)."""
    pt = np.array([[40.0, 300.0, 300.0, 120.0, 7.0]])
    eta = np.array([[0.3, -1.2, -1.2001, 2.1, 0.0]])
    phi = np.array([[0.1, 2.0, 2.0, -2.5, 1.0]])
    p32 = jnp.asarray(P.from_pt_eta_phi_m(pt, eta, phi, 0.0), jnp.float32)
    out = np.asarray(jax.jit(P.pairwise_features)(p32))[0, :, :, 3]
    p64 = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    summed = p64[0, :, None] + p64[0, None, :]
    m2 = summed[..., 0] ** 2 - (summed[..., 1:] ** 2).sum(-1)       # float64, no floor
    floor = 1e-6 * summed[..., 0] ** 2
    unresolved = np.eye(5, dtype=bool)
    unresolved[1, 2] = unresolved[2, 1] = True                      # theta = 1e-4
    assert np.all(np.abs(m2[unresolved]) < floor[unresolved])
    np.testing.assert_allclose(out[unresolved], np.log(floor[unresolved]), rtol=1e-6, atol=1e-5)
    assert np.all(m2[~unresolved] > 1.0)                            # m^2 > 1 GeV^2: kept
    np.testing.assert_allclose(out[~unresolved], np.log(m2[~unresolved]), rtol=1e-5)


def test_pairwise_features_on_listed_pairs_equal_the_full_form_bitwise():
    p, _, _, _ = _particles(np.random.default_rng(3), (3, 6))
    p = jnp.asarray(p, jnp.float32)
    mask = np.arange(6)[None] < np.array([6, 4, 1])[:, None]
    rows, cols = np.tril_indices(6)
    full = np.asarray(P.pairwise_features(p, mask))
    listed = np.asarray(P.pairwise_features(p, mask, pairs=(rows, cols)))
    assert listed.shape == (3, len(rows), 4)
    np.testing.assert_array_equal(listed, full[:, rows, cols])
    # any order, repeats allowed
    a, b = np.array([5, 0, 2, 2]), np.array([1, 5, 2, 0])
    np.testing.assert_array_equal(np.asarray(P.pairwise_features(p, mask, pairs=(a, b))),
                                  full[:, a, b])


def test_pairwise_features_are_boost_invariant_along_the_beam_where_expected():
    # Delta (rapidity-based), kT, z and m^2 are invariant under longitudinal boosts. The floor of
    # unresolved masses, 1e-6 (E_a + E_b)^2 (a float32 resolution in E^2), is not: invariance is
    # checked without it, and with it on the pairs above the floor in both frames (here 3 of the
    # 16 pairs, self-pairs of particles above 140 GeV, are below it)
    with jax.enable_x64(True):
        p, *_ = _particles(np.random.default_rng(2), (1, 4))
        rap = 0.7
        e, pz = p[..., 0], p[..., 3]
        boosted = p.copy()
        boosted[..., 0] = np.cosh(rap) * e + np.sinh(rap) * pz
        boosted[..., 3] = np.sinh(rap) * e + np.cosh(rap) * pz
        np.testing.assert_allclose(P.pairwise_features(boosted, m2_resolution=0),
                                   P.pairwise_features(p, m2_resolution=0), atol=1e-8)
        floored = [np.asarray(P.pairwise_features(q))
                   != np.asarray(P.pairwise_features(q, m2_resolution=0)) for q in (p, boosted)]
        above = ~(floored[0] | floored[1])
        assert above[..., :3].all() and (~above[..., 3]).sum() == 3
        np.testing.assert_allclose(np.asarray(P.pairwise_features(boosted))[above],
                                   np.asarray(P.pairwise_features(p))[above], atol=1e-8)


def test_pairwise_features_between_two_sets_equal_the_full_forms_block_bitwise():
    p, _, _, _ = _particles(np.random.default_rng(4), (3, 7))
    p = jnp.asarray(p, jnp.float32)
    mask = np.arange(7)[None] < np.array([7, 5, 2])[:, None]
    full = np.asarray(P.pairwise_features(p, mask))
    cross = np.asarray(P.pairwise_features(p[:, 3:], mask[:, 3:], others=p[:, :3],
                                           others_mask=mask[:, :3]))
    assert cross.shape == (3, 4, 3, 4)
    np.testing.assert_array_equal(cross, full[:, 3:, :3])
    np.testing.assert_array_equal(np.asarray(P.pairwise_features(p[:, :2], others=p[:, 4:])),
                                  np.asarray(P.pairwise_features(p))[:, :2, 4:])
    with pytest.raises(ValueError, match="others_mask"):
        P.pairwise_features(p, mask, others=p)
    with pytest.raises(ValueError, match="not both"):
        P.pairwise_features(p, pairs=([0], [1]), others=p)
