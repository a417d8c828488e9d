"""Event generation with a conditional flow (hepjax.models.generative.events): the azimuthal
rotation is exact, the preprocessing round trip, the observables against
hepjax.physics.numpy_kinematics, and the padded likelihood ignores the absent columns."""
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
