"""Point-cloud jet generation (issue 27, item 3): the JetNet data conversion, the JetNet metrics
against direct numpy / scipy references, closed forms and energyflow's values, and the
permutation equivariance of the flow-matching generators (set transformer and EPiC layers)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.stats import wasserstein_distance

from hepjax.models.generative import jet_metrics as jm
from hepjax.models.generative import pointcloud as pc

# one jet (eta_rel, phi_rel, pT_rel) and its EFPs from energyflow 1.4.0,
# EFPSet(..., measure='hadr', beta=1, normed=None, coords='ptyphim') (as jetnet.utils.efps)
JET = np.array([[-0.160386, -0.110529, 0.292514], [-0.264872, -0.156956, 0.270327],
                [-0.049672, 0.149749, 0.254827], [0.084089, 0.326957, 0.152977],
                [0.227209, 0.054554, 0.136135], [0.021941, -0.246666, 0.123797]])
ENERGYFLOW_PRIME = [0.02433854047160811, 0.02239923568731732, 0.02293713045881006,
                    0.01420990406500834, 0.01758090012735631]
ENERGYFLOW_D4 = [
    1.2305770000000003, 0.4256304215460027, 0.17135758503930903, 0.07645961813423033,
    0.03665376574517458, 0.15352009369000036, 0.06325309833001047, 0.02876521024337545,
    0.02658431244046547, 0.03848751386163363, 0.01499932715741718, 0.05774722093677425,
    0.02433854047160811, 0.05464073915921079, 0.02239923568731732, 0.02293713045881006,
    0.01420990406500834, 0.01758090012735631, 0.02260220480730723, 0.02028025412338941,
    0.01955988655845448, 0.181161255745428, 0.07293500115538612, 0.03254353949771885,
    0.02936342195050403, 0.06534282219305669, 0.02630683250972693, 0.02692244290629312,
    0.01638145674918475, 0.07710774165072973, 0.02457897399042938, 0.02325676084192007,
    0.02356841916658649, 0.03104335528722519, 0.02781189295503622, 0.03281940058326037]


def _clouds(n=4, p=7, seed=0):
    rng = np.random.default_rng(seed)
    clouds = np.stack([rng.normal(0, 0.2, (n, p)), rng.normal(0, 0.2, (n, p)),
                       rng.uniform(0.01, 0.3, (n, p))], -1)
    mask = np.arange(p)[None, :] < rng.integers(3, p + 1, n)[:, None]
    return np.where(mask[..., None], clouds, 0.0), mask


def test_efps_match_energyflow_values():
    mask = np.ones((1, len(JET)), bool)
    np.testing.assert_allclose(jm.efps(JET[None], mask)[0], ENERGYFLOW_PRIME, rtol=1e-10)
    np.testing.assert_allclose(jm.efps(JET[None], mask, jm.D_LE_4)[0], ENERGYFLOW_D4, rtol=1e-10)


def test_efps_match_direct_sum_with_mask():
    clouds, mask = _clouds(n=2, p=5)
    clouds[~mask] = 5.0          # padded entries hold garbage: must be ignored
    fast = jm.efps(clouds, mask, jm.D_LE_4)
    small = [g for g in jm.D_LE_4 if 1 + max((max(e) for e in g), default=0) <= 4]
    for i in range(len(clouds)):
        for g in small:
            ref = jm.efp_graph_direct(clouds[i], mask[i], g)
            np.testing.assert_allclose(fast[i, jm.D_LE_4.index(g)], ref, rtol=1e-12)
    # graphs with 5-8 vertices (disconnected): on 3 particles
    c3, m3 = clouds[:, :3], np.ones((len(clouds), 3), bool)
    fast3 = jm.efps(c3, m3, jm.D_LE_4)
    for g in (g for g in jm.D_LE_4 if g not in small):
        np.testing.assert_allclose(fast3[0, jm.D_LE_4.index(g)],
                                   jm.efp_graph_direct(c3[0], m3[0], g), rtol=1e-12)


def test_jet_mass_two_particle_closed_form():
    # m^2 = 2 pT1 pT2 (cosh d_eta - cos d_phi) for two massless particles
    clouds = np.array([[[0.1, -0.2, 0.6], [-0.3, 0.25, 0.3], [9.0, 9.0, 9.0]]])
    mask = np.array([[True, True, False]])
    m2 = 2 * 0.6 * 0.3 * (np.cosh(0.4) - np.cos(0.45))
    np.testing.assert_allclose(jm.jet_mass(clouds, mask), [np.sqrt(m2)], rtol=1e-12)


def test_w1_is_scipy_on_the_same_resamplings():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 300), rng.normal(0.5, 1.2, 200)
    mean, std = jm.w1(a, b, num_batches=4, num_eval=150, seed=3)
    r = np.random.default_rng(3)
    vals = [wasserstein_distance(a[r.integers(0, 300, 150)], b[r.integers(0, 200, 150)])
            for _ in range(4)]
    assert mean == pytest.approx(np.mean(vals), rel=1e-12)
    assert std == pytest.approx(np.std(vals), rel=1e-12)
    # a shift by c of the same sample: W1 = c
    assert jm.w1(a, a + 0.7, num_batches=1, num_eval=10_000, seed=0)[0] == pytest.approx(
        jm.w1(a, a, num_batches=1, num_eval=10_000, seed=0)[0] + 0.7, abs=0.05)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=3), rng.normal(size=3)
    s1, s2 = np.diag([1.0, 2.0, 0.5]), np.diag([0.3, 2.0, 1.5])
    # commuting covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    expect = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(np.diag(s1)) - np.sqrt(np.diag(s2))) ** 2)
    assert jm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expect, rel=1e-10)
    a = rng.normal(size=(3, 3))
    s3 = a @ a.T + np.eye(3)
    assert jm.frechet_distance(mu1, s3, mu1, s3) == pytest.approx(0.0, abs=1e-8)


def test_fpd_identical_and_shifted_gaussians():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6000, 3)), rng.normal(size=(6000, 3))
    value, err = jm.fpd(x, y, min_samples=1000, max_samples=6000, num_batches=5, normalise=False)
    assert value < max(3 * err, 2e-3)
    # shifted by d = 0.3 in one coordinate: the resampled FPD extrapolates to the Frechet
    # distance of the two whole samples' moments (d^2 = 0.09 up to the samples' fluctuations)
    y = y + np.array([0.3, 0, 0])
    value, err = jm.fpd(x, y, min_samples=1000, max_samples=6000, num_batches=5,
                        normalise=False)
    whole = jm.frechet_distance(x.mean(0), np.cov(x.T), y.mean(0), np.cov(y.T))
    assert whole == pytest.approx(0.09, abs=0.03)
    assert value == pytest.approx(whole, abs=max(4 * err, 0.005))


def test_mmd_matches_direct_double_sum_and_kpd():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.3, 1.0, size=(9, 3))
    k = lambda a, b: (a @ b / 3 + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(12) for j in range(12) if i != j) / (12 * 11)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(a, b) for a, b in itertools.product(x, y)) / (12 * 9)
    assert jm.mmd_poly_unbiased(x, y, degree=3) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    big = rng.normal(size=(1600, 3))
    same, err = jm.kpd(big[:800], big[800:], num_batches=5, batch_size=800)
    shifted, err2 = jm.kpd(big[:800], big[800:] + 0.5, num_batches=5, batch_size=800)
    assert abs(same) < 0.05 * shifted and shifted > 10 * err2


def test_jetnet_clouds_coordinates_order_and_padding():
    # two constituents at (pt, eta, phi) and a jet axis at phi = 3.1: phi_rel wraps through pi
    def p4(pt, eta, phi):
        return [pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)]
    parts = np.array([[p4(50.0, 0.2, -3.1), p4(200.0, 0.5, 3.0), [0, 0, 0, 0]]])
    mask = np.array([[True, True, False]])
    jet = np.array([p4(400.0, 0.4, 3.1)])
    clouds, m = pc.jetnet_clouds(parts, mask, jet, n_particles=4)
    assert clouds.shape == (1, 4, 3) and m.tolist() == [[True, True, False, False]]
    np.testing.assert_allclose(clouds[0, 0], [0.1, -0.1, 0.5], atol=1e-5)   # hardest first
    np.testing.assert_allclose(clouds[0, 1], [-0.2, 2 * np.pi - 6.2, 0.125], atol=1e-5)
    assert (clouds[0, 2:] == 0).all()
    with pytest.raises(ValueError, match="jet_p4 must be"):
        pc.jetnet_clouds(parts, mask, jet[:, :3])


def test_scaler_round_trip():
    clouds, mask = _clouds(n=20, p=8, seed=6)
    s = pc.CloudScaler(clouds, mask)
    x = s.transform(clouds, mask)
    assert abs(x[mask].mean()) < 1e-5 and (x[~mask] == 0).all()
    np.testing.assert_allclose(s.inverse(x, mask), clouds, rtol=1e-5, atol=1e-6)


def _jitted(model):
    graphdef, params = nnx.split(model)
    return jax.jit(lambda x, t, m: nnx.merge(graphdef, params)(x, t, m))


def _random_model(seed=0, backbone="transformer"):
    if backbone == "transformer":
        model = pc.SetTransformerVelocity(3, width=16, depth=2, heads=2, rngs=nnx.Rngs(seed))
    else:
        model = pc.EPiCVelocity(3, width=16, depth=1, global_dim=4, time_dim=8,
                                rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    # every weight random (the zero-initialised output layer would make the test vacuous)
    leaves = [0.5 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves)]
    return nnx.merge(graphdef, jax.tree_util.tree_unflatten(tree, leaves))


@pytest.mark.parametrize("backbone", ["transformer", "epic"])
def test_generator_is_permutation_equivariant_and_ignores_padding(backbone):
    model = _jitted(_random_model(backbone=backbone))
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(3, 8, 3)), jnp.float32)
    mask = jnp.asarray(np.arange(8)[None, :] < np.array([8, 5, 3])[:, None])
    t = jnp.array([0.1, 0.5, 0.9])
    out = model(x, t, mask)
    assert float(jnp.abs(out[mask]).mean()) > 1e-2 and (out[~mask] == 0).all()
    perm = rng.permutation(8)
    out_p = model(x[:, perm], t, mask[:, perm])
    np.testing.assert_allclose(out_p, out[:, perm], rtol=2e-5, atol=2e-5)
    # padded entries do not influence the real particles
    x2 = jnp.where(mask[..., None], x, 100.0)
    np.testing.assert_allclose(model(x2, t, mask), out, rtol=2e-5, atol=2e-5)
    # and a real particle does: the network is not particle-wise
    x3 = x.at[:, 0].add(1.0)
    assert float(jnp.abs(model(x3, t, mask)[:, 1:] - out[:, 1:]).max()) > 1e-3


def test_sampler_masks_and_is_seeded():
    graphdef, params = nnx.split(_random_model(1))
    sample = jax.jit(lambda key, counts, steps, method: pc.sample_clouds(
        nnx.merge(graphdef, params), key, counts, n_particles=8, steps=steps, method=method),
        static_argnums=(2, 3))
    counts = jnp.array([2, 5, 8])
    a, m = sample(jax.random.key(0), counts, 100, "midpoint")
    b, _ = sample(jax.random.key(0), counts, 100, "midpoint")
    np.testing.assert_array_equal(a, b)
    assert m.sum(1).tolist() == [2, 5, 8] and (a[~m] == 0).all()
    # midpoint vs Euler with many steps agree (the same ODE)
    e, _ = sample(jax.random.key(0), counts, 200, "euler")
    np.testing.assert_allclose(e, a, atol=0.05 * float(jnp.abs(a).max()))
    with pytest.raises(ValueError, match="method"):
        pc.sample_clouds(nnx.merge(graphdef, params), jax.random.key(0), counts, n_particles=8,
                         method="rk9")


def test_jet_conditions_are_the_cloud_mass_and_pt_sum():
    clouds, mask = _clouds(n=12, p=8, seed=11)
    cond = pc.jet_conditions(clouds, mask)
    assert cond.shape == (12, 2)
    np.testing.assert_allclose(cond[:, 0], jm.jet_mass(clouds, mask), rtol=1e-12)
    np.testing.assert_allclose(cond[:, 1], [clouds[i, mask[i], 2].sum() for i in range(12)],
                               rtol=1e-6)


@pytest.mark.parametrize("backbone", ["transformer", "epic"])
def test_conditioned_generator_uses_its_condition_and_stays_equivariant(backbone):
    if backbone == "transformer":
        model = pc.SetTransformerVelocity(3, width=16, depth=2, heads=2, cond_features=2,
                                          rngs=nnx.Rngs(3))
    else:
        model = pc.EPiCVelocity(3, width=16, depth=1, global_dim=4, time_dim=8, cond_features=2,
                                rngs=nnx.Rngs(3))
    graphdef, params = nnx.split(model)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(4), len(leaves))
    params = jax.tree_util.tree_unflatten(
        tree, [0.5 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves)])
    f = jax.jit(lambda x, t, m, c: nnx.merge(graphdef, params)(x, t, m, c))
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
    mask = jnp.asarray(np.arange(6)[None, :] < np.array([6, 4])[:, None])
    t, c = jnp.array([0.3, 0.7]), jnp.asarray(rng.normal(size=(2, 2)), jnp.float32)
    out = f(x, t, mask, c)
    perm = rng.permutation(6)
    np.testing.assert_allclose(f(x[:, perm], t, mask[:, perm], c), out[:, perm], rtol=2e-5,
                               atol=2e-5)
    # each jet's condition changes its own velocities only
    out2 = f(x, t, mask, c.at[0].add(1.0))
    assert float(jnp.abs(out2[0] - out[0]).max()) > 1e-3
    np.testing.assert_array_equal(out2[1], out[1])
    m = nnx.merge(graphdef, params)
    with pytest.raises(ValueError, match="cond_features=2"):
        m(x, t, mask)
    # the loss and the sampler pass the condition through
    loss = pc.flow_matching_loss(m, (x, mask, c), jax.random.key(0))
    assert np.isfinite(float(loss))
    counts = jnp.array([6, 4])
    a, _ = pc.sample_clouds(m, jax.random.key(1), counts, n_particles=6, steps=4, cond=c)
    b, _ = pc.sample_clouds(m, jax.random.key(1), counts, n_particles=6, steps=4, cond=c + 1.0)
    assert float(jnp.abs(a - b).max()) > 1e-3


def test_jet_level_flow_learns_the_conditions_given_n():
    # two populations: 4-particle jets with a small mass, 8-particle jets with a large one
    rng = np.random.default_rng(12)
    n_jets, p = 1200, 8
    counts = np.where(np.arange(n_jets) % 2 == 0, 4, 8)
    mask = np.arange(p)[None, :] < counts[:, None]
    spread = np.where(counts == 4, 0.05, 0.25)[:, None]
    clouds = np.stack([rng.normal(size=(n_jets, p)) * spread, rng.normal(size=(n_jets, p))
                       * spread, rng.dirichlet(np.ones(p), n_jets) * 0.9], -1)
    clouds = np.where(mask[..., None], clouds, 0.0).astype(np.float32)
    true = pc.jet_conditions(clouds, mask)
    stage1 = pc.JetLevelFlow(clouds, mask, n_particles=p, layers=4, hidden=(32, 32), bins=8,
                             seed=1)
    np.testing.assert_allclose(stage1.inverse(stage1.transform(true)), true, rtol=1e-5,
                               atol=1e-6)
    history = stage1.fit(steps=750, batch_size=128, lr=3e-3, key=jax.random.key(2))
    assert history[-1]["loss"] < history[0]["loss"] - 0.2
    for n in (4, 8):
        drawn = stage1.inverse(stage1.sample(jax.random.key(n), np.full(3000, n)))
        ref = true[counts == n]
        for i in range(2):
            # the drawn distribution given n matches that population: W1 well below the
            # distance between the two populations' medians (a flow ignoring n would mix them,
            # W1 ~ gap / 2)
            gap = abs(np.median(true[counts == 4, i]) - np.median(true[counts == 8, i]))
            assert wasserstein_distance(drawn[:, i], ref[:, i]) < 0.15 * gap, (n, i)
