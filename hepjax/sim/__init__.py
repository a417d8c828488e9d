"""Fast simulation of a high-granularity sampling calorimeter (numpy only, no JAX).

* ``hepjax.sim.geometry``: materials (PDG values) and the planar CMS-HGCAL-like geometry with its
  derived X0, lambda_int, Moliere radius, critical energy and sampling fractions.
* ``hepjax.sim.showers``: Grindhammer-Peters electromagnetic showers, a two-component hadronic
  shower model, MIP tracks, sampling fluctuations.
* ``hepjax.sim.calorimeter``: events (particle guns, Pythia 8 jets), digitisation with noise and
  zero suppression, per-hit truth, ``generate`` and the ``hepjax generate calorimeter`` options.
* ``hepjax.sim.io``: the HDF5 layout, writer and readers (per-event views or padded arrays).
"""
from hepjax.sim.calorimeter import (GunConfig, JetConfig, SimConfig, event_rng, generate,
                                    jet_particles, make_particles, random_gun, simulate_event,
                                    simulate_events)
from hepjax.sim.geometry import CE_E, CE_H, Geometry, Material, Section
from hepjax.sim.io import CalorimeterFile, read_event, read_events, write_events

__all__ = ["SimConfig", "GunConfig", "JetConfig", "simulate_event", "simulate_events",
           "make_particles", "random_gun", "jet_particles", "event_rng", "generate", "Geometry",
           "Section", "Material", "CE_E", "CE_H", "CalorimeterFile", "read_events", "read_event",
           "write_events"]
