"""The resolver: a config plus the data sizes -> a frozen, typed run spec, exactly once.

``complete(config)`` returns a copy of the config whose ``train`` and ``data`` sections hold every
declared field (``hepjax.configs.defaults``: the one place defaults live), refusing fields that
are not declared. ``resolve(config, num_train)`` turns the completed ``train`` section and the
training-split size into a ``RunSpec``: every duration and cadence in steps, the ensemble size,
the precision, the devices. The training loop, the schedules and evaluation read the spec; none
of them reads a config field with a fallback or writes into the caller's config. The spec is
saved beside the config (``spec.json``) so evaluation rebuilds the same schedule.

Durations (the idea of big_vision's ``steps()``): the run length is exactly one of
``train.num_steps``, ``train.num_epochs`` or ``train.num_examples`` (the others 0); the
validation and periodic-checkpoint cadences likewise one of ``eval_every`` /
``eval_every_epochs`` / ``eval_every_examples`` and ``checkpoint_every`` /
``checkpoint_every_epochs`` / ``checkpoint_every_examples``. One epoch is
``num_train // batch_size`` steps (the last partial batch of an epoch is not a step); epochs and
examples are rounded to whole steps, cadences to at least one step.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import ml_collections

from hepjax.configs import defaults
from hepjax.data import pipeline
from hepjax.train.step import PRECISIONS


@dataclasses.dataclass(frozen=True)
class EarlyStoppingSpec:
    metric: str = "loss"
    mode: str = "min"
    patience: int = 4          # in validations
    min_delta: float = 0.0
    restore_best: bool = True


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything the training loop needs to know about durations and placement, in steps."""
    seed: int
    num_train: int             # training examples
    batch_size: int
    steps_per_epoch: int
    num_steps: int             # the run's length (the maximum when early stopping ends it sooner)
    eval_every: int
    checkpoint_every: int
    log_every: int
    eval_batch_size: int
    length_buckets: tuple      # padded lengths batches are cut to (empty: no bucketing)
    length_sort_window: int    # > 0: batches of similar lengths (windows of this many batches)
    keep_checkpoints: int
    restore_step: int          # resume from: 0 = the newest intact checkpoint, or that step
    ensemble_size: int
    num_devices: int           # 0: all devices
    precision: str
    tensorboard: bool
    early_stopping: EarlyStoppingSpec

    @property
    def ensemble(self) -> bool:
        return self.ensemble_size > 1

    @property
    def num_epochs(self) -> float:
        return self.num_steps / self.steps_per_epoch

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "RunSpec":
        fields = json.loads(text)
        fields["early_stopping"] = EarlyStoppingSpec(**fields["early_stopping"])
        fields["length_buckets"] = tuple(fields["length_buckets"])
        fields.setdefault("length_sort_window", 0)   # spec.json of runs before the field existed
        return cls(**fields)


def complete(config) -> ml_collections.ConfigDict:
    """A copy of ``config`` with complete ``train`` and ``data`` sections (declared defaults under
    the config's own fields); an undeclared field raises naming it. Idempotent."""
    out = ml_collections.ConfigDict(config.to_dict())
    with out.ignore_type():
        out.train = defaults.overlay(defaults.train(), config.train, "config.train")
        if "data" in config:
            out.data = defaults.data_section(config.data)
    return out


def _duration(tc, keys: tuple[str, str, str], steps_per_epoch: int, batch_size: int,
              what: str) -> int:
    """One duration given in steps, epochs or examples (``keys``, exactly one > 0) -> steps
    (at least 1)."""
    given = {key: tc[key] for key in keys}
    for key, value in given.items():
        if value < 0:
            raise ValueError(f"config.train.{key}={value}: expected >= 0 (0 = not given)")
    chosen = {k: v for k, v in given.items() if v > 0}
    if len(chosen) != 1:
        shown = ", ".join(f"train.{k}={v}" for k, v in given.items())
        raise ValueError(f"config.train: give {what} as exactly one of {shown} (> 0; the others 0)")
    (key, value), = chosen.items()
    if key == keys[0]:
        return int(value)
    per_step = steps_per_epoch if key == keys[1] else 1.0 / batch_size
    return max(1, int(round(value * per_step)))


def _cadence(name: str) -> tuple[str, str, str]:
    return name, f"{name}_epochs", f"{name}_examples"


def resolve(config, num_train: int) -> RunSpec:
    """The run spec of ``config`` (completed here if it is not already) for ``num_train``
    training examples; see the module docstring for the duration fields."""
    tc = complete(config).train
    batch_size = int(tc.batch_size)
    if batch_size <= 0:
        raise ValueError(f"config.train.batch_size={batch_size}: expected > 0")
    if num_train < batch_size:
        raise ValueError(f"config.train.batch_size={batch_size} exceeds the {num_train} "
                         "training examples")
    steps_per_epoch = num_train // batch_size
    num_steps = _duration(tc, ("num_steps", "num_epochs", "num_examples"), steps_per_epoch,
                          batch_size, "the run's length")
    precision = str(tc.precision)
    if precision not in PRECISIONS:
        raise ValueError(f"config.train.precision={precision!r}: choose from {sorted(PRECISIONS)}")
    ensemble_size = int(tc.ensemble_size)
    if ensemble_size < 1:
        raise ValueError(f"config.train.ensemble_size={ensemble_size}: expected >= 1")
    buckets = pipeline.check_buckets(tc.length_buckets)
    sort_window = int(tc.length_sort_window)
    if sort_window < 0 or (sort_window and not buckets):
        raise ValueError(f"config.train.length_sort_window={sort_window}: expected 0 (off) or, "
                         "with train.length_buckets set, > 0")
    es = tc.early_stopping
    return RunSpec(
        seed=int(config.seed), num_train=int(num_train), batch_size=batch_size,
        steps_per_epoch=steps_per_epoch, num_steps=num_steps,
        eval_every=_duration(tc, _cadence("eval_every"), steps_per_epoch, batch_size,
                             "the validation cadence"),
        checkpoint_every=_duration(tc, _cadence("checkpoint_every"), steps_per_epoch, batch_size,
                                   "the checkpoint cadence"),
        log_every=max(1, int(tc.log_every)),
        eval_batch_size=int(tc.eval_batch_size) or batch_size,
        length_buckets=buckets, length_sort_window=sort_window,
        keep_checkpoints=int(tc.keep_checkpoints), restore_step=int(tc.restore_step),
        ensemble_size=ensemble_size, num_devices=int(tc.num_devices), precision=precision,
        tensorboard=bool(tc.tensorboard),
        early_stopping=EarlyStoppingSpec(metric=str(es.metric), mode=str(es.mode),
                                         patience=int(es.patience), min_delta=float(es.min_delta),
                                         restore_best=bool(es.restore_best)))


def save(spec: RunSpec, workdir) -> None:
    (pathlib.Path(workdir) / "spec.json").write_text(spec.to_json())


def load(workdir) -> RunSpec:
    path = pathlib.Path(workdir) / "spec.json"
    if not path.is_file():
        raise FileNotFoundError(f"{workdir}: no spec.json (the resolved run spec); is this a "
                                "hepjax run directory written by this version?")
    return RunSpec.from_json(path.read_text())
