"""The interaction-network edge classifier of HEP.TrkX / Exa.TrkX for tracking (Flax NNX).

References: Battaglia et al., "Interaction networks for learning about objects, relations and
physics", arXiv:1612.00222; Ju et al., "Graph neural networks for particle reconstruction in
high energy physics detectors", arXiv:2003.11603 and "Performance of a geometric deep learning
pipeline for HL-LHC particle tracking", EPJC 81 (2021) 876; DeZoort et al., "Charged particle
tracking via edge-classifying interaction networks", arXiv:2103.16701.

On a padded :class:`hepjax.graphs.padding.GraphsTuple` (nodes (V, Fv) hit features, edges
(E, Fe) edge features, ``senders`` the inner hit, ``receivers`` the outer one):

    x_i^0 = f_node_enc(v_i)                    h_k^0 = f_edge_enc([e_k, v_s, v_r])
    for t = 1..T (``num_iterations``):
        h_k^t = h_k^{t-1} + f_edge([h_k^{t-1}, x_s^{t-1}, x_r^{t-1}])          (relational model)
        x_i^t = x_i^{t-1} + f_node([x_i^{t-1}, sum_{k: r_k = i} h_k^t,
                                                sum_{k: s_k = i} h_k^t])    (object model)
    logit_k = f_out([h_k^T, x_s^T, x_r^T])

The node update aggregates incoming and outgoing edges separately (the Exa.TrkX
"InteractionGNN" form, which lets a hit tell its inner from its outer neighbours); the MLPs
(``hepjax.nn.MLP`` with LayerNorm) of the iterations are not shared unless
``share_weights=True``. Residual connections on both edges and nodes, as in Exa.TrkX.

Padding: the sums are masked segment sums (``hepjax.graphs.segment.segment_sum``) over real
edges only, and every other operation is per node or per edge, so padding nodes and edges never
change a real output (tests/tracking/test_interaction_network.py); padded logits are set to 0.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax.graphs.padding import GraphsTuple, edge_mask as _edge_mask, node_mask as _node_mask
from hepjax.graphs.segment import segment_sum
from hepjax.nn import MLP

Array = jax.Array

__all__ = ["EdgeClassifierIN"]


class EdgeClassifierIN(nnx.Module):
    """Interaction-network edge classifier (module docstring). ``__call__(graph)`` -> (E,)
    logits (0 on padding edges).

    Args:
      node_features, edge_features: input widths Fv, Fe.
      hidden: latent width of nodes and edges.
      num_iterations: message-passing iterations T.
      mlp_layers: hidden layers per MLP (each of width ``hidden``).
      share_weights: one edge and one node network for all iterations (HEP.TrkX) instead of
        one per iteration.
      activation: of the hidden layers.
    """

    def __init__(self, node_features: int = 3, edge_features: int = 5, hidden: int = 64,
                 num_iterations: int = 6, mlp_layers: int = 2, share_weights: bool = False,
                 activation: str = "silu", *, rngs: nnx.Rngs):
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
        hid = (hidden,) * mlp_layers

        def mlp(fin, out, final=True):
            return MLP(fin, hid, out, activation=activation, norm="layer",
                       final_activation=activation if final else None, rngs=rngs)

        self.node_enc = mlp(node_features, hidden)
        self.edge_enc = mlp(edge_features + 2 * node_features, hidden)
        n_nets = 1 if share_weights else num_iterations
        self.edge_nets = nnx.List([mlp(3 * hidden, hidden) for _ in range(n_nets)])
        self.node_nets = nnx.List([mlp(3 * hidden, hidden) for _ in range(n_nets)])
        self.out = mlp(3 * hidden, 1, final=False)
        self.num_iterations = num_iterations
        self.share_weights = share_weights

    def __call__(self, graph: GraphsTuple) -> Array:
        v, e = graph.nodes, graph.edges
        s, r = graph.senders, graph.receivers
        n = v.shape[0]
        nmask = _node_mask(graph)
        emask = _edge_mask(graph)
        x = self.node_enc(v, mask=nmask)
        h = self.edge_enc(jnp.concatenate([e, v[s], v[r]], -1), mask=emask)
        for t in range(self.num_iterations):
            k = 0 if self.share_weights else t
            h = h + self.edge_nets[k](jnp.concatenate([h, x[s], x[r]], -1), mask=emask)
            incoming = segment_sum(h, r, n, mask=emask)
            outgoing = segment_sum(h, s, n, mask=emask)
            x = x + self.node_nets[k](jnp.concatenate([x, incoming, outgoing], -1), mask=nmask)
        logit = self.out(jnp.concatenate([h, x[s], x[r]], -1), mask=emask)[:, 0]
        return jnp.where(emask, logit, 0.0)
