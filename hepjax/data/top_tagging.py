"""The top-tagging dataset: reference-layout files, or jets generated here and cached.

``load_splits(cfg)`` (``cfg`` = ``config.data`` with ``name = 'top_tagging'``) returns
``{"train", "val", "test"}`` dicts and ``feature_names``. Each split holds ``features``, ``label``
(N,) int64 (1 = top) and, for ``representation = 'particles'``, ``mask`` (N, P) bool and
``vectors`` (N, P, 4) float32 (E, px, py, pz) GeV. Representations:

* ``jet_observables``: (N, F) the ``cfg.observables`` of ``features.JET_OBSERVABLES``;
* ``particles``: (N, P, F) ``features.particle_features`` with P = ``cfg.max_particles``
  (with the particle-ID flags when the source has pid/charge: generated data);
* ``images``: (N, npix, npix, 1) ``images.jet_images`` with npix = ``cfg.image_size``.

Sources: ``cfg.path`` a directory with ``train.h5``, ``val.h5``, ``test.h5`` in the reference
layout, or one file (reference layout or our native format) split by its ``ttv`` column
(0 train, 1 test, 2 val). With ``cfg.path`` empty the jets are generated
(``generation.generate('top-tagging', cfg.n_jets, cfg.seed, detector=cfg.detector)``) once and
cached as a native file under ``cfg.cache_dir`` (default ``$HEPJAX_CACHE`` or
``~/.cache/hepjax``), named by every setting that changes its content.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from hepjax.data import features as features_lib
from hepjax.data import formats
from hepjax.data import images as images_lib

__all__ = ["cache_dir", "cache_path", "generate_cached", "load_file", "load_jets", "represent",
           "load_splits",
           "TTV_CODES"]

TTV_CODES = {"train": 0, "test": 1, "val": 2}


def cache_dir(cfg=None) -> pathlib.Path:
    configured = cfg.get("cache_dir", "") if cfg is not None else ""
    return pathlib.Path(configured or os.environ.get("HEPJAX_CACHE", "")
                        or pathlib.Path.home() / ".cache" / "hepjax").expanduser()


def cache_path(cfg) -> pathlib.Path:
    """Named by every setting that changes the content, the recipe version and Pythia's version,
    so a changed generator never silently reuses an old sample."""
    from hepjax.data import generation

    epc = int(cfg.get("events_per_chunk", 0) or 200)
    return cache_dir(cfg) / (f"top-tagging_n{int(cfg.n_jets)}_seed{int(cfg.seed)}_"
                             f"{cfg.get('detector', 'fast')}_epc{epc}_"
                             f"recipe{generation.RECIPE_VERSION}_pythia{_pythia_version()}.h5")


def _pythia_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("pythia8mc")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def generate_cached(cfg, progress=None) -> pathlib.Path:
    """The cached native file for ``cfg`` (generating it first if absent)."""
    from hepjax.data import generation

    path = cache_path(cfg)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    detector = cfg.get("detector", "fast")
    epc = int(cfg.get("events_per_chunk", 0) or 200)
    jets = generation.generate("top-tagging", int(cfg.n_jets), int(cfg.seed), detector=detector,
                               workers=int(cfg.get("workers", 1)), events_per_chunk=epc,
                               progress=progress)
    meta = {"task": "top-tagging", "n_jets": int(cfg.n_jets), "seed": int(cfg.seed),
            "detector": detector, "events_per_chunk": epc}
    # a killed run never leaves a truncated cache; concurrent writers never share a partial file
    partial = path.with_suffix(f".partial-{os.getpid()}")
    formats.write_native(partial, jets, meta)
    os.replace(partial, path)
    return path


def _read_any(path: pathlib.Path, max_particles: int) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        native = f.attrs.get("format") == "hepjax-jets-v1"
    if native:
        jets = formats.read_native(path, max_particles)
        jets.pop("meta", None)
        return jets
    return formats.read_top_tagging(path, max_particles=max_particles)


def load_jets(cfg) -> dict[str, dict]:
    """{'train', 'val', 'test'} -> jet arrays (p4, mask, label, ... as the readers give)."""
    max_particles = int(cfg.get("max_particles", 200))
    path = str(cfg.get("path", "") or "")
    if path:
        root = pathlib.Path(path)
        if root.is_dir():
            missing = [s for s in TTV_CODES if not (root / f"{s}.h5").is_file()]
            if missing:
                raise FileNotFoundError(f"{root}: expected train.h5, val.h5 and test.h5 in the "
                                        f"reference layout; missing {[m + '.h5' for m in missing]}")
            return {s: _read_any(root / f"{s}.h5", max_particles) for s in ("train", "val", "test")}
        jets = _read_any(root, max_particles)
    else:
        jets = _read_any(generate_cached(cfg), max_particles)
    if "ttv" not in jets:
        raise ValueError(f"{path or cache_path(cfg)}: no 'ttv' column to split train/val/test")
    out = {}
    for split in ("train", "val", "test"):
        rows = jets["ttv"] == TTV_CODES[split]
        out[split] = {k: v[rows] for k, v in jets.items() if isinstance(v, np.ndarray)}
        if not rows.any():
            raise ValueError(f"{path or cache_path(cfg)}: no jets with ttv={TTV_CODES[split]} "
                             f"({split}); {len(jets['ttv'])} jets in all")
    return out


DEFAULT_OBSERVABLES = ("mass", "pt", "eta", "n_constituents", "tau1", "tau2", "tau3", "tau21",
                       "tau32", "c2", "d2")


def represent(jets: dict, cfg) -> tuple[dict, tuple[str, ...]]:
    """Model inputs of one split for ``cfg.representation``; see the module docstring."""
    kind = cfg.get("representation", "jet_observables")
    p4, mask = jets["p4"], jets["mask"]
    out = {"label": np.asarray(jets["label"], np.int64)}
    if kind == "jet_observables":
        values, names = features_lib.jet_observables(p4, mask, radius=float(cfg.get("radius", 0.8)))
        chosen = tuple(cfg.get("observables", DEFAULT_OBSERVABLES))
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise ValueError(f"config.data.observables: unknown {unknown}; choose from {names}")
        out["features"] = values[:, [names.index(n) for n in chosen]]
        return out, chosen
    if kind == "particles":
        p = int(cfg.get("max_particles", 100))
        p4, mask = p4[:, :p], mask[:, :p]
        pid = jets.get("pid")
        charge = jets.get("charge")
        values, names = features_lib.particle_features(
            p4, mask, None if pid is None else pid[:, :p], None if charge is None else charge[:, :p])
        out.update(features=values, mask=mask,
                   vectors=np.where(mask[..., None], p4, 0).astype(np.float32))
        return out, names
    if kind == "images":
        npix = int(cfg.get("image_size", 40))
        out["features"] = images_lib.jet_images(p4, mask, npix)[..., None]
        return out, tuple(f"pixel_{i}_{j}" for i in range(npix) for j in range(npix))
    raise ValueError(f"config.data.representation={kind!r}: use 'jet_observables', 'particles' "
                     "or 'images'")


def load_file(cfg, path) -> dict:
    """Every jet of one file (reference layout or native), in ``cfg.representation``: what
    ``hepjax evaluate --data FILE`` scores."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a reference-layout or native .h5)")
    arrays, _ = represent(_read_any(path, int(cfg.get("max_particles", 200))), cfg)
    return arrays


def load_splits(cfg) -> dict:
    """Splits in ``cfg.representation``; ``cfg.train_fraction`` (default 1) keeps that fraction of
    the training jets, chosen by a permutation seeded with ``cfg.seed`` (nested: a smaller
    fraction is a subset of a larger one), for data-efficiency studies."""
    jets = load_jets(cfg)
    fraction = float(cfg.get("train_fraction", 1.0))
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"config.data.train_fraction={fraction}: expected 0 < fraction <= 1")
    if fraction < 1.0:
        train = jets["train"]
        n = len(train["label"])
        keep = max(1, int(round(fraction * n)))
        rows = np.sort(np.random.default_rng([int(cfg.get("seed", 0)), 7]).permutation(n)[:keep])
        jets["train"] = {k: v[rows] for k, v in train.items()}
    out = {}
    for split, arrays in jets.items():
        out[split], names = represent(arrays, cfg)
    out["feature_names"] = names
    return out
