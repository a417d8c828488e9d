"""Tasks: what a model is trained to do, as (loss_fn, predict_fn, summarize) — see ``step.Task``.

Batches are dicts with ``features`` (B, ...) model inputs, ``label`` (B,) and ``weight`` (B,)
(0 for padding). Particle-level data add ``mask`` (B, N) bool (False = padded particle) and may
add ``vectors`` (B, N, 4) four-momenta (E, px, py, pz) in GeV. Models are called as
``model(features, mask=..., vectors=...)`` with the optional inputs the batch holds, and return
logits.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hepjax import losses, metrics
from hepjax.train.step import Task


MODEL_INPUTS = ("mask", "vectors")


def apply_model(model, batch):
    """``model(batch["features"], **optional inputs present in the batch)``."""
    return model(batch["features"], **{k: batch[k] for k in MODEL_INPUTS if k in batch})


def _weighted_mean(values, weight):
    return jnp.sum(values * weight) / jnp.maximum(jnp.sum(weight), 1e-12)


def binary_classification() -> Task:
    """Signal (label 1) vs background (label 0); the model outputs one logit per example.

    Logged: cross entropy, accuracy; on evaluation AUC and 1/eps_B at eps_S = 0.3 and 0.5.
    """

    def loss_fn(model, batch, key):
        logits = apply_model(model, batch)[..., 0]
        loss = losses.binary_cross_entropy(logits, batch["label"], weights=batch["weight"])
        correct = ((logits > 0) == (batch["label"] > 0.5)).astype(jnp.float32)
        return loss, {"accuracy": _weighted_mean(correct, batch["weight"])}

    def predict_fn(model, batch):
        return jax.nn.sigmoid(apply_model(model, batch)[..., 0])

    def summarize(labels, scores, weights=None):
        return metrics.binary_summary(np.asarray(labels), np.asarray(scores), weights=weights)

    return Task(loss_fn, predict_fn, summarize)


def multiclass_classification(num_classes: int) -> Task:
    """Integer labels in [0, num_classes); the model outputs num_classes logits.

    On evaluation: accuracy and one-vs-rest AUCs (per class and macro average).
    """

    def loss_fn(model, batch, key):
        logits = apply_model(model, batch)
        loss = losses.categorical_cross_entropy(logits, batch["label"], weights=batch["weight"])
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        return loss, {"accuracy": _weighted_mean(correct, batch["weight"])}

    def predict_fn(model, batch):
        return jax.nn.softmax(apply_model(model, batch), axis=-1)

    def summarize(labels, probs, weights=None):
        labels, probs = np.asarray(labels), np.asarray(probs)
        per_class, macro = metrics.one_vs_rest_auc(labels, probs, weights)
        correct = (np.argmax(probs, -1) == labels).astype(float)
        w = np.ones_like(correct) if weights is None else np.asarray(weights, float)
        return {"accuracy": float(np.sum(correct * w) / np.sum(w)), "auc": float(macro),
                **{f"auc_class{i}": float(a) for i, a in enumerate(per_class)}}

    return Task(loss_fn, predict_fn, summarize)


def make_task(config) -> Task:
    """From ``config.task`` ('binary' or 'multiclass') and ``config.model.num_classes``."""
    name = config.task
    if name == "binary":
        return binary_classification()
    if name == "multiclass":
        return multiclass_classification(int(config.model.num_classes))
    raise ValueError(f"config.task={name!r}: expected one of 'binary', 'multiclass'")
