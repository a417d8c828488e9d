"""Quark/gluon discrimination with the Particle Transformer, with or without particle ID.

Qu, Li, Qian, "Particle Transformer for Jet Tagging", ICML 2022 (arXiv:2202.03772), its
quark/gluon benchmark on the Energy Flow Networks paper's sample (Komiske, Metodiev, Thaler,
JHEP 01 (2019) 121; here generated, ``hepjax.data.quark_gluon``). Per-particle inputs as
``hepjax.configs.quark_gluon_particlenet`` (log z, y and phi relative to the jet centroid,
standardized; ``:id`` energyflow's PDG-id float, ``:onehot`` eight one-hot detector classes);
the pairwise features (ln Delta, ln k_T, ln z, ln m^2) from the particles' four-momenta
(``vectors``). Network: the paper's (8 particle-attention blocks, 2 class-attention blocks,
embedding (128, 512, 128), pair embedding (64, 64, 64), 8 heads; ``hepjax.models.part``).
Training as the particle_transformer repository's train_QuarkGluon.sh for ParT: Ranger at 1e-3,
weight decay 0.01, weaver's flat+decay schedule, batch 512, 20 epochs (here at most, with the
quark/gluon PFN's early stopping).

``get_config("PID[,VARIANT]")``: PID one of none (default), id, onehot; VARIANT '' (the
generated sample of ``hepjax.configs.defaults.quark_gluon_data``), ``smoke`` (a few seconds:
600 jets, one 16-wide block) or ``cpu`` (the paper's network on the cpu sample).
"""
import ml_collections

from hepjax import models
from hepjax.configs import quark_gluon_particlenet

EPOCHS = 20
BATCH = 512
SMOKE_MODEL = {"embed_dims": (16, 16), "pair_embed_dims": (8,), "num_heads": 2, "num_layers": 1,
               "num_cls_layers": 1}


def get_config(arg: str = "none") -> ml_collections.ConfigDict:
    pid, _, variant = arg.partition(",")
    if (pid or "none") not in ("none", "id", "onehot"):
        raise ValueError(f"quark_gluon_part: unknown particle ID {pid!r}; use none, id or onehot")
    if variant not in ("", "smoke", "cpu"):
        raise ValueError(f"quark_gluon_part: unknown variant {variant!r}; use '', 'smoke' or "
                         "'cpu'")
    c = quark_gluon_particlenet.get_config(arg)
    c.recipe_source = "particle_transformer train_QuarkGluon.sh (ParT)"
    c.model = models.default_config("part")
    c.optimizer = ml_collections.ConfigDict({"name": "ranger", "learning_rate": 1e-3,
                                             "weight_decay": 0.01,
                                             "schedule": {"name": "flat_decay"}})
    if variant == "smoke":
        with c.model.ignore_type():
            c.model.update(SMOKE_MODEL)
    else:
        c.train.update(num_epochs=EPOCHS, batch_size=BATCH)
    return c
