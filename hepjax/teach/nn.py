"""Layers and a multi-layer perceptron on the teaching engine, with the standard initialisations.

Dense layer (Kieseler, eq. (1)): ``h = F(x W + b)``, with x (N, n_in), W (n_in, n_out), b (n_out,).

Initialisation (Butter, "Network initialization"): a pre-activation ``z = sum_i w_i x_i`` of
n_in unit-variance inputs has variance ``n_in <w^2>``. To keep activations O(1) through many
layers the weights must be scaled:
  * naive      w ~ N(0, 1):                     variance grows by n_in per layer (explodes);
  * Glorot     w ~ N(0, 2 / (n_in + n_out)):    keeps variance for ~linear activations (tanh);
  * He         w ~ N(0, 2 / n_in):              the extra 2 compensates ReLU zeroing half the
                                                inputs, so variance is preserved for ReLU / ELU.
The random generator is always passed in (``np.random.Generator``); nothing here is global.

References: Kieseler = J. Kieseler, "Machine learning", European School of High-Energy
Physics 2023, CERN Yellow Reports: School Proceedings CERN-2025-009, p. 189,
doi:10.23730/CYRSP-2025-009.189;
Butter = A. Butter (LPNHE/ITP), "Moving beyond dense networks", IDPASC school 2025 lectures;
Glorot = X. Glorot, Y. Bengio, AISTATS 2010; He = K. He et al., arXiv:1502.01852.
"""
from __future__ import annotations

import numpy as np

from .engine import Tensor, as_tensor

__all__ = ["init_weights", "Module", "Linear", "MLP", "ACTIVATIONS", "DEFAULT_INIT"]

ACTIVATIONS = {
    "tanh": lambda t: t.tanh(),
    "sigmoid": lambda t: t.sigmoid(),
    "relu": lambda t: t.relu(),
    "elu": lambda t: t.elu(),
    "linear": lambda t: t,
}
# The initialisation each activation pairs with (Kieseler §1.1: Glorot-tanh, He-ReLU/ELU).
DEFAULT_INIT = {"tanh": "glorot", "sigmoid": "glorot", "linear": "glorot", "relu": "he", "elu": "he"}


def init_weights(rng, n_in, n_out, scheme="he"):
    """Draw an (n_in, n_out) weight matrix. scheme: 'normal' (N(0,1)), 'glorot', 'he', 'lecun'."""
    std = {
        "normal": 1.0,
        "glorot": np.sqrt(2.0 / (n_in + n_out)),
        "he": np.sqrt(2.0 / n_in),
        "lecun": np.sqrt(1.0 / n_in),  # Kieseler's "scaled by 1/sqrt(N)"
    }[scheme]
    return rng.normal(0.0, std, size=(n_in, n_out))


class Module:
    """Something with parameters. Subclasses implement ``__call__`` and ``parameters``."""

    def parameters(self):
        """List of the trainable Tensors (the optimiser updates their ``.data`` in place)."""
        return []

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()


class Linear(Module):
    """Affine map x (N, n_in) -> x @ W + b (N, n_out). W drawn with ``init``; b starts at zero."""

    def __init__(self, n_in, n_out, rng, init="he"):
        self.W = Tensor(init_weights(rng, n_in, n_out, init))
        self.b = Tensor(np.zeros(n_out))

    def __call__(self, x):
        return as_tensor(x) @ self.W + self.b

    def parameters(self):
        return [self.W, self.b]


class MLP(Module):
    """Stack of Linear layers with an activation between them (none after the last: logits).

    sizes: e.g. (2, 16, 16, 1) for 2 inputs, two hidden layers of 16, one output.
    activation: a key of ACTIVATIONS. init: weight scheme, by default the one paired with the
    activation (He for ReLU/ELU, Glorot for tanh/sigmoid).
    """

    def __init__(self, sizes, rng, activation="relu", init=None):
        init = init or DEFAULT_INIT[activation]
        self.activation = activation
        self.layers = [Linear(a, b, rng, init) for a, b in zip(sizes[:-1], sizes[1:])]

    def __call__(self, x, return_hidden=False):
        """x: (N, sizes[0]) -> logits (N, sizes[-1]); with return_hidden, also each hidden h."""
        act, hidden = ACTIVATIONS[self.activation], []
        h = as_tensor(x)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = act(h)
                hidden.append(h)
        return (h, hidden) if return_hidden else h

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]
