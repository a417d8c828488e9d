"""Static-shape batches from in-memory arrays, stateless in the step number.

The training batch of step ``t`` is a pure function of (arrays, batch size, seed, t): epoch
``t // steps_per_epoch`` draws a permutation from ``numpy.random.default_rng([seed, epoch])`` and
step ``t`` takes its slice. A run resumed at step ``t`` therefore sees exactly the batches an
uninterrupted run would. Every batch carries ``weight`` (B,): the example weight, 0 for padding.

Length bucketing (``buckets``, e.g. ``(32, 64, 96, 128)`` for jets; powers of two or multiples of
an LSH bin size for events): variable-length inputs are stored padded to N entries with a
``mask`` (B, N). With buckets, each batch is cut to the smallest bucket that holds its longest
example (the index of its last real entry + 1; N itself when no bucket is large enough), every
array aligned with the mask (shape (B, N, ...): features, mask, four-vectors) cut alike. The
batch's examples and their order are unchanged — the same permutation, only less padding — so
reruns and resumes stay bit-identical, and a model that ignores masked entries gives the same
loss up to float round-off. The trade-off: one compiled step per bucket met (each compiled once
and cached: ``jax.jit`` keys on the shape), so a few buckets, not one per length. Models whose
parameters depend on N (LoLa's combination matrix, JEDI-net's fixed graph) cannot use it.

Random batches of jets almost always hold one long jet, so bucketing alone mostly pads to N.
``sort_window`` W > 0 (with buckets) groups examples of similar length: the epoch's permutation
is cut into windows of W batches, each window's examples are sorted by length (stable) and cut
into W batches, and the order of the epoch's batches is then shuffled (seeded by (seed, epoch)).
Still a pure function of (seed, step), so resumes stay bit-identical; every example is still
seen once per epoch. The price: a batch's examples are no longer independent of their lengths
(the standard length-bucketed sampler of sequence models, e.g. tf.data's
``bucket_by_sequence_length``); W = 1 keeps the random batches, larger W gives tighter batches.
The event models (hits, elements per event) use the same knobs: buckets as powers of two or
multiples of the LSH bin size, since each bucket met costs one compilation of the step.
"""
from __future__ import annotations

from typing import Iterator, Mapping, Sequence

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


def check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    """``buckets`` as a strictly increasing tuple of positive ints (empty: bucketing off)."""
    out = tuple(int(b) for b in buckets)
    if any(b <= 0 for b in out) or any(a >= b for a, b in zip(out, out[1:])):
        raise ValueError(f"length buckets {tuple(buckets)}: expected strictly increasing positive "
                         "sizes, e.g. (32, 64, 96, 128)")
    return out


def bucket_length(mask: np.ndarray, buckets: Sequence[int]) -> int:
    """The smallest of ``buckets`` that holds every real entry of ``mask`` (B, N) — the index of
    the last True in any row, + 1 — or N when none does."""
    mask = np.asarray(mask, bool)
    n = mask.shape[1]
    used = mask.any(axis=0)
    longest = int(n - np.argmax(used[::-1])) if used.any() else 0
    return next((b for b in buckets if longest <= b < n), n)


def trim(batch: Mapping[str, np.ndarray], length: int, key: str = "mask") -> dict[str, np.ndarray]:
    """Every array of ``batch`` aligned with ``batch[key]`` (same first two axes) cut to
    ``length`` entries on axis 1; the others unchanged."""
    shape = np.shape(batch[key])
    return {k: (v[:, :length] if np.ndim(v) >= 2 and np.shape(v)[:2] == shape else v)
            for k, v in batch.items()}


def bucketed(batch: Mapping[str, np.ndarray], buckets: Sequence[int]) -> dict[str, np.ndarray]:
    """``batch`` cut to its bucket (unchanged without buckets or without a ``mask``)."""
    if not buckets or "mask" not in batch:
        return dict(batch)
    return trim(batch, bucket_length(batch["mask"], buckets))


class TrainBatches:
    """``batch(step)`` -> dict of (batch_size, ...) arrays; drops the ragged tail of each epoch;
    with ``buckets``, each batch cut to its length bucket, and with ``sort_window`` > 0 batches
    of similar lengths (see the module docstring)."""

    def __init__(self, arrays: Arrays, batch_size: int, seed: int, *, shard: tuple[int, int] = (0, 1),
                 buckets: Sequence[int] = (), sort_window: int = 0):
        self.buckets = check_buckets(buckets)
        if sort_window < 0:
            raise ValueError(f"sort_window={sort_window}: expected >= 0 (0 = off)")
        if sort_window and not self.buckets:
            raise ValueError("sort_window > 0 needs length buckets (it only pays with them)")
        if sort_window and "mask" not in arrays:
            raise ValueError("sort_window > 0 needs a 'mask' field (the examples' lengths)")
        self.sort_window = int(sort_window)
        self.arrays = with_weights(arrays)
        self.num_examples = check_arrays(self.arrays, "training data")
        if batch_size > self.num_examples:
            raise ValueError(f"batch_size {batch_size} exceeds the {self.num_examples} training examples")
        index, count = shard
        if batch_size % count:
            raise ValueError(f"global batch size {batch_size} does not split over {count} processes")
        self.batch_size, self.seed, self.shard = batch_size, seed, shard
        self.steps_per_epoch = self.num_examples // batch_size
        self._epoch, self._perm, self._lengths = None, None, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(self.num_examples)
            if self.sort_window:
                perm = self._length_sorted(perm, rng)
            self._epoch, self._perm = epoch, perm
        return self._perm

    def _length_sorted(self, perm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``perm``'s batches regrouped by length within windows of ``sort_window`` batches,
        then the epoch's batches shuffled; the ragged tail stays last (dropped)."""
        if self._lengths is None:
            mask = np.asarray(self.arrays["mask"], bool)
            used = mask.any(axis=tuple(range(2, mask.ndim))) if mask.ndim > 2 else mask
            n = used.shape[1]   # index of the last real entry + 1 (0 for an empty example)
            self._lengths = np.where(used.any(1), n - np.argmax(used[:, ::-1], axis=1), 0)
        b, steps = self.batch_size, self.steps_per_epoch
        used = perm[:steps * b]
        window = self.sort_window * b
        chunks = [used[i:i + window] for i in range(0, len(used), window)]
        grouped = np.concatenate([c[np.argsort(self._lengths[c], kind="stable")] for c in chunks])
        batches = grouped.reshape(steps, b)[rng.permutation(steps)]
        return np.concatenate([batches.reshape(-1), perm[steps * b:]])

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The global batch of ``step``, or this process's slice of it when sharded."""
        epoch, position = divmod(int(step), self.steps_per_epoch)
        index = np.sort(self._permutation(epoch)[position * self.batch_size:(position + 1) * self.batch_size])
        shard, count = self.shard  # processes take consecutive slices of the same sorted batch
        local = self.batch_size // count
        # the bucket of the global batch: every process cuts its slice alike
        length = bucket_length(self.arrays["mask"][index], self.buckets) \
            if self.buckets and "mask" in self.arrays else None
        index = index[shard * local:(shard + 1) * local]
        batch = {key: value[index] for key, value in self.arrays.items()}
        return trim(batch, length) if length is not None else batch


def eval_batches(arrays: Arrays, batch_size: int,
                 buckets: Sequence[int] = ()) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Sequential (batch, n_valid) pairs covering every example once; the last batch is padded
    with zeros and weight 0 to keep one static shape; with ``buckets``, each batch cut to its
    length bucket."""
    buckets = check_buckets(buckets)
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
        yield bucketed(batch, buckets), stop - start
