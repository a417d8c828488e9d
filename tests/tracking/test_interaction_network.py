"""The interaction-network edge classifier and its training loop: padding invariance, gradients
against finite differences, the weighted BCE against numpy, a training smoke test that learns
real edges (and does not learn shuffled labels), determinism."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hepjax.graphs.padding import GraphsTuple, pad_graphs
from hepjax.tracking import graph as G
from hepjax.tracking import metrics as M
from hepjax.tracking import sim
from hepjax.tracking import train as T


def _toy_graph(rng, n=20, e=50):
    return GraphsTuple(nodes=rng.normal(size=(n, 3)).astype(np.float32),
                       edges=rng.normal(size=(e, 5)).astype(np.float32),
                       senders=rng.integers(0, n, e).astype(np.int32),
                       receivers=rng.integers(0, n, e).astype(np.int32),
                       n_node=np.array([n], np.int32), n_edge=np.array([e], np.int32),
                       globals=None)


def _tiny(seed=0, **kw):
    return T.make_model(seed, hidden=8, num_iterations=2, mlp_layers=1, **kw)


@pytest.mark.parametrize("share", [False])
def test_padding_never_changes_real_outputs(share):
    rng = np.random.default_rng(0)
    g = _toy_graph(rng)
    model = _tiny(share_weights=share)
    call = nnx.jit(lambda m, graph: m(graph))
    outs = []
    for n_node, n_edge in ((21, 50), (64, 200)):
        p = pad_graphs(g, n_node, n_edge, 2)
        # garbage in the padding features: must not leak into real outputs
        nodes = np.array(p.nodes)
        edges = np.array(p.edges)
        nodes[20:] = rng.normal(size=nodes[20:].shape) * 100
        edges[50:] = rng.normal(size=edges[50:].shape) * 100
        p = p._replace(nodes=nodes, edges=edges)
        out = np.asarray(call(model, p))
        assert out.shape == (n_edge,)
        assert np.all(out[50:] == 0)
        outs.append(out[:50])
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-6)


def test_grad_matches_finite_differences():
    rng = np.random.default_rng(1)
    g = pad_graphs(_toy_graph(rng, 12, 30), 16, 40, 2)
    labels = jnp.asarray((rng.random(40) < 0.4).astype(np.float32))
    mask = jnp.arange(40) < 30
    with jax.enable_x64(True):
        g64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if np.issubdtype(
            np.asarray(a).dtype, np.floating) else jnp.asarray(a), g)
        model = T.make_model(3, hidden=8, num_iterations=1, mlp_layers=1)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)

        def loss(p):
            m = nnx.merge(graphdef, p, rest)
            return T.weighted_bce(m(g64), labels.astype(jnp.float64), mask, 2.0)

        grad = jax.jit(jax.grad(loss))(params)
        loss = jax.jit(loss)
        leaves, tdef = jax.tree.flatten(params)
        d = [jnp.asarray(np.random.default_rng(i).normal(size=a.shape)) for i, a in
             enumerate(leaves)]
        dtree = jax.tree.unflatten(tdef, d)
        eps = 1e-6
        plus = jax.tree.map(lambda a, b: a + eps * b, params, dtree)
        minus = jax.tree.map(lambda a, b: a - eps * b, params, dtree)
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        an = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grad), d))
        np.testing.assert_allclose(float(fd), float(an), rtol=1e-5)


def test_weighted_bce_matches_numpy():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=50).astype(np.float32) * 4
    y = (rng.random(50) < 0.3).astype(np.float32)
    mask = rng.random(50) < 0.8
    pw = 3.0
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    w = mask * np.where(y > 0.5, pw, 1.0)
    ref = np.sum(w * -(y * np.log(p) + (1 - y) * np.log(1 - p))) / w.sum()
    got = float(T.weighted_bce(jnp.asarray(logits), jnp.asarray(y), jnp.asarray(mask), pw))
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # extreme logits stay finite
    big = T.weighted_bce(jnp.array([100.0, -100.0]), jnp.array([0.0, 1.0]),
                         jnp.array([True, True]))
    np.testing.assert_allclose(float(big), 100.0, rtol=1e-5)


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(3)
    s = np.round(rng.random(200), 1)
    y = rng.random(200) < 0.4
    pos, neg = s[y], s[~y]
    ref = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
        len(pos) * len(neg))
    np.testing.assert_allclose(T.roc_auc(y, s), ref)


@pytest.fixture(scope="module")
def sim_graphs(event_dir):          # the simulation needs the real geometry (skips without it)
    evs = [sim.simulate_event(100 + s, sim.SimConfig(pileup_mu=0)) for s in range(5)]
    cuts = G.learn_cuts(evs[:4], keep=0.99)
    built = []
    for ev in evs:
        s, r = G.build_graph(ev["hits"], cuts)
        lab = M.edge_labels(s, r, G.graph_truth(ev["hits"], ev["truth"], ev["particles"]))
        built.append((ev, s, r, lab))
    n_node = G.budget_round(max(len(b[0]["hits"]["x"]) for b in built) + 1)
    n_edge = G.budget_round(max(len(b[1]) for b in built))
    out = []
    for ev, s, r, lab in built:       # one budget: one compilation
        g, lp = G.to_graphs_tuple(ev["hits"], s, r, lab, n_node=n_node, n_edge=n_edge)
        out.append((g, lp, len(s)))
    return out


def _train_auc(graphs, shuffle: bool, steps=60, seed=0):
    rng = np.random.default_rng(5)
    train = []
    for g, lp, n in graphs[:4]:
        lab = lp.copy()
        if shuffle:
            lab[:n] = rng.permutation(lab[:n])
        train.append((g, lab))
    model = _tiny(seed)
    T.train(model, train, T.TrainConfig(num_steps=steps, learning_rate=5e-3, warmup_steps=5,
                                        seed=seed, log_every=steps), log=None)
    g, lp, n = graphs[4]
    return T.roc_auc(lp[:n] > 0.5, T.predict(model, g)[:n]), model


def test_training_learns_edges_and_not_shuffled_labels(sim_graphs):
    auc, model = _train_auc(sim_graphs, shuffle=False)
    assert auc > 0.85, auc
    auc_shuffled, _ = _train_auc(sim_graphs, shuffle=True)
    assert auc_shuffled < 0.7, auc_shuffled
    # determinism: the same seed gives the same weights
    _, model2 = _train_auc(sim_graphs, shuffle=False)
    for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)),
                    jax.tree.leaves(nnx.state(model2, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
