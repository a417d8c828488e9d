"""A fast, vectorised detector: generator particles in, energy-flow objects out.

In the spirit of the Delphes ATLAS card that the Top Tagging Reference Dataset used
(Kasieczka et al., arXiv:1902.09914), with the same kind of numbers, simplified:

* **Tracker** (|eta| < ``tracker_eta_max``): a charged particle with pT > ``track_pt_min`` is
  reconstructed with efficiency ``eff_low`` (pT < 1 GeV) or ``eff_high`` (pT >= 1 GeV), taken
  from the central (|eta| <= ``central_eta``) or forward entries. Its pT is smeared by a Gaussian
  of relative width ``sigma(pT)/pT = sqrt(a^2 + (b pT)^2)`` (``track_res_a``, ``track_res_b_*`` in
  1/GeV); eta, phi and the particle's mass are kept, E is recomputed from them.
* **Calorimeters** (|eta| < ``calo_eta_max``): photons and untracked electrons go to the ECAL,
  neutral hadrons and untracked charged hadrons to the HCAL; untracked muons and all neutrinos
  leave nothing. Energies are summed in towers of ``*_deta`` x ``2 pi / *_nphi``; each tower sum
  is smeared by a Gaussian of width ``sigma(E)/E = sqrt(a^2 / E + c^2)`` (stochastic ``a`` in
  sqrt(GeV), constant ``c``), and towers below ``*_threshold`` GeV are dropped. A tower is a
  massless object at its cell centre.
* **Energy flow**: the output is tracks plus towers. Tracked charged particles never enter the
  calorimeter, so no track-tower energy subtraction is needed (an ideal particle flow).

Output objects carry ``pid``: the true PDG id for tracks (as Delphes' EFlowTrack), 22 for ECAL
towers, 130 for HCAL towers; ``charge`` is the track charge (0 for towers).

All functions are pure numpy: inputs are flat arrays over all particles of many events, with an
``event`` index; randomness comes only from the ``numpy.random.Generator`` passed in.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["DetectorConfig", "simulate", "track_efficiency", "track_resolution",
           "calo_resolution", "NEUTRINOS"]

NEUTRINOS = (12, 14, 16)
_ELECTRON, _MUON, _PHOTON = 11, 13, 22


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Detector parameters (energies in GeV). Defaults follow the Delphes ATLAS card."""
    tracker_eta_max: float = 2.5
    central_eta: float = 1.5
    track_pt_min: float = 0.1
    eff_low_central: float = 0.70
    eff_high_central: float = 0.95
    eff_low_forward: float = 0.60
    eff_high_forward: float = 0.85
    track_res_a: float = 0.01
    track_res_b_central: float = 1.5e-4
    track_res_b_forward: float = 3.5e-4
    calo_eta_max: float = 4.9
    ecal_deta: float = 0.025
    ecal_nphi: int = 252
    ecal_stochastic: float = 0.101
    ecal_constant: float = 0.0017
    ecal_threshold: float = 0.5
    hcal_deta: float = 0.1
    hcal_nphi: int = 64
    hcal_stochastic: float = 0.5205
    hcal_constant: float = 0.0302
    hcal_threshold: float = 1.0


def track_efficiency(pt, eta, cfg: DetectorConfig = DetectorConfig()) -> np.ndarray:
    """Reconstruction probability of a charged particle with transverse momentum ``pt`` (GeV)."""
    pt, abs_eta = np.asarray(pt), np.abs(np.asarray(eta))
    central = abs_eta <= cfg.central_eta
    low = np.where(central, cfg.eff_low_central, cfg.eff_low_forward)
    high = np.where(central, cfg.eff_high_central, cfg.eff_high_forward)
    eff = np.where(pt < 1.0, low, high)
    return np.where((abs_eta < cfg.tracker_eta_max) & (pt > cfg.track_pt_min), eff, 0.0)


def track_resolution(pt, eta, cfg: DetectorConfig = DetectorConfig()) -> np.ndarray:
    """Relative pT resolution sigma(pT)/pT = sqrt(a^2 + (b pT)^2)."""
    b = np.where(np.abs(eta) <= cfg.central_eta, cfg.track_res_b_central, cfg.track_res_b_forward)
    return np.sqrt(cfg.track_res_a ** 2 + (b * np.asarray(pt)) ** 2)


def calo_resolution(energy, stochastic: float, constant: float) -> np.ndarray:
    """Relative energy resolution sigma(E)/E = sqrt(a^2 / E + c^2)."""
    energy = np.maximum(np.asarray(energy, np.float64), 1e-12)
    return np.sqrt(stochastic ** 2 / energy + constant ** 2)


def _pt_eta_phi(px, py, pz):
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    return pt, eta, np.arctan2(py, px)


def _towers(event, energy, eta, phi, deta, nphi, stochastic, constant, threshold, eta_max, rng):
    """Sums energies per (event, eta cell, phi cell), smears and thresholds the sums.

    Returns (event, E, eta_centre, phi_centre) of the surviving towers, ordered by
    (event, ieta, iphi)."""
    n_eta = int(np.ceil(2 * eta_max / deta))
    ieta = np.clip(np.floor((eta + eta_max) / deta).astype(np.int64), 0, n_eta - 1)
    dphi = 2 * np.pi / nphi
    iphi = np.floor((phi + np.pi) / dphi).astype(np.int64) % nphi
    key = (event.astype(np.int64) * n_eta + ieta) * nphi + iphi
    cells, inverse = np.unique(key, return_inverse=True)
    e_true = np.bincount(inverse, weights=energy, minlength=len(cells))
    sigma = e_true * calo_resolution(e_true, stochastic, constant)
    e_meas = e_true + sigma * rng.standard_normal(len(cells))
    keep = e_meas > threshold
    cells, e_meas = cells[keep], e_meas[keep]
    cell_phi = cells % nphi
    cell_eta = (cells // nphi) % n_eta
    ev = cells // (nphi * n_eta)
    return ev, e_meas, -eta_max + (cell_eta + 0.5) * deta, -np.pi + (cell_phi + 0.5) * dphi


def simulate(particles: dict, rng: np.random.Generator,
             cfg: DetectorConfig = DetectorConfig()) -> dict[str, np.ndarray]:
    """Energy-flow objects from generator-level final-state particles.

    particles: flat arrays over all particles of a batch of events, each (P,):
      ``event`` (int, non-decreasing not required), ``px``, ``py``, ``pz``, ``E`` (GeV),
      ``pid`` (PDG id), ``charge`` (units of e).
    Returns flat arrays (O,) ``event``, ``px``, ``py``, ``pz``, ``E``, ``pid``, ``charge``, sorted by
    event (stably: tracks, then ECAL towers, then HCAL towers within an event).
    """
    event = np.asarray(particles["event"], np.int64)
    px, py, pz, e = (np.asarray(particles[k], np.float64) for k in ("px", "py", "pz", "E"))
    pid = np.asarray(particles["pid"], np.int64)
    charge = np.asarray(particles["charge"], np.float64)
    apid = np.abs(pid)
    pt, eta, phi = _pt_eta_phi(px, py, pz)
    visible = ~np.isin(apid, NEUTRINOS) & (pt > 0)
    charged = visible & (charge != 0)

    # Tracker: one uniform and one normal draw per particle, so the random stream is aligned.
    u = rng.random(len(pt))
    z = rng.standard_normal(len(pt))
    tracked = charged & (u < track_efficiency(pt, eta, cfg))
    scale = 1.0 + track_resolution(pt, eta, cfg) * z
    tracked &= scale > 0
    t = tracked
    mass2 = np.maximum(e[t] ** 2 - px[t] ** 2 - py[t] ** 2 - pz[t] ** 2, 0.0)
    tpx, tpy, tpz = px[t] * scale[t], py[t] * scale[t], pz[t] * scale[t]
    te = np.sqrt(tpx ** 2 + tpy ** 2 + tpz ** 2 + mass2)

    in_calo = visible & ~tracked & (np.abs(eta) < cfg.calo_eta_max) & (apid != _MUON)
    to_ecal = in_calo & ((apid == _PHOTON) | (apid == _ELECTRON))
    to_hcal = in_calo & ~to_ecal
    ecal = _towers(event[to_ecal], e[to_ecal], eta[to_ecal], phi[to_ecal], cfg.ecal_deta,
                   cfg.ecal_nphi, cfg.ecal_stochastic, cfg.ecal_constant, cfg.ecal_threshold,
                   cfg.calo_eta_max, rng)
    hcal = _towers(event[to_hcal], e[to_hcal], eta[to_hcal], phi[to_hcal], cfg.hcal_deta,
                   cfg.hcal_nphi, cfg.hcal_stochastic, cfg.hcal_constant, cfg.hcal_threshold,
                   cfg.calo_eta_max, rng)

    parts = [(event[t], tpx, tpy, tpz, te, pid[t], charge[t])]
    for (ev, energy, ceta, cphi), code in ((ecal, _PHOTON), (hcal, 130)):
        cpt = energy / np.cosh(ceta)
        parts.append((ev, cpt * np.cos(cphi), cpt * np.sin(cphi), cpt * np.sinh(ceta), energy,
                      np.full(len(ev), code, np.int64), np.zeros(len(ev))))
    cols = [np.concatenate(c) for c in zip(*parts)]
    order = np.argsort(cols[0], kind="stable")
    names = ("event", "px", "py", "pz", "E", "pid", "charge")
    out = {name: col[order] for name, col in zip(names, cols)}
    out["pid"] = out["pid"].astype(np.int32)
    out["charge"] = out["charge"].astype(np.int8)
    return out
