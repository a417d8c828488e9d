"""The LHC-Olympics-style resonance search: dijet-function fit, local significances, bump hunt,
background-only control, and a small Pythia generation of the W' -> X Y signal."""
import numpy as np
import pytest

from hepjax.anomaly import bumphunt as bh
from hepjax.anomaly import resonance as res

EDGES = np.arange(2600.0, 6001.0, 100.0)
TRUE = np.array([0.0, 8.0, 6.0, 0.3])


def _background(total=20000.0):
    theta = TRUE.copy()
    theta[0] = np.log(total / bh.bin_expectation(EDGES, theta).sum())
    return theta, bh.bin_expectation(EDGES, theta)


def _values(counts, rng):
    """m_jj values with the given counts per bin (uniform inside each bin)."""
    return np.concatenate([rng.uniform(EDGES[i], EDGES[i + 1], int(c))
                           for i, c in enumerate(counts)])


def test_dijet_fit_recovers_known_parameters():
    theta, mu = _background()
    fit = bh.fit_dijet(EDGES, mu)                       # the Asimov histogram: exact recovery
    np.testing.assert_allclose(fit.theta, theta, rtol=1e-6, atol=1e-6)
    assert abs(fit.deviance) < 1e-6
    # Poisson data: the fit's pulls against the truth are O(1) with its covariance
    counts = np.random.default_rng(3).poisson(mu)
    fit = bh.fit_dijet(EDGES, counts)
    pulls = (fit.theta - theta) / np.sqrt(np.diag(fit.covariance))
    assert np.all(np.abs(pulls) < 4), pulls
    assert fit.deviance / fit.ndf < 2.0


def test_significances_equal_the_closed_forms():
    from math import lgamma

    def poisson_logpmf(k, lam):
        return np.array([ki * np.log(li) - li - lgamma(ki + 1) for ki, li in zip(k, lam)])

    s, b = np.array([5.0, 30.0, 100.0, -20.0]), np.array([10.0, 400.0, 2000.0, 400.0])
    z = bh.asimov_significance(s, b)
    by_hand = np.sign(s) * np.sqrt(2 * ((s + b) * np.log(1 + s / b) - s))
    np.testing.assert_allclose(z, by_hand, rtol=1e-12)
    # Poisson likelihood ratio with b known (Wilks, 1 dof) == Asimov at s = n - b
    n = s + b
    q0 = -2 * (poisson_logpmf(n, b) - poisson_logpmf(n, n))
    np.testing.assert_allclose(bh.likelihood_ratio_significance(n, b), np.sign(s) * np.sqrt(q0),
                               rtol=1e-10)
    np.testing.assert_allclose(bh.likelihood_ratio_significance(n, b), z, rtol=1e-12)
    # s << b: Z -> s / sqrt(b); sigma_b -> 0: the profiled formula -> the plain one;
    # a background uncertainty lowers Z
    assert bh.asimov_significance(1.0, 1e6) == pytest.approx(1e-3, rel=1e-5)
    assert bh.asimov_significance(30.0, 400.0, 1e-4) == pytest.approx(z[1], rel=1e-6)
    assert bh.asimov_significance(30.0, 400.0, 20.0) < z[1]
    with pytest.raises(ValueError, match="background must be > 0"):
        bh.asimov_significance(1.0, 0.0)


def test_bump_hunt_measures_an_injected_bump():
    theta, mu = _background()
    window = (3300.0, 3700.0)
    inside = (EDGES[:-1] >= window[0]) & (EDGES[1:] <= window[1])
    b_true = mu[inside].sum()
    rng = np.random.default_rng(0)
    background = _values(np.round(mu), rng)
    s_true = 150
    mjj = np.concatenate([background, rng.normal(3500.0, 80.0, 4 * s_true)[:s_true]])
    s_in = int(((mjj[len(background):] >= window[0]) & (mjj[len(background):] < window[1])).sum())
    out = bh.bump_hunt(mjj, window, edges=EDGES)
    # the side-band fit predicts the window's background within its uncertainty (rounding of
    # the Asimov counts adds < 1 event per bin)
    assert abs(out["b"] - b_true) < 3 * out["sigma_b"] + 4
    expected = bh.asimov_significance(s_in, b_true)
    assert out["z"] == pytest.approx(expected, abs=0.5)
    assert out["z"] > 2.0
    # the same background without the bump: nothing in the window
    assert bh.bump_hunt(background, window, edges=EDGES)["z"] == pytest.approx(0.0, abs=0.3)


def test_background_only_control_shows_no_bump():
    theta, mu = _background()
    rng = np.random.default_rng(1)
    zs = []
    for _ in range(20):
        mjj = _values(rng.poisson(mu), rng)
        zs.append(bh.bump_hunt(mjj, (3300.0, 3700.0), edges=EDGES)["z"])
    zs = np.array(zs)
    assert np.all(np.abs(zs) < 3.5), zs
    assert abs(zs.mean()) < 0.8 and 0.4 < zs.std() < 1.8, (zs.mean(), zs.std())


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="do not match"):
        bh.fit_dijet(EDGES, np.ones(5))
    with pytest.raises(ValueError, match="on bin edges"):
        bh.bump_hunt(np.full(10, 3000.0), (3310.0, 3700.0), edges=EDGES)
    with pytest.raises(ValueError, match="process='ttbar'"):
        res.process_settings("ttbar")
    import h5py
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.create_group("qcd").create_dataset("mjj", data=np.ones(3))
    with pytest.raises(ValueError, match="lacks the field 'jet_p4'"):
        res.read_h5(path)


def test_mass_sorted_features():
    sample = {"mass": np.array([[100.0, 500.0]]), "mjj": np.array([3500.0]),
              "tau": np.array([[[0.4, 0.1, 0.05], [0.5, 0.25, 0.2]]])}
    f = res.mass_sorted_features(sample)
    np.testing.assert_allclose(f[0], [500 / 3500, 100 / 3500, 0.5, 0.25, 0.8, 0.5], rtol=1e-6)


def test_signal_generation_has_the_decay_chain():
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    rows = res.print_decay_chain(7, out=lambda s: None)
    ids = {abs(r[1]): r for r in rows}
    assert sorted(abs(d) for d in ids[34][3]) == [23, 24]          # W' -> X Y
    assert abs(ids[24][2] - 500.0) < 100 and abs(ids[23][2] - 100.0) < 40
    assert all(1 <= abs(d) <= 5 for d in ids[24][3] + ids[23][3])  # X, Y -> quarks
    out = res.simulate_chunk("signal", 7, 0, 12, detector="none")
    assert 0 < len(out["mjj"]) <= 12 and int(out["n_generated"]) == 12
    p4 = out["jet_p4"].astype(np.float64)
    mjj = np.sqrt(np.maximum(p4.sum(1)[:, 0] ** 2 - (p4.sum(1)[:, 1:] ** 2).sum(-1), 0))
    np.testing.assert_allclose(out["mjj"], mjj, rtol=1e-4)
    assert np.all(np.hypot(p4[:, 0, 1], p4[:, 0, 2]) > 1200.0)
    assert np.median(out["mjj"]) > 2500.0                          # the 3.5 TeV resonance
    assert np.all((out["tau"][..., 1] <= out["tau"][..., 0] + 1e-6))
    again = res.simulate_chunk("signal", 7, 0, 12, detector="none")
    np.testing.assert_array_equal(out["jet_p4"], again["jet_p4"])  # same seed, same events


def test_scan_peaks_at_the_injected_bump():
    theta, mu = _background()
    rng = np.random.default_rng(2)
    mjj = np.concatenate([_values(np.round(mu), rng), rng.normal(4000.0, 60.0, 120)])
    out = bh.scan(mjj, edges=EDGES, width_bins=4)
    best = max(out, key=lambda r: r["z"])
    assert best["window"][0] <= 4000.0 <= best["window"][1] and best["z"] > 2.5
    assert sum(r["z"] > 2.5 for r in out) <= 4      # only windows overlapping the bump
