"""Message passing for point clouds: segment ops with static sizes, padded ``jraph.GraphsTuple``
batches, graph building (all-to-all, radius, kNN, LSH bins) and the blocks built on them."""
from hepjax.graphs import blocks, build, padding, segment
from hepjax.graphs.blocks import (GAT, GCN, DeepSets, EdgeConv, EnergyFlowLayer, GraphNetwork,
                                  GravNetConv, InteractionNetwork, ParticleFlowLayer, masked_pool,
                                  neighbour_reduce)
from hepjax.graphs.build import (all_to_all, eta_phi_sq_distances, gather_neighbours, knn,
                                 knn_in_bins, lsh_permutation, pairwise_sq_distances,
                                 radius_neighbours, to_edge_list)
from hepjax.graphs.padding import (GraphsTuple, batch_graphs, budget_for, edge_mask, graph_mask,
                                   node_graph_index, node_mask, pad_graphs, zero_out_padding)
from hepjax.graphs.segment import (segment_count, segment_max, segment_mean, segment_min,
                                   segment_softmax, segment_sum)

__all__ = [
    "blocks", "build", "padding", "segment",
    "GAT", "GCN", "DeepSets", "EdgeConv", "EnergyFlowLayer", "GraphNetwork", "GravNetConv",
    "InteractionNetwork", "ParticleFlowLayer", "masked_pool", "neighbour_reduce",
    "all_to_all", "eta_phi_sq_distances", "gather_neighbours", "knn", "knn_in_bins",
    "lsh_permutation", "pairwise_sq_distances", "radius_neighbours", "to_edge_list",
    "GraphsTuple", "batch_graphs", "budget_for", "edge_mask", "graph_mask", "node_graph_index",
    "node_mask", "pad_graphs", "zero_out_padding",
    "segment_count", "segment_max", "segment_mean", "segment_min", "segment_softmax", "segment_sum",
]
