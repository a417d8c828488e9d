"""LorentzNet: a Lorentz-group-equivariant graph network for jet tagging.

Gong, Meng, Zhang, Qu, Li, Qian, Du, Ma, Liu, "An efficient Lorentz equivariant graph neural
network for jet tagging", JHEP 07 (2022) 030, arXiv:2201.08187; the layer-by-layer reference is
the authors' code github.com/sdogsq/LorentzNet-release (models.py, top/collate.py).

Every jet is a fully connected graph of its real particles (plus, optionally, two beam
"spurions"). Each Lorentz Group Equivariant Block (LGEB) carries invariant node features h_i
(hidden) and four-vectors x_i:

    m_ij = phi_e(h_i, h_j, psi(|x_i - x_j|^2), psi(<x_i, x_j>))        edge message
    m_ij <- m_ij * sigmoid(W m_ij + b)                                 (phi_m: edge gate)
    x_i' = x_i + c * mean_{j != i} (x_i - x_j) phi_x(m_ij)             equivariant update
    h_i' = h_i + phi_h(h_i, sum_{j != i} m_ij, s_i)                     invariant update

with psi(a) = sgn(a) log(|a| + 1), <.,.> the Minkowski product and s_i the input scalars. The
last block has no x update (phi_x). Readout: mean of h over the real nodes -> Dense -> ReLU ->
Dropout -> Dense. Because only Minkowski products of the x's enter h, the logits are invariant,
and x is equivariant, under every proper orthochronous Lorentz transformation of the inputs.

Inputs (``model(features, mask, vectors)``): ``features`` (B, N, F) per-particle scalars,
``mask`` (B, N) bool (False = padding; padded rows may hold anything, they are zeroed and
excluded from every sum, mean and batch statistic), ``vectors`` (B, N, 4) (E, px, py, pz) GeV.

Scalars, as in the reference top-tagging set-up (top/collate.py): with spurions each node gets
psi([m_i * is_particle, m_i * is_beam]) with m_i = sqrt(|x_i^2|) (2 scalars; the beams are the
vectors (sqrt(1 + beam_mass^2), 0, 0, +-1) prepended as two extra nodes); without spurions
psi(x_i^2) (1 scalar). With ``use_features`` the model's ``features`` are appended (0 for the
beams), e.g. particle ID / charge as in the paper's quark-gluon set-up.

Deliberate differences from the reference code, each needed for exact padding invariance or
exact equivariance: (1) the readout averages over the real nodes (the reference divides by the
padded length); (2) batch-norm statistics skip padded nodes and non-edges (hepjax.nn.BatchNorm
with masks; the reference's node BatchNorm sees padded nodes); (3) no clamp of the x update to
[-100, 100] (a per-component clamp is not equivariant; the reference notes it never activates);
(4) biases start at zero (PyTorch draws them uniformly); the output layer has ``num_outputs``
units (the reference has 2 classes for a binary task).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hepjax.nn import BatchNorm, Dense
from hepjax.nn import initializers as inits
from hepjax.physics import lorentz

__all__ = ["LGEB", "LorentzNet", "build", "default_config"]

# PyTorch's default nn.Linear weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_TORCH_LINEAR = inits.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# The reference's phi_x output layer: xavier_uniform with gain 0.001.
_XAVIER_SMALL = inits.variance_scaling(1e-6, "fan_avg", "uniform")
_BN_MOMENTUM = 0.9  # PyTorch momentum 0.1 in the flax convention


def default_config() -> ml_collections.ConfigDict:
    """The paper's top-tagging configuration (6 LGEBs, 72 hidden, dropout 0.2, beam spurions).

    c_weight: the paper quotes c = 1e-3; the authors' released top-tagging run
    (logs/top/pretrained/args.json, README command) used 5e-3.
    """
    return ml_collections.ConfigDict({
        "name": "lorentznet",
        "hidden": 72,
        "num_layers": 6,
        "c_weight": 1e-3,
        "dropout": 0.2,
        "spurions": True,
        "beam_mass": 1.0,
        "momentum_scale": 1.0,   # vectors are multiplied by this (reference: 1, momenta in GeV)
        "use_features": False,   # append the model's `features` to the mass scalars
        "param_dtype": "float32",
    })


def _safe_sqrt(a):
    ok = a > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, a, 1.0)), 0.0)


def _dense(n_in, n_out, dtype, rngs, init=_TORCH_LINEAR, use_bias=True):
    return Dense(n_in, n_out, kernel_init=init, use_bias=use_bias, param_dtype=dtype, rngs=rngs)


class LGEB(nnx.Module):
    """One Lorentz Group Equivariant Block on dense (B, N, ...) graphs.

    __call__(h (B, N, H), x (B, N, 4), scalars (B, N, S), node_mask (B, N), edge_mask (B, N, N))
    -> (h', x'). Non-edges and padded nodes never contribute; padded outputs are zero.
    """

    def __init__(self, hidden: int, num_scalars: int, *, c_weight: float, last_layer: bool,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        H = hidden
        self.hidden = H
        self.c_weight = c_weight
        self.last_layer = last_layer
        # phi_e: Linear(2H + 2 -> H, no bias) -> BN -> ReLU -> Linear(H -> H) -> ReLU
        self.e_in = _dense(2 * H + 2, H, param_dtype, rngs, use_bias=False)
        self.e_norm = BatchNorm(H, momentum=_BN_MOMENTUM, param_dtype=param_dtype, rngs=rngs)
        self.e_out = _dense(H, H, param_dtype, rngs)
        # phi_m: Linear(H -> 1) -> sigmoid
        self.m_gate = _dense(H, 1, param_dtype, rngs)
        # phi_h: Linear(2H + S -> H) -> BN -> ReLU -> Linear(H -> H)
        self.h_in = _dense(2 * H + num_scalars, H, param_dtype, rngs)
        self.h_norm = BatchNorm(H, momentum=_BN_MOMENTUM, param_dtype=param_dtype, rngs=rngs)
        self.h_out = _dense(H, H, param_dtype, rngs)
        if not last_layer:  # phi_x: Linear(H -> H) -> ReLU -> Linear(H -> 1, no bias, gain 1e-3)
            self.x_hidden = _dense(H, H, param_dtype, rngs)
            self.x_out = _dense(H, 1, param_dtype, rngs, init=_XAVIER_SMALL, use_bias=False)

    def __call__(self, h, x, scalars, node_mask, edge_mask):
        H = self.hidden
        edge_f = edge_mask.astype(h.dtype)[..., None]
        norms = lorentz.psi(lorentz.pairwise_distance2(x))  # (B, N, N)
        dots = lorentz.psi(lorentz.pairwise_dot(x))
        # phi_e's first Linear on concat(h_i, h_j, norm_ij, dot_ij), split by blocks so that the
        # (B, N, N, 2H + 2) concatenation is never formed.
        w = self.e_in.kernel[...]
        m = ((h @ w[:H])[:, :, None, :] + (h @ w[H:2 * H])[:, None, :, :]
             + norms[..., None] * w[2 * H] + dots[..., None] * w[2 * H + 1])
        m = jax.nn.relu(self.e_norm(m, mask=edge_mask))
        m = jax.nn.relu(self.e_out(m))
        m = m * jax.nn.sigmoid(self.m_gate(m))
        m = m * edge_f  # non-edges (diagonal, padding) carry no message

        if not self.last_layer:
            weight = self.x_out(jax.nn.relu(self.x_hidden(m)))  # (B, N, N, 1)
            diff = x[:, :, None, :] - x[:, None, :, :]
            count = jnp.maximum(jnp.sum(edge_f, axis=2), 1.0)  # (B, N, 1)
            x = x + self.c_weight * jnp.sum(diff * weight * edge_f, axis=2) / count

        agg = jnp.sum(m, axis=2)  # (B, N, H)
        u = self.h_in(jnp.concatenate([h, agg, scalars], axis=-1))
        u = self.h_out(jax.nn.relu(self.h_norm(u, mask=node_mask)))
        h = jnp.where(node_mask[..., None], h + u, 0.0)
        x = jnp.where(node_mask[..., None], x, 0.0)
        return h, x


class LorentzNet(nnx.Module):
    """LorentzNet classifier; ``model(features, mask, vectors) -> logits (B, num_outputs)``.

    ``model.embed(features, mask, vectors) -> (h, x, node_mask)`` returns the last block's
    invariant node features h (B, N', H) and equivariant four-vectors x (B, N', 4) (N' = N + 2
    with spurions, which come first), for inspection and equivariance tests.
    """

    def __init__(self, num_features: int, num_outputs: int, *, hidden: int = 72,
                 num_layers: int = 6, c_weight: float = 1e-3, dropout: float = 0.2,
                 spurions: bool = True, beam_mass: float = 1.0, momentum_scale: float = 1.0,
                 use_features: bool = False, param_dtype=jnp.float32, rngs: nnx.Rngs):
        if num_layers < 1:
            raise ValueError(f"LorentzNet: num_layers must be >= 1, got {num_layers}")
        self.num_features = num_features
        self.spurions = spurions
        self.beam_mass = beam_mass
        self.momentum_scale = momentum_scale
        self.use_features = use_features
        self.num_scalars = (2 if spurions else 1) + (num_features if use_features else 0)
        self.embedding = _dense(self.num_scalars, hidden, param_dtype, rngs)
        self.blocks = nnx.List([
            LGEB(hidden, self.num_scalars, c_weight=c_weight, last_layer=(i == num_layers - 1),
                 param_dtype=param_dtype, rngs=rngs) for i in range(num_layers)])
        self.dec_hidden = _dense(hidden, hidden, param_dtype, rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
        self.dec_out = _dense(hidden, num_outputs, param_dtype, rngs)

    def _inputs(self, features, mask, vectors):
        if vectors is None:
            raise ValueError("LorentzNet needs `vectors` (B, N, 4) four-momenta (E, px, py, pz): "
                             "the batch must hold a 'vectors' entry")
        if mask is None:
            mask = jnp.ones(vectors.shape[:2], bool)
        if vectors.ndim != 3 or vectors.shape[-1] != 4 or mask.shape != vectors.shape[:2]:
            raise ValueError(f"LorentzNet: expected vectors (B, N, 4) and mask (B, N), got "
                             f"vectors {tuple(vectors.shape)}, mask {tuple(mask.shape)}")
        if self.use_features and (features.shape[:2] != mask.shape
                                  or features.shape[-1] != self.num_features):
            raise ValueError(f"LorentzNet: expected features (B, N, {self.num_features}) matching "
                             f"mask {tuple(mask.shape)}, got {tuple(features.shape)}")
        dtype = self.embedding.kernel[...].dtype
        mask = jnp.asarray(mask, bool)
        x = jnp.where(mask[..., None], jnp.asarray(vectors, dtype), 0.0) * self.momentum_scale
        B = x.shape[0]
        if self.spurions:
            e = math.sqrt(1.0 + self.beam_mass**2)
            beams = jnp.asarray([[e, 0.0, 0.0, 1.0], [e, 0.0, 0.0, -1.0]], dtype) * self.momentum_scale
            x = jnp.concatenate([jnp.broadcast_to(beams, (B, 2, 4)), x], axis=1)
            mask = jnp.concatenate([jnp.ones((B, 2), bool), mask], axis=1)
            is_beam = jnp.zeros(mask.shape, dtype).at[:, :2].set(1.0)
            m = jnp.where(mask, _safe_sqrt(jnp.abs(lorentz.minkowski_norm2(x))), 0.0)
            scalars = jnp.stack([m * (1.0 - is_beam), m * is_beam], axis=-1)
        else:
            scalars = lorentz.minkowski_norm2(x)[..., None]
        scalars = lorentz.psi(jnp.where(mask[..., None], scalars, 0.0))
        if self.use_features:
            f = jnp.where(mask[..., None] if not self.spurions else mask[:, 2:, None],
                          jnp.asarray(features, dtype), 0.0)
            if self.spurions:
                f = jnp.concatenate([jnp.zeros((B, 2, f.shape[-1]), dtype), f], axis=1)
            scalars = jnp.concatenate([scalars, f], axis=-1)
        return scalars, x, mask

    def embed(self, features, mask=None, vectors=None):
        scalars, x, mask = self._inputs(features, mask, vectors)
        n = mask.shape[1]
        edge_mask = mask[:, :, None] & mask[:, None, :] & ~jnp.eye(n, dtype=bool)
        h = jnp.where(mask[..., None], self.embedding(scalars), 0.0)
        for block in self.blocks:
            h, x = block(h, x, scalars, mask, edge_mask)
        return h, x, mask

    def __call__(self, features, mask=None, vectors=None):
        h, _, mask = self.embed(features, mask, vectors)
        w = mask.astype(h.dtype)[..., None]
        pooled = jnp.sum(h * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
        z = jax.nn.relu(self.dec_hidden(pooled))
        if self.dropout is not None:
            z = self.dropout(z)
        return self.dec_out(z)


def build(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> LorentzNet:
    """LorentzNet from a ConfigDict with the fields of ``default_config()`` (missing fields take
    those defaults); ``input_shape`` = (N, F) of the per-particle features."""
    if len(input_shape) != 2:
        raise ValueError(f"model 'lorentznet' takes per-particle features (N, F), got per-example "
                         f"shape {tuple(input_shape)}")
    c = default_config()
    known = set(c.keys())
    for key in cfg.keys():
        if key not in known:
            raise ValueError(f"lorentznet config: unknown field {key!r}; known: {sorted(known)}")
        with c.ignore_type():
            c[key] = cfg[key]
    return LorentzNet(int(input_shape[1]), num_outputs, hidden=int(c.hidden),
                      num_layers=int(c.num_layers), c_weight=float(c.c_weight),
                      dropout=float(c.dropout), spurions=bool(c.spurions),
                      beam_mass=float(c.beam_mass), momentum_scale=float(c.momentum_scale),
                      use_features=bool(c.use_features), param_dtype=jnp.dtype(c.param_dtype),
                      rngs=rngs)
