"""The Delphes-ATLAS-like energy flow against the card's numbers, closed forms and its physics.

The card numbers below are copied from delphes/cards/delphes_card_ATLAS.tcl (Delphes 3.4.x), not
from DetectorConfig, so a changed default fails here."""
import dataclasses

import numpy as np
import pytest
from scipy import optimize, stats

from hepjax.data import detector as det

CFG = det.DetectorConfig()
PION_MASS, ELECTRON_MASS, MUON_MASS, NEUTRON_MASS = 0.13957, 0.000511, 0.10566, 0.93957


def _particles(n, pt, eta, pid, charge, mass=0.0, seed=0, phi=None):
    """n single-particle events with the given pT (GeV), eta and random (or given) phi."""
    phi = np.random.default_rng(seed).uniform(-np.pi, np.pi, n) if phi is None else np.full(n, phi)
    pt = np.full(n, pt, np.float64)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(np.full(n, eta))
    e = np.sqrt(px ** 2 + py ** 2 + pz ** 2 + mass ** 2)
    return {"event": np.arange(n), "px": px, "py": py, "pz": pz, "E": e,
            "pid": np.full(n, pid), "charge": np.full(n, charge, np.float64)}


def _per_event(out, n, pid=None):
    sel = np.ones(len(out["E"]), bool) if pid is None else np.isin(out["pid"], pid)
    count = np.bincount(out["event"][sel], minlength=n)
    energy = np.bincount(out["event"][sel], weights=out["E"][sel], minlength=n)
    return count, energy


# ---- the card's formulas, closed form --------------------------------------------------------

@pytest.mark.parametrize("pid,bands", [
    (211, ((0.5, 0.06, 1.3e-3), (1.5, 0.10, 1.7e-3), (2.5, 0.25, 3.1e-3))),    # ChargedHadron
    (-321, ((0.5, 0.06, 1.3e-3), (1.5, 0.10, 1.7e-3), (2.5, 0.25, 3.1e-3))),
    (11, ((0.5, 0.03, 1.3e-3), (1.5, 0.05, 1.7e-3), (2.5, 0.15, 3.1e-3))),     # Electron
    (-13, ((0.5, 0.01, 1.0e-4), (1.5, 0.015, 1.5e-4), (2.5, 0.025, 3.5e-4)))])  # Muon
def test_track_momentum_resolution_is_the_cards(pid, bands):
    eta_lo = 0.0
    for eta_hi, a, b in bands:
        for eta in (eta_lo + 1e-3, 0.5 * (eta_lo + eta_hi), eta_hi):
            for pt in (0.2, 1.0, 10.0, 150.0):
                expected = min(np.sqrt(a ** 2 + pt ** 2 * b ** 2), 1.0)
                for sign in (1, -1):
                    got = det.track_resolution(pid, pt, sign * eta)
                    np.testing.assert_allclose(got, expected, rtol=1e-12)
        eta_lo = eta_hi
    assert det.track_resolution(pid, 0.1, 0.0) == 0 and det.track_resolution(pid, 10.0, 2.51) == 0
    if abs(pid) != 13:   # b pT > 1 at very high pT: capped at 100% (MomentumSmearing)
        assert det.track_resolution(pid, 2000.0, 2.0) == 1.0


def test_track_efficiency_is_the_cards():
    table = {  # (pid, pT, |eta|) -> efficiency, the card's EfficiencyFormula lines
        (211, 0.05, 0.0): 0.0, (211, 0.5, 0.0): 0.70, (211, 1.0, 1.5): 0.70,
        (211, 1.01, 1.5): 0.95, (211, 500.0, 0.3): 0.95, (211, 0.5, 1.51): 0.60,
        (211, 50.0, 2.5): 0.85, (211, 50.0, 2.51): 0.0,
        (11, 0.5, 0.0): 0.73, (11, 50.0, 1.0): 0.95, (11, 100.0, 1.0): 0.95,
        (11, 150.0, 1.0): 0.99, (11, 0.5, 2.0): 0.50, (11, 50.0, 2.0): 0.83,
        (11, 150.0, 2.0): 0.90, (11, 0.1, 0.0): 0.0,
        (13, 0.5, 0.0): 0.75, (13, 50.0, 1.0): 0.99, (13, 0.5, 2.0): 0.70, (13, 50.0, 2.4): 0.98,
        (13, 50.0, 3.0): 0.0}
    for (pid, pt, eta), eff in table.items():
        for p, e in ((pid, eta), (-pid, -eta)):
            assert det.track_efficiency(p, pt, e) == eff, (p, pt, e)
    assert det.track_efficiency(2212, 5.0, 0.2) == 0.95   # any charged hadron


@pytest.mark.parametrize("calo,eta,c,s,n", [
    ("ecal", 0.0, 0.0017, 0.101, 0.0), ("ecal", 3.2, 0.0017, 0.101, 0.0),
    ("ecal", 3.3, 0.0350, 0.285, 0.0), ("ecal", -4.9, 0.0350, 0.285, 0.0),
    ("hcal", 0.0, 0.0302, 0.5205, 1.59), ("hcal", -1.7, 0.0302, 0.5205, 1.59),
    ("hcal", 1.75, 0.0500, 0.706, 0.0), ("hcal", 3.2, 0.0500, 0.706, 0.0),
    ("hcal", 3.4, 0.09420, 1.00, 0.0), ("hcal", 4.9, 0.09420, 1.00, 0.0)])
def test_calorimeter_resolution_is_the_cards(calo, eta, c, s, n):
    bands = getattr(CFG, f"{calo}_resolution")
    energy = np.array([0.0, 0.7, 5.0, 50.0, 800.0])
    expected = np.sqrt(energy ** 2 * c ** 2 + energy * s ** 2 + n ** 2)
    np.testing.assert_allclose(det.calo_resolution(energy, eta, bands), expected, rtol=1e-12)
    assert np.all(det.calo_resolution(energy, 4.95, bands) == 0)   # beyond the formula


def test_thresholds_fractions_and_geometry_are_the_cards():
    assert (CFG.ecal_energy_min, CFG.hcal_energy_min) == (0.5, 1.0)
    assert CFG.ecal_significance_min == CFG.hcal_significance_min == 2.0
    assert (CFG.radius, CFG.half_length, CFG.bz) == (1.15, 3.51, 2.0)
    pids = np.array([11, -11, 22, 111, 211, -321, 2112, 130, 13, 12, -16, 310, 3122, 1000022])
    np.testing.assert_array_equal(det.energy_fraction(pids, CFG.ecal_fractions),
                                  [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0.3, 0.3, 0])
    np.testing.assert_array_equal(det.energy_fraction(pids, CFG.hcal_fractions),
                                  [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0.7, 0.7, 0])
    # ECal: 0.0174 x 1 degree cells to |eta| 2.958, 36 phi cells in the forward part to 5
    edges, nphi = np.array(CFG.ecal_eta_edges), np.array(CFG.ecal_nphi)
    assert edges[0] == -5 and edges[-1] == 5 and len(nphi) == len(edges) - 1
    central = (edges[1:] <= 1.4964 + 1e-9) & (edges[:-1] >= -1.4964 - 1e-9)
    np.testing.assert_allclose(np.diff(edges)[central], 0.0174, atol=1e-12)
    assert set(nphi[central]) == {360} and nphi[0] == 36 and nphi[-1] == 36
    # HCal: 0.1 x 10 degree cells in |eta| < 2.5, 20 degrees in the forward part
    edges, nphi = np.array(CFG.hcal_eta_edges), np.array(CFG.hcal_nphi)
    assert edges[0] == -4.9 and edges[-1] == 4.9
    central = (edges[:-1] >= -2.5 - 1e-9) & (edges[1:] <= 2.5 + 1e-9)
    np.testing.assert_allclose(np.diff(edges)[central], 0.1, atol=1e-9)
    assert set(nphi[central]) == {36} and nphi[0] == 18 and nphi[-1] == 18


def test_log_normal_has_the_given_mean_and_width():
    z = np.random.default_rng(0).standard_normal(400_000)
    for mean, sigma in ((10.0, 1.0), (2.0, 1.7), (1.0, 0.0)):
        x = det.log_normal(mean, sigma, z)
        np.testing.assert_allclose(x.mean(), mean, rtol=5e-3)
        np.testing.assert_allclose(x.std(), sigma, rtol=1e-2, atol=1e-12)
        assert np.all(x >= 0)
    assert np.all(det.log_normal(0.0, 1.0, z[:10]) == 0)


def _delphes_helix_exit(pt, eta, phi, q, cfg=CFG):
    """The exit point of ParticlePropagator's helix x(t) = x_c + r sin(omega t - phi_0), ...
    from the origin, found by scanning its time parameter (an independent, brute-force form)."""
    r = pt / (q * cfg.bz) / 0.299792458            # signed, m
    x_c, y_c = r * np.sin(phi), -r * np.cos(phi)
    phase = np.linspace(0, 40 * np.pi, 4_000_001) * np.sign(r)   # omega t
    x, y = x_c + r * np.sin(phase - phi), y_c + r * np.cos(phase - phi)
    z = np.sinh(eta) * np.abs(r) * np.abs(phase)   # dz / d(transverse arc) = pz / pT
    out = np.flatnonzero((np.hypot(x, y) > cfg.radius) | (np.abs(z) > cfg.half_length))[0]
    return np.arcsinh(z[out] / np.hypot(x[out], y[out])), np.arctan2(y[out], x[out])


@pytest.mark.parametrize("pt,eta,q", [(1.0, 0.0, 1), (1.0, 0.0, -1), (5.0, 1.0, 1),
                                      (0.7, 2.0, -1), (0.3, 1.2, 1), (50.0, -1.5, -1)])
def test_propagation_matches_the_delphes_helix(pt, eta, q):
    phi = 0.4
    want_eta, want_phi = _delphes_helix_exit(pt, eta, phi, q)
    got_eta, got_phi, ok = det.propagate(pt, eta, phi, q)
    assert ok
    np.testing.assert_allclose(got_eta, want_eta, atol=2e-3)
    np.testing.assert_allclose(got_phi, want_phi, atol=2e-3)
    # neutral: straight line, position = direction
    assert det.propagate(pt, eta, phi, 0.0)[:2] == (eta, phi)


# ---- the energy flow, statistically -----------------------------------------------------------

def test_charged_hadron_tracks_efficiency_resolution_massless():
    n, pt, eta = 20000, 20.0, 0.3
    no_hcal = dataclasses.replace(CFG, hcal_fractions=((0, 0.0),))   # tracks never rescaled
    out = det.simulate(_particles(n, pt, eta, 211, 1.0, PION_MASS), np.random.default_rng(1),
                       no_hcal)
    tracks = out["pid"] == 211
    eff = tracks.sum() / n
    assert abs(eff - 0.95) < 4 * np.sqrt(eff * (1 - eff) / n)
    measured = np.hypot(out["px"][tracks], out["py"][tracks]) / pt - 1
    expected = np.sqrt(0.06 ** 2 + (pt * 1.3e-3) ** 2)   # 6.5%, not the muon's 1.0%
    np.testing.assert_allclose(measured.std(), expected, rtol=0.03)
    assert abs(measured.mean()) < 4 * expected / np.sqrt(tracks.sum())
    p = np.sqrt(out["px"] ** 2 + out["py"] ** 2 + out["pz"] ** 2)
    np.testing.assert_allclose(out["E"], p, rtol=1e-12)    # massless tracks: pi/K/p alike
    assert np.all(out["charge"][tracks] == 1) and not np.any(out["pid"] == 130)


def test_forward_low_pt_efficiency_and_no_tracks_outside_tracker():
    rng = np.random.default_rng(2)
    out = det.simulate(_particles(20000, 0.7, 2.0, -211, -1.0, PION_MASS, seed=2), rng)
    eff = np.sum(out["pid"] == -211) / 20000
    assert abs(eff - 0.60) < 0.02
    out = det.simulate(_particles(200, 50.0, 3.0, 211, 1.0, PION_MASS), rng)
    assert not np.any(out["pid"] == 211) and np.sum(out["pid"] == 130) > 150   # calo only


def test_single_charged_pion_energy_is_conserved():
    """A pion is a track and its HCal deposit; a neutral hadron only from a significant excess,
    else the track is rescaled to the inverse-variance mean of track and tower."""
    n, pt, eta = 20000, 20.0, 0.3
    parts = _particles(n, pt, eta, 211, 1.0, PION_MASS)
    e_true = parts["E"][0]
    out = det.simulate(parts, np.random.default_rng(3))
    assert set(np.unique(out["pid"])) <= {211, 130}
    n_trk, _ = _per_event(out, n, 211)
    n_neu, _ = _per_event(out, n, 130)
    _, e_sum = _per_event(out, n)
    assert n_trk.max() == 1 and n_neu.max() == 1
    tracked = n_trk == 1
    # within 1%: the few significant excesses are upward calorimeter fluctuations (+0.5%)
    np.testing.assert_allclose(e_sum[tracked].mean(), e_true, rtol=1e-2)
    sigma_trk = np.sqrt(0.06 ** 2 + (pt * 1.3e-3) ** 2) * e_true
    sigma_cal = det.calo_resolution(e_true, 0.25, CFG.hcal_resolution)
    # without an excess the track is combined with its tower: better than the track alone
    clean = tracked & (n_neu == 0)
    assert e_sum[clean].std() < 0.9 * sigma_trk
    # the excess is significant in few events (a 2-sigma one-sided fluctuation at most)
    assert 0.0 < np.mean(n_neu[tracked]) < 0.04
    # untracked pions: a neutral hadron carrying the tower energy, HCal resolution
    untracked = ~tracked
    assert np.all(n_neu[untracked] == 1)
    np.testing.assert_allclose(e_sum[untracked].std(), sigma_cal, rtol=0.1)
    # never double counted: above E + 6 sigma_cal nowhere
    assert np.all(e_sum < e_true + 6 * sigma_cal)


def test_single_photon_is_one_ecal_tower():
    n, e = 20000, 40.0
    for eta, c, s in ((0.3, 0.0017, 0.101), (3.5, 0.0350, 0.285)):
        pt = e / np.cosh(eta)
        out = det.simulate(_particles(n, pt, eta, 22, 0.0, seed=3), np.random.default_rng(4))
        assert np.all(out["pid"] == 22) and len(out["E"]) == n     # far above 2 sigma
        measured = out["E"] / e - 1
        np.testing.assert_allclose(measured.std(), np.sqrt(c ** 2 + s ** 2 / e), rtol=0.03)
        assert abs(measured.mean()) < 4 * measured.std() / np.sqrt(n)
        p = np.sqrt(out["px"] ** 2 + out["py"] ** 2 + out["pz"] ** 2)
        np.testing.assert_allclose(p, out["E"], rtol=1e-9)         # massless tower
        out_eta = np.arcsinh(out["pz"] / np.hypot(out["px"], out["py"]))
        assert np.all(np.abs(out_eta - eta) < 0.18)                # inside its cell


@pytest.mark.parametrize("eta,c,s,n", [(0.3, 0.0302, 0.5205, 1.59), (2.3, 0.05, 0.706, 0.0),
                                       (3.6, 0.0942, 1.0, 0.0)])
def test_neutral_hadron_hcal_resolution_with_noise_and_forward_terms(eta, c, s, n):
    count, e = 20000, 60.0
    parts = _particles(count, e / np.cosh(eta), eta, 2112, 0.0, seed=5)
    e_true = parts["E"][0]
    out = det.simulate(parts, np.random.default_rng(6))
    assert np.all(out["pid"] == det.NEUTRAL_HADRON_PID) and len(out["E"]) == count
    sigma = np.sqrt((c * e_true) ** 2 + s ** 2 * e_true + n ** 2)
    np.testing.assert_allclose(out["E"].std(), sigma, rtol=0.03)
    assert abs(out["E"].mean() - e_true) < 4 * sigma / np.sqrt(count)


def test_neutral_hadron_below_two_sigma_is_dropped():
    """A 2 GeV neutron: the tower survives only if its log-normal energy exceeds E* = 2 sigma(E*)
    (E* = 3.83 GeV with the HCal noise term), with the closed-form probability."""
    count, e = 40000, 2.0
    parts = _particles(count, e, 0.3, 2112, 0.0, NEUTRON_MASS, seed=7)
    e_true = parts["E"][0]
    out = det.simulate(parts, np.random.default_rng(8))
    c, s, n = 0.0302, 0.5205, 1.59
    sigma = lambda x: np.sqrt((c * x) ** 2 + s ** 2 * x + n ** 2)   # noqa: E731
    e_star = optimize.brentq(lambda x: x - 2 * sigma(x), 1.0, 20.0)
    b = np.sqrt(np.log1p((sigma(e_true) / e_true) ** 2))
    a = np.log(e_true) - 0.5 * b ** 2
    survive = stats.norm.sf((np.log(e_star) - a) / b)
    got = len(out["E"]) / count
    assert abs(got - survive) < 4 * np.sqrt(survive * (1 - survive) / count), (got, survive)
    assert np.all(out["E"] > e_star - 1e-9)
    # and without the noise term far more would survive: the noise term is what drops them
    quiet = dataclasses.replace(CFG, hcal_resolution=((1.7, c, s, 0.0),) + CFG.hcal_resolution[1:])
    assert len(det.simulate(parts, np.random.default_rng(8), quiet)["E"]) > 3 * got * count


def test_electron_track_and_ecal_excess_muon_track_only():
    n, pt, eta = 20000, 20.0, 0.3
    parts = _particles(n, pt, eta, 11, -1.0, ELECTRON_MASS, seed=9)
    out = det.simulate(parts, np.random.default_rng(10))
    assert set(np.unique(out["pid"])) <= {11, 22}
    n_trk, _ = _per_event(out, n, 11)
    _, e_sum = _per_event(out, n)
    assert abs(n_trk.mean() - 0.95) < 0.01
    np.testing.assert_allclose(e_sum.mean(), parts["E"][0], rtol=3e-3)
    out = det.simulate(_particles(n, pt, eta, 13, 1.0, MUON_MASS, seed=9),
                       np.random.default_rng(11))
    assert np.all(out["pid"] == 13) and abs(len(out["E"]) / n - 0.99) < 0.005
    measured = np.hypot(out["px"], out["py"]) / pt - 1
    np.testing.assert_allclose(measured.std(), np.sqrt(0.01 ** 2 + (pt * 1e-4) ** 2), rtol=0.03)


def test_towers_merge_thresholds_neutrinos_and_bending():
    # two photons in one ECal cell merge; a neutrino and a muon outside the tracker leave
    # nothing; a 0.3 GeV photon is below EnergyMin
    parts = {"event": np.array([0, 0, 0, 0, 1]), "px": np.array([10.0, 10.001, 5.0, 5.0, 0.3]),
             "py": np.zeros(5), "pz": np.array([0, 0, 0, 50.0, 0]),
             "E": np.array([10.0, 10.001, 5.0, np.hypot(5, 50), 0.3]),
             "pid": np.array([22, 22, 12, 13, 22]), "charge": np.array([0, 0, 0, -1.0, 0])}
    exact = dataclasses.replace(CFG, ecal_resolution=((5.0, 0.0, 0.0, 0.0),))
    out = det.simulate(parts, np.random.default_rng(0), exact)
    assert len(out["E"]) == 1 and out["event"][0] == 0 and out["pid"][0] == 22
    np.testing.assert_allclose(out["E"][0], 20.001)
    # an untracked 5 GeV positron lands in the ECal turned by -asin(R / 2r), r = pT / (0.3 B)
    blind = dataclasses.replace(exact, electron_efficiency=())
    out = det.simulate(_particles(50, 5.0, 0.0, -11, 1.0, phi=0.0), np.random.default_rng(1),
                       blind)
    turn = -np.arcsin(1.15 / (2 * 5.0 / (0.299792458 * 2.0)))
    assert len(out["E"]) == 50
    assert np.all(np.abs(np.arctan2(out["py"], out["px"]) - turn) < np.radians(1.0))


def test_mixed_events_sorted_massless_and_seeded():
    rng = np.random.default_rng(12)
    n = 3000
    pid = rng.choice([211, -211, 321, 2212, 22, 2112, 130, 11, -13], n)
    charge = np.where(np.isin(pid, [211, 321, 2212, -13]), 1.0,
                      np.where(np.isin(pid, [-211, 11]), -1.0, 0.0))
    pt, eta, phi = rng.exponential(5.0, n) + 0.05, rng.uniform(-3, 3, n), rng.uniform(-3, 3, n)
    parts = {"event": np.sort(rng.integers(0, 30, n)), "px": pt * np.cos(phi),
             "py": pt * np.sin(phi), "pz": pt * np.sinh(eta), "pid": pid, "charge": charge}
    parts["E"] = np.sqrt(pt ** 2 + parts["pz"] ** 2 + 0.14 ** 2)
    a = det.simulate(parts, np.random.default_rng(9))
    b = det.simulate(parts, np.random.default_rng(9))
    c = det.simulate(parts, np.random.default_rng(10))
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert a["E"].shape != c["E"].shape or a["E"].tobytes() != c["E"].tobytes()
    assert np.all(np.diff(a["event"]) >= 0)
    p = np.sqrt(a["px"] ** 2 + a["py"] ** 2 + a["pz"] ** 2)
    np.testing.assert_allclose(a["E"], p, rtol=1e-9)
    assert a["pid"].dtype == np.int32 and a["charge"].dtype == np.int8
    tracks = a["charge"] != 0
    assert set(np.unique(a["pid"][~tracks])) <= {22, 130}
    assert set(np.unique(a["pid"][tracks])) <= {211, -211, 321, 2212, 11, -13}
    # the visible energy is kept but for soft losses (towers below threshold, massless tracks)
    visible = parts["E"][~np.isin(np.abs(pid), det.NEUTRINOS)].sum()
    assert 0.9 * visible < a["E"].sum() < 1.01 * visible
