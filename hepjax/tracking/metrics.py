"""Tracking metrics: truth edges, edge efficiency/purity/ROC, track matching (efficiency, fake
and duplicate rates, binned in pT and eta) and the TrackML score. numpy only.

Conventions
-----------
* Hits are indexed 0..N-1 (the row order of the hits/truth arrays); ``hit_particle_id`` (N,)
  is the truth particle of each hit, 0 for a noise hit (TrackML's convention). A "particle" is
  a non-zero id; its hit count ``n(p)`` is the number of its hits among the N given (the
  TrackML truth file's count, equal to the particles file's ``nhits``).
* An edge (s, r) joins hit indices; an edge is *selected* when ``score >= threshold``, the
  convention of :mod:`hepjax.metrics` and of :mod:`hepjax.tracking.building`.
* ``particles`` is a dict with ``particle_id``, ``px``, ``py``, ``pz`` (and ``vx``, ``vy``,
  ``vz`` for vertex ordering), e.g. the ``particles`` part of
  :func:`hepjax.tracking.trackml.load_event`. pT = hypot(px, py), eta = asinh(pz / pT).
  ``pt_min`` selects pT > pt_min (strictly).

Truth edges (:func:`true_edges`)
    The hits of each particle are ordered by their 3-D distance from the particle's production
    vertex (from the origin when no particle table is given; ties by hit index), and each pair
    of hits adjacent in that order is one true edge, directed outwards: a particle with k hits
    has k - 1 true edges. This is the "layerless" truth of the Exa.TrkX pipeline (Ju et al.,
    "Performance of a geometric deep learning pipeline for HL-LHC particle tracking", EPJC 81
    (2021) 876). Two hits of one particle on overlapping modules of one layer are adjacent in
    that order and form a (short) true edge: 1,117 of the 4,230 true edges of the real TrackML
    event in ../shared/data. ``true_edges(..., layer=...)`` is the layer-wise variant, without
    same-layer edges, for graphs built between layers. A graph edge is true when it joins the
    two hits of a true edge, in either direction. :func:`same_particle_labels` gives the looser
    label "both hits belong to the same particle".

Edge metrics (:func:`edge_metrics`)
    ``efficiency`` = true edges found among the selected edges / true edges present in the
    graph (the classifier's efficiency, as HEP.TrkX/Exa.TrkX quote it), ``purity`` = selected
    edges that are true / selected edges; ``graph_efficiency`` = true edges present in the
    graph / all true edges (graph construction), ``graph_purity`` = true graph edges / graph
    edges, ``total_efficiency`` = graph_efficiency x efficiency. With ``pt_min`` the
    efficiencies count only true edges of particles with pT > pt_min; purities are over all
    edges (an edge of a low-pT particle is still a correct edge). Graph edges are counted as
    given (an edge listed in both directions counts twice for the purities); a true edge is
    found when either direction is present. :func:`edge_efficiency_binned` bins the
    efficiencies in the pT or eta of each true edge's particle.

Track matching (:func:`match_tracks`, :func:`track_metrics`)
    A track is a set of hits sharing a track id >= 0 (negative ids: unassigned hits, in no
    track); tracks with fewer than ``min_track_hits`` hits are ignored (as unassigned). Its
    majority particle is the label (noise included) with most of its hits, ties to the smaller
    id (as trackml-library). *Double-majority matching*: track t matches particle p != 0 when
    more than 50 % of t's hits belong to p **and** more than 50 % of p's hits are in t; a track
    then matches at most one particle and a particle at most one track.
    * track efficiency = selected particles matched by a track / selected particles; particles
      are selected by ``min_hits`` (n(p) >= min_hits, default 3), ``pt_min`` and ``eta_max``;
      particles with no hit in the event are never counted;
    * fake rate = tracks matching no particle / tracks (all tracks of >= min_track_hits hits:
      the particle selection does not apply, a track of a low-pT particle is not a fake);
    * duplicate rate: double-majority matching cannot produce duplicates, so duplicates use
      *single-majority* matching, as ACTS does (its truth-match probability > 0.5): a track
      is assigned to its majority particle when that particle (not noise) holds > 50 % of the
      track's hits; a selected particle assigned k >= 1 tracks contributes k - 1 duplicates,
      and duplicate rate = sum (k - 1) / sum k over selected particles (duplicated tracks per
      single-majority-matched track).
    Binned versions (:func:`track_metrics_binned`) put particles in the bin of their own pT or
    eta and tracks in the bin of their majority particle (tracks whose majority is noise or a
    particle missing from the table fall in no bin but count in the totals).

TrackML score (:func:`trackml_score`, :func:`score_event`)
    As defined by Amrouche et al., "The Tracking Machine Learning challenge: accuracy phase"
    (arXiv:1904.06778) and computed by trackml-library's ``score_event``: for each submitted
    track its majority particle (noise included, ties to the smaller id); the track is *good*
    if > 50 % of its hits belong to that particle and > 50 % of the particle's hits are in the
    track; the score is the sum of the truth weights of the good tracks' hits that belong to
    their majority particle, divided by the sum of all truth weights (a perfect submission
    scores 1; noise hits and particles with <= 3 hits carry weight 0 in TrackML truth).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple

import numpy as np

from hepjax import metrics as _clf_metrics

__all__ = [
    "TrueEdges", "true_edges", "edge_labels", "same_particle_labels", "edge_metrics",
    "edge_efficiency_binned", "edge_roc",
    "particle_kinematics", "TrackMatching", "match_tracks", "track_metrics",
    "track_metrics_binned", "trackml_score", "score_event",
]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _ids(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or (a != np.round(a)).any():
            raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.size and a.dtype != np.uint64 and (a < 0).any():
        raise ValueError(f"{name} must be >= 0 (0 = noise); got {int(a[a < 0][0])}")
    return a.astype(np.uint64)


def _track_ids(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all() or \
                (a != np.round(a)).any():
            raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _same_len(**arrays) -> None:
    (n0, a0), *rest = arrays.items()
    for n, a in rest:
        if len(a) != len(a0):
            raise ValueError(f"length mismatch: {n0} has {len(a0)} entries, {n} has {len(a)}")


def _lookup(table_ids: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    """Row of each of ``ids`` in ``table_ids`` (unique); ValueError naming one that is absent."""
    order = np.argsort(table_ids, kind="stable")
    if len(table_ids) == 0:
        if len(ids):
            raise ValueError(f"{len(ids)} {what} ids not in an empty table, e.g. {ids[0]}")
        return np.zeros(0, np.int64)
    pos = np.clip(np.searchsorted(table_ids[order], ids), 0, len(table_ids) - 1)
    rows = order[pos]
    bad = table_ids[rows] != ids
    if bad.any():
        raise ValueError(f"{int(bad.sum())} {what} ids not in the particles table, "
                         f"e.g. {int(ids[bad][0])}")
    return rows


def _pair_key(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    return np.minimum(a, b) * np.int64(max(n, 1)) + np.maximum(a, b)


def _ratio(num, den):
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def _binomial_err(num, den):
    e = _ratio(num, den)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(e * (1 - e) / np.asarray(den, np.float64))


def particle_kinematics(particles: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``pt`` = hypot(px, py) [GeV], ``eta`` = asinh(pz / pt), ``phi`` = atan2(py, px), float64."""
    px, py, pz = (np.asarray(particles[c], np.float64) for c in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(pz / pt)
    return {"pt": pt, "eta": eta, "phi": np.arctan2(py, px)}


# --------------------------------------------------------------------------------------------
# Edges
# --------------------------------------------------------------------------------------------


class TrueEdges(NamedTuple):
    """True edges of an event: hit indices ``senders`` -> ``receivers`` (the receiver farther
    from the production vertex), the ``particle_id`` of each, and ``num_hits``."""
    senders: np.ndarray
    receivers: np.ndarray
    particle_id: np.ndarray
    num_hits: int


def true_edges(hit_particle_id, x, y, z, particles: Mapping[str, np.ndarray] | None = None,
               layer=None) -> TrueEdges:
    """Consecutive hits of each particle, ordered by distance from its production vertex.

    Args:
      hit_particle_id: (N,) truth particle id per hit, 0 = noise (noise makes no edges).
      x, y, z: (N,) hit positions [mm] (measured or true).
      particles: optional table with ``particle_id``, ``vx``, ``vy``, ``vz``: distances are
        from each particle's production vertex; without it, from the origin.
      layer: optional (N,) layer per hit (e.g. ``trackml.global_layer``): the layer-wise
        variant. Runs of consecutive hits of one particle on one layer (overlapping modules)
        form a group, and every hit of a group is joined to every hit of the particle's next
        group: no same-layer edges, and both hits of an overlap pair connect to the
        neighbouring layers. (The layer-pair graphs of HEP.TrkX, Farrell et al., "Novel deep
        learning methods for track reconstruction", arXiv:1810.06111, kept only one hit per
        particle and layer instead.) A particle that comes back to a layer (a looper) starts a
        new group there.

    Returns:
      :class:`TrueEdges`, sorted by particle id then distance: without ``layer`` the sum over
      particles of n(p) - 1 edges; with it the sum of products of consecutive group sizes.
    """
    pid = _ids("hit_particle_id", hit_particle_id)
    pos = np.stack([np.asarray(c, np.float64) for c in (x, y, z)], axis=-1)
    _same_len(hit_particle_id=pid, x=pos)
    hit = np.flatnonzero(pid != 0)
    p = pid[hit]
    if particles is not None:
        table = _ids("particles['particle_id']", particles["particle_id"])
        rows = _lookup(table, p, "hit particle")
        vtx = np.stack([np.asarray(particles[c], np.float64)[rows] for c in ("vx", "vy", "vz")],
                       -1)
    else:
        vtx = np.zeros((len(hit), 3))
    dist = np.linalg.norm(pos[hit] - vtx, axis=-1)
    order = np.lexsort((hit, dist, p))
    hit, p = hit[order], p[order]
    same = p[1:] == p[:-1]
    if layer is None:
        return TrueEdges(hit[:-1][same].astype(np.int64), hit[1:][same].astype(np.int64),
                         p[1:][same], len(pid))
    lay = np.asarray(layer)
    if lay.shape != pid.shape:
        raise ValueError(f"layer has shape {lay.shape}, expected {pid.shape}")
    lay = lay[hit]
    new_group = np.r_[True, ~same | (lay[1:] != lay[:-1])]
    g_start = np.flatnonzero(new_group)
    g_len = np.diff(np.r_[g_start, len(hit)])
    g_pid = p[g_start]
    link = np.flatnonzero(g_pid[1:] == g_pid[:-1])          # group k -> group k + 1
    na, nb = g_len[link], g_len[link + 1]
    n_pairs = na * nb
    base = np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
    i = np.arange(int(n_pairs.sum())) - base                   # pair index within a link
    nb_rep = np.repeat(nb, n_pairs)
    send = np.repeat(g_start[link], n_pairs) + i // nb_rep
    recv = np.repeat(g_start[link + 1], n_pairs) + i % nb_rep
    return TrueEdges(hit[send].astype(np.int64), hit[recv].astype(np.int64), p[send], len(pid))


def _edges(senders, receivers, num_hits, edge_mask=None):
    s = np.asarray(senders)
    r = np.asarray(receivers)
    if s.ndim != 1 or r.ndim != 1 or len(s) != len(r):
        raise ValueError(f"senders and receivers must be 1-D of one length; got shapes "
                         f"{s.shape} and {r.shape}")
    keep = np.ones(len(s), bool) if edge_mask is None else np.asarray(edge_mask, bool)
    if keep.shape != s.shape:
        raise ValueError(f"edge_mask has shape {keep.shape}, senders {s.shape}")
    for name, a in (("senders", s), ("receivers", r)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be integer hit indices, got dtype {a.dtype}")
        bad = keep & ((a < 0) | (a >= num_hits))
        if bad.any():
            raise ValueError(f"{name} out of range [0, {num_hits}) in {int(bad.sum())} edges, "
                             f"e.g. edge {int(np.flatnonzero(bad)[0])}: "
                             f"{int(a[np.flatnonzero(bad)[0]])} (mask padding with edge_mask)")
    return s.astype(np.int64), r.astype(np.int64), keep


def edge_labels(senders, receivers, truth: TrueEdges) -> np.ndarray:
    """True (bool) for each edge that joins the two hits of a true edge, in either direction."""
    s, r, _ = _edges(senders, receivers, truth.num_hits)
    return np.isin(_pair_key(s, r, truth.num_hits),
                   _pair_key(truth.senders, truth.receivers, truth.num_hits))


def same_particle_labels(senders, receivers, hit_particle_id) -> np.ndarray:
    """True (bool) for each edge whose two hits belong to the same particle (not noise)."""
    pid = _ids("hit_particle_id", hit_particle_id)
    s, r, _ = _edges(senders, receivers, len(pid))
    return (pid[s] == pid[r]) & (pid[s] != 0)


def _scores(scores, n):
    sc = np.asarray(scores, np.float64)
    if sc.shape != (n,):
        raise ValueError(f"scores has shape {sc.shape}, expected ({n},) like senders")
    return sc


def edge_metrics(senders, receivers, scores, truth: TrueEdges, threshold: float = 0.5, *,
                 particles: Mapping[str, np.ndarray] | None = None, pt_min: float | None = None,
                 edge_mask=None) -> dict[str, float]:
    """Edge efficiency and purity of a scored graph at ``threshold`` (module docstring).

    Args:
      senders, receivers: (E,) hit indices of the graph's edges.
      scores: (E,) edge scores; an edge is selected when ``score >= threshold``.
      truth: :func:`true_edges` of the event.
      particles, pt_min: efficiencies count only true edges of particles with pT > pt_min.
      edge_mask: (E,) bool, False for padding edges (ignored entirely).

    Returns:
      dict with ``efficiency``, ``purity``, ``graph_efficiency``, ``graph_purity``,
      ``total_efficiency`` (nan where a denominator is 0) and the counts ``n_true`` (target
      true edges), ``n_edges``, ``n_true_edges`` (graph edges labelled true), ``n_selected``,
      ``n_true_selected``, ``n_true_in_graph`` and ``n_true_found`` (target true edges present
      in the graph / among the selected edges).
    """
    n = truth.num_hits
    s, r, keep = _edges(senders, receivers, n, edge_mask)
    sc = _scores(scores, len(s))
    if np.isnan(sc[keep]).any():
        raise ValueError(f"scores has NaN in {int(np.isnan(sc[keep]).sum())} edges")
    s, r, sc = s[keep], r[keep], sc[keep]
    key = _pair_key(s, r, n)
    tkey = _pair_key(truth.senders, truth.receivers, n)
    label = np.isin(key, tkey)
    sel = sc >= threshold
    target = tkey
    if pt_min is not None:
        if particles is None:
            raise ValueError("pt_min needs the particles table (particle_id, px, py)")
        rows = _lookup(_ids("particles['particle_id']", particles["particle_id"]),
                       truth.particle_id, "true-edge particle")
        target = tkey[particle_kinematics(particles)["pt"][rows] > pt_min]
    in_graph = np.isin(target, key)
    found = np.isin(target, key[sel])
    out = {
        "n_true": int(len(target)), "n_edges": int(len(key)), "n_true_edges": int(label.sum()),
        "n_selected": int(sel.sum()), "n_true_selected": int((label & sel).sum()),
        "n_true_in_graph": int(in_graph.sum()), "n_true_found": int(found.sum()),
    }
    out.update(
        efficiency=_ratio(out["n_true_found"], out["n_true_in_graph"]),
        purity=_ratio(out["n_true_selected"], out["n_selected"]),
        graph_efficiency=_ratio(out["n_true_in_graph"], out["n_true"]),
        graph_purity=_ratio(out["n_true_edges"], out["n_edges"]),
        total_efficiency=_ratio(out["n_true_found"], out["n_true"]),
    )
    return out


def edge_efficiency_binned(senders, receivers, scores, truth: TrueEdges,
                           particles: Mapping[str, np.ndarray], var: str, bins,
                           threshold: float = 0.5, *, pt_min: float | None = None,
                           edge_mask=None) -> dict[str, np.ndarray]:
    """Edge efficiencies of :func:`edge_metrics` in bins of the true edges' particle ``var``
    ("pt" [GeV], "eta", "phi"; the particle's momentum, not the hits').

    Returns:
      dict of arrays over the bins: ``edges``, ``n_true``, ``n_true_in_graph``,
      ``n_true_found``, ``efficiency`` (found / in graph), ``graph_efficiency`` (in graph /
      true), ``total_efficiency`` (found / true). Purity has no particle to bin by (a false
      edge belongs to none) and is left to :func:`edge_metrics`.
    """
    if var not in ("pt", "eta", "phi"):
        raise ValueError(f"var must be 'pt', 'eta' or 'phi', got {var!r}")
    edges = np.asarray(bins, np.float64)
    if edges.ndim != 1 or len(edges) < 2 or (np.diff(edges) <= 0).any():
        raise ValueError(f"bins must be increasing edges, got {edges}")
    n = truth.num_hits
    s, r, keep = _edges(senders, receivers, n, edge_mask)
    sc = _scores(scores, len(s))
    if np.isnan(sc[keep]).any():
        raise ValueError(f"scores has NaN in {int(np.isnan(sc[keep]).sum())} edges")
    key = _pair_key(s[keep], r[keep], n)
    sel = sc[keep] >= threshold
    tkey = _pair_key(truth.senders, truth.receivers, n)
    rows = _lookup(_ids("particles['particle_id']", particles["particle_id"]),
                   truth.particle_id, "true-edge particle")
    kin = particle_kinematics(particles)
    value = kin[var][rows]
    target = np.ones(len(tkey), bool) if pt_min is None else kin["pt"][rows] > pt_min
    nb = len(edges) - 1
    inside = target & (value >= edges[0]) & (value <= edges[-1])
    idx = np.clip(np.searchsorted(edges, value[inside], side="right") - 1, 0, nb - 1)
    n_true = np.bincount(idx, minlength=nb)
    n_in = np.bincount(idx, weights=np.isin(tkey[inside], key), minlength=nb).astype(np.int64)
    n_found = np.bincount(idx, weights=np.isin(tkey[inside], key[sel]),
                          minlength=nb).astype(np.int64)
    return {"edges": edges, "n_true": n_true, "n_true_in_graph": n_in, "n_true_found": n_found,
            "efficiency": _ratio(n_found, n_in), "graph_efficiency": _ratio(n_in, n_true),
            "total_efficiency": _ratio(n_found, n_true)}


def edge_roc(senders, receivers, scores, truth: TrueEdges, edge_mask=None):
    """ROC of the edge scores against :func:`edge_labels` via :func:`hepjax.metrics.roc_curve`.

    Returns ``(fpr, tpr, thresholds, auc)``: tpr = fraction of the graph's true edges selected
    at ``score >= threshold``, fpr = fraction of its false edges selected.
    """
    s, r, keep = _edges(senders, receivers, truth.num_hits, edge_mask)
    sc = _scores(scores, len(s))[keep]
    labels = edge_labels(s[keep], r[keep], truth)
    fpr, tpr, thr = _clf_metrics.roc_curve(labels, sc)
    return fpr, tpr, thr, float(np.trapezoid(tpr, fpr))


# --------------------------------------------------------------------------------------------
# Track matching
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrackMatching:
    """Per-track and per-particle matching tables (module docstring).

    Tracks (T,): ``track_id``, ``track_nhits``, ``track_major_particle`` (uint64, may be 0 =
    noise), ``track_major_nhits``, ``track_major_particle_nhits`` (n(p) of the majority
    particle), ``track_matched`` (double majority, non-noise), ``track_single_majority``
    (> 50 % of the track's hits from one non-noise particle).
    Particles (P,), every non-zero id with a hit, ascending: ``particle_id``,
    ``particle_nhits``, ``particle_matched`` (double majority), ``particle_n_majority_tracks``
    (tracks single-majority assigned to it).
    """
    track_id: np.ndarray
    track_nhits: np.ndarray
    track_major_particle: np.ndarray
    track_major_nhits: np.ndarray
    track_major_particle_nhits: np.ndarray
    track_matched: np.ndarray
    track_single_majority: np.ndarray
    particle_id: np.ndarray
    particle_nhits: np.ndarray
    particle_matched: np.ndarray
    particle_n_majority_tracks: np.ndarray


def _majority(t_idx: np.ndarray, p_idx: np.ndarray, n_tracks: int, n_labels: int,
              weights: np.ndarray | None = None):
    """For each track (0..n_tracks-1 in ``t_idx``): label index with most hits (ties: smaller
    label index), its hit count and the summed ``weights`` of those hits."""
    major = np.zeros(n_tracks, np.int64)
    major_n = np.zeros(n_tracks, np.int64)
    major_w = np.zeros(n_tracks)
    if len(t_idx) == 0:
        return major, major_n, major_w
    pair = t_idx.astype(np.int64) * n_labels + p_idx
    upair, inv, cnt = np.unique(pair, return_inverse=True, return_counts=True)
    wsum = np.bincount(inv, weights=weights, minlength=len(upair)) if weights is not None \
        else None
    pt, pp = upair // n_labels, upair % n_labels
    order = np.lexsort((pp, -cnt, pt))                   # per track: most hits, then smaller id
    first = order[np.r_[True, pt[order][1:] != pt[order][:-1]]]
    major[pt[first]] = pp[first]
    major_n[pt[first]] = cnt[first]
    if wsum is not None:
        major_w[pt[first]] = wsum[first]
    return major, major_n, major_w


def match_tracks(track_id, hit_particle_id, min_track_hits: int = 1) -> TrackMatching:
    """Match tracks to particles (module docstring).

    Args:
      track_id: (N,) integer track id per hit; negative = unassigned.
      hit_particle_id: (N,) truth particle id per hit, 0 = noise.
      min_track_hits: tracks with fewer hits are ignored (their hits count as unassigned).
    """
    tid = _track_ids("track_id", track_id)
    pid = _ids("hit_particle_id", hit_particle_id)
    _same_len(track_id=tid, hit_particle_id=pid)
    labels, p_idx, p_n = np.unique(pid, return_inverse=True, return_counts=True)
    p_idx = p_idx.reshape(-1)
    in_track = tid >= 0
    tracks, t_idx, t_n = np.unique(tid[in_track], return_inverse=True, return_counts=True)
    t_idx = t_idx.reshape(-1)
    keep_track = t_n >= min_track_hits
    hit_keep = keep_track[t_idx]
    remap = np.cumsum(keep_track) - 1
    tracks, t_n = tracks[keep_track], t_n[keep_track]
    t_idx = remap[t_idx[hit_keep]]
    pi = p_idx[in_track][hit_keep]
    major, major_n, _ = _majority(t_idx, pi, len(tracks), len(labels))
    major_pid = labels[major] if len(tracks) else np.zeros(0, np.uint64)
    major_pn = p_n[major] if len(tracks) else np.zeros(0, np.int64)
    real = major_pid != 0
    single = real & (2 * major_n > t_n)
    matched = single & (2 * major_n > major_pn)
    # particles: labels without noise
    nz = labels != 0
    part_matched = np.zeros(len(labels), bool)
    part_matched[major[matched]] = True
    n_major = np.bincount(major[single], minlength=len(labels))
    return TrackMatching(
        track_id=tracks, track_nhits=t_n, track_major_particle=major_pid,
        track_major_nhits=major_n, track_major_particle_nhits=major_pn, track_matched=matched,
        track_single_majority=single,
        particle_id=labels[nz], particle_nhits=p_n[nz], particle_matched=part_matched[nz],
        particle_n_majority_tracks=n_major[nz])


def _tables(track_id, hit_particle_id, particles, pt_min, eta_max, min_hits, min_track_hits,
            var=None):
    m = match_tracks(track_id, hit_particle_id, min_track_hits=min_track_hits)
    sel = m.particle_nhits >= min_hits
    pvar = tvar = None
    if particles is not None:
        table_ids = _ids("particles['particle_id']", particles["particle_id"])
        rows = _lookup(table_ids, m.particle_id, "hit particle")
        kin = particle_kinematics(particles)
        if pt_min is not None:
            sel &= kin["pt"][rows] > pt_min
        if eta_max is not None:
            sel &= np.abs(kin["eta"][rows]) < eta_max
        if var is not None:
            pvar = kin[var][rows]
            # tracks: the value of their majority particle (nan for noise / unknown)
            order = np.argsort(table_ids, kind="stable")
            pos = np.clip(np.searchsorted(table_ids[order], m.track_major_particle), 0,
                          max(len(table_ids) - 1, 0))
            known = (table_ids[order][pos] == m.track_major_particle) if len(table_ids) else \
                np.zeros(len(m.track_id), bool)
            tvar = np.where(known & (m.track_major_particle != 0), kin[var][order][pos], np.nan)
    elif pt_min is not None or eta_max is not None or var is not None:
        raise ValueError("pt_min, eta_max and binning need the particles table "
                         "(particle_id, px, py, pz)")
    # duplicates: single-majority tracks assigned to selected particles
    k = np.where(sel, m.particle_n_majority_tracks, 0)
    return m, sel, k, pvar, tvar


def track_metrics(track_id, hit_particle_id, particles: Mapping[str, np.ndarray] | None = None,
                  *, pt_min: float | None = None, eta_max: float | None = None,
                  min_hits: int = 3, min_track_hits: int = 3) -> dict[str, float]:
    """Track efficiency (double majority), fake and duplicate rates (module docstring).

    Args:
      track_id: (N,) track id per hit (negative = unassigned), aligned with hit_particle_id.
      hit_particle_id: (N,) truth particle id per hit, 0 = noise.
      particles: table with particle_id, px, py, pz; needed for ``pt_min`` / ``eta_max``.
      pt_min: select particles with pT > pt_min [GeV].
      eta_max: select particles with |eta| < eta_max.
      min_hits: select particles with at least this many hits (default 3).
      min_track_hits: tracks with fewer hits are not tracks (default 3).

    Returns:
      dict: ``efficiency``, ``fake_rate``, ``duplicate_rate`` and the counts ``n_particles``
      (selected), ``n_matched``, ``n_tracks``, ``n_fake``, ``n_majority_tracks`` (sum k),
      ``n_duplicates`` (sum k - 1).
    """
    m, sel, k, _, _ = _tables(track_id, hit_particle_id, particles, pt_min, eta_max,
                                 min_hits, min_track_hits)
    n_sel, n_match = int(sel.sum()), int((sel & m.particle_matched).sum())
    n_tracks, n_fake = int(len(m.track_id)), int((~m.track_matched).sum())
    n_k, n_dup = int(k.sum()), int(np.maximum(k - 1, 0).sum())
    return {"efficiency": _ratio(n_match, n_sel), "fake_rate": _ratio(n_fake, n_tracks),
            "duplicate_rate": _ratio(n_dup, n_k), "n_particles": n_sel, "n_matched": n_match,
            "n_tracks": n_tracks, "n_fake": n_fake, "n_majority_tracks": n_k,
            "n_duplicates": n_dup}


def track_metrics_binned(track_id, hit_particle_id, particles: Mapping[str, np.ndarray],
                         var: str, bins, *, pt_min: float | None = None,
                         eta_max: float | None = None, min_hits: int = 3,
                         min_track_hits: int = 3) -> dict[str, np.ndarray]:
    """:func:`track_metrics` in bins of the particles' ``var`` ("pt" [GeV], "eta" or "phi").

    Particles fall in the bin of their own value, tracks in the bin of their majority
    particle's (values outside the bins, and tracks whose majority is noise, in none). The
    selection cuts still apply (e.g. efficiency vs eta for pT > 1 GeV).

    Returns:
      dict of arrays over the B bins: ``edges`` (B+1,), ``efficiency`` and
      ``efficiency_err`` (binomial), ``n_particles``, ``n_matched``, ``fake_rate``,
      ``n_tracks``, ``n_fake``, ``duplicate_rate``, ``n_majority_tracks``, ``n_duplicates``.
    """
    if var not in ("pt", "eta", "phi"):
        raise ValueError(f"var must be 'pt', 'eta' or 'phi', got {var!r}")
    edges = np.asarray(bins, np.float64)
    if edges.ndim != 1 or len(edges) < 2 or (np.diff(edges) <= 0).any():
        raise ValueError(f"bins must be increasing edges, got {edges}")
    m, sel, k, pvar, tvar = _tables(track_id, hit_particle_id, particles, pt_min,
                                                  eta_max, min_hits, min_track_hits, var=var)
    nb = len(edges) - 1

    def binned(values, mask, weights=None):
        v = values[mask]
        w = None if weights is None else weights[mask]
        inside = (v >= edges[0]) & (v <= edges[-1])
        idx = np.clip(np.searchsorted(edges, v[inside], side="right") - 1, 0, nb - 1)
        return np.bincount(idx, weights=None if w is None else w[inside], minlength=nb)

    n_p = binned(pvar, sel)
    n_m = binned(pvar, sel & m.particle_matched)
    n_t = binned(tvar, np.ones(len(tvar), bool))
    n_f = binned(tvar, ~m.track_matched)
    # duplicates per bin of the particle value (each selected particle carries k and k - 1)
    n_k = binned(pvar, sel, k.astype(np.float64))
    n_d = binned(pvar, sel, np.maximum(k - 1, 0).astype(np.float64))
    return {"edges": edges, "efficiency": _ratio(n_m, n_p),
            "efficiency_err": _binomial_err(n_m, n_p), "n_particles": n_p, "n_matched": n_m,
            "fake_rate": _ratio(n_f, n_t), "n_tracks": n_t, "n_fake": n_f,
            "duplicate_rate": _ratio(n_d, n_k), "n_majority_tracks": n_k.astype(np.int64),
            "n_duplicates": n_d.astype(np.int64)}


# --------------------------------------------------------------------------------------------
# TrackML score
# --------------------------------------------------------------------------------------------


def trackml_score(truth_hit_id, truth_particle_id, truth_weight, hit_id, track_id,
                  normalize: bool = True) -> float:
    """The TrackML event score (Amrouche et al., arXiv:1904.06778; trackml-library
    ``score_event``), see the module docstring.

    Args:
      truth_hit_id, truth_particle_id, truth_weight: (N,) the truth file's columns.
      hit_id, track_id: (N,) the submission, in any order; every truth hit exactly once,
        track ids >= 0 (each distinct id is one track; give unassigned hits singleton ids).
      normalize: divide by the sum of the truth weights (trackml-library does; False gives the
        raw weight sum of the good hits).

    Returns:
      The score in [0, 1] (with ``normalize``).
    """
    th = _track_ids("truth_hit_id", truth_hit_id)
    tp = _ids("truth_particle_id", truth_particle_id)
    w = np.asarray(truth_weight, np.float64)
    sh = _track_ids("hit_id", hit_id)
    st = _track_ids("track_id", track_id)
    _same_len(truth_hit_id=th, truth_particle_id=tp, truth_weight=w)
    _same_len(hit_id=sh, track_id=st)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("truth_weight must be finite and >= 0")
    if (st < 0).any():
        raise ValueError(f"{int((st < 0).sum())} negative track ids in the submission: every "
                         "hit needs a track id >= 0 (building.fill_unassigned gives singletons)")
    so = np.argsort(sh, kind="stable")
    if (np.diff(sh[so]) == 0).any():
        raise ValueError("duplicated hit ids in the submission, e.g. "
                         f"{int(sh[so][1:][np.diff(sh[so]) == 0][0])}")
    if (np.diff(np.sort(th)) == 0).any():
        raise ValueError("duplicated hit ids in the truth")
    pos = np.clip(np.searchsorted(sh[so], th), 0, max(len(sh) - 1, 0))
    found = (sh[so][pos] == th) if len(sh) else np.zeros(len(th), bool)
    if not found.all():
        raise ValueError(f"the submission lacks {int((~found).sum())} of {len(th)} truth hits, "
                         f"e.g. hit_id {int(th[~found][0])}")
    if len(sh) != len(th):
        raise ValueError(f"the submission has {len(sh) - len(th)} hit ids not in the truth")
    trk = st[so][pos]                                   # track of each truth row
    total = float(w.sum())
    if normalize and total <= 0:
        raise ValueError("the truth weights sum to 0: the score is undefined")
    labels, p_idx, p_n = np.unique(tp, return_inverse=True, return_counts=True)
    tracks, t_idx, t_n = np.unique(trk, return_inverse=True, return_counts=True)
    major, major_n, major_w = _majority(t_idx.reshape(-1), p_idx.reshape(-1), len(tracks),
                                        len(labels), weights=w)
    good = (2 * major_n > t_n) & (2 * major_n > p_n[major])
    score = float(major_w[good].sum())
    return score / total if normalize else score


def score_event(truth: Mapping[str, np.ndarray], submission: Mapping[str, np.ndarray],
                normalize: bool = True) -> float:
    """:func:`trackml_score` from column dicts: ``truth`` with hit_id, particle_id, weight (the
    truth part of ``load_event``), ``submission`` with hit_id, track_id."""
    return trackml_score(truth["hit_id"], truth["particle_id"], truth["weight"],
                         submission["hit_id"], submission["track_id"], normalize=normalize)
