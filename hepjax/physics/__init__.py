"""Physics: four-vector kinematics, pairwise particle features, Lorentz transformations, Cl(1,3).

``hepjax.physics.kinematics`` (JAX) and its numpy twin ``hepjax.physics.numpy_kinematics`` (for
the numpy data code); ``lorentz``; ``clifford``. Submodules are imported on first use, so the
numpy twin can be imported without JAX; the kinematics functions are also reachable from here
(``from hepjax.physics import pt``).
"""
import importlib

_KINEMATICS = ("PAIR_FEATURES", "delta_phi", "delta_r", "energy", "eta", "from_pt_eta_phi_m",
               "jet_momentum", "mass", "mass2", "p_abs", "pairwise_features", "phi", "pt", "pt2",
               "rapidity")
_SUBMODULES = ("clifford", "kinematics", "lorentz", "numpy_kinematics")

__all__ = [*_KINEMATICS, "lorentz"]


def __getattr__(name):
    if name in _KINEMATICS:
        return getattr(importlib.import_module("hepjax.physics.kinematics"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"hepjax.physics.{name}")
    raise AttributeError(f"module 'hepjax.physics' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_KINEMATICS, *_SUBMODULES})
