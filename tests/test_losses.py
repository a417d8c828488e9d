"""Tests for hepjax.losses: closed forms in numpy, jax.grad vs closed-form gradients and central
finite differences in float64, masks/weights/reductions, stability at extreme logits."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax import losses as L

RNG = np.random.default_rng(1234)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def np_reduce(l, mask=None, weights=None, reduction="mean"):
    """Reference reduction in numpy (mask/weights broadcast over trailing axes)."""
    l = np.asarray(l, np.float64)

    def expand(a):
        a = np.asarray(a)
        return np.broadcast_to(a.reshape(a.shape + (1,) * (l.ndim - a.ndim)), l.shape)

    m = np.ones_like(l) if mask is None else expand(mask).astype(np.float64)
    w = np.ones_like(l) if weights is None else expand(weights).astype(np.float64)
    wl = np.where(m > 0, w * l, 0.0)
    if reduction == "none":
        return wl
    if reduction == "sum":
        return wl.sum()
    den = (w * m).sum()
    return 0.0 if den == 0 else wl.sum() / den


def central_fd(f, x, eps=1e-6):
    """Central finite-difference gradient of scalar f at float64 array x (one jitted vmap)."""
    x = np.array(x, np.float64)
    basis = np.eye(x.size).reshape((x.size,) + x.shape) * eps
    fv = jax.jit(jax.vmap(f))
    diff = np.asarray(fv(x + basis)) - np.asarray(fv(x - basis))
    return (diff / (2 * eps)).reshape(x.shape)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


# ------------------------------------------------------------------------------------------------
# reduction
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("use_weights", [False, True])
def test_reduce_matches_numpy(reduction, use_mask, use_weights):
    l = RNG.normal(size=(6, 3))
    mask = RNG.random((6, 3)) > 0.3 if use_mask else None
    weights = RNG.uniform(0.1, 2.0, size=(6, 3)) if use_weights else None
    got = L.reduce_loss(
        jnp.asarray(l, jnp.float32), mask=mask, weights=weights, reduction=reduction
    )
    want = np_reduce(l, mask, weights, reduction)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    if reduction == "none" and use_mask:
        assert np.all(np.asarray(got)[~mask] == 0.0)


def test_reduce_none_sums_to_sum():
    l = RNG.normal(size=(5,))
    m = np.array([1, 0, 1, 1, 0], bool)
    w = RNG.uniform(size=5)
    none = L.reduce_loss(l, mask=m, weights=w, reduction="none")
    total = L.reduce_loss(l, mask=m, weights=w, reduction="sum")
    np.testing.assert_allclose(float(none.sum()), float(total), rtol=1e-6)


def test_reduce_prefix_broadcast():
    """Per-example weights (B,) and mask (B,) on an element-wise (B, D) loss."""
    l = RNG.normal(size=(4, 3))
    w = np.array([1.0, 2.0, 0.5, 3.0])
    m = np.array([True, True, False, True])
    got = L.reduce_loss(l, mask=m, weights=w, reduction="mean")
    keep = m[:, None] & np.ones((4, 3), bool)
    want = (w[:, None] * l)[keep].sum() / (3 * w[m].sum())
    np.testing.assert_allclose(float(got), want, rtol=1e-6)


def test_mean_all_masked_is_zero_with_zero_grad():
    x = jnp.array([1.0, -2.0, 3.0])
    y = jnp.array([0.0, 1.0, 1.0])
    m = jnp.zeros(3, bool)
    val = L.binary_cross_entropy(x, y, mask=m)
    assert float(val) == 0.0
    g = jax.grad(lambda x: L.binary_cross_entropy(x, y, mask=m))(x)
    assert np.all(np.asarray(g) == 0.0)
    # Zero total weight: also 0, not NaN.
    assert float(L.mse(x, y, weights=jnp.zeros(3))) == 0.0


def test_masked_nan_does_not_leak():
    l = jnp.array([1.0, jnp.nan, 3.0])
    m = jnp.array([True, False, True])
    assert float(L.reduce_loss(l, mask=m, reduction="mean")) == pytest.approx(2.0)
    assert float(L.reduce_loss(l, mask=m, reduction="sum")) == pytest.approx(4.0)


def test_reduce_errors():
    with pytest.raises(ValueError, match="reduction='avg'"):
        L.mse(jnp.ones(3), jnp.ones(3), reduction="avg")
    with pytest.raises(ValueError, match=r"mask has shape \(4,\).*\(3,\)"):
        L.mse(jnp.ones(3), jnp.ones(3), mask=jnp.ones(4, bool))
    with pytest.raises(ValueError, match=r"weights has shape \(3,\).*\(2, 3\)"):
        L.mse(jnp.ones((2, 3)), jnp.ones((2, 3)), weights=jnp.ones(3))  # trailing, not prefix
    with pytest.raises(ValueError, match=r"targets has shape \(4,\).*predictions has shape \(3,\)"):
        L.mse(jnp.ones(3), jnp.ones(4))


# ------------------------------------------------------------------------------------------------
# values vs closed forms (numpy, float64)
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_value(x64, reduction):
    p, t = RNG.normal(size=(7, 2)), RNG.normal(size=(7, 2))
    m, w = RNG.random(7) > 0.3, RNG.uniform(0.5, 2, 7)
    got = L.mse(p, t, mask=m, weights=w, reduction=reduction)
    want = np_reduce((p - t) ** 2, m, w, reduction)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_value(x64, reduction):
    x = RNG.normal(scale=3, size=9)
    y = RNG.random(9)  # soft labels
    y[:4] = [0, 1, 0, 1]
    m, w = RNG.random(9) > 0.2, RNG.uniform(0.5, 2, 9)
    ref = -(y * np.log(sigmoid(x)) + (1 - y) * np.log(1 - sigmoid(x)))
    got = L.binary_cross_entropy(x, y, mask=m, weights=w, reduction=reduction)
    np.testing.assert_allclose(np.asarray(got), np_reduce(ref, m, w, reduction), rtol=1e-10)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cce_value_int_and_onehot(x64, reduction):
    logits = RNG.normal(scale=2, size=(3, 5, 4))
    labels = RNG.integers(0, 4, size=(3, 5))
    onehot = np.eye(4)[labels]
    m, w = RNG.random((3, 5)) > 0.2, RNG.uniform(0.5, 2, (3,))  # weights per jet: prefix
    ref = -np.take_along_axis(log_softmax(logits), labels[..., None], -1)[..., 0]
    want = np_reduce(ref, m, w, reduction)
    got_i = L.categorical_cross_entropy(logits, labels, mask=m, weights=w, reduction=reduction)
    got_o = L.categorical_cross_entropy(logits, onehot, mask=m, weights=w, reduction=reduction)
    np.testing.assert_allclose(np.asarray(got_i), want, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(got_o), want, rtol=1e-10)


def test_cce_soft_targets(x64):
    logits = RNG.normal(size=(6, 3))
    t = RNG.dirichlet(np.ones(3), size=6)
    ref = -(t * log_softmax(logits)).sum(-1)
    np.testing.assert_allclose(
        np.asarray(L.categorical_cross_entropy(logits, t, reduction="none")), ref, rtol=1e-12
    )


def test_cce_bad_labels():
    logits = jnp.zeros((4, 3))
    # Out-of-range (incl. negative) index -> NaN, loudly; masked out -> finite with finite grad.
    bad = jnp.array([0, 3, -1, 2])
    out = np.asarray(L.categorical_cross_entropy(logits, bad, reduction="none"))
    assert np.isfinite(out[[0, 3]]).all() and np.isnan(out[[1, 2]]).all()
    m = jnp.array([True, False, False, True])
    val, g = jax.value_and_grad(lambda z: L.categorical_cross_entropy(z, bad, mask=m))(logits)
    np.testing.assert_allclose(float(val), math.log(3), rtol=1e-6)
    assert np.isfinite(np.asarray(g)).all() and np.all(np.asarray(g)[[1, 2]] == 0)
    with pytest.raises(ValueError, match=r"integer labels have shape \(4, 1\).*shape\[:-1\]"):
        L.categorical_cross_entropy(logits, jnp.zeros((4, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"floating .* shape \(4, 2\)"):
        L.categorical_cross_entropy(logits, jnp.zeros((4, 2)))


@pytest.mark.parametrize("include_constant", [False, True])
def test_gaussian_nll_value(x64, include_constant):
    mu, lv, t = RNG.normal(size=8), RNG.normal(size=8), RNG.normal(size=8)
    sig = np.exp(0.5 * lv)
    # Exact normal log-density.
    logpdf = -0.5 * ((t - mu) / sig) ** 2 - np.log(sig) - 0.5 * np.log(2 * np.pi)
    ref = -logpdf if include_constant else -logpdf - 0.5 * np.log(2 * np.pi)
    got = L.gaussian_nll(mu, lv, t, include_constant=include_constant, reduction="none")
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-12)
    w = RNG.uniform(size=8)
    got = L.gaussian_nll(mu, lv, t, include_constant=include_constant, weights=w)
    np.testing.assert_allclose(float(got), (w * ref).sum() / w.sum(), rtol=1e-12)


def test_log_ratio_loss_value(x64):
    reco = RNG.uniform(20, 500, 10)
    true = reco * RNG.uniform(0.8, 1.3, 10)
    c = RNG.normal(scale=0.1, size=10)
    ref = (c - np.log(true / reco)) ** 2
    np.testing.assert_allclose(float(L.log_ratio_loss(c, reco, true)), ref.mean(), rtol=1e-12)
    # The perfect correction has zero loss and recovers the true energy.
    perfect = np.log(true / reco)
    assert float(L.log_ratio_loss(perfect, reco, true)) < 1e-25
    np.testing.assert_allclose(np.exp(perfect) * reco, true, rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# KL divergences
# ------------------------------------------------------------------------------------------------


def test_kl_gaussian_closed_form_and_monte_carlo(x64):
    mu = np.array([[0.3, -1.2], [0.0, 0.0]])
    lv = np.array([[-0.5, 0.4], [0.0, 0.0]])
    got = np.asarray(L.kl_gaussian(mu, lv, reduction="none"))
    ref = 0.5 * (np.exp(lv) + mu**2 - 1 - lv).sum(-1)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert got[1] == 0.0  # KL(N(0,1) || N(0,1))
    # Monte Carlo: E_p[log p(z) - log q(z)], z ~ p = N(mu, exp(lv)), q = N(0, 1).
    rng = np.random.default_rng(0)
    n = 400_000
    sig = np.exp(0.5 * lv[0])
    z = mu[0] + sig * rng.standard_normal((n, 2))
    logp = (-0.5 * ((z - mu[0]) / sig) ** 2 - np.log(sig)).sum(-1)
    logq = (-0.5 * z**2).sum(-1)
    mc = (logp - logq).mean()
    se = (logp - logq).std() / np.sqrt(n)
    assert abs(mc - got[0]) < 5 * se


def test_kl_diag_gaussians(x64):
    mp, lp = RNG.normal(size=(5, 3)), RNG.normal(scale=0.5, size=(5, 3))
    mq, lq = RNG.normal(size=(5, 3)), RNG.normal(scale=0.5, size=(5, 3))
    got = np.asarray(L.kl_diag_gaussians(mp, lp, mq, lq, reduction="none"))
    sp2, sq2 = np.exp(lp), np.exp(lq)
    ref = (np.log(np.sqrt(sq2 / sp2)) + (sp2 + (mp - mq) ** 2) / (2 * sq2) - 0.5).sum(-1)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    # Reduces to kl_gaussian against the standard normal; zero for p == q.
    z = np.zeros_like(mp)
    np.testing.assert_allclose(
        np.asarray(L.kl_diag_gaussians(mp, lp, z, z, reduction="none")),
        np.asarray(L.kl_gaussian(mp, lp, reduction="none")), rtol=1e-12,
    )
    np.testing.assert_allclose(
        np.asarray(L.kl_diag_gaussians(mp, lp, mp, lp, reduction="none")), 0.0, atol=1e-14
    )
    # Monte Carlo check for one row.
    rng = np.random.default_rng(1)
    n = 400_000
    z = mp[0] + np.sqrt(sp2[0]) * rng.standard_normal((n, 3))
    lr = (-0.5 * (z - mp[0]) ** 2 / sp2[0] - 0.5 * lp[0] + 0.5 * (z - mq[0]) ** 2 / sq2[0]
          + 0.5 * lq[0]).sum(-1)
    assert abs(lr.mean() - got[0]) < 5 * lr.std() / np.sqrt(n)


def test_kl_categorical(x64):
    lp, lq = RNG.normal(size=(6, 4)), RNG.normal(size=(6, 4))
    p, q = np.exp(log_softmax(lp)), np.exp(log_softmax(lq))
    ref = (p * np.log(p / q)).sum(-1)
    got = np.asarray(L.kl_categorical(lp, lq, reduction="none"))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert np.all(got >= 0)
    np.testing.assert_allclose(np.asarray(L.kl_categorical(lp, lp + 3.0, reduction="none")), 0,
                               atol=1e-14)  # shift-invariant: same distribution


# ------------------------------------------------------------------------------------------------
# VAE
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_vae_loss_by_hand(x64, reduction):
    rec = np.array([[[0.5, 1.0], [2.0, 0.0]], [[1.0, 1.0], [0.0, -1.0]], [[3.0, 0.0], [0.0, 0.0]]])
    x = np.zeros_like(rec)
    mu = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    lv = np.array([[0.0, math.log(2.0)], [0.0, 0.0], [0.0, 0.0]])
    # Hand: rec sums over (2, 2) features: [0.25+1+4, 1+1+1, 9] = [5.25, 3, 9]
    rec_ref = np.array([5.25, 3.0, 9.0])
    # KL: row0 0.5*((1+1-1-0) + (2+0-1-ln2)); row1 0.5*(4); row2 0.5*(0.25+0.25)
    kl_ref = np.array([0.5 * (1 + 1 - math.log(2)), 2.0, 0.25])
    m = np.array([True, True, False])
    w = np.array([2.0, 1.0, 5.0])
    out = L.vae_loss(rec, x, mu, lv, beta=0.5, mask=m, weights=w, reduction=reduction)
    np.testing.assert_allclose(np.asarray(out.reconstruction), np_reduce(rec_ref, m, w, reduction))
    np.testing.assert_allclose(np.asarray(out.kl), np_reduce(kl_ref, m, w, reduction))
    np.testing.assert_allclose(
        np.asarray(out.total), np_reduce(rec_ref + 0.5 * kl_ref, m, w, reduction)
    )
    if reduction == "mean":  # (2*(5.25+0.5*kl0) + 1*(3+0.5*2)) / 3
        np.testing.assert_allclose(float(out.total), (2 * (5.25 + 0.5 * kl_ref[0]) + 4.0) / 3)


def test_vae_loss_bce_and_errors(x64):
    logits = RNG.normal(size=(4, 6))
    x = (RNG.random((4, 6)) > 0.5).astype(np.float64)
    mu, lv = RNG.normal(size=(4, 2)), RNG.normal(size=(4, 2))
    out = L.vae_loss(logits, x, mu, lv, reconstruction_loss="bce", reduction="none")
    bce = np.asarray(L.binary_cross_entropy(logits, x, reduction="none")).sum(-1)
    np.testing.assert_allclose(np.asarray(out.reconstruction), bce, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(out.kl),
                               np.asarray(L.kl_gaussian(mu, lv, reduction="none")), rtol=1e-12)
    with pytest.raises(ValueError, match="reconstruction_loss='l1'"):
        L.vae_loss(logits, x, mu, lv, reconstruction_loss="l1")
    with pytest.raises(ValueError, match=r"leading \(batch\) axes.*\(3,\)"):
        L.vae_loss(logits, x, mu[:3], lv[:3])


# ------------------------------------------------------------------------------------------------
# gradients: closed forms and central finite differences (float64)
# ------------------------------------------------------------------------------------------------


def test_bce_grad_closed_form(x64):
    x, y = RNG.normal(scale=3, size=10), RNG.random(10)
    w, m = RNG.uniform(0.5, 2, 10), RNG.random(10) > 0.3
    g = jax.grad(lambda x: L.binary_cross_entropy(x, y, mask=m, weights=w))(x)
    ref = np.where(m, w * (sigmoid(x) - y), 0) / (w * m).sum()
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-10, atol=1e-14)


def test_cce_grad_closed_form(x64):
    logits, labels = RNG.normal(size=(5, 4)), RNG.integers(0, 4, 5)
    g = jax.grad(lambda z: L.categorical_cross_entropy(z, labels, reduction="sum"))(logits)
    ref = np.exp(log_softmax(logits)) - np.eye(4)[labels]
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-10, atol=1e-14)


def test_mse_grad_closed_form(x64):
    p, t, w = RNG.normal(size=6), RNG.normal(size=6), RNG.uniform(size=6)
    g = jax.grad(lambda p: L.mse(p, t, weights=w))(p)
    np.testing.assert_allclose(np.asarray(g), 2 * w * (p - t) / w.sum(), rtol=1e-12)


def _fd_cases():
    """(name, f(*args) -> scalar, args). Every case uses a mask and weights, reduction='mean'."""
    r = np.random.default_rng(7)
    B = 4
    m = np.array([True, False, True, True])
    w = r.uniform(0.5, 2.0, B)
    kw = dict(mask=m, weights=w)
    y01 = r.random(B)
    lab = r.integers(0, 3, B)
    soft = r.dirichlet(np.ones(3), B)
    reco = r.uniform(20, 200, B)
    return [
        ("mse", lambda p, t: L.mse(p, t, **kw), (r.normal(size=(B, 2)), r.normal(size=(B, 2)))),
        ("bce", lambda x: L.binary_cross_entropy(x, y01, **kw), (r.normal(scale=2, size=B),)),
        ("cce_int", lambda z: L.categorical_cross_entropy(z, lab, **kw), (r.normal(size=(B, 3)),)),
        ("cce_soft", lambda z: L.categorical_cross_entropy(z, soft, **kw),
         (r.normal(size=(B, 3)),)),
        ("gauss_nll", lambda mu, lv, t: L.gaussian_nll(mu, lv, t, include_constant=True, **kw),
         (r.normal(size=B), r.normal(size=B), r.normal(size=B))),
        ("kl_gauss", lambda mu, lv: L.kl_gaussian(mu, lv, **kw),
         (r.normal(size=(B, 2)), r.normal(size=(B, 2)))),
        ("kl_pair", lambda a, b, c, d: L.kl_diag_gaussians(a, b, c, d, **kw),
         tuple(r.normal(scale=0.7, size=(B, 2)) for _ in range(4))),
        ("kl_cat", lambda p, q: L.kl_categorical(p, q, **kw),
         (r.normal(size=(B, 3)), r.normal(size=(B, 3)))),
        ("vae", lambda rec, mu, lv: L.vae_loss(rec, soft, mu, lv, beta=0.3, **kw).total,
         (r.normal(size=(B, 3)), r.normal(size=(B, 2)), r.normal(size=(B, 2)))),
        ("log_ratio", lambda c, e: L.log_ratio_loss(c, reco, e, **kw),
         (r.normal(scale=0.1, size=B), r.uniform(20, 200, B))),
    ]


@pytest.mark.parametrize("name,f,args", _fd_cases(), ids=[c[0] for c in _fd_cases()])
def test_grad_vs_finite_differences(x64, name, f, args):
    grads = jax.grad(f, argnums=tuple(range(len(args))))(*args)
    for i, (a, g) in enumerate(zip(args, grads)):
        def fi(xi, i=i):
            new = list(args)
            new[i] = xi
            return f(*new)

        fd = central_fd(fi, a)
        np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-6, atol=1e-8,
                                   err_msg=f"{name}: argument {i}")
    # The masked example (index 1) gets exactly zero gradient in every per-example argument.
    for a, g in zip(args, grads):
        if a.shape[:1] == (4,):
            assert np.all(np.asarray(g)[1] == 0.0), name


# ------------------------------------------------------------------------------------------------
# stability at extreme logits (float32)
# ------------------------------------------------------------------------------------------------


def test_bce_extreme_logits_float32():
    x = jnp.array([1e4, 1e4, -1e4, -1e4, 0.0], jnp.float32)
    y = jnp.array([0.0, 1.0, 0.0, 1.0, 1.0], jnp.float32)
    val = np.asarray(L.binary_cross_entropy(x, y, reduction="none"))
    assert val.dtype == np.float32
    np.testing.assert_allclose(val, [1e4, 0.0, 0.0, 1e4, math.log(2)], rtol=1e-6)
    g = np.asarray(jax.grad(lambda x: L.binary_cross_entropy(x, y, reduction="sum"))(x))
    np.testing.assert_allclose(g, [1.0, 0.0, 0.0, -1.0, -0.5], atol=1e-7)
    # Under jit, too.
    gj = np.asarray(jax.jit(jax.grad(lambda x: L.binary_cross_entropy(x, y)))(x))
    assert np.isfinite(gj).all()
    np.testing.assert_allclose(gj, g / 5, atol=1e-7)
    # Moderate logits keep relative precision (a softplus(x) - x*y form would give 0 here).
    np.testing.assert_allclose(float(L.binary_cross_entropy(jnp.float32(30.0), jnp.float32(1.0))),
                               math.exp(-30.0), rtol=1e-5)


def test_cce_extreme_logits_float32():
    z = jnp.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]], jnp.float32)
    lab = jnp.array([1, 0])
    val = np.asarray(L.categorical_cross_entropy(z, lab, reduction="none"))
    np.testing.assert_allclose(val, [2e4, 0.0], rtol=1e-6)
    g = np.asarray(jax.grad(lambda z: L.categorical_cross_entropy(z, lab, reduction="sum"))(z))
    np.testing.assert_allclose(g, [[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)
    soft = jax.nn.one_hot(lab, 3)
    gs = np.asarray(jax.grad(lambda z: L.categorical_cross_entropy(z, soft, reduction="sum"))(z))
    np.testing.assert_allclose(gs, g, atol=1e-7)


def test_kl_categorical_extreme_logits_float32():
    p = jnp.array([[1e4, -1e4, 0.0]], jnp.float32)
    q = jnp.array([[0.0, 0.0, 0.0]], jnp.float32)
    val, (gp, gq) = jax.value_and_grad(lambda p, q: L.kl_categorical(p, q), argnums=(0, 1))(p, q)
    np.testing.assert_allclose(float(val), math.log(3), rtol=1e-6)  # p is a point mass
    assert np.isfinite(np.asarray(gp)).all() and np.isfinite(np.asarray(gq)).all()
    np.testing.assert_allclose(np.asarray(gq), [[-2 / 3, 1 / 3, 1 / 3]], atol=1e-6)


# ------------------------------------------------------------------------------------------------
# jit
# ------------------------------------------------------------------------------------------------


def test_jit_matches_eager():
    x = jnp.asarray(RNG.normal(size=(8, 3)), jnp.float32)
    lab = jnp.asarray(RNG.integers(0, 3, 8))
    m = jnp.asarray(RNG.random(8) > 0.3)
    w = jnp.asarray(RNG.uniform(size=8), jnp.float32)

    def f(x, lab, m, w):
        return L.categorical_cross_entropy(x, lab, mask=m, weights=w)

    np.testing.assert_allclose(float(jax.jit(f)(x, lab, m, w)), float(f(x, lab, m, w)), rtol=1e-6)
