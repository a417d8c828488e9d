"""Event generation with a conditional flow (hepjax.models.generative.events): the azimuthal
rotation is exact, the preprocessing round trips (the muons' own columns, the dimuon +
Collins-Soper columns against the closed-form Collins-Soper angles, the muons-plus-mass columns),
the observables against hepjax.physics.numpy_kinematics, the truth selection, and the padded
likelihood ignores the absent columns."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.models.generative import events as ev
from hepjax.physics import numpy_kinematics as npkin


def _events(n=400, seed=0):
    rng = np.random.default_rng(seed)
    n_jets = rng.integers(1, 4, n)
    mu = np.stack([20 + rng.exponential(25, (n, 2)), rng.uniform(-2.45, 2.45, (n, 2)),
                   rng.uniform(-math.pi, math.pi, (n, 2))], -1)
    mu[:, :, 0] = -np.sort(-mu[:, :, 0], 1)
    jets = np.stack([20 + rng.exponential(30, (n, 3)), rng.uniform(-4.9, 4.9, (n, 3)),
                     rng.uniform(-math.pi, math.pi, (n, 3)), rng.uniform(1, 20, (n, 3))], -1)
    jets[:, :, 0] = -np.sort(-jets[:, :, 0], 1)
    jets[np.arange(3)[None, :] >= n_jets[:, None]] = 0.0
    return mu, jets, n_jets


def test_rotation_is_exact_and_invertible():
    mu, jets, n = _events()
    mu_r, jets_r, phi0 = ev.rotate(mu, jets, n)
    assert np.all(mu_r[:, 0, 2] == 0.0)
    assert np.all((mu_r[:, 1, 2] >= 0) & (mu_r[:, 1, 2] < 2 * math.pi))
    np.testing.assert_array_equal(phi0, mu[:, 0, 2])
    # relative angles are those of the original event, exactly up to rounding
    rel = np.mod(jets[:, :, 2] - mu[:, :1, 2], 2 * math.pi)
    present = np.arange(3)[None, :] < n[:, None]
    np.testing.assert_allclose(jets_r[:, :, 2][present], rel[present], rtol=0, atol=1e-12)
    assert np.all(jets_r[:, :, 2][~present] == 0)
    mu_b, jets_b = ev.unrotate(mu_r, jets_r, n, phi0)
    np.testing.assert_allclose(mu_b, mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(jets_b, jets, rtol=0, atol=1e-12)
    # every observable is invariant under the rotation
    o1 = ev.observables({"mu": mu, "jets": jets, "n_jets": n})
    o2 = ev.observables({"mu": mu_r, "jets": jets_r, "n_jets": n})
    for k in o1:
        np.testing.assert_allclose(o2[k], o1[k], rtol=1e-10, atol=1e-10, equal_nan=True)


def test_preprocessing_round_trip():
    mu, jets, n = _events(seed=1)
    pre = ev.EventPreprocessor().fit(mu, jets, n)
    x, mask, cond, phi0 = pre.transform(mu, jets, n)
    assert x.shape == (len(n), len(ev.COLUMNS)) and cond.shape == (len(n), 3)
    np.testing.assert_array_equal(np.isnan(x), ~mask)
    np.testing.assert_array_equal(cond.argmax(1) + 1, n)
    np.testing.assert_allclose(np.nanmean(x, 0), 0, atol=1e-9)
    np.testing.assert_allclose(np.nanstd(x, 0), 1, atol=1e-9)
    mu_b, jets_b = pre.inverse(np.nan_to_num(x, nan=0.7), n, phi0)
    np.testing.assert_allclose(mu_b, mu, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(jets_b, jets, rtol=1e-9, atol=1e-9)   # absent jets stay zero
    # every standardised value maps inside the acceptance: pT above threshold, |eta| inside
    z = np.random.default_rng(2).normal(0, 3, x.shape)
    mu_g, jets_g = pre.inverse(z, n, phi0)
    assert (mu_g[:, :, 0] > 20).all() and (np.abs(mu_g[:, :, 1]) <= 2.5).all()
    present = np.arange(3)[None, :] < n[:, None]
    assert (jets_g[:, :, 0][present] > 20).all() and (np.abs(jets_g[:, :, 1]) <= 5).all()
    assert (np.abs(mu_g[:, :, 2]) <= math.pi).all() and (jets_g[:, :, 3] >= 0).all()


def test_observables_match_numpy_kinematics():
    mu, jets, n = _events(seed=3)
    o = ev.observables({"mu": mu, "jets": jets, "n_jets": n})

    def p4(a, m=0.0):
        pt, eta, phi = a[..., 0], a[..., 1], a[..., 2]
        e = np.sqrt((pt * np.cosh(eta)) ** 2 + m ** 2)
        return np.stack([e, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)

    ll = p4(mu[:, 0]) + p4(mu[:, 1])
    np.testing.assert_allclose(o["m_mumu"], npkin.mass(ll), rtol=1e-9)
    np.testing.assert_allclose(o["pT_mumu"], npkin.pt(ll), rtol=1e-9)
    two = n >= 2
    dr = npkin.delta_r(jets[:, 0, 1], jets[:, 0, 2], jets[:, 1, 1], jets[:, 1, 2])
    np.testing.assert_allclose(o["dR_j1j2"][two], dr[two], rtol=1e-9)
    assert np.isnan(o["dR_j1j2"][~two]).all() and np.isnan(o["pT_j3"][n < 3]).all()
    jj = p4(jets[:, 0], jets[:, 0, 3]) + p4(jets[:, 1], jets[:, 1, 3])
    np.testing.assert_allclose(o["m_j1j2"][two], npkin.mass(jj)[two], rtol=1e-7)


def test_sort_objects_and_bad_input():
    mu, jets, n = _events(n=6, seed=4)
    mu2, jets2 = mu[:, ::-1].copy(), jets.copy()
    jets2[n == 2, :2] = jets2[n == 2, 1::-1]
    mu_s, jets_s, f_mu, f_j = ev.sort_objects(mu2, jets2, n)
    np.testing.assert_array_equal(mu_s, mu)
    np.testing.assert_array_equal(jets_s, jets)
    assert f_mu == 1.0 and f_j == pytest.approx(np.mean(n == 2))
    with pytest.raises(ValueError, match=r"jets: expected shape \(N, 3, 4\)"):
        ev.EventPreprocessor().fit(mu, jets[:, :2], n)
    with pytest.raises(ValueError, match="n_jets: expected values in 1..3"):
        ev.EventPreprocessor().fit(mu, jets, np.zeros(len(n), int))


def test_padded_loss_ignores_absent_columns():
    mu, jets, n = _events(n=64, seed=5)
    pre = ev.EventPreprocessor().fit(mu, jets, n)
    x, mask, cond, _ = pre.transform(mu, jets, n)
    # a zero-initialised affine flow is the identity: its NLL is the standard normal's
    model = ev.make_flow(n_layers=2, kind="affine", hidden=(16,), seed=0)
    key = jax.random.key(1)
    batch = (jnp.asarray(x, jnp.float32), jnp.asarray(mask), jnp.asarray(cond))
    other = (jnp.asarray(np.where(mask, x, 123.0), jnp.float32),) + batch[1:]
    from flax import nnx
    graphdef, params = nnx.split(model)
    value_and_grad = jax.jit(jax.value_and_grad(
        lambda p, b: ev.padded_flow_loss(nnx.merge(graphdef, p), b, key)))
    loss, grads = value_and_grad(params, batch)
    assert np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    assert float(loss) == float(value_and_grad(params, other)[0])
    noise = np.asarray(jax.random.normal(key, x.shape))
    filled = np.where(mask, np.nan_to_num(x), noise)
    ref = 0.5 * np.mean(np.sum(filled ** 2, 1)) / x.shape[1] + 0.5 * math.log(2 * math.pi)
    assert float(loss) == pytest.approx(ref, rel=1e-5)


def _z_events(n=300, seed=6):
    """Z -> mu mu decays built independently of hepjax: a dimuon (pT, y, phi, m), the mu- drawn
    isotropically in the dimuon rest frame and boosted with the textbook formula; 1-3 jets."""
    rng = np.random.default_rng(seed)
    pt, y = rng.exponential(30, n) + 0.5, rng.uniform(-2, 2, n)
    phi, m = rng.uniform(-math.pi, math.pi, n), rng.uniform(67, 115, n)
    c, a = rng.uniform(-1, 1, n), rng.uniform(0, 2 * math.pi, n)
    s = np.sqrt(1 - c ** 2)
    rest = 0.5 * m[:, None] * np.stack([np.ones(n), s * np.cos(a), s * np.sin(a), c], -1)
    mt = np.sqrt(m ** 2 + pt ** 2)
    q = np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], -1)
    beta = q[:, 1:] / q[:, :1]
    g = 1 / np.sqrt(1 - np.sum(beta ** 2, 1))
    bp = np.sum(beta * rest[:, 1:], 1)
    p_minus = np.concatenate([(g * (rest[:, 0] + bp))[:, None], rest[:, 1:] + (
        (g - 1) * bp / np.sum(beta ** 2, 1) + g * rest[:, 0])[:, None] * beta], 1)
    p_plus = q - p_minus

    def ptetaphi(p):
        pt_ = np.hypot(p[:, 1], p[:, 2])
        return np.stack([pt_, np.arcsinh(p[:, 3] / pt_), np.arctan2(p[:, 2], p[:, 1])], -1)

    mu = np.stack([ptetaphi(p_minus), ptetaphi(p_plus)], 1)
    charge = np.tile([-1, 1], (n, 1))
    swap = mu[:, 1, 0] > mu[:, 0, 0]
    mu[swap], charge[swap] = mu[swap][:, ::-1], charge[swap][:, ::-1]
    _, jets, n_jets = _events(n, seed)
    return mu, jets, n_jets, charge, p_minus, p_plus, (pt, y, m)


def _cs_closed_form(p1, p2):
    """Collins-Soper angles of lepton p1 (antilepton p2) from Collins and Soper, Phys. Rev. D 16
    (1977) 2219: cos theta = 2 (p1+ p2- - p1- p2+) / (Q sqrt(Q^2 + QT^2)) with p+- = (E +- pz)
    / sqrt(2); tan phi = sqrt(Q^2 + QT^2) / Q * (Delta . R_T) / (Delta . Q_T), Delta = p1 - p2,
    R = P_beam x Q (unit), Q_T unit."""
    q = p1 + p2
    qq = np.sqrt(q[:, 0] ** 2 - np.sum(q[:, 1:] ** 2, 1))
    qt = np.hypot(q[:, 1], q[:, 2])
    pp = lambda p, s: (p[:, 0] + s * p[:, 3]) / math.sqrt(2)   # noqa: E731
    cos = 2 * (pp(p1, 1) * pp(p2, -1) - pp(p1, -1) * pp(p2, 1)) / (qq * np.sqrt(qq ** 2 + qt ** 2))
    d = (p1 - p2)[:, 1:3]
    qt_hat = q[:, 1:3] / qt[:, None]
    r_hat = np.stack([-qt_hat[:, 1], qt_hat[:, 0]], 1)        # z x Q_T, transverse unit vector
    phi = np.arctan2(np.sqrt(qq ** 2 + qt ** 2) / qq * np.sum(d * r_hat, 1),
                     np.sum(d * qt_hat, 1))
    return cos, np.mod(phi, 2 * math.pi)


def test_dimuon_representation_collins_soper_and_round_trip():
    mu, jets, n, charge, p_minus, p_plus, (pt, y, m) = _z_events()
    cos, phi = ev.collins_soper(p_minus, p_plus)
    cos_ref, phi_ref = _cs_closed_form(p_minus, p_plus)
    np.testing.assert_allclose(cos, cos_ref, atol=1e-9)
    np.testing.assert_allclose(np.cos(phi - phi_ref), 1, atol=1e-9)
    # the columns are the dimuon's pT, rapidity, BW-mapped mass and the angles
    pre = ev.DimuonPreprocessor().fit(mu, jets, n, charge)
    raw, mask, phi0 = pre.raw(mu, jets, n, charge)
    np.testing.assert_allclose(raw[:, 0], np.log(pt), rtol=1e-9)
    np.testing.assert_allclose(raw[:, 1], y, atol=1e-9)
    u = 1 / (1 + np.exp(-raw[:, 2]))
    np.testing.assert_allclose(ev.bw_cdf_inverse(u), m, rtol=1e-9)
    np.testing.assert_allclose(np.tanh(raw[:, 3]), cos_ref, atol=1e-9)
    # the Breit-Wigner CDF: 0 and 1 at the window's edges, 1/2 near the pole
    np.testing.assert_allclose(ev.bw_cdf(np.array([66.0, 116.0])), [0, 1], atol=1e-15)
    assert abs(ev.bw_cdf(91.1876) - 0.5) < 0.02
    # exact round trip (pT relative, angles absolute), muons re-sorted by pT
    x, mask, cond, phi0 = pre.transform(mu, jets, n, charge)
    mu_b, jets_b = pre.inverse(np.nan_to_num(x), n, phi0)
    mu_b, jets_b, _, _ = ev.sort_objects(mu_b, jets_b, n)
    np.testing.assert_allclose(mu_b[:, :, 0], mu[:, :, 0], rtol=1e-9)
    np.testing.assert_allclose(mu_b[:, :, 1], mu[:, :, 1], atol=1e-9)
    np.testing.assert_allclose(np.cos(mu_b[:, :, 2] - mu[:, :, 2]), 1, atol=1e-12)
    np.testing.assert_allclose(jets_b, jets, rtol=1e-9, atol=1e-9)
    # any standardised vector maps into the mass window (its edges where the logit saturates in
    # float64), and reproduces the column's mass exactly with massless muons
    z = np.random.default_rng(7).normal(0, 1, x.shape)
    z[:, 2] *= 4                                     # the mass column far into its tails
    mu_g, _ = pre.inverse(z, n, phi0)
    o = ev.observables({"mu": mu_g, "jets": jets, "n_jets": n})
    assert ((o["m_mumu"] > 66 - 1e-6) & (o["m_mumu"] < 116 + 1e-6)).all()
    m_col = ev.bw_cdf_inverse(1 / (1 + np.exp(-(z[:, 2] * pre.std[2] + pre.mean[2]))))
    np.testing.assert_allclose(o["m_mumu"], m_col, rtol=1e-7)
    with pytest.raises(ValueError, match="charge"):
        pre.transform(mu, jets, n)
    with pytest.raises(ValueError, match="opposite charges"):
        pre.transform(mu, jets, n, np.ones((len(n), 2)))


def test_passes_selection_and_pt_imbalance():
    mu, jets, n, charge, *_ = _z_events(n=200, seed=8)
    ok = ev.passes_selection(mu, jets, n)
    o = ev.observables({"mu": mu, "jets": jets, "n_jets": n})
    dr = [np.hypot(jets[:, a, 1] - jets[:, b, 1],
                   np.abs(np.mod(jets[:, a, 2] - jets[:, b, 2] + math.pi, 2 * math.pi) - math.pi))
          for a, b in ((0, 1), (0, 2), (1, 2))]
    expect = ((mu[:, :, 0] > 20).all(1) & (np.abs(mu[:, :, 1]) < 2.5).all(1)
              & (o["m_mumu"] > 66) & (o["m_mumu"] < 116)
              & ((n < 2) | (dr[0] >= 0.4)) & ((n < 3) | ((dr[1] >= 0.4) & (dr[2] >= 0.4))))
    np.testing.assert_array_equal(ok, expect)
    assert 0 < ok.mean() < 1
    # the imbalance against the vector sum written out
    px = sum(a[:, 0] * np.cos(a[:, 2]) for a in (mu[:, 0], mu[:, 1]))
    py = sum(a[:, 0] * np.sin(a[:, 2]) for a in (mu[:, 0], mu[:, 1]))
    for j in range(3):
        px = px + np.where(n > j, jets[:, j, 0] * np.cos(jets[:, j, 2]), 0)
        py = py + np.where(n > j, jets[:, j, 0] * np.sin(jets[:, j, 2]), 0)
    np.testing.assert_allclose(o["pT_imbalance"], np.hypot(px, py), rtol=1e-9)


def test_mass_representation_round_trip():
    mu, jets, n, charge, p_minus, p_plus, (pt, y, m) = _z_events(seed=9)
    keep = (mu[:, :, 0] > 20).all(1) & (np.abs(mu[:, :, 1]) < 2.5).all(1)   # the acceptance
    mu, jets, n, m = mu[keep], jets[keep], n[keep], m[keep]
    assert len(n) > 100
    pre = ev.MassPreprocessor().fit(mu, jets, n)
    raw, mask, phi0 = pre.raw(mu, jets, n)
    np.testing.assert_allclose(ev.bw_cdf_inverse(1 / (1 + np.exp(-raw[:, 4]))), m, rtol=1e-9)
    np.testing.assert_allclose(raw[:, 0], np.log(mu[:, 1, 0] - 20), rtol=1e-12)
    x, mask, cond, phi0 = pre.transform(mu, jets, n)
    mu_b, jets_b = pre.inverse(np.nan_to_num(x), n, phi0)
    np.testing.assert_allclose(mu_b[:, :, :2], mu[:, :, :2], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.cos(mu_b[:, :, 2] - mu[:, :, 2]), 1, atol=1e-12)
    np.testing.assert_allclose(jets_b, jets, rtol=1e-9, atol=1e-9)
    # any standardised vector: the window, both muons' eta and the subleading pT built in
    z = np.random.default_rng(10).normal(0, 1, x.shape)
    mu_g, _ = pre.inverse(z, n, phi0)
    o = ev.observables({"mu": mu_g, "jets": jets, "n_jets": n})
    assert ((o["m_mumu"] > 66 - 1e-6) & (o["m_mumu"] < 116 + 1e-6)).all()
    assert (np.abs(mu_g[:, :, 1]) <= 2.5).all() and (mu_g[:, 1, 0] > 20).all()
