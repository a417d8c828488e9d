"""Readers and writers for the jet formats physicists already have, plus our own.

* **Top Tagging Reference Dataset** (Kasieczka et al., arXiv:1902.09914): a pandas HDF5 file,
  key ``table``, one row per jet, columns ``E_i, PX_i, PY_i, PZ_i`` for i < 200 (interleaved per
  particle, zero-padded, sorted by pT), then ``truthE, truthPX, truthPY, truthPZ, ttv,
  is_signal_new``. The public files are PyTables "table" format (they support
  ``store.select('table', columns=[...])``); we write that, streamed chunk by chunk with
  ``HDFStore.append``, and read both "table" and "fixed" in row chunks
  (``iter_top_tagging``), so a 1.2M-jet file never has to fit in memory. Momenta are written as
  float32, ``ttv`` and ``is_signal_new`` as int64.
* **energyflow quark/gluon** ``.npz``: ``X`` (N, M, 4) with (pT, y, phi, pid) per particle,
  zero-padded, and ``y`` (N,) labels (1 quark, 0 gluon).
* **JetClass** ROOT files (Qu et al., arXiv:2202.03772) through uproot/awkward: tree ``tree``,
  jagged ``part_px, part_py, part_pz, part_energy`` (+ ``part_charge``, ``part_pid`` when present)
  and one-hot ``label_*`` branches.
* **Native** HDF5 (h5py): columnar with counts — constituents flattened over jets
  (``p4`` (sum n, 4) float32, ``pid``, ``charge``), ``counts`` (N,), per-jet arrays, and the
  generation settings as a JSON attribute. Compact and fast to read.

Every reader checks what it reads: a missing column or array, a wrong shape or NaN/Inf values
raise an error naming the file, the column and the number of rows affected.
"""
from __future__ import annotations

import json
import pathlib
from typing import Iterator

import numpy as np

__all__ = ["REFERENCE_PARTICLES", "reference_columns", "TopTaggingWriter", "write_top_tagging",
           "iter_top_tagging", "read_top_tagging", "count_rows", "write_native", "read_native",
           "write_energyflow_npz", "read_energyflow_npz", "p4_to_ptyphi", "ptyphi_to_p4",
           "read_jetclass", "FormatError"]

REFERENCE_PARTICLES = 200
TRUTH_COLUMNS = ("truthE", "truthPX", "truthPY", "truthPZ")
_COMPONENTS = ("E", "PX", "PY", "PZ")


class FormatError(ValueError):
    """A file does not have the layout its reader expects."""


def reference_columns(n_particles: int = REFERENCE_PARTICLES) -> list[str]:
    """The reference dataset's column names, in its order."""
    cols = [f"{c}_{i}" for i in range(n_particles) for c in _COMPONENTS]
    return cols + list(TRUTH_COLUMNS) + ["ttv", "is_signal_new"]


def _pandas():
    try:
        import pandas as pd
        import tables  # noqa: F401  (pandas' HDF5 backend)
    except ImportError as err:
        raise ImportError(f"the reference HDF5 format needs pandas and PyTables ({err}); install "
                          "them with `pip install 'hepjax[io]'`") from None
    return pd


def _check_finite(name: str, path, values: np.ndarray, row_offset: int = 0):
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0]) + row_offset
            raise FormatError(f"{path}: column {name!r} has NaN/Inf values in {int(bad.sum())} of "
                              f"{len(values)} rows (first bad row {first})")


def _reference_frame(p4, truth, ttv, label, n_particles):
    pd = _pandas()
    p4 = np.asarray(p4, np.float32)
    n, m = p4.shape[:2]
    if p4.ndim != 3 or p4.shape[2] != 4:
        raise ValueError(f"p4 must have shape (jets, particles, 4) (E, px, py, pz), got {p4.shape}")
    if m > n_particles:
        raise ValueError(f"p4 holds {m} particles per jet; the layout stores {n_particles}")
    block = np.zeros((n, n_particles, 4), np.float32)
    block[:, :m] = p4
    truth = np.zeros((n, 4), np.float32) if truth is None else np.asarray(truth, np.float32)
    for name, arr, shape in (("truth", truth, (n, 4)), ("ttv", np.shape(ttv), None),
                             ("label", np.shape(label), None)):
        got = arr.shape if shape else arr
        if (shape and got != shape) or (not shape and got != (n,)):
            raise ValueError(f"{name} must have shape {shape or (n,)}, got {got}")
    cols = reference_columns(n_particles)
    frame = pd.DataFrame(block.reshape(n, -1), columns=cols[:4 * n_particles])
    for i, c in enumerate(TRUTH_COLUMNS):
        frame[c] = truth[:, i]
    frame["ttv"] = np.asarray(ttv, np.int64)
    frame["is_signal_new"] = np.asarray(label, np.int64)
    return frame


class TopTaggingWriter:
    """Streams jets into a reference-layout file: ``with TopTaggingWriter(path) as w:
    w.append(p4, truth, ttv, label)`` chunk by chunk (row indices continue across chunks)."""

    def __init__(self, path, n_particles: int = REFERENCE_PARTICLES, complevel: int = 0):
        pd = _pandas()
        self.path = pathlib.Path(path)
        if self.path.exists():
            self.path.unlink()
        self.n_particles, self.rows = n_particles, 0
        self._store = pd.HDFStore(self.path, mode="w", complevel=complevel or None,
                                  complib="blosc" if complevel else None)

    def append(self, p4, truth, ttv, label) -> None:
        frame = _reference_frame(p4, truth, ttv, label, self.n_particles)
        frame.index = np.arange(self.rows, self.rows + len(frame))
        self._store.append("table", frame, format="table", index=False)
        self.rows += len(frame)

    def close(self):
        self._store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_top_tagging(path, p4, truth, ttv, label, *, chunk_size: int = 50_000,
                      n_particles: int = REFERENCE_PARTICLES) -> None:
    """Writes jets in the reference layout. p4: (N, M <= 200, 4) (E, px, py, pz) GeV; truth:
    (N, 4) or None (zeros); ttv: (N,) 0 train / 1 test / 2 val; label: (N,) 1 = top."""
    with TopTaggingWriter(path, n_particles) as writer:
        for start in range(0, max(len(p4), 1), chunk_size):
            sl = slice(start, start + chunk_size)
            writer.append(p4[sl], None if truth is None else truth[sl], ttv[sl], label[sl])


def _open_reference(path):
    pd = _pandas()
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a Top Tagging Reference Dataset "
                                "HDF5 file with key 'table')")
    store = pd.HDFStore(path, mode="r")
    if "/table" not in store.keys():
        keys = store.keys()
        store.close()
        raise FormatError(f"{path}: no key 'table' (the reference layout); it has {keys}")
    return store


def count_rows(path) -> int:
    """Number of jets in a reference-layout file (table or fixed format), read from metadata."""
    store = _open_reference(path)
    try:
        storer = store.get_storer("table")
        return int(storer.nrows) if storer.is_table else int(storer.shape[0])
    finally:
        store.close()


def _columns_of(store) -> list[str]:
    storer = store.get_storer("table")
    if storer.is_table:
        return list(storer.non_index_axes[0][1])
    return [str(c) for c in store.select("table", start=0, stop=0).columns]


def iter_top_tagging(path, chunk_size: int = 20_000, max_particles: int = REFERENCE_PARTICLES,
                     start: int = 0, stop: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Row chunks of a reference-layout file as dicts: ``p4`` (n, P, 4) float32 (E, px, py, pz),
    ``mask`` (n, P) bool (E > 0), ``n_constituents`` (n,), ``truth`` (n, 4) float32,
    ``label`` (n,) int64 and ``ttv`` (n,) int64, with P = max_particles (<= the file's 200).
    Memory is bounded by the chunk size."""
    path = pathlib.Path(path)
    store = _open_reference(path)
    try:
        columns = _columns_of(store)
        n_file = sum(1 for c in columns if c.startswith("E_"))
        needed = reference_columns(min(max_particles, n_file) if n_file else 1)
        missing = [c for c in needed if c not in columns]
        if n_file == 0 or missing:
            raise FormatError(f"{path}: missing columns {missing[:8]}{' ...' if len(missing) > 8 else ''} "
                              f"({len(missing)} in all) of the reference layout; the file has "
                              f"{len(columns)} columns starting {columns[:6]}")
        p = min(max_particles, n_file)
        storer = store.get_storer("table")
        total = int(storer.nrows) if storer.is_table else int(storer.shape[0])
        stop = total if stop is None else min(stop, total)
        read_columns = _table_reader(storer) if storer.is_table else None
        for lo in range(start, stop, chunk_size):
            hi = min(lo + chunk_size, stop)
            if read_columns is not None:  # PyTables rows straight into numpy: no DataFrame
                get = read_columns(lo, hi)
            else:
                frame = store.select("table", start=lo, stop=hi)
                get = lambda names, frame=frame: frame[list(names)].to_numpy()  # noqa: E731
            block = get(reference_columns(p)[:4 * p]).astype(np.float32, copy=False)
            if len(block) != hi - lo:
                raise FormatError(f"{path}: asked for rows {lo}:{hi} and got {len(block)}; the "
                                  "file is truncated or corrupt")
            _check_finite("E_i/PX_i/PY_i/PZ_i", path, block, lo)
            p4 = block.reshape(hi - lo, p, 4)
            truth = get(TRUTH_COLUMNS).astype(np.float32, copy=False)
            _check_finite("truth*", path, truth, lo)
            ttv, label = get(("ttv",))[:, 0], get(("is_signal_new",))[:, 0]
            for col, values in (("ttv", ttv), ("is_signal_new", label)):
                _check_finite(col, path, values, lo)
            mask = p4[..., 0] > 0
            yield {"p4": p4, "mask": mask, "n_constituents": mask.sum(1).astype(np.int32),
                   "truth": truth, "label": label.astype(np.int64), "ttv": ttv.astype(np.int64)}
    finally:
        store.close()


def _table_reader(storer):
    """For pandas 'table' format: ``read(lo, hi)(names) -> (n, len(names))`` array, taking the
    columns from the PyTables value blocks directly (several times faster than a DataFrame)."""
    where = {}
    for axis in storer.values_axes:
        for i, name in enumerate(axis.values):
            where[str(name)] = (axis.cname, i)

    def read(lo, hi):
        rows = storer.table.read(lo, hi)

        def get(names):
            first = where[names[0]][0]
            if all(where[n][0] == first for n in names):
                return rows[first][:, [where[n][1] for n in names]]
            return np.stack([rows[where[n][0]][:, where[n][1]] for n in names], axis=1)

        return get

    return read


def read_top_tagging(path, max_particles: int = REFERENCE_PARTICLES, chunk_size: int = 20_000,
                     start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    """A whole reference-layout file (or rows start:stop) as arrays, read in chunks into
    preallocated arrays; see ``iter_top_tagging`` for the fields. For files larger than memory,
    iterate with ``iter_top_tagging`` or lower ``max_particles``."""
    total = count_rows(path)
    stop = total if stop is None else min(stop, total)
    n = max(stop - start, 0)
    out = None
    row = 0
    for chunk in iter_top_tagging(path, chunk_size, max_particles, start, stop):
        if out is None:
            out = {k: np.empty((n,) + v.shape[1:], v.dtype) for k, v in chunk.items()}
        k = len(chunk["label"])
        for key, value in chunk.items():
            out[key][row:row + k] = value
        row += k
    if out is None:
        p = min(max_particles, REFERENCE_PARTICLES)
        out = {"p4": np.zeros((0, p, 4), np.float32), "mask": np.zeros((0, p), bool),
               "n_constituents": np.zeros(0, np.int32), "truth": np.zeros((0, 4), np.float32),
               "label": np.zeros(0, np.int64), "ttv": np.zeros(0, np.int64)}
    if row != n:
        raise FormatError(f"{path}: read {row} rows, expected {n}")
    return out


# ----------------------------------------------------------------------------- native (h5py)
_NATIVE_JET = ("n_constituents", "jet_p4", "truth", "label", "ttv")
_NATIVE_PARTICLE = ("p4", "pid", "charge")


def write_native(path, arrays: dict, meta: dict | None = None) -> None:
    """Columnar HDF5: padded (N, M, ...) particle arrays are stored flattened over the real
    particles with ``counts`` (N,). ``arrays`` holds ``p4`` (N, M, 4), ``n_constituents`` (N,),
    ``label`` (N,) and optionally ``pid``, ``charge`` (N, M), ``jet_p4``, ``truth`` (N, 4),
    ``ttv`` (N,). ``meta`` (JSON-able) is stored as the attribute ``meta``."""
    import h5py

    counts = np.asarray(arrays["n_constituents"], np.int64)
    m = arrays["p4"].shape[1]
    mask = np.arange(m)[None, :] < counts[:, None]
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = "hepjax-jets-v1"
        f.attrs["max_constituents"] = m
        f.attrs["meta"] = json.dumps(meta or {}, sort_keys=True)
        f.create_dataset("counts", data=counts)
        for key in _NATIVE_PARTICLE:
            if key in arrays:
                f.create_dataset(key, data=np.asarray(arrays[key])[mask])
        for key in _NATIVE_JET:
            if key in arrays and key != "n_constituents":
                f.create_dataset(key, data=np.asarray(arrays[key]))
    tmp.replace(path)


def read_native(path, max_particles: int | None = None) -> dict[str, np.ndarray]:
    """Inverse of ``write_native``: padded arrays (N, P, ...) with P = max_particles (default:
    the stored maximum), ``mask`` (N, P), and ``meta`` (dict)."""
    import h5py

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a hepjax native jets file)")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != "hepjax-jets-v1":
            raise FormatError(f"{path}: not a hepjax native jets file (attribute format="
                              f"{f.attrs.get('format')!r})")
        for key in ("counts", "p4", "label"):
            if key not in f:
                raise FormatError(f"{path}: missing dataset {key!r}; it has {list(f.keys())}")
        counts = f["counts"][:]
        p = int(max_particles or f.attrs["max_constituents"])
        n = len(counts)
        if f["p4"].shape != (counts.sum(), 4):
            raise FormatError(f"{path}: dataset 'p4' has shape {f['p4'].shape}, expected "
                              f"({counts.sum()}, 4) from 'counts'")
        kept = np.minimum(counts, p)
        mask = np.arange(p)[None, :] < kept[:, None]
        # flat index of particle j of jet i is offsets[i] + j; keep j < kept[i]
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        jets, slots = np.nonzero(mask)
        flat = offsets[jets] + slots
        out = {"mask": mask, "n_constituents": kept.astype(np.int32),
               "meta": json.loads(f.attrs.get("meta", "{}"))}
        for key in _NATIVE_PARTICLE:
            if key in f:
                data = f[key][:]
                padded = np.zeros((n, p) + data.shape[1:], data.dtype)
                padded[jets, slots] = data[flat]
                out[key] = padded
        for key in _NATIVE_JET:
            if key in f and key != "n_constituents":
                out[key] = f[key][:]
                if len(out[key]) != n:
                    raise FormatError(f"{path}: dataset {key!r} has {len(out[key])} rows, "
                                      f"'counts' has {n}")
    for key, value in out.items():
        if isinstance(value, np.ndarray):
            _check_finite(key, path, value)
    return out


# ----------------------------------------------------------------------------- energyflow npz
_PID_MASS = {11: 0.000511, 13: 0.10566, 22: 0.0, 130: 0.497611, 211: 0.13957, 321: 0.493677,
             2112: 0.939565, 2212: 0.938272, 310: 0.497611, 3122: 1.115683}


def p4_to_ptyphi(p4, pid=None) -> np.ndarray:
    """(N, M, 4) (E, px, py, pz) -> (N, M, 4) (pT, y, phi, pid) in the energyflow layout;
    padded (E = 0) entries stay all zero."""
    p4 = np.asarray(p4, np.float64)
    e, px, py, pz = np.moveaxis(p4, -1, 0)
    real = e > 0
    pt = np.hypot(px, py)
    ratio = np.divide(e + pz, e - pz, out=np.ones_like(e), where=real & (e - pz > 0))
    y = np.where(real, 0.5 * np.log(np.maximum(ratio, 1e-300)), 0.0)
    phi = np.where(real, np.arctan2(py, px), 0.0)
    pid = np.zeros_like(e) if pid is None else np.where(real, np.asarray(pid, np.float64), 0.0)
    return np.stack([pt, y, phi, pid], -1)


def ptyphi_to_p4(x) -> np.ndarray:
    """(N, M, 4) (pT, y, phi, pid) -> (N, M, 4) (E, px, py, pz); the mass comes from |pid|
    (charged pion for unknown ids, as energyflow's pids2ms); rows with pT = 0 give zeros."""
    x = np.asarray(x, np.float64)
    pt, y, phi, pid = np.moveaxis(x, -1, 0)
    ids = np.abs(pid).astype(np.int64)
    known = np.array(sorted(_PID_MASS))
    masses = np.array([_PID_MASS[k] for k in known])
    pos = np.clip(np.searchsorted(known, ids), 0, len(known) - 1)
    m = np.where(known[pos] == ids, masses[pos], _PID_MASS[211])
    mt = np.sqrt(pt ** 2 + m ** 2)
    out = np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], -1)
    return np.where((pt > 0)[..., None], out, 0.0)


def write_energyflow_npz(path, X, y) -> None:
    """X: (N, M, 4) (pT, y, phi, pid); y: (N,) labels (1 quark, 0 gluon)."""
    X, y = np.asarray(X, np.float64), np.asarray(y)
    if X.ndim != 3 or X.shape[2] != 4 or y.shape != (len(X),):
        raise ValueError(f"X must be (N, M, 4) and y (N,), got {X.shape} and {y.shape}")
    np.savez_compressed(path, X=X, y=y)


def read_energyflow_npz(path) -> dict[str, np.ndarray]:
    """``X`` (N, M, 4) (pT, y, phi, pid), ``y`` (N,), ``mask`` (N, M) (pT > 0) from an energyflow
    quark/gluon file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected an energyflow .npz with X, y)")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("X", "y") if k not in f.files]
        if missing:
            raise FormatError(f"{path}: missing arrays {missing}; it has {f.files}")
        X, y = f["X"], f["y"]
    if X.ndim != 3 or X.shape[2] != 4:
        raise FormatError(f"{path}: array 'X' must have shape (jets, particles, 4) with "
                          f"(pT, y, phi, pid); got {X.shape}")
    if y.shape != (len(X),):
        raise FormatError(f"{path}: array 'y' has shape {y.shape}, expected ({len(X)},) to match 'X'")
    _check_finite("X", path, X)
    _check_finite("y", path, y)
    return {"X": X, "y": y, "mask": X[..., 0] > 0}


# ----------------------------------------------------------------------------- JetClass ROOT
def read_jetclass(path, max_particles: int = 128, tree: str = "tree",
                  entry_stop: int | None = None) -> dict[str, np.ndarray]:
    """A JetClass ROOT file: ``p4`` (N, P, 4) float32 (E, px, py, pz) sorted as stored,
    ``mask`` (N, P), ``charge`` (N, P) when ``part_charge`` exists, ``label`` (N,) the index of
    the true class among ``label_names`` (the file's ``label_*`` branches, sorted)."""
    try:
        import awkward as ak
        import uproot
    except ImportError as err:
        raise ImportError(f"ROOT files need uproot and awkward ({err}); install them with "
                          "`pip install 'hepjax[io]'`") from None
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a JetClass ROOT file)")
    with uproot.open(path) as f:
        if tree not in f:
            raise FormatError(f"{path}: no tree {tree!r}; it has {list(f.keys())}")
        t = f[tree]
        names = set(t.keys())
        needed = ["part_px", "part_py", "part_pz", "part_energy"]
        missing = [b for b in needed if b not in names]
        labels = sorted(b for b in names if b.startswith("label_"))
        if missing or not labels:
            raise FormatError(f"{path}: tree {tree!r} lacks branches {missing or ['label_*']}; "
                              f"it has {sorted(names)[:12]}")
        branches = needed + labels + (["part_charge"] if "part_charge" in names else [])
        data = t.arrays(branches, entry_stop=entry_stop)
    n = len(data)

    def pad(name, dtype):
        arr = ak.fill_none(ak.pad_none(data[name], max_particles, clip=True), 0)
        return ak.to_numpy(arr).astype(dtype)

    p4 = np.stack([pad(b, np.float32) for b in ("part_energy", "part_px", "part_py", "part_pz")], -1)
    _check_finite("part_px/py/pz/energy", path, p4)
    counts = np.minimum(ak.to_numpy(ak.num(data["part_px"])), max_particles)
    onehot = np.stack([ak.to_numpy(data[b]).astype(np.float64) for b in labels], -1)
    bad = onehot.sum(1) != 1
    if bad.any():
        raise FormatError(f"{path}: label_* branches are not one-hot in {int(bad.sum())} of {n} rows")
    out = {"p4": p4, "mask": np.arange(max_particles)[None] < counts[:, None],
           "n_constituents": counts.astype(np.int32), "label": onehot.argmax(1).astype(np.int64),
           "label_names": tuple(labels)}
    if "part_charge" in branches:
        out["charge"] = pad("part_charge", np.int8)
    return out
