"""Padding ``jraph.GraphsTuple`` batches to static budgets, and their masks.

A batch of graphs is padded (``pad_graphs``) to fixed totals of nodes, edges and graphs so that a
jitted step compiles once. Following jraph's convention the padding is one or more extra graphs at
the end: padding nodes belong to the first padding graph, and padding edges connect padding
nodes only, so segment reductions never mix them into a real graph. The masks say which entries
are real. ``zero_out_padding`` is our own (jraph's calls ``jax.tree_map``, removed from JAX).

Only these jraph symbols are used here (a canary test exercises each): ``GraphsTuple``,
``batch_np``, ``pad_with_graphs``, ``get_node_padding_mask``, ``get_edge_padding_mask``,
``get_graph_padding_mask``.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np

Array = jax.Array
GraphsTuple = jraph.GraphsTuple

__all__ = ["GraphsTuple", "batch_graphs", "pad_graphs", "node_mask", "edge_mask", "graph_mask",
           "zero_out_padding", "node_graph_index", "budget_for"]


def batch_graphs(graphs: Sequence[GraphsTuple]) -> GraphsTuple:
    """Concatenates graphs (numpy arrays, host side) into one GraphsTuple; edge indices shifted."""
    if not graphs:
        raise ValueError("batch_graphs: got an empty list of graphs")
    return jraph.batch_np(list(graphs))


def budget_for(graphs: Sequence[GraphsTuple], multiple: int = 64) -> tuple[int, int, int]:
    """A (n_node, n_edge, n_graph) budget that fits the batch, rounded up to ``multiple`` so that
    nearby batch sizes share one compilation (one extra node and graph for the padding graph)."""
    nodes = sum(int(np.sum(g.n_node)) for g in graphs) + 1
    edges = sum(int(np.sum(g.n_edge)) for g in graphs)
    n_graph = sum(int(np.size(g.n_node)) for g in graphs) + 1
    up = lambda v: int(-(-v // multiple) * multiple)  # noqa: E731
    return up(nodes), max(up(edges), multiple), n_graph


def pad_graphs(graph: GraphsTuple, n_node: int, n_edge: int, n_graph: int = 2) -> GraphsTuple:
    """Pads a (batched) graph to exactly ``n_node`` nodes, ``n_edge`` edges, ``n_graph`` graphs.

    Needs n_node > real nodes (room for at least one padding node) and n_graph > real graphs.
    Raises ValueError naming the budget that is too small.
    """
    real_nodes = int(np.sum(graph.n_node))
    real_edges = int(np.sum(graph.n_edge))
    real_graphs = int(np.size(graph.n_node))
    if n_node <= real_nodes:
        raise ValueError(f"pad_graphs: n_node={n_node} must exceed the batch's {real_nodes} nodes "
                         "(one padding node at least); raise the node budget")
    if n_edge < real_edges:
        raise ValueError(f"pad_graphs: n_edge={n_edge} is below the batch's {real_edges} edges; "
                         "raise the edge budget")
    if n_graph <= real_graphs:
        raise ValueError(f"pad_graphs: n_graph={n_graph} must exceed the batch's {real_graphs} "
                         "graphs (one padding graph at least); raise the graph budget")
    return jraph.pad_with_graphs(graph, n_node, n_edge, n_graph)


def node_mask(graph: GraphsTuple) -> Array:
    """(total nodes,) bool, True for real nodes (everything but the last graph's nodes)."""
    return jnp.asarray(jraph.get_node_padding_mask(graph))


def edge_mask(graph: GraphsTuple) -> Array:
    """(total edges,) bool, True for real edges."""
    return jnp.asarray(jraph.get_edge_padding_mask(graph))


def graph_mask(graph: GraphsTuple) -> Array:
    """(n_graph,) bool, True for real graphs (all but the last)."""
    return jnp.asarray(jraph.get_graph_padding_mask(graph))


def node_graph_index(graph: GraphsTuple) -> Array:
    """(total nodes,) int: the graph each node belongs to (static length from the nodes' shape)."""
    n_graph = graph.n_node.shape[0]
    total = jax.tree.leaves(graph.nodes)[0].shape[0]
    return jnp.repeat(jnp.arange(n_graph), graph.n_node, total_repeat_length=total)


def zero_out_padding(graph: GraphsTuple) -> GraphsTuple:
    """Sets the features of padding nodes, edges and graphs to zero (all leaves of nodes, edges
    and globals; None fields stay None). Real entries are untouched."""
    def zero(mask):
        def f(x):
            m = jnp.reshape(mask, mask.shape + (1,) * (x.ndim - 1))
            return jnp.where(m, x, jnp.zeros((), x.dtype))
        return f

    nodes = graph.nodes if graph.nodes is None else jax.tree.map(zero(node_mask(graph)), graph.nodes)
    edges = graph.edges if graph.edges is None else jax.tree.map(zero(edge_mask(graph)), graph.edges)
    globs = (graph.globals if graph.globals is None
             else jax.tree.map(zero(graph_mask(graph)), graph.globals))
    return graph._replace(nodes=nodes, edges=edges, globals=globs)
