"""The TrackML data format: events (hits, cells, particles, truth), the detector description and
the submission, read and written as CSV (gzipped or not) into dicts of numpy arrays.

The layout is the one of the Tracking Machine Learning challenge (Amrouche et al., "The Tracking
Machine Learning challenge: accuracy phase", arXiv:1904.06778) and of its utility library
(LAL/trackml-library, ``trackml.dataset``). One event is five files sharing a prefix::

    event000000001-hits.csv.gz       hit_id, x, y, z [mm], volume_id, layer_id, module_id
    event000000001-cells.csv.gz      hit_id, ch0, ch1, value  (one row per fired pixel/strip)
    event000000001-particles.csv.gz  particle_id, [particle_type,] vx, vy, vz [mm],
                                     px, py, pz [GeV], q [e], nhits
    event000000001-truth.csv.gz      hit_id, particle_id, tx, ty, tz [mm], tpx, tpy, tpz [GeV],
                                     weight
    detectors.csv(.gz)               volume_id, layer_id, module_id, cx, cy, cz, rot_xu ... rot_zw,
                                     module_t, module_minhu, module_maxhu, module_hv,
                                     pitch_u, pitch_v  (one row per module, in mm)

dtypes (those of trackml-library, except ``particle_id``): ids ``int32``, coordinates, momenta,
cell values and weights ``float32``, ``particle_id`` ``uint64`` (its bits encode the vertex and
generation, values reach 2^59 and more; 0 marks a noise hit in the truth file), the detector
geometry ``float64`` (module placement feeds the simulation, ``hepjax.tracking.sim``). Columns
beyond the required ones are kept as pandas infers them (``particle_type`` as ``int32``); a
pandas index column (an empty or ``Unnamed: N`` header, as in the shared ``detectors.csv.gz``)
is dropped.

Everything read or written is checked first; a problem raises :class:`FormatError` (a
``ValueError``) on one line naming the file and the column: a missing column, non-numeric or
non-integer values in an id column, NaN/inf anywhere in a float column, duplicated hit ids
(particle ids, module ids), truth or cell hit ids absent from the hits file, hits without a
truth row, truth particle ids other than 0 absent from the particles file, negative truth
weights. Missing files raise ``FileNotFoundError``.

Submission (``write_submission`` / ``load_submission``): ``event_id, hit_id, track_id`` with one
row per hit and non-negative integer track ids (the challenge required every hit to carry a
track id; trackml-library's scoring assumes ``track_id >= 0``).

Derived hit quantities: :func:`hit_features` (r, phi, z, eta, theta, global layer),
:func:`global_layer` (the 48 (volume_id, layer_id) pairs of the TrackML detector, see
:data:`TRACKML_LAYERS` for the ordering), :func:`module_geometry` and
:func:`local_coordinates` (each hit's module from the detectors file), :func:`cell_features`.
"""
from __future__ import annotations

import os
import pathlib
from typing import Iterable, Mapping

import numpy as np

from hepjax.data.formats import FormatError

__all__ = [
    "FormatError", "PARTS", "COLUMNS", "DETECTOR_COLUMNS", "SUBMISSION_COLUMNS", "TRACKML_LAYERS",
    "event_file", "load_event", "load_detectors", "write_event", "write_detectors",
    "write_submission", "load_submission", "check_event", "hit_features", "global_layer",
    "module_geometry", "local_coordinates", "cell_features",
]

PARTS = ("hits", "cells", "particles", "truth")

_I32, _F32, _U64, _F64 = np.dtype(np.int32), np.dtype(np.float32), np.dtype(np.uint64), \
    np.dtype(np.float64)

#: Required columns of each event part, in file order, with their dtypes.
COLUMNS: dict[str, dict[str, np.dtype]] = {
    "hits": {"hit_id": _I32, "x": _F32, "y": _F32, "z": _F32, "volume_id": _I32,
             "layer_id": _I32, "module_id": _I32},
    "cells": {"hit_id": _I32, "ch0": _I32, "ch1": _I32, "value": _F32},
    "particles": {"particle_id": _U64, "vx": _F32, "vy": _F32, "vz": _F32, "px": _F32,
                  "py": _F32, "pz": _F32, "q": _I32, "nhits": _I32},
    "truth": {"hit_id": _I32, "particle_id": _U64, "tx": _F32, "ty": _F32, "tz": _F32,
              "tpx": _F32, "tpy": _F32, "tpz": _F32, "weight": _F32},
}
#: Optional columns with a fixed dtype when present (written after the required ones).
_OPTIONAL = {"particles": {"particle_type": _I32}}
_ORDER = {"particles": ("particle_id", "particle_type")}   # particle_type 2nd, as in the files

DETECTOR_COLUMNS: dict[str, np.dtype] = {
    "volume_id": _I32, "layer_id": _I32, "module_id": _I32,
    **{c: _F64 for c in ("cx", "cy", "cz", "rot_xu", "rot_xv", "rot_xw", "rot_yu", "rot_yv",
                         "rot_yw", "rot_zu", "rot_zv", "rot_zw", "module_t", "module_minhu",
                         "module_maxhu", "module_hv", "pitch_u", "pitch_v")},
}
SUBMISSION_COLUMNS = {"event_id": np.dtype(np.int64), "hit_id": np.dtype(np.int64),
                      "track_id": np.dtype(np.int64)}

#: The (volume_id, layer_id) pairs of the TrackML detector in the order of their global layer
#: index 0..47 (:func:`global_layer`): lexicographic in (volume_id, layer_id), the order of
#: Exa.TrkX's layer list (Ju et al., "Performance of a geometric deep learning pipeline for
#: HL-LHC particle tracking", EPJC 81 (2021) 876). Volumes: pixels 7 (-z end cap, 7 disks),
#: 8 (barrel, 4 layers, r = 32, 72, 116, 172 mm), 9 (+z end cap); short strips 12, 13 (barrel,
#: r = 260 ... 660 mm), 14; long strips 16, 17 (barrel, r = 820, 1020 mm), 18. In the barrels
#: layer_id grows with r; in the +z end caps (9, 14, 18) with z; in the -z end caps (7, 12, 16)
#: layer_id 2 is the disk farthest from z = 0 and layer_id grows towards z = 0 (e.g. volume 7:
#: z = -1500 ... -600 mm). The index is an identifier, not a geometric order along a track.
TRACKML_LAYERS: tuple[tuple[int, int], ...] = tuple(
    (v, l) for v, layers in ((7, 7), (8, 4), (9, 7), (12, 6), (13, 4), (14, 6), (16, 6), (17, 2),
                             (18, 6))
    for l in range(2, 2 * layers + 1, 2))

_COORDS = {"hits": ("x", "y", "z"), "truth": ("tx", "ty", "tz"),
           "particles": ("vx", "vy", "vz"), "detectors": ("cx", "cy", "cz")}


# --------------------------------------------------------------------------------------------
# Column conversion and checks
# --------------------------------------------------------------------------------------------


def _pandas():
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError(f"the TrackML CSV format needs pandas ({err}); install it with "
                          "`pip install 'hepjax[io]'`") from None
    return pd


def _example(values: np.ndarray, bad: np.ndarray, what: str) -> str:
    """'3 of 5527 rows, first at line 17: nan' (line = data row + 2, after the header)."""
    i = int(np.flatnonzero(bad)[0])
    v = values[i]
    v = v.item() if hasattr(v, "item") else v
    return f"{int(bad.sum())} of {len(values)} {what}, first at line {i + 2}: {v!r}"


def _fail(path, column: str | None, text: str):
    col = f" column '{column}':" if column else ""
    raise FormatError(f"{path}:{col} {text}")


def _convert(path, name: str, values, dtype: np.dtype) -> np.ndarray:
    """One column to ``dtype``: integer columns must hold integers in range, float columns
    finite numbers."""
    a = np.asarray(values)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            bad = np.array([not _is_number(v) for v in a], dtype=bool)
            _fail(path, name, f"non-numeric values in {_example(a, bad, 'rows')}")
    if np.issubdtype(dtype, np.floating):
        a = a.astype(dtype)
        bad = ~np.isfinite(a)
        if bad.any():
            _fail(path, name, f"NaN/inf or empty values in {_example(a, bad, 'rows')}")
        return a
    # integer column
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            _fail(path, name, f"non-integer or empty values in {_example(a, bad, 'rows')}")
    info = np.iinfo(dtype)
    if a.size:
        if np.issubdtype(a.dtype, np.unsignedinteger):
            bad = a > info.max
        else:
            bad = (a < info.min) | (a > info.max)
        if bad.any():
            kind = "negative values" if dtype.kind == "u" else f"values outside {dtype}"
            _fail(path, name, f"{kind} in {_example(a, bad, 'rows')}")
    return a.astype(dtype)


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _typed(path, part: str, table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Required columns present and converted; optional ones converted; extras kept; all of
    one length."""
    required = DETECTOR_COLUMNS if part == "detectors" else COLUMNS[part]
    optional = _OPTIONAL.get(part, {})
    missing = [c for c in required if c not in table]
    if missing:
        _fail(path, missing[0], f"missing (required: {', '.join(required)}; found: "
                                f"{', '.join(map(str, table)) or 'none'})")
    n = len(np.asarray(table[next(iter(required))]))
    out = {}
    for name, values in table.items():
        if len(np.asarray(values)) != n:
            _fail(path, name, f"has {len(np.asarray(values))} rows, other columns {n}")
        dtype = required.get(name, optional.get(name))
        out[name] = _convert(path, name, values, dtype) if dtype is not None else np.asarray(values)
    order = list(_ORDER.get(part, ())) + list(required) + list(optional)
    keys = [k for k in dict.fromkeys(order) if k in out] + [k for k in out if k not in order]
    return {k: out[k] for k in keys}


def _unique(path, column: str, values: np.ndarray, what: str) -> None:
    if len(values) < 2:
        return
    order = np.argsort(values, kind="stable")
    dup = np.zeros(len(values), bool)
    same = values[order][1:] == values[order][:-1]
    dup[order[1:][same]] = True
    if dup.any():
        _fail(path, column, f"duplicated {what} in {_example(values, dup, 'rows')}")


def _known(path, column: str, values: np.ndarray, known: np.ndarray, text: str,
           allow_zero: bool = False) -> None:
    bad = ~np.isin(values, known)
    if allow_zero:
        bad &= values != 0
    if bad.any():
        _fail(path, column, f"{text}: {_example(values, bad, 'rows')}")


def _check_part(path, part: str, t: Mapping[str, np.ndarray]) -> None:
    """Checks within one file (types and finiteness are checked by ``_typed``)."""
    if part in ("hits", "truth"):
        _unique(path, "hit_id", t["hit_id"], "hit ids")
    if part == "particles":
        _unique(path, "particle_id", t["particle_id"], "particle ids")
        zero = t["particle_id"] == 0
        if zero.any():
            _fail(path, "particle_id", f"0 is reserved for noise hits: "
                                       f"{_example(t['particle_id'], zero, 'rows')}")
    if part == "truth":
        neg = t["weight"] < 0
        if neg.any():
            _fail(path, "weight", f"negative weights in {_example(t['weight'], neg, 'rows')}")
    if part == "detectors":
        key = _module_key(t["volume_id"], t["layer_id"], t["module_id"])
        _unique(path, "module_id", key, "(volume_id, layer_id, module_id)")


def _check_cross(paths: Mapping[str, object], ev: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Ids that refer to another loaded part must exist there."""
    if "hits" in ev and "truth" in ev:
        _known(paths["truth"], "hit_id", ev["truth"]["hit_id"], ev["hits"]["hit_id"],
               f"hit ids not in {paths['hits']}")
        _known(paths["hits"], "hit_id", ev["hits"]["hit_id"], ev["truth"]["hit_id"],
               f"hit ids without a row in {paths['truth']}")
    if "hits" in ev and "cells" in ev:
        _known(paths["cells"], "hit_id", ev["cells"]["hit_id"], ev["hits"]["hit_id"],
               f"hit ids not in {paths['hits']}")
    if "truth" in ev and "particles" in ev:
        _known(paths["truth"], "particle_id", ev["truth"]["particle_id"],
               ev["particles"]["particle_id"],
               f"particle ids (other than 0 = noise) not in {paths['particles']}",
               allow_zero=True)


def check_event(event: Mapping[str, Mapping[str, np.ndarray]], name: str = "event"
                ) -> dict[str, dict[str, np.ndarray]]:
    """Type and check an in-memory event (dict part -> dict column -> array), as the reader does.

    Returns the typed copy; raises :class:`FormatError` naming ``name-PART`` and the column.
    """
    unknown = [p for p in event if p not in PARTS]
    if unknown:
        raise ValueError(f"{name}: unknown part {unknown[0]!r}; parts are {', '.join(PARTS)}")
    paths = {p: f"{name}-{p}" for p in event}
    out = {p: _typed(paths[p], p, event[p]) for p in event}
    for p, t in out.items():
        _check_part(paths[p], p, t)
    _check_cross(paths, out)
    return out


# --------------------------------------------------------------------------------------------
# Reading and writing
# --------------------------------------------------------------------------------------------


def event_file(prefix, part: str) -> pathlib.Path:
    """The one existing file ``{prefix}-{part}.csv`` or ``{prefix}-{part}.csv.gz``."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; parts are {', '.join(PARTS)}")
    base = f"{os.fspath(prefix)}-{part}.csv"
    found = [pathlib.Path(p) for p in (base, base + ".gz") if os.path.exists(p)]
    if not found:
        raise FileNotFoundError(f"no TrackML {part} file: neither {base} nor {base}.gz exists")
    if len(found) > 1:
        raise FormatError(f"both {base} and {base}.gz exist; remove one")
    return found[0]


def _read_csv(path) -> dict[str, np.ndarray]:
    pd = _pandas()
    try:
        df = pd.read_csv(path, header=0, index_col=False, low_memory=False)
    except (ValueError, OSError, EOFError) as err:   # pandas' ParserError is a ValueError
        if isinstance(err, FileNotFoundError):
            raise
        text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise FormatError(f"{path}: not a readable CSV file ({text})") from None
    cols = {}
    for c in df.columns:
        name = str(c).strip()
        if name == "" or name.startswith("Unnamed:"):
            continue                                   # a pandas index column
        cols[name] = df[c].to_numpy()
    return cols


def load_event(prefix, parts: Iterable[str] = PARTS) -> dict[str, dict[str, np.ndarray]]:
    """Read one event.

    Args:
      prefix: path without the part suffix, e.g. ``".../event000000001"``; each part is read from
        ``{prefix}-{part}.csv.gz`` or ``{prefix}-{part}.csv``.
      parts: any of ``"hits", "cells", "particles", "truth"``.

    Returns:
      ``{part: {column: array}}`` with the module docstring's columns and dtypes, rows in file
      order. Parts read together are cross-checked (truth and cell hit ids against the hits,
      truth particle ids against the particles).
    """
    parts = tuple(parts)
    for p in parts:
        if p not in PARTS:
            raise ValueError(f"unknown part {p!r}; parts are {', '.join(PARTS)}")
    paths = {p: event_file(prefix, p) for p in parts}
    out = {}
    for p in parts:
        out[p] = _typed(paths[p], p, _read_csv(paths[p]))
        _check_part(paths[p], p, out[p])
    _check_cross(paths, out)
    return out


def load_detectors(path) -> dict[str, np.ndarray]:
    """Read the detector description (one row per module; see :data:`DETECTOR_COLUMNS`)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no TrackML detectors file at {path}")
    t = _typed(path, "detectors", _read_csv(path))
    _check_part(path, "detectors", t)
    return t


def _write_csv(path: pathlib.Path, table: Mapping[str, np.ndarray]) -> None:
    pd = _pandas()
    path.parent.mkdir(parents=True, exist_ok=True)
    compression = {"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None
    tmp = path.with_name(path.name + ".partial")
    pd.DataFrame(dict(table)).to_csv(tmp, index=False, compression=compression)
    os.replace(tmp, path)


def write_event(prefix, event: Mapping[str, Mapping[str, np.ndarray]], compress: bool = True
                ) -> dict[str, pathlib.Path]:
    """Write the parts of ``event`` to ``{prefix}-{part}.csv.gz`` (``.csv`` if not ``compress``).

    The event is typed and checked as the reader would (:func:`check_event`) before anything is
    written, so a written event always reads back; floats are written in the shortest form that
    reads back to the same float32. Returns ``{part: path}``.
    """
    typed = check_event(event, name=os.fspath(prefix))
    written = {}
    for part, table in typed.items():
        path = pathlib.Path(f"{os.fspath(prefix)}-{part}.csv" + (".gz" if compress else ""))
        _write_csv(path, table)
        written[part] = path
    return written


def write_detectors(path, detectors: Mapping[str, np.ndarray]) -> pathlib.Path:
    """Write a detector description (checked as :func:`load_detectors` checks); gzip if the
    name ends in ``.gz``."""
    path = pathlib.Path(path)
    t = _typed(path, "detectors", detectors)
    _check_part(path, "detectors", t)
    _write_csv(path, t)
    return path


def _submission(path, event_id, hit_id, track_id) -> dict[str, np.ndarray]:
    hit_id = np.asarray(hit_id)
    track_id = np.asarray(track_id)
    event_id = np.broadcast_to(np.asarray(event_id), hit_id.shape) if np.ndim(event_id) == 0 \
        else np.asarray(event_id)
    table = {"event_id": event_id, "hit_id": hit_id, "track_id": track_id}
    for k, v in table.items():
        if v.ndim != 1:
            _fail(path, k, f"must be 1-D, got shape {v.shape}")
        if len(v) != len(hit_id):
            _fail(path, k, f"has {len(v)} rows, hit_id has {len(hit_id)}")
    out = {k: _convert(path, k, v, SUBMISSION_COLUMNS[k]) for k, v in table.items()}
    _unique(path, "hit_id", out["hit_id"], "hit ids")
    for k in ("event_id", "track_id"):
        neg = out[k] < 0
        if neg.any():
            _fail(path, k, f"negative ids (every hit needs a track id >= 0) in "
                           f"{_example(out[k], neg, 'rows')}")
    return out


def write_submission(path, event_id, hit_id, track_id) -> pathlib.Path:
    """Write a TrackML submission: columns ``event_id, hit_id, track_id``, one row per hit.

    Args:
      path: output file; gzipped if it ends in ``.gz``.
      event_id: int, or one per row.
      hit_id: (N,) unique hit ids.
      track_id: (N,) integer track ids >= 0 (give unassigned hits singleton ids, e.g. with
        ``hepjax.tracking.building.fill_unassigned``).
    """
    path = pathlib.Path(path)
    _write_csv(path, _submission(path, event_id, hit_id, track_id))
    return path


def load_submission(path) -> dict[str, np.ndarray]:
    """Read a submission written by :func:`write_submission` (or the challenge's format)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no submission file at {path}")
    cols = _read_csv(path)
    missing = [c for c in SUBMISSION_COLUMNS if c not in cols]
    if missing:
        _fail(path, missing[0], f"missing (required: {', '.join(SUBMISSION_COLUMNS)}; found: "
                                f"{', '.join(cols) or 'none'})")
    return _submission(path, cols["event_id"], cols["hit_id"], cols["track_id"])


# --------------------------------------------------------------------------------------------
# Derived hit quantities
# --------------------------------------------------------------------------------------------


def global_layer(volume_id, layer_id) -> np.ndarray:
    """Global layer index 0..47 of each (volume_id, layer_id), ordered as :data:`TRACKML_LAYERS`.

    Raises ``ValueError`` for a pair that is not a TrackML layer.
    """
    v = np.asarray(volume_id, dtype=np.int64)
    l = np.asarray(layer_id, dtype=np.int64)
    table = np.array([vv * 1000 + ll for vv, ll in TRACKML_LAYERS], dtype=np.int64)  # sorted
    key = v * 1000 + l
    idx = np.clip(np.searchsorted(table, key), 0, len(table) - 1)
    bad = table[idx] != key
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(f"{int(bad.sum())} hits on an unknown (volume_id, layer_id), e.g. "
                         f"({int(v.ravel()[i])}, {int(l.ravel()[i])}); TrackML layers are "
                         f"{TRACKML_LAYERS[0]} ... {TRACKML_LAYERS[-1]}")
    return idx.astype(np.int32)


def hit_features(hits: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cylindrical quantities of each hit: ``r`` = sqrt(x^2 + y^2) [mm], ``phi`` = atan2(y, x)
    in (-pi, pi], ``z`` [mm], ``eta`` = asinh(z / r) (the pseudorapidity of the hit seen from
    the origin), ``theta`` = atan2(r, z), and ``layer`` = :func:`global_layer` when the hits carry
    volume and layer ids. Floats in float64."""
    x, y, z = (np.asarray(hits[c], dtype=np.float64) for c in ("x", "y", "z"))
    r = np.hypot(x, y)
    with np.errstate(divide="ignore"):
        eta = np.arcsinh(z / r)
    out = {"r": r, "phi": np.arctan2(y, x), "z": z, "eta": eta, "theta": np.arctan2(r, z)}
    if "volume_id" in hits and "layer_id" in hits:
        out["layer"] = global_layer(hits["volume_id"], hits["layer_id"])
    return out


def _module_key(volume_id, layer_id, module_id) -> np.ndarray:
    return ((np.asarray(volume_id, np.int64) << 40) | (np.asarray(layer_id, np.int64) << 20)
            | np.asarray(module_id, np.int64))


def _module_rows(hits, detectors) -> np.ndarray:
    dkey = _module_key(detectors["volume_id"], detectors["layer_id"], detectors["module_id"])
    hkey = _module_key(hits["volume_id"], hits["layer_id"], hits["module_id"])
    order = np.argsort(dkey, kind="stable")
    pos = np.clip(np.searchsorted(dkey[order], hkey), 0, max(len(dkey) - 1, 0))
    rows = order[pos] if len(dkey) else np.zeros(len(hkey), np.int64)
    bad = (dkey[rows] != hkey) if len(dkey) else np.ones(len(hkey), bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} of {len(hkey)} hits on modules absent from the detectors "
            f"table, e.g. hit row {i}: (volume_id, layer_id, module_id) = "
            f"({int(hits['volume_id'][i])}, {int(hits['layer_id'][i])}, "
            f"{int(hits['module_id'][i])})")
    return rows


def module_geometry(hits: Mapping[str, np.ndarray], detectors: Mapping[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
    """The module of each hit: its detectors-table columns per hit, plus ``center`` (N, 3) and
    ``rotation`` (N, 3, 3).

    ``rotation[i] = [[rot_xu, rot_xv, rot_xw], [rot_yu, rot_yv, rot_yw], [rot_zu, rot_zv,
    rot_zw]]`` maps local module coordinates (u, v, w) to global ones:
    ``global = center + rotation @ local``; w is normal to the sensor, ``module_t`` its
    thickness, the sensor spans v in [-module_hv, module_hv] and u in +-module_minhu (at
    v = -module_hv) to +-module_maxhu (at v = +module_hv), read out with pitches
    ``pitch_u`` x ``pitch_v`` (trackml-library's detector description). Raises ``ValueError``
    for a hit on a module the table lacks.
    """
    rows = _module_rows(hits, detectors)
    out = {k: np.asarray(v)[rows] for k, v in detectors.items()
           if k not in ("volume_id", "layer_id", "module_id")}
    out["center"] = np.stack([out["cx"], out["cy"], out["cz"]], axis=-1)
    out["rotation"] = np.stack([
        np.stack([out["rot_xu"], out["rot_xv"], out["rot_xw"]], -1),
        np.stack([out["rot_yu"], out["rot_yv"], out["rot_yw"]], -1),
        np.stack([out["rot_zu"], out["rot_zv"], out["rot_zw"]], -1)], axis=-2)
    return out


def local_coordinates(hits: Mapping[str, np.ndarray], detectors: Mapping[str, np.ndarray]
                      ) -> np.ndarray:
    """Each hit's position in its module frame, (N, 3) = (u, v, w) [mm]:
    ``rotation^T @ (x - center)`` (see :func:`module_geometry`)."""
    g = module_geometry(hits, detectors)
    pos = np.stack([np.asarray(hits[c], np.float64) for c in ("x", "y", "z")], axis=-1)
    return np.einsum("nji,nj->ni", g["rotation"], pos - g["center"])


def cell_features(hit_id, cells: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-hit summaries of the cells table, aligned with ``hit_id``: ``n_cells``, ``charge``
    (sum of the cells' ``value``), ``span_u`` / ``span_v`` (number of channels covered in ch0 /
    ch1, max - min + 1; 0 for a hit without cells). Cell hit ids must be among ``hit_id``."""
    hit_id = np.asarray(hit_id)
    order = np.argsort(hit_id, kind="stable")
    cid = np.asarray(cells["hit_id"])
    pos = np.clip(np.searchsorted(hit_id[order], cid), 0, max(len(hit_id) - 1, 0))
    if len(cid) and (len(hit_id) == 0 or (hit_id[order][pos] != cid).any()):
        bad = cid[hit_id[order][pos] != cid] if len(hit_id) else cid
        raise ValueError(f"{len(bad)} cells belong to hit ids not in hit_id, e.g. {int(bad[0])}")
    idx = order[pos]
    n = len(hit_id)
    out = {"n_cells": np.bincount(idx, minlength=n).astype(np.int32),
           "charge": np.bincount(idx, weights=np.asarray(cells["value"], np.float64),
                                 minlength=n)}
    for ch, name in (("ch0", "span_u"), ("ch1", "span_v")):
        c = np.asarray(cells[ch], np.int64)
        lo = np.full(n, np.iinfo(np.int64).max)
        hi = np.full(n, np.iinfo(np.int64).min)
        np.minimum.at(lo, idx, c)
        np.maximum.at(hi, idx, c)
        out[name] = np.where(out["n_cells"] > 0, hi - lo + 1, 0).astype(np.int32)
    return out
