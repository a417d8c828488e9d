"""Delphes-ATLAS-like energy flow: generator particles in, E-flow objects out.

A vectorised numpy re-implementation of the part of Delphes 3.4 (de Favereau et al., JHEP 02
(2014) 057, arXiv:1307.6346) with its ATLAS card (``cards/delphes_card_ATLAS.tcl``) that makes
the E-flow candidates the Top Tagging Reference Dataset was clustered from (Kasieczka et al.,
SciPost Phys. 7 (2019) 014, arXiv:1902.09914): the card's ExecutionPath up to ``EFlowMerger``.
The card's numbers are the defaults of ``DetectorConfig``; module by module, in the card's names:

1. ``ParticlePropagator`` (Radius 1.15 m, HalfLength 3.51 m, Bz 2.0 T): each stable particle
   goes from the origin to the surface of the calorimeter cylinder, a neutral one on a straight
   line, a charged one on a helix of transverse radius pT / (0.2998 |q| Bz). Where it leaves
   the cylinder (side or end cap) is its *position*: it chooses the calorimeter cell (and the
   eta used by the efficiency and resolution formulas). Momenta are not changed.
2. ``ChargedHadronTrackingEfficiency``, ``ElectronTrackingEfficiency``,
   ``MuonTrackingEfficiency``: a charged particle becomes a track with a probability tabulated
   in |eta| (<= 1.5, <= 2.5, none beyond) and pT (none at pT <= 0.1 GeV; (0.1, 1]; above 1, split
   at 100 GeV for electrons). Every charged particle but e and mu is a "charged hadron".
3. ``ChargedHadronMomentumSmearing``, ``ElectronMomentumSmearing``, ``MuonMomentumSmearing``:
   the track pT is drawn from a log-normal of mean pT and width res * pT, with
   res = min(sqrt(a^2 + (b pT)^2), 1) in |eta| bands (<= 0.5, <= 1.5, <= 2.5). The track is
   massless, E = |p| = pT cosh(eta) at the particle's eta, phi (Delphes 3.4 MomentumSmearing;
   tracks got the particle's mass only in Delphes 3.5, 2021, after the reference dataset).
4. ``ECal`` and ``HCal`` (``SimpleCalorimeter`` modules; in this card ``Calorimeter`` is only the
   merger of their towers, and the E-flow thresholds are their ``EnergyMin`` and
   ``EnergySignificanceMin`` — called ``ECal/HCalEnergySignificanceMin`` of a single
   ``Calorimeter`` module, set to 1.0, in the cards before Delphes 3.4.0):

   * every particle, tracked or not, puts E * f into the cell of its position, f its
     ``EnergyFraction`` (ECal: e, gamma, pi0 1, K0S and Lambda 0.3, anything else 0; HCal: e,
     gamma, pi0, mu, neutrinos 0, K0S and Lambda 0.7, anything else 1);
   * cells are the card's ``EtaPhiBins``: ECal 0.0174 in eta x 1 degree up to |eta| = 2.958,
     about 0.175 x 10 degrees up to 5; HCal 0.1 x 10 degrees up to |eta| = 2.5 (wider cells to
     3.3), 0.2 x 20 degrees up to 4.9. A cell's phi binning is the one listed with its upper
     eta edge, as ``SimpleCalorimeter::Init`` reads it;
   * a cell's energy is drawn from a log-normal of mean E and width
     sigma(E) = sqrt((c E)^2 + s^2 E + n^2), (c, s, n) of the |eta| band of the cell centre
     (``ResolutionFormula``; ECal: (0.0017, 0.101, 0) to |eta| 3.2, (0.035, 0.285, 0) to 4.9;
     HCal: (0.0302, 0.5205, 1.59 GeV noise) to 1.7, (0.05, 0.706, 0) to 3.2 and
     (0.0942, 1.0, 0) to 4.9; sigma = 0 beyond), and set to 0 if it is below ``EnergyMin``
     (ECal 0.5, HCal 1.0 GeV) or below ``EnergySignificanceMin`` (2.0) * sigma(measured E);
   * energy flow (``SimpleCalorimeter::FinalizeTower``): the tracks whose position is in the
     cell and whose f > 0 here (electrons in the ECal, charged hadrons in the HCal) sum to
     E_trk with sigma_trk^2 = sum (res E_track)^2. The neutral excess E_n = max(E - E_trk, 0)
     becomes an ``EFlowPhoton`` (ECal) or ``EFlowNeutralHadron`` (HCal) if E_n > EnergyMin and
     E_n / sqrt(sigma_trk^2 + sigma(E)^2) > EnergySignificanceMin, and the tracks are kept as
     they are; otherwise the tracks are scaled so that their sum is the inverse-variance mean
     of E_trk and E (E = 0 if the cell failed its thresholds, exactly as Delphes does).
     Tracks with f = 0 in a calorimeter pass it unchanged;
   * ``SmearTowerCenter true``: an E-flow tower is a massless object at an (eta, phi) drawn
     uniformly inside its cell.
5. ``EFlowMerger``: the output is ``HCal/eflowTracks`` + ``ECal/eflowPhotons`` +
   ``HCal/eflowNeutralHadrons``.

Output objects carry ``pid``: the true PDG id for tracks (as Delphes' EFlowTrack), 22 for
E-flow photons and 130 for E-flow neutral hadrons (Delphes gives them PID 0; 130 keeps them
apart from "unknown" for the particle-ID features); ``charge`` is the track charge, 0 for towers.

Everything is numpy over flat arrays of all particles of many events with an ``event`` index;
randomness comes only from the ``numpy.random.Generator`` passed in, drawn in a fixed order.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["DetectorConfig", "simulate", "propagate", "track_efficiency", "track_resolution",
           "calo_resolution", "log_normal", "energy_fraction", "NEUTRINOS", "NEUTRAL_HADRON_PID"]

NEUTRINOS = (12, 14, 16)
NEUTRAL_HADRON_PID = 130
_ELECTRON, _MUON, _PHOTON = 11, 13, 22
_NEUTRALINOS = (1000022, 1000023, 1000025, 1000035, 1000045)
_GEV_PER_T_M = 0.299792458   # pT [GeV] = 0.2998 |q| B [T] r [m]
_INF = math.inf


def _card_bins(groups) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """(eta edges, phi bins per cell) from the card's ``add EtaPhiBins $eta $PhiBins`` lines.

    ``groups``: (eta values, number of phi bins) pairs. As in ``SimpleCalorimeter::Init`` the
    edges are sorted and the cell (edges[i], edges[i+1]] gets the phi binning listed with
    edges[i+1] (duplicates merge; the finer binning wins, as the union of the edge sets)."""
    nphi = {}
    for etas, n in groups:
        for eta in etas:
            nphi[float(eta)] = max(n, nphi.get(float(eta), 0))
    edges = tuple(sorted(nphi))
    return edges, tuple(nphi[e] for e in edges[1:])


# module ECal, EtaPhiBins: "0.02 unit in eta up to eta = 3" (0.0174 x 1 degree), HF 10 degrees
_ECAL_BINS = _card_bins((
    ([i * 0.0174 for i in range(-85, 87)], 360),
    ([-2.958 + i * 0.0174 for i in range(1, 85)], 360),
    ([1.4964 + i * 0.0174 for i in range(1, 85)], 360),
    ((-5, -4.7, -4.525, -4.35, -4.175, -4, -3.825, -3.65, -3.475, -3.3, -3.125, -2.958, 3.125,
      3.3, 3.475, 3.65, 3.825, 4, 4.175, 4.35, 4.525, 4.7, 5), 36)))
# module HCal, EtaPhiBins: "10 degrees towers" and "20 degrees towers"
_HCAL_BINS = _card_bins((
    ((-3.2, -2.5, -2.4, -2.3, -2.2, -2.1, -2, -1.9, -1.8, -1.7, -1.6, -1.5, -1.4, -1.3, -1.2, -1.1,
      -1, -0.9, -0.8, -0.7, -0.6, -0.5, -0.4, -0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6,
      0.7, 0.8, 0.9, 1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2, 2.1, 2.2, 2.3, 2.4, 2.5,
      2.6, 3.3), 36),
    ((-4.9, -4.7, -4.5, -4.3, -4.1, -3.9, -3.7, -3.5, -3.3, -3, -2.8, -2.6, 2.8, 3, 3.2, 3.5,
      3.7, 3.9, 4.1, 4.3, 4.5, 4.7, 4.9), 18)))


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """The Delphes ATLAS card's parameters (energies and momenta in GeV, lengths in m).

    Efficiency tables: ((|eta| upper edge, ((pT upper edge, efficiency), ...)), ...), bands
    (previous edge, edge]; zero at pT <= ``track_pt_min`` and beyond the last |eta| edge.
    Track resolutions: ((|eta| upper edge, a, b), ...) for sigma(pT)/pT = sqrt(a^2 + (b pT)^2).
    Calorimeter resolutions: ((|eta| upper edge, c, s, n), ...) for
    sigma(E) = sqrt((c E)^2 + s^2 E + n^2), evaluated at the cell centre's |eta|, 0 beyond.
    Energy fractions: ((|PDG id|, fraction), ...), id 0 the default.
    """
    # ParticlePropagator
    radius: float = 1.15
    half_length: float = 3.51
    bz: float = 2.0
    # ChargedHadron/Electron/MuonTrackingEfficiency
    track_pt_min: float = 0.1
    hadron_efficiency: tuple = ((1.5, ((1.0, 0.70), (_INF, 0.95))),
                                (2.5, ((1.0, 0.60), (_INF, 0.85))))
    electron_efficiency: tuple = ((1.5, ((1.0, 0.73), (100.0, 0.95), (_INF, 0.99))),
                                  (2.5, ((1.0, 0.50), (100.0, 0.83), (_INF, 0.90))))
    muon_efficiency: tuple = ((1.5, ((1.0, 0.75), (_INF, 0.99))),
                              (2.5, ((1.0, 0.70), (_INF, 0.98))))
    # ChargedHadron/Electron/MuonMomentumSmearing
    hadron_resolution: tuple = ((0.5, 0.06, 1.3e-3), (1.5, 0.10, 1.7e-3), (2.5, 0.25, 3.1e-3))
    electron_resolution: tuple = ((0.5, 0.03, 1.3e-3), (1.5, 0.05, 1.7e-3), (2.5, 0.15, 3.1e-3))
    muon_resolution: tuple = ((0.5, 0.01, 1.0e-4), (1.5, 0.015, 1.5e-4), (2.5, 0.025, 3.5e-4))
    # ECal
    ecal_resolution: tuple = ((3.2, 0.0017, 0.101, 0.0), (4.9, 0.0350, 0.285, 0.0))
    ecal_energy_min: float = 0.5
    ecal_significance_min: float = 2.0
    ecal_fractions: tuple = ((0, 0.0), (11, 1.0), (22, 1.0), (111, 1.0), (12, 0.0), (13, 0.0),
                             (14, 0.0), (16, 0.0)) + tuple((n, 0.0) for n in _NEUTRALINOS) + (
                                 (310, 0.3), (3122, 0.3))
    ecal_eta_edges: tuple = dataclasses.field(default=_ECAL_BINS[0], repr=False)
    ecal_nphi: tuple = dataclasses.field(default=_ECAL_BINS[1], repr=False)
    # HCal
    hcal_resolution: tuple = ((1.7, 0.0302, 0.5205, 1.59), (3.2, 0.0500, 0.706, 0.0),
                              (4.9, 0.09420, 1.00, 0.0))
    hcal_energy_min: float = 1.0
    hcal_significance_min: float = 2.0
    hcal_fractions: tuple = ((0, 1.0), (11, 0.0), (22, 0.0), (111, 0.0), (12, 0.0), (13, 0.0),
                             (14, 0.0), (16, 0.0)) + tuple((n, 0.0) for n in _NEUTRALINOS) + (
                                 (310, 0.7), (3122, 0.7))
    hcal_eta_edges: tuple = dataclasses.field(default=_HCAL_BINS[0], repr=False)
    hcal_nphi: tuple = dataclasses.field(default=_HCAL_BINS[1], repr=False)
    # both calorimeters
    smear_tower_center: bool = True
    # |eta| acceptance of the truth-level path (generation with detector='none'): the HCal's
    calo_eta_max: float = 4.9


def _kind(pid):
    """0 charged hadron, 1 electron, 2 muon (ParticlePropagator's three output arrays)."""
    apid = np.abs(np.asarray(pid))
    return np.where(apid == _ELECTRON, 1, np.where(apid == _MUON, 2, 0))


def _efficiency_table(table, pt, abs_eta, pt_min):
    out = np.zeros(np.broadcast(pt, abs_eta).shape)
    eta_lo = -1.0
    for eta_hi, row in table:
        band = (abs_eta > eta_lo) & (abs_eta <= eta_hi)
        pt_lo = pt_min
        for pt_hi, eff in row:
            out = np.where(band & (pt > pt_lo) & (pt <= pt_hi), eff, out)
            pt_lo = pt_hi
        eta_lo = eta_hi
    return out


def _resolution_table(table, pt, abs_eta, pt_min):
    out = np.zeros(np.broadcast(pt, abs_eta).shape)
    eta_lo = -1.0
    for eta_hi, a, b in table:
        band = (abs_eta > eta_lo) & (abs_eta <= eta_hi) & (pt > pt_min)
        out = np.where(band, np.sqrt(a ** 2 + (b * pt) ** 2), out)
        eta_lo = eta_hi
    return out


def track_efficiency(pid, pt, eta, cfg: DetectorConfig = DetectorConfig()) -> np.ndarray:
    """Probability that a charged particle (PDG ``pid``, ``pt`` GeV, position ``eta``) is a track
    (the card's ChargedHadron/Electron/MuonTrackingEfficiency)."""
    pt, abs_eta, kind = np.asarray(pt, np.float64), np.abs(np.asarray(eta, np.float64)), _kind(pid)
    tables = (cfg.hadron_efficiency, cfg.electron_efficiency, cfg.muon_efficiency)
    out = np.zeros(np.broadcast(pt, abs_eta, kind).shape)
    for k, table in enumerate(tables):
        out = np.where(kind == k, _efficiency_table(table, pt, abs_eta, cfg.track_pt_min), out)
    return out


def track_resolution(pid, pt, eta, cfg: DetectorConfig = DetectorConfig()) -> np.ndarray:
    """Relative track pT resolution, min(sqrt(a^2 + (b pT)^2), 1) (the card's
    ChargedHadron/Electron/MuonMomentumSmearing; 0 at pT <= 0.1 GeV or |eta| > 2.5)."""
    pt, abs_eta, kind = np.asarray(pt, np.float64), np.abs(np.asarray(eta, np.float64)), _kind(pid)
    tables = (cfg.hadron_resolution, cfg.electron_resolution, cfg.muon_resolution)
    out = np.zeros(np.broadcast(pt, abs_eta, kind).shape)
    for k, table in enumerate(tables):
        out = np.where(kind == k, _resolution_table(table, pt, abs_eta, cfg.track_pt_min), out)
    return np.minimum(out, 1.0)


def calo_resolution(energy, eta, bands) -> np.ndarray:
    """Absolute energy resolution sigma(E) = sqrt((c E)^2 + s^2 E + n^2) in GeV, (c, s, n) of the
    |eta| band (``bands`` = DetectorConfig.ecal_resolution or .hcal_resolution); 0 beyond."""
    energy = np.asarray(energy, np.float64)
    abs_eta = np.abs(np.asarray(eta, np.float64))
    out = np.zeros(np.broadcast(energy, abs_eta).shape)
    eta_lo = -1.0
    for eta_hi, c, s, n in bands:
        band = (abs_eta > eta_lo) & (abs_eta <= eta_hi)
        out = np.where(band, np.sqrt((c * energy) ** 2 + s ** 2 * energy + n ** 2), out)
        eta_lo = eta_hi
    return out


def log_normal(mean, sigma, z) -> np.ndarray:
    """Delphes' LogNormal(mean, sigma) from standard normal draws ``z``: exp(a + b z) with
    b^2 = log(1 + sigma^2 / mean^2), a = log(mean) - b^2 / 2 (so its mean and standard deviation
    are ``mean`` and ``sigma``); 0 where mean <= 0."""
    mean, sigma = np.asarray(mean, np.float64), np.asarray(sigma, np.float64)
    positive = mean > 0
    safe = np.where(positive, mean, 1.0)
    b2 = np.log1p((sigma / safe) ** 2)
    return np.where(positive, np.exp(np.log(safe) - 0.5 * b2 + np.sqrt(b2) * z), 0.0)


def energy_fraction(pid, fractions) -> np.ndarray:
    """The card's EnergyFraction of |pid| (``fractions`` = ((|PDG id|, f), ...), id 0 default)."""
    table = dict(fractions)
    default = table.get(0, 1.0)   # SimpleCalorimeter::Init sets fFractionMap[0] = 1.0 first
    ids, inverse = np.unique(np.abs(np.asarray(pid, np.int64)), return_inverse=True)
    return np.array([table.get(int(i), default) for i in ids], np.float64)[inverse.reshape(-1)]


def propagate(pt, eta, phi, charge, cfg: DetectorConfig = DetectorConfig()):
    """ParticlePropagator from the origin: (eta, phi) where each particle leaves the cylinder of
    radius ``cfg.radius`` and half-length ``cfg.half_length`` in the field ``cfg.bz``, and
    whether it leaves it (a charged particle with pz = 0 that cannot reach the side never does).

    A charged particle's transverse path is a circle through the origin of radius
    r = pT / (0.2998 |q| Bz); after turning by alpha its position is at distance
    2 r |sin(alpha / 2)| in the direction phi - sign(q Bz) alpha / 2. It reaches the side after
    alpha = 2 asin(R / 2r) (if 2r >= R and |z| <= half-length there), else the end cap after
    alpha = half-length / (r |sinh eta|)."""
    pt, eta, phi = (np.asarray(x, np.float64) for x in (pt, eta, phi))
    pt, eta, phi, charge = np.broadcast_arrays(pt, eta, phi, np.asarray(charge, np.float64))
    pos_eta, pos_phi, ok = eta.copy(), phi.copy(), np.ones(eta.shape, bool)
    c = (charge != 0) & (cfg.bz != 0) & (pt > 0)
    r = pt[c] / (_GEV_PER_T_M * np.abs(charge[c] * cfg.bz))
    slope = np.sinh(eta[c])   # pz / pT
    ratio = cfg.radius / (2 * r)
    alpha_side = 2 * np.arcsin(np.minimum(ratio, 1.0))
    z_side = slope * r * alpha_side
    side = (ratio <= 1) & (np.abs(z_side) <= cfg.half_length)
    with np.errstate(divide="ignore"):
        alpha = np.where(side, alpha_side, cfg.half_length / (np.abs(slope) * r))
    alpha = np.where(np.isfinite(alpha), alpha, 0.0)
    chord = 2 * r * np.sin(0.5 * alpha)
    turn = phi[c] - np.sign(charge[c] * cfg.bz) * 0.5 * alpha
    z = np.where(side, z_side, np.sign(slope) * cfg.half_length)
    rho = np.abs(chord)
    ok[c] = side | ((slope != 0) & (rho > 0))
    pos_phi[c] = np.arctan2(chord * np.sin(turn), chord * np.cos(turn))
    pos_eta[c] = np.arcsinh(z / np.where(rho > 0, rho, 1.0))
    return pos_eta, pos_phi, ok


def _cells(eta, phi, edges, nphi):
    """Delphes' lower_bound binning: eta bin b with edges[b-1] < eta <= edges[b] (1 <= b < len),
    phi bin k (1..n) of the n = nphi[b-1] equal bins of (-pi, pi]; and whether inside."""
    b = np.searchsorted(edges, eta, side="left")
    inside = (b >= 1) & (b < len(edges))
    b = np.clip(b, 1, len(edges) - 1)
    n = nphi[b - 1]
    k = np.ceil((phi + np.pi) * n / (2 * np.pi)).astype(np.int64)
    inside &= k >= 1
    return b, np.clip(k, 1, n), inside


def _calorimeter(event, energy, fraction, eta, phi, trk_event, trk_energy, trk_res, trk_eta,
                 trk_phi, trk_fraction, edges, nphi, bands, energy_min, significance_min,
                 smear_center, rng):
    """One SimpleCalorimeter. Particles put ``energy`` * ``fraction`` at their position; tracks
    have (E, relative resolution, position, fraction here). Returns the E-flow towers (event, E,
    eta, phi), the tracks' scale factors and which tracks are inside the eta-phi cells."""
    edges, nphi = np.asarray(edges, np.float64), np.asarray(nphi, np.int64)
    n_k = int(nphi.max()) + 1

    def keys(ev, e, p):
        b, k, inside = _cells(e, p, edges, nphi)
        return (ev.astype(np.int64) * len(edges) + b) * n_k + k, inside

    p_key, p_in = keys(event, eta, phi)
    p_in &= fraction > 1e-9   # as SimpleCalorimeter::Process
    t_key, t_in = keys(trk_event, trk_eta, trk_phi)
    t_hit = t_in & (trk_fraction > 1e-9)
    n_p = int(p_in.sum())
    cells, inverse = np.unique(np.concatenate([p_key[p_in], t_key[t_hit]]), return_inverse=True)
    inverse = inverse.reshape(-1)
    n_cells = len(cells)
    e_true = np.bincount(inverse[:n_p], weights=(energy * fraction)[p_in],
                         minlength=n_cells).astype(np.float64)
    t_inv = inverse[n_p:]
    t_e = trk_energy[t_hit] * trk_fraction[t_hit]
    e_trk = np.bincount(t_inv, weights=t_e, minlength=n_cells).astype(np.float64)
    var_trk = np.bincount(t_inv, weights=(trk_res[t_hit] * t_e) ** 2,
                          minlength=n_cells).astype(np.float64)

    k = cells % n_k
    b = (cells // n_k) % len(edges)
    ev = cells // (n_k * len(edges))
    eta_lo, eta_hi = edges[b - 1], edges[b]
    centre = 0.5 * (eta_lo + eta_hi)
    dphi = 2 * np.pi / nphi[b - 1]
    phi_lo = -np.pi + (k - 1) * dphi

    z = rng.standard_normal(n_cells)
    u = rng.random((n_cells, 2))
    energy = log_normal(e_true, calo_resolution(e_true, centre, bands), z)
    sigma = calo_resolution(energy, centre, bands)
    energy = np.where((energy < energy_min) | (energy < significance_min * sigma), 0.0, energy)
    if smear_center:
        cell_eta, cell_phi = eta_lo + u[:, 0] * (eta_hi - eta_lo), phi_lo + u[:, 1] * dphi
    else:
        cell_eta, cell_phi = centre, phi_lo + 0.5 * dphi

    neutral = np.maximum(energy - e_trk, 0.0)
    width = np.sqrt(var_trk + sigma ** 2)
    significance = np.divide(neutral, width, out=np.full(n_cells, _INF), where=width > 0)
    flow = (neutral > energy_min) & (significance > significance_min)
    w_trk = np.divide(1.0, var_trk, out=np.zeros(n_cells), where=var_trk > 0)
    w_cal = np.divide(1.0, sigma ** 2, out=np.zeros(n_cells), where=sigma > 0)
    rescale = ~flow & (e_trk > 0) & (w_trk + w_cal > 0)
    best = np.divide(w_trk * e_trk + w_cal * energy, w_trk + w_cal, out=np.copy(e_trk),
                     where=rescale)
    cell_scale = np.divide(best, e_trk, out=np.ones(n_cells), where=rescale)
    scale = np.ones(len(trk_energy))
    scale[t_hit] = cell_scale[t_inv]
    return (ev[flow], neutral[flow], cell_eta[flow], cell_phi[flow]), scale, t_in


def _massless(energy, eta, phi):
    pt = energy / np.cosh(eta)
    return pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)


def simulate(particles: dict, rng: np.random.Generator,
             cfg: DetectorConfig = DetectorConfig()) -> dict[str, np.ndarray]:
    """E-flow objects from generator-level final-state particles (see the module docstring).

    particles: flat arrays over all particles of a batch of events, each (P,):
      ``event`` (int), ``px``, ``py``, ``pz``, ``E`` (GeV), ``pid`` (PDG id), ``charge`` (e).
    Returns flat arrays (O,) ``event``, ``px``, ``py``, ``pz``, ``E``, ``pid`` (int32), ``charge``
    (int8), sorted by event, stably: tracks, then E-flow photons, then E-flow neutral hadrons.
    Tracks and towers are massless (E = |p|).
    """
    event = np.asarray(particles["event"], np.int64)
    px, py, pz, e = (np.asarray(particles[k], np.float64) for k in ("px", "py", "pz", "E"))
    pid = np.asarray(particles["pid"], np.int64)
    charge = np.asarray(particles["charge"], np.float64)
    pt = np.hypot(px, py)
    live = pt ** 2 >= 1e-9   # ParticlePropagator skips pT^2 < 1e-9
    safe_pt = np.where(live, pt, 1.0)
    eta = np.where(live, np.arcsinh(pz / safe_pt), 0.0)
    phi = np.arctan2(py, px)
    pos_eta, pos_phi, reach = propagate(pt, eta, phi, charge, cfg)
    live &= reach

    # trackers: one uniform and one normal draw per particle, so the random stream is aligned
    u = rng.random(len(pt))
    z = rng.standard_normal(len(pt))
    tracked = live & (charge != 0) & (u < track_efficiency(pid, pt, pos_eta, cfg))
    res = track_resolution(pid, pt, pos_eta, cfg)
    t_pt = log_normal(pt, res * pt, z)[tracked]
    t_eta, t_phi, t_res = eta[tracked], phi[tracked], res[tracked]
    t_energy = t_pt * np.cosh(t_eta)   # massless
    t_event, t_pid = event[tracked], pid[tracked]
    t_pos_eta, t_pos_phi = pos_eta[tracked], pos_phi[tracked]

    towers = []
    keep = np.ones(len(t_pt), bool)
    scale = np.ones(len(t_pt))
    for fractions, edges, nphi, bands, e_min, sig_min in (
            (cfg.ecal_fractions, cfg.ecal_eta_edges, cfg.ecal_nphi, cfg.ecal_resolution,
             cfg.ecal_energy_min, cfg.ecal_significance_min),
            (cfg.hcal_fractions, cfg.hcal_eta_edges, cfg.hcal_nphi, cfg.hcal_resolution,
             cfg.hcal_energy_min, cfg.hcal_significance_min)):
        flow, s, inside = _calorimeter(
            event, e, np.where(live, energy_fraction(pid, fractions), 0.0), pos_eta, pos_phi,
            t_event, t_energy * scale, t_res, t_pos_eta, t_pos_phi,
            energy_fraction(t_pid, fractions), edges, nphi, bands, e_min, sig_min,
            cfg.smear_tower_center, rng)
        towers.append(flow)
        scale *= s
        keep &= inside   # a track outside a calorimeter's cells never reaches the E-flow

    t_energy = (t_energy * scale)[keep]
    t_eta, t_phi = t_eta[keep], t_phi[keep]
    parts = [(t_event[keep], *_massless(t_energy, t_eta, t_phi), t_energy, t_pid[keep],
              charge[tracked][keep])]
    for (ev, energy, ceta, cphi), code in zip(towers, (_PHOTON, NEUTRAL_HADRON_PID)):
        parts.append((ev, *_massless(energy, ceta, cphi), energy,
                      np.full(len(ev), code, np.int64), np.zeros(len(ev))))
    cols = [np.concatenate(c) for c in zip(*parts)]
    order = np.argsort(cols[0], kind="stable")
    names = ("event", "px", "py", "pz", "E", "pid", "charge")
    out = {name: col[order] for name, col in zip(names, cols)}
    out["pid"] = out["pid"].astype(np.int32)
    out["charge"] = out["charge"].astype(np.int8)
    return out
