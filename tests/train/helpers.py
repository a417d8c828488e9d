"""Small configs and comparisons shared by the harness tests."""
import jax
import numpy as np

from hepjax import config as config_lib


def smoke_config(**train_overrides):
    config = config_lib.load_config("hepjax.configs.dijet_mlp:smoke")
    for key, value in train_overrides.items():
        with config.train.ignore_type():
            config.train[key] = value
    return config


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def max_rel_diff(a, b) -> float:
    diffs = [np.max(np.abs(np.asarray(x) - np.asarray(y)) / (np.abs(np.asarray(y)) + 1e-6))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]
    return float(max(diffs))
