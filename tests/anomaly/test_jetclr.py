"""JetCLR pieces: the NT-Xent loss against a numpy reference, the augmentations against the
symmetries they stand for, the IRC-safe encoder's exact invariance, the linear probe."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hepjax.anomaly import scores
from hepjax.models import jetclr


def _nt_xent_numpy(a, b, t):
    u = np.concatenate([a, b]).astype(np.float64)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = np.array([u[i] @ u[k] / t for k in range(2 * n)])
        denom = sum(np.exp(sims[k]) for k in range(2 * n) if k != i)
        total += -np.log(np.exp(sims[pos]) / denom)
    return total / (2 * n)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_nt_xent_matches_numpy(t):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    got = float(jnp.asarray(jetclr.nt_xent(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), t)))
    assert got == pytest.approx(_nt_xent_numpy(a, b, t), rel=1e-4)
    # identical views pointing in distinct directions: far lower loss than random views
    e = np.eye(5, 4) + np.eye(5, 4, -1) * 0.0
    e[4] = -e[0]
    assert float(jetclr.nt_xent(jnp.asarray(e), jnp.asarray(e), 0.1)) < 0.2 * got


def _jets(b=4, n=24, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(5, 14, b)
    mask = np.arange(n)[None] < counts[:, None]
    pos = np.where(mask[..., None], rng.normal(scale=0.2, size=(b, n, 2)), 0.0)
    z = np.where(mask, rng.random((b, n)) + 0.05, 0.0)
    z /= z.sum(1, keepdims=True)
    return jnp.asarray(pos, jnp.float32), jnp.asarray(z, jnp.float32), jnp.asarray(mask)


def _irc_safe(pos, z, mask):
    """Two IRC-safe observables per jet: the pT-weighted centroid distance sum_i z_i |x_i| and
    the energy correlator sum_ij z_i z_j |x_i - x_j|."""
    pos, z = np.asarray(pos, np.float64), np.asarray(z, np.float64) * np.asarray(mask)
    r = np.linalg.norm(pos, axis=-1)
    d = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1)
    return (z * r).sum(1), np.einsum("bi,bj,bij->b", z, z, d)


def test_augmentations_respect_their_symmetries():
    pos, z, mask = _jets()
    key = jax.random.PRNGKey(1)
    aug = jax.jit(lambda k, p, z, m: (jetclr.rotate(k, p, z, m), jetclr.collinear_split(k, p, z, m, 0.5),
                                      jetclr.soft_emission(k, p, z, m, 4, 1e-4),
                                      jetclr.translate(k, p, z, m, 0.3)))
    (rp, rz, rm), (cp, cz, cm), (sp, sz, sm), (tp, tz, tm) = aug(key, pos, z, mask)
    # rotation about the jet axis: radii and pT kept
    np.testing.assert_allclose(jnp.linalg.norm(rp, axis=-1), jnp.linalg.norm(pos, axis=-1), atol=1e-6)
    np.testing.assert_array_equal(rz, z)
    # translation: every constituent moved by one common vector within the width
    shift = np.asarray(tp - pos)
    m = np.asarray(mask)
    np.testing.assert_allclose(np.where(m[..., None], shift - shift[:, :1], 0.0), 0.0, atol=1e-6)
    assert np.all(np.abs(shift[m]) <= 0.3) and np.all(np.asarray(tp)[~m] == 0)
    # collinear splitting: more constituents, IRC-safe observables unchanged
    assert np.all(np.asarray(cm.sum(1)) > np.asarray(mask.sum(1)))
    for got, want in zip(_irc_safe(cp, cz, cm), _irc_safe(pos, z, mask)):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.asarray(cz).sum(1) == pytest.approx(1.0, abs=1e-6)
    # soft emission: 4 more constituents, IRC-safe observables change by O(4e-4)
    np.testing.assert_array_equal(sm.sum(1), mask.sum(1) + 4)
    for got, want in zip(_irc_safe(sp, sz, sm), _irc_safe(pos, z, mask)):
        assert np.all(np.abs(got - want) < 4 * 1e-4 * 2)


def test_irc_safe_encoder_is_exactly_invariant_under_collinear_splitting():
    pos, z, mask = _jets()
    model = jetclr.JetCLR(8, phi_sizes=(16, 16), rho_sizes=(16,), weighted=True, rngs=nnx.Rngs(0))
    unsafe = jetclr.JetCLR(8, phi_sizes=(16, 16), rho_sizes=(16,), rngs=nnx.Rngs(0))
    f = nnx.jit(lambda m, p, z, k: m.represent(p, z, k))
    split = jetclr.collinear_split(jax.random.PRNGKey(0), pos, z, mask, 0.5)
    np.testing.assert_allclose(f(model, *split), f(model, pos, z, mask), rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(f(unsafe, *split) - f(unsafe, pos, z, mask)))) > 1e-3


def test_linear_probe_separates_linearly_separable_classes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = rng.normal(size=(400, 5)) + 1.5 * y[:, None] * np.array([1, -1, 0, 0, 0])
    s = jetclr.linear_probe(x[:100], y[:100], x[100:], steps=200)
    assert scores.auc(y[100:], s) > 0.9
    with pytest.raises(ValueError, match=r"both classes 0 and 1; got \[0\]"):
        jetclr.linear_probe(x[:5], np.zeros(5, int), x)
