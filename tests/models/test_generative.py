"""hepjax.models.generative: the flow's exact likelihood (change of variables against jax.jacfwd)
and inverse, the diffusion forward process against its closed-form marginal, the WGAN gradient
penalty against its definition, the calorimeter preprocessing round trip and the high-level
features against a plain numpy transcription."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hepjax.models import generative as G
from hepjax.models.generative import calo_data, diffusion as D, flows, metrics


def _perturbed(model, scale, seed):
    graphdef, state = nnx.split(model)
    leaves, tdef = jax.tree_util.tree_flatten(state)
    rng = np.random.default_rng(seed)
    leaves = [jnp.asarray(np.asarray(l) + scale * rng.normal(size=l.shape), l.dtype)
              for l in leaves]
    return nnx.merge(graphdef, jax.tree_util.tree_unflatten(tdef, leaves))


@pytest.mark.parametrize("kind", ["spline", "affine"])
def test_flow_log_likelihood_is_the_change_of_variables_and_inverts(kind):
    # the affine flow also carries an elementwise (marginal) spline layer at the data end
    flow = flows.ConditionalFlow(6, 2, n_layers=2, kind=kind, hidden=(8,), bins=5, bound=3.0,
                                 marginal_splines=int(kind == "affine"), rngs=nnx.Rngs(0))
    flow = _perturbed(flow, 0.1, 1)     # away from the identity start
    rng = np.random.default_rng(2)
    x = (1.5 * rng.normal(size=(5, 6))).astype(np.float32)
    x[0, 0] = 3.7                      # one coordinate in the spline's linear tail
    c = rng.normal(size=(5, 2)).astype(np.float32)

    def f(xi, ci):
        return flow.forward(xi[None], ci[None])[0][0]

    @jax.jit
    def everything(x, c):         # one compilation for all the checks
        z, ld = flow.forward(x, c)
        x_back, ld_inv = flow.inverse(z, c)
        return (flow.log_prob(x, c), jax.vmap(jax.jacfwd(f))(x, c), z, ld, x_back, ld_inv,
                flow.sample(jax.random.key(4), c), flow.sample(jax.random.key(4), c))
    logp, jac, z, ld, x_back, ld_inv, s1, s2 = everything(x, c)
    sign, logdet = jnp.linalg.slogdet(jac)              # per-example Jacobians (5, 6, 6)
    expected = -0.5 * jnp.sum(z ** 2, -1) - 3 * math.log(2 * math.pi) + logdet
    assert bool(jnp.all(sign != 0))
    np.testing.assert_allclose(logp, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x_back, x, atol=1e-5)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-4)
    np.testing.assert_array_equal(s1, s2)     # the sampler is seedable

def test_rational_quadratic_spline_inverse_and_derivative():
    k = jax.random.split(jax.random.key(0), 4)
    x = 3.0 * jax.random.normal(k[0], (2000,))
    w, h = 0.5 * jax.random.normal(k[1], (2000, 8)), 0.5 * jax.random.normal(k[2], (2000, 8))
    d = 0.5 * jax.random.normal(k[3], (2000, 7))
    @jax.jit
    def everything(x, w, h, d):
        y, ld = flows.rational_quadratic_spline(x, w, h, d, bound=4.0)
        xb, ldi = flows.rational_quadratic_spline(y, w, h, d, bound=4.0, inverse=True)
        grad = jax.vmap(jax.grad(
            lambda a, b, c, e: flows.rational_quadratic_spline(a, b, c, e, bound=4.0)[0]))(
                x, w, h, d)
        return y, ld, xb, ldi, grad
    y, ld, xb, ldi, grad = everything(x, w, h, d)
    np.testing.assert_allclose(xb, x, atol=2e-5)
    np.testing.assert_allclose(ld, -ldi, atol=2e-4)
    np.testing.assert_allclose(jnp.log(grad), ld, atol=2e-4)
    outside = jnp.abs(x) > 4.0
    assert bool(outside.any())
    np.testing.assert_array_equal(y[outside], x[outside])
    # the bins-first layout (..., K, D) is the same function of the same parameters
    yt, ldt = jax.jit(lambda x, w, h, d: flows.rational_quadratic_spline(
        x.reshape(40, 50), w.reshape(40, 50, 8).transpose(0, 2, 1),
        h.reshape(40, 50, 8).transpose(0, 2, 1), d.reshape(40, 50, 7).transpose(0, 2, 1),
        bound=4.0, bin_axis=-2))(x, w, h, d)
    np.testing.assert_allclose(yt.reshape(-1), y, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(ldt.reshape(-1), ld, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("inverse", [False, True])
def test_shared_spline_parameters_match_the_per_sample_where_chain(inverse):
    """Parameters (K, D) shared by the batch (``ElementwiseSpline``) take the path through
    ``hepjax.kernels.select_bins`` (fast form on the CPU: gradient written out): the same
    values as the per-sample path on the
    parameters broadcast to (B, K, D), and the same gradients (for the parameters, the
    per-sample gradients summed over the batch) to float32 rounding."""
    rng = np.random.default_rng(3)
    b, k, dim = 300, 6, 5
    w, h = (jnp.asarray(rng.normal(size=(k, dim)), jnp.float32) for _ in range(2))
    d = jnp.asarray(rng.normal(size=(k - 1, dim)), jnp.float32)
    x = jnp.asarray(2.5 * rng.normal(size=(b, dim)), jnp.float32)    # some in the linear tails

    def loss(x, w, h, d):
        y, ld = flows.rational_quadratic_spline(x, w, h, d, bound=4.0, inverse=inverse,
                                                bin_axis=-2)
        return jnp.sum(jnp.sin(y)) + jnp.sum(ld * jnp.cos(x)), (y, ld)

    def per_sample(x, w, h, d):
        full = [jnp.broadcast_to(p, (b,) + p.shape) for p in (w, h, d)]
        (val, aux), g = jax.value_and_grad(loss, (0, 1, 2, 3), has_aux=True)(x, *full)
        return val, aux, (g[0],) + tuple(jnp.sum(gi, 0) for gi in g[1:])

    shared = jax.jit(jax.value_and_grad(loss, (0, 1, 2, 3), has_aux=True))
    (v1, (y1, ld1)), g1 = shared(x, w, h, d)
    v2, (y2, ld2), g2 = jax.jit(per_sample)(x, w, h, d)
    assert bool(jnp.any(jnp.abs(x) > 4.0))
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(ld1, ld2)
    for a, e in zip(g1, g2):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(e))))


def test_flow_parameters_are_not_weakly_typed():
    """A weakly typed parameter comes out of ``training.fit``'s jitted ``lax.scan`` strongly
    typed, so the second chunk would miss jit's cache and recompile the training step."""
    import optax
    flow = flows.ConditionalFlow(4, 1, n_layers=2, kind="affine", hidden=(8,),
                                 marginal_splines=2, rngs=nnx.Rngs(0))
    state = nnx.state(flow)
    leaves = jax.tree_util.tree_leaves((state, optax.adamw(1e-3).init(state)))
    assert leaves and not any(getattr(l, "weak_type", False) for l in leaves)


def test_flow_layouts_are_a_permutation_of_the_output_units():
    """layout="per_param" reads the conditioner's outputs parameter-major: the per_dim flow
    with its output units permuted to that order is the same function."""
    kw = dict(n_layers=1, kind="spline", hidden=(8,), bins=4)
    a = _perturbed(flows.ConditionalFlow(5, 1, rngs=nnx.Rngs(0), **kw), 0.2, 1)
    b = flows.ConditionalFlow(5, 1, layout="per_param", rngs=nnx.Rngs(0), **kw)
    d_b, per = 3, 11                                  # dim 5 -> 3 transformed, 3K - 1 params
    order = np.arange(d_b * per).reshape(d_b, per).T.reshape(-1)   # new unit j <- old order[j]
    for la, lb in zip(a.layers, b.layers):
        nnx.update(lb.net, nnx.state(la.net))
        lb.net.out.kernel[...] = la.net.out.kernel[...][:, order]
        lb.net.out.bias[...] = la.net.out.bias[...][order]
    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    c = np.linspace(-1, 1, 7, dtype=np.float32)[:, None]
    with pytest.raises(ValueError, match="layout"):
        flows.ConditionalFlow(5, 1, layout="bins", rngs=nnx.Rngs(0))
    (za, lda), (zb, ldb) = jax.jit(lambda x, c: (a.forward(x, c), b.forward(x, c)))(x, c)
    np.testing.assert_allclose(zb, za, atol=1e-5)
    np.testing.assert_allclose(ldb, lda, atol=1e-5)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_diffusion_forward_process_has_the_closed_form_marginal(kind):
    T = 50
    sched = D.make_schedule(T, kind)
    betas = np.asarray(D.cosine_betas(T) if kind == "cosine" else D.linear_betas(T))
    x0 = np.array([1.5, -0.3, 2.0])
    for i in (0, 7, 24, 49):
        m_closed, v_closed = D.marginal_moments(x0, i, betas)
        m_iter, v_iter = D.iterated_moments(x0, i, betas)
        np.testing.assert_allclose(m_closed, m_iter, rtol=1e-12)
        assert math.isclose(v_closed, v_iter, rel_tol=1e-12)
        assert math.isclose(1 - float(sched.alpha_bar[i]), v_closed, rel_tol=1e-4, abs_tol=1e-6)
    # Monte Carlo: iterating q_step t times gives q_sample's distribution
    n, i = 20000, 24
    keys = jax.random.split(jax.random.key(0), i + 2)
    x = jnp.broadcast_to(jnp.asarray(x0, jnp.float32), (n, 3))
    for s in range(i + 1):
        x = D.q_step(x, jnp.full((n,), s), jax.random.normal(keys[s], x.shape), sched)
    direct = D.q_sample(jnp.broadcast_to(jnp.asarray(x0, jnp.float32), (n, 3)), jnp.full((n,), i),
                        jax.random.normal(keys[-1], (n, 3)), sched)
    m, v = D.marginal_moments(x0, i, betas)
    for sample in (x, direct):
        np.testing.assert_allclose(np.mean(sample, 0), m, atol=4 * math.sqrt(v / n) + 1e-6)
        np.testing.assert_allclose(np.var(sample, 0), v, rtol=0.05)


def test_diffusion_samplers_run_and_are_seedable():
    model = D.Diffusion(4, 1, T=20, width=8, depth=1, time_dim=8, rngs=nnx.Rngs(0))
    c = jnp.zeros((3, 1))
    ddim = jax.jit(lambda k: D.ddim_sample(model, k, c, steps=5))
    a, b = ddim(jax.random.key(1)), ddim(jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, ddim(jax.random.key(2)))
    # the untrained net predicts eps = 0 (zero output layer): deterministic DDIM then maps x_T to
    # x_T / sqrt(abar_T) (x0_hat at the first step, kept by the following steps)
    x_T = jax.random.normal(jax.random.split(jax.random.key(1))[0], (3, 4))
    np.testing.assert_allclose(a, x_T / jnp.sqrt(model.schedule.alpha_bar[-1]), rtol=1e-4)


def test_gradient_penalty_equals_its_definition():
    dim, n = 5, 6
    module = _perturbed(G.Critic(dim, 1, hidden=(8, 8), rngs=nnx.Rngs(0)), 0.3, 1)
    rng = np.random.default_rng(2)
    real = rng.normal(size=(n, dim)).astype(np.float32)
    fake = (rng.normal(size=(n, dim)) + 1).astype(np.float32)
    cond = rng.normal(size=(n, 1)).astype(np.float32)
    key = jax.random.key(3)
    eps, basis = 1e-2, np.eye(dim, dtype=np.float32)

    @jax.jit
    def everything():
        gp = G.gradient_penalty(module, real, fake, cond, key, weight=10.0)
        u = jax.random.uniform(key, (n,))             # the same draw as inside
        xh = u[:, None] * real + (1 - u[:, None]) * fake
        # per example: the Jacobian by forward mode, and central finite differences
        jac = jax.vmap(jax.jacfwd(lambda z, c: module(z[None], c[None])[0]))(xh, cond)
        fd = jax.vmap(lambda z, c: (module(z + eps * basis, jnp.broadcast_to(c, (dim, 1)))
                                    - module(z - eps * basis, jnp.broadcast_to(c, (dim, 1))))
                      / (2 * eps))(xh, cond)
        return gp, jac, fd
    gp, jac, fd = everything()
    np.testing.assert_allclose(jac, fd, rtol=2e-2, atol=2e-3)
    norms = np.sqrt(np.sum(np.asarray(jac, np.float64) ** 2, -1))
    np.testing.assert_allclose(float(gp), 10.0 * np.mean((norms - 1.0) ** 2), rtol=1e-4)
    # a linear critic D(x) = w.x has gradient w everywhere: GP = lambda (|w| - 1)^2 = 160
    w = jnp.array([3.0, 0.0, 4.0, 0.0, 0.0])
    gp_lin = G.gradient_penalty(lambda x, c: x @ w, real, fake, cond, key, 10.0)
    assert math.isclose(float(gp_lin), 160.0, rel_tol=1e-5)


def test_vae_loss_is_hepjax_vae_loss_per_dimension():
    from hepjax.losses import vae_loss
    model = G.ConditionalVAE(4, 1, latent=2, hidden=(8,), rngs=nnx.Rngs(0))
    x, c = np.ones((3, 4), np.float32), np.zeros((3, 1), np.float32)
    key = jax.random.key(0)

    @jax.jit
    def both(x, c):
        mu, logvar = model.encode(x, c)
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
        expected = vae_loss(model.decoder(z, c), x, mu, logvar).total / 4
        return G.cvae_loss(model, (x, c), key), expected, model.sample(key, c)
    loss, expected, sample = both(x, c)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert sample.shape == (3, 4)


def test_calo_preprocessing_round_trip():
    rng = np.random.default_rng(0)
    cfg = calo_data.CaloDataConfig()
    vox = rng.gamma(0.5, 1.0, (50,) + cfg.shape).astype(np.float32)
    vox[vox < 0.05] = 0.0
    e = np.exp(rng.uniform(np.log(10), np.log(100), 50)).astype(np.float32)
    pre = calo_data.CaloPreprocessor().fit(vox, e, np.random.default_rng(1))
    x = pre.transform(vox, e, None)       # no dequantisation noise: exact round trip
    assert x.shape == (50, 4 + 100)
    back = pre.inverse(x, e, cfg.shape)
    # zeros stay zero, everything else within float32 precision
    np.testing.assert_allclose(back, np.where(vox >= pre.noise, vox, 0.0), rtol=2e-3, atol=2e-4)
    c = pre.condition(np.array([10.0, 100.0]))
    np.testing.assert_allclose(c[:, 0], [-1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("dequantise", ["zeros_log", "uniform"])
def test_calo_dequantisation_and_threshold(dequantise):
    """With the zero voxels dequantised below the read-out threshold (the default), the
    threshold of the inverse gives back every zero and every energy of a zero-suppressed shower;
    CaloFlow-style uniform noise on every voxel biases each read-out voxel upwards."""
    rng = np.random.default_rng(0)
    cfg = calo_data.CaloDataConfig()
    pre = calo_data.CaloPreprocessor(dequantise=dequantise)
    t = pre.noise
    vox = t * np.exp(rng.exponential(2.0, (400,) + cfg.shape))     # all at or above threshold
    vox[rng.uniform(size=vox.shape) < 0.5] = 0.0                    # zero-suppressed voxels
    vox[:, :, 0, 0], vox[0, 0, 1, 1] = 0.0, t                       # exactly at threshold
    vox = vox.astype(np.float32)
    e = (vox.sum((1, 2, 3)) / rng.uniform(0.8, 1.0, 400)).astype(np.float32)   # response < 1
    pre.fit(vox, e, np.random.default_rng(1))
    x = pre.transform(vox, e, np.random.default_rng(2))
    back = pre.inverse(x, e, cfg.shape)
    assert np.isfinite(x).all()
    if dequantise == "zeros_log":
        np.testing.assert_array_equal(back == 0, vox == 0)
        np.testing.assert_allclose(back, vox, rtol=1e-3, atol=0)    # float32 vectors
        assert math.isclose(pre.cut, t * math.exp(-0.5))      # the middle of the gap
    else:
        # every read-out voxel keeps its t/2 noise on average
        bias = (back[vox > 0] - vox[vox > 0]).mean()
        assert 0.4 * t < bias < 0.6 * t
    with pytest.raises(ValueError, match="dequantise"):
        calo_data.CaloPreprocessor(dequantise="gaussian")


def test_calo_dequantisation_redrawn_per_step_in_jax():
    """``transform_jax`` (the dequantisation drawn from a JAX key inside the training loss):
    the zero voxels get log-uniform noise in [t e^-2, t e^-1], below the inverse's cut with the
    gap; quantising back gives the exact empty pattern; the same key gives the same noise, a
    new key new noise; the vectors equal the numpy ``transform`` of the same dequantised voxels;
    ``dequantised_flow_loss`` is the flow's NLL of those vectors."""
    rng = np.random.default_rng(3)
    cfg = calo_data.CaloDataConfig()
    pre = calo_data.CaloPreprocessor()
    t = pre.noise
    vox = t * np.exp(rng.uniform(0.0, 9.0, (300,) + cfg.shape))     # t .. 43 GeV
    vox[rng.uniform(size=vox.shape) < 0.6] = 0.0
    vox[:, 0, 2, 2], vox[0, 0, 1, 1] = 0.0, t                       # empty centre; at threshold
    vox = vox.astype(np.float32)
    e = (vox.sum((1, 2, 3)) / rng.uniform(0.8, 1.0, 300)).astype(np.float32)
    pre.fit(vox, e, np.random.default_rng(1))

    class Gaussian:                     # a flow with f = identity: log p = log N(x; 0, 1)
        def log_prob(self, x, cond):
            return flows.standard_normal_logpdf(x)

    loss_fn = flows.dequantised_flow_loss(pre.transform_jax)

    @jax.jit                            # one compilation for the whole test
    def draw(key):
        return (pre.dequantise_jax(vox, key), pre.transform_jax(vox, e, key),
                loss_fn(Gaussian(), ((vox, e), e[:, None]), key))

    dq, x, loss = (np.asarray(a) for a in draw(jax.random.key(5)))
    zero = vox == 0
    np.testing.assert_array_equal(dq[~zero], vox[~zero])
    depth = -np.log(dq[zero] / t)                                   # uniform in [1, 2]
    assert depth.min() >= 1.0 - 1e-6 and depth.max() <= 2.0 + 1e-6
    assert abs(depth.mean() - 1.5) < 0.01 and abs(depth.std() - 12 ** -0.5) < 0.01
    assert dq[zero].max() < t * math.exp(-1.0) * (1 + 1e-6) < pre.cut < t
    np.testing.assert_array_equal(dq, np.asarray(draw(jax.random.key(5))[0]))   # same key
    assert (np.asarray(draw(jax.random.key(6))[0])[zero] != dq[zero]).all()    # new key
    np.testing.assert_allclose(x, pre.transform(dq, e, None), atol=2e-4)   # float32
    back = pre.inverse(x, e, cfg.shape)
    np.testing.assert_array_equal(back == 0, zero)                  # the exact empty pattern
    np.testing.assert_allclose(back, vox, rtol=1e-3)
    expected = 0.5 * (x.astype(np.float64) ** 2).sum(1).mean() / 104 + 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="transform_jax"):
        pre.transform_jax(vox.reshape(300, -1), e, jax.random.key(5))


def _zero_calibration_data(seed=0, n=3000):
    """Training showers whose voxels are empty with a probability depending on the voxel and
    on E_inc, and a "generated" sample at the same energies whose uncut values put a different
    fraction of each voxel below the default cut (as a model does)."""
    rng = np.random.default_rng(seed)
    cfg = calo_data.CaloDataConfig()
    pre = calo_data.CaloPreprocessor()
    t = pre.noise
    e = np.exp(rng.uniform(np.log(10), np.log(100), n))
    lam = (np.log(e) - np.log(10)) / np.log(10)                     # 0 .. 1
    p_zero = np.clip(rng.uniform(0.0, 0.9, cfg.shape)[None] * (1.2 - lam[:, None, None, None]),
                     0.0, 1.0)
    p_zero[:, 0, 2, 2] = 0.0                                         # never empty
    p_zero[:, 3, 0, 0] = 1.0                                         # always empty
    train = t * np.exp(rng.exponential(2.0, (n,) + cfg.shape))
    train[rng.uniform(size=train.shape) < p_zero] = 0.0
    # generated: read out in fewer or more showers than the truth, values spread across the cut
    p_gen = np.clip(p_zero + rng.uniform(-0.2, 0.2, cfg.shape), 0.0, 1.0)
    gen = t * np.exp(rng.exponential(2.0, (n,) + cfg.shape))
    low = rng.uniform(size=gen.shape) < p_gen
    gen[low] = t * np.exp(-rng.uniform(0.2, 3.0, low.sum()))        # below and above the cut
    return pre, cfg, e, train.astype(np.float32), gen


@pytest.mark.parametrize("n_bins, n_layer_bins", [(1, 1), (5, 1), (3, 4)])
def test_zero_calibration_reproduces_the_training_zero_fractions(n_bins, n_layer_bins):
    """Quantile matching of the per-voxel read-out thresholds (``ZeroCalibration``): on the
    fitting sample (generated at the training energies) every voxel's zero fraction in every
    energy bin equals the training showers' one exactly, while the default cut does not; the
    thresholds stay at the default cut wherever it already matches; ``inverse`` with the
    calibration equals ``apply`` on ``inverse_uncut``; the table survives ``to_dict``."""
    pre, cfg, e, train, gen = _zero_calibration_data()
    cal = calo_data.ZeroCalibration.fit(gen, e, train, e, default_cut=pre.cut, n_bins=n_bins,
                                        n_layer_bins=n_layer_bins)
    assert cal.thresholds.shape == (n_bins, n_layer_bins) + cfg.shape
    out = cal.apply(gen, e)
    bins = cal.bin_of(e)
    assert np.bincount(bins, minlength=n_bins).min() >= len(e) // n_bins - 1
    for b in range(n_bins):
        sel = bins == b
        np.testing.assert_array_equal((out[sel] == 0).sum(0), (train[sel] == 0).sum(0))
        assert ((gen[sel] < pre.cut).sum(0) != (train[sel] == 0).sum(0)).any()
    if n_layer_bins > 1:
        # per layer-energy bin (by rank), the generated zero counts equal the training ones
        lb_gen = cal.layer_bins_of(gen, e)
        for b in range(n_bins):
            sel = bins == b
            for k in range(cfg.shape[0]):
                r_train = train[sel, k].reshape(sel.sum(), -1).sum(-1)
                rank = np.empty(sel.sum(), np.int64)
                rank[np.argsort(r_train / e[sel], kind="stable")] = np.arange(sel.sum())
                lb_train = rank * n_layer_bins // sel.sum()
                np.testing.assert_array_equal(np.bincount(lb_gen[sel, k], minlength=n_layer_bins),
                                              np.bincount(lb_train, minlength=n_layer_bins))
                for c in range(n_layer_bins):
                    np.testing.assert_array_equal(
                        (out[sel, k][lb_gen[sel, k] == c] == 0).sum(0),
                        (train[sel, k][lb_train == c] == 0).sum(0))
    assert (out[:, 0, 2, 2] > 0).all() and (out[:, 3, 0, 0] == 0).all()
    np.testing.assert_array_equal(out[out > 0], gen[out > 0])        # kept values unchanged
    # where the default cut already gives the training count, the threshold is the cut
    g = np.sort(gen[bins == 0].reshape((bins == 0).sum(), -1), 0)
    k = (train[bins == 0] == 0).reshape(len(g), -1).sum(0)
    already = (gen[bins == 0] < pre.cut).reshape(len(g), -1).sum(0) == k
    assert already.any()
    if n_layer_bins == 1:
        np.testing.assert_array_equal(cal.thresholds[0, 0].reshape(-1)[already], pre.cut)
    # the same through the preprocessing inverse, and after a save / load
    x = pre.fit(train, e, np.random.default_rng(1)).transform(train, e, np.random.default_rng(2))
    cal2 = calo_data.ZeroCalibration.from_dict(
        {k: np.asarray(a) for k, a in cal.to_dict().items()})
    np.testing.assert_array_equal(pre.inverse(x, e, cfg.shape, cal2),
                                  cal.apply(pre.inverse_uncut(x, e, cfg.shape), e)
                                  .astype(np.float32))
    np.testing.assert_array_equal(pre.inverse(x, e, cfg.shape),
                                  np.where(pre.inverse_uncut(x, e, cfg.shape) >= pre.cut,
                                           pre.inverse_uncut(x, e, cfg.shape), 0.0)
                                  .astype(np.float32))


def test_zero_calibration_of_a_perfect_model_is_the_default_cut():
    """A "model" that returns the training showers themselves, dequantised (zeros in the box
    below the cut), needs no calibration: every threshold is the default cut and the empty
    pattern is the training one; a ``floor`` raises kept voxels below it; too many energy bins
    for the sample are an error."""
    pre, cfg, e, train, _ = _zero_calibration_data(seed=1, n=600)
    t = pre.noise
    rng = np.random.default_rng(4)
    gen = np.where(train > 0, train, t * np.exp(-rng.uniform(1.0, 2.0, train.shape)))
    cal = calo_data.ZeroCalibration.fit(gen, e, train, e, default_cut=pre.cut, n_bins=3)
    np.testing.assert_array_equal(cal.thresholds, pre.cut)
    np.testing.assert_array_equal(cal.apply(gen, e), train)
    low = calo_data.ZeroCalibration(edges=cal.edges, thresholds=np.full_like(cal.thresholds,
                                                                             0.1 * t), floor=t)
    out = low.apply(gen, e)
    assert (out > 0).all() and out.min() == t          # every voxel kept, at least t
    np.testing.assert_array_equal(out[train > 0], train[train > 0])
    with pytest.raises(ValueError, match="bin"):
        calo_data.ZeroCalibration.fit(gen[:2], e[:2], train, e, default_cut=pre.cut,
                                      n_bins=5)


def test_layer_calibration_maps_the_generated_onto_the_training_quantiles():
    """``LayerCalibration`` (quantile mapping of the L layer coordinates per E_inc bin): a
    "model" whose layer coordinates are the training ones with a per-bin affine distortion is
    mapped back onto the training values (exact for an increasing affine map, to float
    precision), the shape coordinates are untouched, and a model without distortion is left as
    it is; the table survives ``to_dict``."""
    rng = np.random.default_rng(7)
    n, L, D = 4000, 4, 104
    e = np.exp(rng.uniform(np.log(10), np.log(100), n))
    train = rng.normal(size=(n, D)) + np.log(e)[:, None] * np.linspace(-1, 1, D)
    cal0 = calo_data.LayerCalibration.fit(train, e, train, e, n_layers=L, n_bins=4)
    bins = cal0.bin_of(e)
    gen = train.copy()
    scale, shift = 1.0 + 0.1 * (bins + 1), 0.3 * (bins - 1.5)
    gen[:, :L] = gen[:, :L] * scale[:, None] + shift[:, None]
    cal = calo_data.LayerCalibration.fit(gen, e, train, e, n_layers=L, n_bins=4)
    out = cal.apply(gen, e)
    np.testing.assert_allclose(out[:, :L], train[:, :L], atol=1e-9)
    np.testing.assert_array_equal(out[:, L:], gen[:, L:])
    assert np.abs(gen[:, :L] - train[:, :L]).max() > 0.5
    np.testing.assert_allclose(cal0.apply(train, e), train, atol=1e-9)
    cal2 = calo_data.LayerCalibration.from_dict(cal.to_dict())
    np.testing.assert_array_equal(cal2.apply(gen, e), out)


def test_voxelise_sums_hits_into_the_grid():
    cfg = calo_data.CaloDataConfig(groups=((0, 2), (2, 28)), grid=3)
    ev = {"hit_layer": np.array([0, 1, 5, 30, 0, 3]), "hit_ix": np.array([40, 40, 41, 40, 43, 39]),
          "hit_iy": np.array([40, 40, 39, 40, 40, 41]),
          "hit_energy": np.array([1.0, 2.0, 3.0, 7.0, 5.0, 0.5], np.float32)}
    v = calo_data.voxelise(ev, cfg, cfg.centre_cell())
    expect = np.zeros((2, 3, 3), np.float32)
    expect[0, 1, 1] = 3.0          # layers 0 and 1, centre cell
    expect[1, 2, 0] = 3.0
    expect[1, 0, 2] = 0.5          # layer 30 (CE-H) and ix 43 (outside) are dropped
    np.testing.assert_array_equal(v, expect)


def test_high_level_features_against_numpy_transcription():
    rng = np.random.default_rng(3)
    vox = rng.exponential(1.0, (40, 2, 3, 3))
    vox[rng.uniform(size=vox.shape) < 0.3] = 0.0
    vox[0, 1] = 0.0                                   # an empty layer
    e = rng.uniform(10, 100, 40)
    f = metrics.high_level_features(vox, e, cell_size=2.0)
    coords = np.array([-2.0, 0.0, 2.0])
    for n in range(40):
        for k in range(2):
            img = vox[n, k]
            tot = img.sum()
            assert math.isclose(f[f"E_{k}"][n], tot)
            if tot == 0:
                for name in ("cx", "cy", "wx", "wy"):
                    assert f[f"{name}_{k}"][n] == 0
                assert f[f"sparsity_{k}"][n] == 1.0
                continue
            cx = sum(img[i, j] * coords[i] for i in range(3) for j in range(3)) / tot
            cy = sum(img[i, j] * coords[j] for i in range(3) for j in range(3)) / tot
            wx = math.sqrt(max(sum(img[i, j] * coords[i] ** 2 for i in range(3)
                                   for j in range(3)) / tot - cx ** 2, 0))
            wy = math.sqrt(max(sum(img[i, j] * coords[j] ** 2 for i in range(3)
                                   for j in range(3)) / tot - cy ** 2, 0))
            np.testing.assert_allclose([f[f"cx_{k}"][n], f[f"cy_{k}"][n], f[f"wx_{k}"][n],
                                        f[f"wy_{k}"][n]], [cx, cy, wx, wy], atol=1e-9)
            assert math.isclose(f[f"sparsity_{k}"][n], np.sum(img == 0) / 9)
        assert math.isclose(f["E_tot/E_inc"][n], vox[n].sum() / e[n])


def test_distances_and_band_test():
    from scipy.stats import wasserstein_distance
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 3000), rng.normal(0.2, 1.1, 2000)
    assert math.isclose(metrics.wasserstein_1d(a, b), wasserstein_distance(a, b), rel_tol=1e-9)
    edges = metrics.feature_bins(a)
    p = np.histogram(a, edges)[0] / len(a)
    q = np.histogram(b, edges)[0] / len(b)
    assert math.isclose(metrics.separation_power(a, b, edges),
                        0.5 * sum((pi - qi) ** 2 / (pi + qi) for pi, qi in zip(p, q)
                                  if pi + qi > 0))
    assert metrics.separation_power(a, a, edges) == 0
    same = metrics.compare(a, rng.normal(0, 1, 3000))
    shifted = metrics.compare(a, b)
    assert same["in_band"] and not shifted["in_band"]
    assert shifted["separation"] > same["separation"]


def test_classifier_test_separates_only_different_samples():
    rng = np.random.default_rng(0)
    shape = (500, 2, 3, 3)
    a, b = rng.exponential(1.0, shape), rng.exponential(1.0, shape)
    e = rng.uniform(10, 100, 500)
    same = metrics.classifier_test(a, e, b, e, epochs=4, hidden=32)
    diff = metrics.classifier_test(a, e, 3.0 * b, e, epochs=4, hidden=32)
    assert 0.4 < same["auc"] < 0.62
    assert diff["auc"] > 0.8
