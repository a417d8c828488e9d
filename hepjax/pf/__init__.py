"""Particle flow on whole events (issue 25): ``elements`` (tracks and topological calorimeter
clusters from generator particles, with per-element targets), ``events`` (Pythia 8 tt-bar / QCD
with pile-up -> HDF5, ``hepjax generate particle-flow``), ``baseline`` (the Delphes E-flow
logic on the elements), ``links`` (truth-free track-cluster links: MLPF's physics inputs and
regression references). The MLPF network is ``hepjax.models.mlpf``; the experiment is
``experiments/particle_flow``."""
