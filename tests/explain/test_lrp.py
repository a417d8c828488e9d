"""hepjax.explain.lrp: conservation of every rule (float64, eps -> 0, zero biases), an
independent numpy LRP of a two-layer graph network, LRP-0 = gradient x input on ReLU nets,
the LSH-binned layer against the full block-diagonal adjacency, winner-take-all for max, and
the error messages."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.explain import lrp

TINY = 1e-12  # the epsilon -> 0 limit


@pytest.fixture
def x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _rel(fn, *args, **kw):
    """lrp.relevance under one jit (one compilation instead of many small eager ones)."""
    return jax.jit(lambda *a: lrp.relevance(fn, *a, **kw))(*args)


def _conserved(fn, x, tol=1e-5):
    """sum of input relevance vs the output; returns the relative residual."""
    y, r = _rel(fn, jnp.asarray(x))
    y, total = float(jnp.sum(y)), float(jnp.sum(r))
    resid = abs(total - y) / max(abs(y), 1e-300)
    assert resid < tol, (y, total, resid)
    assert abs(y) > 1e-3  # not trivially conserved by a zero output
    return resid


def _mlp(rule, depth=3, width=6, fin=5, seed=1):
    rng = _rng(seed)
    ws = [jnp.asarray(rng.normal(size=(a, b))) for a, b in
          zip([fin] + [width] * (depth - 1), [width] * (depth - 1) + [1])]
    zeros = [jnp.zeros(w.shape[1]) for w in ws]

    def f(x):
        h = x
        for i, (w, b) in enumerate(zip(ws, zeros)):
            h = lrp.dense(h, w, b, rule)
            if i < len(ws) - 1:
                h = jax.nn.relu(h)
        return h[..., 0]
    return f


RULES = {"epsilon": lrp.epsilon(TINY), "lrp0": lrp.lrp0(), "gamma": lrp.gamma(0.5, TINY),
         "zplus": lrp.zplus(TINY)}


@pytest.mark.parametrize("name", list(RULES))
def test_dense_rules_conserve(x64, name):
    x = np.abs(_rng(2).normal(size=(4, 5)))  # x >= 0 as the gamma / z+ rules assume
    for i in range(4):  # per example
        _conserved(_mlp(RULES[name]), x[i:i + 1])


def test_zplus_conserves_even_with_bias_and_gamma_differs(x64):
    rng = _rng(3)
    w, b = jnp.asarray(rng.normal(size=(5, 3))), jnp.asarray(rng.normal(size=3))
    x = jnp.asarray(np.abs(rng.normal(size=(1, 5))))
    _conserved(lambda v: jnp.sum(lrp.dense(v, w, b, lrp.zplus(TINY)), -1), x)
    _, r_eps = _rel(lambda v: jnp.sum(lrp.dense(v, w, None, lrp.epsilon(TINY)), -1), x)
    _, r_gam = _rel(lambda v: jnp.sum(lrp.dense(v, w, None, lrp.gamma(1.0, TINY)), -1), x)
    assert float(jnp.max(jnp.abs(r_eps - r_gam))) > 1e-3   # the rules are different maps


def test_bias_absorbs_relevance_and_is_accounted(x64):
    """With biases, input relevance alone misses the output (the check can fail); adding
    bias * d/d bias restores it exactly."""
    rng = _rng(4)
    w1, b1 = jnp.asarray(rng.normal(size=(5, 6))), jnp.asarray(rng.normal(size=6))
    w2, b2 = jnp.asarray(rng.normal(size=(6, 1))), jnp.asarray(rng.normal(size=1))
    x = jnp.asarray(rng.normal(size=(1, 5)))
    for rule in (lrp.epsilon(TINY), lrp.gamma(0.3, TINY)):
        def f(v, b1, b2):
            return lrp.dense(jax.nn.relu(lrp.dense(v, w1, b1, rule)), w2, b2, rule)[..., 0]
        y, (rx, rb1, rb2) = _rel(f, x, b1, b2, argnums=(0, 1, 2))
        y = float(y[0])
        assert abs(float(jnp.sum(rx)) - y) > 1e-3 * abs(y)
        assert abs(float(jnp.sum(rx) + jnp.sum(rb1) + jnp.sum(rb2)) - y) < 1e-9 * max(1, abs(y))


def test_passthrough_layernorm_batchnorm_pooling_conserve(x64):
    rng = _rng(5)
    x = jnp.asarray(rng.normal(size=(1, 7, 6)))
    w = jnp.asarray(rng.normal(size=(6, 6)))
    scale = jnp.asarray(rng.uniform(0.5, 2, 6))

    def f_gelu(v):  # dense -> GELU (identity rule) -> sum pool
        return jnp.sum(lrp.passthrough(jax.nn.gelu, lrp.dense(v, w, None, lrp.epsilon(TINY))),
                       axis=(-1, -2))

    def f_ln(v):  # LayerNorm (1/sigma fixed), zero bias, mean pool
        return jnp.mean(jnp.sum(lrp.layer_norm(v, scale, jnp.zeros(6)) * w[0], -1), -1)

    def f_bn(v):  # eval BatchNorm with zero shift (bias = mean * a), masked sum pool
        mean, var = jnp.asarray(rng.normal(size=6)), jnp.asarray(rng.uniform(0.5, 2, 6))
        a = scale / jnp.sqrt(var + 1e-5)
        mask = jnp.arange(7)[None] < 5
        return jnp.sum(lrp.batch_norm(v, mean, var, scale, mean * a, 1e-5, mask, TINY)
                       * w[1], axis=(-1, -2))

    for f in (f_gelu, f_ln, f_bn):
        _conserved(f, x)
    # relu pass-through = its gradient: conserves through a plain jax.nn.relu
    _conserved(lambda v: jnp.sum(jax.nn.relu(lrp.dense(v, w, None, lrp.lrp0())), (-1, -2)), x)


def test_message_passing_rules_conserve(x64):
    rng = _rng(6)
    n, c = 8, 3
    x = jnp.asarray(rng.normal(size=(n, c)))
    adj = jnp.asarray(rng.uniform(0, 1, (n, n)) * (rng.uniform(size=(n, n)) < 0.5))
    head = jnp.asarray(rng.normal(size=c))
    # dense (learned) adjacency, Mokhtar et al.'s rule
    _conserved(lambda v: jnp.sum(lrp.message_passing(v, adj, TINY) @ head), x)
    # the adjacency is held fixed: a data-dependent adjacency gets no relevance
    _conserved(lambda v: jnp.sum(lrp.message_passing(v, jax.nn.softmax(v @ v.T), TINY) @ head), x)
    # edge list (kNN graph), with weights
    snd = jnp.asarray(rng.integers(0, n, 20))
    rcv = jnp.asarray(rng.integers(0, n, 20))
    wts = jnp.asarray(rng.uniform(0.1, 1, 20))
    _conserved(lambda v: jnp.sum(lrp.edge_message_passing(v, snd, rcv, wts, eps=TINY) @ head), x)
    # kNN neighbourhoods: mean and max (winner-take-all) over k with invalid neighbours
    h = jnp.asarray(rng.normal(size=(1, n, 4, c)))
    valid = jnp.asarray(rng.uniform(size=(1, n, 4)) < 0.7).at[:, :, 0].set(True)
    for how in ("sum", "mean", "max"):
        _conserved(lambda v: jnp.sum(lrp.neighbour_reduce(v, valid, how, TINY) @ head), h)
    # attention with weights from queries, keys and a pair bias, held fixed (Ali et al.)
    q = jnp.asarray(rng.normal(size=(1, n, 2, 4)))
    bias = jnp.asarray(rng.normal(size=(1, 2, n, n)))
    key_mask = (jnp.arange(n) < 6)[None, None, None, :]

    def f_att(v):
        wts = lrp.attention_weights(q, v, bias, key_mask)
        return jnp.sum(lrp.attention(wts, v, TINY))
    _conserved(f_att, jnp.asarray(rng.normal(size=(1, n, 2, 4))))


def test_edge_list_equals_dense_adjacency(x64):
    rng = _rng(7)
    n = 6
    x = jnp.asarray(rng.normal(size=(n, 2)))
    snd, rcv = rng.integers(0, n, 15), rng.integers(0, n, 15)
    wts = rng.uniform(0.1, 1, 15)
    adj = np.zeros((n, n))
    np.add.at(adj, (snd, rcv), wts)
    head = jnp.asarray([1.0, -2.0])
    y1, r1 = _rel(lambda v: jnp.sum(lrp.edge_message_passing(
        v, jnp.asarray(snd), jnp.asarray(rcv), jnp.asarray(wts), eps=0.1) @ head), x)
    y2, r2 = _rel(lambda v: jnp.sum(lrp.message_passing(v, jnp.asarray(adj), 0.1) @ head),
                           x)
    np.testing.assert_allclose(float(y1), float(y2), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(r1), np.asarray(r2), rtol=1e-10, atol=1e-12)


def test_max_is_winner_take_all(x64):
    h = jnp.asarray([[[[1.0, 5.0], [3.0, -1.0], [9.0, 2.0]]]])   # (1, 1, k=3, C=2)
    valid = jnp.asarray([[[True, True, False]]])                   # the 9 is not a neighbour
    y, r = _rel(lambda v: jnp.sum(lrp.neighbour_reduce(v, valid, "max")), h)
    assert float(y[()] if y.ndim == 0 else jnp.sum(y)) == 8.0
    np.testing.assert_array_equal(np.asarray(r)[0, 0], [[0, 5], [3, 0], [0, 0]])


def test_lsh_binned_layer_equals_block_diagonal_and_conserves(x64):
    from hepjax.graphs.build import lsh_permutation
    rng = _rng(8)
    n, s, c = 12, 4, 3
    x = jnp.asarray(rng.normal(size=(n, c)))
    perm = lsh_permutation(x[:, :2], jnp.ones(n, bool), jnp.asarray(rng.normal(size=(2, 3))))
    adj = jnp.asarray(rng.uniform(0, 1, (n // s, s, s)))
    full = np.zeros((n, n))
    p = np.asarray(perm).reshape(n // s, s)
    for b in range(n // s):
        full[np.ix_(p[b], p[b])] = np.asarray(adj[b])
    head = jnp.asarray(rng.normal(size=c))
    y1, r1 = _rel(lambda v: jnp.sum(lrp.binned_message_passing(v, perm, adj, 0.01) @ head),
                           x)
    y2, r2 = _rel(lambda v: jnp.sum(lrp.message_passing(v, jnp.asarray(full), 0.01)
                                             @ head), x)
    np.testing.assert_allclose(float(y1), float(y2), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(r1), np.asarray(r2), rtol=1e-10, atol=1e-12)
    _conserved(lambda v: jnp.sum(lrp.binned_message_passing(v, perm, adj, TINY) @ head), x)
    # relevance really goes back through the inverse permutation: the identity permutation
    # (other bins) gives another answer
    _, r3 = _rel(lambda v: jnp.sum(lrp.binned_message_passing(
        v, jnp.arange(n), adj, 0.01) @ head), x)
    assert float(jnp.max(jnp.abs(r3 - r1))) > 1e-3


# --------------------------------------------------------- the numpy reference: 2-layer GNN
def _numpy_lrp_gnn(x, adjs, ws, bs, w_out, b_out, eps, gam):
    """Independent LRP of y = sum_n relu(A2^T relu(A1^T x W1 + b1) W2 + b2) . w_out + b_out,
    written with explicit relevance messages (no gradients): dense layers with the gamma rule
    (gam = 0: epsilon), message passing with Mokhtar et al.'s rule."""
    def stab(z):
        return z + eps * np.where(z >= 0, 1.0, -1.0)

    acts = [x]          # node features entering each graph layer
    msgs = []           # aggregated features m_k = sum_j A_jk h_j
    h = x
    for a, w, b in zip(adjs, ws, bs):
        m = a.T @ h
        msgs.append(m)
        h = np.maximum(m @ w + b, 0)
        acts.append(h)
    pooled = h.sum(0)
    y = pooled @ w_out + b_out
    # output dense: R_c = pooled_c w_c / stab(y) * y (rule weights w + gam w+)
    wo = w_out + gam * np.maximum(w_out, 0)
    zo = pooled @ wo + b_out + gam * max(b_out, 0)
    r_pooled = pooled * wo / stab(zo) * y
    # sum pooling: R_nc = h_nc / pooled_c R_c (exact, linear)
    r = acts[-1] / np.where(pooled == 0, 1, pooled) * r_pooled
    for layer in (1, 0):
        a, w, b, m = adjs[layer], ws[layer], bs[layer], msgs[layer]
        # relu passes relevance; dense: R_i(m) = sum_j m_i w'_ij / stab(z'_j) R_j per node
        wp = w + gam * np.maximum(w, 0)
        zp = m @ wp + b + gam * np.maximum(b, 0)
        r_m = m * ((r / stab(zp)) @ wp.T)
        # message passing: R_jc = sum_k h_jc A_jk / stab(m_kc) R_kc
        hin = acts[layer]
        r = hin * (a @ (r_m / stab(m)))
    return y, r


@pytest.mark.parametrize("gam", [0.0, 0.7])
def test_two_layer_graph_network_matches_numpy_reference(x64, gam):
    rng = _rng(9)
    n, f, c1, c2 = 7, 3, 5, 4
    x = rng.normal(size=(n, f))
    adjs = [rng.uniform(0, 1, (n, n)) * (rng.uniform(size=(n, n)) < 0.6) + np.eye(n)
            for _ in range(2)]
    ws = [rng.normal(size=(f, c1)), rng.normal(size=(c1, c2))]
    bs = [rng.normal(size=c1) * 0.3, rng.normal(size=c2) * 0.3]
    w_out, b_out = rng.normal(size=c2), 0.2
    eps = 0.05
    rule = lrp.epsilon(eps) if gam == 0 else lrp.gamma(gam, eps)
    j = lambda a: jnp.asarray(a)  # noqa: E731

    def f_jax(v):
        h = v
        for a, w, b in zip(adjs, ws, bs):
            h = jax.nn.relu(lrp.dense(lrp.message_passing(h, j(a), eps), j(w), j(b), rule))
        return lrp.dense(jnp.sum(h, 0, keepdims=True), j(w_out[:, None]), j([b_out]), rule)[0, 0]

    y, r = _rel(f_jax, j(x))
    y_ref, r_ref = _numpy_lrp_gnn(x, adjs, ws, bs, w_out, b_out, eps, gam)
    np.testing.assert_allclose(float(y), y_ref, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(r), r_ref, rtol=1e-9, atol=1e-12)
    assert np.abs(r_ref).max() > 1e-2
    # conservation of the same network with zero biases and eps -> 0
    bs0 = [np.zeros_like(b) for b in bs]
    y0, r0 = _numpy_lrp_gnn(x, adjs, ws, bs0, w_out, 0.0, TINY, gam)
    assert abs(r0.sum() - y0) < 1e-5 * abs(y0)


def test_lrp0_equals_gradient_times_input_on_relu_net(x64):
    rng = _rng(10)
    ws = [jnp.asarray(rng.normal(size=s)) for s in ((6, 8), (8, 8), (8, 1))]
    adj = jnp.asarray(rng.uniform(0, 1, (5, 5)))
    x = jnp.asarray(rng.normal(size=(5, 6)))

    def net(v, mp, dense):
        h = mp(v)
        for i, w in enumerate(ws):
            h = dense(h, w)
            if i < 2:
                h = jax.nn.relu(h)
        return jnp.sum(h)

    def plain(v):
        return net(v, lambda u: adj.T @ u, lambda u, w: u @ w)

    def with_rule(rule):
        return lambda v: net(v, lambda u: lrp.message_passing(u, adj),
                             lambda u, w: lrp.dense(u, w, None, rule))

    rule0 = with_rule(lrp.lrp0())
    grad_x_input = x * jax.grad(plain)(x)
    _, r = _rel(rule0, x)
    np.testing.assert_allclose(np.asarray(r), np.asarray(grad_x_input), rtol=1e-10, atol=1e-12)
    # a nonzero epsilon is a different explanation (the test can fail)
    rule_eps = with_rule(lrp.epsilon(1.0))
    _, r_eps = _rel(rule_eps, x)
    assert float(jnp.max(jnp.abs(r_eps - grad_x_input))) > 1e-3


def test_bad_inputs_have_clear_errors():
    x = jnp.ones((3, 4))
    with pytest.raises(ValueError, match=r"kernel \(I, O\).*\(3, 4\).*\(5, 2\)"):
        lrp.dense(x, jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="same N"):
        lrp.message_passing(x, jnp.ones((5, 5)))
    with pytest.raises(ValueError, match="how='median'"):
        lrp.neighbour_reduce(jnp.ones((1, 3, 2, 4)), jnp.ones((1, 3, 2), bool), "median")
    with pytest.raises(ValueError, match=r"adjacency \(N / S, S, S\)"):
        lrp.binned_message_passing(x, jnp.arange(3), jnp.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="eps >= 0"):
        lrp.epsilon(-1.0)
    with pytest.raises(TypeError, match="Rule"):
        lrp.dense(x, jnp.ones((4, 2)), None, "epsilon")
