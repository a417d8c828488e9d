"""Complete networks, built from a config by name (``config.model.name``).

Every entry takes (model config, per-example input shape, number of outputs, nnx.Rngs). Particle
models are called ``model(features (B, N, F), mask (B, N), vectors (B, N, 4))``; image models
``model(images (B, H, W, C))``; the MLP ``model(features (B, F))``.

| name          | model (paper)                                        | file            |
|---------------|------------------------------------------------------|-----------------|
| mlp           | MLP on high-level observables                        | hepjax.nn       |
| cnn           | jet-image CNN (Macaluso, Shih 2018)                  | jet_cnn.py      |
| resnext       | ResNeXt-style jet-image CNN (landscape 'ResNeXt')    | jet_cnn.py      |
| pfn / efn     | Particle / Energy Flow Networks (Komiske et al. 2019)| pfn.py          |
| particlenet   | ParticleNet (Qu, Gouskos 2020)                       | particlenet.py  |
| jedinet       | JEDI-net interaction network (Moreno et al. 2020)    | jedinet.py      |
| gravnet       | GravNet (Qasim et al. 2019)                          | gravnet.py      |
| part          | Particle Transformer (Qu, Li, Qian 2022)             | part.py         |
| transformer   | ParT without pair features (the paper's ablation)    | part.py         |
| deepjet       | DeepJet-style per-particle dense + LSTM tagger       | deepjet.py      |
| lola          | LoLa (Butter et al. 2018)                            | lola.py         |
| lorentznet    | LorentzNet (Gong et al. 2022)                        | lorentznet.py   |
| lgatr         | L-GATr (Spinner et al. 2024)                         | lgatr.py        |

A model config holds ``name``, ``num_classes`` (read by the task) and the builder's own fields
(each module's ``default_config()``); unknown fields are an error.

Outside the registry (their inputs are not one per-jet array): ``seq2seq.Seq2SeqTransformer``,
an encoder-decoder transformer on token sequences (the attention lectures' example);
``deepjet.DeepJetFull``, DeepJet with its four inputs (charged and neutral candidates, secondary
vertices, globals; ``experiments/cms_jets``); ``condensation_net.CondensationNet`` (calorimeter
hits); ``interaction_network`` (tracking graphs); ``generative`` (calorimeter fast simulation);
``mlpf.MLPF`` (particle-flow elements of whole events; ``experiments/particle_flow``);
``autoencoders`` (DenseAE, ConvAE, VAE, SetAE and the denoising noise models: unsupervised,
their output is a reconstruction; anomaly scores in ``hepjax.anomaly``); ``jetclr.JetCLR``
(JetCLR-style contrastive jet representation, Dillon et al. 2021).
"""
from __future__ import annotations

import importlib
from typing import Callable

import ml_collections
from flax import nnx

from hepjax.nn import MLP

_HARNESS_FIELDS = ("name", "num_classes")


def _mlp(cfg, input_shape, num_outputs, rngs):
    """A fully connected network on high-level features (the landscape's 'MLP on observables')."""
    if len(input_shape) != 1:
        raise ValueError(f"model 'mlp' takes flat feature vectors, got per-example shape {input_shape}")
    return MLP(input_shape[0], tuple(cfg.hidden), num_outputs, activation=cfg.activation,
               dropout=float(cfg.dropout), norm=cfg.get("norm") or None,
               residual=bool(cfg.get("residual", False)), init=cfg.get("init", "he"), rngs=rngs)


# name -> (module, builder, defaults function, its argument)
_ENTRIES = {
    "cnn": ("jet_cnn", "build", "default_config", None),
    "resnext": ("jet_cnn", "build_resnext", "default_resnext_config", None),
    "pfn": ("pfn", "build_pfn", "default_config", "pfn"),
    "efn": ("pfn", "build_efn", "default_config", "efn"),
    "particlenet": ("particlenet", "build", "default_config", None),
    "jedinet": ("jedinet", "build", "default_config", None),
    "gravnet": ("gravnet", "build", "default_config", None),
    "part": ("part", "build", "default_config", None),
    "transformer": ("part", "build_transformer", "default_config", None),
    "deepjet": ("deepjet", "build", "default_config", None),
    "lola": ("lola", "build", "default_config", None),
    "lorentznet": ("lorentznet", "build", "default_config", None),
    "lgatr": ("lgatr", "build", "default_config", None),
}


def _module_defaults(name: str):
    module_name, builder, defaults_fn, arg = _ENTRIES[name]
    module = importlib.import_module(f"hepjax.models.{module_name}")
    defaults = getattr(module, defaults_fn)
    return module, builder, defaults(arg) if arg else defaults()


def _from_module(name: str):
    """A registry entry: the model config minus the harness fields, checked against the
    module's defaults, passed to its builder."""

    def build(cfg, input_shape, num_outputs, rngs):
        module, builder, defaults = _module_defaults(name)
        known = set(defaults.keys()) - set(_HARNESS_FIELDS)
        fields = {k: cfg[k] for k in cfg.keys() if k not in _HARNESS_FIELDS}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"config.model ({name}): unknown fields {unknown}; known: {sorted(known)}")
        return getattr(module, builder)(ml_collections.ConfigDict(fields), tuple(input_shape),
                                        num_outputs, rngs)

    return build


MODELS: dict[str, Callable] = {"mlp": _mlp, **{name: _from_module(name) for name in _ENTRIES}}


def default_config(name: str) -> ml_collections.ConfigDict:
    """The model config for ``name`` with its paper's settings (plus ``name``, ``num_classes``)."""
    if name == "mlp":
        cfg = ml_collections.ConfigDict({"hidden": (64, 64, 64), "activation": "relu",
                                         "dropout": 0.1, "norm": "", "residual": False,
                                         "init": "he"})
    elif name in _ENTRIES:
        cfg = _module_defaults(name)[2]
    else:
        raise ValueError(f"unknown model {name!r}; known models are {sorted(MODELS)}")
    cfg.name = name
    cfg.num_classes = 2
    return cfg


def build_model(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> nnx.Module:
    if cfg.name not in MODELS:
        raise ValueError(f"config.model.name={cfg.name!r}: known models are {sorted(MODELS)}")
    return MODELS[cfg.name](cfg, tuple(input_shape), num_outputs, rngs)


def model_fn_from_config(cfg, input_shape, num_outputs: int):
    """``rngs -> module`` for ``hepjax.train`` (which supplies seeded streams)."""
    return lambda rngs: build_model(cfg, input_shape, num_outputs, rngs)
