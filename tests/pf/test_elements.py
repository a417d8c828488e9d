"""hepjax.pf.elements / events / baseline on hand-made particles (no Pythia): clustering, target
assignment, determinism, file round trip and errors, and the E-flow arithmetic in closed form."""
import dataclasses
import math

import numpy as np
import pytest

from hepjax.data import detector as det
from hepjax.pf import baseline, elements as el, events as pfe

# a detector whose tracking is 100 % efficient above 0.1 GeV (the card's tables otherwise)
_ALWAYS = ((1.5, ((math.inf, 1.0),)), (2.5, ((math.inf, 1.0),)))
CFG = el.ElementConfig(detector=dataclasses.replace(
    det.DetectorConfig(), hadron_efficiency=_ALWAYS, electron_efficiency=_ALWAYS,
    muon_efficiency=_ALWAYS))


def _particles(rows):
    """rows: (event, pt, eta, phi, pid, charge, mass)."""
    r = np.array(rows, np.float64)
    ev, pt, eta, phi, pid, q, m = r.T
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px ** 2 + py ** 2 + pz ** 2 + m ** 2)
    return {"event": ev.astype(int), "px": px, "py": py, "pz": pz, "E": e, "pid": pid.astype(int),
            "charge": q, "pileup": np.zeros(len(ev), bool)}


def _types(out):
    return out["features"][:, 0].astype(int)


def test_single_photon_makes_one_ecal_cluster_with_its_target():
    p = _particles([(0, 50.0, 0.31, 0.7, 22, 0, 0)])
    out = el.make_elements(p, np.random.default_rng(1), CFG)
    assert _types(out).tolist() == [el.ECAL]
    f = out["features"][0]
    # energy within 5 sigma of the stochastic resolution (0.101 sqrt(E)) and noise
    e_true = 50 * math.cosh(0.31)
    assert abs(f[5] - e_true) < 5 * math.sqrt(0.101 ** 2 * e_true + 9 * 0.03 ** 2)
    assert abs(f[2] - 0.31) < 0.01 and abs(math.atan2(f[3], f[4]) - 0.7) < 0.01
    assert out["target_class"].tolist() == [3]
    np.testing.assert_allclose(out["target"][0], [50.0, 0.31, 0.7, e_true], rtol=1e-5)
    assert out["particle_element"].tolist() == [0]


def test_charged_pion_gives_a_track_at_its_helix_impact_and_the_cluster_no_target():
    p = _particles([(0, 20.0, -0.5, 2.0, 211, 1, 0.1396)])
    out = el.make_elements(p, np.random.default_rng(2), CFG)
    types = _types(out)
    assert sorted(types.tolist()) == [el.TRACK, el.HCAL]
    t = out["features"][types == el.TRACK][0]
    pos_eta, pos_phi, _ = det.propagate(20.0, -0.5, 2.0, 1.0, CFG.detector)
    np.testing.assert_allclose([t[6], math.atan2(t[7], t[8])], [pos_eta, pos_phi], atol=1e-5)
    assert abs(t[1] / 20.0 - 1) < 5 * 0.06   # smeared with the card's |eta| <= 0.5 resolution
    assert out["target_class"][types == el.TRACK].tolist() == [1]
    assert out["target_class"][types == el.HCAL].tolist() == [0]   # the pion is the track's
    assert out["track_pid"][types == el.TRACK].tolist() == [211]


def test_nearby_photons_merge_and_distant_ones_do_not():
    close = _particles([(0, 30.0, 0.0, 0.0, 22, 0, 0), (0, 10.0, 0.012, 0.012, 22, 0, 0)])
    out = el.make_elements(close, np.random.default_rng(3), CFG)
    assert _types(out).tolist() == [el.ECAL]
    assert out["target_class"].tolist() == [3]
    np.testing.assert_allclose(out["target"][0, 3], 30 + 10 * math.cosh(0.012), rtol=1e-4)
    assert out["particle_element"].tolist() == [0, 0]
    far = _particles([(0, 30.0, 0.0, 0.0, 22, 0, 0), (0, 10.0, 0.5, 1.0, 22, 0, 0)])
    out = el.make_elements(far, np.random.default_rng(3), CFG)
    assert _types(out).tolist() == [el.ECAL, el.ECAL]
    assert sorted(out["particle_element"].tolist()) == [0, 1]


def test_events_are_separate_and_results_are_deterministic():
    p = _particles([(0, 30.0, 0.0, 0.0, 22, 0, 0), (1, 30.0, 0.0, 0.0, 22, 0, 0),
                    (1, 5.0, 1.0, -1.0, 211, -1, 0.1396), (2, 40.0, -1.2, 3.0, 130, 0, 0.5)])
    a = el.make_elements(p, np.random.default_rng(7), CFG)
    b = el.make_elements(p, np.random.default_rng(7), CFG)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert np.bincount(a["element_event"]).tolist() == [1, 3, 1]
    assert a["target_class"][a["element_event"] == 2].tolist() == [2]   # K_L: neutral hadron


def test_missing_field_is_a_clear_error():
    p = _particles([(0, 30.0, 0.0, 0.0, 22, 0, 0)])
    del p["pileup"]
    with pytest.raises(ValueError, match="'pileup'"):
        el.make_elements(p, np.random.default_rng(0), CFG)


def _file_data():
    p = _particles([(0, 30.0, 0.0, 0.0, 22, 0, 0), (1, 5.0, 1.0, -1.0, 211, -1, 0.1396),
                    (1, 40.0, -1.2, 3.0, 130, 0, 0.5)])
    out = el.make_elements(p, np.random.default_rng(0), CFG)
    for src, name in (("element_event", "element_offsets"), ("particle_event", "particle_offsets")):
        out[name] = np.concatenate([[0], np.cumsum(np.bincount(out.pop(src), minlength=2))])
    return out


def test_file_round_trip_and_reader_errors(tmp_path):
    data = _file_data()
    path = tmp_path / "pf.h5"
    pfe.write(path, data, {"process": "test"})
    ev = pfe.read(path)
    assert len(ev) == 2 and ev.meta["process"] == "test"
    np.testing.assert_array_equal(ev[1]["features"], data["features"][data["element_offsets"][1]:])
    x, y, t, m = ev.padded([0, 1], 8)
    assert x.shape == (2, 8, len(el.FEATURES)) and m.sum() == len(data["features"])
    with pytest.raises(ValueError, match="n_max=1"):
        ev.padded([1], 1)
    with pytest.raises(FileNotFoundError, match="no such particle-flow file"):
        pfe.read(tmp_path / "missing.h5")
    import h5py
    with h5py.File(path, "a") as f:
        del f["target"]
    with pytest.raises(ValueError, match="missing dataset 'target'"):
        pfe.read(path)
    bad = dict(data)
    bad["features"] = data["features"][:, :5]
    pfe.write(tmp_path / "bad.h5", bad, {})
    with pytest.raises(ValueError, match=r"'features' has shape .*expected \(M, 14\)"):
        pfe.read(tmp_path / "bad.h5")


def _row(typ, pt=0.0, eta=0.0, phi=0.0, energy=0.0, res=0.0, n_cells=1):
    f = np.zeros(len(el.FEATURES), np.float32)
    f[:] = [typ, pt, eta, math.sin(phi), math.cos(phi), energy, eta, math.sin(phi), math.cos(phi),
            1 if typ == el.TRACK else 0, res, 0.0, 0.0, 0 if typ == el.TRACK else n_cells]
    return f


def test_baseline_subtracts_linked_tracks_as_delphes():
    # a 20 GeV track (5 % resolution) pointing at a 50 GeV HCal cluster: neutral excess 30 GeV,
    # significance 30 / sqrt(1 + sigma^2) > 2 -> a neutral hadron of exactly 30 GeV
    rows = np.stack([_row(el.TRACK, 20.0, 0.0, 1.0, 20.0, 0.05),
                     _row(el.HCAL, 50.0, 0.02, 1.01, 50.0), _row(el.ECAL, 8.0, -1.0, -2.0, 8.0 * math.cosh(1.0))])
    cls, cand = baseline.reconstruct_event(rows, np.array([211, 0, 0]), CFG)
    assert cls.tolist() == [1, 2, 3]
    np.testing.assert_allclose(cand[1, 3], 30.0, rtol=1e-6)
    np.testing.assert_allclose(cand[0], [20.0, 0.0, 1.0, 20.0], rtol=1e-6)   # track unchanged
    np.testing.assert_allclose(cand[2, 3], 8.0 * math.cosh(1.0), rtol=1e-6)
    # a cluster compatible with the track: no neutral; the track moves to the inverse-variance
    # mean of (track, cluster) energies
    rows[1, 5] = rows[1, 1] = 21.0
    cls, cand = baseline.reconstruct_event(rows, np.array([211, 0, 0]), CFG)
    assert cls.tolist() == [1, 0, 3]
    sigma2 = det.calo_resolution(21.0, 0.02, CFG.hcal_resolution) ** 2 + CFG.hcal_noise ** 2
    w_t, w_c = 1 / (0.05 * 20) ** 2, 1 / sigma2
    np.testing.assert_allclose(cand[0, 3], (w_t * 20 + w_c * 21) / (w_t + w_c), rtol=1e-5)
    # a muon track is never linked to the calorimeters
    cls, cand = baseline.reconstruct_event(rows, np.array([13, 0, 0]), CFG)
    assert cls[0] == 5 and cls[1] == 2 and np.isclose(cand[1, 3], 21.0)
