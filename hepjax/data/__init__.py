"""Datasets: generated physics samples and readers, returned as dicts of numpy arrays.

``load_splits(config.data)`` gives ``{"train": {...}, "val": {...}, "test": {...},
"feature_names": (...)}`` where each split holds ``features`` (N, ...) float32 and ``label`` (N,).

Datasets (``config.data.name``):
  * ``dijet_resonance``: generated X -> jj vs QCD dijet events (``hepjax.data.dijet``), with
    ``n_train``, ``n_val``, ``n_test`` and ``seed`` (the splits use seeds seed, seed+1, seed+2).
  * ``npz``: ``path`` is a directory holding ``train.npz``, ``val.npz``, ``test.npz``, each with
    arrays ``features`` and ``label`` (and optionally ``feature_names``).
  * ``top_tagging``: Top Tagging Reference Dataset files, or Pythia 8 jets generated and cached
    here (``hepjax.data.top_tagging``); particle representations add ``mask`` and ``vectors``.
  * ``quark_gluon``: the Energy Flow Networks paper's Z + q/g jets, generated and cached, or an
    energyflow .npz (``hepjax.data.quark_gluon``); per-particle (z, y, phi) [+ particle ID].

Readers: ``read_top_tagging`` (reference layout), ``formats.read_native``,
``formats.read_energyflow_npz``, ``formats.read_jetclass``.
"""
from __future__ import annotations

import pathlib

import numpy as np

from hepjax.configs import defaults
from hepjax.data import dijet, formats
from hepjax.data.formats import iter_top_tagging, read_top_tagging, write_top_tagging

__all__ = ["SPLITS", "load_splits", "read_npz", "write_npz", "read_top_tagging",
           "iter_top_tagging", "write_top_tagging"]

SPLITS = ("train", "val", "test")


def read_npz(path: str | pathlib.Path, num_classes: int | None = None) -> dict[str, np.ndarray]:
    """``features`` (N, ...) float32 and ``label`` (N,) from an .npz file (plus ``feature_names``
    if stored). Raises ``formats.FormatError`` (a ValueError), naming the file, the array, the
    number of bad rows and the first, for: a missing array, no rows, row counts that disagree,
    NaN/Inf in ``features`` or ``label``, or a label that is not a class index (an integer
    >= 0, and < ``num_classes`` when given)."""
    path = pathlib.Path(path)
    with formats._load_npz(path, "an .npz with 'features' and 'label'") as f:
        features, label = formats._npz_arrays(path, f, ("features", "label"))
        names = tuple(str(n) for n in f["feature_names"]) if "feature_names" in f.files else None
    if features.ndim == 0 or label.ndim != 1:
        raise formats.FormatError(f"{path}: arrays 'features' (N, ...) and 'label' (N,) expected; "
                                  f"got shapes {features.shape} and {label.shape}")
    if len(features) != len(label):
        raise formats.FormatError(f"{path}: 'features' has {len(features)} rows and 'label' "
                                  f"{len(label)}; they must agree")
    if len(label) == 0:
        raise formats._no_jets(path, "in arrays 'features' and 'label'")
    features = features.astype(np.float32)  # checked as used: a float64 1e300 is inf here
    named = names is not None and features.ndim == 2 and len(names) == features.shape[1]
    checks = formats._Checks(path)
    checks.finite("array 'features'", features, names=names if named else None)
    checks.finite("array 'label'", label)
    checks.classes("array 'label'", label, None if num_classes is None else range(num_classes))
    checks.raise_first()
    out = {"features": features, "label": label}
    if names is not None:
        out["feature_names"] = names
    return out


def write_npz(path: str | pathlib.Path, features, label, feature_names=()) -> None:
    np.savez(path, features=np.asarray(features, np.float32), label=np.asarray(label),
             feature_names=np.asarray(feature_names, dtype=str))


def load_splits(cfg, splits=SPLITS) -> dict:
    """The dataset of ``cfg`` (``config.data``): {split: arrays} for ``splits`` (some sources
    build only the splits asked for) and ``feature_names``. ``cfg`` is completed with the
    dataset's declared defaults (``hepjax.configs.defaults``); undeclared fields raise."""
    cfg = defaults.data_section(cfg)
    if cfg.name == "dijet_resonance":
        seed = int(cfg.seed)
        sizes = {"train": int(cfg.n_train), "val": int(cfg.n_val), "test": int(cfg.n_test)}
        out = {split: dijet.generate(n, seed + i) for i, (split, n) in enumerate(sizes.items())}
        out["feature_names"] = dijet.FEATURES
        return out
    if cfg.name == "npz":
        root = pathlib.Path(cfg.path)
        out = {}
        for split in SPLITS:
            arrays = read_npz(root / f"{split}.npz")
            names = arrays.pop("feature_names", None)
            out[split] = arrays
        out["feature_names"] = names or tuple(f"f{i}" for i in range(out["train"]["features"].shape[-1]))
        return out
    if cfg.name == "top_tagging":
        from hepjax.data import top_tagging

        return top_tagging.load_splits(cfg, tuple(splits))
    if cfg.name == "quark_gluon":
        from hepjax.data import quark_gluon

        return quark_gluon.load_splits(cfg, tuple(splits))
    if cfg.name == "jetclass":
        from hepjax.data import jetclass_generation

        return jetclass_generation.load_splits(cfg, tuple(splits))
    raise ValueError(f"config.data.name={cfg.name!r}: declared in hepjax.configs.defaults but "
                     "has no loader here")
