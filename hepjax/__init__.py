"""hepjax: machine learning for high-energy physics in JAX.

Subpackages (imported on first use, so ``import hepjax.teach`` stays numpy-only):

    hepjax.kernels        hand-written fast paths beside their references, chosen per backend
                          (HEPJAX_KERNELS=auto|fast|reference)
    hepjax.nn             activations, initialisers, Flax NNX layers (MLP, mask-aware norms),
                          attention/transformer blocks, recurrent cells, convolutions
    hepjax.graphs         segment ops, GraphsTuple padding, kNN/radius/LSH graphs, GNN blocks
    hepjax.physics        kinematics, ParT pair features, Lorentz transformations, Cl(1,3)
    hepjax.losses         losses with masks, weights and explicit reductions
    hepjax.metrics        ROC, AUC, background rejection 1/eps_B, confusion matrices, bootstrap
    hepjax.optim          optax chains from configs, schedules, early stopping
    hepjax.preprocessing  standardisation, log transforms, PCA, saved with the run
    hepjax.train          TrainState, pure steps, the loop, checkpoints, run records
    hepjax.parallel       device meshes and shardings, the teaching pmap step
    hepjax.data           generated physics samples, readers, static-shape batching
    hepjax.models         complete networks by name
    hepjax.sim            a parametrised high-granularity sampling calorimeter (numpy only)
    hepjax.reco           object condensation (loss, inference) and CLUE clustering
    hepjax.tracking       TrackML format, simulation in the TrackML geometry, track building,
                          tracking metrics and the TrackML score
    hepjax.config         Python configs and --config.x=y overrides
    hepjax.rng            keys from seeds; per-step keys by fold_in
    hepjax.plots          background-rejection curves
    hepjax.teach          the from-scratch autodiff teaching module (numpy only)
"""
import importlib

__version__ = "0.1.0"

_SUBMODULES = ("config", "data", "graphs", "kernels", "losses", "metrics", "models", "nn", "optim",
               "parallel", "physics", "plots", "preprocessing", "reco", "rng", "sim", "teach", "tracking", "train")
__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"hepjax.{name}")
    raise AttributeError(f"module 'hepjax' has no attribute {name!r}")
