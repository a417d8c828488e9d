"""Physics: four-vector kinematics, pairwise particle features, Lorentz transformations."""
from hepjax.physics.kinematics import (PAIR_FEATURES, delta_phi, delta_r, energy, eta,
                                       from_pt_eta_phi_m, jet_momentum, mass, mass2, p_abs,
                                       pairwise_features, phi, pt, pt2, rapidity)
from hepjax.physics import lorentz

__all__ = ["PAIR_FEATURES", "delta_phi", "delta_r", "energy", "eta", "from_pt_eta_phi_m",
           "jet_momentum", "lorentz", "mass", "mass2", "p_abs", "pairwise_features", "phi", "pt",
           "pt2", "rapidity"]
