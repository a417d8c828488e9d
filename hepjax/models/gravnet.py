"""GravNet model (S. R. Qasim, J. Kieseler, Y. Iiyama, M. Pierini, arXiv:1902.07987), for
per-set classification (jets, events) with the point-cloud input convention.

Each of ``num_blocks`` blocks: Dense(dense_width) x 3 (ELU) -> GravNetConv (learned S-dim
coordinates, kNN, exp(-d^2)-weighted mean and max, Dense out, tanh) -> mask-aware BatchNorm.
Block outputs are concatenated (as in the paper), pooled by the mean over real points, and a
Dense(head_width) -> ReLU -> Dense(num_outputs) head gives the logits. Paper sizes: 4 blocks,
dense 64, S = 4, F_LR = 22, F_out = 48, k = 40. ``bin_size`` switches the kNN to LSH bins
(linear in the number of points; see benchmarks/gravnet_scaling.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hepjax.graphs.blocks import GravNetConv, masked_pool
from hepjax.nn import MLP, BatchNorm

Array = jax.Array

__all__ = ["GravNet", "default_config", "build"]


def default_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.name = "gravnet"
    cfg.num_blocks = 4
    cfg.dense_width = 64
    cfg.space_dims = 4
    cfg.propagate_dims = 22
    cfg.out_dims = 48
    cfg.k = 40               # capped at N for small sets
    cfg.head_width = 64
    cfg.bin_size = 0         # 0: exact kNN; > 0: kNN inside LSH bins of this size
    return cfg


class GravNet(nnx.Module):
    """``model(features (B, N, F), mask (B, N), vectors=None)`` -> logits (B, num_outputs)."""

    def __init__(self, in_features: int, num_points: int, num_outputs: int, *, num_blocks=4,
                 dense_width=64, space_dims=4, propagate_dims=22, out_dims=48, k=40,
                 head_width=64, bin_size: int | None = None, rngs: nnx.Rngs):
        k = min(k, bin_size or num_points)
        dense, convs, norms = [], [], []
        prev = in_features
        for _ in range(num_blocks):
            dense.append(MLP(prev, (dense_width, dense_width), dense_width, activation="elu",
                             final_activation="elu", rngs=rngs))
            convs.append(GravNetConv(dense_width, out_dims, space_dims=space_dims,
                                     propagate_dims=propagate_dims, k=k, bin_size=bin_size,
                                     rngs=rngs))
            norms.append(BatchNorm(out_dims, momentum=0.9, rngs=rngs))
            prev = out_dims
        self.dense, self.convs, self.norms = nnx.List(dense), nnx.List(convs), nnx.List(norms)
        self.head = MLP(num_blocks * out_dims, (head_width,), num_outputs, rngs=rngs)

    def __call__(self, features: Array, mask: Array, vectors: Array | None = None) -> Array:
        del vectors
        mask = jnp.asarray(mask, bool)
        x = jnp.where(mask[..., None], features, 0.0)
        outs = []
        for dense, conv, norm in zip(self.dense, self.convs, self.norms):
            x = norm(conv(dense(x, mask=mask), mask), mask=mask)
            outs.append(x)
        return self.head(masked_pool(jnp.concatenate(outs, -1), mask, "mean"))


def build(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> GravNet:
    """Registry builder; input_shape = (N, F)."""
    if len(input_shape) != 2:
        raise ValueError(f"gravnet: input_shape must be (N, F), got {tuple(input_shape)}")
    d = default_config()
    g = lambda n: cfg.get(n, d[n]) if cfg is not None else d[n]  # noqa: E731
    return GravNet(int(input_shape[1]), int(input_shape[0]), int(num_outputs),
                   num_blocks=int(g("num_blocks")), dense_width=int(g("dense_width")),
                   space_dims=int(g("space_dims")), propagate_dims=int(g("propagate_dims")),
                   out_dims=int(g("out_dims")), k=int(g("k")), head_width=int(g("head_width")),
                   bin_size=int(g("bin_size")) or None, rngs=rngs)
