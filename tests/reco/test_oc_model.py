"""The object-condensation GravNet network (hepjax.models.condensation_net) and its training /
inference glue (hepjax.reco.train_oc): padding and permutation invariance, the LSH-binned kNN,
the per-hit truth, the reconstruction arithmetic, and a short training run that lowers the loss."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hepjax.models import condensation_net as cn
from hepjax.reco import train_oc
from hepjax.sim import GunConfig, io, simulate_events


def small_net(bin_size=None, seed=0):
    return cn.CondensationNet(num_blocks=2, dense_width=16, space_dims=3, propagate_dims=8,
                              out_dims=16, k=6, head_width=16, bin_size=bin_size,
                              rngs=nnx.Rngs(seed))


def random_batch(rng, b=2, n=48, real=(40, 23)):
    f = rng.normal(size=(b, n, cn.NUM_HIT_FEATURES)).astype(np.float32)
    m = np.zeros((b, n), bool)
    for i, r in enumerate(real):
        m[i, :r] = True
    xy = rng.normal(size=(b, n, 2)).astype(np.float32)
    return f, m, xy


def _close_on_real(o1, o2, mask, atol=2e-5):
    for k in o1:
        a = np.asarray(o1[k])
        b = np.asarray(o2[k])[:, :a.shape[1]]
        sel = mask.reshape(mask.shape + (1,) * (a.ndim - 2))
        np.testing.assert_allclose(np.where(sel, a, 0), np.where(sel, b, 0), atol=atol, err_msg=k)


@pytest.mark.parametrize("bin_size", [None, 16])
@pytest.mark.parametrize("train_mode", [True, False])
def test_padding_does_not_change_real_hits(bin_size, train_mode):
    rng = np.random.default_rng(0)
    f, m, xy = random_batch(rng)
    net = small_net(bin_size)
    if not train_mode:
        net(jnp.asarray(f), jnp.asarray(m), jnp.asarray(xy))   # move the running statistics
        net.eval()
    o1 = net(jnp.asarray(f), jnp.asarray(m), jnp.asarray(xy))
    extra = 32
    f2 = np.concatenate([f, 1e3 * rng.normal(size=(2, extra, f.shape[-1])).astype(np.float32)], 1)
    m2 = np.concatenate([m, np.zeros((2, extra), bool)], 1)
    xy2 = np.concatenate([xy, rng.normal(size=(2, extra, 2)).astype(np.float32)], 1)
    o2 = net(jnp.asarray(f2), jnp.asarray(m2), jnp.asarray(xy2))
    _close_on_real(o1, o2, m)
    for k, v in o2.items():   # every output is exactly 0 at padding
        pad = ~m2.reshape(m2.shape + (1,) * (v.ndim - 2))
        assert np.all(np.where(pad, np.asarray(v), 0) == 0), k


def test_outputs_shapes_ranges_and_permutation_equivariance():
    rng = np.random.default_rng(1)
    f, m, xy = random_batch(rng, b=1, n=40, real=(40,))
    net = small_net()
    net(jnp.asarray(f), jnp.asarray(m), jnp.asarray(xy))
    net.eval()
    o = net(jnp.asarray(f), jnp.asarray(m), jnp.asarray(xy))
    assert o["beta"].shape == (1, 40) and o["coords"].shape == (1, 40, 3)
    assert o["position"].shape == (1, 40, 2) and o["type_logits"].shape == (1, 40, 3)
    assert np.all((np.asarray(o["beta"]) > 0) & (np.asarray(o["beta"]) < 1))
    assert np.all(np.asarray(o["energy_correction"]) > 0)
    perm = rng.permutation(40)
    op = net(jnp.asarray(f[:, perm]), jnp.asarray(m[:, perm]), jnp.asarray(xy[:, perm]))
    for k in o:
        np.testing.assert_allclose(np.asarray(o[k])[:, perm], np.asarray(op[k]), atol=2e-5,
                                   err_msg=k)


def test_one_lsh_bin_equals_exact_knn_and_with_bins_keeps_parameters():
    rng = np.random.default_rng(2)
    f, m, xy = random_batch(rng, b=2, n=32, real=(32, 20))
    net = small_net()
    exact = net(jnp.asarray(f), jnp.asarray(m), jnp.asarray(xy))
    net2 = small_net()   # same seed: same parameters; batch statistics also identical
    binned = cn.with_bins(net2, 32)(jnp.asarray(f), jnp.asarray(m), jnp.asarray(xy))
    _close_on_real(exact, binned, m)
    with pytest.raises(ValueError, match="multiple of bin_size"):
        cn.with_bins(small_net(), 16)(jnp.asarray(f[:, :30]), jnp.asarray(m[:, :30]))


def test_cluster_xy_scale_adds_the_hit_position_to_the_learned_coordinates():
    """coords = (learned coords) + (hit x, y) / scale on the first two axes, the rest unchanged;
    padding still gives exactly 0; missing hit_xy or a bad scale is an error."""
    rng = np.random.default_rng(3)
    f, m, xy = random_batch(rng, b=2, n=40, real=(40, 25))
    kw = dict(num_blocks=2, dense_width=16, space_dims=3, propagate_dims=8, out_dims=16, k=6,
              head_width=16, rngs=None)
    plain = cn.CondensationNet(**dict(kw, rngs=nnx.Rngs(4)))
    prior = cn.CondensationNet(**dict(kw, rngs=nnx.Rngs(4), cluster_xy_scale=2.0))
    a = plain(jnp.asarray(f), jnp.asarray(m), jnp.asarray(xy))
    b = prior(jnp.asarray(f), jnp.asarray(m), jnp.asarray(xy))
    want = np.asarray(a["coords"]).copy()
    want[..., :2] += np.where(m[..., None], xy / 2.0, 0.0)
    np.testing.assert_allclose(np.asarray(b["coords"]), want, rtol=1e-6, atol=1e-6)
    for k in ("beta", "energy_correction", "position", "type_logits"):
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    with pytest.raises(ValueError, match="needs hit_xy"):
        prior(jnp.asarray(f), jnp.asarray(m))
    with pytest.raises(ValueError, match="cluster_xy_scale"):
        cn.CondensationNet(**dict(kw, rngs=nnx.Rngs(0), cluster_xy_scale=-1.0))


@pytest.fixture(scope="module")
def tiny_events():
    gun = GunConfig(n_particles=(2, 3), energy=(10.0, 30.0))
    return io.pad_events(simulate_events(7, range(12), gun=gun))


def test_targets_follow_the_truth(tiny_events):
    pe = tiny_events
    t = train_oc.oc_targets(pe)
    m = pe["hit_mask"]
    assert np.all(t["object_id"][~m] == -1)
    np.testing.assert_array_equal(t["object_id"][m], pe["hit_dominant"][m])
    noise = m & pe["hit_noise"]
    assert np.all(t["object_id"][noise] == -1) and np.all(t["object_type"][noise] == -1)
    for e in range(len(m)):
        for p in range(int(pe["n_particles"][e])):
            sel = t["object_id"][e] == p
            if not sel.any():
                continue
            np.testing.assert_allclose(t["object_hit_sum"][e, sel],
                                       pe["hit_energy"][e][sel].sum(), rtol=1e-5)
            assert np.all(t["object_energy"][e, sel] == pe["particle_energy"][e, p])
            assert np.all(t["object_type"][e, sel] == cn.particle_type(pe["particle_pdg"][e, p]))
            np.testing.assert_array_equal(t["object_position"][e, sel],
                                          np.broadcast_to(pe["particle_position"][e, p, :2],
                                                          (sel.sum(), 2)))


def test_reconstruct_energy_is_summed_hits_times_correction():
    # two well separated groups in the clustering space, one noise hit far away
    beta = np.array([[0.9, 0.2, 0.1, 0.8, 0.3, 0.05]], np.float32)
    coords = np.array([[[0, 0], [0.1, 0], [0, 0.1], [5, 5], [5.1, 5], [20, 20]]], np.float32)
    out = {"beta": beta, "coords": coords,
           "energy_correction": np.array([[1.5, 9, 9, 0.5, 9, 9]], np.float32),
           "position": np.zeros((1, 6, 2), np.float32),
           "type_logits": np.zeros((1, 6, 3), np.float32)}
    data = {"mask": np.ones((1, 6), bool),
            "hit_energy": np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], np.float32)}
    r = train_oc.reconstruct(out, data, t_beta=0.5, t_d=0.5, max_objects=4)
    np.testing.assert_array_equal(r["object_id"][0], [0, 0, 0, 1, 1, -1])
    np.testing.assert_allclose(r["raw_energy"][0, :2], [6.0, 9.0])
    np.testing.assert_allclose(r["energy"][0, :2], [9.0, 4.5])
    assert r["valid"][0].tolist() == [True, True, False, False]
    # t_d_hadron: the radius of condensation points predicted charged pions (type index 2).
    # The pion condensation point at 0 reaches the hit at 1.2 with t_d_hadron = 1.5, the e/gamma
    # one at 5 does not reach the hit at 6.2 with t_d = 0.5; t_d_hadron = t_d changes nothing.
    out2 = dict(out, beta=np.array([[0.9, 0.2, 0.8, 0.3]], np.float32),
                coords=np.array([[[0, 0], [1.2, 0], [5, 5], [6.2, 5]]], np.float32),
                energy_correction=np.ones((1, 4), np.float32),
                position=np.zeros((1, 4, 2), np.float32),
                type_logits=np.array([[[0, 0, 5], [0, 0, 5], [5, 0, 0], [5, 0, 0]]], np.float32))
    data2 = {"mask": np.ones((1, 4), bool), "hit_energy": np.ones((1, 4), np.float32)}
    r2 = train_oc.reconstruct(out2, data2, t_beta=0.5, t_d=0.5, max_objects=4, t_d_hadron=1.5)
    np.testing.assert_array_equal(r2["object_id"][0], [0, 0, 1, -1])
    r3 = train_oc.reconstruct(out2, data2, t_beta=0.5, t_d=0.5, max_objects=4, t_d_hadron=0.5)
    r4 = train_oc.reconstruct(out2, data2, t_beta=0.5, t_d=0.5, max_objects=4)
    np.testing.assert_array_equal(r3["object_id"], r4["object_id"])
    np.testing.assert_array_equal(r4["object_id"][0], [0, -1, 1, -1])


def test_reconstruct_em_radius_counts_only_hits_near_the_predicted_position():
    """em_radius: an e/gamma object's energy sums its hits within em_radius (transverse, cm) of
    the position predicted at its condensation point; a pion object's energy is unchanged;
    the hit assignment is unchanged."""
    # object 0 (e/gamma, CP hit 0 predicts (0, 0)): hits at 0, 1 and 4 cm; object 1 (pion, CP
    # hit 3 predicts (50, 0)): hits at 50 and 60 cm
    out = {"beta": np.array([[0.9, 0.2, 0.1, 0.8, 0.3]], np.float32),
           "coords": np.array([[[0, 0], [0.1, 0], [0, 0.1], [5, 5], [5.1, 5]]], np.float32),
           "energy_correction": np.full((1, 5), 2.0, np.float32),
           "position": np.array([[[0, 0], [9, 9], [9, 9], [50, 0], [9, 9]]], np.float32),
           "type_logits": np.array([[[5, 0, 0], [0, 0, 5], [0, 0, 5], [0, 0, 5], [5, 0, 0]]],
                                   np.float32)}
    data = {"mask": np.ones((1, 5), bool),
            "hit_energy": np.array([[1.0, 2.0, 4.0, 8.0, 16.0]], np.float32),
            "hit_xy": np.array([[[0, 0], [0, 1], [4, 0], [50, 0], [60, 0]]], np.float32)}
    base = train_oc.reconstruct(out, data, t_beta=0.5, t_d=0.5, max_objects=4)
    np.testing.assert_allclose(base["raw_energy"][0, :2], [7.0, 24.0])
    for radius, want in ((2.0, 3.0), (4.5, 7.0), (0.5, 1.0)):
        r = train_oc.reconstruct(out, data, t_beta=0.5, t_d=0.5, max_objects=4, em_radius=radius)
        np.testing.assert_array_equal(r["object_id"], base["object_id"])
        np.testing.assert_allclose(r["raw_energy"][0, :2], [want, 24.0])
        np.testing.assert_allclose(r["energy"][0, :2], [2 * want, 48.0])
        np.testing.assert_allclose(r["energy_hit_corrected"][0, :2], [2 * want, 48.0])


def test_short_training_lowers_the_loss(tiny_events):
    """40 steps on 12 small events (at most 474 hits: one bucket of 512): the mean loss of the last 10 steps is well below that of
    the first 10 (the untrained network's clustering coordinates carry no object structure)."""
    data = train_oc.oc_targets(tiny_events)
    net = small_net(seed=3)
    cfg = train_oc.OCTrainConfig(num_steps=40, batch_size=4, learning_rate=3e-3, warmup_steps=3,
                                 num_objects=3, log_every=10, buckets=(512,), seed=1)
    _, records = train_oc.train(net, data, cfg)
    assert len(records) == 4
    assert all(np.isfinite(r["loss"]) for r in records)
    assert records[-1]["loss"] < 0.7 * records[0]["loss"], [r["loss"] for r in records]


def test_training_is_deterministic(tiny_events):
    data = train_oc.oc_targets(tiny_events)
    cfg = train_oc.OCTrainConfig(num_steps=3, batch_size=4, num_objects=3, log_every=3,
                                 buckets=(512,), seed=5)
    a = train_oc.train(small_net(seed=4), data, cfg)[1]
    b = train_oc.train(small_net(seed=4), data, cfg)[1]
    assert a[0]["loss"] == b[0]["loss"]
