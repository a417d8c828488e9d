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

Readers: ``read_top_tagging`` (reference layout), ``formats.read_native``,
``formats.read_energyflow_npz``, ``formats.read_jetclass``.
"""
from __future__ import annotations

import pathlib

import numpy as np

from hepjax.data import dijet
from hepjax.data.formats import iter_top_tagging, read_top_tagging, write_top_tagging
from hepjax.data.pipeline import check_arrays

__all__ = ["SPLITS", "load_splits", "read_npz", "write_npz", "read_top_tagging",
           "iter_top_tagging", "write_top_tagging"]

SPLITS = ("train", "val", "test")


def read_npz(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """``features`` and ``label`` from an .npz file, checked for shape agreement and NaN/Inf."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected an .npz with 'features' and 'label')")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("features", "label") if k not in f.files]
        if missing:
            raise KeyError(f"{path}: missing arrays {missing}; it has {f.files}")
        out = {"features": f["features"].astype(np.float32), "label": f["label"]}
        if "feature_names" in f.files:
            out["feature_names"] = tuple(str(n) for n in f["feature_names"])
    try:
        check_arrays({k: v for k, v in out.items() if k != "feature_names"}, str(path))
    except ValueError as err:
        raise ValueError(f"{err}") from None
    return out


def write_npz(path: str | pathlib.Path, features, label, feature_names=()) -> None:
    np.savez(path, features=np.asarray(features, np.float32), label=np.asarray(label),
             feature_names=np.asarray(feature_names, dtype=str))


def load_splits(cfg, splits=SPLITS) -> dict:
    """The dataset of ``cfg`` (``config.data``): {split: arrays} for ``splits`` (some sources
    build only the splits asked for) and ``feature_names``."""
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
    raise ValueError(f"config.data.name={cfg.name!r}: known datasets are 'dijet_resonance', "
                     "'npz', 'top_tagging'")
