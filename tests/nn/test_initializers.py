"""Initialisers: empirical variances vs the textbook formulas; variance preservation."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax import nnx

from hepjax import nn

FAN_IN, FAN_OUT = 800, 400  # 320k samples: relative sampling error of the variance ~ 0.3 %

CASES = {
    "glorot_normal": (nn.glorot_normal, 2.0 / (FAN_IN + FAN_OUT)),
    "glorot_uniform": (nn.glorot_uniform, 2.0 / (FAN_IN + FAN_OUT)),
    "he_normal": (nn.he_normal, 2.0 / FAN_IN),
    "he_uniform": (nn.he_uniform, 2.0 / FAN_IN),
    "torch_uniform": (nn.torch_uniform, 1.0 / (3.0 * FAN_IN)),   # PyTorch's Linear default
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_empirical_variance(name):
    init, var = CASES[name]
    w = np.asarray(init(jax.random.key(0), (FAN_IN, FAN_OUT), jnp.float32), np.float64)
    assert w.shape == (FAN_IN, FAN_OUT) and w.dtype == np.float64
    assert abs(w.mean()) < 5 * math.sqrt(var / w.size)
    np.testing.assert_allclose(w.var(), var, rtol=0.015)
    if "uniform" in name:
        limit = math.sqrt(3 * var)  # sqrt(6/(fi+fo)) or sqrt(6/fi)
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.999 * limit
    else:  # plain (untruncated) normal: kurtosis 3 and tails beyond 2 sigma
        kurt = np.mean((w - w.mean()) ** 4) / w.var() ** 2
        assert abs(kurt - 3.0) < 0.1
        assert np.abs(w).max() > 3 * math.sqrt(var)


def test_uniform_limits_closed_form():
    w = np.asarray(nn.he_uniform(jax.random.key(1), (50, 10)))
    assert np.abs(w).max() <= math.sqrt(6 / 50)
    w = np.asarray(nn.glorot_uniform(jax.random.key(1), (50, 10)))
    assert np.abs(w).max() <= math.sqrt(6 / 60)


def test_torch_scheme_matches_pytorch_linear_default():
    """PyTorch's nn.Linear(fan_in, out): weight kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)),
    bias U(+-1/sqrt(fan_in)); the MLP's init='torch' uses both in every layer."""
    w = np.asarray(nn.torch_uniform(jax.random.key(3), (64, 512)))
    b = np.asarray(nn.fan_in_uniform_bias(64)(jax.random.key(4), (20_000,)))
    for x in (w, b):
        assert np.abs(x).max() <= 1 / 8 and np.abs(x).max() > 0.995 / 8
    mlp = nn.MLP(64, (32,), 3, init="torch", rngs=nnx.Rngs(0))
    assert np.abs(np.asarray(mlp.blocks[0].bias[...])).max() > 0          # biases drawn, not zero
    assert np.abs(np.asarray(mlp.out.kernel[...])).max() <= 1 / math.sqrt(32)
    assert np.abs(np.asarray(mlp.out.bias[...])).max() <= 1 / math.sqrt(32)
    with pytest.raises(ValueError, match="init='xavier'"):
        nn.MLP(4, (4,), 1, init="xavier", rngs=nnx.Rngs(0))


def test_fans_conv_kernel_match_jax():
    shape = (3, 5, 16, 32)  # (kh, kw, c_in, c_out)
    assert nn.compute_fans(shape) == (3 * 5 * 16, 3 * 5 * 32)
    assert nn.compute_fans((7, 9)) == (7, 9)
    # same variance as jax's variance_scaling on the same kernel
    big = (4, 4, 64, 128)
    ours = np.asarray(nn.he_normal(jax.random.key(2), big)).var()
    theirs = np.asarray(jax.nn.initializers.he_normal()(jax.random.key(3), big)).var()
    np.testing.assert_allclose(ours, 2.0 / (16 * 64), rtol=0.02)
    np.testing.assert_allclose(ours, theirs, rtol=0.03)
    with pytest.raises(ValueError, match="at least 2 dims"):
        nn.glorot_uniform(jax.random.key(0), (5,))


def test_deterministic_and_dtype():
    a = nn.glorot_normal(jax.random.key(5), (4, 3))
    b = nn.glorot_normal(jax.random.key(5), (4, 3))
    np.testing.assert_array_equal(a, b)
    assert nn.he_uniform(jax.random.key(5), (4, 3), jnp.bfloat16).dtype == jnp.bfloat16


def _propagate(init, act, width=256, depth=20, batch=1024):
    """Variance of the last pre-activation after `depth` bias-free layers."""
    key = jax.random.key(0)
    x = jax.random.normal(key, (batch, width))
    z = x
    for layer in range(depth):
        z = x @ init(jax.random.fold_in(key, layer + 1), (width, width))
        x = act(z)
    return float(jnp.var(z))


def test_variance_preservation_relu():
    he = _propagate(nn.he_normal, jax.nn.relu)
    assert 0.3 < he < 3.0  # stays O(1) with He
    # Glorot lacks ReLU's factor 2: variance halves every layer, ~2^-20 after 20 layers
    glorot = _propagate(nn.glorot_normal, jax.nn.relu)
    assert 1e-8 < glorot < 1e-4
    # naive N(0, 1): Var grows by n/2 = 128 per layer -> overflows; N(0, 0.01^2) vanishes
    big = _propagate(nn.normal(1.0), jax.nn.relu)
    assert not math.isfinite(big) or big > 1e30
    assert _propagate(nn.normal(0.01), jax.nn.relu) < 1e-20


def test_variance_preservation_tanh():
    glorot = _propagate(nn.glorot_normal, jnp.tanh)
    assert 1e-2 < glorot < 3.0  # O(1) (tanh's curvature gives a slow ~1/layer decay)
    naive = _propagate(nn.normal(1.0), jnp.tanh)
    assert naive > 100  # saturated tanh units: pre-activation variance ~ n
    assert _propagate(nn.normal(0.01), jnp.tanh) < 1e-20
