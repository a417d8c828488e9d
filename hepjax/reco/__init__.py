"""Reconstruction in high-granularity calorimeters: object condensation and CLUE.

* :mod:`hepjax.reco.condensation` -- the object-condensation loss and inference (Kieseler,
  "Object condensation: one-stage grid-free multi-object reconstruction in physics detectors,
  graph and image data", EPJC 80 (2020) 886), in JAX with fixed shapes and masks.
* :mod:`hepjax.reco.clue` -- CMS's CLUE density clustering (Rovere, Chen, Di Pilato, Pantaleo,
  Seez, "CLUE: A Fast Parallel Clustering Algorithm for High Granularity Calorimeters in
  High-Energy Physics", Front. Big Data 3 (2020) 591315) per layer, and a CLUE3D-like association
  of layer clusters into showers; numpy, tiled, ~linear in the number of hits.
"""
from hepjax.reco import clue, condensation
from hepjax.reco.clue import CLUEParams, CLUEResult, Showers, clue2d, clue3d
from hepjax.reco.condensation import (BETA_TERMS, Condensates, OCLoss, batched_condense,
                                      batched_object_condensation_loss, condensation_charge,
                                      condense, energy_loss, object_condensation_loss,
                                      position_loss, type_loss)

__all__ = [
    "clue", "condensation",
    "CLUEParams", "CLUEResult", "Showers", "clue2d", "clue3d",
    "BETA_TERMS", "Condensates", "OCLoss", "batched_condense", "batched_object_condensation_loss",
    "condensation_charge", "condense", "energy_loss", "object_condensation_loss",
    "position_loss", "type_loss",
]
