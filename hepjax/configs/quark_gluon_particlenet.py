"""Quark/gluon discrimination with ParticleNet, with or without particle ID.

Qu, Gouskos, "Jet tagging via particle clouds", Phys. Rev. D 101 (2020) 056019 (arXiv:1902.08570),
section on quark/gluon tagging, on the Energy Flow Networks paper's sample (Komiske, Metodiev,
Thaler, JHEP 01 (2019) 121; here generated, ``hepjax.data.quark_gluon``). Inputs are the
quark/gluon PFN's per-particle features (``hepjax.configs.quark_gluon_pfn``): z = pT / sum pT
(taken as log z, as ParticleNet's log(pT / pT_jet)), y and phi relative to the jet's
pT-weighted centroid (the first EdgeConv block's kNN coordinates, ``coord_index = (1, 2)``),
standardized; ``:id`` adds energyflow's PDG-id float, ``:onehot`` the eight one-hot detector
classes (the paper's "experimentally accessible" particle ID). Network: the paper's (k = 16,
EdgeConv (64,64,64), (128,128,128), (256,256,256), FC 256 with dropout 0.1,
``hepjax.models.particlenet``). Training as the particle_transformer repository's
train_QuarkGluon.sh for ParticleNet: Ranger at 1e-2 with weaver's flat+decay schedule,
batch 512, 20 epochs (here at most, with the quark/gluon PFN's early stopping).

``get_config("PID[,VARIANT]")``: PID one of none (default), id, onehot; VARIANT '' (the
generated sample of ``hepjax.configs.defaults.quark_gluon_data``), ``smoke`` (a few seconds:
600 jets, a two-block network with k = 4) or ``cpu`` (the same network on the cpu sample).
"""
import ml_collections

from hepjax import models
from hepjax.configs import quark_gluon_pfn

EPOCHS = 20
BATCH = 512
SMOKE_MODEL = {"conv_params": ((4, (16, 16)), (4, (16, 16))), "fc_params": ((16, 0.1),)}


def get_config(arg: str = "none") -> ml_collections.ConfigDict:
    pid, _, variant = arg.partition(",")
    if (pid or "none") not in ("none", "id", "onehot"):
        raise ValueError(f"quark_gluon_particlenet: unknown particle ID {pid!r}; use none, id or "
                         "onehot")
    if variant not in ("", "smoke", "cpu"):
        raise ValueError(f"quark_gluon_particlenet: unknown variant {variant!r}; use '', 'smoke' "
                         "or 'cpu'")
    c = quark_gluon_pfn.get_config(arg)
    c.recipe_source = "particle_transformer train_QuarkGluon.sh (ParticleNet)"
    c.preprocessing = ml_collections.ConfigDict({"log_features": ("z",), "standardize": True})
    c.model = models.default_config("particlenet")
    c.model.coord_index = (1, 2)
    c.optimizer = ml_collections.ConfigDict({"name": "ranger", "learning_rate": 1e-2,
                                             "schedule": {"name": "flat_decay"}})
    if variant == "smoke":
        c.model.update(SMOKE_MODEL)
    else:
        c.train.update(num_epochs=EPOCHS, batch_size=BATCH)
    return c
