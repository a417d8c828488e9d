"""Message-passing blocks (Flax NNX).

Two data layouts:
  * dense fixed-size sets: features (B, N, C), mask (B, N) bool, neighbourhoods (idx, valid)
    (B, N, k) from ``hepjax.graphs.build`` — EdgeConv, GravNet, Deep Sets / PointNet, PFN, EFN,
    the interaction network (all ordered pairs);
  * ``jraph.GraphsTuple`` padded to static budgets (``hepjax.graphs.padding``) with segment ops —
    the general graph-network block, GCN, GAT.
Padded points / nodes / edges never enter a sum, mean, max or normalisation statistic, and
outputs at padded positions are exactly zero.

References: GN block — Battaglia et al., arXiv:1806.01261; GCN — Kipf & Welling,
arXiv:1609.02907 (mean-aggregation form of Sznajder's slides); GAT — Velickovic et al.,
arXiv:1710.10903; interaction network / JEDI-net — Battaglia et al. arXiv:1612.00222, Moreno et
al. arXiv:1908.05318; EdgeConv — Wang et al. arXiv:1801.07829, ParticleNet (Qu & Gouskos,
arXiv:1902.08570); GravNet — Qasim et al. arXiv:1902.07987; Deep Sets — Zaheer et al.
arXiv:1703.06114; PointNet — Qi et al. arXiv:1612.00593; EFN/PFN — Komiske, Metodiev, Thaler,
arXiv:1810.05165.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax import kernels
from hepjax.graphs import build, segment
from hepjax.graphs.padding import (GraphsTuple, edge_mask as _edge_mask,
                                   node_graph_index, node_mask as _node_mask, zero_out_padding)
from hepjax.nn import MLP, BatchNorm, Dense
from hepjax.nn import initializers as inits
from hepjax.nn.activations import get_activation

Array = jax.Array

__all__ = ["masked_pool", "neighbour_reduce", "EdgeBatchNorm", "EdgeConv",
           "GravNetConv", "DeepSets",
           "ParticleFlowLayer", "EnergyFlowLayer", "InteractionNetwork", "GraphNetwork", "GCN",
           "GAT"]


def _zero(y, mask):
    return jnp.where(jnp.asarray(mask, bool)[..., None], y, jnp.zeros((), y.dtype))


def masked_pool(x: Array, mask: Array, how: str = "sum", weights: Array | None = None) -> Array:
    """Pools (..., N, C) over the set axis using only mask-True rows -> (..., C).

    how: 'sum' | 'mean' (over the real count, >= 1) | 'max' (0 for an empty set).
    weights (..., N) optionally multiply the rows first (sum/mean).
    """
    mask = jnp.asarray(mask, bool)
    if weights is not None:
        x = x * weights[..., None]
    if how in ("sum", "mean"):
        s = jnp.sum(_zero(x, mask), axis=-2)
        if how == "sum":
            return s
        return s / jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1).astype(x.dtype)
    if how == "max":
        m = jnp.max(jnp.where(mask[..., None], x, -jnp.inf), axis=-2)
        return jnp.where(jnp.any(mask, axis=-1, keepdims=True), m, 0.0)
    raise ValueError(f"masked_pool: how={how!r}; valid: 'sum', 'mean', 'max'")


def neighbour_reduce(h: Array, valid: Array, how: str) -> Array:
    """Reduces neighbour messages (B, N, k, C) over k using valid (B, N, k): 'mean' | 'max' | 'sum'."""
    return masked_pool(h, valid, how)


class EdgeBatchNorm(BatchNorm):
    """``hepjax.nn.BatchNorm`` (same parameters, statistics, momentum convention and masking) with
    the training-mode statistics taken in one fused pass: sums of w (x - c) and w (x - c)^2 with
    the shift c = the running mean (under stop_gradient), then mean = c + S1 / n,
    var = S2 / n - (S1 / n)^2, and y = x * a + b in one elementwise pass. Same values as the
    two-pass form up to float rounding; about half the memory traffic on the (B, N, k, C) edge
    tensors of EdgeConv."""

    def __call__(self, x: Array, mask: Array | None = None,
                 use_running_average: bool | None = None) -> Array:
        use_ra = self.use_running_average if use_running_average is None else use_running_average
        if use_ra or mask is None:
            return super().__call__(x, mask, use_running_average)
        if tuple(mask.shape) != tuple(x.shape[:-1]) or x.shape[-1] != self.num_features:
            return super().__call__(x, mask, use_running_average)  # raises the shape error
        mask = jnp.asarray(mask, bool)
        axes = tuple(range(x.ndim - 1))
        w = mask.astype(x.dtype)[..., None]
        count = jnp.sum(w)
        denom = jnp.maximum(count, 1.0)
        old_mean, old_var = self.mean[...], self.var[...]
        xc = x - jax.lax.stop_gradient(old_mean)
        s1 = jnp.sum(w * xc, axis=axes) / denom
        s2 = jnp.sum(w * xc * xc, axis=axes) / denom
        mean = old_mean + s1
        var = jnp.maximum(s2 - s1 * s1, 0.0)
        m = self.momentum
        has_data = count > 0
        self.mean[...] = jnp.where(has_data, m * old_mean + (1 - m) * mean, old_mean)
        self.var[...] = jnp.where(has_data, m * old_var + (1 - m) * var, old_var)
        a = self.scale[...] * jax.lax.rsqrt(var + self.epsilon)
        y = x * a + (self.bias[...] - mean * a)
        return jnp.where(mask[..., None], y, jnp.zeros((), y.dtype))


class EdgeConv(nnx.Module):
    """EdgeConv block as in ParticleNet / weaver: for each point i with neighbours j (kNN in
    ``coords``) the edge MLP Phi(x_i, x_j - x_i) = [Dense(no bias) -> BatchNorm -> ReLU] x L runs on
    every edge, the messages are reduced over the neighbourhood (``aggregation`` 'mean' as in
    ParticleNet, or 'max' as in DGCNN), and a shortcut (identity, or Dense(no bias) -> BatchNorm
    when the width changes) is added before a final ReLU:

        y_i = ReLU(shortcut(x_i) + agg_j Phi(x_i, x_j - x_i))

    The first layer's kernel (2C, C1) acts on the concatenation [x_i, x_j - x_i] exactly as
    weaver's Conv2d; it is evaluated per point (x_i (W_a - W_b) + x_j W_b) before the gather,
    which is the same number but k times fewer FLOPs. BatchNorm statistics use only valid edges
    (both ends real) and real points. With batch_norm=False the Dense layers get biases.

    Call: ``conv(features (B, N, C), mask (B, N), coords (B, N, D) | None)`` -> (B, N, C_L); coords
    default to the features (dynamic graph). ``conv.aggregate(features, idx, valid, mask)`` takes a
    precomputed neighbourhood.
    """

    def __init__(self, in_features: int, channels: Sequence[int], *, k: int = 16,
                 aggregation: str = "mean", batch_norm: bool = True, shortcut: bool = True,
                 distance_fn: Callable[[Array], Array] = build.pairwise_sq_distances,
                 rngs: nnx.Rngs):
        if aggregation not in ("mean", "max"):
            raise ValueError(f"EdgeConv: aggregation={aggregation!r}; valid: 'mean', 'max'")
        if not channels:
            raise ValueError("EdgeConv: channels must name at least one layer width")
        self.k = k
        self.aggregation = aggregation
        self.distance_fn = distance_fn
        self.in_features = in_features
        widths = [2 * in_features] + list(channels)
        self.layers = nnx.List([Dense(a, b, kernel_init=inits.he_uniform, use_bias=not batch_norm,
                                      rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
        self.norms = nnx.List([EdgeBatchNorm(c, momentum=0.9, rngs=rngs) if batch_norm else None
                               for c in channels])
        if shortcut and in_features != channels[-1]:
            self.sc = Dense(in_features, channels[-1], use_bias=not batch_norm, rngs=rngs)
            self.sc_norm = BatchNorm(channels[-1], momentum=0.9, rngs=rngs) if batch_norm else None
        else:
            self.sc, self.sc_norm = None, None
        self.use_shortcut = shortcut

    def __call__(self, features: Array, mask: Array, coords: Array | None = None) -> Array:
        coords = features if coords is None else coords
        idx, valid = build.knn(coords, mask, self.k, distance_fn=self.distance_fn)
        return self.aggregate(features, idx, valid, mask)

    def aggregate(self, features: Array, idx: Array, valid: Array, mask: Array) -> Array:
        c = self.in_features
        if features.shape[-1] != c:
            raise ValueError(f"EdgeConv: features must have {c} channels, got shape "
                             f"{tuple(features.shape)}")
        first = self.layers[0]
        w = first.kernel[...]
        w_self, w_diff = w[:c], w[c:]
        per_point_self = features @ (w_self - w_diff)        # (B, N, C1)
        per_point_nbr = features @ w_diff                     # (B, N, C1)
        h = per_point_self[:, :, None, :] + build.gather_neighbours(per_point_nbr, idx)
        if first.bias is not None:
            h = h + first.bias[...]
        for i, layer in enumerate(self.layers):
            if i > 0:
                h = kernels.edge_matmul(h, layer.kernel[...])
                if layer.bias is not None:
                    h = h + layer.bias[...]
            if self.norms[i] is not None:
                h = self.norms[i](h, mask=valid)
            h = jax.nn.relu(h)
        agg = neighbour_reduce(h, valid, self.aggregation)
        if not self.use_shortcut:
            return _zero(jax.nn.relu(agg), mask)
        sc = features
        if self.sc is not None:
            sc = self.sc(features)
            if self.sc_norm is not None:
                sc = self.sc_norm(sc, mask=mask)
        return _zero(jax.nn.relu(sc + agg), mask)


class GravNetConv(nnx.Module):
    """GravNet layer (Qasim et al., EPJC 79 (2019) 608, arXiv:1902.07987; Kieseler, ESHEP 2023
    lectures, eq. (36)).

    From the input x (B, N, F): learned coordinates s = Dense(F, S)(x) and features to exchange
    f = Dense(F, F_LR)(x); kNN in s (self included, as in the paper); messages
    exp(-scale * d_S(i, j)^2) f_j reduced by mean and by max over the valid neighbours; output
    Dense(F + 2 F_LR, F_out)([x, mean, max]) followed by ``activation``.

    ``bin_size``: if set, the kNN runs inside LSH bins of that many points (random projections of
    s drawn once at construction, a fixed non-trainable variable), O(N * bin_size): linear in N.
    N must then be a multiple of bin_size.
    """

    def __init__(self, in_features: int, out_features: int, *, space_dims: int = 4,
                 propagate_dims: int = 22, k: int = 40, distance_scale: float = 1.0,
                 activation: str | None = "tanh", bin_size: int | None = None,
                 num_projections: int = 4, rngs: nnx.Rngs):
        self.k = k
        self.distance_scale = distance_scale
        self.bin_size = bin_size
        self.space = Dense(in_features, space_dims, rngs=rngs)
        self.propagate = Dense(in_features, propagate_dims, rngs=rngs)
        self.out = Dense(in_features + 2 * propagate_dims, out_features, rngs=rngs)
        self.activation = None if activation is None else get_activation(activation)
        self.projections = (None if bin_size is None else nnx.Variable(
            jax.random.normal(rngs.params(), (space_dims, num_projections))))

    def neighbourhood(self, s: Array, mask: Array):
        if self.bin_size is None:
            return build.knn(s, mask, self.k, exclude_self=False)
        proj = self.projections[...]
        return jax.vmap(lambda sb, mb: build.knn_in_bins(sb, mb, self.k, self.bin_size, proj))(
            s, mask)

    def __call__(self, x: Array, mask: Array) -> Array:
        mask = jnp.asarray(mask, bool)
        s = self.space(x)
        f = self.propagate(x)
        idx, valid = self.neighbourhood(s, mask)
        s_nb = build.gather_neighbours(s, idx)                       # (B, N, k, S)
        d2 = jnp.sum(jnp.square(s_nb - s[:, :, None, :]), axis=-1)   # (B, N, k)
        msg = jnp.exp(-self.distance_scale * d2)[..., None] * build.gather_neighbours(f, idx)
        mean = neighbour_reduce(msg, valid, "mean")
        mx = neighbour_reduce(msg, valid, "max")
        y = self.out(jnp.concatenate([x, mean, mx], axis=-1))
        if self.activation is not None:
            y = self.activation(y)
        return _zero(y, mask)


class DeepSets(nnx.Module):
    """Deep Sets / PointNet: rho(pool_i phi(x_i)) with a per-particle MLP phi, masked pooling
    ('sum' = Deep Sets / PFN, 'max' = PointNet, 'mean'), and an MLP rho.

    Call ``(x (B, N, F), mask (B, N))`` -> (B, out_features). phi: F -> phi_sizes[-1] with ReLU on
    every layer (including the last, as in EnergyFlow's PFN); rho: hidden rho_sizes then a
    linear layer to out_features.
    """

    def __init__(self, in_features: int, phi_sizes: Sequence[int], rho_sizes: Sequence[int],
                 out_features: int, *, pooling: str = "sum", activation: str = "relu",
                 dropout: float = 0.0, rngs: nnx.Rngs):
        if pooling not in ("sum", "mean", "max"):
            raise ValueError(f"DeepSets: pooling={pooling!r}; valid: 'sum', 'mean', 'max'")
        self.pooling = pooling
        self.phi = MLP(in_features, tuple(phi_sizes[:-1]), phi_sizes[-1], activation=activation,
                       final_activation=activation, rngs=rngs)
        self.rho = MLP(phi_sizes[-1], tuple(rho_sizes), out_features, activation=activation,
                       dropout=dropout, rngs=rngs)

    def __call__(self, x: Array, mask: Array, weights: Array | None = None) -> Array:
        mask = jnp.asarray(mask, bool)
        latent = masked_pool(self.phi(x, mask=mask), mask, self.pooling, weights=weights)
        return self.rho(latent)


class ParticleFlowLayer(nnx.Module):
    """The PFN latent sum  O = sum_i Phi(x_i)  over real particles: (B, N, F) -> (B, latent)."""

    def __init__(self, in_features: int, phi_sizes: Sequence[int], *, activation: str = "relu",
                 init: str = "he", rngs: nnx.Rngs):
        self.phi = MLP(in_features, tuple(phi_sizes[:-1]), phi_sizes[-1], activation=activation,
                       final_activation=activation, init=init, rngs=rngs)

    def __call__(self, x: Array, mask: Array) -> Array:
        return masked_pool(self.phi(x, mask=mask), mask, "sum")


class EnergyFlowLayer(nnx.Module):
    """The IRC-safe EFN latent sum  O = sum_i z_i Phi(y_i, phi_i): angles (B, N, A), energy
    fractions z (B, N) -> (B, latent). Linear in z, so a zero-energy particle adds nothing and a
    collinear split z -> (z_a, z_b) at the same angles leaves O unchanged."""

    def __init__(self, angle_features: int, phi_sizes: Sequence[int], *, activation: str = "relu",
                 init: str = "he", rngs: nnx.Rngs):
        self.phi = MLP(angle_features, tuple(phi_sizes[:-1]), phi_sizes[-1], activation=activation,
                       final_activation=activation, init=init, rngs=rngs)

    def __call__(self, angles: Array, z: Array, mask: Array) -> Array:
        return masked_pool(self.phi(angles, mask=mask), mask, "sum", weights=z)


class InteractionNetwork(nnx.Module):
    """Interaction network on the complete directed graph of a set (JEDI-net form).

    For every ordered pair (receiver r, sender s), r != s, both real: E_rs = f_R([x_r, x_s]);
    Ebar_r = sum_s E_rs; O_r = f_O([x_r, Ebar_r]). Call ``(x (B, N, P), mask)`` -> O (B, N, D_O)
    (zero at padded particles). f_R and f_O are MLPs with the given hidden sizes and an output
    activation (as in JEDI-net), initialised by ``init`` ('he' or 'torch', see ``hepjax.nn.MLP``).
    """

    def __init__(self, in_features: int, edge_hidden: Sequence[int], edge_features: int,
                 node_hidden: Sequence[int], node_features: int, *, activation: str = "relu",
                 init: str = "he", rngs: nnx.Rngs):
        self.f_r = MLP(2 * in_features, tuple(edge_hidden), edge_features, activation=activation,
                       final_activation=activation, init=init, rngs=rngs)
        self.f_o = MLP(in_features + edge_features, tuple(node_hidden), node_features,
                       activation=activation, final_activation=activation, init=init, rngs=rngs)
        self.in_features = in_features

    def __call__(self, x: Array, mask: Array) -> Array:
        mask = jnp.asarray(mask, bool)
        n = x.shape[-2]
        pair = jnp.concatenate([jnp.broadcast_to(x[:, :, None, :], x.shape[:2] + (n, x.shape[-1])),
                                jnp.broadcast_to(x[:, None, :, :], x.shape[:2] + (n, x.shape[-1]))],
                               axis=-1)                               # (B, r, s, 2P)
        adj = build.all_to_all(mask)                                  # (B, r, s)
        e = self.f_r(pair, mask=adj)
        ebar = jnp.sum(_zero(e, adj), axis=2)
        return self.f_o(jnp.concatenate([x, ebar], axis=-1), mask=mask)


# ----------------------------------------------------------------------------- GraphsTuple blocks

_AGG = {"sum": segment.segment_sum, "mean": segment.segment_mean, "max": segment.segment_max}


def _agg(name):
    if name not in _AGG:
        raise ValueError(f"aggregation={name!r}; valid: {sorted(_AGG)}")
    return _AGG[name]


def _sizes(graph: GraphsTuple):
    return graph.nodes.shape[0], graph.n_node.shape[0]


class GraphNetwork(nnx.Module):
    """The general graph-network block (Battaglia et al. 2018) on a padded ``GraphsTuple`` with
    array nodes (V, Fv), edges (E, Fe) and globals (G, Fu):

        e'_k = phi_e([e_k, v_{s_k}, v_{r_k}, u])        edge update
        v'_i = phi_v([v_i, agg_{k: r_k = i} e'_k, u])    node update (incoming edges)
        u'   = phi_u([u, agg_i v'_i, agg_k e'_k])        global update (per graph)

    phi_* are MLPs (hidden sizes, then the output width, with the activation on the output too).
    Aggregations are masked segment ops ('sum' | 'mean' | 'max') with static sizes; the result
    has padding zeroed.
    """

    def __init__(self, node_features: int, edge_features: int, global_features: int, *,
                 edge_out: int, node_out: int, global_out: int, hidden: Sequence[int] = (),
                 aggregation: str = "sum", activation: str = "relu", rngs: nnx.Rngs):
        self.agg = aggregation
        _agg(aggregation)
        mk = lambda i, o: MLP(i, tuple(hidden), o, activation=activation,  # noqa: E731
                              final_activation=activation, rngs=rngs)
        self.phi_e = mk(edge_features + 2 * node_features + global_features, edge_out)
        self.phi_v = mk(node_features + edge_out + global_features, node_out)
        self.phi_u = mk(global_features + node_out + edge_out, global_out)

    def __call__(self, graph: GraphsTuple) -> GraphsTuple:
        n_nodes, n_graph = _sizes(graph)
        agg = _agg(self.agg)
        nmask, emask = _node_mask(graph), _edge_mask(graph)
        node_gid = node_graph_index(graph)
        edge_gid = node_gid[graph.receivers]
        v, e, u = graph.nodes, graph.edges, graph.globals
        e_new = self.phi_e(jnp.concatenate([e, v[graph.senders], v[graph.receivers], u[edge_gid]], -1))
        v_in = agg(e_new, graph.receivers, n_nodes, emask)
        v_new = self.phi_v(jnp.concatenate([v, v_in, u[node_gid]], -1))
        u_new = self.phi_u(jnp.concatenate([u, agg(v_new, node_gid, n_graph, nmask),
                                            agg(e_new, edge_gid, n_graph, emask)], -1))
        return zero_out_padding(graph._replace(nodes=v_new, edges=e_new, globals=u_new))


class GCN(nnx.Module):
    """Graph convolution, mean-aggregation form (A. Sznajder, "ML em HEP II", Escola INCT 2024):

        h'_v = act(W' h_v + W mean_{u in N(v)} h_u)

    over the incoming real edges (u -> v) of a padded GraphsTuple; returns it with new nodes.
    """

    def __init__(self, in_features: int, out_features: int, *, activation: str | None = "relu",
                 rngs: nnx.Rngs):
        self.self_dense = Dense(in_features, out_features, rngs=rngs)
        self.nbr_dense = Dense(in_features, out_features, use_bias=False, rngs=rngs)
        self.activation = None if activation is None else get_activation(activation)

    def __call__(self, graph: GraphsTuple) -> GraphsTuple:
        n_nodes, _ = _sizes(graph)
        h = graph.nodes
        mean = segment.segment_mean(h[graph.senders], graph.receivers, n_nodes, _edge_mask(graph))
        y = self.self_dense(h) + self.nbr_dense(mean)
        if self.activation is not None:
            y = self.activation(y)
        return zero_out_padding(graph._replace(nodes=y))


class GAT(nnx.Module):
    """Graph attention (Velickovic et al. 2018), multi-head, concatenated heads:

        z = W h;  a_uv = LeakyReLU_0.2(a_src . z_u + a_dst . z_v) over incoming edges u -> v,
        alpha = segment_softmax over v's incoming real edges;  h'_v = act(sum_u alpha_uv z_u)

    (add self-loop edges to the graph to let a node attend to itself). Output width
    heads * out_features.
    """

    def __init__(self, in_features: int, out_features: int, *, heads: int = 1,
                 activation: str | None = "elu", rngs: nnx.Rngs):
        self.heads, self.out_features = heads, out_features
        self.w = Dense(in_features, heads * out_features, use_bias=False, rngs=rngs)
        self.a_src = nnx.Param(inits.glorot_uniform(rngs.params(), (heads, out_features)))
        self.a_dst = nnx.Param(inits.glorot_uniform(rngs.params(), (heads, out_features)))
        self.activation = None if activation is None else get_activation(activation)

    def __call__(self, graph: GraphsTuple) -> GraphsTuple:
        n_nodes, _ = _sizes(graph)
        emask = _edge_mask(graph)
        z = self.w(graph.nodes).reshape(n_nodes, self.heads, self.out_features)
        src = jnp.sum(z * self.a_src[...], -1)   # (V, H)
        dst = jnp.sum(z * self.a_dst[...], -1)
        logits = jax.nn.leaky_relu(src[graph.senders] + dst[graph.receivers], 0.2)   # (E, H)
        alpha = segment.segment_softmax(logits, graph.receivers, n_nodes, emask)
        y = segment.segment_sum(alpha[..., None] * z[graph.senders], graph.receivers, n_nodes, emask)
        y = y.reshape(n_nodes, self.heads * self.out_features)
        if self.activation is not None:
            y = self.activation(y)
        return zero_out_padding(graph._replace(nodes=y))
