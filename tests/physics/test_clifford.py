"""Cl(1,3) against its defining relations and the Lorentz action (outermorphism)."""
import jax
import jax.numpy as jnp
import numpy as np

from hepjax.physics import clifford as C, lorentz as L

G = np.diag([1.0, -1.0, -1.0, -1.0])


def _gp(a, b):
    return np.asarray(C.geometric_product(jnp.asarray(a), jnp.asarray(b)))


def test_generators_anticommute_with_the_metric_and_product_is_associative():
    with jax.enable_x64(True):
        e = np.eye(16)
        for m in range(4):
            for n in range(4):
                np.testing.assert_allclose(_gp(e[1 + m], e[1 + n]) + _gp(e[1 + n], e[1 + m]),
                                           2 * G[m, n] * e[0])
        x, y, z = np.random.default_rng(0).normal(size=(3, 16))
        np.testing.assert_allclose(_gp(_gp(x, y), z), _gp(x, _gp(y, z)), atol=1e-12)
        # pseudoscalar: I^2 = -1 and I commutes with even, anticommutes with odd grades
        np.testing.assert_allclose(_gp(e[15], e[15]), -e[0])
        np.testing.assert_allclose(C.pseudoscalar_product(jnp.asarray(x)), _gp(e[15], x), atol=1e-12)


def test_vectors_square_to_their_mass_and_inner_product_is_minkowski():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        p, q = rng.normal(size=(2, 5, 4))
        vp, vq = C.embed_vector(jnp.asarray(p)), C.embed_vector(jnp.asarray(q))
        np.testing.assert_allclose(np.asarray(C.geometric_product(vp, vp))[:, 0],
                                   L.minkowski_norm2(p), rtol=1e-12)
        np.testing.assert_allclose(C.inner_product(vp, vq), L.minkowski_dot(p, q), rtol=1e-12)
        np.testing.assert_array_equal(C.extract_vector(vp), p)
        # <x, y> = <reverse(x) y>_0
        x, y = rng.normal(size=(2, 16))
        np.testing.assert_allclose(C.inner_product(jnp.asarray(x), jnp.asarray(y)),
                                   _gp(C.reverse(jnp.asarray(x)), y)[0], rtol=1e-12)


def test_outermorphism_is_an_equivariant_automorphism():
    with jax.enable_x64(True):
        lam = L.random_lorentz(jax.random.key(0), (3,), 3.0, jnp.float64)
        R = np.asarray(C.outermorphism(lam))
        np.testing.assert_allclose(R[:, 1:5, 1:5], lam, rtol=1e-12)
        x, y = np.random.default_rng(2).normal(size=(2, 16))
        for r in R:
            scale = np.abs(r).max() ** 2
            np.testing.assert_allclose(r @ _gp(x, y), _gp(r @ x, r @ y), atol=1e-12 * scale)
            assert abs(float(C.inner_product(r @ x, r @ y) - C.inner_product(x, y))) < 1e-10 * scale
            for b in C.equivariant_basis():  # grade projections and I<.>_k commute with the action
                np.testing.assert_allclose(r @ b, b @ r, atol=1e-12 * scale)
        # the beam plane gamma_0 gamma_3 is fixed by boosts along and rotations about z
        beam = np.eye(16)[C.BLADES.index((0, 3))]
        keep = np.asarray(L.boost_matrix_z(1.3)) @ np.asarray(L.rotation_matrix_z(0.7))
        np.testing.assert_allclose(np.asarray(C.outermorphism(keep)) @ beam, beam, atol=1e-12)
        assert np.abs(R[0] @ beam - beam).max() > 1e-3
