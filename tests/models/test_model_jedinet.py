"""jedinet: permutation and padding invariance, and a short training run that lowers the loss."""
import jax
import numpy as np
import optax
from flax import nnx

from hepjax.models import jedinet
from hepjax.train import compile_steps, init_state, tasks
from toyjets import prong_jets as toy_jets


def small_cfg():
    cfg = jedinet.default_config()
    cfg.hidden, cfg.edge_features, cfg.node_features = 16, 4, 4
    return cfg


def test_parameter_count_matches_reference_formula():
    m = nnx.eval_shape(lambda: jedinet.build(None, (30, 16), 5, nnx.Rngs(0)))
    assert sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param))) == 7_873


def test_invariances():
    feats, mask, _ = toy_jets(5, seed=1)
    model = jedinet.build(small_cfg(), feats.shape[1:], 2, nnx.Rngs(params=0, dropout=1))
    run = nnx.jit(lambda m, x, k: m(x, k))
    y = np.asarray(run(model, feats, mask))
    rng = np.random.default_rng(2)
    p = np.stack([rng.permutation(feats.shape[1]) for _ in range(5)])
    np.testing.assert_allclose(run(model, np.take_along_axis(feats, p[..., None], 1),
                                   np.take_along_axis(mask, p, 1)), y, rtol=1e-4, atol=1e-5)
    junk = np.where(mask[..., None], feats, 1e3).astype(np.float32)
    more = np.concatenate([junk, 5 * np.ones((5, 3, 3), np.float32)], 1)
    mmore = np.concatenate([mask, np.zeros((5, 3), bool)], 1)
    np.testing.assert_allclose(run(model, more, mmore), y, rtol=1e-4, atol=1e-5)


def test_training_lowers_the_loss():
    feats, mask, labels = toy_jets(64, seed=3)
    batch = {"features": feats, "mask": mask, "label": labels, "weight": np.ones(64, np.float32)}
    opt = optax.adam(1e-2)
    graphdefs, state = init_state(lambda r: jedinet.build(small_cfg(), feats.shape[1:], 1, r), opt,
                                  jax.random.key(0))
    step, _ = compile_steps(graphdefs, tasks.binary_classification(), opt)
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:3]), losses
