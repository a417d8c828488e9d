"""Detector elements for particle flow: tracks and topological calorimeter clusters, with targets.

The fast detector of :mod:`hepjax.data.detector` (a re-implementation of Delphes 3.4 with the
ATLAS card; de Favereau et al., JHEP 02 (2014) 057) makes E-flow *objects*; machine-learned
particle flow (Pata et al., "MLPF: efficient machine-learned particle-flow reconstruction using
graph neural networks", EPJC 81 (2021) 381) needs the *elements* a reconstruction starts from.
This module reuses that detector's pieces (helix propagation in the 2 T field, the card's
tracking efficiencies and momentum smearing, its calorimeter resolution formulas and energy
fractions) and adds what particle flow needs:

* **tracks**: each charged particle that reaches the calorimeter and passes the card's tracking
  efficiency (|eta| <= 2.5) gives a track with the log-normally smeared pT of the card, the
  direction at the vertex (eta, phi) and the helix parameters at the calorimeter surface
  (eta_calo, phi_calo: where ``detector.propagate`` makes it leave the cylinder of radius
  1.15 m, half-length 3.51 m in Bz = 2 T), its charge and its relative pT resolution.
* **calorimeter cells**: every particle that reaches the calorimeter deposits E * f_ECal in the
  ECal and E * f_HCal in the HCal (the card's ``EnergyFraction``: e, gamma in the ECal; hadrons
  in the HCal; K0S and Lambda 30/70 %; muons and neutrinos nothing), spread laterally over the
  3 x 3 cells around its impact cell by a 2-D Gaussian of width ``ecal_spread`` / ``hcal_spread``
  (in eta and phi), into uniform grids: ECal ``ecal_cell`` x ``ecal_cell`` (0.025, as the
  ATLAS LAr middle layer), HCal ``hcal_cell`` x ``hcal_cell`` (0.1, as the ATLAS tile
  calorimeter), |eta| < ``calo_eta_max`` (3.0). A cell's energy is drawn from the card's
  log-normal with the stochastic and constant terms of the card (``detector.log_normal``; the
  card's HCal *tower* noise term is replaced by a Gaussian cell noise), plus Gaussian noise of
  ``ecal_noise`` / ``hcal_noise`` GeV (only in cells that got a deposit: empty cells are not
  simulated).
* **clusters** (a simplified ATLAS topo-clustering, Aad et al., EPJC 77 (2017) 490): cells above
  ``cell_threshold`` x noise are joined with their 8 neighbours (phi wraps) into connected
  components, one calorimeter at a time; a component becomes a cluster if it contains a seed
  cell above ``seed_threshold`` x noise. Nearby particles therefore merge into one cluster, as in
  a real detector (no splitting at local maxima). A cluster's features: measured energy,
  energy-weighted centroid (eta, circular mean of phi), the energy-weighted widths in eta and
  phi, its number of cells.

**Element features** (``FEATURES``, one row per element, float32): type (1 track, 2 ECal cluster,
3 HCal cluster), pT (GeV; clusters E / cosh(eta)), eta, sin phi, cos phi, E (GeV; tracks
massless, E = pT cosh eta), eta_calo, sin phi_calo, cos phi_calo (tracks: the helix at the
calorimeter surface; clusters: the centroid again), charge, the track's relative pT resolution,
sigma_eta, sigma_phi, the number of cells (tracks 0 where undefined).

**Targets** (the definition used by the experiment; Pata et al. 2021 use the same idea). The
generator particles are the stable visible particles (neutrinos removed) of the hard event and
of the pile-up events, in classes ``CLASSES``: 1 charged hadron (any charged particle but e and
mu), 2 neutral hadron, 3 photon, 4 electron, 5 muon. Each particle is *assigned* to one element:

1. a particle that left a track is assigned to its track;
2. otherwise to the cluster (ECal or HCal) that holds the largest part of its true (unsmeared)
   deposit, if it holds any;
3. otherwise (out of acceptance, below every threshold, an untracked muon) to none: it is
   "not reconstructable" and counted separately in the metrics.

An element's target is the class of the most energetic particle assigned to it and the
four-momentum sum of all particles assigned to it (pT, eta, phi, E of that sum), or class 0
("no particle") when nothing is assigned to it (noise clusters, clusters whose particles are
all assigned elsewhere, e.g. the calorimeter deposit of a tracked pion). Because clusters merge,
a cluster's target may be the sum of several neutral particles of different classes.

Everything is numpy over flat arrays of many events (``event`` index), drawn from the
``numpy.random.Generator`` passed in, in a fixed order: same input and seed, same elements.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from hepjax.data import detector as det

__all__ = ["ElementConfig", "FEATURES", "CLASSES", "TRACK", "ECAL", "HCAL", "particle_class",
           "make_elements"]

FEATURES = ("type", "pt", "eta", "sin_phi", "cos_phi", "energy", "eta_calo", "sin_phi_calo",
            "cos_phi_calo", "charge", "pt_resolution", "sigma_eta", "sigma_phi", "n_cells")
CLASSES = ("none", "charged_hadron", "neutral_hadron", "photon", "electron", "muon")
TRACK, ECAL, HCAL = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class ElementConfig:
    """Parameters of the element-level detector (energies in GeV, angles in eta / radians)."""
    detector: det.DetectorConfig = det.DetectorConfig()
    tracker_eta_max: float = 2.5
    calo_eta_max: float = 3.0
    ecal_cell: float = 0.025
    hcal_cell: float = 0.1
    ecal_spread: float = 0.015      # lateral shower width (Gaussian sigma, eta and phi)
    hcal_spread: float = 0.04
    # stochastic / constant terms per cell (the card's, noise replaced by ``*_noise``)
    ecal_resolution: tuple = ((3.2, 0.0017, 0.101, 0.0),)
    hcal_resolution: tuple = ((1.7, 0.0302, 0.5205, 0.0), (3.2, 0.05, 0.706, 0.0))
    ecal_noise: float = 0.03
    hcal_noise: float = 0.3
    cell_threshold: float = 2.0     # in units of the cell noise
    seed_threshold: float = 4.0


def particle_class(pid, charge) -> np.ndarray:
    """``CLASSES`` index of PDG ids: 4 e, 5 mu, 3 photon, 1 other charged, 2 other neutral."""
    apid = np.abs(np.asarray(pid, np.int64))
    charged = np.asarray(charge) != 0
    return np.where(apid == 11, 4, np.where(apid == 13, 5, np.where(
        apid == 22, 3, np.where(charged, 1, 2)))).astype(np.int8)


def _grid(cell: float, eta_max: float):
    n_eta = int(round(2 * eta_max / cell))
    n_phi = int(round(2 * math.pi / cell))
    return n_eta, n_phi, 2 * eta_max / n_eta, 2 * math.pi / n_phi


def _erf(x):
    from scipy.special import erf
    return erf(x)


def _deposit(event, energy, eta, phi, cell, spread, eta_max):
    """The 3 x 3 cell deposits of each particle: (particle index, cell key parts, true energy)."""
    n_eta, n_phi, d_eta, d_phi = _grid(cell, eta_max)
    ie = np.floor((eta + eta_max) / d_eta).astype(np.int64)
    ip = np.floor((phi + math.pi) / d_phi).astype(np.int64) % n_phi
    inside = (ie >= 0) & (ie < n_eta) & (energy > 0)
    idx = np.flatnonzero(inside)
    ie, ip = ie[idx], ip[idx]
    # Gaussian integral over each of the three cells in eta and phi around the impact cell
    lo_e = -eta_max + ie * d_eta
    lo_p = -math.pi + ip * d_phi
    we, wp = [], []
    for off in (-1, 0, 1):
        a = (lo_e + off * d_eta - eta[idx]) / (math.sqrt(2) * spread)
        we.append(0.5 * (_erf(a + d_eta / (math.sqrt(2) * spread)) - _erf(a)))
        b = (lo_p + off * d_phi - phi[idx]) / (math.sqrt(2) * spread)
        wp.append(0.5 * (_erf(b + d_phi / (math.sqrt(2) * spread)) - _erf(b)))
    we, wp = np.stack(we, 1), np.stack(wp, 1)                # (P, 3)
    w = we[:, :, None] * wp[:, None, :]                        # (P, 3, 3)
    w = w / w.sum(axis=(1, 2), keepdims=True)
    de = np.array([-1, 0, 1])
    cell_e = np.broadcast_to(ie[:, None, None] + de[None, :, None], w.shape)
    cell_p = np.broadcast_to((ip[:, None, None] + de[None, None, :]) % n_phi, w.shape)
    ok = (cell_e >= 0) & (cell_e < n_eta)
    part = np.broadcast_to(idx[:, None, None], w.shape)[ok]
    ev = event[part]
    e = (energy[idx][:, None, None] * w)[ok]
    return part, ev, cell_e[ok], cell_p[ok], e, (n_eta, n_phi, d_eta, d_phi)


def _components(n_nodes, a, b):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n_nodes, n_nodes))
    return connected_components(graph, directed=False)[1]


def _clusters(part, ev, ce, cp, e_true, grid, rng, bands, noise, cfg):
    """Smeared cells -> topo clusters. Returns cluster arrays and the particle->cluster deposits."""
    n_eta, n_phi, d_eta, d_phi = grid
    key = (ev * n_eta + ce) * n_phi + cp
    cells, inv = np.unique(key, return_inverse=True)
    inv = inv.reshape(-1)
    n_cells = len(cells)
    e_cell = np.bincount(inv, weights=e_true, minlength=n_cells)
    c_ev = cells // (n_eta * n_phi)
    c_e = (cells // n_phi) % n_eta
    c_p = cells % n_phi
    eta_c = -cfg.calo_eta_max + (c_e + 0.5) * d_eta
    phi_c = -math.pi + (c_p + 0.5) * d_phi
    z = rng.standard_normal((n_cells, 2))
    measured = det.log_normal(e_cell, det.calo_resolution(e_cell, eta_c, bands), z[:, 0])
    measured = measured + noise * z[:, 1]
    keep = measured > cfg.cell_threshold * noise
    kept = np.flatnonzero(keep)
    pos = -np.ones(n_cells, np.int64)
    pos[kept] = np.arange(len(kept))
    kept_keys = cells[kept]
    a_list, b_list = [], []
    for de, dp in ((1, 0), (0, 1), (1, 1), (1, -1)):
        ne = c_e[kept] + de
        np_ = (c_p[kept] + dp) % n_phi
        nkey = (c_ev[kept] * n_eta + ne) * n_phi + np_
        j = np.searchsorted(kept_keys, nkey)
        j = np.minimum(j, len(kept_keys) - 1)
        hit = (ne < n_eta) & (len(kept_keys) > 0) & (kept_keys[j] == nkey) if len(kept) else \
            np.zeros(0, bool)
        a_list.append(np.arange(len(kept))[hit])
        b_list.append(j[hit])
    label = _components(len(kept), np.concatenate(a_list), np.concatenate(b_list)) \
        if len(kept) else np.zeros(0, np.int64)
    n_lab = int(label.max()) + 1 if len(label) else 0
    seed = np.bincount(label, weights=(measured[kept] > cfg.seed_threshold * noise),
                       minlength=n_lab) > 0
    new = -np.ones(n_lab, np.int64)
    new[seed] = np.arange(int(seed.sum()))
    cell_cluster = -np.ones(n_cells, np.int64)
    cell_cluster[kept] = new[label]
    n_cl = int(seed.sum())
    inc = cell_cluster >= 0
    cl = cell_cluster[inc]
    w = measured[inc]
    energy = np.bincount(cl, weights=w, minlength=n_cl)
    ev_cl = np.zeros(n_cl, np.int64)
    ev_cl[cl] = c_ev[inc]
    mean_eta = np.bincount(cl, weights=w * eta_c[inc], minlength=n_cl) / energy
    sx = np.bincount(cl, weights=w * np.cos(phi_c[inc]), minlength=n_cl)
    sy = np.bincount(cl, weights=w * np.sin(phi_c[inc]), minlength=n_cl)
    mean_phi = np.arctan2(sy, sx)
    var_eta = np.bincount(cl, weights=w * (eta_c[inc] - mean_eta[cl]) ** 2, minlength=n_cl) / energy
    dphi = (phi_c[inc] - mean_phi[cl] + math.pi) % (2 * math.pi) - math.pi
    var_phi = np.bincount(cl, weights=w * dphi ** 2, minlength=n_cl) / energy
    n_c = np.bincount(cl, minlength=n_cl)
    # true deposit of each particle in each cluster
    dep_cluster = cell_cluster[inv]
    has = dep_cluster >= 0
    return dict(event=ev_cl, energy=energy, eta=mean_eta, phi=mean_phi,
                sigma_eta=np.sqrt(np.maximum(var_eta, 0)), sigma_phi=np.sqrt(np.maximum(var_phi, 0)),
                n_cells=n_c), (part[has], dep_cluster[has], e_true[has])


def make_elements(particles: dict, rng: np.random.Generator,
                  cfg: ElementConfig = ElementConfig()) -> dict[str, np.ndarray]:
    """Elements and targets of a batch of events (see the module docstring).

    particles: flat arrays (P,) ``event`` (int, events 0..n-1, sorted), ``px``, ``py``, ``pz``,
    ``E`` (GeV), ``pid``, ``charge`` (e), ``pileup`` (bool): stable visible particles.
    Returns flat arrays, sorted by event: elements (M rows) ``element_event``,
    ``features`` (M, len(FEATURES)) float32, ``target_class`` (M,) int8, ``target`` (M, 4)
    float32 (pT, eta, phi, E of the assigned particles' sum; zeros for class 0),
    ``track_pid`` (M,) int32 (the true PDG id of a track's particle, 0 for clusters: only
    the Delphes-like baseline reads it, as Delphes' EFlow does); generator particles (P rows)
    ``particle_event``, ``particle`` (P, 4) float32 (pT, eta, phi, E), ``particle_class`` (P,)
    int8, ``particle_pileup`` (P,) bool, ``particle_element`` (P,) int64 (the index of the
    assigned element within its event, -1 for none).
    """
    for name in ("event", "px", "py", "pz", "E", "pid", "charge", "pileup"):
        if name not in particles:
            raise ValueError(f"make_elements: particles lack the field {name!r}; expected "
                             "event, px, py, pz, E, pid, charge, pileup")
    event = np.asarray(particles["event"], np.int64)
    if len(event) and np.any(np.diff(event) < 0):
        raise ValueError("make_elements: particles['event'] must be sorted")
    px, py, pz, e = (np.asarray(particles[k], np.float64) for k in ("px", "py", "pz", "E"))
    pid = np.asarray(particles["pid"], np.int64)
    charge = np.asarray(particles["charge"], np.float64)
    n_p = len(event)
    pt = np.hypot(px, py)
    live = pt > 1e-4
    eta = np.where(live, np.arcsinh(pz / np.where(live, pt, 1.0)), 0.0)
    phi = np.arctan2(py, px)
    d = cfg.detector
    pos_eta, pos_phi, reach = det.propagate(pt, eta, phi, charge, d)
    live &= reach

    # tracks (one uniform and one normal draw per particle)
    u = rng.random(n_p)
    z = rng.standard_normal(n_p)
    tracked = (live & (charge != 0) & (np.abs(eta) <= cfg.tracker_eta_max)
               & (u < det.track_efficiency(pid, pt, pos_eta, d)))
    res = det.track_resolution(pid, pt, pos_eta, d)
    t_idx = np.flatnonzero(tracked)
    t_pt = det.log_normal(pt, res * pt, z)[t_idx]

    # calorimeters
    clusters, deposits = [], []
    for fractions, cell, spread, bands, noise in (
            (d.ecal_fractions, cfg.ecal_cell, cfg.ecal_spread, cfg.ecal_resolution, cfg.ecal_noise),
            (d.hcal_fractions, cfg.hcal_cell, cfg.hcal_spread, cfg.hcal_resolution, cfg.hcal_noise)):
        f = np.where(live, det.energy_fraction(pid, fractions), 0.0)
        part, ev, ce, cp, e_dep, grid = _deposit(event, e * f, pos_eta, pos_phi, cell, spread,
                                                 cfg.calo_eta_max)
        c, dep = _clusters(part, ev, ce, cp, e_dep, grid, rng, bands, noise, cfg)
        clusters.append(c)
        deposits.append(dep)

    # element table: tracks, ECal clusters, HCal clusters, then sorted by event (stable)
    n_t = len(t_idx)
    n_ec, n_hc = len(clusters[0]["energy"]), len(clusters[1]["energy"])
    m = n_t + n_ec + n_hc
    feats = np.zeros((m, len(FEATURES)), np.float64)
    el_event = np.concatenate([event[t_idx], clusters[0]["event"], clusters[1]["event"]])
    t_eta, t_phi = eta[t_idx], phi[t_idx]
    feats[:n_t, 0] = TRACK
    feats[:n_t, 1] = t_pt
    feats[:n_t, 2] = t_eta
    feats[:n_t, 3], feats[:n_t, 4] = np.sin(t_phi), np.cos(t_phi)
    feats[:n_t, 5] = t_pt * np.cosh(t_eta)
    feats[:n_t, 6] = pos_eta[t_idx]
    feats[:n_t, 7], feats[:n_t, 8] = np.sin(pos_phi[t_idx]), np.cos(pos_phi[t_idx])
    feats[:n_t, 9] = charge[t_idx]
    feats[:n_t, 10] = res[t_idx]
    start = n_t
    for typ, c in ((ECAL, clusters[0]), (HCAL, clusters[1])):
        s = slice(start, start + len(c["energy"]))
        feats[s, 0] = typ
        feats[s, 1] = c["energy"] / np.cosh(c["eta"])
        feats[s, 2] = feats[s, 6] = c["eta"]
        feats[s, 3] = feats[s, 7] = np.sin(c["phi"])
        feats[s, 4] = feats[s, 8] = np.cos(c["phi"])
        feats[s, 5] = c["energy"]
        feats[s, 11], feats[s, 12], feats[s, 13] = c["sigma_eta"], c["sigma_phi"], c["n_cells"]
        start = s.stop
    track_pid = np.zeros(m, np.int64)
    track_pid[:n_t] = pid[t_idx]

    # assignment: tracked -> its track; else the cluster with the largest true deposit
    assigned = -np.ones(n_p, np.int64)
    assigned[t_idx] = np.arange(n_t)
    part = np.concatenate([deposits[0][0], deposits[1][0]])
    elem = np.concatenate([deposits[0][1] + n_t, deposits[1][1] + n_t + n_ec])
    amount = np.concatenate([deposits[0][2], deposits[1][2]])
    if len(part):
        pe_key, pe_inv = np.unique(part * m + elem, return_inverse=True)
        pe_amount = np.bincount(pe_inv.reshape(-1), weights=amount)
        pe_part, pe_elem = pe_key // m, pe_key % m
        order = np.lexsort((-pe_amount, pe_part))
        first = np.ones(len(order), bool)
        first[1:] = pe_part[order][1:] != pe_part[order][:-1]
        best_part, best_elem = pe_part[order][first], pe_elem[order][first]
        free = assigned[best_part] < 0
        assigned[best_part[free]] = best_elem[free]

    cls = particle_class(pid, charge)
    has = np.flatnonzero(assigned >= 0)
    a = assigned[has]
    sum4 = np.zeros((m, 4))
    for col, val in enumerate((e, px, py, pz)):
        sum4[:, col] = np.bincount(a, weights=val[has], minlength=m)
    # the class of the most energetic particle assigned
    target_class = np.zeros(m, np.int8)
    if len(has):
        order = np.lexsort((-e[has], a))
        first = np.ones(len(order), bool)
        first[1:] = a[order][1:] != a[order][:-1]
        target_class[a[order][first]] = cls[has][order][first]
    s_pt = np.hypot(sum4[:, 1], sum4[:, 2])
    s_eta = np.where(s_pt > 0, np.arcsinh(sum4[:, 3] / np.where(s_pt > 0, s_pt, 1)), 0.0)
    s_phi = np.arctan2(sum4[:, 2], sum4[:, 1])
    target = np.stack([s_pt, s_eta, s_phi, sum4[:, 0]], 1)
    target[target_class == 0] = 0.0

    order = np.argsort(el_event, kind="stable")
    new_index = np.empty(m, np.int64)
    new_index[order] = np.arange(m)
    el_event = el_event[order]
    n_events = int(event.max()) + 1 if n_p else 0
    el_offsets = np.concatenate([[0], np.cumsum(np.bincount(el_event, minlength=n_events))])
    local = -np.ones(n_p, np.int64)
    local[has] = new_index[a] - el_offsets[event[has]]
    return {"element_event": el_event, "features": feats[order].astype(np.float32),
            "target_class": target_class[order], "target": target[order].astype(np.float32),
            "track_pid": track_pid[order].astype(np.int32),
            "particle_event": event,
            "particle": np.stack([pt, eta, phi, e], 1).astype(np.float32),
            "particle_class": cls, "particle_pileup": np.asarray(particles["pileup"], bool),
            "particle_element": local}
