"""LRP for hepjax's jet taggers: ParticleNet (``hepjax.models.particlenet``) and the Particle
Transformer (``hepjax.models.part``), in eval mode.

Each ``*_forward(model, ...)`` re-writes the model's eval-mode forward pass with the primitives
of ``hepjax.explain.lrp`` and the model's own parameters (read from the nnx module, not copied),
so that input x gradient is LRP; ``tests/explain`` checks that it gives the model's own logits.
``explain_jets`` returns the per-constituent relevance (summed over the input features) of the
logit difference z_top - z_QCD, and ``bias_relevance`` the part the biases absorbed, so that
sum(relevance) + bias part = output (the conservation check on real models).

Layer by layer (see ``hepjax.explain.lrp`` for the rules):
  ParticleNet (H. Qu, L. Gouskos, "ParticleNet: jet tagging via particle clouds",
  Phys. Rev. D 101 (2020) 056019): input BatchNorm (affine, bias absorbs); EdgeConv: the edge
  features [x_i, x_j - x_i] are a linear bias-free map of the node features (exact), the edge
  MLP Dense(rule) -> BatchNorm -> ReLU, the mean over the k neighbours is message passing with
  A = 1/k (max aggregation: winner-take-all), the kNN graph (static on (eta, phi), dynamic on
  the features later) is held fixed, the shortcut Dense(rule) -> BatchNorm, the final ReLU;
  mean over particles (linear); Dense(rule) -> ReLU -> Dense(rule).
  ParT (H. Qu, C. Li, S. Qian, "Particle Transformer for jet tagging", ICML 2022): particle
  embedding LayerNorm (1/sigma fixed) -> Dense(rule) -> GELU (identity rule); the pair
  embedding only enters the attention logits, which are held fixed (Ali et al. 2022), so the
  pair features get no relevance: all relevance reaches the particles through the attention
  values, residual paths and the class token's attention; head and residual scales are linear.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax.explain import lrp
from hepjax.graphs import build as graph_build
from hepjax.nn.attention import padding_mask

Array = jax.Array

__all__ = ["particlenet_forward", "part_forward", "forward_fn", "explain_jets",
           "bias_relevance", "BIAS_LEAVES"]

# parameter / statistic names that enter the forward pass as pure additive terms
BIAS_LEAVES = ("bias", "mean", "cls_token")


def _p(v):
    return v[...]


def _bn(norm, x, mask, eps):
    return lrp.batch_norm(x, _p(norm.mean), _p(norm.var), _p(norm.scale), _p(norm.bias),
                          float(norm.epsilon), mask=mask, eps=eps)


def _ln(norm, x):
    return lrp.layer_norm(x, _p(norm.scale), _p(norm.bias), float(norm.epsilon))


def _dense(layer, x, rule):
    return lrp.dense(x, _p(layer.kernel), None if layer.bias is None else _p(layer.bias), rule)


def _check_target(out_layer, target):
    n = out_layer.kernel[...].shape[1]
    if target == "diff" and n != 2:
        raise ValueError(f"LRP: target='diff' needs 2 output logits, the model has {n}")
    if target not in (None, "diff") and not 0 <= int(target) < n:
        raise ValueError(f"LRP: target={target} is not one of the model's {n} logits")


def _head(out_layer, h, rule, target):
    """The output Dense, explaining logit `target` (int) or, with target='diff', z_1 - z_0."""
    _check_target(out_layer, target)
    w, b = _p(out_layer.kernel), None if out_layer.bias is None else _p(out_layer.bias)
    if target == "diff":
        w, b = w[:, 1:] - w[:, :1], None if b is None else b[1:] - b[:1]
    elif target is not None:
        t = int(target)
        w, b = w[:, t:t + 1], None if b is None else b[t:t + 1]
    out = lrp.dense(h, w, b, rule)
    return out if target is None else out[..., 0]


# ---------------------------------------------------------------------------------- ParticleNet
def _edge_conv(conv, x, mask, coords, rule):
    idx, valid = graph_build.knn(jax.lax.stop_gradient(coords), mask, conv.k,
                                 distance_fn=conv.distance_fn)
    xi = jnp.broadcast_to(x[:, :, None, :], idx.shape + (x.shape[-1],))
    xj = graph_build.gather_neighbours(x, idx)
    h = jnp.concatenate([xi, xj - xi], axis=-1)
    for i, layer in enumerate(conv.layers):
        h = _dense(layer, h, rule)
        if conv.norms[i] is not None:
            h = _bn(conv.norms[i], h, valid, rule.eps)
        h = jax.nn.relu(h)
    agg = lrp.neighbour_reduce(h, valid, conv.aggregation, rule.eps)
    m = mask[..., None]
    if not conv.use_shortcut:
        return jnp.where(m, jax.nn.relu(agg), 0.0)
    sc = x
    if conv.sc is not None:
        sc = _dense(conv.sc, x, rule)
        if conv.sc_norm is not None:
            sc = _bn(conv.sc_norm, sc, mask, rule.eps)
    return jnp.where(m, jax.nn.relu(sc + agg), 0.0)


def particlenet_forward(model, features: Array, mask: Array, rule: lrp.Rule = lrp.epsilon(),
                        target="diff") -> Array:
    """ParticleNet's eval-mode forward with LRP backward passes: features (B, N, F), mask (B, N)
    -> logit `target` (B,) (int, or 'diff' = z_1 - z_0), or all logits (B, O) for
    target=None."""
    mask = jnp.asarray(mask, bool)
    fts = jnp.where(mask[..., None], features, 0.0)
    points = fts[..., jnp.asarray(model.coord_index)]
    if model.bn_fts is not None:
        fts = _bn(model.bn_fts, fts, mask, rule.eps)
    outputs = []
    for i, conv in enumerate(model.edge_convs):
        fts = _edge_conv(conv, fts, mask, points if i == 0 else fts, rule)
        outputs.append(fts)
    if model.fusion is not None:
        fts = jax.nn.relu(_bn(model.fusion_bn, _dense(model.fusion, jnp.concatenate(outputs, -1),
                                                      rule), mask, rule.eps))
    count = jnp.maximum(jnp.sum(mask, -1, keepdims=True), 1).astype(fts.dtype)
    x = jnp.sum(jnp.where(mask[..., None], fts, 0.0), axis=-2) / count
    for dense in model.fcs:
        x = jax.nn.relu(_dense(dense, x, rule))
    return _head(model.out, x, rule, target)


# ----------------------------------------------------------------------------------------- ParT
def _mha(attn, x, context, mask, bias, rule):
    ctx = x if context is None else context
    e, nh = attn.embed_dim, attn.num_heads
    wkv = _p(attn.kv_proj.kernel)
    bkv = None if attn.kv_proj.bias is None else _p(attn.kv_proj.bias)
    sg = jax.lax.stop_gradient
    q = sg(x) @ sg(_p(attn.q_proj.kernel))
    k = sg(ctx) @ sg(wkv[:, :e])
    if attn.q_proj.bias is not None:
        q, k = q + sg(_p(attn.q_proj.bias)), k + sg(bkv[:e])
    v = lrp.dense(ctx, wkv[:, e:], None if bkv is None else bkv[e:], rule)
    split = lambda t: t.reshape(*t.shape[:-1], nh, e // nh)  # noqa: E731
    weights = lrp.attention_weights(split(q), split(k), bias=bias, mask=mask)
    out = lrp.attention(weights, split(v), rule.eps)
    return _dense(attn.out_proj, out.reshape(*out.shape[:-2], e), rule)


def _part_block(blk, x, mask, rule, act, *, bias=None, cls=None, bias_masks_keys=False):
    if cls is not None:
        u = _ln(blk.pre_attn_norm, jnp.concatenate([cls, x], axis=1))
        key_mask = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask], axis=1)
        residual = cls
        h = _mha(blk.attn, cls, u, padding_mask(key_mask), None, rule)
    else:
        residual = x
        own_mask = bias is None or not bias_masks_keys
        h = _mha(blk.attn, _ln(blk.pre_attn_norm, x), None,
                 padding_mask(mask) if own_mask else None, bias, rule)
    b, t, _ = h.shape
    h = (h.reshape(b, t, blk.num_heads, -1) * _p(blk.head_scale)[:, None]).reshape(b, t, -1)
    h = _ln(blk.post_attn_norm, h) + residual
    y = lrp.passthrough(act, _dense(blk.fc1, _ln(blk.pre_fc_norm, h), rule))
    y = _dense(blk.fc2, _ln(blk.post_fc_norm, y), rule)
    return y + _p(blk.resid_scale) * h


def part_forward(model, features: Array, mask: Array, vectors: Array | None = None,
                 rule: lrp.Rule = lrp.epsilon(), target="diff") -> Array:
    """ParticleTransformer's eval-mode forward with LRP backward passes: features (B, N, F),
    mask (B, N), vectors (B, N, 4) (E, px, py, pz) (needed with pair features) -> logit
    `target` (B,) (int, or 'diff' = z_1 - z_0), or all logits (B, O) for target=None."""
    mask = jnp.asarray(mask, bool)
    m = mask[..., None]
    act = model.activation
    x = _bn(model.input_norm, jnp.where(m, features, 0.0), mask, rule.eps)
    for norm, dense in zip(model.embed_norms, model.embed_denses):
        x = lrp.passthrough(act, _dense(dense, _ln(norm, x), rule))
    x = jnp.where(m, x, 0.0)
    bias = None
    if model.pair_embed is not None:
        if vectors is None:
            raise ValueError("part_forward: the model uses pair features; pass vectors (B, N, 4)")
        if not model.pair_embed.input_norm.use_running_average:
            raise ValueError("part_forward: the model is in training mode (its pair embedding "
                             "would update BatchNorm statistics); call model.eval() first")
        vectors = jnp.where(m, vectors, 0.0)
        bias = jax.lax.stop_gradient(model.pair_embed(vectors, mask, mask_keys=True))
    for blk in model.blocks:
        x = _part_block(blk, x, mask, rule, act, bias=bias, bias_masks_keys=bias is not None)
    if model.cls_token is not None:
        cls = jnp.broadcast_to(_p(model.cls_token), (x.shape[0], 1, x.shape[-1]))
        for blk in model.cls_blocks:
            cls = _part_block(blk, x, mask, rule, act, cls=cls)
        pooled = cls[:, 0]
    else:
        count = jnp.maximum(jnp.sum(m, axis=1), 1).astype(x.dtype)
        pooled = jnp.sum(jnp.where(m, x, 0.0), axis=1) / count
    h = _ln(model.norm, pooled)
    for fc in model.fcs:
        h = jax.nn.relu(_dense(fc, h, rule))
    return _head(model.out, h, rule, target)


# ------------------------------------------------------------------------------------- drivers
def forward_fn(model):
    """The LRP forward for a model instance: particlenet_forward or part_forward."""
    from hepjax.models.part import ParticleTransformer
    from hepjax.models.particlenet import ParticleNet
    if isinstance(model, ParticleNet):
        return lambda mdl, f, m, v, rule, target: particlenet_forward(mdl, f, m, rule, target)
    if isinstance(model, ParticleTransformer):
        return part_forward
    raise TypeError(f"hepjax.explain.taggers: no LRP forward for {type(model).__name__}; "
                    "supported: ParticleNet, ParticleTransformer")


def explain_jets(model, features: Array, mask: Array, vectors: Array | None = None, *,
                 rule: lrp.Rule = lrp.epsilon(), target="diff"):
    """(output (B,), relevance (B, N, F) per input feature). The forward uses the running
    BatchNorm statistics whatever the module's mode (ParT: call model.eval() first). Sum the
    last axis for the relevance per constituent. Padded constituents get exactly 0."""
    fwd = forward_fn(model)
    _check_target(model.out, target)
    return lrp.relevance(lambda f: fwd(model, f, mask, vectors, rule, target), features)


def bias_relevance(model, features: Array, mask: Array, vectors: Array | None = None, *,
                   rule: lrp.Rule = lrp.epsilon(), target="diff") -> Array:
    """(B,) relevance absorbed by the biases (every parameter or statistic named in BIAS_LEAVES:
    Dense and LayerNorm biases, BatchNorm shifts bias - mean a, the class token), computed as
    sum of leaf x d output / d leaf with the LRP backward passes, one example at a time."""
    fwd = forward_fn(model)
    graphdef, state = nnx.split(model)

    def one(f, m, v):
        def out(st):
            return fwd(nnx.merge(graphdef, st), f[None], m[None],
                       None if v is None else v[None], rule, target)[0]
        grads = jax.grad(out, allow_int=True)(state)
        total = jnp.zeros((), f.dtype)
        for (path, leaf), (_, g) in zip(nnx.to_flat_state(state), nnx.to_flat_state(grads)):
            if str(path[-1]) in BIAS_LEAVES:
                total = total + jnp.sum(leaf[...] * g[...])
        return total

    return jax.lax.map(lambda a: one(*a), (features, mask, vectors)) if vectors is not None \
        else jax.lax.map(lambda a: one(a[0], a[1], None), (features, mask))
