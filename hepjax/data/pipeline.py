"""Static-shape batches from in-memory arrays, stateless in the step number.

The training batch of step ``t`` is a pure function of (arrays, batch size, seed, t): epoch
``t // steps_per_epoch`` draws a permutation from ``numpy.random.default_rng([seed, epoch])`` and
step ``t`` takes its slice. A run resumed at step ``t`` therefore sees exactly the batches an
uninterrupted run would. Every batch carries ``weight`` (B,): the example weight, 0 for padding.
"""
from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np

Arrays = Mapping[str, np.ndarray]


def check_arrays(arrays: Arrays, name: str = "data") -> int:
    """Number of examples; raises if the fields disagree on it or hold NaN/Inf."""
    if not arrays:
        raise ValueError(f"{name}: no fields")
    sizes = {key: np.shape(value)[0] for key, value in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{name}: fields have different numbers of examples: {sizes}")
    for key, value in arrays.items():
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            bad = int(np.sum(~np.all(np.isfinite(value.reshape(len(value), -1)), axis=1)))
            raise ValueError(f"{name}: field {key!r} has NaN/Inf values in {bad} of {len(value)} rows")
    return next(iter(sizes.values()))


def with_weights(arrays: Arrays) -> dict[str, np.ndarray]:
    """Adds ``weight`` = 1 where the data has none."""
    out = dict(arrays)
    if "weight" not in out:
        out["weight"] = np.ones(check_arrays(arrays), np.float32)
    return out


class TrainBatches:
    """``batch(step)`` -> dict of (batch_size, ...) arrays; drops the ragged tail of each epoch."""

    def __init__(self, arrays: Arrays, batch_size: int, seed: int, *, shard: tuple[int, int] = (0, 1)):
        self.arrays = with_weights(arrays)
        self.num_examples = check_arrays(self.arrays, "training data")
        if batch_size > self.num_examples:
            raise ValueError(f"batch_size {batch_size} exceeds the {self.num_examples} training examples")
        index, count = shard
        if batch_size % count:
            raise ValueError(f"global batch size {batch_size} does not split over {count} processes")
        self.batch_size, self.seed, self.shard = batch_size, seed, shard
        self.steps_per_epoch = self.num_examples // batch_size
        self._epoch, self._perm = None, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
        return self._perm

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The global batch of ``step``, or this process's slice of it when sharded."""
        epoch, position = divmod(int(step), self.steps_per_epoch)
        index = np.sort(self._permutation(epoch)[position * self.batch_size:(position + 1) * self.batch_size])
        shard, count = self.shard  # processes take consecutive slices of the same sorted batch
        local = self.batch_size // count
        index = index[shard * local:(shard + 1) * local]
        return {key: value[index] for key, value in self.arrays.items()}


def eval_batches(arrays: Arrays, batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Sequential (batch, n_valid) pairs covering every example once; the last batch is padded
    with zeros and weight 0 to keep one static shape."""
    arrays = with_weights(arrays)
    n = check_arrays(arrays, "evaluation data")
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        batch = {}
        for key, value in arrays.items():
            chunk = value[start:stop]
            if stop - start < batch_size:
                pad = np.zeros((batch_size - (stop - start),) + chunk.shape[1:], chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            batch[key] = chunk
        yield batch, stop - start
