"""Deterministic training of the tracking edge classifier (:mod:`hepjax.models.interaction_network`).

One event graph per step (padded to a static budget, :func:`hepjax.tracking.graph.to_graphs_tuple`;
graphs of one budget share one compilation), a weighted binary cross entropy and Adam (optax)
with a linear warm-up, cosine decay and global-norm gradient clipping. Everything is seeded:
the initial weights from ``nnx.Rngs(seed)``, the order of the graphs from
``numpy.random.default_rng(seed)`` (a fresh permutation per epoch), so two runs with one seed on
one machine give the same weights (XLA's CPU scatter-add is deterministic).

Loss (:func:`weighted_bce`): with logits l, labels y in {0, 1} and per-edge weights
w = mask * (pos_weight if y else 1),

    L = sum_k w_k [softplus(l_k) - y_k l_k] / sum_k w_k,

softplus(l) - y l = -y log sigmoid(l) - (1 - y) log(1 - sigmoid(l)), the binary cross entropy in
a form stable for any |l|; padding edges (mask False) carry no weight.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = ["TrainConfig", "weighted_bce", "make_model", "train", "predict", "roc_auc"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """``num_steps`` of one graph each; Adam at ``learning_rate`` after ``warmup_steps`` of
    linear warm-up, cosine decay to ``final_lr_fraction`` of it; gradients clipped to global
    norm ``grad_clip``; ``pos_weight`` on true edges in the loss; ``seed`` for the weights and
    the graph order; a log line every ``log_every`` steps."""
    num_steps: int = 1000
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    final_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    pos_weight: float = 1.0
    seed: int = 0
    log_every: int = 100


def weighted_bce(logits, labels, mask, pos_weight: float = 1.0):
    """Weighted binary cross entropy (module docstring); a scalar."""
    y = labels.astype(logits.dtype)
    w = mask.astype(logits.dtype) * jnp.where(y > 0.5, pos_weight, 1.0)
    per = jax.nn.softplus(logits) - y * logits
    return jnp.sum(w * per) / jnp.maximum(jnp.sum(w), 1e-12)


def make_model(seed: int = 0, **kwargs):
    """A fresh :class:`~hepjax.models.interaction_network.EdgeClassifierIN` (kwargs: its
    arguments) initialised from ``nnx.Rngs(seed)``."""
    from hepjax.models.interaction_network import EdgeClassifierIN
    return EdgeClassifierIN(rngs=nnx.Rngs(seed), **kwargs)


def _schedule(cfg: TrainConfig):
    warm = max(min(cfg.warmup_steps, cfg.num_steps - 1), 0)
    decay = max(cfg.num_steps - warm, 1)
    return optax.warmup_cosine_decay_schedule(
        0.0 if warm else cfg.learning_rate, cfg.learning_rate, warm, warm + decay,
        end_value=cfg.learning_rate * cfg.final_lr_fraction)


@functools.lru_cache(maxsize=16)
def _optimizer(cfg: TrainConfig):
    """One optax transformation per config (cached: the same object for the same config, so
    that the compiled step is reused across calls of :func:`train`)."""
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adam(_schedule(cfg)))


@functools.partial(nnx.jit, static_argnames=("pos_weight",))
def _train_step(model, opt, graph, labels, pos_weight):
    from hepjax.graphs.padding import edge_mask
    mask = edge_mask(graph)

    def loss_fn(m):
        return weighted_bce(m(graph), labels, mask, pos_weight)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads)
    return loss


def train(model, graphs: Sequence, cfg: TrainConfig,
          log: Callable[[str], None] | None = print, eval_fn: Callable | None = None) -> dict:
    """Train ``model`` in place on ``graphs``, a sequence of (padded GraphsTuple, labels (E,)).

    ``eval_fn(model, step)``, if given, is called at every log step and its dict stored.
    Returns the history: ``step``, ``loss`` (mean over the last ``log_every`` steps),
    ``seconds``, ``eval``.
    """
    if not graphs:
        raise ValueError("no training graphs")
    opt = nnx.Optimizer(model, _optimizer(cfg), wrt=nnx.Param)
    step = functools.partial(_train_step, pos_weight=cfg.pos_weight)

    rng = np.random.default_rng(cfg.seed)
    order = np.zeros(0, np.int64)
    hist = {"step": [], "loss": [], "seconds": [], "eval": []}
    t0 = time.perf_counter()
    acc = []
    for it in range(cfg.num_steps):
        if len(order) == 0:
            order = rng.permutation(len(graphs))
        i, order = int(order[0]), order[1:]
        g, lab = graphs[i]
        acc.append(float(step(model, opt, g, jnp.asarray(lab))))
        if (it + 1) % cfg.log_every == 0 or it + 1 == cfg.num_steps:
            hist["step"].append(it + 1)
            hist["loss"].append(float(np.mean(acc)))
            hist["seconds"].append(time.perf_counter() - t0)
            ev = eval_fn(model, it + 1) if eval_fn is not None else None
            hist["eval"].append(ev)
            if log is not None:
                log(f"step {it + 1}/{cfg.num_steps} loss {np.mean(acc):.4f} "
                    f"({time.perf_counter() - t0:.0f} s)" + (f" eval {ev}" if ev else ""))
            acc = []
    return hist


@nnx.jit
def _logits(model, graph):
    return model(graph)


def predict(model, graph) -> np.ndarray:
    """Edge scores sigmoid(logit) of a padded graph, (E_padded,) float64 numpy (padding
    edges included: cut them with the real edge count)."""
    return np.asarray(jax.nn.sigmoid(_logits(model, graph)), np.float64)


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted one half)."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ss = s[order]
    # average ranks over ties
    uniq_start = np.r_[True, ss[1:] != ss[:-1]]
    grp = np.cumsum(uniq_start) - 1
    starts = np.flatnonzero(uniq_start)
    ends = np.r_[starts[1:], len(ss)]
    avg = (starts + ends - 1) / 2.0 + 1
    ranks[order] = avg[grp]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
