"""W -> q q' jets for the anomaly experiment (hepjax.anomaly.wjets): the truth matching of
``Process(truth="w")`` on a hand-made event record (exact), and on a few Pythia events: every
kept jet is in the top-tagging window and contains a hadronic W whose four-momentum is the sum
of its two decay quarks'."""
import numpy as np
import pytest

from hepjax.data import generation
from hepjax.physics import numpy_kinematics as npkin


def _record(particles):
    """A flat event record (the columns of generation._flat_event_record) of one event:
    particles = [(id, daughter1, daughter2, (E, px, py, pz))]."""
    rec = {"id": np.array([p[0] for p in particles]),
           "daughter1": np.array([p[1] for p in particles]),
           "daughter2": np.array([p[2] for p in particles])}
    p4 = np.array([p[3] for p in particles], np.float64)
    for i, k in enumerate(("E", "px", "py", "pz")):
        rec[k] = p4[:, i]
    return rec


def test_hadronic_ws_on_a_record():
    u = np.array([300.0, 250.0, 30.0, 160.0])
    dbar = np.array([320.0, 290.0, -20.0, 130.0])
    w = u + dbar
    lep, nu = np.array([200.0, -150.0, 10.0, 130.0]), np.array([150.0, -120.0, 20.0, 85.0])
    # 0 system; 1 W+ (hard process) -> 2 (its recoiled copy) -> 3 u, 4 dbar; 5 W- -> 6 e, 7 nu;
    # 8 a gluon
    rec = _record([(90, 0, 0, w + lep + nu), (24, 2, 2, w), (24, 3, 4, w), (2, 0, 0, u),
                   (-1, 0, 0, dbar), (-24, 6, 7, lep + nu), (11, 0, 0, lep), (-12, 0, 0, nu),
                   (21, 0, 0, [50.0, 0.0, 50.0, 0.0])])
    found = generation._hadronic_ws(rec, 0, len(rec["id"]))
    assert len(found) == 1   # the last copy of the hadronic W; the leptonic W- is dropped
    p4, etas, phis = found[0]
    np.testing.assert_allclose(p4, w)
    quarks = np.stack([u, dbar])
    np.testing.assert_allclose(etas, npkin.eta(quarks))
    np.testing.assert_allclose(phis, npkin.phi(quarks))


def test_w_jets_are_truth_matched():
    pytest.importorskip("pythia8mc", reason="W-jet generation needs the 'gen' extra")
    pytest.importorskip("fastjet", reason="W-jet generation needs the 'gen' extra")
    from hepjax.anomaly import wjets

    out = generation.simulate_chunk(wjets.W_TASK, 0, 7, 0, events_per_chunk=30)
    n = len(out["p4"])
    assert 5 <= n <= 30   # ~45 % of the events give a matched W jet in the window
    jet, truth = out["jet_p4"].astype(np.float64), out["truth"].astype(np.float64)
    pt = npkin.pt(jet)
    assert np.all((pt > 550) & (pt < 650) & (np.abs(npkin.eta(jet)) < 2))
    dr = npkin.delta_r(npkin.eta(jet), npkin.phi(jet), npkin.eta(truth), npkin.phi(truth))
    assert np.all(dr < 0.8)
    m_w = np.sqrt(np.maximum(truth[:, 0] ** 2 - np.sum(truth[:, 1:] ** 2, -1), 0))
    # Breit-Wigner around the W mass (80.4 GeV, width 2.1 GeV; rare far-off-shell tails)
    assert abs(np.median(m_w) - 80.4) < 3 and np.mean(np.abs(m_w - 80.4) < 10) > 0.7
    # the constituents add up to the jet (at most 100 of them here: all kept)
    np.testing.assert_allclose(out["p4"].sum(1), jet, rtol=1e-4, atol=0.05)
