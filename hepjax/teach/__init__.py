"""From-scratch automatic differentiation for teaching: what ``jax.grad`` and optax do, in numpy.

Read in this order:
  engine.py    -- ``Tensor``: reverse-mode autodiff; every operation with its derivative beside it.
  nn.py        -- ``Linear``, ``MLP`` with naive / Glorot / He initialisation.
  optim.py     -- SGD, momentum (two conventions), Adam, the perceptron rule, learning-rate decay,
                  each with its exact optax equivalent.
  tutorial.py  -- ``python -m hepjax.teach.tutorial``: eq. 18 by hand and by backprop, gradient
                  checks, training on toy data, optimiser comparison, vanishing gradients,
                  initialisation.

This package imports numpy (and matplotlib, in the tutorial) only -- never JAX -- so that every
line of the machinery is on the page. The tests check it against ``jax.grad`` and optax.
"""
from . import nn, optim
from .engine import (
    Tensor,
    as_tensor,
    binary_cross_entropy_with_logits,
    categorical_cross_entropy_with_logits,
    concatenate,
    mse,
)
from .nn import MLP, Linear

__all__ = [
    "Tensor",
    "as_tensor",
    "concatenate",
    "mse",
    "binary_cross_entropy_with_logits",
    "categorical_cross_entropy_with_logits",
    "Linear",
    "MLP",
    "nn",
    "optim",
]
