"""Jet- and particle-level features from padded constituents, host-side in numpy.

Inputs are ``p4`` (N, P, 4) four-momenta (E, px, py, pz) in GeV, zero-padded, and ``mask``
(N, P) bool (True = real particle). Every function is vectorised over jets and particles (no
Python loop per particle) and returns zeros at masked entries.

* ``jet_observables``: mass, pT, eta, phi, number of constituents, N-subjettiness tau1..tau3 and
  the ratios tau21, tau32 (beta = 1, R0 = jet radius, **exclusive-kT axes** from FastJet:
  ``kt_algorithm`` with the maximal R, ``exclusive_jets(N)``, E-scheme), and the energy
  correlation ratios C2 = e3 / e2^2 and D2 = e3 / e2^3 (beta = 1, Larkoski-Salam-Thaler,
  arXiv:1305.0007) over the ``ecf_particles`` hardest constituents. Angles use (y, phi).
* ``particle_features``: the ParticleNet / ParT inputs: deta, dphi (to the jet axis), log pT,
  log E, log pT/pT_jet, log E/E_jet, dR, and with ``pid``/``charge`` the charge and the flags
  isChargedHadron, isNeutralHadron, isPhoton, isElectron, isMuon.
* Pairwise features (ln dR, ln kT, ln z, ln m^2) are computed inside the models from the
  ``vectors`` of a batch by ``hepjax.physics.kinematics.pairwise_features``.
"""
from __future__ import annotations

import numpy as np

from hepjax.physics import numpy_kinematics as npkin
from hepjax.physics.numpy_kinematics import divide_or_zero as _div

__all__ = ["JET_OBSERVABLES", "PARTICLE_FEATURES", "PID_FEATURES", "jet_kinematics",
           "nsubjettiness", "energy_correlation_ratios", "jet_observables", "particle_features"]

JET_OBSERVABLES = ("mass", "pt", "eta", "phi", "n_constituents", "tau1", "tau2", "tau3", "tau21",
                   "tau32", "c2", "d2")
PARTICLE_FEATURES = ("deta", "dphi", "log_pt", "log_e", "log_pt_rel", "log_e_rel", "delta_r")
PID_FEATURES = ("charge", "is_charged_hadron", "is_neutral_hadron", "is_photon", "is_electron",
                "is_muon")


def _kin(p4):
    """pt, eta, rapidity, phi of (..., 4) arrays in float64; 0 where undefined."""
    p4 = np.asarray(p4, np.float64)
    pt = npkin.pt(p4)
    return pt, npkin.eta(p4, pt), npkin.rapidity(p4), npkin.phi(p4, pt)


def jet_kinematics(p4, mask) -> dict[str, np.ndarray]:
    """The jet four-momentum (sum of constituents) and its pt, eta, phi, mass, each (N,)."""
    jet = npkin.jet_momentum(np.asarray(p4, np.float64), mask)
    pt, eta, y, phi = _kin(jet)
    return {"p4": jet, "pt": pt, "eta": eta, "rapidity": y, "phi": phi,
            "mass": npkin.mass(jet), "energy": jet[:, 0]}


def nsubjettiness(p4, mask, radius: float = 0.8, n_max: int = 3) -> np.ndarray:
    """tau_1..tau_{n_max} (N, n_max) with exclusive-kT axes (beta = 1, R0 = radius):
    tau_N = sum_i pT_i min_k dR(i, axis_k) / (R0 sum_i pT_i), dR in (y, phi).
    A jet with n <= N constituents has tau_N = 0 (each constituent is its own axis)."""
    import awkward as ak

    from hepjax.data.generation import require_generators

    _, fastjet = require_generators()
    p4 = np.asarray(p4, np.float64)
    mask = np.asarray(mask, bool)
    n_jets = len(p4)
    counts = mask.sum(1)
    pt, _, y, phi = _kin(p4)
    pt = np.where(mask, pt, 0.0)
    norm = radius * pt.sum(1)
    taus = np.zeros((n_jets, n_max))
    definition = fastjet.JetDefinition(fastjet.kt_algorithm, fastjet.JetDefinition.max_allowable_R)
    for n_axes in range(1, n_max + 1):
        rows = np.flatnonzero(counts > n_axes)
        if len(rows) == 0:
            continue
        flat = p4[rows][mask[rows]]
        arr = ak.unflatten(ak.zip({"px": flat[:, 1], "py": flat[:, 2], "pz": flat[:, 3],
                                   "E": flat[:, 0]}), counts[rows])
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            axes = fastjet.ClusterSequence(arr, definition).exclusive_jets(n_jets=n_axes)
        axes = np.stack([ak.to_numpy(axes[c]).reshape(len(rows), n_axes)
                         for c in ("E", "px", "py", "pz")], -1)
        _, _, ay, aphi = _kin(axes)                                     # (R, K)
        dr = npkin.delta_r(y[rows][:, :, None], phi[rows][:, :, None],
                           ay[:, None, :], aphi[:, None, :])            # (R, P, K)
        taus[rows, n_axes - 1] = _div((pt[rows] * dr.min(-1)).sum(1), norm[rows])
    return taus


def energy_correlation_ratios(p4, mask, beta: float = 1.0, max_particles: int = 100,
                              batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(C2, D2), each (N,), from the normalised ECFs over the ``max_particles`` hardest
    constituents: e2 = sum_{i<j} z_i z_j R_ij^b, e3 = sum_{i<j<k} z_i z_j z_k (R_ij R_ik R_jk)^b,
    z = pT / sum pT, R in (y, phi); C2 = e3 / e2^2, D2 = e3 / e2^3 (0 where e2 = 0)."""
    p4 = np.asarray(p4, np.float64)
    mask = np.asarray(mask, bool)
    pt, _, y, phi = _kin(p4)
    pt = np.where(mask, pt, 0.0)
    order = np.argsort(-pt, axis=1, kind="stable")[:, :max_particles]
    pt, y, phi = (np.take_along_axis(a, order, 1) for a in (pt, y, phi))
    z = _div(pt, pt.sum(1, keepdims=True))
    c2, d2 = np.zeros(len(p4)), np.zeros(len(p4))
    for lo in range(0, len(p4), batch):
        sl = slice(lo, lo + batch)
        r = npkin.delta_r(y[sl, :, None], phi[sl, :, None], y[sl, None, :], phi[sl, None, :])
        a = r ** beta                                                   # (B, P, P), zero diagonal
        zz = z[sl]
        e2 = 0.5 * np.einsum("bi,bij,bj->b", zz, a, zz)
        w = a * zz[:, None, :]                                          # w_ij = a_ij z_j
        e3 = np.einsum("bi,bij,bji->b", zz, w @ a, np.swapaxes(w, 1, 2)) / 6.0
        c2[sl] = _div(e3, e2 ** 2)
        d2[sl] = _div(e3, e2 ** 3)
    return c2, d2


def jet_observables(p4, mask, radius: float = 0.8,
                    ecf_particles: int = 100) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, 12) float32 high-level features named ``JET_OBSERVABLES`` (GeV for mass and pT)."""
    kin = jet_kinematics(p4, mask)
    taus = nsubjettiness(p4, mask, radius)
    c2, d2 = energy_correlation_ratios(p4, mask, max_particles=ecf_particles)
    cols = [kin["mass"], kin["pt"], kin["eta"], kin["phi"], np.asarray(mask).sum(1),
            taus[:, 0], taus[:, 1], taus[:, 2], _div(taus[:, 1], taus[:, 0]),
            _div(taus[:, 2], taus[:, 1]), c2, d2]
    return np.stack(cols, -1).astype(np.float32), JET_OBSERVABLES


def particle_features(p4, mask, pid=None, charge=None) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, P, F) float32 per-particle features (``PARTICLE_FEATURES``, plus ``PID_FEATURES``
    when ``pid`` and ``charge`` (N, P) are given); 0 at masked particles. Angles are relative
    to the jet axis (eta, phi of the constituent sum); logs of GeV."""
    mask = np.asarray(mask, bool)
    kin = jet_kinematics(p4, mask)
    pt, eta, _, phi = _kin(p4)
    energy = np.asarray(p4, np.float64)[..., 0]
    deta = eta - kin["eta"][:, None]
    dphi = npkin.delta_phi(phi, kin["phi"][:, None])
    safe = lambda x: np.log(np.where(mask & (x > 0), x, 1.0))  # noqa: E731
    cols = [deta, dphi, safe(pt), safe(energy), safe(_div(pt, kin["pt"][:, None])),
            safe(_div(energy, kin["energy"][:, None])), np.hypot(deta, dphi)]
    names = PARTICLE_FEATURES
    if pid is not None and charge is not None:
        apid = np.abs(np.asarray(pid))
        q = np.asarray(charge, np.float64)
        photon, electron, muon = apid == 22, apid == 11, apid == 13
        lepton_or_photon = photon | electron | muon
        cols += [q, (q != 0) & ~lepton_or_photon, (q == 0) & ~lepton_or_photon, photon,
                 electron, muon]
        names = names + PID_FEATURES
    out = np.stack([np.asarray(c, np.float64) for c in cols], -1)
    return np.where(mask[..., None], out, 0.0).astype(np.float32), names
