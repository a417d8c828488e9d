"""hepjax.pf.links: the truth-free track-cluster links in closed form, their agreement with the
baseline's E-flow subtraction, and the padded batches that carry them."""
import math

import numpy as np
import pytest

from hepjax.data import detector as det
from hepjax.pf import baseline, elements as el, events as pfe, links

from tests.pf.test_elements import CFG, _file_data, _row

COL = {name: k for k, name in enumerate(links.LINK_FEATURES)}


def _rows():
    # 0, 1: two tracks (20 and 5 GeV) at a 50 GeV HCal cluster (2); 3: an ECal cluster right
    # at track 0 (within the electron link radius); 4: an isolated ECal cluster; 5: a track far
    # from every cluster
    return np.stack([_row(el.TRACK, 20.0, 0.0, 1.0, 20.0, 0.05),
                     _row(el.TRACK, 5.0, 0.05, 1.05, 5.0, 0.02),
                     _row(el.HCAL, 50.0, 0.02, 1.01, 50.0, n_cells=4),
                     _row(el.ECAL, 3.0, 0.01, 1.0, 3.0, n_cells=2),
                     _row(el.ECAL, 8.0, -1.0, -2.0, 8.0 * math.cosh(1.0)),
                     _row(el.TRACK, 2.0, 2.0, -1.0, 2.0 * math.cosh(2.0), 0.03)])


def test_link_features_in_closed_form():
    f = _rows()
    lk = links.link_features(f, CFG)
    assert lk.shape == (6, len(links.LINK_FEATURES)) and lk.dtype == np.float32
    s_h = math.sqrt(det.calo_resolution(50.0, 0.02, CFG.hcal_resolution) ** 2
                    + CFG.hcal_noise ** 2 * 4)
    var_trk = (0.05 * 20) ** 2 + (0.02 * 5.0) ** 2
    np.testing.assert_allclose(
        lk[2], [25.0, 50.0, 0, 0, 2, s_h, 25.0, math.sqrt(s_h ** 2 + var_trk)], rtol=1e-5)
    # each HCal-linked track sees its cluster's energy and the sum of the tracks linked to it;
    # track 0 is also the nearest track of the ECal cluster 3 (electron hypothesis)
    np.testing.assert_allclose(lk[0], [25.0, 50.0, 20.0, 3.0, 2, 1.0, 20.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(lk[1, :2], [25.0, 50.0], rtol=1e-5)
    s_e = math.sqrt(det.calo_resolution(3.0, 0.01, CFG.ecal_resolution) ** 2
                    + CFG.ecal_noise ** 2 * 2)
    # ECal clusters keep their own energy as the reference (no subtraction)
    np.testing.assert_allclose(lk[3], [0, 0, 20.0, 3.0, 1, s_e, 3.0, s_e], rtol=1e-5)
    assert lk[4, COL["ecal_track_e"]] == 0 and lk[4, COL["n_tracks"]] == 0
    np.testing.assert_allclose(lk[4, COL["ref_e"]], 8.0 * math.cosh(1.0), rtol=1e-6)
    # an unlinked track: only its own energy and resolution
    e5 = 2.0 * math.cosh(2.0)
    np.testing.assert_allclose(lk[5], [0, 0, 0, 0, 0, 0.03 * e5, e5, 0.03 * e5], rtol=1e-5)
    # the cluster's excess shrinks with the linked energy, never below 0
    f[2, 5] = 10.0
    assert links.link_features(f, CFG)[2, COL["ref_e"]] == 0.0
    with pytest.raises(ValueError, match=r"features must be \(M, 14\)"):
        links.link_features(f[:, :5], CFG)


def test_reference_equals_the_baselines_neutral_excess_for_hadron_tracks():
    # on simulated elements whose tracks are all hadrons, the links made without truth give
    # the baseline's (truth-linked) neutral energy wherever the baseline makes a neutral hadron
    rng = np.random.default_rng(11)
    n = 60
    pt = rng.uniform(2, 30, n)
    eta, phi = rng.uniform(-1.5, 1.5, n), rng.uniform(-0.6, 0.6, n)
    pid = rng.choice([211, -211, 130, 2112], n)
    charge = np.where(pid == 211, 1.0, np.where(pid == -211, -1.0, 0.0))
    mass = np.where(np.abs(pid) == 211, 0.1396, 0.5)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    p = {"event": np.zeros(n, int), "px": px, "py": py, "pz": pz,
         "E": np.sqrt(px ** 2 + py ** 2 + pz ** 2 + mass ** 2), "pid": pid, "charge": charge,
         "pileup": np.zeros(n, bool)}
    out = el.make_elements(p, np.random.default_rng(12), CFG)
    f = out["features"]
    cls, cand = baseline.reconstruct_event(f, out["track_pid"], CFG)
    lk = links.link_features(f, CFG)
    neutral = (cls == 2) & (f[:, 0] == el.HCAL)
    assert neutral.sum() >= 3 and (lk[f[:, 0] == el.HCAL, COL["n_tracks"]] > 0).sum() >= 3
    np.testing.assert_allclose(lk[neutral, COL["ref_e"]], cand[neutral, 3], rtol=1e-5)


def test_padded_batches_carry_the_link_columns(tmp_path):
    data = _file_data()
    pfe.write(tmp_path / "pf.h5", data, {})
    ev = pfe.read(tmp_path / "pf.h5")
    x, y, t, m = ev.padded([1, 0], 8, links=True)
    assert x.shape == (2, 8, len(el.FEATURES) + len(links.LINK_FEATURES))
    n1 = len(ev[1]["features"])
    np.testing.assert_array_equal(x[0, :n1, :14], ev[1]["features"])
    np.testing.assert_array_equal(x[0, :n1, 14:], links.link_features(ev[1]["features"]))
    assert not x[0, n1:].any()
    np.testing.assert_array_equal(ev.padded([1, 0], 8)[0], x[..., :14])
