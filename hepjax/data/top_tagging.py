"""The top-tagging dataset: reference-layout files, or jets generated here and cached.

``load_splits(cfg)`` (``cfg`` = ``config.data`` with ``name = 'top_tagging'``) returns
``{"train", "val", "test"}`` dicts and ``feature_names``. Each split holds ``features``, ``label``
(N,) int64 (1 = top) and, for ``representation = 'particles'``, ``mask`` (N, P) bool and
``vectors`` (N, P, 4) float32 (E, px, py, pz) GeV. Representations:

* ``jet_observables``: (N, F) the ``cfg.observables`` of ``features.JET_OBSERVABLES``;
* ``particles``: (N, P, F) ``features.particle_features`` with P = ``cfg.max_particles``: the
  seven kinematic features, plus the charge and particle-ID flags only with
  ``cfg.particle_id = True`` (generated data carry them; the reference dataset does not, so
  every config compared with its published numbers leaves them off);
* ``images``: (N, npix, npix, 1) ``images.jet_images`` with npix = ``cfg.image_size``.

Sources: ``cfg.path`` a directory with ``train.h5``, ``val.h5``, ``test.h5`` in the reference
layout, or one file (reference layout or our native format) split by its ``ttv`` column
(0 train, 1 test, 2 val). With ``cfg.path`` empty the jets are generated
(``generation.generate('top-tagging', cfg.n_jets, cfg.seed, detector=cfg.detector,
mpi=cfg.mpi)``; multi-parton interactions off unless ``cfg.mpi``, as in the reference) once and
cached as a native file under ``cfg.cache_dir`` (default ``$HEPJAX_CACHE`` or
``~/.cache/hepjax``), named by every setting that changes its content.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import shutil

import numpy as np

from hepjax.configs import defaults
from hepjax.data import features as features_lib
from hepjax.data import formats
from hepjax.data import images as images_lib

__all__ = ["cache_dir", "cache_path", "generate_cached", "load_file", "load_jets", "represent",
           "load_splits", "ttv_fractions", "DEFAULT_TTV_FRACTIONS",
           "TTV_CODES"]

TTV_CODES = {"train": 0, "test": 1, "val": 2}


def _section(cfg):
    """``cfg`` completed with the declared defaults (``hepjax.configs.defaults.top_tagging_data``;
    an undeclared field raises). Idempotent, ``cfg`` unchanged."""
    return defaults.overlay(defaults.top_tagging_data(), cfg, "config.data")


def cache_dir(cfg=None) -> pathlib.Path:
    configured = _section(cfg).cache_dir if cfg is not None else ""
    return pathlib.Path(configured or os.environ.get("HEPJAX_CACHE", "")
                        or pathlib.Path.home() / ".cache" / "hepjax").expanduser()


def cache_path(cfg) -> pathlib.Path:
    """Named by every setting that changes the content, the recipe version and Pythia's version,
    so a changed generator never silently reuses an old sample."""
    from hepjax.data import generation

    cfg = _section(cfg)
    epc = int(cfg.events_per_chunk)
    fractions = ttv_fractions(cfg)
    split = "" if fractions == DEFAULT_TTV_FRACTIONS else \
        "_ttv" + "-".join(f"{round(100 * f):d}" for f in fractions)
    mpi = "_mpi" if cfg.mpi else ""
    return cache_dir(cfg) / (f"top-tagging_n{int(cfg.n_jets)}_seed{int(cfg.seed)}_"
                             f"{cfg.detector}{mpi}_epc{epc}{split}_"
                             f"recipe{generation.RECIPE_VERSION}_pythia{generation.pythia_version()}.h5")


# train, test, val: the reference dataset's 1.2M/400k/400k (the declared default of the section)
DEFAULT_TTV_FRACTIONS = tuple(defaults.top_tagging_data().ttv_fractions)


def ttv_fractions(cfg) -> tuple[float, float, float]:
    """``cfg.ttv_fractions`` (train, test, val) of generated jets, checked; default 0.6/0.2/0.2."""
    fractions = tuple(float(f) for f in _section(cfg).ttv_fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"config.data.ttv_fractions={fractions}: expected three positive "
                         "fractions (train, test, val) summing to 1")
    return fractions



def generate_cached(cfg, progress=None) -> pathlib.Path:
    """The cached native file for ``cfg`` (generating it first if absent). Processes asking for
    the same sample at once (parallel test workers, several jobs) take turns on a lock file
    beside it: one generates, the others wait and read its file."""
    cfg = _section(cfg)
    path = cache_path(cfg)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path.with_name(path.name + ".lock")):
        if not path.is_file():   # another process may have made it while this one waited
            _generate(cfg, path, progress)
    return path


@contextlib.contextmanager
def _exclusive(lock_path: pathlib.Path):
    """An exclusive ``flock`` on ``lock_path`` for the duration of the block (released when the
    process dies, so a killed generation never leaves a stale lock)."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generate(cfg, path: pathlib.Path, progress) -> None:
    from hepjax.data import generation

    detector, epc, mpi = str(cfg.detector), int(cfg.events_per_chunk), bool(cfg.mpi)
    fractions = ttv_fractions(cfg)
    # finished chunks are kept beside the cache while it is made: a killed generation resumes
    chunks = path.with_name(path.stem + ".chunks")
    jets = generation.generate("top-tagging", int(cfg.n_jets), int(cfg.seed), detector=detector,
                               workers=int(cfg.workers), events_per_chunk=epc,
                               ttv_fractions=fractions, progress=progress,
                               chunk_dir=chunks, mpi=mpi)
    meta = {"task": "top-tagging", "n_jets": int(cfg.n_jets), "seed": int(cfg.seed),
            "detector": detector, "mpi": mpi, "events_per_chunk": epc,
            "ttv_fractions": list(fractions)}
    # a killed run never leaves a truncated cache
    partial = path.with_suffix(f".partial-{os.getpid()}")
    formats.write_native(partial, jets, meta)
    os.replace(partial, path)
    shutil.rmtree(chunks, ignore_errors=True)


def _read_any(path: pathlib.Path, max_particles: int) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            native = f.attrs.get("format") == "hepjax-jets-v1"
    except OSError as err:
        raise formats.FormatError(f"{path}: not a readable HDF5 file ({err})") from None
    if native:
        jets = formats.read_native(path, max_particles)
        jets.pop("meta", None)
        return jets
    return formats.read_top_tagging(path, max_particles=max_particles)


def load_jets(cfg) -> dict[str, dict]:
    """{'train', 'val', 'test'} -> jet arrays (p4, mask, label, ... as the readers give)."""
    cfg = _section(cfg)
    max_particles = int(cfg.max_particles)
    path = str(cfg.path)
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



def represent(jets: dict, cfg) -> tuple[dict, tuple[str, ...]]:
    """Model inputs of one split for ``cfg.representation``; see the module docstring."""
    cfg = _section(cfg)
    kind = cfg.representation
    p4, mask = jets["p4"], jets["mask"]
    out = {"label": np.asarray(jets["label"], np.int64)}
    if kind == "jet_observables":
        values, names = features_lib.jet_observables(p4, mask, radius=float(cfg.radius))
        chosen = tuple(cfg.observables)
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise ValueError(f"config.data.observables: unknown {unknown}; choose from {names}")
        out["features"] = values[:, [names.index(n) for n in chosen]]
        return out, chosen
    if kind == "particles":
        p = int(cfg.max_particles)
        p4, mask = p4[:, :p], mask[:, :p]
        use_pid = bool(cfg.particle_id)
        pid = jets.get("pid") if use_pid else None
        charge = jets.get("charge") if use_pid else None
        if use_pid and (pid is None or charge is None):
            raise ValueError("config.data.particle_id=True, but these jets carry no 'pid'/'charge' "
                             "(the reference layout has four-momenta only): set it to False")
        values, names = features_lib.particle_features(
            p4, mask, None if pid is None else pid[:, :p], None if charge is None else charge[:, :p])
        out.update(features=values, mask=mask,
                   vectors=np.where(mask[..., None], p4, 0).astype(np.float32))
        return out, names
    if kind == "images":
        npix = int(cfg.image_size)
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
    cfg = _section(cfg)
    arrays, _ = represent(_read_any(path, int(cfg.max_particles)), cfg)
    return arrays


def _subset(arrays: dict, keep: int, seed) -> dict:
    """``keep`` rows chosen by a permutation seeded with ``seed`` (nested: a smaller subset is
    part of every larger one), in their original order."""
    n = len(arrays["label"])
    rows = np.sort(np.random.default_rng(seed).permutation(n)[:keep])
    return {k: v[rows] for k, v in arrays.items()}


def subset_splits(jets: dict, cfg) -> dict:
    """``jets`` (split -> arrays) with the configured nested, seeded subsets (``cfg.seed``):
    ``cfg.train_fraction`` of the training jets, then at most ``cfg.max_train_jets`` /
    ``cfg.max_val_jets`` (0: all) training / validation jets; the test split is always whole.
    Shared by every generated-jet dataset (top tagging, quark/gluon)."""
    jets = dict(jets)
    seed = int(cfg.seed)
    fraction = float(cfg.train_fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"config.data.train_fraction={fraction}: expected 0 < fraction <= 1")
    if fraction < 1.0:
        n = len(jets["train"]["label"])
        jets["train"] = _subset(jets["train"], max(1, int(round(fraction * n))), [seed, 7])
    for split, key, stream in (("train", "max_train_jets", 7), ("val", "max_val_jets", 8)):
        limit = int(cfg[key])
        if limit < 0:
            raise ValueError(f"config.data.{key}={limit}: expected >= 0 (0 = every jet)")
        if 0 < limit < len(jets[split]["label"]):
            jets[split] = _subset(jets[split], limit, [seed, stream])
    return jets


def load_splits(cfg, splits=("train", "val", "test")) -> dict:
    """The ``splits`` in ``cfg.representation`` (only those are converted: observables and images
    cost time on large samples), plus ``feature_names``.

    Subsets, each nested and seeded with ``cfg.seed`` (the same jets on every run):
    ``cfg.train_fraction`` (default 1) keeps that fraction of the training jets, for
    data-efficiency studies; ``cfg.max_train_jets`` / ``cfg.max_val_jets`` (default 0: all) keep
    at most that many training / validation jets, so taggers too slow for the whole sample train
    on part of it while every tagger is tested on the same test jets."""
    unknown = [s for s in splits if s not in TTV_CODES]
    if unknown or not splits:
        raise ValueError(f"load_splits: splits {tuple(splits)}; choose from {tuple(TTV_CODES)}")
    cfg = _section(cfg)
    jets = load_jets(cfg)
    jets = subset_splits(jets, cfg)
    out = {}
    names = ()
    for split in splits:
        out[split], names = represent(jets[split], cfg)
    out["feature_names"] = names
    return out
