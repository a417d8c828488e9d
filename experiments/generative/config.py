"""Variants of the generative-model experiment (``python -m experiments.generative.run --dataset
calo --variant NAME``): dataset sizes, model sizes and training lengths.

* ``smoke`` -- CI: 500 training showers, tiny models, tens of steps; every output is written in
  well under a minute. Its numbers mean nothing.
* ``cpu`` -- what a 2-core CPU runs in about 30-50 minutes: 30,000 training showers, 5,000 test
  and 5,000 reference showers, each model 2,500-12,000 steps of 256 showers.

Two flows: ``flow`` (rational-quadratic-spline couplings: good, but ~11-44x faster than the
simulator only) and ``flow_affine`` (affine couplings with four elementwise spline layers,
``ConditionalFlow(marginal_splines=4)``: the fast one, >= 100x), trained with the
dequantisation redrawn at every step (``dequantise_per_step``: ``flows.dequantised_flow_loss``
on the raw showers). Optional flow keys: ``bound`` (spline range, default 4), ``weight_decay``
(AdamW, default 0), ``zero_calibration`` (``calo_data.ZeroCalibration.fit`` arguments: the
per-voxel read-out thresholds calibrated on the training showers after training, in ``n_bins``
bins of E_inc x ``n_layer_bins`` bins of each layer's energy; absent: the preprocessing's fixed
cut), ``layer_calibration`` (``calo_data.LayerCalibration.fit`` arguments: quantile mapping of
the layer-energy coordinates per E_inc bin, calibrated on the training showers; absent: none);
per variant ``dequant_box`` (``CaloPreprocessor.box``). The variants tried with them are
in the README's tried-and-not-kept table.
* ``full`` -- larger models and 10x longer training (a GPU job; not run here).

The data (``hepjax.models.generative.calo_data``): photons, 10-100 GeV log-uniform, normal
incidence at a cell centre, CE-E grouped into 4 longitudinal layers of 7 x 5 x 5 cells.
Seeds: training = S, test = S + 1, reference (the second, independent truth sample) = S + 2,
models = S + 10 ...
"""
from __future__ import annotations

import dataclasses

from hepjax.models.generative.calo_data import CaloDataConfig


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    n_train: int
    n_test: int
    n_ref: int
    flow: dict
    flow_affine: dict
    diffusion: dict
    gan: dict
    vae: dict
    data: CaloDataConfig = CaloDataConfig()
    models: tuple[str, ...] = ("flow", "flow_affine", "diffusion", "gan", "vae")
    # CaloPreprocessor.box: zero voxels dequantised log-uniformly in [t e^-box0, t e^-box1]
    dequant_box: tuple[float, float] = (2.0, 1.0)
    classifier_epochs: int = 40
    workers: int = 2
    seed: int = 27


VARIANTS = {
    "smoke": Variant(
        "smoke", n_train=500, n_test=200, n_ref=200,
        flow=dict(kind="spline", n_layers=2, hidden=(32,), bins=6, layout="per_param",
                  dequantise_per_step=True, steps=40, batch=128, lr=3e-3, chunk=20,
                  zero_calibration=dict(n_bins=2, n_layer_bins=2),
                  layer_calibration=dict(n_bins=2)),
        flow_affine=dict(kind="affine", n_layers=2, hidden=(32,), layout="per_param",
                         dequantise_per_step=True, steps=40, batch=128, lr=3e-3, chunk=20,
                         zero_calibration=dict(n_bins=2, n_layer_bins=2),
                         layer_calibration=dict(n_bins=2)),
        diffusion=dict(T=100, width=32, depth=1, steps=20, batch=128, lr=2e-3, ddim_steps=5,
                       ddim_start_abar=0.03, ema=0.9, chunk=20),
        gan=dict(latent=16, hidden=(32,), steps=10, batch=128, lr=1e-4, n_critic=2,
                 chunk=10),
        vae=dict(latent=8, hidden=(32,), steps=20, batch=128, lr=2e-3, chunk=20),
        classifier_epochs=2, workers=1),
    "cpu": Variant(
        "cpu", n_train=30000, n_test=5000, n_ref=5000,
        flow=dict(kind="spline", n_layers=8, hidden=(160, 160), bins=8, steps=3500, batch=256,
                  lr=1e-3, chunk=250),
        flow_affine=dict(kind="affine", n_layers=8, hidden=(160, 160), layout="per_param",
                         marginal_splines=4, marginal_bins=16,
                         dequantise_per_step=True, steps=12000, batch=256, lr=1e-3,
                         chunk=250, zero_calibration=dict(n_bins=5, n_layer_bins=5),
                         layer_calibration=dict(n_bins=5)),
        diffusion=dict(T=400, width=256, depth=3, steps=6000, batch=256, lr=1e-3,
                       ddim_steps=25, ddim_start_abar=0.03, ema=0.999, chunk=250),
        gan=dict(latent=64, hidden=(256, 256), steps=2500, batch=256, lr=2e-4, n_critic=5,
                 chunk=100),
        vae=dict(latent=16, hidden=(256, 256), steps=2500, batch=256, lr=1e-3, chunk=250)),
    "full": Variant(
        "full", n_train=100000, n_test=20000, n_ref=20000,
        flow=dict(kind="spline", n_layers=12, hidden=(512, 512), bins=12, layout="per_param",
                  steps=60000, batch=512, lr=5e-4, chunk=500),
        flow_affine=dict(kind="affine", n_layers=16, hidden=(512, 512), layout="per_param",
                         steps=60000, batch=512, lr=5e-4, chunk=500),
        diffusion=dict(T=1000, width=512, depth=4, steps=100000, batch=512, lr=5e-4,
                       ddim_steps=50, ddim_start_abar=0.03, ema=0.9995, chunk=500),
        gan=dict(latent=64, hidden=(512, 512, 512), steps=30000, batch=512, lr=1e-4,
                 n_critic=5, chunk=500),
        vae=dict(latent=32, hidden=(512, 512), steps=30000, batch=512, lr=5e-4, chunk=500)),
}


def get(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"variant {name!r}: choose one of {sorted(VARIANTS)}")
    return VARIANTS[name]
