"""experiments/calo_clustering: the matching metrics on hand-made events, and the smoke variant
end to end (events, training, tuning, inference, CLUE, metrics, table, plots)."""
import json
import math

import numpy as np
import pytest

from experiments.calo_clustering import metrics, run


def test_matching_rule_on_hand_made_events():
    # particles 0 and 1; share[h, p]; four hits of 1 GeV signal each, no noise energy
    share = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    e = share.sum(1)
    perfect = metrics.match_event(share, e, np.array([0, 0, 1, 1]), 2)
    assert perfect["particle_match"].tolist() == [0, 1]
    assert perfect["object_match"].tolist() == [0, 1]
    # both particles in one object: it holds exactly 50 % of the energy of each -> no match
    merged = metrics.match_event(share, e, np.array([0, 0, 0, 0]), 1)
    assert merged["particle_match"].tolist() == [-1, -1] and merged["object_match"].tolist() == [-1]
    # particle 0 split in halves: not > 50 % of its energy in either half
    split = metrics.match_event(share, e, np.array([0, 1, 2, 2]), 3)
    assert split["particle_match"].tolist() == [-1, 2]
    assert split["object_match"].tolist() == [-1, -1, 1]
    # a mostly-noise object that steals one hit of particle 1: that particle keeps 1 GeV of 2
    noisy_e = e + np.array([0, 0, 5.0, 0])
    stolen = metrics.match_event(share, noisy_e, np.array([0, 0, 1, 2]), 3)
    assert stolen["particle_match"].tolist() == [0, -1]
    assert stolen["object_best"].tolist() == [0, 1, 1]
    # unlabelled hits (-1) belong to no object
    none = metrics.match_event(share, e, np.array([-1, -1, -1, -1]), 0)
    assert none["particle_match"].tolist() == [-1, -1] and none["S"].shape == (2, 0)


def test_binomial_and_response():
    b = metrics.binomial(3, 4)
    assert b["value"] == 0.75 and math.isclose(b["error"], math.sqrt(0.75 * 0.25 / 4))
    assert math.isnan(metrics.binomial(0, 0)["value"])
    rows = {"p_matched": np.array([True, True, True, False]),
            "p_energy": np.array([20.0, 20.0, 120.0, 50.0]),
            "p_reco_e": np.array([18.0, 22.0, 120.0, np.nan]),
            "p_pdg": np.array([11, 22, 211, 11])}
    t = metrics.response_table(rows)
    first = t["all"]["bins"][0]
    assert first["n"] == 2 and math.isclose(first["median"], 1.0)
    assert t["hadron"]["inclusive"]["n"] == 1 and t["em"]["inclusive"]["n"] == 2


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("calo_smoke")
    results = run.main(["--variant", "smoke", "--workdir", str(workdir)])
    return workdir, results


def test_smoke_run_writes_every_output(smoke_run):
    workdir, results = smoke_run
    for name in ("results.json", "table.md", "efficiency.png", "response.png", "loss.png",
                 "event_display.png", "model.pkl"):
        assert (workdir / name).stat().st_size > 0, name
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["variant"] == "smoke"
    # the close-pair training events were generated and appended to the mixed ones
    from hepjax.sim import io
    pairs = io.read_events(next((workdir / "data").glob("smoke_*_trainpairs_16_*.h5")))
    assert len(pairs["n_hits"]) == 16 and (pairs["n_particles"] == 2).all()
    d = np.linalg.norm(pairs["particle_position"][:, 0, :2] - pairs["particle_position"][:, 1, :2],
                       axis=-1)
    assert ((d > 0.4) & (d < 5.1)).all()           # entry points 0.5-5 cm apart (z = face)
    assert saved["events"]["train_pairs"] == 16
    table = (workdir / "table.md").read_text()
    assert "object efficiency" in table and "Two-shower separation" in table
    # training ran and its loss came down
    log = results["training"]["log"]
    assert len(log) == 3 and log[-1]["loss"] < log[0]["loss"]


def test_smoke_metrics_are_consistent_with_the_events(smoke_run):
    workdir, results = smoke_run
    from hepjax.sim import io
    test_file = next((workdir / "data").glob("smoke_*_test_*.h5"))
    pe = io.read_events(test_file)
    n_visible = sum(int((pe["hit_fraction"][e] * pe["hit_signal_energy"][e][:, None]).sum(0)
                        .__gt__(0).sum()) for e in range(len(pe["n_hits"])))
    for alg in ("network", "clue"):
        s = results[alg]["summary"]
        assert s["efficiency"]["n"] == n_visible
        assert s["efficiency_close"]["n"] + s["efficiency_isolated"]["n"] == n_visible
        for key in ("efficiency", "fake_rate", "efficiency_close", "fake_rate_above_1gev"):
            b = s[key]
            if b["n"]:
                assert 0 <= b["value"] <= 1 and b["value"] == b["k"] / b["n"]
        pairs = results[alg]["pairs"]
        assert [p["distance_cm"] for p in pairs] == [1.0, 3.0, 10.0]
        assert all(p["both_found"]["n"] == 6 for p in pairs)
    assert 0 <= results["network"]["type_accuracy"]["value"] <= 1
    # the truth clustering itself is (nearly) perfect under the matching rule, random labels
    # are not: the metrics respond to the clustering
    labels = np.where(pe["hit_mask"], pe["hit_dominant"], -1)
    energies = [np.bincount(np.maximum(labels[e], 0)[labels[e] >= 0],
                            weights=pe["hit_energy"][e][labels[e] >= 0],
                            minlength=int(pe["n_particles"][e])) for e in range(len(labels))]
    truth = metrics.summarize(metrics.evaluate(pe, labels, energies, close_distance=run.CLOSE))
    assert truth["efficiency"]["value"] > 0.9 and truth["fake_rate"]["value"] < 0.1
    rng = np.random.default_rng(0)
    shuffled = np.where(pe["hit_mask"], rng.integers(0, 4, labels.shape), -1)
    rand = metrics.summarize(metrics.evaluate(
        pe, shuffled, [np.ones(4)] * len(labels), close_distance=run.CLOSE))
    assert rand["efficiency"]["value"] < 0.5


def test_working_points_reproduce_the_run_from_the_cached_outputs(smoke_run):
    """working_points.py re-evaluates thresholds from the cached network outputs
    (predictions_*.npz): at the run's own thresholds it gives exactly the run's numbers, and a
    threshold that admits every hit as a condensation point gives different ones."""
    from experiments.calo_clustering import working_points
    workdir, results = smoke_run
    net = results["network"]
    for split in ("val", "test", "pairs"):
        assert (workdir / f"predictions_{split}.npz").stat().st_size > 0
    tdh = "none" if net["t_d_hadron"] is None else str(net["t_d_hadron"])
    same, other = working_points.main(["--workdir", str(workdir),
                                       f"{net['t_beta']},{net['t_d']},{tdh},{net['reach']}",
                                       "0.0,0.01,none"])
    assert same["summary"] == json.loads(json.dumps(net["summary"]))
    assert same["pairs_closer_than_2RM"] == net["pairs_closer_than_2RM"]
    assert other["summary"]["fake_rate"]["value"] != net["summary"]["fake_rate"]["value"]
    with pytest.raises(ValueError, match="t_beta,t_d,t_d_hadron"):
        working_points._point("0.5,0.5")
    assert working_points._point("0.5,0.6,none") == (0.5, 0.6, None, 1.0)
    # the search tried the collection radius at the best grid point (smoke: reach 1 and 2)
    reaches = {t["reach"] for t in net["tuning"]}
    assert reaches == {1.0, 2.0} and net["reach"] in reaches


def test_composition_of_matched_particles_against_a_hand_count():
    """composition_table: missing = 1 - S/V of the particle, foreign = 1 - S/E of its object,
    on a two-particle event counted by hand."""
    # hits: (signal energy, fraction of particle 0, of particle 1, measured energy)
    padded = {"hit_mask": np.ones((1, 4), bool),
              "hit_signal_energy": np.array([[4.0, 4.0, 2.0, 0.0]]),
              "hit_fraction": np.array([[[1, 0], [1, 0], [0, 1], [0, 0]]], float),
              "hit_energy": np.array([[4.0, 4.0, 2.0, 1.0]]),
              "n_particles": np.array([2]), "particle_energy": np.array([[8.0, 2.0]]),
              "particle_pdg": np.array([[11, 211]]),
              "particle_position": np.array([[[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]])}
    # object 0 = hits 0 and 3 (particle 0: 4 of 8 visible is not > 50 %: unmatched)
    rows = metrics.evaluate(padded, np.array([[0, -1, 1, 0]]), [np.ones(2)], close_distance=2.0)
    assert not rows["p_matched"][0] and rows["p_matched"][1]
    # object 0 = hits 0, 1, 3: particle 0 complete, 8 of the object's 9 GeV its own
    rows = metrics.evaluate(padded, np.array([[0, 0, 1, 0]]), [np.ones(2)], close_distance=2.0)
    comp = metrics.composition_table(rows)
    assert comp["em"]["n"] == 1 and comp["em"]["missing"] == 0.0
    assert abs(comp["em"]["foreign"] - 1 / 9) < 1e-12
    assert comp["hadron"]["missing"] == 0.0 and comp["hadron"]["foreign"] == 0.0
    assert comp["all"]["n"] == 2
