"""Activations against numpy closed forms, jax.nn, and finite-difference gradients."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax import nn

X = np.linspace(-4.0, 4.0, 81)
ERF = np.vectorize(math.erf)

CLOSED_FORMS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1.0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + ERF(x / np.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "identity": lambda x: x,
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_activation_closed_form(name):
    f = nn.get_activation(name)
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(X, jnp.float32))), CLOSED_FORMS[name](X),
                               rtol=1e-5, atol=1e-6)


def test_parameters_and_jax_nn():
    x = jnp.asarray(X, jnp.float32)
    np.testing.assert_allclose(nn.leaky_relu(x, 0.2), np.where(X >= 0, X, 0.2 * X), rtol=1e-6)
    np.testing.assert_allclose(nn.elu(x, alpha=2.0), np.where(X > 0, X, 2 * np.expm1(X)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nn.gelu(x), jax.nn.gelu(x, approximate=False), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nn.gelu(x, approximate=True), jax.nn.gelu(x, approximate=True),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(nn.gelu(x), nn.gelu(x, approximate=True), rtol=0, atol=1e-6)
    np.testing.assert_allclose(nn.elu(x), jax.nn.elu(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nn.leaky_relu(x), jax.nn.leaky_relu(x), rtol=1e-6)


@pytest.mark.parametrize("name", ["leaky_relu", "elu", "tanh", "sigmoid", "gelu", "gelu_tanh",
                                  "silu", "softplus"])
def test_gradient_finite_differences(name):
    f = nn.get_activation(name)
    pts = np.array([-3.1, -1.3, -0.4, 0.37, 1.1, 2.9])  # away from kinks
    with jax.enable_x64(True):
        x = jnp.asarray(pts, jnp.float64)
        g = jax.vmap(jax.grad(f))(x)
        h = 1e-6
        fd = (np.asarray(f(x + h)) - np.asarray(f(x - h))) / (2 * h)
        np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-7, atol=1e-9)


def test_relu_gradient():
    g = jax.vmap(jax.grad(nn.relu))(jnp.array([-1.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 1.0])


def test_maxout():
    x = np.random.default_rng(0).normal(size=(3, 12)).astype(np.float32)
    out = nn.maxout(jnp.asarray(x), 3)
    np.testing.assert_array_equal(out, x.reshape(3, 4, 3).max(-1))
    out0 = nn.maxout(jnp.asarray(x.T), 4, axis=0)
    np.testing.assert_array_equal(out0, x.T.reshape(3, 4, 3).max(1))
    with pytest.raises(ValueError, match="divisible"):
        nn.maxout(jnp.asarray(x), 5)


def _np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax_matches_numpy_and_jax():
    x = np.random.default_rng(1).normal(size=(4, 6)) * 3
    xj = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(nn.softmax(xj), _np_softmax(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(nn.softmax(xj, axis=0), _np_softmax(x, 0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(nn.log_softmax(xj), np.log(_np_softmax(x)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nn.softmax(xj), jax.nn.softmax(xj), rtol=1e-6, atol=1e-7)
    # large logits: stable
    big = nn.softmax(jnp.array([1000.0, 1000.0, -1000.0]))
    np.testing.assert_allclose(big, [0.5, 0.5, 0.0], atol=1e-7)


def test_masked_softmax():
    x = np.random.default_rng(2).normal(size=(3, 5))
    mask = np.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    p = np.asarray(nn.softmax(jnp.asarray(x, jnp.float32), where=jnp.asarray(mask)))
    # row 0: softmax over the unmasked entries only, masked entries exactly 0
    ref0 = np.zeros(5)
    ref0[mask[0]] = _np_softmax(x[0, mask[0]])
    np.testing.assert_allclose(p[0], ref0, rtol=1e-5, atol=1e-7)
    assert np.all(p[0, ~mask[0]] == 0)
    np.testing.assert_array_equal(p[1], np.zeros(5))  # fully masked row: zeros, not NaN
    np.testing.assert_allclose(p[2], _np_softmax(x[2]), rtol=1e-5)
    lp = np.asarray(nn.log_softmax(jnp.asarray(x, jnp.float32), where=jnp.asarray(mask)))
    np.testing.assert_allclose(lp[0, mask[0]], np.log(ref0[mask[0]]), rtol=1e-5)
    assert np.all(lp[1] == 0) and np.all(lp[0, ~mask[0]] == 0)


def test_masked_softmax_gradient_finite():
    mask = jnp.array([[True, False, True], [False, False, False]])
    x = jnp.array([[0.3, -50.0, 1.0], [-1e4, 2.0, 3.0]])

    def loss(x):
        return (jnp.sum(nn.softmax(x, where=mask) * jnp.arange(3.0))
                + jnp.sum(nn.log_softmax(x, where=mask)))

    g = jax.grad(loss)(x)
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_array_equal(np.asarray(g)[1], 0.0)   # fully masked row: zero gradient
    np.testing.assert_array_equal(np.asarray(g)[0, 1], 0.0)  # masked entry: zero gradient
    # unmasked entries: finite differences in float64
    with jax.enable_x64(True):
        m = jnp.array([True, False, True, True])
        x0 = jnp.array([0.3, 7.0, -1.0, 0.5], jnp.float64)
        w = jnp.array([1.0, 2.0, 3.0, -1.0], jnp.float64)
        f = jax.jit(lambda x: jnp.sum(nn.softmax(x, where=m) * w))
        g = np.asarray(jax.grad(f)(x0))
        h = 1e-6 * np.eye(4)
        fd = (np.asarray(jax.vmap(f)(x0 + h)) - np.asarray(jax.vmap(f)(x0 - h))) / 2e-6
        np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-10)


def test_get_activation_errors():
    assert nn.get_activation("ReLU") is nn.relu
    assert nn.get_activation(jnp.sin) is jnp.sin
    with pytest.raises(ValueError, match="valid names are.*relu"):
        nn.get_activation("relux")
