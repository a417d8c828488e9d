"""Explaining trained models with layer-wise relevance propagation.

``hepjax.explain.lrp``: the rules (epsilon, gamma, z+, identity for element-wise maps, message
passing / attention with fixed weights, LayerNorm, eval BatchNorm, winner-take-all max, the
LSH-binned layer) as JAX primitives with modified backward passes, and ``relevance``;
``hepjax.explain.taggers``: ParticleNet and ParT; ``hepjax.explain.mlpf``: MLPF's binned graph
layers (imported on use).
"""
from hepjax.explain import lrp  # noqa: F401
