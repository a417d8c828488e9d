"""CLUE (Rovere et al., Front. Big Data 3 (2020) 591315): the tiled numpy implementation against a
brute-force O(N^2) transcription of the same definitions, known answers, masks, bad input, and the
CLUE3D-like association of layer clusters into showers."""
import math

import numpy as np
import pytest

from hepjax.reco import CLUEParams, clue2d, clue3d
from hepjax.reco.clue import cluster_points


# ---------------------------------------------------------------------------------------------
# Brute-force reference: every pair, plain loops, the definitions of the module docstring.
# ---------------------------------------------------------------------------------------------


def brute_clue(x, y, layer, e, *, d_c, rho_c, delta_c, delta_o, window=0, self_w=1.0, nb_w=0.5):
    n = len(x)

    def per(v, i):
        return float(v[layer[i]]) if np.ndim(v) else float(v)

    def dist(i, j):
        dx = float(x[i]) - float(x[j])
        dy = float(y[i]) - float(y[j])
        return math.sqrt(dx * dx + dy * dy)

    def near(i, j):
        return abs(int(layer[i]) - int(layer[j])) <= window

    rho = [0.0] * n
    for i in range(n):
        for j in range(n):
            if near(i, j) and dist(i, j) < per(d_c, i):
                rho[i] += (self_w if i == j else nb_w) * float(e[j])
    nh = [-1] * n
    delta = [math.inf] * n
    for i in range(n):
        dm = max(per(delta_c, i), per(delta_o, i))
        for j in range(n):
            higher = rho[j] > rho[i] or (rho[j] == rho[i] and j < i)
            if near(i, j) and higher:
                d = dist(i, j)
                if d <= dm and d < delta[i]:  # j ascending: the lowest index wins ties
                    delta[i], nh[i] = d, j
    seed = [rho[i] >= per(rho_c, i) and delta[i] > per(delta_c, i) for i in range(n)]
    outlier = [rho[i] < per(rho_c, i) and delta[i] > per(delta_o, i) for i in range(n)]
    seed_ids = {}
    for i in range(n):
        if seed[i]:
            seed_ids[i] = len(seed_ids)
    labels = []
    for i in range(n):
        j = i
        while not seed[j] and not outlier[j]:
            j = nh[j]
        labels.append(seed_ids[j] if seed[j] else -1)
    return (np.array(labels), np.array(rho), np.array(delta), np.array(nh), np.array(seed),
            np.array(outlier))


def random_hits(seed, n=300, layers=4, grid=False):
    rng = np.random.default_rng(seed)
    if grid:  # calorimeter cells: integer coordinates, exact ties in distance and density
        x = rng.integers(0, 12, n).astype(float)
        y = rng.integers(0, 12, n).astype(float)
        e = rng.choice([0.5, 1.0, 2.0], n)
    else:
        centres = rng.uniform(-6, 6, (8, 2))
        c = rng.integers(0, 8, n)
        x = centres[c, 0] + rng.normal(0, 1.0, n)
        y = centres[c, 1] + rng.normal(0, 1.0, n)
        e = rng.exponential(1.0, n)
    layer = rng.integers(0, layers, n)
    return x, y, layer, e


CASES = [
    dict(seed=0, grid=False, d_c=0.8, rho_c=1.5, delta_c=0.8, delta_o=1.6, window=0),
    dict(seed=1, grid=False, d_c=1.2, rho_c=3.0, delta_c=1.5, delta_o=2.5, window=0),
    dict(seed=2, grid=True, d_c=1.0, rho_c=2.0, delta_c=1.0, delta_o=2.0, window=0),
    dict(seed=3, grid=True, d_c=1.5, rho_c=2.5, delta_c=2.0, delta_o=2.0, window=0),
    dict(seed=4, grid=False, d_c=0.9, rho_c=2.0, delta_c=1.2, delta_o=2.0, window=1),
    dict(seed=5, grid=True, d_c=1.0, rho_c=4.0, delta_c=1.0, delta_o=2.0, window=2),
    # per-layer thresholds (e.g. finer cells in the first layers)
    dict(seed=6, grid=False, d_c=[0.6, 0.8, 1.0, 1.4], rho_c=[1.0, 1.5, 2.0, 2.5],
         delta_c=[0.6, 0.8, 1.0, 1.4], delta_o=[1.5, 1.5, 2.5, 3.0], window=0),
]


@pytest.mark.parametrize("case", CASES, ids=[f"case{c['seed']}" for c in CASES])
def test_tiled_clue_equals_brute_force(case):
    x, y, layer, e = random_hits(case["seed"], grid=case["grid"])
    p = CLUEParams(d_c=case["d_c"], rho_c=case["rho_c"], delta_c=case["delta_c"],
                   delta_o=case["delta_o"], layer_window=case["window"])
    labels, rho, delta, nh, seed, outl, seeds = cluster_points(x, y, layer, e, p)
    r_labels, r_rho, r_delta, r_nh, r_seed, r_outl = brute_clue(
        x, y, layer, e, d_c=case["d_c"], rho_c=case["rho_c"], delta_c=case["delta_c"],
        delta_o=case["delta_o"], window=case["window"])
    np.testing.assert_array_equal(rho, r_rho)       # same summation order: bitwise equal
    np.testing.assert_array_equal(delta, r_delta)
    np.testing.assert_array_equal(nh, r_nh)
    np.testing.assert_array_equal(seed, r_seed)
    np.testing.assert_array_equal(outl, r_outl)
    np.testing.assert_array_equal(labels, r_labels)
    np.testing.assert_array_equal(seeds, np.flatnonzero(r_seed))
    # the case exercises every kind of hit
    assert r_seed.sum() >= 3 and r_outl.sum() >= 1 and (r_labels >= 0).sum() > r_seed.sum()


def test_two_blobs_and_an_outlier():
    # Two 5x5 blobs of 1 cm cells in one layer, 10 cm apart, peaked energies; one lone soft hit.
    xs, ys, es = [], [], []
    for cx, scale in ((0.0, 10.0), (10.0, 6.0)):
        for i in range(-2, 3):
            for j in range(-2, 3):
                xs.append(cx + i)
                ys.append(float(j))
                es.append(scale * math.exp(-(i * i + j * j) / 2.0))
    xs.append(5.0)
    ys.append(6.0)
    es.append(0.05)
    x, y, e = np.array(xs), np.array(ys), np.array(es)
    layer = np.zeros(len(x), int)
    r = clue2d(x, y, layer, e, params=CLUEParams(d_c=1.5, rho_c=1.0, delta_c=2.0, delta_o=3.0))
    assert r.num_clusters == 2
    np.testing.assert_array_equal(r.labels[:25], 0)
    np.testing.assert_array_equal(r.labels[25:50], 1)
    assert r.labels[50] == -1 and r.is_outlier[50]
    np.testing.assert_array_equal(r.seeds, [12, 37])  # the blob centres
    np.testing.assert_allclose(r.energy, [e[:25].sum(), e[25:50].sum()])
    np.testing.assert_allclose(r.x, [0.0, 10.0], atol=1e-12)
    np.testing.assert_allclose(r.y, [0.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(r.layer, [0.0, 0.0])


def test_mask_ignores_padding_and_its_garbage():
    x, y, layer, e = random_hits(8, n=200)
    p = CLUEParams(d_c=1.0, rho_c=2.0, delta_o=2.0)
    ref = clue2d(x, y, layer, e, params=p)
    pad = 40
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x) + pad)
    xp = np.concatenate([x, np.full(pad, np.nan)])[order]
    yp = np.concatenate([y, rng.normal(size=pad)])[order]
    lp = np.concatenate([layer, np.full(pad, 7)])[order]
    ep = np.concatenate([e, np.full(pad, -1.0)])[order]
    mp = np.concatenate([np.ones(len(x), bool), np.zeros(pad, bool)])[order]
    out = clue2d(xp, yp, lp, ep, mp, params=p)
    inv = np.argsort(order)[:len(x)]  # position of each original hit in the padded arrays
    assert out.num_clusters == ref.num_clusters
    # cluster ids follow the seeds' hit order, which the permutation may change: compare the
    # partitions through the seeds
    np.testing.assert_array_equal(np.sort(order[out.seeds]), ref.seeds)
    relabel = {int(c): int(ref.labels[order[s]]) for c, s in enumerate(out.seeds)}
    mapped = np.array([relabel.get(int(v), -1) for v in out.labels[inv]])
    np.testing.assert_array_equal(mapped, ref.labels)
    assert np.all(out.labels[~mp] == -1) and np.all(out.rho[~mp] == 0)
    np.testing.assert_allclose(np.sort(out.energy), np.sort(ref.energy), rtol=1e-12)


def test_empty_inputs():
    p = CLUEParams(d_c=1.0, rho_c=1.0)
    r = clue2d(np.zeros(0), np.zeros(0), np.zeros(0, int), np.zeros(0), params=p)
    assert r.num_clusters == 0 and r.labels.shape == (0,)
    r = clue2d(np.ones(3), np.ones(3), np.zeros(3, int), np.ones(3), np.zeros(3, bool), params=p)
    assert r.num_clusters == 0 and np.all(r.labels == -1)
    s = clue3d(np.zeros(0), np.zeros(0), np.zeros(0, int), np.zeros(0), layer_params=p,
               shower_params=CLUEParams(d_c=1.0, rho_c=1.0, layer_window=2))
    assert s.num_showers == 0 and s.labels.shape == (0,)


def test_bad_input_is_refused_with_one_line_naming_the_field():
    p = CLUEParams(d_c=1.0, rho_c=1.0)
    x = np.zeros(4)
    lay = np.zeros(4, int)
    with pytest.raises(ValueError, match="energy must be >= 0"):
        clue2d(x, x, lay, np.array([1.0, -0.5, 1.0, 1.0]), params=p)
    with pytest.raises(ValueError, match="x has 1 NaN"):
        clue2d(np.array([0.0, np.nan, 0.0, 0.0]), x, lay, np.ones(4), params=p)
    with pytest.raises(ValueError, match="energy has 1 NaN/inf"):
        clue2d(x, x, lay, np.array([1.0, np.inf, 1.0, 1.0]), params=p)
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        clue2d(x, np.zeros(3), lay, np.ones(4), params=p)
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        clue2d(x, x, lay, np.ones(4), np.ones(5, bool), params=p)
    with pytest.raises(ValueError, match="layer must hold integer"):
        clue2d(x, x, np.array([0.0, 0.5, 1.0, 1.0]), np.ones(4), params=p)
    with pytest.raises(ValueError, match="d_c is given per layer"):
        clue2d(x, x, np.array([0, 1, 2, 3]), np.ones(4), params=CLUEParams(d_c=[1.0, 1.0], rho_c=1.0))
    with pytest.raises(ValueError, match="CLUEParams.rho_c"):
        clue2d(x, x, lay, np.ones(4), params=CLUEParams(d_c=1.0, rho_c=np.nan))
    with pytest.raises(ValueError, match="layer_window"):
        clue2d(x, x, lay, np.ones(4), params=CLUEParams(d_c=1.0, rho_c=1.0, layer_window=-1))


def _shower(rng, cx, cy, energy, layers=range(12)):
    """A toy EM-like shower: per layer a compact group of 1 cm cells around (cx, cy)."""
    xs, ys, ls, es = [], [], [], []
    profile = np.array([math.exp(-((l - 5) / 3.0) ** 2) for l in layers])
    for l, f in zip(layers, profile / profile.sum()):
        for i in range(-2, 3):
            for j in range(-2, 3):
                w = math.exp(-(i * i + j * j) / 1.5)
                xs.append(round(cx) + i)
                ys.append(round(cy) + j)
                ls.append(l)
                es.append(energy * f * w * rng.uniform(0.8, 1.2))
    return xs, ys, ls, es


def test_clue3d_separates_two_showers_and_keeps_their_energy():
    rng = np.random.default_rng(0)
    a = _shower(rng, 0, 0, 50.0)
    b = _shower(rng, 8, 3, 20.0)
    x = np.array(a[0] + b[0], float)
    y = np.array(a[1] + b[1], float)
    layer = np.array(a[2] + b[2])
    e = np.array(a[3] + b[3])
    truth = np.array([0] * len(a[0]) + [1] * len(b[0]))
    z = layer * 0.5 + 300.0
    s = clue3d(x, y, layer, e, z=z,
               layer_params=CLUEParams(d_c=1.3, rho_c=0.05, delta_c=1.3, delta_o=2.6),
               shower_params=CLUEParams(d_c=2.0, rho_c=0.1, delta_c=3.0, delta_o=4.0,
                                        layer_window=2))
    assert s.layer_clusters.num_clusters >= 20  # about one per shower and layer
    assert s.num_showers == 2
    for k in (0, 1):
        labels = s.labels[truth == k]
        found = np.unique(labels[labels >= 0])
        assert len(found) == 1
        clustered = e[(truth == k) & (s.labels == found[0])].sum()
        assert clustered > 0.97 * e[truth == k].sum()
        assert s.energy[found[0]] == pytest.approx(clustered, rel=1e-12)
    ia = s.labels[truth == 0][0]
    assert s.x[ia] == pytest.approx(0.0, abs=0.2) and s.y[ia] == pytest.approx(0.0, abs=0.2)
    ib = s.labels[truth == 1][0]
    assert s.x[ib] == pytest.approx(8.0, abs=0.2) and s.y[ib] == pytest.approx(3.0, abs=0.2)
    assert 302.0 < s.z[ia] < 303.5  # energy-weighted depth near the shower maximum (layer 5)
    # each hit's shower is its layer cluster's shower
    lc = s.layer_labels
    np.testing.assert_array_equal(s.labels[lc >= 0], s.cluster_showers.labels[lc[lc >= 0]])
