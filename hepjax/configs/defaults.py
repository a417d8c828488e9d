"""Shared config sections: every config starts from these and sets only what differs.

``train(**fields)`` is the training section with every field the harness reads, at its
default, updated by ``fields``; ``mlp(hidden, ...)`` the MLP model section;
``adamw_warmup_cosine(...)`` the AdamW + warm-up/cosine optimiser section. A field not declared
here cannot be set by ``--config.train.x=y`` (ml_collections refuses unknown fields).
"""
from __future__ import annotations

import ml_collections


def early_stopping(**fields) -> ml_collections.ConfigDict:
    """Early stopping on the validation loss; ``patience`` in validations; the best checkpoint
    restored at the end."""
    section = {"metric": "loss", "mode": "min", "patience": 4, "min_delta": 0.0,
               "restore_best": True}
    section.update(fields)
    return ml_collections.ConfigDict(section)


def train(**fields) -> ml_collections.ConfigDict:
    """The training section. Durations: ``num_steps``, or ``num_steps = 0`` and ``num_epochs``;
    validation and periodic checkpoints every ``eval_every`` / ``checkpoint_every`` steps, or
    every ``eval_every_epochs`` / ``checkpoint_every_epochs`` epochs when those are > 0."""
    section = ml_collections.ConfigDict({
        "num_steps": 1000,
        "num_epochs": 0,
        "batch_size": 128,
        "eval_batch_size": 1024,
        "log_every": 100,
        "eval_every": 500,
        "eval_every_epochs": 0.0,
        "checkpoint_every": 500,
        "checkpoint_every_epochs": 0.0,
        "keep_checkpoints": 2,
        "restore_step": 0,          # resume from: 0 = the newest intact checkpoint, or that step
        "ensemble_size": 1,         # K independently seeded members in one vmapped step
        "num_devices": 1,           # 0: all devices (required with several processes)
        "precision": "float32",     # or "bfloat16": bf16 forward pass, fp32 params/optimiser/loss
        "tensorboard": False,
        "early_stopping": early_stopping(),
    })
    section.update(fields)
    return section


def mlp(hidden, *, dropout: float = 0.1, num_classes: int = 2, **fields) -> ml_collections.ConfigDict:
    """The ``mlp`` model section (``hepjax.models``): ReLU, no normalisation, no residuals."""
    section = {"name": "mlp", "hidden": tuple(hidden), "activation": "relu", "dropout": dropout,
               "norm": "", "residual": False, "num_classes": num_classes}
    section.update(fields)
    return ml_collections.ConfigDict(section)


def adamw_warmup_cosine(learning_rate: float, *, weight_decay: float = 1e-4,
                        clip_norm: float = 1.0, warmup_steps: int = 100) -> ml_collections.ConfigDict:
    """AdamW with global-norm clipping, linear warm-up then cosine decay to 0 at the last step."""
    return ml_collections.ConfigDict({
        "name": "adamw", "learning_rate": learning_rate, "weight_decay": weight_decay,
        "clip_norm": clip_norm,
        "schedule": ml_collections.ConfigDict({"name": "warmup_cosine", "warmup_steps": warmup_steps}),
    })
