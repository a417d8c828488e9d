"""LRP for MLPF (``hepjax.models.mlpf``): which detector elements drive one element's
prediction (F. Mokhtar et al., "Explaining machine-learned particle-flow reconstruction",
arXiv:2111.12840).

``mlpf_forward`` re-writes MLPF's forward pass (eval; no dropout or BatchNorm in the model) with
the primitives of ``hepjax.explain.lrp`` and the model's own parameters:
  * ``inputs(x)`` (one-hot type, logs, scalings; with ``physics_inputs`` also the
    track-cluster link inputs of ``hepjax.pf.links``) is kept as the input layer: relevance is
    attributed to the model inputs (B, N, 16 or 27) and summed per element;
  * embedding: Dense(rule) -> GELU (identity rule) -> Dense(rule);
  * each CombinedGraphLayer: the distance embedding c = Linear(h), the bin permutation and
    the Gaussian kernels A_ij = exp(-|c_i - c_j|^2) (row-normalised inside a bin) are held fixed
    (they decide *who* talks to whom); the messages W_msg h_j (Dense(rule)) are passed with
    Mokhtar et al.'s rule inside each bin (``lrp.binned_message_passing``: the permutation is
    undone exactly, relevance goes back through the inverse permutation); the shifted second
    binning (``shift=True``) is averaged with fixed weights; h <- LayerNorm(h + GELU(W_self h +
    m)) with LayerNorm's 1/sigma fixed (Ali et al. 2022);
  * the classification decoder on [embedding, last hidden]: Dense(rule) -> GELU -> Dense(rule).
The explained output is the logit of class ``cls`` at element ``element`` of each event.
Relevance on other elements can only arrive through the bins that element shared with them in
some layer (and, over several layers, through chains of bins).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax.explain import lrp

Array = jax.Array

__all__ = ["mlpf_forward", "explain_element", "bias_relevance"]


def _dense(layer, x, rule):
    return lrp.dense(x, layer.kernel[...], None if layer.bias is None else layer.bias[...], rule)


def _ln(norm, x):
    return lrp.layer_norm(x, norm.scale[...], norm.bias[...], float(norm.epsilon))


def _gelu(x):
    return lrp.passthrough(jax.nn.gelu, x)


def _graph_layer(layer, h, mask, rule, mlpf_lib):
    b, n, _ = h.shape
    size = n if layer.bin_size is None else layer.bin_size
    sg = jax.lax.stop_gradient
    coords = sg(h) @ sg(layer.distance.kernel[...]) + sg(layer.distance.bias[...])
    if layer.bin_size is None or n == size:
        perm = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
    else:
        perm = jax.vmap(lambda cc, mm: mlpf_lib.bin_permutation(cc, mm, size))(coords, mask)
    take = jax.vmap(lambda a, p: a[p])
    hm = _dense(layer.message, h, rule)

    def messages(p):
        """Messages of the binning with order p (B, M): (B, N, C) in the original order and the
        (B, N, 1) indicator of the elements it covers."""
        _, a = mlpf_lib.CombinedGraphLayer._binned_messages(
            sg(take(hm, p)), take(coords, p), take(mask, p), size)
        adj = jnp.swapaxes(a, -1, -2)           # A_ij (receiver i, sender j) -> j -> i
        if p.shape[1] == n:
            return jax.vmap(lambda x, pp, aa: lrp.binned_message_passing(x, pp, aa, rule.eps))(
                hm, p, adj), None
        # a partial binning (shift): bins over the covered elements only, scattered back
        sub = take(hm, p)
        nb = p.shape[1] // size
        out = jax.vmap(lambda x, aa: lrp.message_passing(
            x.reshape(nb, size, -1), aa, rule.eps).reshape(p.shape[1], -1))(sub, adj)
        rows = jnp.arange(b)[:, None]
        full = jnp.zeros_like(hm).at[rows, p].set(out)
        has = jnp.zeros((b, n, 1), hm.dtype).at[rows, p].set(1.0)
        return full, has

    msg, _ = messages(perm)
    if getattr(layer, "shift", False) and n > size:
        half = size // 2
        msg2, has2 = messages(perm[:, half:n - half])
        msg = (msg + msg2) / (1.0 + has2)
    out = _gelu(_dense(layer.self_, h, rule) + msg)
    h = _ln(layer.norm, h + out)
    return jnp.where(mask[..., None], h, 0.0)


def mlpf_forward(model, x_in: Array, mask: Array, rule: lrp.Rule = lrp.epsilon(),
                 element: Array | None = None, cls: int | None = None) -> Array:
    """MLPF's classification logits with LRP backward passes. x_in = ``mlpf.inputs(x)``
    (B, N, 16; 27 with the link columns) (the model inputs, so that relevance is attributed
    to them), mask (B, N).
    element (B,) int and cls int: return the logit of class cls at that element (B,);
    otherwise all logits (B, N, 6)."""
    from hepjax.models import mlpf as mlpf_lib
    mask = jnp.asarray(mask, bool)
    e = _dense(model.embed2, _gelu(_dense(model.embed1, x_in, rule)), rule)
    e = jnp.where(mask[..., None], e, 0.0)
    h = e
    for layer in model.layers:
        h = _graph_layer(layer, h, mask, rule, mlpf_lib)
    z = jnp.concatenate([e, h], -1)
    if element is not None:
        if cls is None or not 0 <= int(cls) < model.cls2.kernel[...].shape[1]:
            raise ValueError(f"mlpf_forward: cls={cls} must name one of the "
                             f"{model.cls2.kernel[...].shape[1]} classes")
        z = jnp.take_along_axis(z, jnp.asarray(element)[:, None, None], 1)[:, 0]
        w, b = model.cls2.kernel[...][:, cls:cls + 1], model.cls2.bias[...][cls:cls + 1]
        return lrp.dense(_gelu(_dense(model.cls1, z, rule)), w, b, rule)[:, 0]
    return _dense(model.cls2, _gelu(_dense(model.cls1, z, rule)), rule)


def explain_element(model, x: Array, mask: Array, element: Array, cls: int, *,
                    rule: lrp.Rule = lrp.epsilon()):
    """(logit (B,), relevance per element (B, N)) of class `cls` at `element` (B,) of each
    event; x (B, N, 14) raw element features (B, N, 22 with the ``hepjax.pf.links`` columns
    for a model with ``physics_inputs``)."""
    from hepjax.models import mlpf as mlpf_lib
    x_in = mlpf_lib.inputs(x, getattr(model, "linear_energy", False))
    y, r = lrp.relevance(lambda v: mlpf_forward(model, v, mask, rule, element, cls), x_in)
    return y, jnp.sum(r, -1)


def bias_relevance(model, x: Array, mask: Array, element: Array, cls: int, *,
                   rule: lrp.Rule = lrp.epsilon()) -> Array:
    """(B,) relevance absorbed by the Linear and LayerNorm biases (sum of bias x d output / d
    bias with the LRP backward passes), one event at a time."""
    from hepjax.models import mlpf as mlpf_lib
    graphdef, state = nnx.split(model)
    x_in = mlpf_lib.inputs(x, getattr(model, "linear_energy", False))

    def one(xi, mi, ei):
        def out(st):
            return mlpf_forward(nnx.merge(graphdef, st), xi[None], mi[None], rule, ei[None],
                                cls)[0]
        grads = jax.grad(out, allow_int=True)(state)
        total = jnp.zeros((), xi.dtype)
        for (path, leaf), (_, g) in zip(nnx.to_flat_state(state), nnx.to_flat_state(grads)):
            if str(path[-1]) == "bias":
                total = total + jnp.sum(leaf[...] * g[...])
        return total

    return jax.lax.map(lambda a: one(*a), (x_in, jnp.asarray(mask, bool), jnp.asarray(element)))
