"""A GravNet network for object condensation on calorimeter hits (one output row per hit).

References: S. R. Qasim, J. Kieseler, Y. Iiyama, M. Pierini, "Learning representations of
irregular particle-detector geometry with distance-weighted graph networks", EPJC 79 (2019) 608,
arXiv:1902.07987 (GravNet: learned low-dimensional coordinates S, kNN in S, messages weighted by
a potential of the distance, mean and max aggregation, several blocks whose outputs are
concatenated); J. Kieseler, "Object condensation", EPJC 80 (2020) 886, arXiv:2002.03605 (the
per-hit outputs: condensation confidence beta, clustering coordinates and the payload; its
calorimeter example uses GravNet blocks with the potential exp(-10 d^2)).

Inputs: ``features`` (B, N, F) per hit (``hit_features`` builds the standard ones from a padded
event batch: x, y, z, layer, cell size, log energy, energy), ``mask`` (B, N) bool, and optionally
``hit_xy`` (B, N, 2) [cm], the hit positions the position head predicts offsets from.

Network (``num_blocks`` blocks, as in the GravNet paper's model):

    x0 = BatchNorm(features)                                  (mask-aware, real hits only)
    per block:  x = [x, mean over the event's real hits of x]  (the paper's global exchange)
                x = Dense(dense_width) x 3, ELU
                x = GravNetConv(x): s = Dense(S)(x), f = Dense(F_LR)(x); kNN in s (self
                    included); messages exp(-distance_scale |s_i - s_j|^2) f_j; mean and max
                    over the k neighbours; Dense(F_out)([x, mean, max]), tanh
                x = BatchNorm(x)                               (mask-aware)
    h = Dense(head_width) x 2 (ELU) of [x0, block outputs...]
    beta = sigmoid(Dense(1)(h)); coords = Dense(D)(h) [+ (hit x, y) / cluster_xy_scale on the
        first two coordinates if cluster_xy_scale > 0: a physical prior, see below];
    energy_correction = exp(clip(Dense(1)(h), -3, 3));
    position = hit_xy + position_scale * Dense(2)(h);  type_logits = Dense(C)(h)

Padding never influences real hits: padded inputs are zeroed, the event means and the batch
normalisation statistics use real hits only, padded hits are never neighbours; every output is 0
at padded hits. So appending padding leaves every real hit's outputs unchanged (tested), as long
as with ``bin_size`` the padded length stays a multiple of it.

``cluster_xy_scale`` (cm, 0 = off): the clustering coordinates become a learned offset from the
hit's transverse position in units of ``cluster_xy_scale``, so that showers further apart than
that start out separated by more than the object-condensation repulsion radius (1) and the
network only has to learn to contract each shower onto its axis (an inductive bias for
resolving nearby showers; with 2 cm ~ 2 Moliere radii in the CE-E of ``hepjax.sim``).

``bin_size``: kNN inside locality-sensitive-hashing bins of that many hits
(``hepjax.graphs.build.knn_in_bins``), O(N * bin_size) instead of O(N^2); for events of 10^4-10^5
hits. N must then be a multiple of ``bin_size`` (``pad_to_multiple``). The same trained
parameters run with either kNN (``with_bins`` copies a model with another ``bin_size``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from hepjax.graphs.blocks import GravNetConv, masked_pool
from hepjax.nn import MLP, BatchNorm, Dense
from hepjax.nn import initializers as inits

Array = jax.Array

__all__ = ["CondensationNet", "default_config", "build", "hit_features", "NUM_HIT_FEATURES",
           "with_bins", "pad_to_multiple", "PARTICLE_TYPES", "particle_type"]

# particle classes of the type head: pdg ids (either sign) -> class index
PARTICLE_TYPES = ("electron", "photon", "charged_pion")
_TYPE_OF_PDG = {11: 0, 22: 1, 211: 2}
NUM_HIT_FEATURES = 7


def particle_type(pdg) -> np.ndarray:
    """Class index (``PARTICLE_TYPES``) of pdg ids; -1 for anything else."""
    a = np.abs(np.asarray(pdg, np.int64))
    out = np.full(a.shape, -1, np.int64)
    for p, c in _TYPE_OF_PDG.items():
        out[a == p] = c
    return out


def hit_features(position, layer, energy, mask, cell_size=None) -> np.ndarray:
    """Standard per-hit inputs (numpy, (..., N) hits -> (..., N, 7) float32, 0 at padding):
    x / 10 cm, y / 10 cm, z / 50 cm, layer / 20, cell size / 4 cm, ln(E / 10 MeV) / 3 (E in GeV,
    clipped at 1 MeV), E / 10 GeV. ``cell_size`` (..., N) [cm] defaults to 1 cm for the first 28
    layers and 4 cm behind (the default geometry)."""
    position = np.asarray(position, np.float32)
    layer = np.asarray(layer, np.float32)
    energy = np.asarray(energy, np.float32)
    mask = np.asarray(mask, bool)
    if cell_size is None:
        cell_size = np.where(layer < 28, 1.0, 4.0)
    feats = np.stack([position[..., 0] / 10.0, position[..., 1] / 10.0, position[..., 2] / 50.0,
                      layer / 20.0, np.asarray(cell_size, np.float32) / 4.0,
                      np.log(np.maximum(energy, 1e-3) / 0.01) / 3.0, energy / 10.0], -1)
    return np.where(mask[..., None], feats, 0.0).astype(np.float32)


def pad_to_multiple(arrays: dict, multiple: int, axis: int = 1) -> dict:
    """Pads every array of ``arrays`` along ``axis`` (the hit axis) with zeros / False to the
    next multiple of ``multiple`` (for ``bin_size``)."""
    out = {}
    for k, v in arrays.items():
        v = np.asarray(v)
        n = v.shape[axis]
        extra = (-n) % multiple
        if extra:
            pad = [(0, 0)] * v.ndim
            pad[axis] = (0, extra)
            v = np.pad(v, pad)
        out[k] = v
    return out


def default_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.name = "condensation_net"
    cfg.num_blocks = 4
    cfg.dense_width = 64
    cfg.space_dims = 4
    cfg.propagate_dims = 22
    cfg.out_dims = 48
    cfg.k = 16
    cfg.distance_scale = 10.0
    cfg.head_width = 64
    cfg.cluster_dims = 3
    cfg.num_types = len(PARTICLE_TYPES)
    cfg.position_scale = 5.0
    cfg.cluster_xy_scale = 0.0  # > 0: coords[:2] += hit (x, y) / this [cm]; 0: learned only
    cfg.bin_size = 0          # 0: exact kNN; > 0: kNN inside LSH bins of this many hits
    cfg.bn_momentum = 0.99    # running statistics of the batch normalisations
    return cfg


def _zero(y, mask):
    return jnp.where(mask[..., None], y, jnp.zeros((), y.dtype))


def _elu_mlp(i, o, rngs):
    return MLP(i, (o, o), o, activation="elu", final_activation="elu", rngs=rngs)


class CondensationNet(nnx.Module):
    """``net(features (B, N, F), mask (B, N), hit_xy (B, N, 2) | None)`` -> dict of per-hit
    outputs: ``beta`` (B, N) in (0, 1), ``coords`` (B, N, cluster_dims), ``energy_correction``
    (B, N) > 0, ``position`` (B, N, 2) [cm], ``type_logits`` (B, N, num_types); all 0 at padding.
    ``net.eval()`` switches batch normalisation to its running statistics."""

    def __init__(self, in_features: int = NUM_HIT_FEATURES, *, num_blocks: int = 4,
                 dense_width: int = 64, space_dims: int = 4, propagate_dims: int = 22,
                 out_dims: int = 48, k: int = 16, distance_scale: float = 10.0,
                 head_width: int = 64, cluster_dims: int = 3, num_types: int = 3,
                 position_scale: float = 5.0, cluster_xy_scale: float = 0.0,
                 bin_size: int | None = None, bn_momentum: float = 0.99, rngs: nnx.Rngs):
        if num_blocks < 1 or k < 1:
            raise ValueError(f"CondensationNet: num_blocks={num_blocks} and k={k} must be >= 1")
        if cluster_xy_scale < 0 or (cluster_xy_scale > 0 and cluster_dims < 2):
            raise ValueError(f"CondensationNet: cluster_xy_scale={cluster_xy_scale} must be >= 0 "
                             f"and needs cluster_dims >= 2 (got {cluster_dims})")
        if bin_size is not None and bin_size < k:
            raise ValueError(f"CondensationNet: bin_size={bin_size} must be >= k={k}")
        self.k = k
        self.bin_size = bin_size
        self.position_scale = position_scale
        self.cluster_xy_scale = float(cluster_xy_scale)
        self.in_norm = BatchNorm(in_features, momentum=bn_momentum, rngs=rngs)
        dense, convs, norms = [], [], []
        prev = in_features
        for _ in range(num_blocks):
            dense.append(_elu_mlp(2 * prev, dense_width, rngs))
            convs.append(GravNetConv(dense_width, out_dims, space_dims=space_dims,
                                     propagate_dims=propagate_dims, k=k,
                                     distance_scale=distance_scale, bin_size=bin_size, rngs=rngs))
            norms.append(BatchNorm(out_dims, momentum=bn_momentum, rngs=rngs))
            prev = out_dims
        self.dense, self.convs, self.norms = nnx.List(dense), nnx.List(convs), nnx.List(norms)
        self.head = _elu_mlp(in_features + num_blocks * out_dims, head_width, rngs)
        self.beta_out = Dense(head_width, 1, rngs=rngs)
        self.coords_out = Dense(head_width, cluster_dims, rngs=rngs)
        self.energy_out = Dense(head_width, 1, kernel_init=inits.zeros, rngs=rngs)
        self.position_out = Dense(head_width, 2, kernel_init=inits.zeros, rngs=rngs)
        self.type_out = Dense(head_width, num_types, rngs=rngs)

    def _set_k(self, n: int):
        k = min(self.k, self.bin_size or n)
        for conv in self.convs:
            conv.k = k

    def __call__(self, features: Array, mask: Array, hit_xy: Array | None = None) -> dict:
        if features.ndim != 3 or tuple(mask.shape) != tuple(features.shape[:2]):
            raise ValueError(f"CondensationNet: features (B, N, F) and mask (B, N) expected, got "
                             f"{tuple(features.shape)} and {tuple(mask.shape)}")
        n = features.shape[1]
        if self.bin_size is not None and n % self.bin_size:
            raise ValueError(f"CondensationNet: N={n} hits is not a multiple of bin_size="
                             f"{self.bin_size}; pad the events (pad_to_multiple)")
        self._set_k(n)
        mask = jnp.asarray(mask, bool)
        x = _zero(features, mask)
        x0 = self.in_norm(x, mask=mask)
        x = x0
        outs = [x0]
        for dense, conv, norm in zip(self.dense, self.convs, self.norms):
            mean = masked_pool(x, mask, "mean")
            x = jnp.concatenate([x, jnp.broadcast_to(mean[:, None, :], x.shape)], -1)
            x = dense(_zero(x, mask), mask=mask)
            x = norm(conv(x, mask), mask=mask)
            outs.append(x)
        h = self.head(jnp.concatenate(outs, -1), mask=mask)
        beta = jax.nn.sigmoid(self.beta_out(h)[..., 0])
        e_corr = jnp.exp(jnp.clip(self.energy_out(h)[..., 0], -3.0, 3.0))
        pos = self.position_scale * self.position_out(h)
        coords = self.coords_out(h)
        if self.cluster_xy_scale > 0:
            if hit_xy is None:
                raise ValueError("CondensationNet: cluster_xy_scale > 0 needs hit_xy (B, N, 2)")
            coords = coords.at[..., :2].add(hit_xy / self.cluster_xy_scale)
        if hit_xy is not None:
            pos = pos + hit_xy
        return {"beta": jnp.where(mask, beta, 0.0), "coords": _zero(coords, mask),
                "energy_correction": jnp.where(mask, e_corr, 0.0), "position": _zero(pos, mask),
                "type_logits": _zero(self.type_out(h), mask)}


def with_bins(model: CondensationNet, bin_size: int | None) -> CondensationNet:
    """A copy of ``model`` (same parameters and statistics) whose kNN runs in LSH bins of
    ``bin_size`` hits (None: exact). The LSH projections are drawn from a fixed key."""
    new = nnx.clone(model)
    new.bin_size = bin_size
    key = jax.random.key(0)
    for i, conv in enumerate(new.convs):
        conv.bin_size = bin_size
        if bin_size is None:
            conv.projections = None
        else:
            dims = conv.space.kernel.shape[-1]
            conv.projections = nnx.data(nnx.Variable(
                jax.random.normal(jax.random.fold_in(key, i), (dims, 4))))
    return new


def build(cfg, rngs: nnx.Rngs, in_features: int = NUM_HIT_FEATURES) -> CondensationNet:
    """From a config (``default_config()`` fields; missing ones take the defaults)."""
    d = default_config()
    g = lambda n: cfg.get(n, d[n]) if cfg is not None else d[n]  # noqa: E731
    unknown = set(cfg.keys()) - set(d.keys()) if cfg is not None else set()
    if unknown:
        raise ValueError(f"condensation_net: unknown config fields {sorted(unknown)}")
    return CondensationNet(in_features, num_blocks=int(g("num_blocks")),
                           dense_width=int(g("dense_width")), space_dims=int(g("space_dims")),
                           propagate_dims=int(g("propagate_dims")), out_dims=int(g("out_dims")),
                           k=int(g("k")), distance_scale=float(g("distance_scale")),
                           head_width=int(g("head_width")), cluster_dims=int(g("cluster_dims")),
                           num_types=int(g("num_types")),
                           position_scale=float(g("position_scale")),
                           cluster_xy_scale=float(g("cluster_xy_scale")),
                           bin_size=int(g("bin_size")) or None,
                           bn_momentum=float(g("bn_momentum")), rngs=rngs)
