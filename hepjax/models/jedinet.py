"""JEDI-net: jet identification with interaction networks (E. Moreno et al., arXiv:1908.05318),
following the authors' PyTorch GraphNet (sum-over-particles variant, "sumO").

For N particles with P features: every ordered pair (receiver r, sender s != r) of real particles
gives E_rs = f_R([x_r, x_s]) (D_E); Ebar_r = sum_s E_rs; O_r = f_O([x_r, Ebar_r]) (D_O);
logits = phi_C(sum_r O_r). f_R, f_O, phi_C: Dense hidden -> ReLU -> Dense hidden/2 -> ReLU ->
Dense out (ReLU on f_R and f_O outputs, linear phi_C output), as in the reference code.

Parameters (biases everywhere, h = hidden, h2 = h // 2, n = num_outputs):
  (2P h + h) + (h h2 + h2) + (h2 D_E + D_E)        f_R
+ ((P + D_E) h + h) + (h h2 + h2) + (h2 D_O + D_O) f_O
+ (D_O h + h) + (h h2 + h2) + (h2 n + n)           phi_C
Defaults hidden=50, D_E=12, D_O=6 with P=16, n=5 (the paper's 16 features, 5 classes): 7,873 (the
formula above, which is the reference code's; the paper's per-N_O optimised sizes are settings).

Initialisation: PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for every
kernel and bias (``init='torch'``), as the authors' PyTorch code has it. The network sums over
N - 1 senders and then N receivers, so He-uniform weights (``init='he'``) give first logits of
O(100) and a first training loss of ~170 on 30-particle jets; the PyTorch scheme keeps it O(1).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hepjax.graphs.blocks import InteractionNetwork, masked_pool
from hepjax.nn import MLP

Array = jax.Array

__all__ = ["JEDINet", "default_config", "build"]


def default_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.name = "jedinet"
    cfg.hidden = 50
    cfg.edge_features = 12   # D_E
    cfg.node_features = 6    # D_O
    cfg.activation = "relu"
    cfg.init = "torch"       # PyTorch's nn.Linear default, as the authors' code; or 'he'
    return cfg


class JEDINet(nnx.Module):
    """``model(features (B, N, P), mask (B, N), vectors=None)`` -> logits (B, num_outputs)."""

    def __init__(self, in_features: int, num_outputs: int, *, hidden: int = 50,
                 edge_features: int = 12, node_features: int = 6, activation: str = "relu",
                 init: str = "torch", rngs: nnx.Rngs):
        h2 = hidden // 2
        self.interaction = InteractionNetwork(in_features, (hidden, h2), edge_features,
                                              (hidden, h2), node_features, activation=activation,
                                              init=init, rngs=rngs)
        self.phi_c = MLP(node_features, (hidden, h2), num_outputs, activation=activation,
                         init=init, rngs=rngs)

    def __call__(self, features: Array, mask: Array, vectors: Array | None = None) -> Array:
        del vectors
        mask = jnp.asarray(mask, bool)
        features = jnp.where(mask[..., None], features, 0.0)
        return self.phi_c(masked_pool(self.interaction(features, mask), mask, "sum"))


def build(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> JEDINet:
    """Registry builder; input_shape = (N, P)."""
    if len(input_shape) != 2:
        raise ValueError(f"jedinet: input_shape must be (N, P) per jet, got {tuple(input_shape)}")
    d = default_config()
    g = lambda n: cfg.get(n, d[n]) if cfg is not None else d[n]  # noqa: E731
    return JEDINet(int(input_shape[1]), int(num_outputs), hidden=int(g("hidden")),
                   edge_features=int(g("edge_features")), node_features=int(g("node_features")),
                   activation=g("activation"), init=g("init"), rngs=rngs)
