"""Recurrent layers: simple RNN, LSTM and GRU cells run with lax.scan, with masks for
variable-length sequences and a bidirectional option. The RNN and GRU equations are written as
in A. Sznajder (UERJ), "ML em HEP II", Escola INCT 2024 lectures (slides "Recurrent Neural
Networks" and "Gated Recurrent Network (GRU)"); LSTM: Hochreiter, Schmidhuber, Neural Comput. 9
(1997) 1735.

Shapes: sequences x (B, T, F), masks (B, T) bool (True = real step). A masked step leaves the
carry unchanged and outputs zeros, so padding anywhere (usually at the end) is skipped exactly;
in reverse mode the scan starts from the last real step.

Cell equations (x_t input, h_{t-1} previous hidden state, sigma the logistic function):
  RNN : h_t = tanh(x_t W_x + h_{t-1} W_h + b)
  LSTM: [i, f, g, o] = x_t W_x + h_{t-1} W_h + b
        c_t = sigma(f) * c_{t-1} + sigma(i) * tanh(g),   h_t = sigma(o) * tanh(c_t)
  GRU : z_t = sigma(W_z [h_{t-1}, x_t]),  r_t = sigma(W_r [h_{t-1}, x_t])
        h~_t = tanh(W [r_t * h_{t-1}, x_t]),  h_t = (1 - z_t) * h_{t-1} + z_t * h~_t
        (with biases; Sznajder's update convention. Cho et al., arXiv:1406.1078, Keras and
        PyTorch write the gate the other way round, h_t = z_t * h_{t-1} + (1 - z_t) * h~_t:
        the same cell with z <-> 1 - z. The reset gate acts before the recurrent matmul, as in
        Sznajder's slides, Cho et al. and Keras' reset_after=False; PyTorch's GRU applies it
        after.)
Input projections of all time steps are one matmul outside the scan; only h W_h runs inside.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax.nn import initializers as inits
from hepjax.nn.activations import get_activation

Array = jax.Array

__all__ = ["SimpleRNNCell", "LSTMCell", "GRUCell", "RNN", "Bidirectional"]


def _orthogonal_blocks(parts: int):
    """(H, parts * H) recurrent kernel made of `parts` orthogonal (H, H) blocks."""
    def init(key, shape, dtype=jnp.float32):
        n, m = shape
        keys = jax.random.split(key, parts)
        return jnp.concatenate([jax.nn.initializers.orthogonal()(k, (n, m // parts), dtype)
                                for k in keys], axis=-1)
    return init


class _Cell(nnx.Module):
    """Common parameters: input kernel (F, G H), recurrent kernel (H, G H), bias (G H)."""

    gates = 1

    def __init__(self, in_features: int, hidden: int, *, rngs: nnx.Rngs):
        g = self.gates
        self.in_features, self.hidden = in_features, hidden
        self.input_kernel = nnx.Param(inits.glorot_uniform(rngs.params(), (in_features, g * hidden)))
        self.recurrent_kernel = nnx.Param(_orthogonal_blocks(g)(rngs.params(), (hidden, g * hidden)))
        self.bias = nnx.Param(jnp.zeros((g * hidden,)))

    def project_inputs(self, x: Array) -> Array:
        """x (..., F) -> x W_x + b (..., G H)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: expected input features "
                             f"{self.in_features}, got x of shape {tuple(x.shape)}")
        return x @ self.input_kernel[...] + self.bias[...]

    def __call__(self, carry, x: Array):
        """One step on raw inputs x (B, F): (carry, output)."""
        return self.step(carry, self.project_inputs(x))


class SimpleRNNCell(_Cell):
    """h_t = activation(x_t W_x + h_{t-1} W_h + b); carry h (B, H)."""

    gates = 1

    def __init__(self, in_features: int, hidden: int, *, activation: str | Callable = "tanh",
                 rngs: nnx.Rngs):
        super().__init__(in_features, hidden, rngs=rngs)
        self.activation = get_activation(activation)

    def initial_carry(self, batch: int):
        return jnp.zeros((batch, self.hidden))

    def step(self, h, xp):
        h = self.activation(xp + h @ self.recurrent_kernel[...])
        return h, h

    @staticmethod
    def hidden_of(carry):
        return carry


class LSTMCell(_Cell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997); carry (c, h), each (B, H).
    Gate order in the kernels: input, forget, cell candidate, output. The forget-gate bias
    starts at `forget_bias` (1, as Keras' unit_forget_bias, Jozefowicz et al. 2015)."""

    gates = 4

    def __init__(self, in_features: int, hidden: int, *, forget_bias: float = 1.0,
                 rngs: nnx.Rngs):
        super().__init__(in_features, hidden, rngs=rngs)
        self.bias[...] = self.bias[...].at[hidden:2 * hidden].set(forget_bias)

    def initial_carry(self, batch: int):
        return jnp.zeros((batch, self.hidden)), jnp.zeros((batch, self.hidden))

    def step(self, carry, xp):
        c, h = carry
        i, f, g, o = jnp.split(xp + h @ self.recurrent_kernel[...], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    @staticmethod
    def hidden_of(carry):
        return carry[1]


class GRUCell(_Cell):
    """Gated recurrent unit (Cho et al., arXiv:1406.1078) in the form of Sznajder's slides (see
    the module docstring); carry h (B, H).
    Gate order in the kernels: update z, reset r, candidate."""

    gates = 3

    def initial_carry(self, batch: int):
        return jnp.zeros((batch, self.hidden))

    def step(self, h, xp):
        hid = self.hidden
        w = self.recurrent_kernel[...]
        xz, xr, xh = jnp.split(xp, 3, axis=-1)
        zr = h @ w[:, :2 * hid]
        z = jax.nn.sigmoid(xz + zr[:, :hid])
        r = jax.nn.sigmoid(xr + zr[:, hid:])
        cand = jnp.tanh(xh + (r * h) @ w[:, 2 * hid:])
        h = (1.0 - z) * h + z * cand
        return h, h

    @staticmethod
    def hidden_of(carry):
        return carry


class RNN(nnx.Module):
    """Runs a cell over a sequence with lax.scan.

    Call: rnn(x (B, T, F), mask=None (B, T) bool) -> (outputs (B, T, H), final hidden (B, H)).
    Masked steps keep the carry and output zeros; final hidden is the state after the last real
    step (in scan order). reverse=True scans from T-1 down to 0.
    """

    def __init__(self, cell: _Cell, *, reverse: bool = False):
        self.cell = cell
        self.reverse = reverse

    def __call__(self, x: Array, mask: Array | None = None):
        b, t, _ = x.shape
        if mask is not None and tuple(mask.shape) != (b, t):
            raise ValueError(f"RNN: mask must have shape (B, T) = {(b, t)}, got "
                             f"{tuple(mask.shape)}")
        xp = self.cell.project_inputs(x)  # (B, T, G H): one matmul for all steps
        m = jnp.ones((b, t), bool) if mask is None else jnp.asarray(mask, bool)
        cell = self.cell

        def body(carry, inputs):
            xp_t, m_t = inputs
            new_carry, out = cell.step(carry, xp_t)
            new_carry = jax.tree.map(lambda n, o: jnp.where(m_t[:, None], n, o), new_carry, carry)
            return new_carry, jnp.where(m_t[:, None], out, 0.0)

        carry, outs = jax.lax.scan(body, cell.initial_carry(b),
                                   (jnp.swapaxes(xp, 0, 1), jnp.swapaxes(m, 0, 1)),
                                   reverse=self.reverse)
        return jnp.swapaxes(outs, 0, 1), cell.hidden_of(carry)


class Bidirectional(nnx.Module):
    """A forward and a backward RNN over the same sequence; outputs concatenated:
    (outputs (B, T, H_f + H_b), final hidden (B, H_f + H_b))."""

    def __init__(self, forward_cell: _Cell, backward_cell: _Cell):
        self.forward = RNN(forward_cell)
        self.backward = RNN(backward_cell, reverse=True)

    def __call__(self, x: Array, mask: Array | None = None):
        of, hf = self.forward(x, mask)
        ob, hb = self.backward(x, mask)
        return jnp.concatenate([of, ob], -1), jnp.concatenate([hf, hb], -1)
