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

Every reader checks what it reads before returning it, and refuses a bad file with one
``FormatError`` (a ``ValueError``) on one line naming the file, the field, how many rows are bad
and the first bad row with its value: a missing column, branch, key or array; a file with no jets;
NaN/Inf in any float field (features, truth, labels); labels outside the task's classes
(reference ``is_signal_new`` 0/1 and ``ttv`` 0/1/2, energyflow ``y`` 0/1, JetClass ``label_*``
one-hot, native ``label`` 0/1 for the generated tasks and a class index >= 0 otherwise). A file
read in chunks is counted over all its rows (the rest of the file is read on the error path).
"""
from __future__ import annotations

import json
import pathlib
import zipfile
from typing import Iterator

import numpy as np

from hepjax.physics import numpy_kinematics as npkin

__all__ = ["REFERENCE_PARTICLES", "reference_columns", "TopTaggingWriter", "write_top_tagging",
           "iter_top_tagging", "read_top_tagging", "count_rows", "write_native", "read_native",
           "write_energyflow_npz", "read_energyflow_npz", "p4_to_ptyphi", "ptyphi_to_p4",
           "read_jetclass", "read_deepjet_ntuple", "FormatError"]

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


def _scalar(value) -> str:
    return repr(value.item() if hasattr(value, "item") else value)


def _short(err: BaseException) -> str:
    """The last non-empty line of an exception's message (HDF5 errors span many), shortened."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[-1] if lines else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _classes_text(allowed) -> str:
    allowed = sorted(allowed)
    return "{" + ", ".join(str(c) for c in allowed) + "}" if len(allowed) <= 6 else \
        f"{{{allowed[0]}, ..., {allowed[-1]}}}"


class _Checks:
    """Row checks of one file, which may be read in chunks: each check counts its bad rows over
    every chunk it sees and keeps the first; ``raise_first()`` raises one ``FormatError`` for the
    check that failed first. ``field`` reads like "column 'ttv'" or "array 'y'"."""

    def __init__(self, path):
        self.path = path
        self.failed: dict[str, list] = {}   # check -> [bad rows, first bad row, example, text]
        self.seen: dict[str, int] = {}      # check -> rows checked

    def _record(self, key: str, bad: np.ndarray, offset: int, example, text) -> None:
        self.seen[key] = self.seen.get(key, 0) + len(bad)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            entry = self.failed.setdefault(key, [0, first + offset, example(first), text])
            entry[0] += int(bad.sum())

    def finite(self, field: str, values, offset: int = 0, names=None) -> None:
        """NaN/Inf anywhere in a row of a float array (N, ...) makes the row bad; ``names``
        (one per entry of a row) name the entry in the example."""
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.floating):
            return
        flat = values.reshape(len(values), -1)
        bad = ~np.isfinite(flat).all(axis=1)

        def example(i):
            j = int(np.flatnonzero(~np.isfinite(flat[i]))[0])
            return _scalar(flat[i, j]) if names is None else f"{names[j]}={_scalar(flat[i, j])}"

        self._record(f"{field} finite", bad, offset, example,
                     lambda n, total: f"{field} has NaN/Inf values in {n} of {total} rows")

    def classes(self, field: str, values, allowed=None, offset: int = 0) -> None:
        """Labels must be integers in ``allowed`` (any integer >= 0 if None); NaN/Inf rows are
        left to ``finite``."""
        values = np.asarray(values)
        bad = ~_in_classes(values, allowed)
        if np.issubdtype(values.dtype, np.floating):
            with np.errstate(invalid="ignore"):
                bad = np.isfinite(values) & (bad | (values != np.round(values)))
        where = "outside " + _classes_text(allowed) if allowed is not None else \
            "that are not class indices (integers >= 0)"
        self._record(f"{field} classes", bad, offset, lambda i: _scalar(values[i]),
                     lambda n, total: f"{field} has {n} rows {where}")

    def custom(self, key: str, bad, offset: int, example, text) -> None:
        """Any row check: ``example(i)`` describes bad row i, ``text(n, total)`` is the message."""
        self._record(key, np.asarray(bad, bool), offset, example, text)

    def raise_first(self) -> None:
        if self.failed:
            key, (n, row, example, text) = next(iter(self.failed.items()))
            raise FormatError(f"{self.path}: {text(n, self.seen[key])} (e.g. row {row}: {example})")


def _in_classes(values: np.ndarray, allowed) -> np.ndarray:
    if allowed is None:
        return values >= 0
    return np.isin(values, np.asarray(sorted(allowed)))


def _no_jets(path, where: str):
    return FormatError(f"{path}: no jets (0 rows) {where}; nothing to train or evaluate on")


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
    frame = pd.DataFrame(block.reshape(n, 4 * n_particles), columns=cols[:4 * n_particles])
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
        if not len(frame):
            return  # pandas cannot append no rows; the reader calls a file without rows empty
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
    try:
        store = pd.HDFStore(path, mode="r")
    except (OSError, RuntimeError) as err:  # PyTables' HDF5ExtError is a RuntimeError
        raise FormatError(f"{path}: not a readable HDF5 file ({_short(err)})") from None
    if "/table" not in store.keys():
        keys = store.keys()
        store.close()
        if not keys:  # what pandas leaves when asked to write an empty table
            raise _no_jets(path, "(an empty HDF5 file: no key 'table')")
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
    Memory is bounded by the chunk size.

    Raises ``FormatError`` for missing columns, no rows, NaN/Inf in the momenta, truth, ``ttv``
    or ``is_signal_new``, ``is_signal_new`` outside {0, 1} or ``ttv`` outside {0, 1, 2}. A bad
    chunk is never yielded; the error counts the bad rows of the whole selection (reading the
    rest of it only then)."""
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
        if total == 0:
            raise _no_jets(path, "in key 'table'")
        stop = total if stop is None else min(stop, total)
        if start >= stop:
            raise FormatError(f"{path}: rows {start}:{stop} select no jets (0 rows); the file "
                              f"has {total}")
        read_columns = _table_reader(storer) if storer.is_table else None
        p4_columns = reference_columns(p)[:4 * p]
        checks = _Checks(path)
        for lo in range(start, stop, chunk_size):
            hi = min(lo + chunk_size, stop)
            if read_columns is not None:  # PyTables rows straight into numpy: no DataFrame
                get = read_columns(lo, hi)
            else:
                frame = store.select("table", start=lo, stop=hi)
                get = lambda names, frame=frame: frame[list(names)].to_numpy()  # noqa: E731
            block = get(p4_columns).astype(np.float32, copy=False)
            if len(block) != hi - lo:
                raise FormatError(f"{path}: asked for rows {lo}:{hi} and got {len(block)}; the "
                                  "file is truncated or corrupt")
            truth = get(TRUTH_COLUMNS).astype(np.float32, copy=False)
            ttv, label = get(("ttv",))[:, 0], get(("is_signal_new",))[:, 0]
            checks.finite("column 'E_i/PX_i/PY_i/PZ_i'", block, lo, p4_columns)
            checks.finite("column 'truth*'", truth, lo, TRUTH_COLUMNS)
            for col, values, allowed in (("ttv", ttv, (0, 1, 2)), ("is_signal_new", label, (0, 1))):
                checks.finite(f"column {col!r}", values, lo)
                checks.classes(f"column {col!r}", values, allowed, lo)
            if checks.failed:
                continue  # count the bad rows of the whole selection, yield nothing more
            p4 = block.reshape(hi - lo, p, 4)
            mask = p4[..., 0] > 0
            yield {"p4": p4, "mask": mask, "n_constituents": mask.sum(1).astype(np.int32),
                   "truth": truth, "label": label.astype(np.int64), "ttv": ttv.astype(np.int64)}
        checks.raise_first()
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
    iterate with ``iter_top_tagging`` or lower ``max_particles``. Validated as there: a bad
    file raises ``FormatError`` before anything is returned."""
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


_BINARY_TASKS = ("top-tagging", "quark-gluon")  # generated tasks whose labels are 0/1


def read_native(path, max_particles: int | None = None) -> dict[str, np.ndarray]:
    """Inverse of ``write_native``: padded arrays (N, P, ...) with P = max_particles (default:
    the stored maximum), ``mask`` (N, P), and ``meta`` (dict).

    Raises ``FormatError`` for missing datasets, no jets, negative counts, NaN/Inf in any float
    dataset (particles are checked before padding and reported by jet), ``label`` outside
    {0, 1} for the generated tasks (``meta['task']`` top-tagging or quark-gluon; a class index
    >= 0 otherwise) or ``ttv`` outside {0, 1, 2}."""
    import h5py

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a hepjax native jets file)")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise FormatError(f"{path}: not a readable HDF5 file ({_short(err)})") from None
    with f:
        if f.attrs.get("format") != "hepjax-jets-v1":
            raise FormatError(f"{path}: not a hepjax native jets file (attribute format="
                              f"{f.attrs.get('format')!r})")
        missing = [key for key in ("counts", "p4", "label") if key not in f]
        if missing:
            raise FormatError(f"{path}: missing datasets {missing}; it has {list(f.keys())}")
        counts = f["counts"][:]
        if len(counts) == 0:
            raise _no_jets(path, "in dataset 'counts'")
        if (counts < 0).any():
            bad = counts < 0
            raise FormatError(f"{path}: dataset 'counts' has {int(bad.sum())} negative rows (e.g. "
                              f"row {int(np.argmax(bad))}: {counts[bad][0]})")
        if f["p4"].shape != (counts.sum(), 4):
            raise FormatError(f"{path}: dataset 'p4' has shape {f['p4'].shape}, expected "
                              f"({counts.sum()}, 4) from 'counts'")
        meta = json.loads(f.attrs.get("meta", "{}"))
        flat = {key: f[key][:] for key in _NATIVE_PARTICLE if key in f}
        jet = {key: f[key][:] for key in _NATIVE_JET if key in f and key != "n_constituents"}
        p = int(max_particles or f.attrs["max_constituents"])
    n = len(counts)
    for key, value in flat.items():
        if len(value) != counts.sum():
            raise FormatError(f"{path}: dataset {key!r} has {len(value)} rows, expected "
                              f"{counts.sum()} (one per particle) from 'counts'")
    for key, value in jet.items():
        if len(value) != n:
            raise FormatError(f"{path}: dataset {key!r} has {len(value)} rows, 'counts' has {n}")
    checks = _Checks(path)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    for key, value in flat.items():
        _check_particles(checks, f"dataset {key!r}", value, counts, offsets)
    for key, value in jet.items():
        checks.finite(f"dataset {key!r}", value)
    allowed = (0, 1) if meta.get("task") in _BINARY_TASKS else None
    checks.classes("dataset 'label'", jet["label"], allowed)
    if "ttv" in jet:
        checks.classes("dataset 'ttv'", jet["ttv"], (0, 1, 2))
    checks.raise_first()

    kept = np.minimum(counts, p)
    mask = np.arange(p)[None, :] < kept[:, None]
    # flat index of particle j of jet i is offsets[i] + j; keep j < kept[i]
    jets, slots = np.nonzero(mask)
    index = offsets[jets] + slots
    out = {"mask": mask, "n_constituents": kept.astype(np.int32), "meta": meta}
    for key, data in flat.items():
        padded = np.zeros((n, p) + data.shape[1:], data.dtype)
        padded[jets, slots] = data[index]
        out[key] = padded
    out.update(jet)
    return out


def _check_particles(checks: _Checks, field: str, values, counts, offsets) -> None:
    """NaN/Inf in per-particle data flattened over jets (sum counts, ...), counted by jet."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad_particle = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    owner = np.repeat(np.arange(len(counts)), counts)
    bad = np.bincount(owner[bad_particle], minlength=len(counts)) > 0

    def example(i):
        j = int(np.flatnonzero(bad_particle[offsets[i]:offsets[i] + counts[i]])[0])
        row = values[offsets[i] + j].reshape(-1)
        return f"particle {j} = {_scalar(row[~np.isfinite(row)][0])}"

    checks.custom(f"{field} finite", bad, 0, example,
                  lambda n, total: f"{field} has NaN/Inf values in {n} of {total} jets")


# ----------------------------------------------------------------------------- energyflow npz
_PID_MASS = {11: 0.000511, 13: 0.10566, 22: 0.0, 130: 0.497611, 211: 0.13957, 321: 0.493677,
             2112: 0.939565, 2212: 0.938272, 310: 0.497611, 3122: 1.115683}


def p4_to_ptyphi(p4, pid=None) -> np.ndarray:
    """(N, M, 4) (E, px, py, pz) -> (N, M, 4) (pT, y, phi, pid) in the energyflow layout;
    padded (E = 0) entries stay all zero; y and phi are 0 where undefined (E <= |pz|, pT = 0).
    As in the energyflow files, every particle's phi is within pi of its jet's (the sum of the
    particles), so a jet at phi = +-pi is not split in two (its phi may leave (-pi, pi])."""
    p4 = np.asarray(p4, np.float64)
    real = p4[..., 0] > 0
    pt = npkin.pt(p4)
    y = np.where(real, npkin.rapidity(p4), 0.0)
    jet_phi = npkin.phi(npkin.jet_momentum(p4, real))[..., None]
    phi = np.where(real, jet_phi + npkin.delta_phi(npkin.phi(p4, pt), jet_phi), 0.0)
    pid = np.zeros_like(pt) if pid is None else np.where(real, np.asarray(pid, np.float64), 0.0)
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


def _load_npz(path, what: str):
    """np.load of an .npz without pickles, its failures as one-line FormatErrors."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {what})")
    if not zipfile.is_zipfile(path):
        raise FormatError(f"{path}: not an .npz file (not a zip archive); expected {what}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise FormatError(f"{path}: not a readable .npz file ({_short(err)}); expected {what}") from None


def _npz_arrays(path, f, names) -> list[np.ndarray]:
    missing = [k for k in names if k not in f.files]
    if missing:
        raise FormatError(f"{path}: missing arrays {missing}; it has {f.files}")
    try:
        return [f[k] for k in names]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # a corrupt member
        raise FormatError(f"{path}: cannot read the arrays {list(names)} ({_short(err)})") from None


def read_energyflow_npz(path, num_classes: int = 2) -> dict[str, np.ndarray]:
    """``X`` (N, M, 4) (pT, y, phi, pid), ``y`` (N,), ``mask`` (N, M) (pT > 0) from an energyflow
    quark/gluon file. Raises ``FormatError`` for missing arrays, wrong shapes, no jets, NaN/Inf
    in ``X`` or ``y``, or ``y`` outside {0, ..., num_classes - 1} (quark/gluon: {0, 1})."""
    path = pathlib.Path(path)
    with _load_npz(path, "an energyflow .npz with X, y") as f:
        X, y = _npz_arrays(path, f, ("X", "y"))
    if X.ndim != 3 or X.shape[2] != 4:
        raise FormatError(f"{path}: array 'X' must have shape (jets, particles, 4) with "
                          f"(pT, y, phi, pid); got {X.shape}")
    if y.shape != (len(X),):
        raise FormatError(f"{path}: array 'y' has shape {y.shape}, expected ({len(X)},) to match 'X'")
    if len(X) == 0:
        raise _no_jets(path, "in array 'X'")
    checks = _Checks(path)
    checks.finite("array 'X'", X, names=[f"{c}[{j}]" for j in range(X.shape[1])
                                         for c in ("pT", "y", "phi", "pid")])
    checks.finite("array 'y'", y)
    checks.classes("array 'y'", y, range(num_classes))
    checks.raise_first()
    return {"X": X, "y": y, "mask": X[..., 0] > 0}


# ----------------------------------------------------------------------------- JetClass ROOT
def read_jetclass(path, max_particles: int = 128, tree: str = "tree",
                  entry_stop: int | None = None) -> dict[str, np.ndarray]:
    """A JetClass ROOT file: ``p4`` (N, P, 4) float32 (E, px, py, pz) sorted as stored,
    ``mask`` (N, P), ``charge`` (N, P) when ``part_charge`` exists, ``label`` (N,) the index of
    the true class among ``label_names`` (the file's ``label_*`` branches, sorted).

    Raises ``FormatError`` for a missing tree or branches, no jets, NaN/Inf in the particle
    branches (up to ``max_particles``) or the labels, or ``label_*`` not one-hot in a row."""
    try:
        import awkward as ak
        import uproot
    except ImportError as err:
        raise ImportError(f"ROOT files need uproot and awkward ({err}); install them with "
                          "`pip install 'hepjax[io]'`") from None
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a JetClass ROOT file)")
    try:
        f = uproot.open(path)
    except (OSError, ValueError) as err:
        raise FormatError(f"{path}: not a readable ROOT file ({_short(err)})") from None
    with f:
        if tree not in f:
            raise FormatError(f"{path}: no tree {tree!r}; it has {list(f.keys())}")
        t = f[tree]
        names = set(t.keys())
        needed = ["part_px", "part_py", "part_pz", "part_energy"]
        missing = [b for b in needed if b not in names]
        labels = sorted(b for b in names if b.startswith("label_"))
        if missing or not labels:
            missing += [] if labels else ["label_*"]
            raise FormatError(f"{path}: tree {tree!r} lacks branches {missing}; it has "
                              f"{sorted(names)[:12]}{' ...' if len(names) > 12 else ''}")
        branches = needed + labels + (["part_charge"] if "part_charge" in names else [])
        try:
            data = t.arrays(branches, entry_stop=entry_stop)
        except (OSError, ValueError, uproot.DeserializationError) as err:
            raise FormatError(f"{path}: cannot read tree {tree!r} ({_short(err)})") from None
    n = len(data)
    if n == 0:
        raise _no_jets(path, f"in tree {tree!r}")

    def pad(name, dtype=None):
        arr = ak.to_numpy(ak.fill_none(ak.pad_none(data[name], max_particles, clip=True), 0))
        return arr if dtype is None else arr.astype(dtype)

    p4 = np.stack([pad(b, np.float32) for b in ("part_energy", "part_px", "part_py", "part_pz")], -1)
    counts = np.minimum(ak.to_numpy(ak.num(data["part_px"])), max_particles)
    onehot = np.stack([ak.to_numpy(data[b]).astype(np.float64) for b in labels], -1)
    charge = pad("part_charge") if "part_charge" in branches else None
    checks = _Checks(path)
    components = ("energy", "px", "py", "pz")
    checks.finite("branches 'part_energy/px/py/pz'", p4,
                  names=[f"part_{c}[{j}]" for j in range(max_particles) for c in components])
    if charge is not None:
        checks.finite("branch 'part_charge'", charge,
                      names=[f"part_charge[{j}]" for j in range(max_particles)])
    checks.finite("branches 'label_*'", onehot, names=labels)
    finite = np.isfinite(onehot).all(1)
    not_onehot = finite & ~(np.isin(onehot, (0, 1)).all(1) & (onehot.sum(1) == 1))

    def set_labels(i):
        return ", ".join(f"{b}={_scalar(v)}" for b, v in zip(labels, onehot[i]) if v != 0) or "all 0"

    checks.custom("one-hot", not_onehot, 0, set_labels,
                  lambda k, total: f"branches 'label_*' are not one-hot (exactly one 1 per row) "
                                   f"in {k} of {total} rows")
    checks.raise_first()
    out = {"p4": p4, "mask": np.arange(max_particles)[None] < counts[:, None],
           "n_constituents": counts.astype(np.int32), "label": onehot.argmax(1).astype(np.int64),
           "label_names": tuple(labels)}
    if charge is not None:
        out["charge"] = charge.astype(np.int8)
    return out


# ----------------------------------------------------------------------------- DeepJet ntuple
def read_deepjet_ntuple(path, **kwargs):
    """A CMS DeepJet ntuple (``deepntuplizer/tree``): see ``hepjax.data.deepjet_ntuple``."""
    from hepjax.data.deepjet_ntuple import read_deepjet_ntuple as read
    return read(path, **kwargs)
