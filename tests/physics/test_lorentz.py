"""hepjax.physics.lorentz against numpy, closed forms, scipy rotations and finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hepjax.physics import kinematics, lorentz as L

G = np.diag([1.0, -1.0, -1.0, -1.0])


def _vectors(rng, shape, mass_max=5.0):
    p3 = rng.normal(0, 30.0, shape + (3,))
    m = rng.uniform(0, mass_max, shape)
    e = np.sqrt(m**2 + np.sum(p3**2, -1))
    return np.concatenate([e[..., None], p3], -1)


def test_metric_and_dot_match_numpy():
    rng = np.random.default_rng(0)
    p, q = _vectors(rng, (3, 5)), _vectors(rng, (3, 5))
    np.testing.assert_array_equal(np.asarray(L.metric()), G)
    np.testing.assert_allclose(L.minkowski_dot(p, q), np.einsum("...i,ij,...j->...", p, G, q),
                               rtol=1e-5, atol=1e-2)
    with jax.enable_x64(True):
        np.testing.assert_allclose(L.minkowski_norm2(p), kinematics.mass2(p), rtol=1e-9)
    with pytest.raises(ValueError, match="size 4"):
        L.minkowski_dot(p[..., :3], q[..., :3])


def test_pairwise_quantities_match_loops():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        p = _vectors(rng, (2, 4))
        dot, m2, d2 = L.pairwise_dot(p), L.pairwise_mass2(p), L.pairwise_distance2(p)
        for b in range(2):
            for i in range(4):
                for j in range(4):
                    assert np.isclose(dot[b, i, j], p[b, i] @ G @ p[b, j], rtol=1e-12)
                    s, d = p[b, i] + p[b, j], p[b, i] - p[b, j]
                    assert np.isclose(m2[b, i, j], s @ G @ s, rtol=1e-12)
                    assert np.isclose(d2[b, i, j], d @ G @ d, rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(np.diagonal(d2, axis1=1, axis2=2), 0.0, atol=1e-9)


def test_invariant_mass_ignores_padding_and_is_safe_when_empty():
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        p = _vectors(rng, (2, 6))
        mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
        p_pad = np.where(mask[..., None], p, rng.normal(0, 1e3, p.shape))  # garbage in padding
        ref = [np.sqrt(max(s @ G @ s, 0.0)) for s in (p[0, :3].sum(0), p[1].sum(0))]
        np.testing.assert_allclose(L.invariant_mass(p_pad, mask), ref, rtol=1e-12)
        empty = np.zeros((1, 3, 4))
        assert float(L.invariant_mass(empty)[0]) == 0.0
        g = jax.grad(lambda x: L.invariant_mass(x).sum())(jnp.asarray(empty))
        assert np.all(np.isfinite(g)) and np.all(np.asarray(g) == 0)


def test_psi_values_and_gradient():
    x = np.array([-1e4, -3.0, -1e-3, 0.0, 1e-3, 2.5, 1e5], np.float32)
    ref = np.sign(x) * np.log1p(np.abs(x.astype(np.float64)))  # log(|x| + 1)
    np.testing.assert_allclose(L.psi(x), ref, rtol=1e-6)
    grads = jax.vmap(jax.grad(L.psi))(jnp.asarray(x))
    np.testing.assert_allclose(grads, 1.0 / (1.0 + np.abs(x)), rtol=1e-6)


def test_boost_matrix_closed_form_and_group_properties():
    with jax.enable_x64(True):
        beta = np.array([0.3, -0.5, 0.6])
        lam = np.asarray(L.boost_matrix(beta))
        gamma = 1 / np.sqrt(1 - beta @ beta)
        m = 2.0
        np.testing.assert_allclose(lam @ np.array([m, 0, 0, 0]),
                                   np.concatenate([[gamma * m], gamma * m * beta]), rtol=1e-12)
        assert float(L.lorentz_violation(lam)) < 1e-12
        np.testing.assert_allclose(lam @ np.asarray(L.boost_matrix(-beta)), np.eye(4), atol=1e-12)
        # the rapidity form: |beta| = tanh(y)
        y = np.arctanh(np.linalg.norm(beta))
        np.testing.assert_allclose(L.boost_matrix_rapidity(beta * 7.0, y), lam, atol=1e-12)
        # collinear boosts add rapidities
        n = np.array([1.0, 2.0, -2.0])
        np.testing.assert_allclose(
            np.asarray(L.boost_matrix_rapidity(n, 0.7)) @ np.asarray(L.boost_matrix_rapidity(n, 1.1)),
            L.boost_matrix_rapidity(n, 1.8), atol=1e-12)


def test_identity_limits_have_finite_gradients():
    np.testing.assert_array_equal(L.boost_matrix(jnp.zeros(3)), np.eye(4))
    np.testing.assert_array_equal(L.boost_matrix_rapidity(jnp.zeros(3), 2.0), np.eye(4))
    np.testing.assert_array_equal(L.rotation_matrix(jnp.zeros(3), 1.0), np.eye(4))
    for f in (lambda b: L.boost_matrix(b).sum(), lambda a: L.rotation_matrix(a, 0.3).sum(),
              lambda d: L.boost_matrix_rapidity(d, 0.5).sum()):
        assert np.all(np.isfinite(jax.grad(f)(jnp.zeros(3))))


def test_boost_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        p = jnp.asarray([5.0, 1.0, 2.0, 3.0])
        f = lambda beta: L.transform(L.boost_matrix(beta), p)[0]  # noqa: E731
        beta = jnp.asarray([0.2, -0.1, 0.4])
        g = jax.grad(f)(beta)
        eps = 1e-6
        fd = [(f(beta.at[i].add(eps)) - f(beta.at[i].add(-eps))) / (2 * eps) for i in range(3)]
        np.testing.assert_allclose(g, fd, rtol=1e-7)


def test_beam_axis_transformations():
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        p = _vectors(rng, (10,))
        q = L.transform(L.boost_matrix_z(0.8), p)
        np.testing.assert_allclose(kinematics.rapidity(q), np.asarray(kinematics.rapidity(p)) + 0.8,
                                   rtol=1e-10)
        np.testing.assert_allclose(kinematics.pt(q), kinematics.pt(p), rtol=1e-12)
        np.testing.assert_allclose(kinematics.phi(q), kinematics.phi(p), atol=1e-12)
        r = L.transform(L.rotation_matrix_z(0.4), p)
        dphi = kinematics.delta_phi(kinematics.phi(r), kinematics.phi(p))
        np.testing.assert_allclose(dphi, 0.4, atol=1e-12)
        np.testing.assert_allclose(kinematics.rapidity(r), kinematics.rapidity(p), atol=1e-12)


def test_rotation_matches_scipy():
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        axes, angles = rng.normal(size=(5, 3)), rng.uniform(-3, 3, 5)
        lam = np.asarray(L.rotation_matrix(axes, angles))
        unit = axes / np.linalg.norm(axes, axis=-1, keepdims=True)
        ref = Rotation.from_rotvec(unit * angles[:, None]).as_matrix()
        np.testing.assert_allclose(lam[:, 1:, 1:], ref, atol=1e-12)
        np.testing.assert_array_equal(lam[:, 0, 1:], 0.0)
        np.testing.assert_array_equal(lam[:, 0, 0], 1.0)
        rand = np.asarray(L.random_rotation(jax.random.key(0), (50,), jnp.float64))
        np.testing.assert_allclose(np.linalg.det(rand[:, 1:, 1:]), 1.0, atol=1e-12)
        assert np.max(np.asarray(L.lorentz_violation(rand))) < 1e-12
        # uniform on SO(3): the rotated z axis has mean ~0
        assert np.all(np.abs(rand[:, 1:, 3].mean(0)) < 0.35)


def test_rest_frame_boost_and_padding():
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        jet = _vectors(rng, (2, 7))
        total = jet.sum(-2)
        lam = L.rest_frame_boost(total)
        rest = L.transform(lam, total)
        m = np.sqrt(np.einsum("bi,ij,bj->b", total, G, total))
        np.testing.assert_allclose(rest[:, 0], m, rtol=1e-12)
        np.testing.assert_allclose(rest[:, 1:], 0.0, atol=1e-9 * m.max())
        in_rest = L.boost_to_rest_frame(jet, total)
        np.testing.assert_allclose(np.asarray(in_rest).sum(-2)[:, 1:], 0.0, atol=1e-9 * m.max())
        # padding (zero), massless and space-like references: identity, finite gradients
        bad = jnp.asarray([[0.0, 0, 0, 0], [5.0, 0, 0, 5.0], [1.0, 3.0, 0, 0]])
        np.testing.assert_array_equal(L.rest_frame_boost(bad), np.broadcast_to(np.eye(4), (3, 4, 4)))
        assert np.all(np.isfinite(jax.grad(lambda r: L.rest_frame_boost(r).sum())(bad)))


def test_random_lorentz_preserves_products_jit_and_nojit():
    rng = np.random.default_rng(6)
    with jax.enable_x64(True):
        lam = L.random_lorentz(jax.random.key(1), (4,), max_rapidity=3.0, dtype=jnp.float64)
        assert np.max(np.asarray(L.lorentz_violation(lam))) < 1e-9
        p = _vectors(rng, (4, 5))
        q = L.transform(lam[:, None], p)
        np.testing.assert_allclose(L.pairwise_dot(q), L.pairwise_dot(p), rtol=1e-9, atol=1e-6)
        assert np.max(np.abs(np.asarray(q) - p)) > 1.0  # it did transform
        lam_jit = jax.jit(lambda k: L.random_lorentz(k, (4,), 3.0, jnp.float64))(jax.random.key(1))
        np.testing.assert_allclose(lam_jit, lam, rtol=1e-12)
        # rapidities up to max_rapidity: cosh(y) = lam[0, 0] / for a pure boost after rotation
        y = np.arccosh(np.asarray(lam)[:, 0, 0])
        assert np.all((y >= 0) & (y <= 3.0 + 1e-9))
