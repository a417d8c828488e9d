"""Rule-based particle flow on the elements of :mod:`hepjax.pf.elements`: Delphes' E-flow logic.

The logic of Delphes 3.4 ``SimpleCalorimeter::FinalizeTower`` (de Favereau et al., JHEP 02 (2014)
057), applied to clusters instead of single towers:

1. every track becomes a charged candidate with the track's pT and vertex direction; as Delphes'
   ``EFlowTrack`` it keeps the true particle type of the track (``track_pid``: electron, muon,
   else charged hadron) — Delphes uses the truth here, and so does this baseline;
2. each track is *linked* to the nearest cluster (in Delta R from its helix impact point
   eta_calo, phi_calo to the cluster centroid) of the calorimeter its particle deposits in
   (electrons: ECal, charged hadrons: HCal, muons: none — Delphes' ``EnergyFraction``, again
   from the true type), if that cluster is within ``link_radius`` + 2 x the cluster's width;
3. in each cluster, the linked tracks' energy E_trk (resolution sigma_trk^2 = sum (res E)^2) is
   subtracted: the neutral excess E_n = max(E - E_trk, 0) becomes a photon (ECal) or neutral
   hadron (HCal) candidate at the cluster centroid if E_n > E_min (ECal 0.5, HCal 1.0 GeV, the
   card's) and E_n / sqrt(sigma_trk^2 + sigma(E)^2) > 2 (the card's significance); otherwise
   the linked tracks are rescaled to the inverse-variance mean of E_trk and E (Delphes'
   behaviour), and the cluster gives no candidate.

Output is element-wise like the targets: for each element a class (``CLASSES`` index, 0 none)
and (pT, eta, phi, E) of its candidate (massless), so the same metrics apply to the baseline and
to MLPF.
"""
from __future__ import annotations

import math

import numpy as np

from hepjax.data import detector as det
from hepjax.pf import elements as el

__all__ = ["reconstruct", "reconstruct_event"]


def reconstruct_event(features: np.ndarray, track_pid: np.ndarray,
                      cfg: el.ElementConfig = el.ElementConfig(), link_radius=(0.05, 0.15)):
    """One event's elements (M, F) -> (class (M,) int8, candidate (M, 4) float32 pT, eta, phi, E)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[1] != len(el.FEATURES):
        raise ValueError(f"reconstruct_event: features must be (M, {len(el.FEATURES)}), got {f.shape}")
    m = len(f)
    typ = f[:, 0].astype(int)
    cls = np.zeros(m, np.int8)
    cand = np.zeros((m, 4))
    tracks = np.flatnonzero(typ == el.TRACK)
    apid = np.abs(np.asarray(track_pid, np.int64))
    t_cls = np.where(apid[tracks] == 11, 4, np.where(apid[tracks] == 13, 5, 1))
    cls[tracks] = t_cls
    t_e = f[tracks, 5].copy()
    t_var = (f[tracks, 10] * t_e) ** 2
    scale = np.ones(len(tracks))
    phi = np.arctan2(f[:, 3], f[:, 4])
    phi_calo = np.arctan2(f[:, 7], f[:, 8])
    d = cfg.detector
    for calo, want, radius, bands, e_min, sig_min in (
            (el.ECAL, 4, link_radius[0], cfg.ecal_resolution, d.ecal_energy_min, d.ecal_significance_min),
            (el.HCAL, 1, link_radius[1], cfg.hcal_resolution, d.hcal_energy_min, d.hcal_significance_min)):
        cl = np.flatnonzero(typ == calo)
        if len(cl) == 0:
            continue
        users = np.flatnonzero(t_cls == want)
        link = -np.ones(len(users), np.int64)
        if len(users):
            deta = f[tracks[users], 6][:, None] - f[cl, 6][None, :]
            dphi = (phi_calo[tracks[users]][:, None] - phi_calo[cl][None, :] + math.pi) % (
                2 * math.pi) - math.pi
            dr = np.hypot(deta, dphi)
            near = np.argmin(dr, axis=1)
            width = np.hypot(f[cl, 11], f[cl, 12])[near]
            ok = dr[np.arange(len(users)), near] < radius + 2 * width
            link[ok] = near[ok]
        linked = link >= 0
        e_trk = np.bincount(link[linked], weights=t_e[users][linked] * scale[users][linked],
                            minlength=len(cl)).astype(np.float64)
        var_trk = np.bincount(link[linked], weights=t_var[users][linked],
                              minlength=len(cl)).astype(np.float64)
        energy = f[cl, 5]
        sigma = det.calo_resolution(energy, f[cl, 2], bands)
        sigma = np.sqrt(sigma ** 2 + (cfg.ecal_noise if calo == el.ECAL else cfg.hcal_noise) ** 2
                        * np.maximum(f[cl, 13], 1))
        neutral = np.maximum(energy - e_trk, 0.0)
        width = np.sqrt(var_trk + sigma ** 2)
        flow = (neutral > e_min) & (neutral / width > sig_min)
        # neutral candidates at the cluster centroid
        idx = cl[flow]
        eta = f[idx, 2]
        cls[idx] = 3 if calo == el.ECAL else 2
        cand[idx] = np.stack([neutral[flow] / np.cosh(eta), eta, phi[idx], neutral[flow]], 1)
        # otherwise rescale the linked tracks to the combined estimate
        w_t = np.divide(1.0, var_trk, out=np.zeros(len(cl)), where=var_trk > 0)
        w_c = 1.0 / sigma ** 2
        resc = ~flow & (e_trk > 0) & (w_t > 0)
        best = np.divide(w_t * e_trk + w_c * energy, w_t + w_c, out=e_trk.copy(), where=resc)
        s = np.divide(best, e_trk, out=np.ones(len(cl)), where=resc)
        scale[users[linked]] *= s[link[linked]]
    t_e = t_e * scale
    eta_t = f[tracks, 2]
    cand[tracks] = np.stack([t_e / np.cosh(eta_t), eta_t, phi[tracks], t_e], 1)
    return cls, cand.astype(np.float32)


def reconstruct(events, cfg: el.ElementConfig = el.ElementConfig()):
    """The baseline on every event of a :class:`hepjax.pf.events.PFEvents`: lists of
    (class, candidate) per event."""
    return [reconstruct_event(events[i]["features"], events[i]["track_pid"], cfg)
            for i in range(len(events))]
