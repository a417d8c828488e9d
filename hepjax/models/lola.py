"""LoLa: the combination layer (CoLa) and the Lorentz layer (LoLa) for top tagging.

Butter, Kasieczka, Plehn, Russell, "Deep-learned top tagging with a Lorentz layer",
SciPost Phys. 5, 028 (2018), arXiv:1707.08966.

CoLa: the N (pT-ordered) constituent four-vectors k_i are combined linearly,
    k~_j = sum_i k_i C_ij,   C = (1_N | C_trainable) of shape (N, N + M),
i.e. the constituents themselves plus M trainable combinations (one per column of C).
LoLa: every k~_j is mapped to physics features
    k^_j = ( m^2(k~_j), pT(k~_j), sum_m w^E_jm E(k~_m) [one per energy head],
             sum_m w^d_jm d^2_jm [one per distance head] ),
with d^2_jm = (k~_j - k~_m)_mu g^{mu nu} (k~_j - k~_m)_nu the Minkowski distance squared, and
trainable weights w of shape (N + M, N + M) per head. The flattened k^ feeds a fully connected
classifier (the paper: 100 -> 50 -> outputs, ReLU).

The weights are index dependent (no graph structure), so the order of the particles matters:
this model sorts the real particles by decreasing pT itself, which makes it permutation
invariant (up to exact pT ties). Padded particles (``mask`` False; their rows may hold anything)
are zeroed and sorted last, so they add nothing to any combination. The input length N is part
of the model (C has N rows). The features (m^2, pT, E, d^2) are invariant under rotations about
the beam axis but not under boosts: LoLa is not a Lorentz-invariant network.

Inputs (``model(features, mask, vectors)``): ``features`` (B, N, F) are not used (LoLa sees only
four-momenta); ``mask`` (B, N) bool; ``vectors`` (B, N, 4) (E, px, py, pz) in GeV, multiplied by
``momentum_scale`` (default 0.01, i.e. units of 100 GeV: our choice, for conditioning).
"""
from __future__ import annotations

import jax.numpy as jnp
import ml_collections
from flax import nnx

from hepjax.nn import MLP
from hepjax.nn import initializers as inits
from hepjax.physics import kinematics, lorentz

__all__ = ["CoLa", "LoLa", "LoLaNet", "sort_by_pt", "build", "default_config"]


def default_config() -> ml_collections.ConfigDict:
    """The paper's top-tagging set-up: 15 combinations, a 100-50 classifier."""
    return ml_collections.ConfigDict({
        "name": "lola",
        "num_combinations": 15,      # M trainable CoLa columns
        "num_energy_heads": 1,       # weighted-energy features per k~_j
        "num_distance_heads": 1,     # weighted Minkowski-distance features per k~_j
        "hidden": (100, 50),
        "activation": "relu",
        "dropout": 0.0,
        "momentum_scale": 0.01,
        "param_dtype": "float32",
    })


def sort_by_pt(vectors, mask):
    """Real particles by decreasing pT, padding (zeroed) last: ((B, N, 4), (B, N))."""
    vectors = jnp.where(mask[..., None], vectors, 0.0)
    key = jnp.where(mask, -kinematics.pt(vectors), jnp.inf)
    order = jnp.argsort(key, axis=-1, stable=True)
    return (jnp.take_along_axis(vectors, order[..., None], axis=1),
            jnp.take_along_axis(mask, order, axis=1))


class CoLa(nnx.Module):
    """(B, N, 4) -> (B, N + M, 4): the inputs followed by M trainable linear combinations."""

    def __init__(self, num_particles: int, num_combinations: int, *, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.num_particles = num_particles
        init = inits.variance_scaling(1.0, "fan_in", "uniform")
        self.weights = nnx.Param(init(rngs.params(), (num_particles, num_combinations), param_dtype))

    def __call__(self, k):
        if k.shape[-2] != self.num_particles:
            raise ValueError(f"CoLa: built for N = {self.num_particles} particles, got vectors of "
                             f"shape {tuple(k.shape)}")
        combined = jnp.einsum("bnc,nm->bmc", k, self.weights[...])
        return jnp.concatenate([k, combined], axis=-2)


class LoLa(nnx.Module):
    """(B, K, 4) -> (B, K, 2 + num_energy_heads + num_distance_heads) physics features
    (m^2, pT, weighted energies, weighted Minkowski distances squared)."""

    def __init__(self, num_vectors: int, num_energy_heads: int = 1, num_distance_heads: int = 1, *,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        init = inits.variance_scaling(1.0, "fan_in", "uniform")
        k = num_vectors
        self.w_energy = nnx.Param(init(rngs.params(), (num_energy_heads, k, k), param_dtype))
        self.w_distance = nnx.Param(init(rngs.params(), (num_distance_heads, k, k), param_dtype))

    def __call__(self, k):
        m2 = lorentz.minkowski_norm2(k)
        pt = kinematics.pt(k)
        energy = jnp.einsum("hjm,bm->bjh", self.w_energy[...], k[..., 0])
        d2 = lorentz.pairwise_distance2(k)  # (B, K, K)
        distance = jnp.einsum("hjm,bjm->bjh", self.w_distance[...], d2)
        return jnp.concatenate([m2[..., None], pt[..., None], energy, distance], axis=-1)


class LoLaNet(nnx.Module):
    """sort by pT -> CoLa -> LoLa -> flatten -> MLP; ``model(features, mask, vectors)`` -> logits."""

    def __init__(self, num_particles: int, num_outputs: int, *, num_combinations: int = 15,
                 num_energy_heads: int = 1, num_distance_heads: int = 1,
                 hidden=(100, 50), activation: str = "relu", dropout: float = 0.0,
                 momentum_scale: float = 0.01, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.num_particles = num_particles
        self.momentum_scale = momentum_scale
        k = num_particles + num_combinations
        self.cola = CoLa(num_particles, num_combinations, param_dtype=param_dtype, rngs=rngs)
        self.lola = LoLa(k, num_energy_heads, num_distance_heads, param_dtype=param_dtype,
                         rngs=rngs)
        self.classifier = MLP(k * (2 + num_energy_heads + num_distance_heads), tuple(hidden),
                              num_outputs, activation=activation, dropout=dropout, rngs=rngs)

    def lola_features(self, mask, vectors):
        """(B, N + M, 2 + heads) LoLa features of the pT-sorted, scaled jets."""
        if vectors is None:
            raise ValueError("LoLa needs `vectors` (B, N, 4): the batch must hold a 'vectors' entry")
        if mask is None:
            mask = jnp.ones(vectors.shape[:2], bool)
        if vectors.ndim != 3 or vectors.shape[1:] != (self.num_particles, 4):
            raise ValueError(f"LoLa: built for vectors (B, {self.num_particles}, 4), got "
                             f"{tuple(vectors.shape)}")
        dtype = self.cola.weights[...].dtype
        k, _ = sort_by_pt(jnp.asarray(vectors, dtype) * self.momentum_scale, jnp.asarray(mask, bool))
        return self.lola(self.cola(k))

    def __call__(self, features, mask=None, vectors=None):
        del features  # LoLa uses only the four-momenta
        feats = self.lola_features(mask, vectors)
        return self.classifier(feats.reshape(feats.shape[0], -1))


def build(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> LoLaNet:
    """LoLaNet from a ConfigDict with the fields of ``default_config()`` (missing fields take those
    defaults); ``input_shape`` = (N, F): N fixes the CoLa matrix."""
    if len(input_shape) != 2:
        raise ValueError(f"model 'lola' takes per-particle inputs (N, F), got per-example shape "
                         f"{tuple(input_shape)}")
    c = default_config()
    for key in cfg.keys():
        if key not in c:
            raise ValueError(f"lola config: unknown field {key!r}; known: {sorted(c.keys())}")
        with c.ignore_type():
            c[key] = cfg[key]
    return LoLaNet(int(input_shape[0]), num_outputs, num_combinations=int(c.num_combinations),
                   num_energy_heads=int(c.num_energy_heads),
                   num_distance_heads=int(c.num_distance_heads), hidden=tuple(c.hidden),
                   activation=c.activation, dropout=float(c.dropout),
                   momentum_scale=float(c.momentum_scale), param_dtype=jnp.dtype(c.param_dtype),
                   rngs=rngs)
