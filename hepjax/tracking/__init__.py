"""Charged-particle tracking on TrackML-style events (issue 24).

Submodules, imported on first use so that ``import hepjax.tracking`` stays light:

* :mod:`hepjax.tracking.trackml` -- the TrackML CSV format (events, detectors, submissions),
  derived hit features and module geometry (pandas for the CSV IO).
* :mod:`hepjax.tracking.building` -- track candidates from scored edges: connected components
  (a vectorised numpy union-find) and a greedy walk-through; unassigned hits and submissions.
* :mod:`hepjax.tracking.metrics` -- truth edges, edge efficiency/purity/ROC, double-majority
  track matching (efficiency, fake and duplicate rates, binned in pT and eta) and the TrackML
  score (Amrouche et al., arXiv:1904.06778).
"""
import importlib

_SUBMODULES = ("trackml", "building", "metrics", "geometry", "sim", "graph", "train")

__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
