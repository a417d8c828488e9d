"""Four-vector kinematics and the pairwise particle features of the Particle Transformer.

Four-momenta are arrays (..., 4) ordered (E, px, py, pz) in GeV. Every function is pure, batched,
differentiable and safe at zero momentum and on zero padding: where a quantity is undefined
(eta of a particle with pT = 0, the log of 0) it returns 0 and a finite (zero) gradient, using
the "double where" so NaN never reaches the gradient.

``hepjax.physics.numpy_kinematics`` has the same quantities on numpy arrays for the numpy data
code; ``delta_phi`` is defined there once, for numpy and JAX arrays alike.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from hepjax.physics.numpy_kinematics import delta_phi

_TINY = 1e-20


def _safe_sqrt(x):
    positive = x > _TINY
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _safe_log(x, eps: float = 1e-8):
    """log(max(x, eps)): finite everywhere, gradient 0 below eps."""
    return jnp.log(jnp.maximum(x, eps))


def energy(p):
    return p[..., 0]


def pt2(p):
    return p[..., 1] ** 2 + p[..., 2] ** 2


def pt(p):
    """Transverse momentum sqrt(px^2 + py^2); 0 (gradient 0) at pT = 0."""
    return _safe_sqrt(pt2(p))


def p_abs(p):
    return _safe_sqrt(pt2(p) + p[..., 3] ** 2)


def mass2(p):
    """Invariant mass squared E^2 - |p|^2 (can be slightly negative from rounding)."""
    return p[..., 0] ** 2 - pt2(p) - p[..., 3] ** 2


def mass(p):
    """Invariant mass sqrt(max(m^2, 0))."""
    return _safe_sqrt(mass2(p))


def phi(p):
    """Azimuth atan2(py, px) in (-pi, pi]; 0 at pT = 0."""
    nonzero = pt2(p) > _TINY
    return jnp.where(nonzero, jnp.arctan2(jnp.where(nonzero, p[..., 2], 0.0),
                                          jnp.where(nonzero, p[..., 1], 1.0)), 0.0)


def eta(p):
    """Pseudorapidity asinh(pz / pT); 0 at pT = 0."""
    transverse = pt(p)
    nonzero = transverse > 0
    return jnp.where(nonzero, jnp.arcsinh(p[..., 3] / jnp.where(nonzero, transverse, 1.0)), 0.0)


def rapidity(p):
    """Rapidity 0.5 log((E + pz) / (E - pz)); 0 where E <= |pz| (padding, massless on the axis)."""
    plus, minus = p[..., 0] + p[..., 3], p[..., 0] - p[..., 3]
    ok = (plus > _TINY) & (minus > _TINY)
    return jnp.where(ok, 0.5 * jnp.log(jnp.where(ok, plus, 1.0) / jnp.where(ok, minus, 1.0)), 0.0)


def delta_r(eta_a, phi_a, eta_b, phi_b):
    """sqrt(deta^2 + dphi^2) (with the wrapped dphi)."""
    return _safe_sqrt((eta_a - eta_b) ** 2 + delta_phi(phi_a, phi_b) ** 2)


def from_pt_eta_phi_m(pt_, eta_, phi_, m=0.0):
    """(E, px, py, pz) from (pT, eta, phi, m)."""
    px, py, pz = pt_ * jnp.cos(phi_), pt_ * jnp.sin(phi_), pt_ * jnp.sinh(eta_)
    e = jnp.sqrt(px**2 + py**2 + pz**2 + jnp.asarray(m) ** 2)
    return jnp.stack([e, px, py, pz], axis=-1)


def jet_momentum(particles, mask=None):
    """Sum of the constituents' four-momenta: (..., N, 4) -> (..., 4); padded entries skipped."""
    if mask is not None:
        particles = jnp.where(mask[..., None], particles, 0.0)
    return particles.sum(axis=-2)


PAIR_FEATURES = ("ln_delta", "ln_kt", "ln_z", "ln_m2")


def pairwise_features(particles, mask=None, eps: float = 1e-8, pairs=None, others=None,
                      others_mask=None, m2_resolution: float = 1e-6):
    """The four ParT interaction features for every particle pair, (..., N, 4) -> (..., N, N, 4).

    With rapidity y, azimuth phi and pT of particles a, b (Qu, Li, Qian, arXiv:2202.03772, eq. 3):
    Delta = sqrt((y_a - y_b)^2 + (phi_a - phi_b)^2), k_T = min(pT_a, pT_b) Delta,
    z = min(pT_a, pT_b) / (pT_a + pT_b), m^2 = (E_a + E_b)^2 - |p_a + p_b|^2, each as
    ln(max(., eps)) in the order of ``PAIR_FEATURES``. Pairs with a padded particle (``mask``
    (..., N) False) are 0. The diagonal is computed like any pair (Delta = 0 -> ln eps).

    Unresolved pair masses: m^2 is floored at ``m2_resolution`` (E_a + E_b)^2 (default 1e-6),
    i.e. the feature is ln max(m^2, m2_resolution (E_a + E_b)^2, eps). Qu, Li, Qian ("Particle
    Transformer for Jet Tagging", ICML 2022, eq. 3) take ln m^2 of every pair, the particle with
    itself included; for massless detector particles (and nearly collinear pairs of them)
    E^2 - |p|^2 is a difference of two nearly equal squares, float32 rounding noise of order
    1e-7 (E_a + E_b)^2, and ln turns that noise into O(10) feature differences: XLA:CPU (which
    contracts the products into fused multiply-adds) and onnxruntime (which does not) gave
    ln m^2 = -18.4 and -4.2 for the same self-pair, 5e-3 to 2e-2 apart in ParT's output. The
    floor is far below any detector resolution: m^2 / (E_a + E_b)^2 = z (1 - z) theta^2 for
    massless particles at a small opening angle theta (z = E_a / (E_a + E_b)), so it replaces
    the noise of pairs closer than theta = 2 mrad at an even split (and a pion's self-pair,
    4 m_pi^2, above E = 140 GeV) by the resolution itself: a massless self-pair's feature is
    ln(4e-6 E^2). A floor, not a cut to 0 (ln eps): a cut makes the feature jump by ~15 where
    m^2 crosses it, and pairs within the rounding noise of the cut (~10% of it) land on
    different sides in the two runtimes (tried: 5.7e-3 in ParT's ONNX output); the floor is
    continuous. Above it the relative rounding of m^2 is at most ~10%, falling as
    1e-7 (E_a + E_b)^2 / m^2. Not invariant under longitudinal boosts below the floor (E is
    not). ``m2_resolution=0`` gives the unfloored ln max(m^2, eps) of models trained before
    2026-12-06: ParT's config field ``pair_m2_resolution`` (``hepjax.models.part``) is 1e-6 in
    new configs and 0 where a saved config lacks it, so old runs evaluate as they were trained.

    ``pairs=(a, b)``, two integer index arrays of length P, computes only the pairs
    (a[p], b[p]): (..., N, 4) -> (..., P, 4), the same values as the full form's [..., a, b, :]
    at P / N^2 of the cost (ParT uses the N (N + 1) / 2 pairs a >= b).

    ``others`` (..., M, 4), with ``others_mask`` (..., M) (required when ``mask`` is given): the
    pairs (a from ``particles``, b from ``others``), (..., N, 4) -> (..., N, M, 4), e.g. one
    off-diagonal block of the full form (``pairwise_features(p[..., k:, :], m[..., k:],
    others=p[..., :k, :], others_mask=m[..., :k])`` equals ``full[..., k:, :k, :]`` bit for bit).
    """
    if others is not None and pairs is not None:
        raise ValueError("pairwise_features: give `pairs` or `others`, not both")
    if others is not None and (mask is None) != (others_mask is None):
        raise ValueError("pairwise_features: with `others`, give both `mask` and `others_mask` "
                         "or neither")
    b_set, b_mask = (particles, mask) if others is None else (others, others_mask)
    qa = {"y": rapidity(particles), "phi": phi(particles), "pt": pt(particles), "m": mask}
    qb = qa if others is None else {"y": rapidity(b_set), "phi": phi(b_set), "pt": pt(b_set),
                                    "m": b_mask}
    if pairs is None:  # every a with every b: (..., N, M)
        def first(name):
            return qa[name][..., :, None]

        def second(name):
            return qb[name][..., None, :]
        summed = particles[..., :, None, :] + b_set[..., None, :, :]
    else:
        a, b = (np.asarray(i) for i in pairs)

        def first(name):
            return qa[name][..., a]

        def second(name):
            return qb[name][..., b]
        summed = particles[..., a, :] + particles[..., b, :]
    dy = first("y") - second("y")
    dphi = delta_phi(first("phi"), second("phi"))
    delta = _safe_sqrt(dy**2 + dphi**2)
    pt_min = jnp.minimum(first("pt"), second("pt"))
    pt_sum = first("pt") + second("pt")
    kt = pt_min * delta
    z = pt_min / jnp.where(pt_sum > 0, pt_sum, 1.0)
    m2 = mass2(summed)
    if m2_resolution:   # unresolved pair masses: floored at the resolution (docstring)
        m2 = jnp.maximum(m2, m2_resolution * summed[..., 0] ** 2)
    out = jnp.stack([_safe_log(delta, eps), _safe_log(kt, eps), _safe_log(z, eps),
                     _safe_log(m2, eps)], axis=-1)
    if mask is not None:
        pair = first("m") & second("m")
        out = jnp.where(pair[..., None], out, 0.0)
    return out
