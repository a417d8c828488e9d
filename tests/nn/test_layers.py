"""Layers: Dense, mask-aware BatchNorm vs numpy, LayerNorm, ResidualBlock, MLP (dropout, modes,
masks), the split/merge + jit boundary, one_hot."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hepjax import nn

EPS = 1e-5


def _data(seed=0, shape=(4, 6, 3)):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]).astype(np.float32)
    mask = rng.random(shape[:-1]) < 0.6
    mask[0, 0] = True
    return x, mask


def test_dense_matches_matmul():
    layer = nn.Dense(3, 5, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(2, 7, 3)).astype(np.float32)
    w, b = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    assert w.shape == (3, 5) and np.all(b == 0)
    assert np.abs(w).max() <= np.sqrt(6 / 8)  # glorot_uniform default
    np.testing.assert_allclose(layer(jnp.asarray(x)), x @ w + b, rtol=1e-5, atol=1e-6)
    assert nn.Dense(3, 5, use_bias=False, rngs=nnx.Rngs(0)).bias is None
    with pytest.raises(ValueError, match="in_features"):
        layer(jnp.ones((2, 4)))


def test_batchnorm_masked_vs_numpy():
    x, mask = _data()
    bn = nn.BatchNorm(3, rngs=nnx.Rngs(0))
    y = np.asarray(bn(jnp.asarray(x), mask=jnp.asarray(mask)))
    real = x[mask]
    mean, var = real.mean(0), real.var(0)
    np.testing.assert_allclose(y[mask], (real - mean) / np.sqrt(var + EPS), rtol=1e-4, atol=1e-5)
    assert np.all(y[~mask] == 0)
    np.testing.assert_allclose(bn.mean[...], 0.01 * mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bn.var[...], 0.99 + 0.01 * var, rtol=1e-5)
    # the unmasked statistics differ from the masked ones, so a mask-blind BN would fail above
    assert not np.allclose(x.reshape(-1, 3).mean(0), mean, atol=1e-2)


def test_batchnorm_padding_invariance():
    x, mask = _data(1)
    bn1 = nn.BatchNorm(3, rngs=nnx.Rngs(0))
    bn2 = nn.BatchNorm(3, rngs=nnx.Rngs(0))
    y1 = bn1(jnp.asarray(x), mask=jnp.asarray(mask))
    # add 5 padded particles per event with garbage values
    pad = np.full((4, 5, 3), 1e3, np.float32)
    xp = np.concatenate([x, pad], axis=1)
    mp = np.concatenate([mask, np.zeros((4, 5), bool)], axis=1)
    y2 = bn2(jnp.asarray(xp), mask=jnp.asarray(mp))
    np.testing.assert_allclose(np.asarray(y2)[:, :6][mask], np.asarray(y1)[mask], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(bn2.mean[...], bn1.mean[...], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(bn2.var[...], bn1.var[...], rtol=1e-6)


def test_batchnorm_matches_nnx_without_mask():
    x, _ = _data(2)
    ours = nn.BatchNorm(3, rngs=nnx.Rngs(0))
    ref = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    for _ in range(2):
        np.testing.assert_allclose(ours(jnp.asarray(x)), ref(jnp.asarray(x)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.mean[...], ref.mean[...], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.var[...], ref.var[...], rtol=1e-5)


def test_batchnorm_train_eval_modes():
    x, mask = _data(3)
    model = nn.MLP(3, [4], 2, norm="batch", rngs=nnx.Rngs(0))
    bn = model.norms[0]
    model.train()
    assert bn.use_running_average is False
    model(jnp.asarray(x), mask=jnp.asarray(mask))
    stats = (np.asarray(bn.mean[...]).copy(), np.asarray(bn.var[...]).copy())
    assert not np.allclose(stats[0], 0)
    model.eval()
    assert bn.use_running_average is True
    # eval: uses running statistics, leaves them unchanged
    h = jnp.asarray(x) @ model.blocks[0].kernel[...] + model.blocks[0].bias[...]
    out = bn(h, mask=jnp.asarray(mask))
    ref = (np.asarray(h) - stats[0]) / np.sqrt(stats[1] + EPS)
    np.testing.assert_allclose(np.asarray(out)[mask], ref[mask], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bn.mean[...], stats[0])
    np.testing.assert_array_equal(bn.var[...], stats[1])
    # eval output at an entry does not depend on the rest of the batch
    one = bn(h[:1, :1], mask=jnp.asarray(mask[:1, :1]))
    np.testing.assert_allclose(one[0, 0], out[0, 0], rtol=1e-6)
    # fully masked batch in train mode: stats untouched, no NaN
    bn.use_running_average = False
    out = bn(h, mask=jnp.zeros(mask.shape, bool))
    assert np.all(np.asarray(out) == 0)
    np.testing.assert_array_equal(bn.mean[...], stats[0])


def test_layernorm_vs_numpy():
    x, mask = _data(4)
    ln = nn.LayerNorm(3)
    ln.scale[...] = jnp.array([1.0, 2.0, 0.5])
    ln.bias[...] = jnp.array([0.1, 0.0, -0.3])
    y = np.asarray(ln(jnp.asarray(x), mask=jnp.asarray(mask)))
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    ref = (x - m) / np.sqrt(v + EPS) * [1.0, 2.0, 0.5] + [0.1, 0.0, -0.3]
    np.testing.assert_allclose(y[mask], ref[mask], rtol=1e-4, atol=1e-5)
    assert np.all(y[~mask] == 0)


def test_residual_block_pre_and_post_norm():
    x, _ = _data(5)
    xj = jnp.asarray(x)
    blk = nn.ResidualBlock(3, 3, norm="layer", rngs=nnx.Rngs(0))
    assert blk.skip is None
    w, b = np.asarray(blk.dense.kernel[...]), np.asarray(blk.dense.bias[...])
    ln = lambda a: (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + EPS)  # noqa
    np.testing.assert_allclose(blk(xj), x + np.maximum(ln(x) @ w + b, 0), rtol=1e-4, atol=1e-5)
    post = nn.ResidualBlock(3, 5, norm="layer", pre_norm=False, activation="tanh",
                            rngs=nnx.Rngs(1))
    p = np.asarray(post.skip.kernel[...])
    assert p.shape == (3, 5) and post.skip.bias is None
    w, b = np.asarray(post.dense.kernel[...]), np.asarray(post.dense.bias[...])
    np.testing.assert_allclose(post(xj), ln(x @ p + np.tanh(x @ w + b)), rtol=1e-4, atol=1e-4)


def _manual_mlp(model, x):
    h = x
    for blk in model.blocks:
        h = np.maximum(h @ np.asarray(blk.kernel[...]) + np.asarray(blk.bias[...]), 0)
    return h @ np.asarray(model.out.kernel[...]) + np.asarray(model.out.bias[...])


def test_mlp_dropout_keys_and_eval():
    x, _ = _data(6)
    xj = jnp.asarray(x)
    model = nn.MLP(3, [32, 32], 2, dropout=0.5, rngs=nnx.Rngs(params=0, dropout=1))
    nnx.reseed(model, dropout=jax.random.key(7))
    a = model(xj)
    nnx.reseed(model, dropout=jax.random.key(7))
    b = model(xj)
    nnx.reseed(model, dropout=jax.random.key(8))
    c = model(xj)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    ref = _manual_mlp(model, x)
    assert not np.allclose(a, ref, atol=1e-3)  # dropout active in train mode
    model.eval()
    d = model(xj)
    nnx.reseed(model, dropout=jax.random.key(9))
    np.testing.assert_array_equal(model(xj), d)
    np.testing.assert_allclose(d, ref, rtol=1e-4, atol=1e-5)  # eval: no dropout
    model.train()
    nnx.reseed(model, dropout=jax.random.key(7))
    np.testing.assert_array_equal(model(xj), a)


def test_dropout_needs_dropout_stream():
    with pytest.raises(ValueError, match="'dropout' stream"):
        nn.MLP(3, [4], 1, dropout=0.1, rngs=nnx.Rngs(0))
    nn.MLP(3, [4], 1, dropout=0.0, rngs=nnx.Rngs(0))  # no dropout: plain Rngs is fine


@pytest.mark.parametrize("residual", [False, True])
def test_mlp_mask_and_padding(residual):
    x, mask = _data(7)
    m1 = nn.MLP(3, [8, 6], 2, norm="batch", residual=residual, final_activation="sigmoid",
                rngs=nnx.Rngs(0))
    m2 = nn.MLP(3, [8, 6], 2, norm="batch", residual=residual, final_activation="sigmoid",
                rngs=nnx.Rngs(0))
    y1 = np.asarray(m1(jnp.asarray(x), mask=jnp.asarray(mask)))
    assert y1.shape == (4, 6, 2)
    assert np.all(y1[~mask] == 0) and np.all((y1[mask] > 0) & (y1[mask] < 1))
    xp = np.concatenate([x, np.full((4, 3, 3), -7.0, np.float32)], axis=1)
    mp = np.concatenate([mask, np.zeros((4, 3), bool)], axis=1)
    y2 = np.asarray(m2(jnp.asarray(xp), mask=jnp.asarray(mp)))
    np.testing.assert_allclose(y2[:, :6][mask], y1[mask], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mask must have shape"):
        m1(jnp.asarray(x), mask=jnp.asarray(mask[:, :3]))


def test_split_merge_jit_boundary():
    x, mask = _data(8)
    model = nn.MLP(3, [16], 2, dropout=0.2, norm="batch", rngs=nnx.Rngs(params=0, dropout=1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    assert n_params == (3 * 16 + 16) + 2 * 16 + (16 * 2 + 2)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def forward(params, rest, x, mask, key):
        m = nnx.merge(graphdef, params, rest)
        nnx.reseed(m, dropout=key)
        y = m(x, mask=mask)
        return y, nnx.state(m, nnx.BatchStat)

    def loss(params, rest, x, mask, key):
        y, _ = forward(params, rest, x, mask, key)
        return jnp.sum(y ** 2)

    key = jax.random.key(3)
    y_jit, stats = forward(params, rest, jnp.asarray(x), jnp.asarray(mask), key)
    y_jit2, _ = forward(params, rest, jnp.asarray(x), jnp.asarray(mask), key)  # no retrace
    np.testing.assert_array_equal(y_jit, y_jit2)
    eager = nnx.merge(graphdef, params, rest)
    nnx.reseed(eager, dropout=key)
    y_eager = eager(jnp.asarray(x), mask=jnp.asarray(mask))
    np.testing.assert_allclose(y_jit, y_eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.tree.leaves(stats)[0],
                               jax.tree.leaves(nnx.state(eager, nnx.BatchStat))[0], rtol=1e-6)
    grads = jax.grad(loss)(params, rest, jnp.asarray(x), jnp.asarray(mask), key)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_one_hot():
    np.testing.assert_array_equal(nn.one_hot(jnp.array([0, 2, 1]), 3), np.eye(3)[[0, 2, 1]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        nn.one_hot(jnp.array([0, 3]), 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        nn.one_hot(np.array([-1, 0]), 3)
    out = jax.jit(lambda y: nn.one_hot(y, 3))(jnp.array([0, 5]))  # traced: no check
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 0]])


def test_dropout_same_key_same_mask_and_eval_identity():
    x = jnp.arange(1.0, 3001.0).reshape(3, 1000)
    a = nn.Dropout(0.2, rngs=nnx.Rngs(dropout=7))(x)
    b = nn.Dropout(0.2, rngs=nnx.Rngs(dropout=7))(x)
    c = nn.Dropout(0.2, rngs=nnx.Rngs(dropout=8))(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    d = nn.Dropout(0.2, rngs=nnx.Rngs(dropout=7))
    d.eval()
    np.testing.assert_array_equal(d(x), x)
    # gradients flow through the kept entries with the same scale
    g = jax.grad(lambda x: jnp.sum(nn.Dropout(0.2, rngs=nnx.Rngs(dropout=7))(x)))(x)
    np.testing.assert_array_equal(np.asarray(g) != 0, np.asarray(a) != 0)


def test_batchnorm_gelu_method_equals_dense_bias_batchnorm_gelu():
    x, mask = _data(3)
    shift = jnp.asarray([0.3, -2.0, 5.0], jnp.float32)
    a, b = nn.BatchNorm(3, rngs=nnx.Rngs(0)), nn.BatchNorm(3, rngs=nnx.Rngs(0))
    for mode in ("train", "eval"):
        got = a.gelu(jnp.asarray(x), mask, shift=shift)
        want = nn.gelu(b(jnp.asarray(x) + shift, mask))
        np.testing.assert_allclose(got, np.where(mask[..., None], want, 0), atol=2e-6)
        # the same running statistics (the shift enters the running mean only)
        np.testing.assert_allclose(a.mean[...], b.mean[...], atol=1e-6)
        np.testing.assert_allclose(a.var[...], b.var[...], atol=1e-6)
        a.eval(), b.eval()
