"""Minkowski space: the metric, inner products, invariant masses, boosts and rotations.

Four-vectors are arrays (..., 4) ordered (E, px, py, pz) in GeV, with the metric
g = diag(+1, -1, -1, -1), so p.q = E_p E_q - p_vec . q_vec and p.p = m^2.
Lorentz transformations are (..., 4, 4) matrices L acting as p'^mu = L^mu_nu p^nu
(``transform``); they satisfy L^T g L = g. Boosts and rotations are *active*: ``boost_matrix(beta)``
takes a particle at rest to velocity beta.

Every function is pure, batched over leading axes, differentiable, and finite (with finite
gradients) at zero momentum, for beta = 0, for a zero rotation axis and on zero padding.
Transverse momentum, (pseudo)rapidity, azimuth and the ParT pair features live in
``hepjax.physics.kinematics``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from hepjax.physics import kinematics

__all__ = [
    "METRIC_DIAG", "metric", "minkowski_dot", "minkowski_norm2", "pairwise_dot",
    "pairwise_mass2", "pairwise_distance2", "invariant_mass2", "invariant_mass", "psi",
    "transform", "boost_matrix", "boost_matrix_rapidity", "boost_matrix_z", "rotation_matrix",
    "rotation_matrix_z", "rest_frame_boost", "boost_to_rest_frame", "random_rotation",
    "random_lorentz", "lorentz_violation",
]

METRIC_DIAG = (1.0, -1.0, -1.0, -1.0)


def metric(dtype=jnp.float32) -> jax.Array:
    """The Minkowski metric g = diag(1, -1, -1, -1), shape (4, 4)."""
    return jnp.diag(jnp.asarray(METRIC_DIAG, dtype))


def _check4(p, name):
    if p.shape[-1] != 4:
        raise ValueError(f"{name}: four-vectors must have a last axis of size 4 (E, px, py, pz), "
                         f"got shape {tuple(p.shape)}")


def minkowski_dot(p, q) -> jax.Array:
    """p.q = E_p E_q - px_p px_q - py_p py_q - pz_p pz_q; (..., 4), (..., 4) -> (...) (broadcast)."""
    p, q = jnp.asarray(p), jnp.asarray(q)
    _check4(p, "minkowski_dot(p)")
    _check4(q, "minkowski_dot(q)")
    return p[..., 0] * q[..., 0] - p[..., 1] * q[..., 1] - p[..., 2] * q[..., 2] - p[..., 3] * q[..., 3]


def minkowski_norm2(p) -> jax.Array:
    """p.p = m^2 (GeV^2), (..., 4) -> (...). Negative for space-like vectors."""
    return minkowski_dot(p, p)


def pairwise_dot(p) -> jax.Array:
    """p_i . p_j for every pair of a set, (..., N, 4) -> (..., N, N)."""
    return minkowski_dot(p[..., :, None, :], p[..., None, :, :])


def pairwise_mass2(p) -> jax.Array:
    """(p_i + p_j)^2, the pair invariant mass squared, (..., N, 4) -> (..., N, N)."""
    return minkowski_norm2(p[..., :, None, :] + p[..., None, :, :])


def pairwise_distance2(p) -> jax.Array:
    """(p_i - p_j)^2, the Minkowski distance squared used by LoLa and LorentzNet,
    (..., N, 4) -> (..., N, N). Zero on the diagonal."""
    return minkowski_norm2(p[..., :, None, :] - p[..., None, :, :])


def invariant_mass2(particles, mask=None) -> jax.Array:
    """(sum_i p_i)^2 over the real particles (``mask`` (..., N) True), (..., N, 4) -> (...)."""
    return minkowski_norm2(kinematics.jet_momentum(particles, mask))


def invariant_mass(particles, mask=None) -> jax.Array:
    """sqrt(max((sum_i p_i)^2, 0)) over the real particles; 0 with zero gradient for an empty set."""
    return kinematics._safe_sqrt(invariant_mass2(particles, mask))


def psi(x) -> jax.Array:
    """psi(x) = sgn(x) log(|x| + 1) (LorentzNet, arXiv:2201.08187, eq. 2.4): odd, monotone,
    compresses the large range of Minkowski products. Derivative 1 / (1 + |x|), also at 0."""
    x = jnp.asarray(x)
    pos = x >= 0
    return jnp.where(pos, jnp.log1p(jnp.where(pos, x, 0.0)), -jnp.log1p(jnp.where(pos, 0.0, -x)))


def transform(lam, p) -> jax.Array:
    """p'^mu = lam^mu_nu p^nu; lam (..., 4, 4) broadcast against p (..., 4).

    For a jet (B, N, 4) with one transformation per jet (B, 4, 4) pass ``lam[:, None]``.
    """
    p = jnp.asarray(p)
    _check4(p, "transform(p)")
    return jnp.einsum("...ij,...j->...i", lam, p)


def _unit(v, eps=1e-30):
    """(v / |v|, |v|) with a zero vector mapped to (0, 0) and a finite gradient."""
    n2 = jnp.sum(v * v, axis=-1, keepdims=True)
    nonzero = n2 > eps
    norm = jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, n2, 1.0)), 0.0)
    return jnp.where(nonzero, v / jnp.where(nonzero, norm, 1.0), 0.0), norm[..., 0]


def _boost_from_gamma(gamma, gamma_beta):
    """Boost matrix from gamma (...) and gamma*beta (..., 3):
    [[g, g b^T], [g b, I + g^2/(1+g) b b^T]] = [[g, u^T], [u, I + u u^T / (1 + g)]] with u = g b.
    Smooth at u = 0 (no division by |beta|)."""
    u = gamma_beta
    eye = jnp.eye(3, dtype=u.dtype)
    spatial = eye + u[..., :, None] * u[..., None, :] / (1.0 + gamma)[..., None, None]
    top = jnp.concatenate([gamma[..., None], u], axis=-1)[..., None, :]
    bottom = jnp.concatenate([u[..., :, None], spatial], axis=-1)
    return jnp.concatenate([top, bottom], axis=-2)


def boost_matrix(beta) -> jax.Array:
    """Active boost by velocity beta (..., 3), |beta| < 1 (units of c): (..., 4, 4).

    A particle at rest, (m, 0, 0, 0), becomes (gamma m, gamma m beta). The identity at beta = 0,
    with finite gradients there.
    """
    beta = jnp.asarray(beta)
    if beta.shape[-1] != 3:
        raise ValueError(f"boost_matrix: beta must have shape (..., 3), got {tuple(beta.shape)}")
    gamma = 1.0 / jnp.sqrt(1.0 - jnp.sum(beta * beta, axis=-1))
    return _boost_from_gamma(gamma, gamma[..., None] * beta)


def boost_matrix_rapidity(direction, rapidity) -> jax.Array:
    """Active boost with rapidity ``rapidity`` (...) along ``direction`` (..., 3) (normalised here;
    a zero direction gives the identity): (..., 4, 4). Accurate for large rapidity (cosh, sinh)."""
    direction = jnp.asarray(direction)
    if direction.shape[-1] != 3:
        raise ValueError(f"boost_matrix_rapidity: direction must have shape (..., 3), "
                         f"got {tuple(direction.shape)}")
    n, norm = _unit(direction)
    rapidity = jnp.where(norm > 0, jnp.asarray(rapidity, n.dtype), 0.0)
    return _boost_from_gamma(jnp.cosh(rapidity),
                             jnp.sinh(rapidity)[..., None] * n)


def boost_matrix_z(rapidity) -> jax.Array:
    """Active boost along the beam (z) axis with the given rapidity (...): (..., 4, 4).
    Rapidities of all particles shift by ``rapidity``; pT and phi are unchanged."""
    rapidity = jnp.asarray(rapidity)
    direction = jnp.zeros(rapidity.shape + (3,), rapidity.dtype if jnp.issubdtype(
        rapidity.dtype, jnp.floating) else jnp.float32).at[..., 2].set(1.0)
    return boost_matrix_rapidity(direction, rapidity)


def rotation_matrix(axis, angle) -> jax.Array:
    """Rotation by ``angle`` (...) radians about ``axis`` (..., 3) (right-handed, normalised here;
    a zero axis gives the identity), embedded in (..., 4, 4) with E unchanged (Rodrigues)."""
    axis = jnp.asarray(axis)
    if axis.shape[-1] != 3:
        raise ValueError(f"rotation_matrix: axis must have shape (..., 3), got {tuple(axis.shape)}")
    n, _ = _unit(axis)
    angle = jnp.asarray(angle, n.dtype)
    c, s = jnp.cos(angle)[..., None, None], jnp.sin(angle)[..., None, None]
    zero = jnp.zeros_like(n[..., 0])
    k = jnp.stack([jnp.stack([zero, -n[..., 2], n[..., 1]], -1),
                   jnp.stack([n[..., 2], zero, -n[..., 0]], -1),
                   jnp.stack([-n[..., 1], n[..., 0], zero], -1)], -2)
    r3 = jnp.eye(3, dtype=n.dtype) + s * k + (1.0 - c) * (k @ k)
    out = jnp.zeros(r3.shape[:-2] + (4, 4), n.dtype)
    return out.at[..., 0, 0].set(1.0).at[..., 1:, 1:].set(r3)


def rotation_matrix_z(angle) -> jax.Array:
    """Rotation about the beam (z) axis by ``angle`` (...) radians: phi -> phi + angle."""
    angle = jnp.asarray(angle)
    dtype = angle.dtype if jnp.issubdtype(angle.dtype, jnp.floating) else jnp.float32
    return rotation_matrix(jnp.zeros(angle.shape + (3,), dtype).at[..., 2].set(1.0), angle)


def rest_frame_boost(ref) -> jax.Array:
    """The boost (..., 4, 4) taking ``ref`` (..., 4) to its rest frame, (m, 0, 0, 0).

    Uses gamma = E / m and gamma beta = -p / m (no velocity is formed). Where ``ref`` is not a
    time-like vector with E > 0 (zero padding, massless, space-like) the identity is returned.
    """
    ref = jnp.asarray(ref)
    _check4(ref, "rest_frame_boost(ref)")
    m2 = minkowski_norm2(ref)
    ok = (m2 > 1e-20) & (ref[..., 0] > 0)
    safe = jnp.where(ok[..., None], ref, jnp.asarray([1.0, 0.0, 0.0, 0.0], ref.dtype))
    m = jnp.sqrt(minkowski_norm2(safe))
    return _boost_from_gamma(safe[..., 0] / m, -safe[..., 1:] / m[..., None])


def boost_to_rest_frame(p, ref) -> jax.Array:
    """Four-vectors p (..., N, 4) seen in the rest frame of ``ref`` (..., 4) (e.g. the jet);
    unchanged where ``ref`` is not time-like (see ``rest_frame_boost``)."""
    return transform(rest_frame_boost(ref)[..., None, :, :], p)


def random_rotation(key, shape=(), dtype=jnp.float32) -> jax.Array:
    """Rotations uniform on SO(3) (Haar measure, from a random unit quaternion): shape + (4, 4)."""
    q = jax.random.normal(key, tuple(shape) + (4,), dtype)
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    r3 = jnp.stack([
        jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        jnp.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        jnp.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)
    out = jnp.zeros(tuple(shape) + (4, 4), dtype)
    return out.at[..., 0, 0].set(1.0).at[..., 1:, 1:].set(r3)


def random_lorentz(key, shape=(), max_rapidity: float = 3.0, dtype=jnp.float32) -> jax.Array:
    """Random proper orthochronous Lorentz transformations, shape + (4, 4): a uniform rotation
    followed by a boost along a uniformly random direction with rapidity uniform in
    [0, max_rapidity]."""
    k_rot, k_dir, k_y = jax.random.split(key, 3)
    direction = jax.random.normal(k_dir, tuple(shape) + (3,), dtype)
    rapidity = jax.random.uniform(k_y, tuple(shape), dtype, 0.0, max_rapidity)
    return boost_matrix_rapidity(direction, rapidity) @ random_rotation(k_rot, shape, dtype)


def lorentz_violation(lam) -> jax.Array:
    """max |L^T g L - g| per matrix, (..., 4, 4) -> (...): 0 for a Lorentz transformation."""
    g = metric(lam.dtype)
    return jnp.max(jnp.abs(jnp.swapaxes(lam, -1, -2) @ g @ lam - g), axis=(-2, -1))
