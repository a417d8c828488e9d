"""Complete networks, built from a config by name (``config.model.name``).

Each builder takes (model config, input feature shape, number of outputs, nnx.Rngs).
"""
from __future__ import annotations

from typing import Callable

from flax import nnx

from hepjax.nn import MLP


def _mlp(cfg, input_shape, num_outputs, rngs):
    """A fully connected network on high-level features (the landscape's 'MLP on observables')."""
    if len(input_shape) != 1:
        raise ValueError(f"model 'mlp' takes flat feature vectors, got per-example shape {input_shape}")
    return MLP(input_shape[0], tuple(cfg.hidden), num_outputs, activation=cfg.activation,
               dropout=float(cfg.dropout), norm=cfg.get("norm") or None,
               residual=bool(cfg.get("residual", False)), rngs=rngs)


MODELS: dict[str, Callable] = {"mlp": _mlp}


def build_model(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> nnx.Module:
    if cfg.name not in MODELS:
        raise ValueError(f"config.model.name={cfg.name!r}: known models are {sorted(MODELS)}")
    return MODELS[cfg.name](cfg, tuple(input_shape), num_outputs, rngs)


def model_fn_from_config(cfg, input_shape, num_outputs: int):
    """``rngs -> module`` for ``hepjax.train`` (which supplies seeded streams)."""
    return lambda rngs: build_model(cfg, input_shape, num_outputs, rngs)
