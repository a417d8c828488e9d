"""Track building: the vectorised union-find against a sequential one, connected components and
the walk-through on hand-made graphs, and perfect edges on the real TrackML event."""
import numpy as np
import pytest

from hepjax.tracking import building as B
from hepjax.tracking import metrics as M


def reference_components(n, senders, receivers):
    """Sequential union-find (path halving; the smaller root wins), labels numbered by each
    component's smallest hit as connected_components numbers them."""
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(senders.tolist(), receivers.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(x) for x in range(n)])
    return np.unique(roots, return_inverse=True)[1]


@pytest.mark.parametrize("n, e, seed", [(1, 0, 0), (10, 4, 1), (2000, 1500, 2), (20000, 19000, 3),
                                        (5000, 20000, 4)])
def test_components_match_sequential_union_find(n, e, seed):
    rng = np.random.default_rng(seed)
    s, r = rng.integers(0, n, e), rng.integers(0, n, e)
    np.testing.assert_array_equal(B.connected_components(n, s, r), reference_components(n, s, r))


def test_components_of_long_shuffled_paths():
    """Paths over randomly numbered hits, the hard case for label propagation (one hop per
    round); hooking with pointer jumping needs O(log n) rounds."""
    rng = np.random.default_rng(5)
    n = 200_000
    perm = rng.permutation(n)
    cut = np.zeros(n - 1, bool)
    cut[[49_999, 149_999]] = True                       # three paths: 50k, 100k, 50k hits
    s, r = perm[:-1][~cut], perm[1:][~cut]
    flip = rng.random(len(s)) < 0.5
    s, r = np.where(flip, r, s), np.where(flip, s, r)
    labels = B.connected_components(n, s, r)
    paths = [perm[:50_000], perm[50_000:150_000], perm[150_000:]]
    first = np.argsort(np.argsort([p.min() for p in paths]))   # labels follow the smallest hit
    for path, label in zip(paths, first):
        np.testing.assert_array_equal(labels[path], label)
    assert len(np.unique(labels)) == 3 and labels[perm[0]] != labels[perm[-1]]


def test_build_tracks_components():
    # 0-1-2 (a track), 3-4 (two hits), 5 alone, 6-7 joined only by a 0.3 edge
    s = np.array([0, 2, 3, 6, 4])
    r = np.array([1, 1, 4, 7, 4])
    sc = np.array([0.9, 0.5, 0.8, 0.3, 0.99])            # 2-1 exactly at the threshold: kept
    np.testing.assert_array_equal(B.build_tracks(8, s, r, sc, 0.5, unassigned="minus_one"),
                                  [0, 0, 0, 1, 1, -1, -1, -1])
    np.testing.assert_array_equal(B.build_tracks(8, s, r, sc, 0.5),
                                  [0, 0, 0, 1, 1, 2, 3, 4])     # singletons after the tracks
    np.testing.assert_array_equal(B.build_tracks(8, s, r, sc, 0.5, min_hits=3),
                                  [0, 0, 0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(B.build_tracks(8, s, r, sc, 0.2, unassigned="minus_one"),
                                  [0, 0, 0, 1, 1, -1, 2, 2])
    # padding edges (any sender/receiver) are ignored under edge_mask
    sp, rp = np.r_[s, 8, -1], np.r_[r, 0, 0]
    mask = np.r_[np.ones(5, bool), False, False]
    np.testing.assert_array_equal(B.build_tracks(8, sp, rp, np.r_[sc, 1, 1], edge_mask=mask),
                                  B.build_tracks(8, s, r, sc))
    with pytest.raises(ValueError, match=r"senders out of range \[0, 8\) in 2 edges, e.g. edge 5"):
        B.build_tracks(8, sp, rp, np.r_[sc, 1, 1])
    with pytest.raises(ValueError, match="scores has NaN in 1 edges, e.g. edge 0"):
        B.build_tracks(8, s, r, np.r_[np.nan, sc[1:]])
    with pytest.raises(ValueError, match="method must be"):
        B.build_tracks(8, s, r, sc, method="kalman")
    # no hits, no edges
    assert B.build_tracks(0, [], [], []).shape == (0,)
    np.testing.assert_array_equal(B.build_tracks(3, [], [], [], unassigned="minus_one"), [-1] * 3)


def test_walkthrough_follows_the_best_edge():
    # a Y: 0 -> 1, then 1 -> 4 (0.95) beats 1 -> 2 (0.8); 2 -> 3 continues the other branch
    s = np.array([0, 1, 1, 2, 4])
    r = np.array([1, 2, 4, 3, 5])
    sc = np.array([0.9, 0.8, 0.95, 0.9, 0.6])
    np.testing.assert_array_equal(B.connected_components(6, s, r), [0] * 6)
    walk = B.build_tracks(6, s, r, sc, method="walkthrough", unassigned="minus_one")
    np.testing.assert_array_equal(walk, [0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(B.walkthrough(6, s, r, sc, min_hits=3, unassigned="minus_one"),
                                  [0, 0, -1, -1, 0, 0])
    np.testing.assert_array_equal(B.walkthrough(6, s, r, sc, min_hits=3), [0, 0, 1, 2, 0, 0])
    # edges given inwards: ``order`` (e.g. the radius) orients them outwards again
    radius = np.array([30.0, 70.0, 115.0, 170.0, 110.0, 160.0])
    np.testing.assert_array_equal(
        B.walkthrough(6, r, s, sc, order=radius, unassigned="minus_one"), walk)
    # at 0.85 only 0 -> 1 -> 4 and 2 -> 3 remain; with 1 -> 4 scored low the walk takes 1 -> 2
    np.testing.assert_array_equal(
        B.walkthrough(6, s, r, sc, threshold=0.85, unassigned="minus_one"),
        [0, 0, 1, 1, 0, -1])
    np.testing.assert_array_equal(
        B.walkthrough(6, s, r, np.where(sc > 0.94, 0.1, sc), unassigned="minus_one"),
        [0, 0, 0, 0, 1, 1])


def test_fill_unassigned_and_submission(tmp_path):
    from hepjax.tracking import trackml as tm
    np.testing.assert_array_equal(B.fill_unassigned([3, -1, 0, -1]), [3, 4, 0, 5])
    np.testing.assert_array_equal(B.fill_unassigned([-1, -1]), [0, 1])
    sub = B.make_submission(1, [11, 12, 13, 14], [0, -1, 0, -1])
    np.testing.assert_array_equal(sub["track_id"], [0, 1, 0, 2])
    back = tm.load_submission(tm.write_submission(tmp_path / "s.csv", **sub))
    for k in sub:
        np.testing.assert_array_equal(back[k], sub[k])


@pytest.fixture(scope="module")
def event(shared_data):
    from hepjax.tracking import trackml as tm
    d = shared_data / "trackml_event_gnn_tracking"
    if not (d / "event000000001-hits.csv.gz").exists():
        pytest.skip(f"the TrackML event is absent from {d}")
    return tm.load_event(d / "event000000001", parts=("hits", "particles", "truth"))


@pytest.mark.parametrize("method", ["components", "walkthrough"])
def test_perfect_edges_rebuild_every_particle(event, method, tmp_path):
    from hepjax.tracking import trackml as tm
    hits, particles, truth = event["hits"], event["particles"], event["truth"]
    pid = truth["particle_id"]
    true = M.true_edges(pid, hits["x"], hits["y"], hits["z"], particles)
    rng = np.random.default_rng(7)
    fake_s, fake_r = rng.integers(0, len(pid), 20_000), rng.integers(0, len(pid), 20_000)
    s, r = np.r_[true.senders, fake_s], np.r_[true.receivers, fake_r]
    label = M.edge_labels(s, r, true)
    scores = label.astype(float)                          # a perfect classifier
    track = B.build_tracks(len(pid), s, r, scores, 0.5, method=method)
    assert len(np.unique(track)) == len(pid) - (pid != 0).sum() + len(np.unique(pid[pid != 0]))
    m = M.track_metrics(track, pid, particles, min_hits=2, min_track_hits=2)
    n_hits = np.unique(pid[pid != 0], return_counts=True)[1]
    assert m["efficiency"] == 1.0 and m["n_particles"] == (n_hits >= 2).sum() == 447
    assert m["fake_rate"] == 0.0 and m["duplicate_rate"] == 0.0
    sub = tm.load_submission(tm.write_submission(tmp_path / "sub.csv.gz",
                                                 **B.make_submission(1, hits["hit_id"], track)))
    assert M.score_event(truth, sub) == pytest.approx(1.0, abs=1e-12)
    # with the fake edges switched on the components merge particles; the score collapses
    merged = B.build_tracks(len(pid), s, r, np.ones(len(s)), 0.5, method=method)
    assert M.score_event(truth, {"hit_id": hits["hit_id"], "track_id": merged}) < 0.5
