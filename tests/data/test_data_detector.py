"""The fast detector: resolutions and efficiencies measured back from its output match its settings."""
import numpy as np

from hepjax.data import detector as det

CFG = det.DetectorConfig()


def _particles(n, pt, eta, pid, charge, mass=0.0, rng=None):
    """n single-particle events with the given pT (GeV), eta, random phi."""
    rng = rng or np.random.default_rng(0)
    phi = rng.uniform(-np.pi, np.pi, n)
    pt = np.full(n, pt, np.float64)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(np.full(n, eta))
    e = np.sqrt(px ** 2 + py ** 2 + pz ** 2 + mass ** 2)
    return {"event": np.arange(n), "px": px, "py": py, "pz": pz, "E": e,
            "pid": np.full(n, pid), "charge": np.full(n, charge, np.float64)}


def test_track_resolution_and_efficiency_central():
    n, pt = 20000, 100.0
    out = det.simulate(_particles(n, pt, 0.5, 211, 1.0, 0.1396), np.random.default_rng(1))
    tracks = out["pid"] == 211
    eff = tracks.sum() / n
    assert abs(eff - CFG.eff_high_central) < 4 * np.sqrt(eff * (1 - eff) / n)
    measured = np.hypot(out["px"][tracks], out["py"][tracks]) / pt - 1
    expected = np.sqrt(CFG.track_res_a ** 2 + (CFG.track_res_b_central * pt) ** 2)
    np.testing.assert_allclose(measured.std(), expected, rtol=0.03)
    assert abs(measured.mean()) < 4 * expected / np.sqrt(tracks.sum())
    # untracked charged pions end up in the HCAL
    assert np.sum(out["pid"] == 130) > 0.8 * (n - tracks.sum())


def test_track_efficiency_forward_low_pt_and_outside_tracker():
    rng = np.random.default_rng(2)
    out = det.simulate(_particles(20000, 0.7, 2.0, -211, -1.0, 0.1396, rng), rng)
    eff = np.mean(out["pid"] == -211) * len(out["pid"]) / 20000
    assert abs(eff - CFG.eff_low_forward) < 0.02
    assert np.all(out["charge"][out["pid"] == -211] == -1)
    out = det.simulate(_particles(100, 50.0, 3.0, 211, 1.0), rng)
    assert not np.any(out["pid"] == 211)


def test_ecal_and_hcal_energy_resolution():
    for pid, a, c in ((22, CFG.ecal_stochastic, CFG.ecal_constant),
                      (2112, CFG.hcal_stochastic, CFG.hcal_constant)):
        n, pt, eta = 20000, 40.0, 0.3
        parts = _particles(n, pt, eta, pid, 0.0, rng=np.random.default_rng(3))
        out = det.simulate(parts, np.random.default_rng(4))
        assert len(out["E"]) == n          # every tower far above threshold
        e_true = pt * np.cosh(eta)
        measured = out["E"] / e_true - 1
        np.testing.assert_allclose(measured.std(), np.sqrt(a ** 2 / e_true + c ** 2), rtol=0.03)
        # towers are massless, at the cell centre
        p = np.sqrt(out["px"] ** 2 + out["py"] ** 2 + out["pz"] ** 2)
        np.testing.assert_allclose(p, out["E"], rtol=1e-9)


def test_towers_sum_energy_and_threshold_and_neutrinos():
    # two photons in the same ECAL cell of one event merge; a neutrino and a muon outside the
    # tracker leave nothing; a 0.1 GeV photon is below threshold
    parts = {"event": np.array([0, 0, 0, 0, 1]), "px": np.array([10.0, 10.001, 5.0, 5.0, 0.1]),
             "py": np.zeros(5), "pz": np.array([0, 0, 0, 50.0, 0]),
             "E": np.array([10.0, 10.001, 5.0, np.hypot(5, 50), 0.1]),
             "pid": np.array([22, 22, 12, 13, 22]), "charge": np.array([0, 0, 0, -1.0, 0])}
    cfg = det.DetectorConfig(ecal_stochastic=0.0, ecal_constant=0.0)
    out = det.simulate(parts, np.random.default_rng(0), cfg)
    assert len(out["E"]) == 1 and out["event"][0] == 0
    np.testing.assert_allclose(out["E"][0], 20.001)


def test_seeded():
    parts = _particles(500, 20.0, 1.0, 211, 1.0)
    a = det.simulate(parts, np.random.default_rng(9))
    b = det.simulate(parts, np.random.default_rng(9))
    c = det.simulate(parts, np.random.default_rng(10))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["px"][:10], c["px"][:10]) or len(a["px"]) != len(c["px"])
