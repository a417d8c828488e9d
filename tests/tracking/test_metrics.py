"""Tracking metrics on hand-made events with known answers, and the TrackML score against a
transcription of trackml-library's score_event on the real event."""
import numpy as np
import pytest

from hepjax import metrics as clf
from hepjax.tracking import metrics as M


@pytest.fixture(scope="module")
def event_arrays(shared_data):
    from hepjax.tracking import trackml as tm
    d = shared_data / "trackml_event_gnn_tracking"
    if not (d / "event000000001-truth.csv.gz").exists():
        pytest.skip(f"the TrackML event is absent from {d}")
    ev = tm.load_event(d / "event000000001", parts=("hits", "particles", "truth"))
    return ev["hits"], ev["particles"], ev["truth"]

# --------------------------------------------------------------------------------------------
# Truth edges and edge metrics
# --------------------------------------------------------------------------------------------

# hit:            0     1(noise) 2     3      4     5      6
PID = np.array([5, 0, 5, 9, 5, 9, 9], np.uint64)
X = np.array([30.0, 10.0, 10.0, 0.0, 20.0, 0.0, 0.0])
Y = np.zeros(7)
Z = np.array([0.0, 0.0, 0.0, 50.0, 0.0, -20.0, 10.0])
PARTICLES = {"particle_id": np.array([9, 5], np.uint64),
             "vx": np.zeros(2), "vy": np.zeros(2), "vz": np.array([-30.0, 0.0]),
             "px": np.array([0.5, 2.0]), "py": np.zeros(2), "pz": np.zeros(2)}


def edge_set(te):
    return sorted(zip(te.senders.tolist(), te.receivers.tolist()))


def test_true_edges_follow_distance_from_the_production_vertex():
    from_origin = M.true_edges(PID, X, Y, Z)
    # particle 5: 2 (10 mm), 4 (20), 0 (30); particle 9 from the origin: 6 (10), 5 (20), 3 (50)
    assert edge_set(from_origin) == [(2, 4), (4, 0), (5, 3), (6, 5)]
    assert from_origin.num_hits == 7
    from_vertex = M.true_edges(PID, X, Y, Z, PARTICLES)
    # particle 9 made at z = -30: 5 (10 mm), 6 (40), 3 (80)
    assert edge_set(from_vertex) == [(2, 4), (4, 0), (5, 6), (6, 3)]
    np.testing.assert_array_equal(np.sort(from_vertex.particle_id), [5, 5, 9, 9])
    with pytest.raises(ValueError, match="3 hit particle ids not in the particles table, e.g. 9"):
        M.true_edges(PID, X, Y, Z, {k: v[1:] for k, v in PARTICLES.items()})


def test_layerwise_true_edges():
    # particle 1: layer 0, two overlapping hits on layer 1, layer 2; particle 2 loops back
    pid = np.array([1, 1, 1, 1, 2, 2, 2, 0], np.uint64)
    x = np.array([10.0, 20.0, 21.0, 30.0, 10.0, 20.0, 30.0, 15.0])
    layer = np.array([0, 1, 1, 2, 0, 1, 0, 0])
    zeros = np.zeros(8)
    plain = M.true_edges(pid, x, zeros, zeros)
    assert edge_set(plain) == [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6)]
    wise = M.true_edges(pid, x, zeros, zeros, layer=layer)
    assert edge_set(wise) == [(0, 1), (0, 2), (1, 3), (2, 3), (4, 5), (5, 6)]
    np.testing.assert_array_equal(wise.particle_id, [1, 1, 1, 1, 2, 2])


def test_layerwise_true_edges_on_the_real_event(event_arrays):
    from hepjax.tracking import trackml as tm
    hits, particles, truth = event_arrays
    pid = truth["particle_id"]
    layer = tm.hit_features(hits)["layer"]
    plain = M.true_edges(pid, hits["x"], hits["y"], hits["z"], particles)
    wise = M.true_edges(pid, hits["x"], hits["y"], hits["z"], particles, layer=layer)
    assert len(plain.senders) == 4230
    same_layer = layer[plain.senders] == layer[plain.receivers]
    assert same_layer.sum() == 1117                                  # overlapping modules
    assert (layer[wise.senders] != layer[wise.receivers]).all()
    assert len(wise.senders) > len(plain.senders) - same_layer.sum()
    # every plain edge between layers is a layer-wise edge
    assert M.edge_labels(plain.senders[~same_layer], plain.receivers[~same_layer], wise).all()


# graph edges: true reversed, true below threshold, same particle not adjacent, noise, true
S = np.array([4, 0, 2, 1, 6])
R = np.array([2, 4, 0, 2, 5])
SC = np.array([0.9, 0.4, 0.8, 0.5, 0.7])


def test_edge_labels():
    truth = M.true_edges(PID, X, Y, Z)
    np.testing.assert_array_equal(M.edge_labels(S, R, truth), [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(M.same_particle_labels(S, R, PID), [1, 1, 1, 0, 1])


def test_edge_metrics_known_values():
    truth = M.true_edges(PID, X, Y, Z)
    m = M.edge_metrics(S, R, SC, truth, threshold=0.5)
    # selected (score >= 0.5, the noise edge at exactly 0.5 included): edges 0, 2, 3, 4
    assert m["n_selected"] == 4 and m["n_true_selected"] == 2 and m["purity"] == 0.5
    assert m["n_true"] == 4 and m["n_true_in_graph"] == 3 and m["n_true_found"] == 2
    assert m["efficiency"] == pytest.approx(2 / 3) and m["graph_efficiency"] == 0.75
    assert m["total_efficiency"] == 0.5 and m["graph_purity"] == 0.6
    # pT > 1 GeV: only particle 5's two true edges count for the efficiencies
    hi = M.edge_metrics(S, R, SC, truth, threshold=0.5, particles=PARTICLES, pt_min=1.0)
    assert hi["n_true"] == 2 and hi["efficiency"] == 0.5 and hi["graph_efficiency"] == 1.0
    assert hi["purity"] == 0.5
    nothing = M.edge_metrics(S, R, SC, truth, threshold=0.95)
    assert nothing["n_selected"] == 0 and np.isnan(nothing["purity"])
    assert nothing["efficiency"] == 0.0


def test_edge_efficiency_binned_known_values():
    truth = M.true_edges(PID, X, Y, Z)
    b = M.edge_efficiency_binned(S, R, SC, truth, PARTICLES, "pt", [0.0, 1.0, 5.0])
    # particle 9 (0.5 GeV): true edges (6,5) in graph and selected, (5,3) absent;
    # particle 5 (2 GeV): (2,4) selected, (4,0) in the graph below threshold
    np.testing.assert_array_equal(b["n_true"], [2, 2])
    np.testing.assert_array_equal(b["n_true_in_graph"], [1, 2])
    np.testing.assert_array_equal(b["n_true_found"], [1, 1])
    np.testing.assert_array_equal(b["efficiency"], [1.0, 0.5])
    np.testing.assert_array_equal(b["graph_efficiency"], [0.5, 1.0])
    hi = M.edge_efficiency_binned(S, R, SC, truth, PARTICLES, "eta", [-1, 1], pt_min=1.0)
    np.testing.assert_array_equal(hi["n_true"], [2])
    total = M.edge_metrics(S, R, SC, truth)
    assert b["n_true_found"].sum() == total["n_true_found"]


def test_edge_metrics_padding_and_errors():
    truth = M.true_edges(PID, X, Y, Z)
    s, r = np.r_[S, 7, -1], np.r_[R, 7, -1]
    sc, mask = np.r_[SC, 0.9, 0.9], np.r_[np.ones(5, bool), False, False]
    assert M.edge_metrics(s, r, sc, truth, edge_mask=mask) == M.edge_metrics(S, R, SC, truth)
    with pytest.raises(ValueError, match=r"senders out of range \[0, 7\) in 2 edges, e.g. edge 5"):
        M.edge_metrics(s, r, sc, truth)
    with pytest.raises(ValueError, match="scores has NaN in 1 edges"):
        M.edge_metrics(S, R, np.r_[SC[:4], np.nan], truth)
    with pytest.raises(ValueError, match="pt_min needs the particles table"):
        M.edge_metrics(S, R, SC, truth, pt_min=1.0)


def test_edge_roc_uses_hepjax_metrics():
    truth = M.true_edges(PID, X, Y, Z)
    fpr, tpr, thr, auc = M.edge_roc(S, R, SC, truth)
    # true scores {0.9, 0.4, 0.7} vs false {0.8, 0.5}: 3 of 6 pairs ordered right
    assert auc == pytest.approx(0.5)
    assert auc == pytest.approx(clf.roc_auc([1, 1, 0, 0, 1], SC))
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1, 1])


# --------------------------------------------------------------------------------------------
# Track matching
# --------------------------------------------------------------------------------------------

# particles A=1 (4 hits), B=2 (4), C=3 (2), D=4 (3), E=5 (6); noise 0 (2 hits)
HIT_PID = np.array([1, 1, 1, 2,   2, 2, 0,   2, 4, 4, 4,   1, 3, 3,   0,
                    5, 5, 5,   5, 5, 5], np.uint64)
TRACK = np.array([0, 0, 0, 0,   1, 1, 1,   2, 2, 2, 2,   3, 3, 3,   4,
                  5, 5, 5,   6, 6, 6])
# T0: A A A B -> A (3/4, 3/4) matched.   T1: B B noise -> B 2/3 but 2/4 of B: not matched.
# T2: B D D D -> D (3/4, 3/3) matched.   T3: A C C -> C (2/3, 2/2) matched.
# T4: one noise hit (< 3 hits: not a track).  T5, T6: E E E each, 3/6 of E: not matched,
# but both single-majority E tracks: one duplicate.
KIN = {"particle_id": np.array([1, 2, 3, 4, 5], np.uint64),
       "px": np.array([0.5, 2.0, 5.0, 0.8, 1.5]), "py": np.zeros(5),
       "pz": np.array([0.5 * np.sinh(1.0), 0, 0, 0, -1.5 * np.sinh(2.0)])}


def test_match_tracks_tables():
    m = M.match_tracks(TRACK, HIT_PID, min_track_hits=3)
    np.testing.assert_array_equal(m.track_id, [0, 1, 2, 3, 5, 6])
    np.testing.assert_array_equal(m.track_nhits, [4, 3, 4, 3, 3, 3])
    np.testing.assert_array_equal(m.track_major_particle, [1, 2, 4, 3, 5, 5])
    np.testing.assert_array_equal(m.track_major_nhits, [3, 2, 3, 2, 3, 3])
    np.testing.assert_array_equal(m.track_major_particle_nhits, [4, 4, 3, 2, 6, 6])
    np.testing.assert_array_equal(m.track_matched, [1, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(m.particle_id, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(m.particle_nhits, [4, 4, 2, 3, 6])
    np.testing.assert_array_equal(m.particle_matched, [1, 0, 1, 1, 0])
    np.testing.assert_array_equal(m.particle_n_majority_tracks, [1, 1, 1, 1, 2])


def test_track_metrics_known_values():
    m = M.track_metrics(TRACK, HIT_PID)            # min_hits = 3: A, B, D, E
    assert (m["n_particles"], m["n_matched"], m["efficiency"]) == (4, 2, 0.5)
    assert (m["n_tracks"], m["n_fake"], m["fake_rate"]) == (6, 3, 0.5)
    assert (m["n_majority_tracks"], m["n_duplicates"]) == (5, 1)
    assert m["duplicate_rate"] == pytest.approx(0.2)
    m2 = M.track_metrics(TRACK, HIT_PID, min_hits=2)            # C counts too
    assert m2["efficiency"] == pytest.approx(3 / 5)
    assert m2["duplicate_rate"] == pytest.approx(1 / 6)
    m1 = M.track_metrics(TRACK, HIT_PID, min_track_hits=1)       # T4 (noise only) is a fake track
    assert (m1["n_tracks"], m1["n_fake"]) == (7, 4)
    hi = M.track_metrics(TRACK, HIT_PID, KIN, pt_min=1.0)         # B and E
    assert (hi["n_particles"], hi["n_matched"], hi["efficiency"]) == (2, 0, 0.0)
    assert hi["fake_rate"] == 0.5                                 # tracks are not selected by pT
    assert hi["duplicate_rate"] == pytest.approx(1 / 3)
    central = M.track_metrics(TRACK, HIT_PID, KIN, eta_max=1.5)    # eta: A 1, E -2, others 0
    assert (central["n_particles"], central["n_matched"]) == (3, 2)
    with pytest.raises(ValueError, match="need the particles table"):
        M.track_metrics(TRACK, HIT_PID, pt_min=1.0)


def test_unassigned_hits_count_for_the_particle_not_the_track():
    pid = np.array([7, 7, 7, 7, 8, 8, 8], np.uint64)
    two = M.track_metrics([0, 0, -1, -1, 1, 1, 1], pid, min_track_hits=2)
    three = M.track_metrics([0, 0, 0, -1, 1, 1, 1], pid, min_track_hits=2)
    assert two["n_matched"] == 1 and three["n_matched"] == 2      # 2/4 is not a majority
    tie = M.match_tracks([0, 0, 0, 0], np.array([9, 9, 4, 4], np.uint64))
    assert tie.track_major_particle[0] == 4 and not tie.track_single_majority[0]


def test_track_metrics_binned_known_values():
    b = M.track_metrics_binned(TRACK, HIT_PID, KIN, "pt", [0.0, 1.0, 10.0])
    np.testing.assert_array_equal(b["n_particles"], [2, 2])      # A, D | B, E (C: 2 hits)
    np.testing.assert_array_equal(b["efficiency"], [1.0, 0.0])
    np.testing.assert_array_equal(b["efficiency_err"], [0.0, 0.0])
    np.testing.assert_array_equal(b["n_tracks"], [2, 4])         # T0, T2 | T1, T3, T5, T6
    np.testing.assert_array_equal(b["fake_rate"], [0.0, 0.75])
    np.testing.assert_array_equal(b["n_duplicates"], [0, 1])
    np.testing.assert_allclose(b["duplicate_rate"], [0.0, 1 / 3])
    e = M.track_metrics_binned(TRACK, HIT_PID, KIN, "eta", [-3, -1, 0.5, 3])
    np.testing.assert_array_equal(e["n_particles"], [1, 2, 1])   # E | B, D | A
    np.testing.assert_array_equal(e["n_matched"], [0, 1, 1])
    assert np.isnan(M.track_metrics_binned(TRACK, HIT_PID, KIN, "pt", [20, 30])["efficiency"][0])
    with pytest.raises(ValueError, match="increasing"):
        M.track_metrics_binned(TRACK, HIT_PID, KIN, "pt", [1.0, 0.0])


# --------------------------------------------------------------------------------------------
# TrackML score
# --------------------------------------------------------------------------------------------


def reference_score(truth_hit_id, truth_pid, weight, hit_id, track_id):
    """trackml-library's score_event, transcribed: merge the submission onto the truth by hit
    id, sort by (track_id, particle_id), and walk the rows keeping per track the particle with
    most hits so far (a later particle replaces it only with strictly more hits, so ties go to
    the smaller id); a track is good if its majority particle holds > 50 % of its hits and
    > 50 % of the particle's hits; the score is the good tracks' majority weight / total."""
    import pandas as pd
    truth = pd.DataFrame({"hit_id": truth_hit_id, "particle_id": truth_pid,
                          "weight": np.asarray(weight, np.float64)})
    sub = pd.DataFrame({"hit_id": hit_id, "track_id": track_id})
    n_of = truth["particle_id"].value_counts(sort=False)
    total = truth["weight"].sum()
    ev = truth.merge(sub, on="hit_id", how="left", validate="one_to_one")
    ev = ev.sort_values(["track_id", "particle_id"], kind="stable")
    rows = list(zip(ev["track_id"], ev["particle_id"], ev["weight"]))
    score, i = 0.0, 0
    while i < len(rows):
        track, j = rows[i][0], i
        best_p, best_n, best_w = None, 0, 0.0
        while j < len(rows) and rows[j][0] == track:
            p, n, w = rows[j][1], 0, 0.0
            while j < len(rows) and rows[j][0] == track and rows[j][1] == p:
                n, w, j = n + 1, w + rows[j][2], j + 1
            if n > best_n:
                best_p, best_n, best_w = p, n, w
        if best_n / (j - i) > 0.5 and best_n / n_of[best_p] > 0.5:
            score += best_w
        i = j
    return score / total


def test_trackml_score_hand_made():
    hit = np.arange(1, 9)
    pid = np.array([1, 1, 1, 1, 2, 2, 0, 0], np.uint64)
    w = np.array([0.1, 0.2, 0.2, 0.1, 0.2, 0.2, 0.0, 0.0])
    # track 10 = hits 1-3 (3/3 of the track, 3/4 of particle 1): good, 0.5; track 11 = hits
    # 4-7: its majority, particle 2, has only 2 of the 4 track hits: not good; track 12: noise
    sub_hit = np.array([8, 7, 6, 5, 4, 3, 2, 1])
    sub_trk = np.array([12, 11, 11, 11, 11, 10, 10, 10])
    assert M.trackml_score(hit, pid, w, sub_hit, sub_trk) == pytest.approx(0.5)
    assert M.trackml_score(hit, pid, w, sub_hit, sub_trk, normalize=False) == pytest.approx(0.5)
    # moving hit 4 to the noise track makes track 11 (5, 6, 7) good: 2/3 and 2/2
    sub_trk2 = np.array([12, 11, 11, 11, 12, 10, 10, 10])
    assert M.trackml_score(hit, pid, w, sub_hit, sub_trk2) == pytest.approx(0.9)
    assert M.score_event({"hit_id": hit, "particle_id": pid, "weight": 2 * w},
                         {"hit_id": sub_hit, "track_id": sub_trk2}) == pytest.approx(0.9)
    for trk in (sub_trk, sub_trk2):
        assert M.trackml_score(hit, pid, w, sub_hit, trk) == \
            pytest.approx(reference_score(hit, pid, w, sub_hit, trk))
    with pytest.raises(ValueError, match="lacks 1 of 8 truth hits, e.g. hit_id 1"):
        M.trackml_score(hit, pid, w, sub_hit[:7], sub_trk[:7])
    with pytest.raises(ValueError, match="negative track ids"):
        M.trackml_score(hit, pid, w, sub_hit, sub_trk - 11)
    with pytest.raises(ValueError, match="duplicated hit ids in the submission"):
        M.trackml_score(hit, pid, w, np.r_[sub_hit[:7], 2], sub_trk)


@pytest.fixture(scope="module")
def truth(event_arrays):
    return event_arrays[2]


def test_trackml_score_on_the_real_event_against_the_reference(truth):
    rng = np.random.default_rng(24)
    hit, pid, w = truth["hit_id"], truth["particle_id"], truth["weight"]
    _, perfect = np.unique(pid, return_inverse=True)            # track = particle, noise = one
    random = rng.integers(0, 600, len(hit))
    shuffled = np.where(rng.random(len(hit)) < 0.1, rng.integers(0, 600, len(hit)), perfect)
    split = perfect * 2 + (rng.random(len(hit)) < 0.3)            # ~30 % of each particle split off
    merged = perfect // 2                                          # pairs of particles merged
    scores = {}
    for name, trk in [("perfect", perfect), ("random", random), ("shuffled", shuffled),
                      ("split", split), ("merged", merged)]:
        order = rng.permutation(len(hit))                          # submission order is free
        scores[name] = M.trackml_score(hit, pid, w, hit[order], trk[order])
        assert scores[name] == pytest.approx(reference_score(hit, pid, w, hit[order], trk[order]),
                                             abs=1e-12), name
    assert scores["perfect"] == pytest.approx(1.0, abs=1e-12)
    assert scores["random"] < 0.01
    assert 0.8 < scores["shuffled"] < 1.0 and 0.5 < scores["split"] < 1.0
    assert scores["merged"] < 0.8
    # unnormalised, the perfect score is the file's weight sum (a ~5 % subsample of the event)
    assert M.trackml_score(hit, pid, w, hit, perfect, normalize=False) == \
        pytest.approx(0.0512628, abs=2e-6)
