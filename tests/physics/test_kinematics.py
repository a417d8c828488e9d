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
                    expected = np.log(np.maximum([delta, ptmin * delta, ptmin / (pt[b, i] + pt[b, j]), m2], 1e-8))
                    np.testing.assert_allclose(out[b, i, j], expected, rtol=1e-9, atol=1e-9)


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
    # Delta (rapidity-based), kT, z and m^2 are invariant under longitudinal boosts.
    with jax.enable_x64(True):
        p, *_ = _particles(np.random.default_rng(2), (1, 4))
        rap = 0.7
        e, pz = p[..., 0], p[..., 3]
        boosted = p.copy()
        boosted[..., 0] = np.cosh(rap) * e + np.sinh(rap) * pz
        boosted[..., 3] = np.sinh(rap) * e + np.cosh(rap) * pz
        np.testing.assert_allclose(P.pairwise_features(boosted), P.pairwise_features(p), atol=1e-8)


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
