"""Variants of the tracking experiment (``python -m experiments.tracking.run --variant NAME``).

* ``smoke`` -- CI: a handful of ttbar events without pile-up, a tiny network, 30 steps per
  setting; every output (tables, plots, the real event's submission) is written in well under a
  minute. Its numbers mean nothing.
* ``cpu`` -- what a 2-core CPU trains in about 30 minutes: ttbar + pile-up events, training
  mu drawn uniformly in 0-6 per event, validation and test at mu = 5 (Poisson; ~6-10k hits,
  the density of the real TrackML event's 5.5k hits); sized for a 2-core machine shared with
  other jobs (the first, larger attempt -- 300 training events, 2,000-step networks of
  width 64 / 6 iterations -- did not reach 250 steps in 8 minutes there and was stopped);
  two graph settings, each with its own network (see run.py): ``filtered`` (hits of pT > 1 GeV particles only, as the
  HEP.TrkX interaction-network numbers) and ``all`` (every hit, noise included).
"""
from __future__ import annotations

import dataclasses

from hepjax.tracking.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    n_cut_events: int             # training events used to learn the graph cuts
    n_train: int
    n_val: int
    n_test: int
    mu_train: tuple[int, int]     # pile-up mu of each training event: uniform integer in range
    mu_test: float                # validation and test events (Poisson mean)
    cut_keep: float = 0.995       # per-pair fraction of true pT>1 edges the cuts keep
    pair_coverage: float = 0.999
    pt_min: float = 1.0
    model_filtered: dict = dataclasses.field(default_factory=dict)
    model_all: dict = dataclasses.field(default_factory=dict)
    train_filtered: TrainConfig = TrainConfig()
    train_all: TrainConfig = TrainConfig()
    bucket_factor: float | None = 1.5   # training edge budgets (None: one budget)
    seed: int = 24


VARIANTS = {
    "smoke": Variant(
        "smoke", n_cut_events=6, n_train=6, n_val=2, n_test=2, mu_train=(0, 0), mu_test=0,
        bucket_factor=None,
        model_filtered=dict(hidden=16, num_iterations=1, mlp_layers=1),
        model_all=dict(hidden=16, num_iterations=1, mlp_layers=1),
        train_filtered=TrainConfig(num_steps=30, learning_rate=3e-3, warmup_steps=5,
                                   log_every=10),
        train_all=TrainConfig(num_steps=30, learning_rate=3e-3, warmup_steps=5,
                              log_every=10)),
    "cpu": Variant(
        "cpu", n_cut_events=150, n_train=150, n_val=20, n_test=50, mu_train=(0, 6),
        mu_test=5, bucket_factor=2.0,
        model_filtered=dict(hidden=32, num_iterations=4, mlp_layers=2),
        model_all=dict(hidden=32, num_iterations=4, mlp_layers=2),
        train_filtered=TrainConfig(num_steps=800, learning_rate=3e-3, warmup_steps=50,
                                   log_every=100),
        train_all=TrainConfig(num_steps=800, learning_rate=3e-3, warmup_steps=50,
                              pos_weight=2.0, log_every=100)),
}


def get(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; variants: {sorted(VARIANTS)}")
    return VARIANTS[name]
