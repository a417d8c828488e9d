"""Track building: track candidates from a graph of hits with scored edges. numpy only.

The last stage of the Exa.TrkX pipeline (Ju et al., "Performance of a geometric deep learning
pipeline for HL-LHC particle tracking", EPJC 81 (2021) 876; the HEP.TrkX interaction network,
Ju et al., arXiv:2003.11603): keep the edges whose classifier score passes a threshold and read
tracks off the remaining graph.

* :func:`connected_components` / ``build_tracks(..., method="components")``: each connected
  component of the selected edges is one track candidate. The components come from a
  vectorised union-find (hook-and-compress, as in Shiloach and Vishkin, "An O(log n) parallel
  connectivity algorithm", J. Algorithms 3 (1982) 57): every round hooks the root of each edge's
  larger end onto the smaller root (``np.minimum.at``; parents only ever point to smaller
  indices, so no cycle forms), then compresses every path by pointer jumping. A round at least
  halves the number of roots of every component still split, so there are O(log N) rounds of
  O(E + N) array work, and each component's root -- its label -- is its smallest hit index.
* :func:`walkthrough` / ``method="walkthrough"``: a greedy walk in the spirit of the
  walk-through that follows connected components in the Exa.TrkX / ATLAS ITk GNN pipelines: from
  the innermost unused hits (no incoming selected edge; ``order``, e.g. the hit radius, orients
  the edges outwards) follow the highest-score outgoing edge to a hit not yet used, until none
  is left. Branching components (shared or merged tracks) are split where plain components
  would merge them. A Python loop over hits: O(E log E + N + E).

Track ids: candidates get ids 0..T-1 in order of their first (smallest-index) hit. A hit is
*unassigned* when it has no selected edge or its candidate has fewer than ``min_hits`` hits;
``unassigned="singleton"`` (default) gives each such hit its own id T, T+1, ... (the TrackML
submission needs a track id >= 0 for every hit), ``unassigned="minus_one"`` marks it -1.
An edge is selected when ``score >= threshold`` (the convention of :mod:`hepjax.metrics`),
and ``edge_mask`` (False for padding edges of a static edge budget) removes edges entirely.
"""
from __future__ import annotations

import numpy as np

__all__ = ["connected_components", "walkthrough", "build_tracks", "fill_unassigned",
           "make_submission"]


def _selected_edges(num_hits: int, senders, receivers, scores=None, threshold: float = 0.5,
                    edge_mask=None):
    if int(num_hits) != num_hits or num_hits < 0:
        raise ValueError(f"num_hits must be a non-negative integer, got {num_hits}")
    s = np.asarray(senders)
    r = np.asarray(receivers)
    if s.ndim != 1 or s.shape != r.shape:
        raise ValueError(f"senders and receivers must be 1-D of one length; got shapes {s.shape} "
                         f"and {r.shape}")
    keep = np.ones(s.shape, bool) if edge_mask is None else np.asarray(edge_mask, bool)
    if keep.shape != s.shape:
        raise ValueError(f"edge_mask has shape {keep.shape}, senders {s.shape}")
    sc = None
    if scores is not None:
        sc = np.asarray(scores, np.float64)
        if sc.shape != s.shape:
            raise ValueError(f"scores has shape {sc.shape}, senders {s.shape}")
        nan = keep & np.isnan(sc)
        if nan.any():
            raise ValueError(f"scores has NaN in {int(nan.sum())} edges, e.g. edge "
                             f"{int(np.flatnonzero(nan)[0])}")
        keep = keep & (sc >= threshold)
    for name, a in (("senders", s), ("receivers", r)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be integer hit indices, got dtype {a.dtype}")
        bad = keep & ((a < 0) | (a >= num_hits))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} out of range [0, {num_hits}) in {int(bad.sum())} edges, "
                             f"e.g. edge {i}: {int(a[i])} (mask padding edges with edge_mask)")
    s, r = s[keep].astype(np.int64), r[keep].astype(np.int64)
    return s, r, (sc[keep] if sc is not None else None)


def _roots(num_hits: int, s: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Vectorised union-find: the smallest hit index of each hit's component."""
    parent = np.arange(num_hits, dtype=np.int64)
    while len(s):
        ps, pr = parent[s], parent[r]
        split = ps != pr
        if not split.any():
            break
        s, r, ps, pr = s[split], r[split], ps[split], pr[split]   # joined edges stay joined
        np.minimum.at(parent, np.maximum(ps, pr), np.minimum(ps, pr))   # hook roots
        while True:                                                   # pointer jumping
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return parent


def connected_components(num_hits: int, senders, receivers, edge_mask=None) -> np.ndarray:
    """Connected components of an undirected graph on ``num_hits`` hits.

    Returns:
      (num_hits,) int64 component labels 0..C-1, numbered in order of each component's smallest
      hit index (an isolated hit is its own component).
    """
    s, r, _ = _selected_edges(num_hits, senders, receivers, edge_mask=edge_mask)
    _, labels = np.unique(_roots(num_hits, s, r), return_inverse=True)
    return labels.reshape(-1).astype(np.int64)


def _finish(labels: np.ndarray, in_track: np.ndarray, min_hits: int, unassigned: str
            ) -> np.ndarray:
    """Candidates (labels of hits in_track) with >= min_hits hits become tracks 0..T-1 in
    order of their first hit; the other hits are unassigned."""
    if unassigned not in ("singleton", "minus_one"):
        raise ValueError(f"unassigned must be 'singleton' or 'minus_one', got {unassigned!r}")
    n = len(labels)
    lab = np.where(in_track, labels, -1)
    track = np.full(n, -1, np.int64)
    ok = in_track.copy()
    if ok.any():
        counts = np.bincount(lab[ok])
        ok &= counts[np.maximum(lab, 0)] >= max(min_hits, 1)
    if ok.any():
        # renumber by first hit: first occurrence of each label in hit order
        uniq, first = np.unique(lab[ok], return_index=True)
        rank = np.empty(len(uniq), np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
        track[ok] = rank[np.searchsorted(uniq, lab[ok])]
    return fill_unassigned(track) if unassigned == "singleton" else track


def fill_unassigned(track_id) -> np.ndarray:
    """Negative track ids replaced by new singleton ids max + 1, max + 2, ... in hit order."""
    t = np.asarray(track_id, np.int64).copy()
    neg = t < 0
    start = int(t.max(initial=-1)) + 1
    t[neg] = start + np.arange(int(neg.sum()))
    return t


def walkthrough(num_hits: int, senders, receivers, scores, threshold: float = 0.5, *,
                order=None, edge_mask=None, min_hits: int = 2,
                unassigned: str = "singleton") -> np.ndarray:
    """Greedy walk-through track building (module docstring).

    Args:
      num_hits: N.
      senders, receivers: (E,) hit indices of the edges.
      scores: (E,) edge scores; edges with ``score >= threshold`` are used.
      order: optional (N,) per-hit key (e.g. r or distance from the origin); edges are oriented
        from the smaller to the larger key (ties: smaller index first). Without it the edges
        are followed as given, sender -> receiver.
      edge_mask: (E,) bool, False for padding edges.
      min_hits: walks with fewer hits leave their hits unassigned.
      unassigned: "singleton" or "minus_one" (module docstring).

    Walks start, in increasing ``order`` (else index), at hits with outgoing but no incoming
    selected edge, then at every hit still unused that has an outgoing edge (a hit reached only
    through edges whose source joined another track). Each step takes the highest-score edge
    to an unused hit (ties: smaller receiver index).

    Returns:
      (N,) int64 track ids.
    """
    s, r, sc = _selected_edges(num_hits, senders, receivers, scores, threshold, edge_mask)
    loop = s == r
    s, r, sc = s[~loop], r[~loop], sc[~loop]
    if order is not None:
        key = np.asarray(order, np.float64)
        if key.shape != (num_hits,):
            raise ValueError(f"order has shape {key.shape}, expected ({num_hits},)")
        flip = (key[s] > key[r]) | ((key[s] == key[r]) & (s > r))
        s, r = np.where(flip, r, s), np.where(flip, s, r)
    else:
        key = np.arange(num_hits, dtype=np.float64)
    e_order = np.lexsort((r, -sc, s))
    s, r = s[e_order], r[e_order]
    ptr = np.zeros(num_hits + 1, np.int64)
    np.cumsum(np.bincount(s, minlength=num_hits), out=ptr[1:])
    out_deg = np.diff(ptr)
    in_deg = np.bincount(r, minlength=num_hits)
    by_key = np.lexsort((np.arange(num_hits), key))
    starts = np.concatenate([by_key[(in_deg[by_key] == 0) & (out_deg[by_key] > 0)],
                             by_key[out_deg[by_key] > 0]])
    used = np.zeros(num_hits, bool)
    labels = np.full(num_hits, -1, np.int64)
    in_track = np.zeros(num_hits, bool)
    recv = r.tolist()
    ptr_l = ptr.tolist()
    n_walks = 0
    for h in starts.tolist():
        if used[h]:
            continue
        path = [h]
        used[h] = True
        cur = h
        while True:
            nxt = -1
            for e in range(ptr_l[cur], ptr_l[cur + 1]):
                if not used[recv[e]]:
                    nxt = recv[e]
                    break
            if nxt < 0:
                break
            used[nxt] = True
            path.append(nxt)
            cur = nxt
        if len(path) >= 2:
            labels[path] = n_walks
            in_track[path] = True
            n_walks += 1
    return _finish(labels, in_track, min_hits, unassigned)


def build_tracks(num_hits: int, senders, receivers, scores, threshold: float = 0.5, *,
                 method: str = "components", edge_mask=None, min_hits: int = 2,
                 unassigned: str = "singleton", order=None) -> np.ndarray:
    """Track ids per hit from scored edges (module docstring).

    Args:
      num_hits: N.
      senders, receivers: (E,) hit indices (0..N-1) of the graph's edges.
      scores: (E,) edge scores; edges with ``score >= threshold`` are kept.
      method: "components" (connected components) or "walkthrough" (:func:`walkthrough`).
      edge_mask: (E,) bool, False for padding edges.
      min_hits: candidates with fewer hits leave their hits unassigned (at least 2: a hit
        without a selected edge is never a track).
      unassigned: "singleton" (own ids after the tracks) or "minus_one".
      order: per-hit key orienting edges for the walk-through (ignored by "components").

    Returns:
      (N,) int64 track ids: tracks 0..T-1 in order of their first hit, then unassigned hits.
    """
    if method == "walkthrough":
        return walkthrough(num_hits, senders, receivers, scores, threshold, order=order,
                           edge_mask=edge_mask, min_hits=min_hits, unassigned=unassigned)
    if method != "components":
        raise ValueError(f"method must be 'components' or 'walkthrough', got {method!r}")
    s, r, _ = _selected_edges(num_hits, senders, receivers, scores, threshold, edge_mask)
    roots = _roots(num_hits, s, r)
    has_edge = np.zeros(num_hits, bool)
    has_edge[s] = True
    has_edge[r] = True
    return _finish(roots, has_edge, max(min_hits, 2), unassigned)


def make_submission(event_id: int, hit_id, track_id) -> dict[str, np.ndarray]:
    """The TrackML submission columns (``event_id``, ``hit_id``, ``track_id``) for one event,
    unassigned (negative) track ids replaced by singletons (:func:`fill_unassigned`); write it
    with ``hepjax.tracking.trackml.write_submission(path, **submission)``."""
    hit_id = np.asarray(hit_id, np.int64)
    track = fill_unassigned(track_id)
    if track.shape != hit_id.shape:
        raise ValueError(f"track_id has shape {track.shape}, hit_id {hit_id.shape}")
    return {"event_id": np.full(len(hit_id), int(event_id), np.int64), "hit_id": hit_id,
            "track_id": track}
