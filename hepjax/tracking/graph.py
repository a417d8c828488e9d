"""Graph building for tracking: edges between hits on adjacent layers, with geometric cuts learned
from simulated truth. numpy only (the padded, network-ready form uses :mod:`hepjax.graphs`).

The first stage of the HEP.TrkX / Exa.TrkX pipelines (Farrell et al., "Novel deep learning
methods for track reconstruction", arXiv:1810.06111; Ju et al., "Performance of a geometric deep
learning pipeline for HL-LHC particle tracking", EPJC 81 (2021) 876): a graph whose nodes are
hits and whose edges are the hit pairs that could be consecutive hits of one charged particle.

Truth (:func:`graph_truth`)
    An edge is *true* when its two hits belong to one particle and are consecutive along it, in
    the union of the two conventions of :func:`hepjax.tracking.metrics.true_edges`: consecutive
    in distance from the production vertex (the "layerless" truth, which contains the
    same-layer edges between the two hits of overlapping modules) **or** in consecutive layer
    groups (the layer-wise truth: both hits of an overlap pair joined to the particle's hits on
    the previous and next layer). With overlaps a1, a2 on layer L and b on layer L+1, the
    edges a1-a2, a2-b and a1-b are all true: none of them is a wrong connection, and connected
    components give the same track either way.

Layer pairs (:func:`learn_cuts`)
    The layer of a hit is :func:`hepjax.tracking.trackml.global_layer` (0..47). The (unordered)
    layer pairs of the graph are those joined by true edges of particles with pT > ``pt_min``
    in the training events, most frequent first, until they hold ``pair_coverage`` of those
    true edges (the rest, e.g. rare layer skips, are dropped: their loss is part of the
    reported graph efficiency). Same-layer pairs (A, A) are the module overlaps (26 % of the
    true consecutive-hit edges in the real event); their edges join hits on different modules.

Cuts, learned per layer pair from the true edges of pT > ``pt_min`` particles (each edge
oriented from the hit nearer the origin, by sqrt(r^2 + z^2), to the farther one, "in" -> "out"):
    * ``dphi`` = |phi_out - phi_in| (wrapped to [0, pi]);
    * ``res``: the residual of the outer hit's *long coordinate* (z on a barrel layer, r on an
      end-cap disk) from the straight line through the origin and the inner hit (two-sided);
    * ``slope`` = |dphi| / max(|r_out - r_in|, 1 mm) (the phi slope of HEP.TrkX: 0.3 B / (2 pT)
      for a helix from the beam line);
    * ``z0`` = |z_in - r_in (z_out - z_in) / (r_out - r_in)| (the z intercept on the beam line;
      not cut where |r_out - r_in| < 1 mm);
    * ``deta`` = |eta_out - eta_in| (hit pseudorapidities seen from the origin).
    Each window is the quantile keeping 1 - (1 - keep) / 5 of the true edges (two-sided:
    (1 - keep) / 10 in each tail for ``res``; numpy's "higher" / "lower" quantiles, i.e. sample
    values, so that this holds for small samples too), so by the union bound at least ``keep``
    of the training true edges of each pair pass all five, times a ``margin`` (default 1.05)
    on the widths. Pairs with fewer than ``min_edges`` training edges get the cut of the loosest pair.

Building (:func:`build_graph`)
    Per layer pair, the hits of the "to" layer are sorted by (phi bin, long coordinate), phi bins
    at least as wide as the pair's dphi cut; each hit of the "from" layer looks up its own and
    the two neighbouring phi bins with ``np.searchsorted`` in the window of its predicted long
    coordinate, the candidates are expanded with ``np.repeat`` (in chunks of at most
    ``chunk`` candidates) and the exact cuts applied. No all-pairs step: the work is the number
    of candidates in the (phi x long coordinate) road, not N^2. Edges are directed inner ->
    outer (sender = the hit nearer the origin), each hit pair once.
    :func:`brute_force_graph` applies the same cuts to all pairs (tests only).

Network input (:func:`to_graphs_tuple`): node features (r / 1000 mm, phi / pi, z / 1000 mm, the
scaling of HEP.TrkX), edge features (dr / 1000, dphi / pi, dz / 1000, deta, dR = hypot(deta,
dphi)), padded to static budgets by :func:`hepjax.graphs.padding.pad_graphs` (the padding edges
join padding nodes only). No cell features: the simulation has none, and a model trained on it
must see the same inputs on the real event.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from hepjax.tracking import metrics as metrics_lib
from hepjax.tracking import trackml

__all__ = ["CUT_NAMES", "BARREL_VOLUMES", "LayerPairCuts", "GraphCuts", "hit_table",
           "graph_truth", "pair_features", "learn_cuts", "build_graph", "brute_force_graph",
           "graph_stats", "node_features", "edge_features", "to_graphs_tuple",
           "budget_round"]

CUT_NAMES = ("dphi", "res", "slope", "z0", "deta")
BARREL_VOLUMES = (8, 13, 17)
_N_LAYERS = len(trackml.TRACKML_LAYERS)
_IS_BARREL = np.array([v in BARREL_VOLUMES for v, _ in trackml.TRACKML_LAYERS])


def _wrap(dphi):
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def hit_table(hits: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-hit quantities used by the graph: x, y, z, r, phi, eta, rho (sqrt(r^2+z^2)), layer
    (global 0..47), module (volume, layer, module key) and the long coordinate ``c`` (z on a
    barrel layer, r on a disk)."""
    f = trackml.hit_features(hits)
    if "layer" not in f:
        raise ValueError("hits need volume_id and layer_id")
    lay = f["layer"].astype(np.int64)
    mod = ((np.asarray(hits["volume_id"], np.int64) << 40)
           | (np.asarray(hits["layer_id"], np.int64) << 20)
           | np.asarray(hits.get("module_id", np.zeros(len(lay), np.int64)), np.int64))
    return {"x": np.asarray(hits["x"], np.float64), "y": np.asarray(hits["y"], np.float64),
            "z": f["z"], "r": f["r"], "phi": f["phi"], "eta": f["eta"],
            "rho": np.hypot(f["r"], f["z"]), "layer": lay, "module": mod,
            "c": np.where(_IS_BARREL[lay], f["z"], f["r"])}


def graph_truth(hits, truth, particles) -> metrics_lib.TrueEdges:
    """The union of the layerless and the layer-wise true edges (module docstring), as a
    :class:`hepjax.tracking.metrics.TrueEdges` (sorted by particle id)."""
    pid = np.asarray(truth["particle_id"])
    x, y, z = (np.asarray(hits[c], np.float64) for c in ("x", "y", "z"))
    lay = trackml.global_layer(hits["volume_id"], hits["layer_id"])
    a = metrics_lib.true_edges(pid, x, y, z, particles)
    b = metrics_lib.true_edges(pid, x, y, z, particles, layer=lay)
    n = len(pid)
    s = np.concatenate([a.senders, b.senders])
    r = np.concatenate([a.receivers, b.receivers])
    p = np.concatenate([a.particle_id, b.particle_id])
    key = np.minimum(s, r) * n + np.maximum(s, r)
    _, first = np.unique(key, return_index=True)
    order = first[np.lexsort((first, p[first]))]
    return metrics_lib.TrueEdges(s[order], r[order], p[order], n)


def _orient(h, i, j):
    """(inner, outer) hit indices: inner = smaller rho (ties: smaller index)."""
    swap = (h["rho"][i] > h["rho"][j]) | ((h["rho"][i] == h["rho"][j]) & (i > j))
    return np.where(swap, j, i), np.where(swap, i, j)


def _layer_ref(h, n_layers=_N_LAYERS):
    """Per layer: the mean radius (barrel) or mean z (disk) of its hits; nan if empty."""
    lay = h["layer"]
    cnt = np.bincount(lay, minlength=n_layers)
    other = np.where(_IS_BARREL[lay], h["r"], h["z"])
    tot = np.bincount(lay, weights=other, minlength=n_layers)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tot / cnt


def _predict_c(h, frm, to_layer, ref):
    """The long coordinate on layer ``to_layer`` of the straight line from the origin through
    hits ``frm`` (z = z_a R / r_a on a barrel of radius R, r = r_a Z / z_a on a disk at Z)."""
    rz = ref[to_layer]
    if _IS_BARREL[to_layer]:
        pred = h["z"][frm] * rz / np.maximum(h["r"][frm], 1e-3)
    else:
        zz = h["z"][frm]
        pred = h["r"][frm] * rz / np.where(np.abs(zz) < 1e-3, 1e-3, zz)
    return np.clip(pred, -1e5, 1e5)


def pair_features(h, frm, to, ref) -> dict[str, np.ndarray]:
    """The five cut variables (module docstring) of hit pairs (``frm`` on the pair's "from"
    layer, ``to`` on its "to" layer), plus ``inner`` / ``outer`` indices."""
    inner, outer = _orient(h, frm, to)
    dphi = np.abs(_wrap(h["phi"][outer] - h["phi"][inner]))
    dr = h["r"][outer] - h["r"][inner]
    dz = h["z"][outer] - h["z"][inner]
    big = np.abs(dr) >= 1.0
    safe = np.where(big, dr, 1.0)
    z0 = np.where(big, np.abs(h["z"][inner] - h["r"][inner] * dz / safe), 0.0)
    res = h["c"][to] - (_predict_c(h, frm, int(h["layer"][to[0]]), ref) if len(to) else 0.0)
    return {"dphi": dphi, "res": res, "slope": dphi / np.maximum(np.abs(dr), 1.0), "z0": z0,
            "deta": np.abs(h["eta"][outer] - h["eta"][inner]), "inner": inner, "outer": outer}


@dataclasses.dataclass(frozen=True)
class LayerPairCuts:
    """Cuts of one layer pair: hits on layer ``frm`` look for partners on layer ``to``."""
    frm: int
    to: int
    dphi: float
    res_lo: float
    res_hi: float
    slope: float
    z0: float
    deta: float
    n_train: int = 0


@dataclasses.dataclass(frozen=True)
class GraphCuts:
    """Learned graph-building cuts: the layer pairs with their cuts, the per-layer reference
    radius / z of the long-coordinate prediction, and what they were learned for."""
    pairs: tuple[LayerPairCuts, ...]
    layer_ref: tuple[float, ...]
    keep: float
    pt_min: float
    pair_coverage: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "GraphCuts":
        return cls(pairs=tuple(LayerPairCuts(**p) for p in d["pairs"]),
                   layer_ref=tuple(d["layer_ref"]), keep=d["keep"], pt_min=d["pt_min"],
                   pair_coverage=d["pair_coverage"])


def _event_true_pairs(event, pt_min):
    """(hit table, from-hits, to-hits, layer_from, layer_to) of an event's true edges of
    particles with pT > pt_min, each edge oriented so that layer_from <= layer_to."""
    h = hit_table(event["hits"])
    t = graph_truth(event["hits"], event["truth"], event["particles"])
    parts = event["particles"]
    pid_sorted = np.argsort(parts["particle_id"])
    rows = pid_sorted[np.searchsorted(parts["particle_id"][pid_sorted], t.particle_id)]
    pt = np.hypot(parts["px"], parts["py"])[rows]
    sel = pt > pt_min
    s, r = t.senders[sel], t.receivers[sel]
    ls, lr = h["layer"][s], h["layer"][r]
    flip = ls > lr
    s, r = np.where(flip, r, s), np.where(flip, s, r)
    diff_mod = h["module"][s] != h["module"][r]
    s, r = s[diff_mod], r[diff_mod]
    return h, s, r


def learn_cuts(events: Sequence[Mapping], keep: float = 0.995, pt_min: float = 1.0,
               pair_coverage: float = 0.999, margin: float = 1.05,
               min_edges: int = 20) -> GraphCuts:
    """Learn the layer pairs and their cuts from simulated events (module docstring).

    Args:
      events: dicts with ``hits``, ``truth``, ``particles`` (TrackML columns).
      keep: the fraction of each pair's training true edges that pass all its cuts (>=, by
        the union bound over the five variables, before ``margin``).
      pt_min: learn from the true edges of particles with pT > pt_min [GeV].
      pair_coverage: keep the most frequent layer pairs until they hold this fraction of the
        true edges.
      margin: factor on every window's width (1 = the quantiles exactly).
      min_edges: pairs with fewer training edges take the loosest cuts of all pairs.
    """
    if not 0 < keep <= 1 or not 0 < pair_coverage <= 1:
        raise ValueError("keep and pair_coverage must be in (0, 1]")
    q = 1 - (1 - keep) / len(CUT_NAMES)
    tail = (1 - keep) / (2 * len(CUT_NAMES))
    per_pair: dict[tuple[int, int], list[dict]] = {}
    ref_sum = np.zeros(_N_LAYERS)
    ref_n = np.zeros(_N_LAYERS)
    tables = []
    for ev in events:
        h, s, r = _event_true_pairs(ev, pt_min)
        ref = _layer_ref(h)
        ok = np.isfinite(ref)
        cnt = np.bincount(h["layer"], minlength=_N_LAYERS)
        ref_sum[ok] += (ref * cnt)[ok]
        ref_n += cnt
        tables.append((h, s, r))
    with np.errstate(invalid="ignore", divide="ignore"):
        layer_ref = np.where(ref_n > 0, ref_sum / np.maximum(ref_n, 1), 0.0)
    for h, s, r in tables:
        key = h["layer"][s] * _N_LAYERS + h["layer"][r]
        for k in np.unique(key):
            m = key == k
            a, b = divmod(int(k), _N_LAYERS)
            fs, ts = s[m], r[m]
            if a == b:                          # overlaps: both orientations
                fs, ts = np.concatenate([fs, ts]), np.concatenate([ts, fs])
            per_pair.setdefault((a, b), []).append(pair_features(h, fs, ts, layer_ref))
    counts = {k: sum(len(f["dphi"]) for f in v) for k, v in per_pair.items()}
    total = sum(counts.values())
    if total == 0:
        raise ValueError(f"no true edges of particles with pT > {pt_min} GeV in the events")
    ranked = sorted(counts, key=lambda k: (-counts[k], k))
    kept, acc = [], 0
    for k in ranked:
        if acc >= pair_coverage * total:
            break
        kept.append(k)
        acc += counts[k]
    cuts = {}
    for k in kept:
        f = {name: np.concatenate([x[name] for x in per_pair[k]]) for name in CUT_NAMES}
        if counts[k] < min_edges:
            continue
        # "higher" / "lower" quantiles are sample values: at least the fraction q of the
        # edges passes each one-sided cut (<=), even for small samples
        lo = np.quantile(f["res"], tail, method="lower")
        hi = np.quantile(f["res"], 1 - tail, method="higher")
        widen = (margin - 1) * (hi - lo) / 2
        up = {n: float(np.quantile(f[n], q, method="higher") * margin)
              for n in ("dphi", "slope", "z0", "deta")}
        cuts[k] = dict(res_lo=float(lo - widen), res_hi=float(hi + widen), **up)
    if not cuts:
        raise ValueError(f"no layer pair has {min_edges} training edges; simulate more events")
    loose = {n: max(c[n] for c in cuts.values()) for n in ("dphi", "res_hi", "slope", "z0",
                                                            "deta")}
    loose["res_lo"] = min(c["res_lo"] for c in cuts.values())
    pairs = tuple(LayerPairCuts(a, b, **cuts.get((a, b), loose), n_train=counts[(a, b)])
                  for a, b in sorted(kept))
    return GraphCuts(pairs, tuple(float(v) for v in layer_ref), keep, pt_min, pair_coverage)


def _pass(f, c: LayerPairCuts):
    return ((f["dphi"] <= c.dphi) & (f["res"] >= c.res_lo) & (f["res"] <= c.res_hi)
            & (f["slope"] <= c.slope) & (f["z0"] <= c.z0) & (f["deta"] <= c.deta))


def _finish_edges(h, found_s, found_r, n):
    if not found_s:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    s = np.concatenate(found_s)
    r = np.concatenate(found_r)
    key = s * n + r
    _, first = np.unique(key, return_index=True)      # sorted by (sender, receiver)
    return s[first], r[first]


def build_graph(hits: Mapping[str, np.ndarray], cuts: GraphCuts, chunk: int = 2_000_000
                ) -> tuple[np.ndarray, np.ndarray]:
    """Edges (senders, receivers) of an event's hits under ``cuts`` (module docstring): int64
    hit indices (rows of ``hits``), sender nearer the origin, sorted, each hit pair once."""
    h = hit_table(hits)
    n = len(h["r"])
    ref = np.asarray(cuts.layer_ref)
    lay = h["layer"]
    order = np.argsort(lay, kind="stable")
    bounds = np.searchsorted(lay[order], np.arange(_N_LAYERS + 1))
    found_s, found_r = [], []
    for c in cuts.pairs:
        A = order[bounds[c.frm]:bounds[c.frm + 1]]
        B = order[bounds[c.to]:bounds[c.to + 1]]
        if len(A) == 0 or len(B) == 0:
            continue
        nb = max(1, int(np.floor(2 * np.pi / max(c.dphi, 1e-9))))
        nb = min(nb, 4096)
        width = 2 * np.pi / nb
        bin_b = np.minimum(((h["phi"][B] + np.pi) / width).astype(np.int64), nb - 1)
        cb = h["c"][B]
        span = float(np.ptp(cb)) + 1.0
        cmin = float(cb.min())
        keyb = bin_b * (span + 1.0) + (cb - cmin)
        ob = np.argsort(keyb, kind="stable")
        keyb, Bs = keyb[ob], B[ob]
        bin_a = np.minimum(((h["phi"][A] + np.pi) / width).astype(np.int64), nb - 1)
        pred = _predict_c(h, A, c.to, ref) - cmin
        lo_c = np.clip(pred + c.res_lo, -1.0, span + 0.5)
        hi_c = np.clip(pred + c.res_hi, -1.0, span + 0.5)
        offsets = (0,) if nb < 3 else (-1, 0, 1)
        for off in offsets:
            bb = (bin_a + off) % nb
            lo = np.searchsorted(keyb, bb * (span + 1.0) + lo_c, side="left")
            hi = np.searchsorted(keyb, bb * (span + 1.0) + hi_c, side="right")
            cnt = np.maximum(hi - lo, 0)
            # chunk over "from" hits so that at most ~chunk candidates are expanded at once
            csum = np.cumsum(cnt)
            start = 0
            while start < len(A):
                base = csum[start - 1] if start else 0
                stop = int(np.searchsorted(csum, base + chunk, side="right"))
                stop = max(stop, start + 1)
                ci = cnt[start:stop]
                tot = int(ci.sum())
                if tot:
                    fi = np.repeat(np.arange(start, stop), ci)
                    first = np.repeat(lo[start:stop] - np.cumsum(ci) + ci, ci)
                    j = first + np.arange(tot)
                    frm, to = A[fi], Bs[j]
                    if c.frm == c.to:
                        ok = h["module"][frm] != h["module"][to]
                        frm, to = frm[ok], to[ok]
                    if len(frm):
                        f = pair_features(h, frm, to, ref)
                        ok = _pass(f, c)
                        found_s.append(f["inner"][ok])
                        found_r.append(f["outer"][ok])
                start = stop
    return _finish_edges(h, found_s, found_r, n)


def brute_force_graph(hits: Mapping[str, np.ndarray], cuts: GraphCuts
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The same edges as :func:`build_graph` from all hit pairs of each layer pair (O(N^2) per
    pair; for tests on small events)."""
    h = hit_table(hits)
    n = len(h["r"])
    ref = np.asarray(cuts.layer_ref)
    found_s, found_r = [], []
    for c in cuts.pairs:
        A = np.flatnonzero(h["layer"] == c.frm)
        B = np.flatnonzero(h["layer"] == c.to)
        if len(A) == 0 or len(B) == 0:
            continue
        frm, to = np.repeat(A, len(B)), np.tile(B, len(A))
        if c.frm == c.to:
            ok = h["module"][frm] != h["module"][to]
            frm, to = frm[ok], to[ok]
        if len(frm) == 0:
            continue
        f = pair_features(h, frm, to, ref)
        ok = _pass(f, c)
        found_s.append(f["inner"][ok])
        found_r.append(f["outer"][ok])
    return _finish_edges(h, found_s, found_r, n)


def graph_stats(senders, receivers, truth: metrics_lib.TrueEdges, particles,
                pt_min: float = 1.0) -> dict:
    """Graph size and quality: ``n_hits``, ``n_edges``, ``graph_efficiency`` (true edges of
    pT > pt_min particles in the graph / all of them), ``graph_efficiency_all`` (all
    particles), ``graph_purity`` (true edges / edges)."""
    ones = np.ones(len(senders))
    m = metrics_lib.edge_metrics(senders, receivers, ones, truth, 0.5, particles=particles,
                                 pt_min=pt_min)
    a = metrics_lib.edge_metrics(senders, receivers, ones, truth, 0.5)
    return {"n_hits": int(truth.num_hits), "n_edges": int(len(senders)),
            "n_true_edges": m["n_true_edges"],
            "graph_efficiency": m["graph_efficiency"], "graph_efficiency_all":
            a["graph_efficiency"], "graph_purity": m["graph_purity"]}


# ----------------------------------------------------------------------- network input

NODE_SCALE = np.array([1000.0, np.pi, 1000.0])


def node_features(hits: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N, 3) float32: r / 1000 mm, phi / pi, z / 1000 mm."""
    f = trackml.hit_features(hits)
    return (np.stack([f["r"], f["phi"], f["z"]], -1) / NODE_SCALE).astype(np.float32)


def edge_features(hits: Mapping[str, np.ndarray], senders, receivers) -> np.ndarray:
    """(E, 5) float32: dr / 1000, dphi / pi (wrapped), dz / 1000, deta, dR = hypot(deta, dphi)
    of receiver - sender."""
    f = trackml.hit_features(hits)
    s, r = np.asarray(senders), np.asarray(receivers)
    dphi = _wrap(f["phi"][r] - f["phi"][s])
    deta = f["eta"][r] - f["eta"][s]
    return np.stack([(f["r"][r] - f["r"][s]) / 1000.0, dphi / np.pi,
                     (f["z"][r] - f["z"][s]) / 1000.0, deta, np.hypot(deta, dphi)],
                    -1).astype(np.float32)


def budget_round(n: int, base: int = 1024, factor: float = 1.25) -> int:
    """The smallest budget base * factor^k (rounded up to a multiple of 64) that exceeds n:
    few distinct shapes, hence few compilations, at <= factor x padding."""
    b = float(base)
    while True:
        v = int(-(-int(np.ceil(b)) // 64) * 64)
        if v > n:
            return v
        b *= factor


def to_graphs_tuple(hits: Mapping[str, np.ndarray], senders, receivers, labels=None,
                    n_node: int | None = None, n_edge: int | None = None):
    """The padded :class:`hepjax.graphs.padding.GraphsTuple` of one event graph: nodes (N, 3),
    edges (E, 5) (:func:`node_features`, :func:`edge_features`), padded to ``n_node`` /
    ``n_edge`` (default: :func:`budget_round`) with one padding graph. Returns
    ``(graph, labels_padded)`` (labels 0 on padding edges; None if no labels)."""
    from hepjax.graphs.padding import GraphsTuple, pad_graphs
    nodes = node_features(hits)
    edges = edge_features(hits, senders, receivers)
    n, e = len(nodes), len(edges)
    g = GraphsTuple(nodes=nodes, edges=edges, senders=np.asarray(senders, np.int32),
                    receivers=np.asarray(receivers, np.int32), n_node=np.array([n], np.int32),
                    n_edge=np.array([e], np.int32), globals=None)
    g = pad_graphs(g, n_node or budget_round(n + 1), n_edge or budget_round(e), 2)
    lab = None
    if labels is not None:
        lab = np.zeros(g.senders.shape[0], np.float32)
        lab[:e] = np.asarray(labels, np.float32)
    return g, lab
