"""Blocks: references (numpy), permutation equivariance/invariance, invariance to extra padding."""
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
from flax import nnx

from hepjax.graphs import blocks, build, padding

RNG = np.random.default_rng(2)


def _sets(b=3, n=10, f=4, min_real=4):
    x = RNG.normal(size=(b, n, f)).astype(np.float32)
    counts = RNG.integers(min_real, n + 1, size=b)
    counts[0] = n
    mask = np.arange(n)[None] < counts[:, None]
    return x, mask


def _pad_more(x, mask, extra=5):
    junk = 50 * RNG.normal(size=(x.shape[0], extra) + x.shape[2:]).astype(np.float32)
    return (np.concatenate([x, junk], 1),
            np.concatenate([mask, np.zeros((x.shape[0], extra), bool)], 1))


def _perm(x, mask):
    p = np.stack([RNG.permutation(x.shape[1]) for _ in range(x.shape[0])])
    return p, np.take_along_axis(x, p[..., None], 1), np.take_along_axis(mask, p, 1)


def _check_equivariant_and_padding(fn, x, mask, invariant=False, atol=1e-5):
    y = np.asarray(fn(jnp.asarray(x), jnp.asarray(mask)))
    p, xp, mp = _perm(x, mask)
    yp = np.asarray(fn(jnp.asarray(xp), jnp.asarray(mp)))
    want = y if invariant else np.take_along_axis(y, p[..., None], 1)
    np.testing.assert_allclose(yp, want, atol=atol, rtol=1e-4)
    x2, m2 = _pad_more(x, mask)
    y2 = np.asarray(fn(jnp.asarray(x2), jnp.asarray(m2)))
    if invariant:
        np.testing.assert_allclose(y2, y, atol=atol, rtol=1e-4)
    else:
        np.testing.assert_allclose(y2[:, : x.shape[1]], y, atol=atol, rtol=1e-4)
        assert np.all(y2[:, x.shape[1]:] == 0)
    if not invariant:
        assert np.all(y[~mask] == 0)
    return y


@pytest.mark.parametrize("aggregation", ["mean", "max"])
def test_edgeconv_matches_naive_reference(aggregation):
    x, mask = _sets()
    conv = blocks.EdgeConv(4, (6, 5), k=3, aggregation=aggregation, batch_norm=False,
                           rngs=nnx.Rngs(0))
    y = np.asarray(conv(jnp.asarray(x), jnp.asarray(mask)))
    idx, valid = (np.asarray(a) for a in build.knn(jnp.asarray(x), jnp.asarray(mask), 3))
    w = [(np.asarray(l.kernel[...]), np.asarray(l.bias[...])) for l in conv.layers]
    ws, bs = np.asarray(conv.sc.kernel[...]), np.asarray(conv.sc.bias[...])
    ref = np.zeros_like(y)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            if not mask[b, i]:
                continue
            msgs = []
            for a in range(3):
                if valid[b, i, a]:
                    h = np.concatenate([x[b, i], x[b, idx[b, i, a]] - x[b, i]])
                    for kern, bias in w:
                        h = np.maximum(h @ kern + bias, 0)
                    msgs.append(h)
            agg = np.mean(msgs, 0) if aggregation == "mean" else np.max(msgs, 0)
            ref[b, i] = np.maximum(x[b, i] @ ws + bs + agg, 0)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_edgeconv_batchnorm_equivariant_and_padding_invariant():
    x, mask = _sets()
    conv = blocks.EdgeConv(4, (8, 8), k=3, rngs=nnx.Rngs(0))  # train mode: batch statistics
    _check_equivariant_and_padding(lambda a, m: conv(a, m), x, mask)


@pytest.mark.parametrize("bin_size", [None, 16])
def test_gravnet_equivariant_and_padding_invariant(bin_size):
    x, mask = _sets(n=16)
    g = blocks.GravNetConv(4, 6, space_dims=3, propagate_dims=5, k=4, bin_size=bin_size,
                           rngs=nnx.Rngs(0))
    if bin_size is None:
        _check_equivariant_and_padding(g, x, mask)
    else:  # one bin holds the whole set: identical to the exact kNN version
        exact = blocks.GravNetConv(4, 6, space_dims=3, propagate_dims=5, k=4, rngs=nnx.Rngs(0))
        np.testing.assert_allclose(g(jnp.asarray(x), jnp.asarray(mask)),
                                   exact(jnp.asarray(x), jnp.asarray(mask)), rtol=1e-5, atol=1e-6)


def test_gravnet_reference_weights():
    x, mask = _sets(b=1, n=6, min_real=6)
    g = blocks.GravNetConv(4, 3, space_dims=2, propagate_dims=2, k=6, activation=None,
                           rngs=nnx.Rngs(1))
    y = np.asarray(g(jnp.asarray(x), jnp.asarray(mask)))[0]
    s = np.asarray(g.space(jnp.asarray(x)))[0]
    f = np.asarray(g.propagate(jnp.asarray(x)))[0]
    w = np.exp(-np.sum((s[:, None] - s[None]) ** 2, -1))          # all 6 points are neighbours
    msg = w[..., None] * f[None]
    ref = np.asarray(g.out(jnp.asarray(np.concatenate([x[0], msg.mean(1), msg.max(1)], -1))))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling", ["sum", "mean", "max"])
def test_deepsets_invariant(pooling):
    x, mask = _sets()
    ds = blocks.DeepSets(4, (8, 6), (5,), 2, pooling=pooling, rngs=nnx.Rngs(0))
    _check_equivariant_and_padding(ds, x, mask, invariant=True)


def test_pfn_layer_is_sum_of_phi():
    x, mask = _sets()
    layer = blocks.ParticleFlowLayer(4, (7, 5), rngs=nnx.Rngs(0))
    y = np.asarray(layer(jnp.asarray(x), jnp.asarray(mask)))
    phi = np.asarray(layer.phi(jnp.asarray(x)))
    np.testing.assert_allclose(y, np.sum(phi * mask[..., None], 1), rtol=1e-5, atol=1e-5)


def test_interaction_network_equivariant_padding_and_reference():
    x, mask = _sets(n=6)
    net = blocks.InteractionNetwork(4, (8,), 5, (8,), 3, rngs=nnx.Rngs(0))
    y = _check_equivariant_and_padding(net, x, mask)
    b = 0
    pairs = np.concatenate([np.repeat(x[b][:, None], 6, 1), np.repeat(x[b][None], 6, 0)], -1)
    e_rs = np.asarray(net.f_r(jnp.asarray(pairs)))                 # (r, s, D_E)
    e = np.sum(e_rs * (1 - np.eye(6))[..., None], 1)
    ref = np.asarray(net.f_o(jnp.asarray(np.concatenate([x[b], e], -1))))
    np.testing.assert_allclose(y[b], ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------- GraphsTuple blocks

def _graph(n, e, f=3, fe=2, fu=2):
    return jraph.GraphsTuple(
        nodes=RNG.normal(size=(n, f)).astype(np.float32),
        edges=RNG.normal(size=(e, fe)).astype(np.float32),
        senders=RNG.integers(0, n, size=e).astype(np.int32),
        receivers=RNG.integers(0, n, size=e).astype(np.int32),
        globals=RNG.normal(size=(1, fu)).astype(np.float32),
        n_node=np.array([n], np.int32), n_edge=np.array([e], np.int32))


def _batch(sizes=((5, 8), (4, 6))):
    return padding.batch_graphs([_graph(n, e) for n, e in sizes])


def test_jraph_canary_and_zero_out_padding():
    g = _batch()
    padded = padding.pad_graphs(g, 16, 20, 3)
    assert padded.nodes.shape == (16, 3) and padded.edges.shape == (20, 2)
    assert padding.budget_for([g]) == (64, 64, 3)
    np.testing.assert_array_equal(padding.node_mask(padded), np.arange(16) < 9)
    np.testing.assert_array_equal(padding.edge_mask(padded), np.arange(20) < 14)
    np.testing.assert_array_equal(padding.graph_mask(padded), [True, True, False])
    np.testing.assert_array_equal(padding.node_graph_index(padded), [0] * 5 + [1] * 4 + [2] * 7)
    junk = padded._replace(nodes=np.ones_like(padded.nodes), globals=np.ones_like(padded.globals))
    z = padding.zero_out_padding(junk)
    assert np.all(np.asarray(z.nodes)[9:] == 0) and np.all(np.asarray(z.nodes)[:9] == 1)
    assert np.all(np.asarray(z.globals)[2] == 0) and np.all(np.asarray(z.edges)[14:] == 0)
    with pytest.raises(ValueError, match="n_node"):
        padding.pad_graphs(g, 9, 20, 3)


def _padding_invariant(block, g):
    run = nnx.jit(lambda m, graph: m(graph))
    small = run(block, padding.pad_graphs(g, 12, 16, 3))
    big = run(block, padding.pad_graphs(g, 30, 40, 5))
    for a, b, n in ((small.nodes, big.nodes, 9), (small.edges, big.edges, 14),
                    (small.globals, big.globals, 2)):
        if a is not None:
            np.testing.assert_allclose(np.asarray(a)[:n], np.asarray(b)[:n], rtol=1e-5, atol=1e-6)
    return small


def test_gcn_matches_numpy_and_padding_invariant():
    g = _batch()
    gcn = blocks.GCN(3, 4, rngs=nnx.Rngs(0))
    out = np.asarray(_padding_invariant(gcn, g).nodes)[:9]
    h = g.nodes
    mean = np.zeros_like(h)
    for v in range(9):
        src = g.senders[g.receivers == v]
        if len(src):
            mean[v] = h[src].mean(0)
    ref = np.maximum(np.asarray(gcn.self_dense(jnp.asarray(h))) + np.asarray(gcn.nbr_dense(jnp.asarray(mean))), 0)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_gat_matches_numpy_and_padding_invariant():
    g = _batch()
    gat = blocks.GAT(3, 2, heads=2, activation=None, rngs=nnx.Rngs(0))
    out = np.asarray(_padding_invariant(gat, g).nodes)[:9]
    z = np.asarray(gat.w(jnp.asarray(g.nodes))).reshape(9, 2, 2)
    a_s, a_d = np.asarray(gat.a_src[...]), np.asarray(gat.a_dst[...])
    ref = np.zeros((9, 2, 2), np.float32)
    for v in range(9):
        src = g.senders[g.receivers == v]
        if not len(src):
            continue
        lg = (z[src] * a_s).sum(-1) + (z[v] * a_d).sum(-1)
        lg = np.where(lg > 0, lg, 0.2 * lg)
        al = np.exp(lg - lg.max(0)) / np.exp(lg - lg.max(0)).sum(0)
        ref[v] = (al[..., None] * z[src]).sum(0)
    np.testing.assert_allclose(out, ref.reshape(9, 4), rtol=1e-4, atol=1e-5)


def test_graph_network_padding_and_node_permutation():
    g = _batch()
    gn = blocks.GraphNetwork(3, 2, 2, edge_out=4, node_out=5, global_out=3, hidden=(6,),
                             aggregation="mean", rngs=nnx.Rngs(0))
    out = _padding_invariant(gn, g)
    # relabel the nodes of the first graph: node outputs permute, globals unchanged
    p = np.concatenate([RNG.permutation(5), np.arange(5, 9)])
    inv = np.argsort(p)
    gp = g._replace(nodes=g.nodes[p], senders=inv[g.senders].astype(np.int32),
                    receivers=inv[g.receivers].astype(np.int32))
    outp = nnx.jit(lambda m, graph: m(graph))(gn, padding.pad_graphs(gp, 12, 16, 3))
    np.testing.assert_allclose(np.asarray(outp.nodes)[:9], np.asarray(out.nodes)[p], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(outp.globals)[:2], np.asarray(out.globals)[:2], rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(out.nodes)[9:] == 0)


def test_edge_batchnorm_matches_hepjax_batchnorm():
    from hepjax.nn import BatchNorm
    x = jnp.asarray(3.0 + 2.0 * RNG.normal(size=(2, 5, 4, 3)).astype(np.float32))
    mask = jnp.asarray(RNG.random((2, 5, 4)) > 0.3)
    ref, fused = BatchNorm(3, momentum=0.9, rngs=nnx.Rngs(0)), blocks.EdgeBatchNorm(3, momentum=0.9, rngs=nnx.Rngs(0))
    for bn in (ref, fused):
        bn.scale[...] = jnp.array([0.5, 1.0, 2.0])
    f = lambda bn, x: jnp.sum(jnp.sin(bn(x, mask=mask)))  # noqa: E731
    np.testing.assert_allclose(fused(x, mask=mask), ref(x, mask=mask), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.mean[...], ref.mean[...], rtol=1e-5)
    np.testing.assert_allclose(fused.var[...], ref.var[...], rtol=1e-4)
    grad = nnx.grad(lambda x, bn: f(bn, x))
    np.testing.assert_allclose(grad(x, fused), grad(x, ref), rtol=1e-3, atol=1e-4)
