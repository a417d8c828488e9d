"""Particle Flow and Energy Flow Networks (P. Komiske, E. Metodiev, J. Thaler, "Energy Flow
Networks: Deep Sets for Particle Jets", arXiv:1810.05165; EnergyFlow's archs/efn.py).

  PFN:  F( sum_i Phi(p_i) )            Phi over the per-particle ``features``
  EFN:  F( sum_i z_i Phi(y_i, phi_i) )  z_i = pT_i / sum_j pT_j, (y_i, phi_i) relative to the jet
                                         axis; IRC safe (linear in z, angles only)

Sizes as in the paper: Phi (100, 100, 256), F (100, 100, 100), ReLU everywhere (Phi's latent
layer included), a linear output layer (EnergyFlow adds a softmax over 2 outputs; we return
logits). No normalisation layers, no dropout (EnergyFlow's defaults).

Initialisation (``init``): the PFN defaults to 'torch', every kernel and bias
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's nn.Linear default
(``hepjax.nn.initializers.torch_uniform``). Its latent is a plain *sum* over up to ~100
particles, so He-uniform weights (init='he', the MLP default) make the latent and the first
logits large: the first logged training loss was ~2.6 on generated top jets. With the PyTorch
scheme it is O(1) (``tests/models/test_pfn.py``). The EFN defaults to 'he': its sum is
weighted by energy fractions z_i that add up to 1, so the latent is an average and stays O(1)
with He's variance, while the PyTorch scheme's smaller weights leave it nearly constant at the
start and slow the first epochs.

Parameter counts with 2 outputs (EnergyFlow's keras model counts the same layers):
  PFN, F input features: 100 F + 82,158   (F = 3 (z, y, phi): 82,458; F = 4 with PID: 82,558)
  EFN (2 angles):        82,358
(Phi: 100 F + 100 + 10,100 + 25,856; F: 25,700 + 10,100 + 10,100; output 202.)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hepjax.graphs.blocks import EnergyFlowLayer, ParticleFlowLayer
from hepjax.nn import MLP
from hepjax.physics import kinematics as kin

Array = jax.Array

__all__ = ["PFN", "EFN", "default_config", "build_pfn", "build_efn", "efn_inputs"]


def default_config(name: str = "pfn") -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.name = name
    cfg.phi_sizes = (100, 100, 256)
    cfg.f_sizes = (100, 100, 100)
    cfg.activation = "relu"
    cfg.dropout = 0.0            # dropout after each F layer
    cfg.angle = "rapidity"       # EFN: 'rapidity' or 'eta' for the longitudinal angle
    cfg.init = "torch" if name == "pfn" else "he"   # 'torch' (PyTorch's Linear) or 'he'; see above
    return cfg


class PFN(nnx.Module):
    """``model(features (B, N, F), mask (B, N), vectors=None)`` -> logits (B, num_outputs)."""

    def __init__(self, in_features: int, num_outputs: int, *, phi_sizes=(100, 100, 256),
                 f_sizes=(100, 100, 100), activation: str = "relu", dropout: float = 0.0,
                 init: str = "torch", rngs: nnx.Rngs):
        self.flow = ParticleFlowLayer(in_features, tuple(phi_sizes), activation=activation,
                                      init=init, rngs=rngs)
        self.f = MLP(phi_sizes[-1], tuple(f_sizes), num_outputs, activation=activation,
                     dropout=dropout, init=init, rngs=rngs)

    def __call__(self, features: Array, mask: Array, vectors: Array | None = None) -> Array:
        del vectors
        mask = jnp.asarray(mask, bool)
        features = jnp.where(mask[..., None], features, 0.0)
        return self.f(self.flow(features, mask))


def efn_inputs(vectors: Array, mask: Array, angle: str = "rapidity") -> tuple[Array, Array]:
    """(angles (B, N, 2), z (B, N)) from four-momenta (B, N, 4) (E, px, py, pz) in GeV.

    z_i = pT_i / sum of real pT; angles = (y_i - y_J, wrapped phi_i - phi_J) with the jet axis J the
    sum of the real four-momenta. Padded particles get z = 0 and angles 0.
    """
    mask = jnp.asarray(mask, bool)
    vectors = jnp.where(mask[..., None], vectors, 0.0)
    long = {"rapidity": kin.rapidity, "eta": kin.eta}
    if angle not in long:
        raise ValueError(f"EFN: angle={angle!r}; valid: 'rapidity', 'eta'")
    jet = kin.jet_momentum(vectors, mask)[..., None, :]
    pt = kin.pt(vectors)
    z = pt / jnp.maximum(jnp.sum(pt, axis=-1, keepdims=True), 1e-12)
    dy = long[angle](vectors) - long[angle](jet)
    dphi = kin.delta_phi(kin.phi(vectors), kin.phi(jet))
    angles = jnp.where(mask[..., None], jnp.stack([dy, dphi], axis=-1), 0.0)
    return angles, jnp.where(mask, z, 0.0)


class EFN(nnx.Module):
    """``model(features, mask (B, N), vectors (B, N, 4))`` -> logits; uses only ``vectors``."""

    def __init__(self, num_outputs: int, *, phi_sizes=(100, 100, 256), f_sizes=(100, 100, 100),
                 activation: str = "relu", dropout: float = 0.0, angle: str = "rapidity",
                 init: str = "he", rngs: nnx.Rngs):
        self.angle = angle
        self.flow = EnergyFlowLayer(2, tuple(phi_sizes), activation=activation, init=init,
                                    rngs=rngs)
        self.f = MLP(phi_sizes[-1], tuple(f_sizes), num_outputs, activation=activation,
                     dropout=dropout, init=init, rngs=rngs)

    def __call__(self, features: Array, mask: Array, vectors: Array | None = None) -> Array:
        del features
        if vectors is None:
            raise ValueError("EFN needs `vectors` (B, N, 4) four-momenta (E, px, py, pz) in GeV: "
                             "give the batch a 'vectors' entry")
        angles, z = efn_inputs(vectors, mask, self.angle)
        return self.f(self.flow(angles, z, mask))


def _get(cfg, name, default):
    d = default_config(default)
    return cfg.get(name, d[name]) if cfg is not None else d[name]


def build_pfn(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> PFN:
    """Registry builder for 'pfn'; input_shape = (N, F)."""
    if len(input_shape) != 2:
        raise ValueError(f"pfn: input_shape must be (N, F) per jet, got {tuple(input_shape)}")
    g = lambda n: _get(cfg, n, "pfn")  # noqa: E731
    return PFN(int(input_shape[1]), int(num_outputs), phi_sizes=tuple(g("phi_sizes")),
               f_sizes=tuple(g("f_sizes")), activation=g("activation"),
               dropout=float(g("dropout")), init=g("init"), rngs=rngs)


def build_efn(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> EFN:
    """Registry builder for 'efn'; input_shape = (N, F) (features unused; needs vectors)."""
    if len(input_shape) != 2:
        raise ValueError(f"efn: input_shape must be (N, F) per jet, got {tuple(input_shape)}")
    g = lambda n: _get(cfg, n, "efn")  # noqa: E731
    return EFN(int(num_outputs), phi_sizes=tuple(g("phi_sizes")), f_sizes=tuple(g("f_sizes")),
               activation=g("activation"), dropout=float(g("dropout")), angle=g("angle"),
               init=g("init"), rngs=rngs)


build = build_pfn
