"""ParticleNet: jet tagging via particle clouds (H. Qu, L. Gouskos, arXiv:1902.08570), following
weaver-core's implementation (weaver/nn/model/ParticleNet.py) layer for layer.

Architecture (paper configuration, the defaults of ``default_config``):
  BatchNorm on the input features (mask-aware)
  -> 3 EdgeConv blocks, k = 16, channels (64,64,64), (128,128,128), (256,256,256), each
     [Dense(no bias) -> BatchNorm -> ReLU] x 3 on Phi(x_i, x_j - x_i), mean over the k
     neighbours, shortcut Dense(no bias) -> BatchNorm, ReLU; the first block's kNN runs on the
     (deta, dphi) coordinates, later blocks on the previous block's output (dynamic graph)
  -> optional fusion Dense(no bias) -> BatchNorm -> ReLU on the concatenated block outputs
     (weaver's use_fusion; the paper's model has none)
  -> mean over the real particles -> Dense 256 -> ReLU -> Dropout 0.1 -> Dense num_outputs.

Parameters for 7 input features and 2 outputs: 366,160 (use_fusion=False, the paper's 366k),
571,728 with use_fusion=True (fusion width 384) — equal to weaver-core's counts (asserted by
benchmarks/particlenet_vs_weaver.py, computed in tests/models/test_particlenet.py).

Differences from weaver that only concern padding: padded particles are never neighbours (a
particle with fewer than k real neighbours averages over those it has, weaver pads with zeros),
and they are excluded from every BatchNorm statistic.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hepjax.graphs import build as graph_build
from hepjax.graphs.blocks import EdgeConv, masked_pool
from hepjax.nn import BatchNorm, Dense
from hepjax.nn import initializers as inits

Array = jax.Array

__all__ = ["ParticleNet", "default_config", "build"]


def default_config() -> ml_collections.ConfigDict:
    """The paper's configuration (see the module docstring); fields are ``build``'s settings."""
    cfg = ml_collections.ConfigDict()
    cfg.name = "particlenet"
    cfg.conv_params = ((16, (64, 64, 64)), (16, (128, 128, 128)), (16, (256, 256, 256)))
    cfg.fc_params = ((256, 0.1),)
    cfg.coord_index = (0, 1)       # columns of `features` used as coordinates by the first block
    cfg.coord_metric = "euclidean"  # or 'eta_phi' (phi difference wrapped)
    cfg.aggregation = "mean"       # EdgeConv neighbourhood reduction ('mean' | 'max')
    cfg.use_fts_bn = True
    cfg.use_fusion = False
    return cfg


class ParticleNet(nnx.Module):
    """``model(features (B, N, F), mask (B, N), vectors=None)`` -> logits (B, num_outputs).

    vectors are accepted for a uniform interface and unused.
    """

    def __init__(self, in_features: int, num_outputs: int, *,
                 conv_params=((16, (64, 64, 64)), (16, (128, 128, 128)), (16, (256, 256, 256))),
                 fc_params=((256, 0.1),), coord_index=(0, 1), coord_metric: str = "euclidean",
                 aggregation: str = "mean", use_fts_bn: bool = True, use_fusion: bool = False,
                 rngs: nnx.Rngs):
        coord_index = tuple(int(i) for i in coord_index)
        if any(not 0 <= i < in_features for i in coord_index) or not coord_index:
            raise ValueError(f"ParticleNet: coord_index={coord_index} must name columns of the "
                             f"{in_features} input features")
        metrics = {"euclidean": graph_build.pairwise_sq_distances, "eta_phi": graph_build.eta_phi_sq_distances}
        if coord_metric not in metrics:
            raise ValueError(f"ParticleNet: coord_metric={coord_metric!r}; valid: {sorted(metrics)}")
        if coord_metric == "eta_phi" and len(coord_index) != 2:
            raise ValueError("ParticleNet: coord_metric='eta_phi' needs two coord_index columns")
        self.coord_index = coord_index
        self.bn_fts = BatchNorm(in_features, momentum=0.9, rngs=rngs) if use_fts_bn else None
        convs = []
        prev = in_features
        for i, (k, channels) in enumerate(conv_params):
            convs.append(EdgeConv(prev, tuple(channels), k=int(k), aggregation=aggregation,
                                  distance_fn=(metrics[coord_metric] if i == 0
                                               else graph_build.pairwise_sq_distances), rngs=rngs))
            prev = channels[-1]
        self.edge_convs = nnx.List(convs)
        if use_fusion:
            in_chn = sum(c[-1] for _, c in conv_params)
            out_chn = int(min(max((in_chn // 128) * 128, 128), 1024))
            self.fusion = Dense(in_chn, out_chn, use_bias=False, kernel_init=inits.he_uniform,
                                rngs=rngs)
            self.fusion_bn = BatchNorm(out_chn, momentum=0.9, rngs=rngs)
            prev = out_chn
        else:
            self.fusion, self.fusion_bn = None, None
        fcs, drops = [], []
        for width, rate in fc_params:
            fcs.append(Dense(prev, int(width), kernel_init=inits.he_uniform, rngs=rngs))
            drops.append(nnx.Dropout(float(rate), rngs=rngs) if rate > 0 else None)
            prev = int(width)
        self.fcs = nnx.List(fcs)
        self.drops = nnx.List(drops)
        self.out = Dense(prev, num_outputs, rngs=rngs)

    def __call__(self, features: Array, mask: Array, vectors: Array | None = None) -> Array:
        del vectors
        mask = jnp.asarray(mask, bool)
        fts = jnp.where(mask[..., None], features, 0.0)
        points = fts[..., jnp.asarray(self.coord_index)]
        if self.bn_fts is not None:
            fts = self.bn_fts(fts, mask=mask)
        outputs = []
        for i, conv in enumerate(self.edge_convs):
            fts = conv(fts, mask, coords=points if i == 0 else fts)
            outputs.append(fts)
        if self.fusion is not None:
            fts = jax.nn.relu(self.fusion_bn(self.fusion(jnp.concatenate(outputs, -1)), mask=mask))
        x = masked_pool(fts, mask, "mean")
        for dense, drop in zip(self.fcs, self.drops):
            x = jax.nn.relu(dense(x))
            if drop is not None:
                x = drop(x)
        return self.out(x)


def build(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> ParticleNet:
    """Builder for the model registry: input_shape = (N, F). Missing cfg fields take the
    defaults of ``default_config``."""
    if len(input_shape) != 2:
        raise ValueError(f"particlenet: input_shape must be (N, F) per jet, got {tuple(input_shape)}")
    d = default_config()
    get = lambda name: cfg.get(name, d[name]) if cfg is not None else d[name]  # noqa: E731
    return ParticleNet(int(input_shape[1]), int(num_outputs),
                       conv_params=tuple((int(k), tuple(int(c) for c in ch))
                                         for k, ch in get("conv_params")),
                       fc_params=tuple((int(w), float(r)) for w, r in get("fc_params")),
                       coord_index=tuple(get("coord_index")), coord_metric=get("coord_metric"),
                       aggregation=get("aggregation"), use_fts_bn=bool(get("use_fts_bn")),
                       use_fusion=bool(get("use_fusion")), rngs=rngs)
