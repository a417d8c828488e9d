"""The on-disk format of calorimeter events (``hepjax.sim.calorimeter``): HDF5 via h5py.

Events have variable numbers of hits, truth contributions and particles; each kind is stored as
flat arrays concatenated over all events, with per-event offsets. For N events holding H hits,
C contributions and P particles in all:

=============================  ==========  ========  =============================================
dataset                        shape       dtype     content
=============================  ==========  ========  =============================================
``events/hit_offsets``         (N+1,)      int64     event e's hits are rows [o[e], o[e+1])
``events/contrib_offsets``     (N+1,)      int64     ... its contributions
``events/particle_offsets``    (N+1,)      int64     ... its particles
``hits/layer``                 (H,)        int16     layer, 0 at the front, over all sections
``hits/ix``, ``hits/iy``       (H,)        int16     cell column and row in the layer's grid
``hits/position``              (H, 3)      float32   cell centre x, y, z [cm] (z: the sensor)
``hits/energy``                (H,)        float32   measured energy [GeV, EM scale], > threshold
``hits/signal_energy``         (H,)        float32   particles' energy in the cell [GeV] (no noise)
``hits/noise``                 (H,)        bool      made by noise alone (no contributions)
``hits/dominant``              (H,)        int32     particle with the largest share (-1: noise)
``contributions/hit``          (C,)        int32     hit index within the event
``contributions/particle``     (C,)        int32     particle index within the event
``contributions/fraction``     (C,)        float32   share of the hit's signal_energy; the
                                                     fractions of every signal hit sum to 1
``particles/pdg``              (P,)        int32     PDG id
``particles/charge``           (P,)        int8      charge [e]
``particles/energy``           (P,)        float32   true energy [GeV]
``particles/position``         (P, 3)      float32   entry point (x, y, 0) [cm]
``particles/direction``        (P, 3)      float32   unit direction
``particles/deposited``        (P,)        float32   energy in all cells, before noise and zero
                                                     suppression [GeV, EM scale]
``particles/visible``          (P,)        float32   its energy in the read-out hits [GeV]
``particles/shower_start``     (P,)        float32   z of conversion / first interaction [cm];
                                                     0 for e+-, -1 for none
=============================  ==========  ========  =============================================

Hits of an event are sorted by cell (layer, ix, iy); contributions by hit, then particle.
Root attributes: ``format`` = "hepjax-calorimeter", ``version`` = 1, ``config`` (JSON of
``SimConfig.to_dict()``: geometry, resolutions, noise, threshold) and ``meta`` (JSON: seed,
source, gun or jet settings). The writer writes ``PATH.partial`` and renames it when closed, so
an interrupted generation never leaves a truncated file under the final name.

Reading (``CalorimeterFile``, ``read_events``, ``read_event``): per-event dicts with the keys of
``simulate_event`` (``hit_energy``, ``contrib_fraction``, ``particle_pdg``, ...), or padded
fixed-shape arrays (``pad_events``): ``hit_*`` (N, max_hits, ...) with ``hit_mask``,
``hit_fraction`` (N, max_hits, max_particles) dense, ``particle_*`` (N, max_particles, ...) with
``particle_mask``, ``n_hits``, ``n_particles``; padding is 0 (``hit_dominant`` -1). An event
with no hits is valid (all-False mask). Whatever is read is checked first: a bad value raises
``FormatError`` (a ``ValueError``) on one line naming the file, the event and the field, e.g.
NaN/inf energies or positions, negative energies, fractions of a signal hit that do not sum to 1
(within 1e-3), indices out of range, inconsistent offsets or shapes.
"""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from hepjax.data.formats import FormatError

__all__ = ["FORMAT", "VERSION", "FIELDS", "CalorimeterWriter", "CalorimeterFile", "write_events",
           "read_events", "read_event", "pad_events", "check_events", "FormatError"]

FORMAT, VERSION = "hepjax-calorimeter", 1
FRACTION_TOLERANCE = 1e-3
# event-dict key -> (dataset, dtype, trailing shape); grouped by what they are offset by
FIELDS = {
    "hit": {"hit_layer": ("hits/layer", np.int16, ()), "hit_ix": ("hits/ix", np.int16, ()),
            "hit_iy": ("hits/iy", np.int16, ()),
            "hit_position": ("hits/position", np.float32, (3,)),
            "hit_energy": ("hits/energy", np.float32, ()),
            "hit_signal_energy": ("hits/signal_energy", np.float32, ()),
            "hit_noise": ("hits/noise", np.bool_, ()),
            "hit_dominant": ("hits/dominant", np.int32, ())},
    "contrib": {"contrib_hit": ("contributions/hit", np.int32, ()),
                "contrib_particle": ("contributions/particle", np.int32, ()),
                "contrib_fraction": ("contributions/fraction", np.float32, ())},
    "particle": {"particle_pdg": ("particles/pdg", np.int32, ()),
                 "particle_charge": ("particles/charge", np.int8, ()),
                 "particle_energy": ("particles/energy", np.float32, ()),
                 "particle_position": ("particles/position", np.float32, (3,)),
                 "particle_direction": ("particles/direction", np.float32, (3,)),
                 "particle_deposited": ("particles/deposited", np.float32, ()),
                 "particle_visible": ("particles/visible", np.float32, ()),
                 "particle_shower_start": ("particles/shower_start", np.float32, ())},
}
OFFSETS = {"hit": "events/hit_offsets", "contrib": "events/contrib_offsets",
           "particle": "events/particle_offsets"}


def _h5py():
    import h5py
    return h5py


class CalorimeterWriter:
    """Appends events (dicts of ``simulate_event``) to a new file; use as a context manager."""

    def __init__(self, path, config=None, meta: dict | None = None, *,
                 compression: str | None = "lzf", chunk_rows: int = 1 << 16):
        h5py = _h5py()
        self.path = pathlib.Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.file = h5py.File(self.partial, "w")
        self.file.attrs["format"] = FORMAT
        self.file.attrs["version"] = VERSION
        self.file.attrs["config"] = json.dumps(config.to_dict() if config is not None else None)
        self.file.attrs["meta"] = json.dumps(meta or {})
        self.rows = {group: 0 for group in FIELDS}
        for group, fields in FIELDS.items():
            for dataset, dtype, shape in fields.values():
                self.file.create_dataset(dataset, shape=(0, *shape), maxshape=(None, *shape),
                                         dtype=dtype, chunks=(chunk_rows, *shape),
                                         compression=compression)
        self.offsets = {group: [0] for group in FIELDS}

    def append(self, events) -> None:
        if not events:
            return
        for group, fields in FIELDS.items():
            counts = [len(e[next(iter(fields))]) for e in events]
            for key, (dataset, dtype, shape) in fields.items():
                values = np.concatenate([np.asarray(e[key], dtype).reshape(-1, *shape)
                                         for e in events])
                ds = self.file[dataset]
                ds.resize(self.rows[group] + len(values), axis=0)
                ds[self.rows[group]:] = values
            self.rows[group] += sum(counts)
            self.offsets[group].extend((self.offsets[group][-1] + np.cumsum(counts)).tolist())

    def close(self) -> None:
        if self.file is None:
            return
        for group, name in OFFSETS.items():
            self.file.create_dataset(name, data=np.asarray(self.offsets[group], np.int64))
        self.file.close()
        self.file = None
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.partial.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_events(path, events, config=None, meta: dict | None = None, **kwargs) -> None:
    """Writes a list of events to ``path`` in one go (``CalorimeterWriter``)."""
    with CalorimeterWriter(path, config, meta, **kwargs) as writer:
        writer.append(list(events))


# ---------------------------------------------------------------------------------------------
# checks

def _fail(where, event, field, text):
    raise FormatError(f"{where}: event {event}: field {field!r} {text}")


def check_events(flat: dict, offsets: dict, *, where="<events>", first_event: int = 0,
                 geometry=None) -> None:
    """Checks events given as flat arrays (keys of ``FIELDS``) with offsets starting at 0 (one
    array per group, length n + 1); raises ``FormatError`` naming ``where``, the event
    (``first_event`` + its index) and the field of the first problem found."""
    n = len(offsets["hit"]) - 1
    ds = {key: spec[0] for fields in FIELDS.values() for key, spec in fields.items()}
    owner = {g: np.repeat(np.arange(n), np.diff(offsets[g])) for g in FIELDS}

    def first_bad(group, bad, key, what, values=None):
        bad = np.asarray(bad)
        if bad.ndim > 1:
            bad = bad.any(axis=tuple(range(1, bad.ndim)))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            e = int(owner[group][row])
            local = row - int(offsets[group][e])
            shown = "" if values is None else f": {np.asarray(values)[row].tolist()}"
            _fail(where, first_event + e, ds[key], f"{what} ({group} {local}{shown})")

    for group, fields in FIELDS.items():
        total = int(offsets[group][-1])
        for key, (_, _, shape) in fields.items():
            v = flat[key]
            if v.shape != (total, *shape):
                raise FormatError(f"{where}: field {ds[key]!r} has shape {v.shape}, expected "
                                  f"{(total, *shape)} from its offsets")
            if np.issubdtype(v.dtype, np.floating):
                first_bad(group, ~np.isfinite(v), key, "is NaN or inf", v)
    for key in ("hit_energy", "hit_signal_energy", "particle_deposited", "particle_visible"):
        first_bad(key.split("_")[0], flat[key] < 0, key, "is negative", flat[key])
    first_bad("particle", flat["particle_energy"] <= 0, "particle_energy", "is not positive",
              flat["particle_energy"])
    n_hits = np.diff(offsets["hit"])
    n_part = np.diff(offsets["particle"])
    if geometry is not None:
        t = geometry.tables
        layer = flat["hit_layer"].astype(np.int64)
        first_bad("hit", (layer < 0) | (layer >= len(t.section)), "hit_layer",
                  f"is outside [0, {len(t.section)})", layer)
        cells = t.n_cells[np.clip(layer, 0, len(t.section) - 1)]
        for key in ("hit_ix", "hit_iy"):
            v = flat[key].astype(np.int64)
            first_bad("hit", (v < 0) | (v >= cells), key, "is outside the layer's grid", v)
    dom = flat["hit_dominant"].astype(np.int64)
    first_bad("hit", (dom < -1) | (dom >= n_part[owner["hit"]]), "hit_dominant",
              "is not a particle index or -1", dom)
    first_bad("hit", flat["hit_noise"] & (dom != -1), "hit_dominant",
              "is not -1 for a noise hit", dom)
    c_hit = flat["contrib_hit"].astype(np.int64)
    c_part = flat["contrib_particle"].astype(np.int64)
    c_event = owner["contrib"]
    first_bad("contrib", (c_hit < 0) | (c_hit >= n_hits[c_event]), "contrib_hit",
              "is not a hit index of its event", c_hit)
    first_bad("contrib", (c_part < 0) | (c_part >= n_part[c_event]), "contrib_particle",
              "is not a particle index of its event", c_part)
    frac = flat["contrib_fraction"]
    first_bad("contrib", (frac < 0) | (frac > 1 + FRACTION_TOLERANCE), "contrib_fraction",
              "is outside [0, 1]", frac)
    sums = np.bincount(offsets["hit"][c_event] + c_hit, weights=frac,
                       minlength=int(offsets["hit"][-1]))
    noise = flat["hit_noise"]
    bad = np.where(noise, sums != 0, np.abs(sums - 1.0) > FRACTION_TOLERANCE)
    first_bad("hit", bad, "contrib_fraction",
              "of the hit do not sum to 1 (signal hit) or 0 (noise hit)", sums)


def _check_offsets(where, offsets: dict, lengths: dict) -> None:
    sizes = {len(o) for o in offsets.values()}
    if len(sizes) != 1:
        raise FormatError(f"{where}: the offset datasets have different lengths "
                          f"{ {OFFSETS[g]: len(o) for g, o in offsets.items()} }")
    for group, o in offsets.items():
        if len(o) == 0 or o[0] != 0:
            raise FormatError(f"{where}: field {OFFSETS[group]!r} must start at 0")
        step = np.diff(o)
        if (step < 0).any():
            e = int(np.flatnonzero(step < 0)[0])
            _fail(where, e, OFFSETS[group], f"decreases ({o[e]} -> {o[e + 1]})")
        if o[-1] != lengths[group]:
            raise FormatError(f"{where}: field {OFFSETS[group]!r} ends at {o[-1]} but the "
                              f"{group} datasets have {lengths[group]} rows")


# ---------------------------------------------------------------------------------------------
# reading

class CalorimeterFile:
    """An open events file: ``len(f)`` events, ``f[i]`` / ``f.event(i)`` one event (a dict of
    arrays, checked), ``f.events(start, stop)`` several, ``f.padded(...)`` fixed shapes,
    ``f.config`` the ``SimConfig`` that made it, ``f.meta`` its generation settings."""

    def __init__(self, path):
        h5py = _h5py()
        self.path = pathlib.Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except (OSError, ValueError) as err:
            if not self.path.exists():
                raise FileNotFoundError(f"{self.path}: no such file") from None
            text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise FormatError(f"{self.path}: not a readable HDF5 file ({text})") from None
        try:
            self._open()
        except Exception:
            self.file.close()
            raise

    def _open(self):
        f = self.file
        if f.attrs.get("format") != FORMAT:
            raise FormatError(f"{self.path}: not a hepjax calorimeter file (attribute format="
                              f"{f.attrs.get('format')!r}, expected {FORMAT!r})")
        names = [spec[0] for fields in FIELDS.values() for spec in fields.values()]
        missing = [n for n in names + list(OFFSETS.values()) if n not in f]
        if missing:
            raise FormatError(f"{self.path}: missing datasets {missing}")
        self.offsets = {g: f[name][()].astype(np.int64) for g, name in OFFSETS.items()}
        lengths = {}
        for group, fields in FIELDS.items():
            for key, (dataset, _, shape) in fields.items():
                d = f[dataset]
                if d.shape[1:] != shape:
                    raise FormatError(f"{self.path}: field {dataset!r} has shape {d.shape}, "
                                      f"expected (rows, {', '.join(map(str, shape))})")
                if lengths.setdefault(group, d.shape[0]) != d.shape[0]:
                    raise FormatError(f"{self.path}: field {dataset!r} has {d.shape[0]} rows, "
                                      f"other {group} fields {lengths[group]}")
        _check_offsets(self.path, self.offsets, lengths)
        self.meta = json.loads(f.attrs.get("meta", "{}"))
        raw = json.loads(f.attrs.get("config", "null"))
        self._config_dict = raw
        self._config = None
        self._block = None

    @property
    def config(self):
        """The ``SimConfig`` recorded in the file (None if it has none)."""
        if self._config is None and self._config_dict is not None:
            from hepjax.sim.calorimeter import SimConfig
            self._config = SimConfig.from_dict(self._config_dict)
        return self._config

    def __len__(self) -> int:
        return len(self.offsets["hit"]) - 1

    def _geometry(self):
        return self.config.geometry if self.config is not None else None

    def _read(self, start: int, stop: int) -> tuple[dict, dict]:
        """Flat arrays and offsets (from 0) of events [start, stop), unchecked."""
        flat, offsets = {}, {}
        for group, fields in FIELDS.items():
            o = self.offsets[group]
            lo, hi = int(o[start]), int(o[stop])
            offsets[group] = o[start:stop + 1] - lo
            for key, (dataset, dtype, _) in fields.items():
                flat[key] = self.file[dataset][lo:hi].astype(dtype, copy=False)
        return flat, offsets

    def _flat(self, start: int, stop: int) -> tuple[dict, dict]:
        flat, offsets = self._read(start, stop)
        check_events(flat, offsets, where=str(self.path), first_event=start,
                     geometry=self._geometry())
        return flat, offsets

    def _range(self, start, stop):
        n = len(self)
        start = 0 if start is None else int(start)
        stop = n if stop is None else int(stop)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"{self.path}: events [{start}, {stop}) outside [0, {n})")
        return start, stop

    def events(self, start: int | None = None, stop: int | None = None) -> list[dict]:
        """Events [start, stop) as dicts (the keys of ``simulate_event``)."""
        start, stop = self._range(start, stop)
        flat, offsets = self._flat(start, stop)
        return _split(flat, offsets)

    def event(self, index: int) -> dict:
        """Event ``index`` (negative counts from the end). Events are read and checked in
        blocks of ``BLOCK`` (HDF5 decompresses whole chunks), the last block kept."""
        n = len(self)
        index = int(index) + (n if int(index) < 0 else 0)
        if not 0 <= index < n:
            raise IndexError(f"{self.path}: event {index} outside [0, {n})")
        start = index - index % self.BLOCK
        if self._block is None or self._block[0] != start:
            self._block = (start, *self._read(start, min(start + self.BLOCK, n)))
        _, flat, offsets = self._block
        k = index - start
        one = {g: offsets[g][k:k + 2] - offsets[g][k] for g in FIELDS}
        ev = {key: flat[key][offsets[g][k]:offsets[g][k + 1]]
              for g, fields in FIELDS.items() for key in fields}
        check_events(ev, one, where=str(self.path), first_event=index, geometry=self._geometry())
        return ev

    __getitem__ = event
    BLOCK = 64

    def __iter__(self):
        for i in range(len(self)):
            yield self.event(i)

    def padded(self, start: int | None = None, stop: int | None = None, *,
               max_hits: int | None = None, max_particles: int | None = None,
               truncate: bool = False) -> dict:
        """Events [start, stop) as padded arrays (``pad_events``)."""
        start, stop = self._range(start, stop)
        flat, offsets = self._flat(start, stop)
        return _pad(flat, offsets, max_hits, max_particles, truncate, str(self.path), start)

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _split(flat: dict, offsets: dict) -> list[dict]:
    n = len(offsets["hit"]) - 1
    out = []
    for e in range(n):
        ev = {}
        for group, fields in FIELDS.items():
            lo, hi = int(offsets[group][e]), int(offsets[group][e + 1])
            for key in fields:
                ev[key] = flat[key][lo:hi]
        out.append(ev)
    return out


def _flatten(events) -> tuple[dict, dict]:
    flat, offsets = {}, {}
    for group, fields in FIELDS.items():
        counts = [len(e[next(iter(fields))]) for e in events]
        offsets[group] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        for key, (_, dtype, shape) in fields.items():
            flat[key] = (np.concatenate([np.asarray(e[key], dtype).reshape(-1, *shape)
                                         for e in events]) if events
                         else np.zeros((0, *shape), dtype))
    return flat, offsets


def pad_events(events, max_hits: int | None = None, max_particles: int | None = None,
               truncate: bool = False, geometry=None) -> dict:
    """Fixed-shape arrays of a list of events (dicts of ``simulate_event`` or
    ``CalorimeterFile.events``), checked first (``check_events``). ``max_hits`` /
    ``max_particles`` default to the largest event; an event with more hits than ``max_hits``
    is an error unless ``truncate``, which keeps its ``max_hits`` most energetic hits (in cell
    order); more particles than ``max_particles`` is always an error."""
    flat, offsets = _flatten(list(events))
    check_events(flat, offsets, geometry=geometry)
    return _pad(flat, offsets, max_hits, max_particles, truncate, "<events>", 0)


def _pad(flat, offsets, max_hits, max_particles, truncate, where, first_event) -> dict:
    n = len(offsets["hit"]) - 1
    n_hits = np.diff(offsets["hit"])
    n_part = np.diff(offsets["particle"])
    max_hits = int(n_hits.max(initial=0) if max_hits is None else max_hits)
    max_particles = int(n_part.max(initial=0) if max_particles is None else max_particles)
    if (n_part > max_particles).any():
        e = int(np.flatnonzero(n_part > max_particles)[0])
        raise FormatError(f"{where}: event {first_event + e}: field 'particles' has {n_part[e]} "
                          f"particles, more than max_particles={max_particles}")
    h_event = np.repeat(np.arange(n), n_hits)
    slot = np.arange(len(h_event)) - offsets["hit"][h_event]
    keep = np.ones(len(h_event), bool)
    if (n_hits > max_hits).any():
        if not truncate:
            e = int(np.flatnonzero(n_hits > max_hits)[0])
            raise FormatError(f"{where}: event {first_event + e}: field 'hits' has {n_hits[e]} "
                              f"hits, more than max_hits={max_hits} (truncate=True keeps the "
                              "most energetic)")
        order = np.lexsort((-flat["hit_energy"], h_event))
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order)) - offsets["hit"][h_event[order]]
        keep = rank < max_hits
        kept = np.concatenate([[0], np.cumsum(keep)])   # kept hits before each row
        slot = np.where(keep, kept[:-1] - kept[offsets["hit"][h_event]], -1)
    out = {"n_hits": np.bincount(h_event[keep], minlength=n).astype(np.int64),
           "n_particles": n_part.astype(np.int64),
           "hit_mask": np.zeros((n, max_hits), bool),
           "particle_mask": np.arange(max_particles)[None, :] < n_part[:, None]}
    he, hs = h_event[keep], slot[keep]
    out["hit_mask"][he, hs] = True
    for key, (_, dtype, shape) in FIELDS["hit"].items():
        fill = -1 if key == "hit_dominant" else 0
        arr = np.full((n, max_hits, *shape), fill, dtype)
        arr[he, hs] = flat[key][keep]
        out[key] = arr
    p_event = np.repeat(np.arange(n), n_part)
    p_slot = np.arange(len(p_event)) - offsets["particle"][p_event]
    for key, (_, dtype, shape) in FIELDS["particle"].items():
        arr = np.zeros((n, max_particles, *shape), dtype)
        arr[p_event, p_slot] = flat[key]
        out[key] = arr
    c_event = np.repeat(np.arange(n), np.diff(offsets["contrib"]))
    c_row = offsets["hit"][c_event] + flat["contrib_hit"].astype(np.int64)
    c_keep = keep[c_row] if len(c_row) else np.zeros(0, bool)
    fraction = np.zeros((n, max_hits, max_particles), np.float32)
    fraction[c_event[c_keep], slot[c_row[c_keep]],
             flat["contrib_particle"][c_keep].astype(np.int64)] = flat["contrib_fraction"][c_keep]
    out["hit_fraction"] = fraction
    return out


def read_events(path, start: int | None = None, stop: int | None = None, *,
                max_hits: int | None = None, max_particles: int | None = None,
                truncate: bool = False) -> dict:
    """Events [start, stop) of a file as padded arrays (``pad_events``)."""
    with CalorimeterFile(path) as f:
        return f.padded(start, stop, max_hits=max_hits, max_particles=max_particles,
                        truncate=truncate)


def read_event(path, index: int) -> dict:
    """Event ``index`` of a file as a dict of arrays (the keys of ``simulate_event``)."""
    with CalorimeterFile(path) as f:
        return f.event(index)
