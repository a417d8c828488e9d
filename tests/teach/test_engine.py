"""The teaching autodiff engine against jax.grad (float64, to 1e-10) and central differences.

Every operation is written twice, once on ``Tensor`` and once in jax.numpy, through a tiny
"library" object (``T`` / ``J``) so that the same expression code runs on both.
"""
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hepjax.teach import Tensor, concatenate
from hepjax.teach import engine

RTOL = 1e-10


class T:
    """Tensor-side primitives."""

    exp = staticmethod(lambda a: a.exp())
    log = staticmethod(lambda a: a.log())
    tanh = staticmethod(lambda a: a.tanh())
    sigmoid = staticmethod(lambda a: a.sigmoid())
    relu = staticmethod(lambda a: a.relu())
    elu = staticmethod(lambda a: a.elu())
    sum = staticmethod(lambda a, axis=None, keepdims=False: a.sum(axis=axis, keepdims=keepdims))
    mean = staticmethod(lambda a, axis=None, keepdims=False: a.mean(axis=axis, keepdims=keepdims))
    transpose = staticmethod(lambda a, axes=None: a.transpose(axes) if axes else a.transpose())
    concat = staticmethod(lambda xs, axis: concatenate(xs, axis=axis))
    log_softmax = staticmethod(lambda a, axis=-1: a.log_softmax(axis=axis))
    mse = staticmethod(engine.mse)
    bce = staticmethod(engine.binary_cross_entropy_with_logits)
    cce = staticmethod(engine.categorical_cross_entropy_with_logits)


class J:
    """jax.numpy-side primitives (independent implementations: jnp, jax.nn, optax)."""

    exp = staticmethod(jnp.exp)
    log = staticmethod(jnp.log)
    tanh = staticmethod(jnp.tanh)
    sigmoid = staticmethod(jax.nn.sigmoid)
    relu = staticmethod(jax.nn.relu)
    elu = staticmethod(jax.nn.elu)
    sum = staticmethod(lambda a, axis=None, keepdims=False: jnp.sum(a, axis=axis, keepdims=keepdims))
    mean = staticmethod(lambda a, axis=None, keepdims=False: jnp.mean(a, axis=axis, keepdims=keepdims))
    transpose = staticmethod(lambda a, axes=None: jnp.transpose(a, axes))
    concat = staticmethod(lambda xs, axis: jnp.concatenate(xs, axis=axis))
    log_softmax = staticmethod(lambda a, axis=-1: jax.nn.log_softmax(a, axis=axis))
    mse = staticmethod(lambda p, t: jnp.mean((p - t) ** 2))
    bce = staticmethod(lambda z, y: jnp.mean(optax.losses.sigmoid_binary_cross_entropy(z, y)))

    @staticmethod
    def cce(z, y):
        y = np.asarray(y)
        if y.ndim == z.ndim - 1:
            return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(z, y))
        return jnp.mean(optax.losses.softmax_cross_entropy(z, y))


# Constants that enter as numpy arrays / python scalars (never differentiated).
_CONST = np.random.default_rng(1234)
N4 = _CONST.normal(size=4)
N34 = _CONST.normal(size=(3, 4))
Y01 = (_CONST.uniform(size=(3, 4)) > 0.5).astype(float)
LABELS = np.array([3, 0, 3])
PROBS = np.exp(N34) / np.exp(N34).sum(axis=1, keepdims=True)

# Differentiated inputs: x, y (3, 4); b (4,); c (3, 1); d (); w (4, 4).
# Each op maps L, x, y (3, 4) and the broadcast inputs to a (3, 4) value.
OPS = {
    "add": lambda L, x, y, i: x + y,
    "add_broadcast_row": lambda L, x, y, i: x + i["b"],
    "sub_broadcast_col": lambda L, x, y, i: x - i["c"],
    "rsub_broadcast": lambda L, x, y, i: i["b"] - x,
    "mul_broadcast": lambda L, x, y, i: x * i["c"] * i["d"],
    "div": lambda L, x, y, i: x / (y * y + 0.5),
    "div_broadcast": lambda L, x, y, i: i["c"] / (x * x + i["b"] * i["b"] + 0.5),
    "scalar_left": lambda L, x, y, i: 1.5 - 2.0 * x + (0.3 + y),
    "scalar_right": lambda L, x, y, i: (x - 0.7) * 0.5 + y / 3.0,
    "rtruediv_scalar": lambda L, x, y, i: 3.0 / (x * x + 1.0),
    "numpy_left": lambda L, x, y, i: N4 * x + (N34 - y) + N34 / (y * y + 1.0),
    "numpy_right": lambda L, x, y, i: x * N34 - N4 + y / (N34 * N34 + 1.0),
    "pow_const": lambda L, x, y, i: (x * x + 0.5) ** 1.5 + x**2 + y**3,
    "pow_tensor": lambda L, x, y, i: (x * x + 0.5) ** (0.3 * y + i["b"]),
    "rpow": lambda L, x, y, i: 2.0 ** (0.5 * x),
    "neg": lambda L, x, y, i: -x,
    "matmul": lambda L, x, y, i: x @ i["w"],
    "matmul_transposed": lambda L, x, y, i: x @ (x.T @ y) * 0.1,
    "matmul_vec_right": lambda L, x, y, i: (x @ i["b"])[:, None] * y,
    "matmul_vec_left": lambda L, x, y, i: (i["b"] @ i["w"]) + x,
    "matmul_vec_vec": lambda L, x, y, i: (i["b"] @ x[0]) * y,
    "matmul_numpy_left": lambda L, x, y, i: N34 @ (x.T @ y) * 0.1,
    "exp": lambda L, x, y, i: L.exp(0.5 * x),
    "log": lambda L, x, y, i: L.log(x * x + 0.5),
    "tanh": lambda L, x, y, i: L.tanh(x),
    "sigmoid": lambda L, x, y, i: L.sigmoid(3.0 * x),
    "relu": lambda L, x, y, i: L.relu(x),
    "elu": lambda L, x, y, i: L.elu(2.0 * x),
    "sum_all": lambda L, x, y, i: L.sum(x) * y,
    "sum_axis0_keepdims": lambda L, x, y, i: L.sum(x, axis=0, keepdims=True) * y,
    "sum_axis1": lambda L, x, y, i: L.sum(x * y, axis=1)[:, None] + y,
    "sum_tuple_keepdims": lambda L, x, y, i: L.sum(x, axis=(0, 1), keepdims=True) + y,
    "sum_negative_axis": lambda L, x, y, i: L.sum(x, axis=-1, keepdims=True) * y,
    "mean_all": lambda L, x, y, i: L.mean(x * y) + y,
    "mean_axis0": lambda L, x, y, i: L.mean(x, axis=0) * y,
    "mean_tuple": lambda L, x, y, i: L.mean(x, axis=(0, 1)) * y,
    "mean_keepdims": lambda L, x, y, i: L.mean(x, axis=1, keepdims=True) * y,
    "reshape": lambda L, x, y, i: x.reshape(4, 3).reshape((2, 6)).reshape(3, 4) * y.reshape(12).reshape(3, 4),
    "reshape_transpose": lambda L, x, y, i: x.reshape(4, 3).T * y,
    "transpose_3d": lambda L, x, y, i: L.transpose(x.reshape(3, 2, 2), (2, 0, 1)).reshape(3, 4) * y,
    "getitem_slice": lambda L, x, y, i: x[:, ::-1] * y,
    "getitem_repeated": lambda L, x, y, i: x[np.array([2, 0, 0])] * y,
    "getitem_int": lambda L, x, y, i: x[1] * y + x[:, 2:3],
    "getitem_fancy_2d": lambda L, x, y, i: x[np.array([0, 1, 1]), np.array([3, 3, 0])][:, None] * y,
    "getitem_bool": lambda L, x, y, i: L.sum(x[N34 > 0]) * y,
    "concat_axis1": lambda L, x, y, i: L.concat([x[:, :1], y[:, 1:]], axis=1),
    "concat_axis0": lambda L, x, y, i: L.concat([x[:2], y[2:]], axis=0),
    "concat_three": lambda L, x, y, i: L.concat([x[:, :1], i["c"], x[:, 2:] * y[:, 2:]], axis=1),
    "log_softmax_last": lambda L, x, y, i: L.log_softmax(x) * y,
    "log_softmax_axis0": lambda L, x, y, i: L.log_softmax(x * y, axis=0),
    "mse": lambda L, x, y, i: L.mse(x, N34) * y + L.mse(x, y),
    "bce": lambda L, x, y, i: L.bce(2.0 * x, Y01) * y,
    "cce_labels": lambda L, x, y, i: L.cce(x, LABELS) * y,
    "cce_probs": lambda L, x, y, i: L.cce(x * y, PROBS) + y,
}


def make_inputs(seed):
    """The differentiated inputs, as a dict of numpy arrays."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(3, 4)),
        "y": rng.normal(size=(3, 4)),
        "b": rng.normal(size=4),
        "c": rng.normal(size=(3, 1)),
        "d": rng.normal(size=()),
        "w": rng.normal(size=(4, 4)) / 2.0,
    }


def random_program(seed, n_ops=8):
    """A random composition: a list of (op name, index of x in pool, index of y in pool)."""
    rng = np.random.default_rng(seed)
    names = sorted(OPS)
    return [(names[rng.integers(len(names))], rng.integers(k + 3), rng.integers(k + 3)) for k in range(n_ops)]


def evaluate(L, inputs, program, readout):
    """Run ``program`` on library L. Pool starts with x, y, and a broadcast mix b*c + d.

    Each result is squashed by tanh (keeps values O(1) over long chains). Returns the scalar
    sum_k sum(pool_k * readout_k).
    """
    i = inputs
    pool = [i["x"], i["y"], i["b"] * i["c"] + i["d"]]
    for name, a, b in program:
        pool.append(L.tanh(OPS[name](L, pool[a], pool[b], i)))
    total = 0.0
    for value, r in zip(pool, readout):
        total = total + L.sum(value * r)
    return total


def engine_grads(inputs, program, readout):
    ts = {k: Tensor(v) for k, v in inputs.items()}
    out = evaluate(T, ts, program, readout)
    out.backward()
    return out.item(), {k: t.grad for k, t in ts.items()}


def jax_grads(inputs, program, readout):
    with jax.enable_x64(True):
        js = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in inputs.items()}
        val, g = jax.value_and_grad(lambda d: evaluate(J, d, program, readout))(js)
        return float(val), {k: np.asarray(v) for k, v in g.items()}


def assert_grads_close(ours, ref, rtol=RTOL):
    for k in ref:
        assert ours[k].shape == np.shape(ref[k]), k
        scale = max(np.max(np.abs(ref[k])), 1e-300)
        np.testing.assert_allclose(ours[k], ref[k], rtol=rtol, atol=rtol * 1e-2 * scale, err_msg=k)


def readout_for(program, seed):
    rng = np.random.default_rng(seed + 10_000)
    return [rng.normal(size=(3, 4)) for _ in range(len(program) + 3)]


# ------------------------------------------------------------------------------ vs jax.grad
@pytest.mark.parametrize("name", sorted(OPS))
def test_each_op_matches_jax_grad(name):
    """Each operation alone (then tanh and a random readout) against jax.grad, to 1e-10."""
    inputs = make_inputs(zlib.crc32(name.encode()))
    program = [(name, 0, 1)]
    readout = readout_for(program, 0)
    v_ours, g_ours = engine_grads(inputs, program, readout)
    v_ref, g_ref = jax_grads(inputs, program, readout)
    np.testing.assert_allclose(v_ours, v_ref, rtol=RTOL)
    assert_grads_close(g_ours, g_ref)
    assert np.any(g_ref["x"] != 0), "the op should depend on x"


@pytest.mark.parametrize("seed", range(40))
def test_random_compositions_match_jax_grad(seed):
    """Random 8-op programs mixing every operation, with broadcasting: gradients to 1e-10."""
    inputs = make_inputs(seed)
    program = random_program(seed)
    readout = readout_for(program, seed)
    v_ours, g_ours = engine_grads(inputs, program, readout)
    v_ref, g_ref = jax_grads(inputs, program, readout)
    np.testing.assert_allclose(v_ours, v_ref, rtol=RTOL)
    assert_grads_close(g_ours, g_ref)


def test_random_programs_cover_every_op():
    seen = {name for seed in range(40) for name, _, _ in random_program(seed)}
    assert len(seen) >= 0.9 * len(OPS)  # each op is also tested alone above


# ------------------------------------------------------------------------------ vs finite differences
@pytest.mark.parametrize("seed", range(6))
def test_random_compositions_match_central_differences(seed):
    """Central differences (f(x+h) - f(x-h)) / 2h, h = 1e-6: agreement to ~1e-6 relative."""
    inputs = make_inputs(100 + seed)
    program = random_program(100 + seed, n_ops=6)
    readout = readout_for(program, seed)
    _, g_ours = engine_grads(inputs, program, readout)
    h = 1e-6
    for k, v in inputs.items():
        fd = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            vals = []
            for sign in (1, -1):
                shifted = {kk: vv.copy() for kk, vv in inputs.items()}
                shifted[k][idx] += sign * h
                vals.append(evaluate(T, {kk: Tensor(vv) for kk, vv in shifted.items()}, program, readout).item())
            fd[idx] = (vals[0] - vals[1]) / (2 * h)
        scale = max(np.max(np.abs(fd)), 1.0)
        np.testing.assert_allclose(g_ours[k], fd, rtol=1e-5, atol=1e-6 * scale, err_msg=k)


# ------------------------------------------------------------------------------ semantics
def test_tanh_example_eq18():
    """dL/dw of tanh(w x) with L = (Phi - y)^2 equals [x][1 - tanh^2(wx)][2(Phi - y)]
    (Kieseler, "Machine learning", ESHEP 2023 lectures, eq. (18))."""
    w, x, y = Tensor(0.3), 1.7, -0.4
    loss = ((w * x).tanh() - y) ** 2
    loss.backward()
    phi = np.tanh(0.3 * 1.7)
    assert w.grad == pytest.approx(x * (1 - phi**2) * 2 * (phi - y), rel=1e-14)


def test_leaf_gradients_accumulate_and_zero_grad_resets():
    a = Tensor(np.array([1.0, 2.0]))
    (a * a).sum().backward()
    np.testing.assert_array_equal(a.grad, [2.0, 4.0])
    (a * a).sum().backward()  # accumulates, like PyTorch
    np.testing.assert_array_equal(a.grad, [4.0, 8.0])
    a.zero_grad()
    np.testing.assert_array_equal(a.grad, [0.0, 0.0])


def test_repeated_backward_on_same_graph_is_not_double_counted_inside():
    """Interior nodes are reset on each backward, so two calls give exactly twice the leaf grad."""
    a = Tensor(np.array([0.5, -1.0]))
    h = a.tanh()
    loss = (h * h).sum()
    loss.backward()
    g1 = a.grad.copy()
    loss.backward()
    np.testing.assert_allclose(a.grad, 2 * g1, rtol=1e-15)


def test_shared_subexpression_sums_over_paths():
    """x used twice (x*x + x): dL/dx = 2x + 1 -- gradients from both paths add up."""
    x = Tensor(np.array([3.0, -2.0]))
    (x * x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, [7.0, -3.0])


def test_grad_has_data_shape_under_broadcasting():
    a, b, c = Tensor(np.ones((2, 1, 3))), Tensor(np.ones(3)), Tensor(np.ones((4, 1)))
    (a * b + c).sum().backward()
    assert a.grad.shape == (2, 1, 3) and b.grad.shape == (3,) and c.grad.shape == (4, 1)
    np.testing.assert_array_equal(b.grad, np.full(3, 8.0))  # used 2*4 times
    np.testing.assert_array_equal(c.grad, np.full((4, 1), 6.0))  # used 2*3 times
    np.testing.assert_array_equal(a.grad, np.full((2, 1, 3), 4.0))


def test_backward_nonscalar_needs_grad_argument():
    a = Tensor(np.ones(3))
    with pytest.raises(ValueError):
        (a * 2.0).backward()
    (a * 2.0).backward(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_array_equal(a.grad, [2.0, 0.0, -2.0])


def test_numpy_on_left_returns_tensor():
    a = Tensor(np.ones(3))
    for out in (np.ones(3) + a, np.ones(3) * a, np.ones(3) - a, np.ones(3) / a, 2.0**a, np.eye(3) @ a):
        assert isinstance(out, Tensor)


def test_stable_losses_do_not_overflow():
    z = Tensor(np.array([-800.0, 800.0, 0.0]))
    loss = engine.binary_cross_entropy_with_logits(z, np.array([1.0, 0.0, 1.0]))
    loss.backward()
    np.testing.assert_allclose(loss.item(), (800 + 800 + np.log(2)) / 3, rtol=1e-14)
    np.testing.assert_allclose(z.grad, np.array([-1.0, 1.0, -0.5]) / 3, rtol=1e-14)
    s = Tensor(np.array([-1000.0, 2.0])).sigmoid()
    assert np.all(np.isfinite(s.data))
    lp = Tensor(np.array([[1000.0, 0.0]])).log_softmax()
    np.testing.assert_allclose(lp.data, [[0.0, -1000.0]])
