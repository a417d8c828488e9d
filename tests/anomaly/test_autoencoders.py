"""The autoencoder variants of hepjax.models.autoencoders, each tested on the property that
defines it: the DAE denoises (trained on corrupted inputs, scored on clean ones), the VAE's KL is
the closed form and its ELBO a lower bound on log p(x), the set AE is permutation invariant and
its loss vanishes on a shuffled perfect reconstruction. Plus the bad-input errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.optimize import linear_sum_assignment

from hepjax.anomaly import data as adata
from hepjax.anomaly import scores
from hepjax.anomaly.train import fit
from hepjax.models import autoencoders as ae


def _manifold(n, seed=0, dim=8, latent=2):
    """Points on a 2-D plane in 8-D (a linear manifold a DAE can learn to project onto)."""
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, latent)))[0].T  # (2, 8)
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, latent)) @ basis * 2.0).astype(np.float32)


# ---------------------------------------------------------------- dense / conv AE


def test_reconstruction_loss_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4, 4, 1)), rng.normal(size=(5, 4, 4, 1))
    want = ((a - b) ** 2).reshape(5, -1).sum(1)
    np.testing.assert_allclose(ae.reconstruction_loss(jnp.asarray(a), jnp.asarray(b)), want,
                               rtol=1e-5)


def test_conv_ae_shapes_and_wrong_image_size():
    model = ae.ConvAE(8, (2, 4), 3, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 8, 8, 1))
    z, y = nnx.jit(lambda m, x: (m.encode(x), m(x)))(model, x)
    assert z.shape == (2, 3) and y.shape == x.shape
    with pytest.raises(ValueError, match=r"expected images \(batch, 8, 8, 1\), got shape \(2, 10, 10, 1\)"):
        model(jnp.ones((2, 10, 10, 1)))
    with pytest.raises(ValueError, match="image_size=18 must be divisible by"):
        ae.ConvAE(18, (4, 8), 6, rngs=nnx.Rngs(0))


def test_dense_ae_same_seed_bit_identical():
    x = _manifold(256)
    outs = []
    for _ in range(2):
        model = ae.DenseAE(8, (16,), 2, rngs=nnx.Rngs(3))
        fit(model, lambda m, b, k: jnp.mean(ae.reconstruction_loss(m(b[0]), b[0])), x, steps=10,
            batch_size=64, seed=5)
        outs.append(np.asarray(scores.reconstruction_error(model, x)))
    assert outs[0].mean() < 30.0
    np.testing.assert_array_equal(outs[0], outs[1])


# ---------------------------------------------------------------- denoising AE


def _train_dae(noise_level, x):
    # over-complete (latent 16 > 8 inputs): without noise it can learn the identity
    model = ae.DenseAE(8, (64,), 16, rngs=nnx.Rngs(0))
    noise = ae.NoiseModel("gaussian", noise_level)
    fit(model, lambda m, b, k: ae.denoising_loss(m, k, b[0], noise), x, steps=400,
        batch_size=128, learning_rate=5e-3, seed=0)
    return model


def test_dae_trains_on_corrupted_inputs_and_scores_clean_ones():
    """Trained on corrupted copies, the DAE maps a noisy point back towards the clean manifold:
    the error to the clean point is far below the noise it was given. The same over-complete
    network trained without noise (a plain AE) learns ~the identity and does not denoise. The
    score is the clean-input reconstruction error: deterministic, no noise drawn."""
    x = _manifold(2048)
    test = _manifold(512, seed=1)
    noisy = test + 0.5 * np.random.default_rng(2).normal(size=test.shape).astype(np.float32)
    noise_power = float(np.mean(np.sum((noisy - test) ** 2, 1)))          # ~ 8 * 0.25 = 2
    dae, plain = _train_dae(0.5, x), _train_dae(0.0, x)
    apply = nnx.jit(lambda m, x: m(x))
    err_dae = float(np.mean(np.sum((np.asarray(apply(dae, jnp.asarray(noisy))) - test) ** 2, 1)))
    err_plain = float(np.mean(np.sum((np.asarray(apply(plain, jnp.asarray(noisy))) - test) ** 2,
                                     1)))
    # projection onto the 2-D plane keeps 2/8 of the noise: ~0.5; the identity keeps all of it
    assert err_dae < 0.5 * noise_power, (err_dae, noise_power)
    assert err_plain > 0.6 * noise_power, (err_plain, noise_power)
    s1, s2 = scores.reconstruction_error(dae, test), scores.reconstruction_error(dae, test)
    np.testing.assert_array_equal(s1, s2)
    # off-manifold (anomalous) points score higher than clean on-manifold ones
    assert np.median(scores.reconstruction_error(dae, noisy)) > 3 * np.median(s1)


def test_noise_models():
    key = jax.random.PRNGKey(0)
    mask = np.arange(20)[None] < np.random.default_rng(0).integers(1, 21, 300)[:, None]
    masked, g, (out, keep) = map(jax.device_get, jax.jit(lambda k, m: (
        ae.corrupt(k, jnp.ones((200, 50)), "masking", 0.3),
        ae.corrupt(k, jnp.zeros((400, 50)), "gaussian", 0.2),
        ae.corrupt(k, jnp.ones((300, 20, 3)), "constituent_dropout", 0.5, m)))(key, mask))
    assert abs(float(np.mean(masked == 0)) - 0.3) < 0.01
    assert abs(float(np.std(g)) - 0.2) < 0.005
    assert not np.any(keep & ~mask)                         # padding stays padding
    assert np.all(keep.sum(1) >= 1)                         # no jet emptied
    assert np.all(np.where(keep[..., None], out == 1, out == 0))
    frac = float((mask & ~keep).sum() / mask.sum())
    assert 0.4 < frac < 0.5                                 # ~0.5 minus the kept leading ones
    with pytest.raises(ValueError, match="kind='blur'"):
        ae.NoiseModel("blur")


# ---------------------------------------------------------------- VAE


def test_vae_kl_equals_closed_form_and_monte_carlo():
    model = ae.VAE(6, (16,), 3, rngs=nnx.Rngs(1))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32))
    (mu, logvar), kl = jax.device_get(nnx.jit(lambda m, x: (m.encode(x), m.kl(x)))(model, x))
    closed = 0.5 * np.sum(np.exp(logvar) + mu ** 2 - 1 - logvar, -1)
    np.testing.assert_allclose(kl, closed, rtol=1e-5)
    # Monte Carlo KL = E_q[log q(z) - log p(z)] with 400k draws
    z = np.asarray(model.sample_z(jax.random.PRNGKey(0), jnp.asarray(mu), jnp.asarray(logvar),
                                  400_000), np.float64)
    log_q = np.sum(-0.5 * (z - mu) ** 2 / np.exp(logvar) - 0.5 * logvar, -1)
    log_p = np.sum(-0.5 * z ** 2, -1)
    mc = (log_q - log_p).mean(0)
    err = (log_q - log_p).std(0) / math.sqrt(len(z))
    assert np.all(np.abs(mc - closed) < 4 * err + 1e-4), (mc, closed, err)


def test_vae_elbo_is_a_bound_linear_decoder_closed_form():
    """Linear decoder x = W z + c + sigma eps, z ~ N(0, I): log p(x) = log N(x; c, W W^T +
    sigma^2 I), and the posterior is N(S W^T (x - c) / sigma^2, S), S = (I + W^T W /
    sigma^2)^-1, diagonal when W's columns are orthogonal. With a linear encoder set to that
    posterior the ELBO equals log p(x) and so does every importance weight; with the encoder's
    mean shifted by d the ELBO falls short by exactly KL(q || posterior) = |d|^2 / (2 S), while
    the importance-sampled likelihood still converges to log p(x)."""
    sigma, latent, dim = 0.7, 2, 4
    model = ae.VAE(dim, (), latent, decoder_hidden=(), decoder_sigma=sigma, rngs=nnx.Rngs(2))
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.normal(size=(dim, latent)))[0]            # orthonormal columns
    w = q * np.array([1.5, 0.8])                                    # W (dim, latent)
    c = rng.normal(size=dim)
    s_diag = 1.0 / (1.0 + (w ** 2).sum(0) / sigma ** 2)             # S, diagonal
    k = w * s_diag / sigma ** 2                                     # mu = (x - c) @ k
    model.decoder.out.kernel[...] = jnp.asarray(w.T, jnp.float32)
    model.decoder.out.bias[...] = jnp.asarray(c, jnp.float32)
    model.mu_head.kernel[...] = jnp.asarray(k, jnp.float32)
    model.mu_head.bias[...] = jnp.asarray(-c @ k, jnp.float32)
    model.logvar_head.kernel[...] = jnp.zeros((dim, latent))
    model.logvar_head.bias[...] = jnp.asarray(np.log(s_diag), jnp.float32)
    x = rng.normal(size=(6, dim)).astype(np.float32)
    cov = w @ w.T + sigma ** 2 * np.eye(dim)
    d = x - c
    exact = (-0.5 * np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
             - 0.5 * np.linalg.slogdet(2 * np.pi * cov)[1])
    f = nnx.jit(lambda m, x: (m.elbo(x, jax.random.PRNGKey(1), 20_000),
                              m.log_likelihood(x, jax.random.PRNGKey(2), 20_000)))
    elbo, is_est = map(np.asarray, f(model, jnp.asarray(x)))
    # the ELBO's E_q log p(x|z) is a 20k-draw Monte Carlo mean (std ~0.01); the importance
    # weights are all equal to p(x), so that estimate is exact
    np.testing.assert_allclose(elbo, exact, atol=0.04)
    np.testing.assert_allclose(is_est, exact, atol=2e-4)
    shift = np.array([0.3, -0.2])
    model.mu_head.bias[...] = jnp.asarray(-c @ k + shift, jnp.float32)
    elbo, is_est = map(np.asarray, f(model, jnp.asarray(x)))
    gap = float(np.sum(shift ** 2 / (2 * s_diag)))
    np.testing.assert_allclose(exact - elbo, gap, atol=0.04)   # gap ~0.3
    assert np.all(elbo < exact) and np.all(is_est > elbo + 0.2)
    np.testing.assert_allclose(is_est, exact, atol=0.03)


def test_vae_elbo_below_importance_sampled_likelihood_nonlinear():
    model = ae.VAE(5, (16,), 2, decoder_sigma=0.5, rngs=nnx.Rngs(4))
    x = jnp.asarray(np.random.default_rng(3).normal(size=(8, 5)).astype(np.float32))
    elbo, *ll = map(np.asarray, nnx.jit(lambda m, x: (
        m.elbo(x, jax.random.PRNGKey(0), 5000), m.log_likelihood(x, jax.random.PRNGKey(1), 10),
        m.log_likelihood(x, jax.random.PRNGKey(2), 5000)))(model, x))
    assert np.all(elbo <= ll[1])
    assert np.mean(ll[1]) >= np.mean(ll[0]) - 1e-3        # tighter with more samples


# ---------------------------------------------------------------- set AE and set losses


def _random_sets(b=3, n=10, f=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, n, f)).astype(np.float32)
    mask = np.arange(n)[None] < rng.integers(3, n + 1, b)[:, None]
    return np.where(mask[..., None], x, 0).astype(np.float32), mask


def _permute(x, mask, seed=1):
    """Random permutation of every set, padding slots moved too."""
    rng = np.random.default_rng(seed)
    perm = np.stack([rng.permutation(x.shape[1]) for _ in range(len(x))])
    return np.take_along_axis(x, perm[..., None], 1), np.take_along_axis(mask, perm, 1), perm


@pytest.mark.parametrize("encoder", ["deepsets", "edgeconv"])
def test_set_ae_is_permutation_invariant(encoder):
    x, mask = _random_sets()
    xp, mp, _ = _permute(x, mask)
    model = ae.SetAE(3, 6, num_points=7, encoder=encoder, k=4, rngs=nnx.Rngs(0))
    f = nnx.jit(lambda m, x, k: (m.encode(x, k), m.score(x, k)))
    (z, s), (zp, sp) = f(model, x, mask), f(model, xp, mp)
    np.testing.assert_allclose(z, zp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, sp, rtol=1e-5)
    # the padding's contents do not matter
    junk = np.where(mask[..., None], x, 9.0)
    np.testing.assert_allclose(f(model, junk, mask)[0], z, atol=1e-6)


def test_chamfer_matches_brute_force_and_vanishes_on_shuffled_copy():
    x, mask = _random_sets(seed=2)
    y = np.random.default_rng(3).normal(size=(3, 5, 3)).astype(np.float32)
    got = np.asarray(ae.chamfer_distance(x, mask, y))
    for b in range(3):
        xs = x[b][mask[b]]
        d = ((xs[:, None] - y[b][None]) ** 2).sum(-1)
        assert got[b] == pytest.approx(d.min(1).mean() + d.min(0).mean(), rel=1e-5)
    xp, mp, _ = _permute(x, mask)
    assert np.all(np.asarray(ae.chamfer_distance(x, mask, xp, mp)) == 0.0)


def test_sinkhorn_tends_to_exact_ot_and_divergence_vanishes_on_shuffled_copy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 6, 2)).astype(np.float32)
    y = rng.normal(size=(2, 6, 2)).astype(np.float32)
    a = np.ones((2, 6), np.float32)
    got = np.asarray(ae.sinkhorn_cost(jnp.asarray(x), a, jnp.asarray(y), a, epsilon=0.003,
                                      num_iters=2000))
    for b in range(2):
        cost = ((x[b][:, None] - y[b][None]) ** 2).sum(-1)
        r, c = linear_sum_assignment(cost)
        assert got[b] == pytest.approx(cost[r, c].mean(), rel=0.02)
    xs, mask = _random_sets(b=2, n=8, f=2, seed=5)
    w = np.where(mask, rng.random(mask.shape), 0).astype(np.float32)
    xp, mp, perm = _permute(xs, mask)
    wp = np.take_along_axis(w, perm, 1)
    div = np.asarray(ae.sinkhorn_divergence(jnp.asarray(xs), w, jnp.asarray(xp), wp))
    assert np.all(np.abs(div) < 1e-5), div


@pytest.mark.parametrize("loss", ["chamfer", "sinkhorn"])
def test_set_loss_zero_on_perfect_shuffled_reconstruction(loss):
    x, mask = _random_sets(b=2, n=8)
    model = ae.SetAE(3, 4, num_points=8, loss=loss, rngs=nnx.Rngs(0))
    # a "decoder output" that is the input, shuffled, with padded points given weight 0 and
    # for chamfer placed on a real point (a decoder emits num_points points, all real)
    w = mask / mask.sum(1, keepdims=True)
    filled = np.where(mask[..., None], x, x[:, :1])
    xp, _, perm = _permute(filled, mask)
    wp = np.take_along_axis(w, perm, 1).astype(np.float32)
    value = np.asarray(model.set_loss(jnp.asarray(x), mask, jnp.asarray(xp), jnp.asarray(wp)))
    assert np.all(np.abs(value) < 1e-5), value
    # and a wrong reconstruction is penalised
    bad = np.asarray(model.set_loss(jnp.asarray(x), mask, jnp.asarray(xp) + 0.5, jnp.asarray(wp)))
    assert np.all(bad > 0.05)


# ---------------------------------------------------------------- bad input


def test_bad_training_data_errors():
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"none of the 4 examples has the background label 0 "
                                         r"\(labels found: \[1\]\)"):
        adata.check_training_data(x, np.ones(4, int))
    with pytest.raises(ValueError, match=r"training data: no examples \(shape \(0, 3\)\)"):
        adata.check_training_data(np.zeros((0, 3)))
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN/inf entries in shape \(4, 3\), the first at "
                                         r"index \(2, 1\)"):
        adata.check_training_data(bad)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 40, 40\), got \(2, 37, 37, 1\)"):
        adata.check_images(np.zeros((2, 37, 37)), 40)
    kept = adata.check_training_data(x, np.array([0, 1, 0, 1]))
    assert kept.shape == (2, 3)
    with pytest.raises(ValueError, match="the training arrays hold no examples"):
        fit(ae.DenseAE(3, (4,), 2, rngs=nnx.Rngs(0)), lambda m, b, k: 0.0,
            np.zeros((0, 3), np.float32), steps=1)
