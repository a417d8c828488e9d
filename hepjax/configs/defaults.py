"""Shared config sections: every config starts from these and sets only what differs.

``train(**fields)`` is the training section with every field the harness reads, at its
default, updated by ``fields``; ``mlp(hidden, ...)`` the MLP model section;
``adamw_warmup_cosine(...)`` the AdamW + warm-up/cosine optimiser section. A field not declared
here cannot be set by ``--config.train.x=y`` (ml_collections refuses unknown fields).
"""
from __future__ import annotations

import ml_collections


def early_stopping(**fields) -> ml_collections.ConfigDict:
    """Early stopping on the validation loss; ``patience`` in validations; the best checkpoint
    restored at the end."""
    section = {"metric": "loss", "mode": "min", "patience": 4, "min_delta": 0.0,
               "restore_best": True}
    section.update(fields)
    return ml_collections.ConfigDict(section)


def train(**fields) -> ml_collections.ConfigDict:
    """The training section. Each duration is given exactly once, in steps, epochs or examples
    (the other two 0; ``hepjax.train.spec`` resolves them to steps): the run's length
    ``num_steps`` / ``num_epochs`` / ``num_examples``, validation every ``eval_every`` /
    ``eval_every_epochs`` / ``eval_every_examples``, periodic checkpoints every
    ``checkpoint_every`` / ``checkpoint_every_epochs`` / ``checkpoint_every_examples``."""
    section = ml_collections.ConfigDict({
        "num_steps": 1000,
        "num_epochs": 0,
        "num_examples": 0,
        "batch_size": 128,
        "eval_batch_size": 1024,    # 0: batch_size
        "log_every": 100,           # steps
        "eval_every": 500,
        "eval_every_epochs": 0.0,
        "eval_every_examples": 0,
        "checkpoint_every": 500,
        "checkpoint_every_epochs": 0.0,
        "checkpoint_every_examples": 0,
        "length_buckets": (),       # e.g. (32, 64, 96, 128): batches cut to the smallest bucket
                                    # holding their longest example (hepjax.data.pipeline)
        "length_sort_window": 0,    # > 0 (with buckets): batches of similar lengths, sorted
                                    # within windows of this many batches (seeded)
        "keep_checkpoints": 2,
        "restore_step": 0,          # resume from: 0 = the newest intact checkpoint, or that step
        "ensemble_size": 1,         # K independently seeded members in one vmapped step
        "num_devices": 1,           # 0: all devices (required with several processes)
        "precision": "float32",     # or "bfloat16": bf16 forward pass, fp32 params/optimiser/loss
        "tensorboard": False,
        "early_stopping": early_stopping(),
        # fine-tuning (hepjax.train.finetune): parameters from a pre-trained run, checkpoint
        # directory or step directory; regular expressions on the NNX parameter path
        # ("blocks/0/attn/kernel", "out/bias": ``finetune.param_paths``)
        "init_from": "",            # "" = train from the seed's initialisation
        "init_reinit": (r"^out/",),  # left freshly initialised (the new head); with init_from
        "freeze": (),               # never updated (no optimiser state kept for them)
        "body_lr_scale": 1.0,       # updates of the loaded, unfrozen non-head parameters x this
    })
    section.update(fields)
    return section


def mlp(hidden, *, dropout: float = 0.1, num_classes: int = 2, **fields) -> ml_collections.ConfigDict:
    """The ``mlp`` model section (``hepjax.models``): ReLU, no normalisation, no residuals."""
    section = {"name": "mlp", "hidden": tuple(hidden), "activation": "relu", "dropout": dropout,
               "norm": "", "residual": False, "num_classes": num_classes}
    section.update(fields)
    return ml_collections.ConfigDict(section)


def adamw_warmup_cosine(learning_rate: float, *, weight_decay: float = 1e-4,
                        clip_norm: float = 1.0, warmup_steps: int = 100) -> ml_collections.ConfigDict:
    """AdamW with global-norm clipping, linear warm-up then cosine decay to 0 at the last step."""
    return ml_collections.ConfigDict({
        "name": "adamw", "learning_rate": learning_rate, "weight_decay": weight_decay,
        "clip_norm": clip_norm,
        "schedule": ml_collections.ConfigDict({"name": "warmup_cosine", "warmup_steps": warmup_steps}),
    })


# ---------------------------------------------------------------------------------------------
# Data sections, one per ``data.name``: every field the dataset's loader reads, at its default.
# ``data_section(cfg)`` completes a (possibly partial) section from these; a field not declared
# here is an error, never silently ignored.

def top_tagging_data(**fields) -> ml_collections.ConfigDict:
    """``hepjax.data.top_tagging``: the reference dataset at ``path`` (a directory with
    train/val/test.h5, or one file with a ``ttv`` column), or with ``path`` empty Pythia 8 jets
    generated once and cached under ``cache_dir`` (default ``$HEPJAX_CACHE`` or
    ``~/.cache/hepjax``)."""
    section = ml_collections.ConfigDict({
        "name": "top_tagging",
        "path": "",
        "cache_dir": "",
        "seed": 2024,                       # generation seed; also seeds the training subsets
        "n_jets": 6000,
        "detector": "fast",                 # "fast" (Delphes-ATLAS-like) or "none" (truth level)
        "mpi": False,                       # multi-parton interactions: off, as in the reference
        "workers": 1,
        "events_per_chunk": 200,
        "ttv_fractions": (0.6, 0.2, 0.2),   # train, test, val fractions of generated jets
        "representation": "jet_observables",  # or "particles", "images"
        "observables": ("mass", "pt", "eta", "n_constituents", "tau1", "tau2", "tau3", "tau21",
                        "tau32", "c2", "d2"),
        "radius": 0.8,
        "max_particles": 200,
        "particle_id": False,               # particle-ID / charge inputs (generated jets only)
        "image_size": 40,
        "train_fraction": 1.0,              # nested seeded subset of the training jets
        "max_train_jets": 0,                # 0: every jet
        "max_val_jets": 0,
    })
    section.update(fields)
    return section


def dijet_data(**fields) -> ml_collections.ConfigDict:
    """``hepjax.data.dijet``: X -> jj vs QCD dijet events generated on the fly; the splits use
    seeds seed, seed + 1, seed + 2."""
    section = ml_collections.ConfigDict({"name": "dijet_resonance", "path": "", "seed": 1000,
                                         "n_train": 60_000, "n_val": 10_000, "n_test": 20_000})
    section.update(fields)
    return section


def npz_data(**fields) -> ml_collections.ConfigDict:
    """``npz``: ``path`` is a directory with train.npz, val.npz and test.npz."""
    section = ml_collections.ConfigDict({"name": "npz", "path": ""})
    section.update(fields)
    return section


def quark_gluon_data(**fields) -> ml_collections.ConfigDict:
    """``hepjax.data.quark_gluon``: the Energy Flow Networks paper's Pythia 8 Z + q/g jets
    (R = 0.4, 500 < pT < 550 GeV, |y| < 1.7, u/d/s quarks, MPI on, generator level), generated
    once and cached
    under ``cache_dir``, or an energyflow .npz / native file at ``path``; ``particle_id`` 'none'
    (z, y, phi), 'id' (+ energyflow's PDG-id float, PFN-ID) or 'onehot' (+ 8 detector classes)."""
    section = ml_collections.ConfigDict({
        "name": "quark_gluon",
        "path": "",
        "cache_dir": "",
        "seed": 2019,                       # generation seed; also seeds splits and subsets
        "n_jets": 22_468,                   # the paper: 2M; experiments/quark_gluon trains on
                                            # 179,616 (--n-jets; generated by 2 processes)
        "detector": "none",                 # generator level, as the energyflow sample
        "mpi": True,                        # multi-parton interactions on, as that sample
        "workers": 1,
        "events_per_chunk": 200,
        "ttv_fractions": (0.6, 0.3, 0.1),   # train, test, val
        "particle_id": "none",              # "none", "id" or "onehot"
        "max_particles": 128,
        "train_fraction": 1.0,              # nested seeded subset of the training jets
        "max_train_jets": 0,                # 0: every jet
        "max_val_jets": 0,
    })
    section.update(fields)
    return section


def jetclass_data(**fields) -> ml_collections.ConfigDict:
    """``hepjax.data.jetclass_generation``: JetClass-layout ROOT files (Qu, Li, Qian,
    arXiv:2202.03772) at ``path`` (one file, split by a seeded permutation in ``ttv_fractions``,
    or a directory in the release's train*/val*/test* layout), or with ``path`` empty the
    JetClass-style sample generated here (``n_per_class`` jets of each of the ten classes) once
    and cached under ``cache_dir``. ``particle_id`` adds the charge and five particle-ID flags,
    ``impact_parameters`` tanh(d0), d0err, tanh(dz), dzerr: with both, ParT's 17 inputs."""
    section = ml_collections.ConfigDict({
        "name": "jetclass",
        "path": "",
        "cache_dir": "",
        "seed": 0,                          # generation seed; also seeds splits and subsets
        "n_per_class": 1000,
        "workers": 1,
        "events_per_chunk": 500,
        "ttv_fractions": (0.7, 0.2, 0.1),   # train, test, val (one file)
        "max_files": 0,                     # per split of a JetClass directory; 0: all
        "max_particles": 128,
        "particle_id": True,
        "impact_parameters": True,
        "train_fraction": 1.0,              # nested seeded subset of the training jets
        "max_train_jets": 0,                # 0: every jet
        "max_val_jets": 0,
    })
    section.update(fields)
    return section


DATA_SECTIONS = {"top_tagging": top_tagging_data, "dijet_resonance": dijet_data, "npz": npz_data,
                 "quark_gluon": quark_gluon_data, "jetclass": jetclass_data}


def overlay(declared: ml_collections.ConfigDict, given, where: str) -> ml_collections.ConfigDict:
    """``declared`` (the defaults) with every field of ``given`` written over it, recursively;
    a field of ``given`` that ``declared`` lacks raises naming it (``where.field``) and the
    declared fields. ``given`` is not modified."""
    for key, value in given.items():
        if key not in declared:
            raise ValueError(f"{where}.{key}: not a declared field; declared: {sorted(declared)}")
        if isinstance(declared[key], ml_collections.ConfigDict) and hasattr(value, "items"):
            overlay(declared[key], value, f"{where}.{key}")
            continue
        with declared.ignore_type():
            declared[key] = tuple(value) if isinstance(value, list) else value
    return declared


def data_section(cfg) -> ml_collections.ConfigDict:
    """A complete data section: the declared defaults of ``cfg.name`` with ``cfg``'s fields over
    them (idempotent; ``cfg`` itself is not modified). Fields that only another dataset declares
    are kept unread; a field no dataset declares raises."""
    name = cfg["name"]
    if name not in DATA_SECTIONS:
        raise ValueError(f"config.data.name={name!r}: unknown dataset; choose from "
                         f"{sorted(DATA_SECTIONS)}")
    declared = DATA_SECTIONS[name]()
    # a field another dataset declares (left by switching ``data.name`` with an override) is kept
    # but not read; any other unknown field is an error
    other = {key for build in DATA_SECTIONS.values() for key in build()} - set(declared)
    with declared.unlocked():
        for key in other & set(cfg.keys()):
            declared[key] = cfg[key]
    return overlay(declared, cfg, "config.data")
