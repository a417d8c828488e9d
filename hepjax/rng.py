"""Keys from seeds; per-step keys by ``fold_in``. hepjax has no global random state.

JAX's random streams can change between JAX versions: the run directory records the versions with
the seed (``hepjax.train.logging.run_info``) so a result can be reproduced exactly.
"""
from __future__ import annotations

import jax


def key(seed: int) -> jax.Array:
    """A typed PRNG key from an integer seed."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return jax.random.key(seed)


def step_key(base: jax.Array, step) -> jax.Array:
    """The key for training step ``step``: ``fold_in(base, step)``. Same step, same key, on resume too."""
    return jax.random.fold_in(base, step)


def named_keys(base: jax.Array, *names: str) -> dict[str, jax.Array]:
    """Independent keys for named purposes (``params``, ``dropout``, ``data`` ...), stable per name."""
    return {name: jax.random.fold_in(base, _stable_hash(name)) for name in names}


def _stable_hash(name: str) -> int:
    # Python's hash() is salted per process; this is not.
    value = 0
    for char in name.encode():
        value = (value * 131 + char) % (2**31 - 1)
    return value
