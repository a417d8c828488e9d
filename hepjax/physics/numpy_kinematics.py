"""The kinematics of :mod:`hepjax.physics.kinematics` on numpy arrays, for the data code.

``hepjax.data`` (generation, features, jet images, file formats) is numpy only and must not
import JAX; it takes pT, eta, rapidity, phi, masses, Delta phi and Delta R from here. Same
conventions as the JAX functions: four-momenta (..., 4) ordered (E, px, py, pz) in GeV, and a
quantity that is undefined (eta or phi at pT = 0, the rapidity where E <= |pz|) is 0. These
work in the input's precision with numpy's functions (``np.hypot`` for pT), so they can differ
from the JAX ones in the last bit, and they carry no gradient safeguards.

``delta_phi`` is written with the arithmetic operators that numpy and JAX arrays share, so it is
the one definition for both: ``hepjax.physics.kinematics`` re-exports it.

``eta`` and ``phi`` take an optional ``transverse`` (the pT of ``p``, when the caller has it
already) to skip recomputing it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["delta_phi", "delta_r", "divide_or_zero", "eta", "jet_momentum", "mass", "mass2", "phi",
           "pt", "rapidity"]


def divide_or_zero(a, b):
    """a / b, and 0 where b == 0 (float64, broadcast)."""
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


def delta_phi(phi_a, phi_b):
    """phi_a - phi_b wrapped to [-pi, pi); numpy or JAX arrays (or Python numbers)."""
    return (phi_a - phi_b + np.pi) % (2 * np.pi) - np.pi


def delta_r(eta_a, phi_a, eta_b, phi_b):
    """sqrt(deta^2 + dphi^2) with the wrapped dphi (eta may be a rapidity)."""
    return np.hypot(eta_a - eta_b, delta_phi(phi_a, phi_b))


def pt(p):
    """Transverse momentum hypot(px, py)."""
    return np.hypot(p[..., 1], p[..., 2])


def eta(p, transverse=None):
    """Pseudorapidity asinh(pz / pT); 0 at pT = 0."""
    transverse = pt(p) if transverse is None else transverse
    return np.arcsinh(divide_or_zero(p[..., 3], transverse))


def phi(p, transverse=None):
    """Azimuth atan2(py, px) in (-pi, pi]; 0 at pT = 0."""
    transverse = pt(p) if transverse is None else transverse
    return np.where(transverse > 0, np.arctan2(p[..., 2], p[..., 1]), 0.0)


def rapidity(p):
    """Rapidity 0.5 log((E + pz) / (E - pz)); 0 where E <= |pz| (padding, massless on the axis)."""
    plus, minus = p[..., 0] + p[..., 3], p[..., 0] - p[..., 3]
    ok = (minus > 0) & (plus > 0)
    return np.where(ok, 0.5 * np.log(np.where(ok, plus, 1.0) / np.where(ok, minus, 1.0)), 0.0)


def mass2(p):
    """Invariant mass squared E^2 - |p|^2 (can be slightly negative from rounding)."""
    return p[..., 0] ** 2 - np.sum(p[..., 1:] ** 2, axis=-1)


def mass(p):
    """Invariant mass sqrt(max(m^2, 0))."""
    return np.sqrt(np.maximum(mass2(p), 0.0))


def jet_momentum(particles, mask=None):
    """Sum of the constituents' four-momenta: (..., N, 4) -> (..., 4); padded entries skipped."""
    if mask is not None:
        particles = np.where(np.asarray(mask)[..., None], particles, 0.0)
    return particles.sum(axis=-2)
