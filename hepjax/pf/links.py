"""Track-cluster links from the element features alone (no generator truth): physics inputs
and regression references for MLPF (``hepjax.models.mlpf`` with ``physics_inputs=True``).

The rule-based baseline (:mod:`hepjax.pf.baseline`) links each track to the nearest cluster of
the calorimeter its particle deposits in, which it knows from the *true* particle type. Here
no truth is used: every track is linked under both hypotheses,

* hadron: to the nearest HCal cluster within ``link_radius[1]`` + 2 x the cluster width
  (Delta R from the track's calorimeter-surface impact eta_calo, phi_calo to the centroid),
* electron: to the nearest ECal cluster within ``link_radius[0]`` + 2 x the cluster width,

(the baseline's radii and distance), and the linked energies are summed per cluster.
``LINK_FEATURES`` (one row per element, float32, 0 where not applicable):

* ``hcal_track_e``: HCal cluster: sum of the energies of the tracks linked to it; track: the
  same sum over the tracks linked to *its* HCal cluster (itself included; 0 if unlinked);
* ``hcal_cluster_e``: track: energy of its linked HCal cluster; HCal cluster: its energy;
* ``ecal_track_e``, ``ecal_cluster_e``: the same for the ECal links;
* ``n_tracks``: cluster: number of tracks linked to it; track: of its HCal cluster;
* ``sigma``: the element's own energy resolution (track: relative pT resolution x E; cluster:
  the card's stochastic / constant terms and the cell noise x sqrt(cells), as the baseline);
* ``ref_e``, ``ref_sigma``: the regression *reference* energy and its resolution: track: its
  own energy and ``sigma``; HCal cluster: the neutral excess max(E - hcal_track_e, 0) and
  sqrt(sigma^2 + sum over linked tracks of their sigma^2) (the baseline's E-flow arithmetic);
  ECal cluster: its energy and ``sigma`` (tracks of hadrons near photons would be subtracted
  wrongly, so the ECal links are only inputs).
"""
from __future__ import annotations

import math

import numpy as np

from hepjax.data import detector as det
from hepjax.pf import elements as el

__all__ = ["LINK_FEATURES", "link_features", "nearest_cluster", "cluster_sigma"]

LINK_FEATURES = ("hcal_track_e", "hcal_cluster_e", "ecal_track_e", "ecal_cluster_e", "n_tracks",
                 "sigma", "ref_e", "ref_sigma")


def nearest_cluster(f: np.ndarray, tracks: np.ndarray, clusters: np.ndarray,
                    radius: float) -> np.ndarray:
    """For each track row (indices ``tracks`` into the features f (M, F)): the index into
    ``clusters`` of the nearest cluster in Delta R(track at the calorimeter, centroid), or -1 if
    that cluster is farther than radius + 2 x hypot(sigma_eta, sigma_phi) of the cluster."""
    link = -np.ones(len(tracks), np.int64)
    if len(tracks) == 0 or len(clusters) == 0:
        return link
    phi_calo = np.arctan2(f[:, 7], f[:, 8])
    deta = f[tracks, 6][:, None] - f[clusters, 6][None, :]
    dphi = phi_calo[tracks][:, None] - phi_calo[clusters][None, :]
    dphi = (dphi + math.pi) % (2 * math.pi) - math.pi
    dr = np.hypot(deta, dphi)
    near = np.argmin(dr, axis=1)
    width = np.hypot(f[clusters, 11], f[clusters, 12])[near]
    ok = dr[np.arange(len(tracks)), near] < radius + 2 * width
    link[ok] = near[ok]
    return link


def cluster_sigma(f: np.ndarray, clusters: np.ndarray, calo: int,
                  cfg: el.ElementConfig = el.ElementConfig()) -> np.ndarray:
    """Energy resolution (GeV) of clusters of one calorimeter: the card's terms at the cluster
    energy and the cell noise x sqrt(number of cells)."""
    bands, noise = ((cfg.ecal_resolution, cfg.ecal_noise) if calo == el.ECAL
                    else (cfg.hcal_resolution, cfg.hcal_noise))
    s = det.calo_resolution(f[clusters, 5], f[clusters, 2], bands)
    return np.sqrt(s ** 2 + noise ** 2 * np.maximum(f[clusters, 13], 1))


def link_features(features: np.ndarray, cfg: el.ElementConfig = el.ElementConfig(),
                  link_radius=(0.05, 0.15)) -> np.ndarray:
    """One event's elements (M, len(FEATURES)) -> (M, len(LINK_FEATURES)) float32 (see the
    module docstring); uses nothing but the features."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[1] != len(el.FEATURES):
        raise ValueError(f"link_features: features must be (M, {len(el.FEATURES)}), got {f.shape}")
    m = len(f)
    out = np.zeros((m, len(LINK_FEATURES)))
    typ = f[:, 0].astype(int)
    tracks = np.flatnonzero(typ == el.TRACK)
    t_e = f[tracks, 5]
    t_sigma = f[tracks, 10] * t_e
    out[tracks, 5] = t_sigma
    out[tracks, 6] = t_e
    out[tracks, 7] = t_sigma
    for calo, radius, c_track, c_cluster in ((el.ECAL, link_radius[0], 2, 3),
                                            (el.HCAL, link_radius[1], 0, 1)):
        cl = np.flatnonzero(typ == calo)
        if len(cl) == 0:
            continue
        link = nearest_cluster(f, tracks, cl, radius)
        ok = link >= 0
        e_trk = np.bincount(link[ok], weights=t_e[ok], minlength=len(cl))
        var_trk = np.bincount(link[ok], weights=t_sigma[ok] ** 2, minlength=len(cl))
        n_trk = np.bincount(link[ok], minlength=len(cl))
        sigma = cluster_sigma(f, cl, calo, cfg)
        out[cl, c_track] = e_trk
        out[cl, c_cluster] = f[cl, 5]
        out[cl, 4] = n_trk
        out[cl, 5] = sigma
        out[tracks[ok], c_track] = e_trk[link[ok]]
        out[tracks[ok], c_cluster] = f[cl[link[ok]], 5]
        if calo == el.HCAL:
            out[tracks[ok], 4] = n_trk[link[ok]]
            out[cl, 6] = np.maximum(f[cl, 5] - e_trk, 0.0)
            out[cl, 7] = np.sqrt(sigma ** 2 + var_trk)
        else:
            out[cl, 6] = f[cl, 5]
            out[cl, 7] = sigma
    return out.astype(np.float32)
