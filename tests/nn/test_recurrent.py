"""RNN / LSTM / GRU against step-by-step numpy references; masks, reverse, bidirectional."""
import jax
import numpy as np
import pytest
from flax import nnx

from hepjax.nn import recurrent as rec


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _params(cell):
    return (np.asarray(cell.input_kernel[...], np.float64),
            np.asarray(cell.recurrent_kernel[...], np.float64),
            np.asarray(cell.bias[...], np.float64))


def _np_run(kind, cell, x, mask, reverse=False):
    wx, wh, b = _params(cell)
    bsz, t, _ = x.shape
    hid = cell.hidden
    h = np.zeros((bsz, hid))
    c = np.zeros((bsz, hid))
    outs = np.zeros((bsz, t, hid))
    order = range(t - 1, -1, -1) if reverse else range(t)
    for s in order:
        for i in range(bsz):
            if not mask[i, s]:
                continue
            xs = x[i, s]
            if kind == "rnn":
                h[i] = np.tanh(xs @ wx + h[i] @ wh + b)
            elif kind == "lstm":
                gates = xs @ wx + h[i] @ wh + b
                ig, fg, gg, og = np.split(gates, 4)
                c[i] = _sig(fg) * c[i] + _sig(ig) * np.tanh(gg)
                h[i] = _sig(og) * np.tanh(c[i])
            else:  # gru (Sznajder): z = s(W_z[h, x]), r = s(W_r[h, x]), h~ = tanh(W[r*h, x])
                wz, wr, wc = np.split(wx, 3, axis=1)
                uz, ur, uc = np.split(wh, 3, axis=1)
                bz, br, bc = np.split(b, 3)
                z = _sig(xs @ wz + h[i] @ uz + bz)
                r = _sig(xs @ wr + h[i] @ ur + br)
                cand = np.tanh(xs @ wc + (r * h[i]) @ uc + bc)
                h[i] = (1 - z) * h[i] + z * cand
            outs[i, s] = h[i]
    return outs, h


CELLS = {"rnn": rec.SimpleRNNCell, "lstm": rec.LSTMCell, "gru": rec.GRUCell}


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_cells_match_numpy_step_by_step(kind, reverse):
    cell = CELLS[kind](3, 5, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    # non-zero biases so that every bias entry is tested
    cell.bias[...] = rng.normal(size=cell.bias.shape).astype(np.float32)
    x = rng.normal(size=(3, 6, 3)).astype(np.float32)
    mask = np.ones((3, 6), bool)
    mask[1, 4:] = False  # padded at the end
    mask[2, 0] = False  # and one hole
    rnn = rec.RNN(cell, reverse=reverse)
    outs, last = nnx.jit(lambda m, x, k: m(x, k))(rnn, x, mask)
    ref_outs, ref_last = _np_run(kind, cell, x.astype(np.float64), mask, reverse)
    np.testing.assert_allclose(np.asarray(outs), ref_outs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(last), ref_last, rtol=1e-4, atol=1e-5)


def test_padding_is_skipped_exactly_and_bidirectional():
    bi = rec.Bidirectional(rec.LSTMCell(2, 4, rngs=nnx.Rngs(0)), rec.GRUCell(2, 3, rngs=nnx.Rngs(1)))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 2)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    call = nnx.jit(lambda m, x, k: m(x, k))
    outs, last = call(bi, x, mask)
    assert outs.shape == (2, 5, 7) and last.shape == (2, 7)
    # the first jet equals the same jet truncated to its 3 real steps
    outs3, last3 = call(bi, x[:1, :3], mask[:1, :3])
    np.testing.assert_allclose(np.asarray(outs)[0, :3], np.asarray(outs3)[0], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(last)[0], np.asarray(last3)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(outs)[0, 3:], 0.0)
    # backward half: the output at step 0 has seen the whole (real) sequence
    ref_b, _ = _np_run("gru", bi.backward.cell, x.astype(np.float64), mask, reverse=True)
    np.testing.assert_allclose(np.asarray(outs)[..., 4:], ref_b, rtol=1e-4, atol=1e-5)


def test_gradients_flow_through_time():
    cell = rec.LSTMCell(2, 3, rngs=nnx.Rngs(0))
    rnn = rec.RNN(cell)
    x = np.random.default_rng(0).normal(size=(1, 8, 2)).astype(np.float32)
    g = jax.grad(lambda x: rnn(x)[1].sum())(x)
    assert np.all(np.isfinite(np.asarray(g))) and np.abs(np.asarray(g)[0, 0]).sum() > 0


def test_errors_name_the_shape():
    rnn = rec.RNN(rec.GRUCell(2, 3, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="mask"):
        rnn(np.zeros((1, 4, 2)), np.ones((1, 5), bool))
    with pytest.raises(ValueError, match="input features"):
        rnn(np.zeros((1, 4, 3)))
