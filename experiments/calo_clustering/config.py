"""Variants of the calorimeter-clustering experiment (``python -m experiments.calo_clustering.run
--variant NAME``): event counts, network size, training length and tuning grids.

* ``smoke`` -- CI: a few hundred small events (2-4 particles of 10-50 GeV), a 2-block network,
  30 training steps; every output is written, in well under a minute. Its numbers mean nothing.
* ``cpu`` -- what a 2-core CPU trains in about an hour: 8,000 training events of 2-10
  particles (~47,000 showers), the paper-sized GravNet blocks (4 blocks, dense 64, S = 4,
  F_LR = 22, F_out = 48) with k = 16 and the exact kNN as in the papers, clustering coordinates
  offset from the hit's (x, y) / 2 cm (``cluster_xy_scale``), 9,000 steps of 2 events
  (2.25 epochs; 84 min on the loaded 2-core CPU); thresholds t_beta, t_d and a separate t_d for condensation points predicted to
  be charged pions (broad hadron showers) chosen on the validation events. Measured on the
  idle 2-core EPYC at 1,600-2,048 hits: 0.345 s per step with the exact kNN, 0.235 s with LSH
  bins of 512 (whose neighbourhoods are approximate: the first run, with bins, reached a lower
  efficiency than CLUE).
* ``cpu_pairs`` -- ``cpu`` plus 2,000 training events of two particles 0.5-5 cm apart (uniform;
  seed S+4, independent of the test pairs of seed S+3), so that the network sees more showers
  closer than 2 R_M than the mixed events hold.
* ``full`` -- the issue's size: 20,000 training events (~117,000 showers), exact kNN, 40,000
  steps of 4 events (a GPU job; not run here).

Events of every variant but ``smoke`` are the issue's: 2-10 particles drawn from e+-, photons and
pi+- with 10-200 GeV entering |x|, |y| < 10 cm (pointing back to a vertex 320 cm in front), with
electronic noise; the dedicated two-particle events put two such particles (same pdg and energy
ranges) at a fixed transverse distance d (random orientation, the pair's centre uniform in
|x|, |y| < 5 cm).
"""
from __future__ import annotations

import dataclasses

from hepjax.reco.train_oc import OCTrainConfig

PAIR_DISTANCES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0)   # cm, two-shower events


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    n_train: int
    n_val: int
    n_test: int
    pairs_per_distance: int
    # extra training events of two close particles (seed S+4, independent of the test pairs):
    # their entry points uniform in [train_pair_range] cm apart; 0: mixed events only
    n_train_pairs: int = 0
    train_pair_range: tuple[float, float] = (0.5, 5.0)
    n_particles: tuple[int, int] = (2, 10)
    energy: tuple[float, float] = (10.0, 200.0)
    pdgs: tuple[int, ...] = (11, -11, 22, 211, -211)
    distances: tuple[float, ...] = PAIR_DISTANCES
    model: dict = dataclasses.field(default_factory=dict)    # condensation_net config fields
    train: OCTrainConfig = OCTrainConfig()
    # tuning grids (validation events only)
    t_beta_grid: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9)
    t_d_grid: tuple[float, ...] = (0.3, 0.5, 0.6, 0.7, 0.8, 1.0)
    # radius of condensation points predicted to be charged pions (None: t_d for all)
    t_d_hadron_grid: tuple = (None,)
    # collection radius of the nearest-rule assignment in units of t_d, searched at the best
    # (t_beta, t_d, t_d_hadron) (``hepjax.reco.condense``'s ``reach``; 1: hits beyond t_d are noise)
    reach_grid: tuple[float, ...] = (1.0,)
    # the e/gamma objects' energy sums their hits within this transverse distance [cm] of the
    # predicted position (None: all their hits); chosen by the validation energy resolution
    em_radius_grid: tuple = (None,)
    clue_dc_grid: tuple[float, ...] = (1.0, 1.3, 1.8)       # CE-E d_c [cm]
    clue_kappa_grid: tuple[float, ...] = (4.5, 9.0)         # rho_c = kappa * noise sigma
    clue3d_dc_grid: tuple[float, ...] = (1.0, 2.0, 3.0)     # 3D step d_c in CE-E [cm]
    clue3d_rhoc_grid: tuple[float, ...] = (0.1, 0.5, 2.0)   # 3D step rho_c [GeV]
    clue3d_window_grid: tuple[int, ...] = (2, 4)
    n_tune_clue: int = 200                                   # validation events for the CLUE grid
    # hit assignment at inference (hepjax.reco.condense): "nearest" condensation point among
    # those within t_d, or the paper's "greedy" (first, highest-beta one)
    assign: str = "nearest"
    workers: int = 2
    max_objects: int = 64
    seed: int = 23


VARIANTS = {
    "smoke": Variant(
        "smoke", n_train=120, n_val=32, n_test=64, pairs_per_distance=6, n_train_pairs=16,
        n_particles=(2, 4), energy=(10.0, 50.0), distances=(1.0, 3.0, 10.0),
        model=dict(num_blocks=2, dense_width=16, out_dims=16, propagate_dims=8, space_dims=3,
                   k=8, head_width=16, bn_momentum=0.8, bin_size=256),
        train=OCTrainConfig(num_steps=30, batch_size=4, learning_rate=3e-3, warmup_steps=5,
                            num_objects=4, buckets=(2048,), log_every=10),
        t_beta_grid=(0.2, 0.5), t_d_grid=(0.5, 1.0), t_d_hadron_grid=(None, 1.0),
        reach_grid=(1.0, 2.0), em_radius_grid=(None, 3.0),
        clue_dc_grid=(1.3,),
        clue_kappa_grid=(9.0,), clue3d_dc_grid=(2.0,), clue3d_rhoc_grid=(0.5,),
        clue3d_window_grid=(2,), n_tune_clue=32, workers=1, max_objects=32),
    "cpu": Variant(
        "cpu", n_train=8000, n_val=400, n_test=1000, pairs_per_distance=100,
        model=dict(k=16, cluster_xy_scale=2.0),
        t_beta_grid=(0.3, 0.5, 0.7), t_d_grid=(0.4, 0.5, 0.6, 0.7),
        t_d_hadron_grid=(None, 0.8, 1.0), reach_grid=(1.0, 1.5, 2.0, 3.0),
        em_radius_grid=(None, 1.5, 2.0, 3.0, 4.5),
        train=OCTrainConfig(num_steps=9000, batch_size=2, learning_rate=1e-3, warmup_steps=200,
                            num_objects=10, log_every=100)),
    "full": Variant(
        "full", n_train=20000, n_val=1000, n_test=2000, pairs_per_distance=300,
        model=dict(k=16, cluster_xy_scale=2.0), t_d_hadron_grid=(None, 0.8, 1.0),
        reach_grid=(1.0, 1.5, 2.0, 3.0), em_radius_grid=(None, 1.5, 2.0, 3.0, 4.5),
        train=OCTrainConfig(num_steps=40000, batch_size=4, learning_rate=1e-3,
                            warmup_steps=500, num_objects=10, log_every=200),
        n_tune_clue=500),
}


# the cpu variant with 2,000 close-pair training events added to the 8,000 mixed ones: the
# mixed events have few showers closer than 2 R_M to learn from (~10 % of the particles)
VARIANTS["cpu_pairs"] = dataclasses.replace(VARIANTS["cpu"], name="cpu_pairs", n_train_pairs=2000)


def get(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"variant {name!r}: choose one of {sorted(VARIANTS)}")
    return VARIANTS[name]
