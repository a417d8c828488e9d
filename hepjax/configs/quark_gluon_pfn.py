"""Quark/gluon discrimination with a Particle Flow Network, with or without particle ID.

Komiske, Metodiev, Thaler, "Energy Flow Networks: Deep Sets for Particle Jets", JHEP 01 (2019)
121 (arXiv:1810.05165), section 4: Pythia 8 Z + q (u, d, s; label 1) vs Z + g (label 0) jets,
R = 0.4, 500 < pT < 550 GeV, |y| < 1.7 (``hepjax.data.quark_gluon``, generated and cached on
first use).
Per-particle inputs (z, y, phi) centred on the jet's pT-weighted centroid, z = pT / sum pT
(the paper's PFN); ``:id`` adds energyflow's PDG-id float (the paper's PFN-ID), ``:onehot``
eight one-hot detector classes (photon, charged hadron +/-, neutral hadron, e-/e+, mu-/mu+;
the information of the paper's PFN-Ex). Network: Phi (100, 100, 256), F (100, 100, 100), ReLU
(``hepjax.models.pfn``) initialised as energyflow's Keras layers (``INIT`` below); training as
the energyflow examples that reproduce the paper (examples/pfn_example.py: Keras Adam at its
default learning rate 1e-3, early stopping on the validation loss), at most ``EPOCHS`` epochs,
but batches of ``BATCH`` = 64 instead of their 500: on ~9k training jets batch 500 gives 18
updates an epoch. experiments/quark_gluon trains its generated sample (179,616 jets) at batch
128 for up to 50 epochs with patience 8 (run.py's flags): shorter training cost it 0.01-0.015
in AUC (its README).

``get_config("PID[,VARIANT]")``: PID one of none (default), id, onehot; VARIANT '' (the
defaults' 15,000 generated jets), ``smoke`` (a few seconds: 600 jets, small network) or ``cpu``
(what ``experiments/quark_gluon/run.py --variant cpu`` trains).
"""
import ml_collections

from hepjax import models
from hepjax.configs import defaults

EPOCHS = 40
BATCH = 64
PATIENCE = 6
BUCKETS = (32, 48, 64, 96, 128)
# Batches of jets of similar length (train.length_sort_window > 0) are off: the multiplicity is
# the strongest quark/gluon feature, so length-sorted batches are nearly one class each. On
# 9,909 training jets they cost PFN-ID 0.0095 in test AUC (0.8587 with a window of 8 vs 0.8682
# without; energyflow's own Keras PFN-ID on the same jets 0.8750: experiments/quark_gluon).
SORT_WINDOW = 0
# energyflow's initialisation (He-uniform kernels, Glorot-uniform output layer, zero biases:
# hepjax.nn.MLP's init='he'), not the PFN's PyTorch-style default: on the same 9,909 training
# jets PFN-ID reached 0.8682 / 0.8659 (seeds 0, 1) with the PyTorch scheme and 0.8739 / 0.8764
# with He's, energyflow's own Keras PFN-ID 0.8750 / 0.8765 / 0.8751 (seeds 0, 1, 2).
INIT = "he"


def get_config(arg: str = "none") -> ml_collections.ConfigDict:
    pid, _, variant = arg.partition(",")
    pid = pid or "none"
    if pid not in ("none", "id", "onehot"):
        raise ValueError(f"quark_gluon_pfn: unknown particle ID {pid!r}; use none, id or onehot")
    if variant not in ("", "smoke", "cpu"):
        raise ValueError(f"quark_gluon_pfn: unknown variant {variant!r}; use '', 'smoke' or 'cpu'")
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "binary"
    c.data = defaults.quark_gluon_data(particle_id=pid)
    c.preprocessing = ml_collections.ConfigDict({"log_features": (), "standardize": False})
    c.model = models.default_config("pfn")
    c.model.init = INIT
    c.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 1e-3})
    c.train = defaults.train(
        num_steps=0, num_epochs=EPOCHS, batch_size=BATCH, eval_batch_size=1000, log_every=50,
        eval_every=0, eval_every_epochs=1.0, checkpoint_every=0, checkpoint_every_epochs=1.0,
        early_stopping=defaults.early_stopping(patience=PATIENCE),
        length_buckets=BUCKETS, length_sort_window=SORT_WINDOW)
    if variant == "smoke":
        c.data.update(n_jets=600, events_per_chunk=100, max_particles=64)
        c.model.update(phi_sizes=(16, 16), f_sizes=(16,))
        c.train.update(num_epochs=0, num_steps=120, batch_size=32, eval_batch_size=256,
                       log_every=20, eval_every=40, checkpoint_every=40, eval_every_epochs=0.0,
                       checkpoint_every_epochs=0.0, length_buckets=(32, 64))
    return c
