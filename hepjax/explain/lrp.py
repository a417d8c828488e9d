"""Layer-wise relevance propagation (LRP) in JAX, as gradient x input through modified backward
passes.

References
  * S. Bach, A. Binder, G. Montavon, F. Klauschen, K.-R. Mueller, W. Samek, "On pixel-wise
    explanations for non-linear classifier decisions by layer-wise relevance propagation",
    PLoS ONE 10 (2015) e0130140 (LRP, conservation).
  * G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Mueller, "Layer-wise relevance
    propagation: an overview", in Explainable AI, LNCS 11700 (2019) (the LRP-0, epsilon, gamma
    and z+ rules, and their implementation as a modified gradient).
  * T. Schnake et al., "Higher-order explanations of graph neural networks via relevant walks"
    (GNN-LRP), IEEE TPAMI 44 (2022) (message passing as a linear map with fixed adjacency).
  * A. Ali, T. Schnake, O. Eberle, G. Montavon, K.-R. Mueller, L. Wolf, "XAI for Transformers:
    better explanations through conservative propagation", ICML 2022 (attention weights and
    LayerNorm's 1/sigma held constant in the backward pass: "AH" and "LN" rules).
  * F. Mokhtar, R. Kansal, D. Diaz, J. Duarte, J. Pata, M. Pierini, S. Vallecorsa, "Explaining
    machine-learned particle-flow reconstruction", arXiv:2111.12840 (LRP through MLPF's graph
    layers: R_j = sum_k x_j A_jk / sum_m x_m A_mk R_k).

How it works (the design choice)
  A model is written once with the primitives of this module (``dense``, ``passthrough``,
  ``message_passing``, ``neighbour_reduce``, ``attention``, ``layer_norm``, ``batch_norm``,
  ``binned_message_passing``; everything else plain ``jax.numpy``) and relevance is
  ``input * jax.grad(output)`` (``relevance``). The primitives have modified backward passes
  (``jax.custom_vjp``) such that the cotangent carried backward is always c = R / a, the
  relevance per unit of activation: for a layer a_out = layer(a_in), the backward maps c_out to
  c_in with a_in * c_in = (the rule's R_in for R_out = a_out * c_out). Composed by the chain
  rule, input * gradient is then exactly the layer-by-layer LRP of Bach et al. / Montavon et al.
  The same forward gives the model's value (the primitives' forwards are the ordinary layers),
  which the model adapters check against the original module. No division by activations ever
  happens (only by the rule's denominators, which carry the epsilon stabiliser).

  Operations that are linear and bias-free (sums, means, gathers, permutations, concatenations,
  residual additions, reshapes, x_j - x_i, mean-centring) need no custom rule: for y = L x,
  sum_i x_i (L^T c)_i = sum_j y_j c_j, so the ordinary gradient is LRP-0 and conserves exactly.
  ReLU needs none either: its gradient 1[z > 0] equals relu(z) / z (relevance passes through).

Rules (``Rule``), for z_j = sum_i x_i w_ij + b_j with incoming relevance R_j:
  epsilon: R_i = sum_j x_i w_ij / (z_j + eps sign z_j) R_j. The bias keeps
           b_j / (z_j + eps sign z_j) R_j ("absorbed"); with eps -> 0 and b = 0, sum R_i = sum R_j.
           eps = 0 is LRP-0, which on a ReLU network with zero biases is gradient x input.
  gamma:   w -> w + gamma w^+, b -> b + gamma b^+ in numerator and denominator,
           R_i = sum_j x_i (w_ij + gamma w_ij^+) / (z'_j + eps sign z'_j) R_j,
           z'_j = sum_i x_i (w_ij + gamma w_ij^+) + b_j + gamma b_j^+; meant for x >= 0
           (after ReLU), favouring positive contributions.
  zplus:   R_i = sum_j x_i w_ij^+ / (sum_i' x_i' w_i'j^+ + eps) R_j (bias ignored: nothing is
           absorbed, it conserves even with biases); meant for x >= 0 (Montavon et al.'s z+).
  The stabiliser uses sign(0) = +1; a neuron whose denominator is exactly 0 (possible only at
  eps = 0) passes no relevance (its R_j = z_j c_j is 0 too for epsilon/gamma).
Bias relevance: for every primitive with a bias, the cotangent returned for the bias b is
  defined so that b * grad_b is the relevance the bias absorbs. Summing input * grad_input and
  bias * grad_bias over all inputs and biases gives the output exactly for eps -> 0 (used to
  check conservation on real models, whose biases are not zero).

Non-linear layers other than ReLU:
  passthrough(f): element-wise f with f(0) = 0 (GELU, SiLU, ...): R_in = R_out (the identity
    rule; backward c_in = c_out f(z) / z).
  message passing / attention / learned adjacency: y_k = sum_j A_jk x_j with A held constant
    (stop_gradient; for attention the softmax weights, Ali et al.): R_j = sum_k x_j A_jk /
    (y_k + eps sign y_k) R_k per channel (Mokhtar et al.'s formula). Whatever produced A (the
    queries, keys, the pair-feature bias of ParT, the distances of GravNet, a kNN search) gets
    no relevance: relevance flows only along the values / messages.
  neighbour_reduce(how='max'): winner-take-all: all relevance of y_c = max_k h_kc goes to the
    (first) maximising neighbour k (conservative because y_c = h_kc there).
  layer_norm: y = (x - mean x) / sigma * scale + bias with sigma held constant (Ali et al.'s
    LN rule): centring is linear and bias-free, so relevance is conserved up to the bias.
  batch_norm (eval mode): a per-channel affine map, x a + b with b = beta - mean a, LRP-0 with
    the bias absorbing b c (same as folding it into the preceding Dense).
  binned_message_passing (LSH bins, MLPF): permute x by the (locality-sensitive) sort, split into
    fixed-size bins, message passing with a block-diagonal adjacency inside each bin, undo the
    permutation. The permutation and the bins are linear and bias-free: relevance goes back
    through the inverse permutation and the block-diagonal adjacency (equal to
    ``message_passing`` with the full block-diagonal N x N adjacency, tested).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["Rule", "epsilon", "gamma", "zplus", "lrp0", "dense", "affine", "passthrough",
           "message_passing", "edge_message_passing", "neighbour_reduce", "attention",
           "attention_weights", "layer_norm", "batch_norm", "binned_message_passing",
           "relevance", "RULES"]


class Rule(NamedTuple):
    """An LRP rule for affine layers: kind 'epsilon' | 'gamma' | 'zplus', its stabiliser eps
    (>= 0) and gamma (>= 0, used by 'gamma'). Hashable: passed as a static argument."""
    kind: str = "epsilon"
    eps: float = 1e-6
    gamma: float = 0.0


RULES = ("epsilon", "gamma", "zplus")


def _check_rule(rule: Rule) -> Rule:
    if not isinstance(rule, Rule):
        raise TypeError(f"LRP: rule must be an hepjax.explain.lrp.Rule (use lrp.epsilon(...), "
                        f"lrp.gamma(...), lrp.zplus(...)), got {type(rule).__name__}")
    if rule.kind not in RULES:
        raise ValueError(f"LRP: rule kind {rule.kind!r}; valid: {RULES}")
    if rule.eps < 0 or rule.gamma < 0:
        raise ValueError(f"LRP: rule {rule} needs eps >= 0 and gamma >= 0")
    return rule


def epsilon(eps: float = 1e-6) -> Rule:
    """LRP-epsilon (Bach et al. 2015; Montavon et al. 2019 eq. (5))."""
    return _check_rule(Rule("epsilon", float(eps), 0.0))


def lrp0() -> Rule:
    """LRP-0: epsilon with eps = 0 (gradient x input on ReLU networks without biases)."""
    return epsilon(0.0)


def gamma(g: float = 0.25, eps: float = 1e-6) -> Rule:
    """LRP-gamma (Montavon et al. 2019 eq. (4) with the epsilon stabiliser)."""
    return _check_rule(Rule("gamma", float(eps), float(g)))


def zplus(eps: float = 1e-9) -> Rule:
    """LRP-z+ (Montavon et al. 2019; the gamma -> infinity limit, bias ignored)."""
    return _check_rule(Rule("zplus", float(eps), 0.0))


def _stab(z: Array, eps: float) -> Array:
    """z + eps sign(z), sign(0) = +1."""
    return z + eps * jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def _ratio(num: Array, den: Array, eps: float) -> Array:
    """num / (den + eps sign den), 0 where that denominator is exactly 0."""
    d = _stab(den, eps)
    safe = jnp.where(d == 0, jnp.ones_like(d), d)
    return jnp.where(d == 0, jnp.zeros_like(num), num / safe)


def _sum_to(x: Array, shape) -> Array:
    """Sums the leading (batch) axes of x down to `shape` (a bias's shape)."""
    extra = x.ndim - len(shape)
    return jnp.sum(x, axis=tuple(range(extra))) if extra > 0 else x


# ------------------------------------------------------------------------------ affine layers
def _rule_weights(kernel, bias, rule: Rule):
    """(kernel', bias', bias_factor) of the rule: the weights in numerator/denominator, and
    b'/b (the factor that turns the bias cotangent into b'-relevance, see the module doc)."""
    if rule.kind == "epsilon":
        return kernel, bias, None
    if rule.kind == "gamma":
        kp = kernel + rule.gamma * jnp.maximum(kernel, 0)
        if bias is None:
            return kp, None, None
        return kp, bias + rule.gamma * jnp.maximum(bias, 0), 1.0 + rule.gamma * (bias > 0)
    return jnp.maximum(kernel, 0), None, None  # zplus: bias ignored


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _dense(x, kernel, bias, rule):
    z = x @ kernel
    return z if bias is None else z + bias


def _dense_fwd(x, kernel, bias, rule):
    z = _dense(x, kernel, bias, rule)
    return z, (x, kernel, bias, z)


def _dense_bwd(rule, res, g):
    x, kernel, bias, z = res
    kp, bp, bfac = _rule_weights(kernel, bias, rule)
    zp = z if rule.kind == "epsilon" else (x @ kp if bp is None else x @ kp + bp)
    s = _ratio(g * z, zp, rule.eps)              # R_j / denominator_j
    dx = s @ kp.T
    if bias is None:
        db = None
    elif rule.kind == "zplus":
        db = jnp.zeros_like(bias)
    else:
        db = _sum_to(s if bfac is None else s * bfac, bias.shape)
    return dx, jnp.zeros_like(kernel), db


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense(x: Array, kernel: Array, bias: Array | None = None, rule: Rule = Rule()) -> Array:
    """z = x @ kernel + bias (x (..., I), kernel (I, O), bias (O,) or None) with the backward of
    `rule` (module docstring). The kernel gets a zero cotangent (relevance is not attributed to
    weights)."""
    rule = _check_rule(rule)
    if kernel.ndim != 2 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"lrp.dense: x (..., {kernel.shape[0] if kernel.ndim == 2 else 'I'}) and "
                         f"kernel (I, O) expected, got x {tuple(x.shape)}, kernel "
                         f"{tuple(kernel.shape)}")
    if bias is not None and tuple(bias.shape) != (kernel.shape[1],):
        raise ValueError(f"lrp.dense: bias must be ({kernel.shape[1]},), got {tuple(bias.shape)}")
    return _dense(x, kernel, bias, rule)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _affine(x, scale, shift, eps):
    return x * scale + shift


def _affine_fwd(x, scale, shift, eps):
    u = x * scale
    return u + shift, (scale, u, shift)


def _affine_bwd(eps, res, g):
    scale, u, shift = res
    z = u + shift
    s = _ratio(g * z, z, eps)
    return s * scale, jnp.zeros_like(scale), _sum_to(s, shift.shape)


_affine.defvjp(_affine_fwd, _affine_bwd)


def affine(x: Array, scale: Array, shift: Array, eps: float = 0.0) -> Array:
    """Per-channel y = x * scale + shift with the epsilon rule (a diagonal dense layer): the
    shift absorbs shift / (y + eps sign y) R. eps = 0: the plain gradient."""
    return _affine(x, scale, shift, float(eps))


def batch_norm(x: Array, mean: Array, var: Array, scale: Array, bias: Array, epsilon_bn: float,
               mask: Array | None = None, eps: float = 0.0) -> Array:
    """Eval-mode BatchNorm (running statistics) as the affine map x a + (bias - mean a),
    a = scale / sqrt(var + epsilon_bn); positions with mask False are set to 0 (as
    ``hepjax.nn.BatchNorm``). The shift is a differentiable function of `bias` and `mean`, so
    bias * grad_bias + mean * grad_mean is the absorbed relevance."""
    a = scale * jax.lax.rsqrt(var + epsilon_bn)
    y = affine(x, jax.lax.stop_gradient(a), bias - mean * jax.lax.stop_gradient(a), eps)
    if mask is not None:
        y = jnp.where(jnp.asarray(mask, bool)[..., None], y, jnp.zeros((), y.dtype))
    return y


def layer_norm(x: Array, scale: Array, bias: Array, epsilon_ln: float = 1e-5) -> Array:
    """LayerNorm over the last axis with 1/sigma held constant in the backward pass (Ali et al.
    2022): (x - mean x) is linear and bias-free, scale multiplies, bias absorbs bias * c."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    xc = x - mean
    inv = jax.lax.stop_gradient(jax.lax.rsqrt(jnp.mean(jnp.square(xc), -1, keepdims=True)
                                              + epsilon_ln))
    return xc * inv * jax.lax.stop_gradient(scale) + bias


# ------------------------------------------------------------------------ element-wise maps
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _passthrough(f, z):
    return f(z)


def _passthrough_fwd(f, z):
    y = f(z)
    return y, (z, y)


def _passthrough_bwd(f, res, g):
    z, y = res
    safe = jnp.where(z == 0, jnp.ones_like(z), z)
    return (jnp.where(z == 0, jnp.zeros_like(z), g * y / safe),)


_passthrough.defvjp(_passthrough_fwd, _passthrough_bwd)


def passthrough(f: Callable[[Array], Array], z: Array) -> Array:
    """f(z) element-wise (f(0) = 0: GELU, SiLU, ReLU, ...) with the identity rule R_in = R_out
    (backward c_in = c_out f(z) / z). For ReLU this equals the ordinary gradient."""
    return _passthrough(f, z)


# ----------------------------------------------------------------- message passing / attention
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _aggregate(x, adj, eps):
    return jnp.einsum("...jk,...jc->...kc", adj, x)


def _aggregate_fwd(x, adj, eps):
    y = _aggregate(x, adj, eps)
    return y, (adj, y)


def _aggregate_bwd(eps, res, g):
    adj, y = res
    s = _ratio(g * y, y, eps)
    return jnp.einsum("...jk,...kc->...jc", adj, s), jnp.zeros_like(adj)


_aggregate.defvjp(_aggregate_fwd, _aggregate_bwd)


def message_passing(x: Array, adjacency: Array, eps: float = 0.0) -> Array:
    """y[..., k, c] = sum_j A[..., j, k] x[..., j, c] (messages j -> k) with A held constant:
    R_jc = sum_k x_jc A_jk / (y_kc + eps sign y_kc) R_kc (Mokhtar et al.; GNN-LRP's linear
    step). x (..., N, C), adjacency (..., N, M) -> (..., M, C). A learned / data-dependent
    adjacency (GravNet weights, attention, kNN with mean weights) is used as given and gets no
    relevance."""
    if x.ndim < 2 or adjacency.ndim < 2 or adjacency.shape[-2] != x.shape[-2]:
        raise ValueError(f"lrp.message_passing: x (..., N, C) and adjacency (..., N, M) with the "
                         f"same N expected, got x {tuple(x.shape)}, adjacency "
                         f"{tuple(adjacency.shape)}")
    return _aggregate(x, jax.lax.stop_gradient(adjacency).astype(x.dtype), float(eps))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _edge_mp(x, senders, receivers, weights, num_nodes, eps):
    msg = x[senders] * weights[:, None]
    return jax.ops.segment_sum(msg, receivers, num_nodes)


def _edge_mp_fwd(x, senders, receivers, weights, num_nodes, eps):
    y = _edge_mp(x, senders, receivers, weights, num_nodes, eps)
    return y, (x, senders, receivers, weights, y)


def _edge_mp_bwd(num_nodes, eps, res, g):
    x, senders, receivers, weights, y = res
    s = _ratio(g * y, y, eps)
    dx = jax.ops.segment_sum(s[receivers] * weights[:, None], senders, x.shape[0])
    zero_int = lambda a: jnp.zeros(a.shape, jax.dtypes.float0)  # noqa: E731
    return dx, zero_int(senders), zero_int(receivers), jnp.zeros_like(weights)


_edge_mp.defvjp(_edge_mp_fwd, _edge_mp_bwd)


def edge_message_passing(x: Array, senders: Array, receivers: Array, weights: Array | None = None,
                         num_nodes: int | None = None, eps: float = 0.0) -> Array:
    """Edge-list message passing y_k = sum_{e: receiver k} w_e x_{sender e} (x (N, C); senders,
    receivers (E,) int; weights (E,) or None = 1) with A held constant, the same rule as
    ``message_passing`` (A_jk = sum of w_e over edges j -> k). For a kNN graph use
    ``hepjax.graphs.build.to_edge_list``; mask invalid edges with weight 0."""
    if x.ndim != 2 or senders.shape != receivers.shape or senders.ndim != 1:
        raise ValueError(f"lrp.edge_message_passing: x (N, C), senders and receivers (E,) "
                         f"expected, got x {tuple(x.shape)}, senders {tuple(senders.shape)}, "
                         f"receivers {tuple(receivers.shape)}")
    w = (jnp.ones(senders.shape, x.dtype) if weights is None
         else jax.lax.stop_gradient(weights).astype(x.dtype))
    n = x.shape[0] if num_nodes is None else int(num_nodes)
    return _edge_mp(x, jnp.asarray(senders, jnp.int32), jnp.asarray(receivers, jnp.int32), w, n,
                    float(eps))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _max_k(h, valid, axis):
    return jnp.max(jnp.where(valid, h, -jnp.inf), axis=axis)


def _max_k_fwd(h, valid, axis):
    hm = jnp.where(valid, h, -jnp.inf)
    arg = jnp.argmax(hm, axis=axis)
    return jnp.max(hm, axis=axis), (arg, valid)


def _max_k_bwd(axis, res, g):
    arg, valid = res
    onehot = jax.nn.one_hot(arg, valid.shape[axis], axis=axis, dtype=g.dtype)
    return jnp.expand_dims(g, axis) * onehot, jnp.zeros(valid.shape, jax.dtypes.float0)


_max_k.defvjp(_max_k_fwd, _max_k_bwd)


def neighbour_reduce(h: Array, valid: Array, how: str = "mean", eps: float = 0.0) -> Array:
    """Reduces neighbour messages h (..., N, k, C) over k with valid (..., N, k), as
    ``hepjax.graphs.blocks.neighbour_reduce``: 'sum', 'mean' (over the valid count, >= 1) — the
    message-passing rule with A = 1 or 1/count — or 'max' (winner-take-all: the relevance of
    each output channel goes to its maximising neighbour; 0 output, no relevance, where no
    neighbour is valid)."""
    valid = jnp.asarray(valid, bool)
    if h.ndim < 3 or tuple(valid.shape) != tuple(h.shape[:-1]):
        raise ValueError(f"lrp.neighbour_reduce: h (..., N, k, C) and valid (..., N, k) expected, "
                         f"got h {tuple(h.shape)}, valid {tuple(valid.shape)}")
    if how in ("sum", "mean"):
        w = valid.astype(h.dtype)
        if how == "mean":
            w = w / jnp.maximum(jnp.sum(w, -1, keepdims=True), 1)
        # (…, N, k, C) -> (…, N, C): message passing with a (k, 1) adjacency per point
        out = message_passing(h, w[..., None], eps)
        return out[..., 0, :]
    if how == "max":
        m = _max_k(h, valid[..., None], h.ndim - 2)
        return jnp.where(jnp.any(valid, -1)[..., None], m, jnp.zeros((), h.dtype))
    raise ValueError(f"lrp.neighbour_reduce: how={how!r}; valid: 'sum', 'mean', 'max'")


def attention_weights(q: Array, k: Array, bias: Array | None = None,
                      mask: Array | None = None) -> Array:
    """softmax(q k^T / sqrt(D) + bias) per head: q (..., Tq, H, D), k (..., Tk, H, D),
    bias / mask broadcastable to (..., H, Tq, Tk) -> (..., H, Tq, Tk), False keys weight 0
    (as ``hepjax.nn.attention.dot_product_attention``), under stop_gradient."""
    scale = 1.0 / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype))
    logits = jnp.einsum("...qhd,...khd->...hqk", q * scale, k)
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
        w = jax.nn.softmax(logits, axis=-1)
        w = jnp.where(jnp.any(mask, -1, keepdims=True), w, 0.0)
    else:
        w = jax.nn.softmax(logits, axis=-1)
    return jax.lax.stop_gradient(jnp.nan_to_num(w))


def attention(weights: Array, v: Array, eps: float = 0.0) -> Array:
    """out[..., q, h, :] = sum_k weights[..., h, q, k] v[..., k, h, :] with the weights held
    constant (Ali et al.'s AH rule): the message-passing rule with A_kq = weights_qk per head.
    weights (..., H, Tq, Tk), v (..., Tk, H, D) -> (..., Tq, H, D)."""
    vh = jnp.swapaxes(v, -2, -3)                        # (..., H, Tk, D)
    out = message_passing(vh, jnp.swapaxes(weights, -1, -2), eps)  # (..., H, Tq, D)
    return jnp.swapaxes(out, -2, -3)


def binned_message_passing(x: Array, perm: Array, adjacency: Array, eps: float = 0.0) -> Array:
    """LSH-binned graph layer's message passing (MLPF, Pata et al. 2021): x (N, C) sorted by
    perm (N,) (``hepjax.graphs.build.lsh_permutation``), split into B = N / S bins of S
    elements, y_bin = message_passing(x_bin, adjacency[bin]) with adjacency (B, S, S) (messages
    j -> k inside a bin), and unsorted. The permutation is linear and bias-free: relevance goes
    back through the inverse permutation; inside a bin it is Mokhtar et al.'s rule."""
    n = x.shape[0]
    bad_adj = (adjacency.ndim != 3 or adjacency.shape[1] != adjacency.shape[2]
               or adjacency.shape[0] * adjacency.shape[1] != n)
    if x.ndim != 2 or perm.shape != (n,) or bad_adj:
        raise ValueError(f"lrp.binned_message_passing: x (N, C), perm (N,), adjacency (N / S, S, S)"
                         f" expected, got x {tuple(x.shape)}, perm {tuple(perm.shape)}, adjacency "
                         f"{tuple(adjacency.shape)}")
    nb, s = adjacency.shape[:2]
    perm = jax.lax.stop_gradient(jnp.asarray(perm, jnp.int32))
    binned = x[perm].reshape(nb, s, x.shape[-1])
    y = message_passing(binned, adjacency, eps).reshape(n, -1)
    return jnp.zeros_like(y).at[perm].set(y)


# --------------------------------------------------------------------------------- relevance
def relevance(fn: Callable[..., Array], *inputs: Array, argnums=0):
    """(output, input relevance) for fn(*inputs) -> (B,) or scalar output to explain (e.g. one
    logit or a logit difference per example). Relevance = input * d sum(output) / d input of the
    LRP-modified backward; with argnums a tuple, a tuple of relevances. Examples of a batch do
    not mix (eval-mode models), so summing the outputs explains each example separately."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    def f(*diff):
        args = list(inputs)
        for i, a in zip(nums, diff):
            args[i] = a
        return fn(*args)

    y, vjp = jax.vjp(f, *(inputs[i] for i in nums))
    grads = vjp(jnp.ones_like(y))
    rel = tuple(inputs[i] * g for i, g in zip(nums, grads))
    return y, rel[0] if isinstance(argnums, int) else rel
