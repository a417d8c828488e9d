"""Quark/gluon discrimination with an Energy Flow Network (IRC safe: sum_i z_i Phi(y_i, phi_i)).

Komiske, Metodiev, Thaler, "Energy Flow Networks: Deep Sets for Particle Jets", JHEP 01 (2019)
121 (arXiv:1810.05165): the EFN reads only the pT fractions and the angles (from the
four-momenta, ``hepjax.models.pfn.efn_inputs``), so it has no particle-ID variant. Data,
network sizes and training as ``hepjax.configs.quark_gluon_pfn``.

``get_config(VARIANT)``: '' (15,000 generated jets), ``smoke`` or ``cpu``.
"""
import ml_collections

from hepjax import models
from hepjax.configs import quark_gluon_pfn


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in ("", "smoke", "cpu"):
        raise ValueError(f"quark_gluon_efn: unknown variant {arg!r}; use '', 'smoke' or 'cpu'")
    c = quark_gluon_pfn.get_config(f"none,{arg}" if arg else "none")
    sizes = {k: c.model[k] for k in ("phi_sizes", "f_sizes")}
    c.model = models.default_config("efn")
    c.model.update(sizes)
    return c
