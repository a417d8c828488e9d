"""Event-level particle-flow samples: Pythia 8 events with pile-up -> elements -> HDF5.

Processes (14 TeV pp, Pythia 8 defaults otherwise, multi-parton interactions on):

* ``ttbar``: ``Top:gg2ttbar``, ``Top:qqbar2ttbar``, inclusive top decays;
* ``qcd``: ``HardQCD:all`` with pT-hat > 30 GeV (``qcd_pthat_min``);
* pile-up: a Poisson number (mean ``pileup``) of minimum-bias events
  (``SoftQCD:nonDiffractive``) overlaid on each hard event, all from the same origin (no
  longitudinal vertex spread: with tracks pointing to one vertex, charged pile-up cannot be
  removed by vertex association here, so both algorithms face the same pile-up; this is a
  simplification of Pata et al., EPJC 81 (2021) 381, who used pile-up 200 in Delphes).

Determinism as in :mod:`hepjax.data.generation`: events come in chunks of ``events_per_chunk``;
chunk c of process k seeds its hard-process Pythia with ``chunk_seed(seed, k, c)``, its
minimum-bias Pythia with ``chunk_seed(seed, 100 + k, c)``, and its pile-up counts and detector
with ``numpy.random.default_rng([seed, k, c, 2])`` and ``[seed, k, c, 1]``. The output depends
only on (process, n_events, seed, pileup, events_per_chunk, element config).

File layout (HDF5, variable length per event as flat arrays plus offsets): group ``/`` holds
``element_offsets`` (E + 1,) and ``particle_offsets`` (E + 1,) int64, the element arrays
``features`` (M, F) float32, ``target_class`` (M,) int8, ``target`` (M, 4) float32,
``track_pid`` (M,) int32, the generator-particle arrays ``particle`` (P, 4) float32 (pT, eta,
phi, E), ``particle_class`` (P,) int8, ``particle_pileup`` (P,) bool, ``particle_element`` (P,)
int64 (index of the assigned element within its event, -1 for none); attributes ``features``
(the names), ``classes``, ``process``, ``seed``, ``pileup``, ``format_version``.
See :mod:`hepjax.pf.elements` for the element features and the target definition.
"""
from __future__ import annotations

import json
import os
import pathlib
import time

import numpy as np

from hepjax.data import detector as det
from hepjax.data import generation
from hepjax.pf import elements as el

__all__ = ["PROCESSES", "simulate_chunk", "generate", "write", "read", "PFEvents",
           "add_arguments", "main", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_ELEMENT_KEYS = ("features", "target_class", "target", "track_pid")
_PARTICLE_KEYS = ("particle", "particle_class", "particle_pileup", "particle_element")
_MINBIAS = ("SoftQCD:nonDiffractive = on",)


def _process_settings(name: str, qcd_pthat_min: float = 30.0) -> tuple[str, ...]:
    if name == "ttbar":
        return ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on")
    if name == "qcd":
        return ("HardQCD:all = on", f"PhaseSpace:pTHatMin = {qcd_pthat_min}")
    raise ValueError(f"process={name!r}: use one of {PROCESSES}")


PROCESSES = ("ttbar", "qcd")


def _stable(events, pythia, event_offset=0):
    rec, _ = generation._flat_event_record(events, lambda i: pythia.particleData.chargeType(i) / 3.0)
    final = (rec["status"] > 0) & ~np.isin(np.abs(rec["id"]), det.NEUTRINOS)
    final &= np.hypot(rec["px"], rec["py"]) > 0
    out = {k: rec[k][final] for k in ("event", "px", "py", "pz", "E", "charge")}
    out["pid"] = rec["id"][final]
    out["event"] = out["event"] + event_offset
    return out


def simulate_chunk(process: str, seed: int, chunk_index: int, n_events: int, pileup: float,
                   cfg: el.ElementConfig = el.ElementConfig()) -> dict[str, np.ndarray]:
    """One chunk: ``n_events`` hard events of ``process`` with Poisson(``pileup``) minimum-bias
    events each, through :func:`hepjax.pf.elements.make_elements`. Returns its flat arrays plus
    ``element_offsets`` and ``particle_offsets``."""
    k = PROCESSES.index(process) if process in PROCESSES else _process_settings(process)
    hard = generation._pythia(_process_settings(process) + ("PartonLevel:MPI = on",),
                              generation.chunk_seed(seed, k, chunk_index))
    parts = _stable(hard.nextBatch(int(n_events)), hard)
    parts["pileup"] = np.zeros(len(parts["event"]), bool)
    n_pu = np.random.default_rng([int(seed), k, int(chunk_index), 2]).poisson(pileup, int(n_events))
    if n_pu.sum() > 0:
        mb = generation._pythia(_MINBIAS, generation.chunk_seed(seed, 100 + k, chunk_index))
        pu = _stable(mb.nextBatch(int(n_pu.sum())), mb)
        pu["event"] = np.repeat(np.arange(int(n_events)), n_pu)[pu["event"]]
        pu["pileup"] = np.ones(len(pu["event"]), bool)
        parts = {key: np.concatenate([parts[key], pu[key]]) for key in parts}
        order = np.argsort(parts["event"], kind="stable")
        parts = {key: v[order] for key, v in parts.items()}
    rng = np.random.default_rng([int(seed), k, int(chunk_index), 1])
    out = el.make_elements(parts, rng, cfg)
    for prefix, name in (("element_event", "element_offsets"), ("particle_event", "particle_offsets")):
        counts = np.bincount(out.pop(prefix), minlength=int(n_events))
        out[name] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return out


def generate(process: str, n_events: int, seed: int, *, pileup: float = 10.0,
             events_per_chunk: int = 50, cfg: el.ElementConfig = el.ElementConfig(),
             progress=None) -> dict[str, np.ndarray]:
    """``n_events`` events (chunks of ``events_per_chunk``, the last one cut) concatenated."""
    if n_events < 1:
        raise ValueError(f"n_events={n_events}: need at least 1")
    if pileup < 0:
        raise ValueError(f"pileup={pileup}: must be >= 0 (mean number of minimum-bias events)")
    _process_settings(process)
    chunks, have, c = [], 0, 0
    while have < n_events:
        take = min(events_per_chunk, n_events - have)
        chunk = simulate_chunk(process, seed, c, events_per_chunk, pileup, cfg)
        chunks.append(_take(chunk, take))
        have += take
        c += 1
        if progress is not None:
            progress(take)
    return _concat(chunks)


def _take(chunk, n):
    eo, po = chunk["element_offsets"], chunk["particle_offsets"]
    out = {k: chunk[k][:eo[n]] for k in _ELEMENT_KEYS}
    out.update({k: chunk[k][:po[n]] for k in _PARTICLE_KEYS})
    out["element_offsets"], out["particle_offsets"] = eo[:n + 1], po[:n + 1]
    return out


def _concat(chunks):
    out = {k: np.concatenate([c[k] for c in chunks]) for k in _ELEMENT_KEYS + _PARTICLE_KEYS}
    for name in ("element_offsets", "particle_offsets"):
        parts, base = [np.zeros(1, np.int64)], 0
        for c in chunks:
            parts.append(c[name][1:] + base)
            base += c[name][-1]
        out[name] = np.concatenate(parts)
    return out


def write(path, data: dict, meta: dict) -> None:
    """Writes ``data`` (the arrays of :func:`generate`) and ``meta`` to HDF5 at ``path``."""
    import h5py
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".partial-{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        for k in _ELEMENT_KEYS + _PARTICLE_KEYS + ("element_offsets", "particle_offsets"):
            f.create_dataset(k, data=data[k], compression="gzip", compression_opts=1)
        f.attrs["features"] = json.dumps(el.FEATURES)
        f.attrs["classes"] = json.dumps(el.CLASSES)
        f.attrs["format_version"] = FORMAT_VERSION
        for k, v in meta.items():
            f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
    os.replace(tmp, path)


class PFEvents:
    """Events of a particle-flow file in memory: ``len``, ``events[i]`` -> dict of one event's
    arrays, ``padded(indices, n_max)`` -> dense (B, N, ...) batches with a mask."""

    def __init__(self, data: dict, meta: dict):
        self.data, self.meta = data, meta
        self.eo, self.po = data["element_offsets"], data["particle_offsets"]

    def __len__(self):
        return len(self.eo) - 1

    def n_elements(self) -> np.ndarray:
        return np.diff(self.eo)

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(f"event {i} out of range for {len(self)} events")
        i = i % len(self)
        a, b = self.eo[i], self.eo[i + 1]
        c, d = self.po[i], self.po[i + 1]
        out = {k: self.data[k][a:b] for k in _ELEMENT_KEYS}
        out.update({k: self.data[k][c:d] for k in _PARTICLE_KEYS})
        return out

    def subset(self, indices) -> "PFEvents":
        return PFEvents(_concat([_take_one(self, int(i)) for i in indices]), self.meta)

    def link_features(self, i: int) -> np.ndarray:
        """Event i's truth-free track-cluster link features (``hepjax.pf.links``), cached."""
        from hepjax.pf import links
        cache = self.__dict__.setdefault("_links", {})
        if i not in cache:
            cache[i] = links.link_features(self[i]["features"])
        return cache[i]

    def padded(self, indices, n_max: int, links: bool = False):
        """(features (B, n_max, F), target_class (B, n_max), target (B, n_max, 4), mask (B, n_max))
        of the events ``indices``; events longer than ``n_max`` raise. ``links``: the features
        are followed by ``hepjax.pf.links.LINK_FEATURES`` (F = 14 + 8)."""
        from hepjax.pf.links import LINK_FEATURES
        indices = list(indices)
        f = len(el.FEATURES) + (len(LINK_FEATURES) if links else 0)
        x = np.zeros((len(indices), n_max, f), np.float32)
        y = np.zeros((len(indices), n_max), np.int32)
        t = np.zeros((len(indices), n_max, 4), np.float32)
        mask = np.zeros((len(indices), n_max), bool)
        for row, i in enumerate(indices):
            ev = self[i]
            n = len(ev["features"])
            if n > n_max:
                raise ValueError(f"event {i} has {n} elements, more than n_max={n_max}")
            feats = ev["features"]
            if links:
                feats = np.concatenate([feats, self.link_features(i % len(self))], 1)
            x[row, :n], y[row, :n], t[row, :n], mask[row, :n] = (
                feats, ev["target_class"], ev["target"], True)
        return x, y, t, mask


def _take_one(events, i):
    ev = events[i]
    out = dict(ev)
    out["element_offsets"] = np.array([0, len(ev["features"])], np.int64)
    out["particle_offsets"] = np.array([0, len(ev["particle"])], np.int64)
    return out


def read(path) -> PFEvents:
    """Reads a file written by :func:`write`; a missing file, a missing field or a wrong shape
    raises a one-line error naming the file and the field."""
    import h5py
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such particle-flow file (make one with "
                                "`hepjax generate particle-flow`)")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not an HDF5 file ({err})") from None
    with f:
        data = {}
        for k in _ELEMENT_KEYS + _PARTICLE_KEYS + ("element_offsets", "particle_offsets"):
            if k not in f:
                raise ValueError(f"{path}: missing dataset {k!r}; not a particle-flow file "
                                 "(expected those written by hepjax.pf.events.write)")
            data[k] = f[k][...]
        meta = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                for k, v in f.attrs.items()}
    nf = len(el.FEATURES)
    if data["features"].ndim != 2 or data["features"].shape[1] != nf:
        raise ValueError(f"{path}: field 'features' has shape {data['features'].shape}, expected "
                         f"(M, {nf}) with columns {el.FEATURES}")
    m, p = len(data["features"]), len(data["particle"])
    for k in _ELEMENT_KEYS:
        if len(data[k]) != m:
            raise ValueError(f"{path}: field {k!r} has {len(data[k])} rows, expected {m} (one per element)")
    for k in _PARTICLE_KEYS:
        if len(data[k]) != p:
            raise ValueError(f"{path}: field {k!r} has {len(data[k])} rows, expected {p} (one per particle)")
    for k, total in (("element_offsets", m), ("particle_offsets", p)):
        o = data[k]
        if o.ndim != 1 or len(o) < 1 or o[0] != 0 or o[-1] != total or np.any(np.diff(o) < 0):
            raise ValueError(f"{path}: field {k!r} must be non-decreasing offsets from 0 to {total}")
    if len(data["element_offsets"]) != len(data["particle_offsets"]):
        raise ValueError(f"{path}: element_offsets and particle_offsets count different events")
    return PFEvents(data, meta)


# ------------------------------------------------------------------------------------- CLI

def add_arguments(parser) -> None:
    """Arguments of ``hepjax generate particle-flow``."""
    parser.add_argument("--process", choices=PROCESSES, default="ttbar")
    parser.add_argument("--n-events", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--pileup", type=float, default=10.0,
                        help="mean number of overlaid minimum-bias events (Poisson)")
    parser.add_argument("--events-per-chunk", type=int, default=50,
                        help="events per seeded chunk (changes the sample)")
    parser.add_argument("--out", required=True, help="output HDF5 file")


def main(args) -> dict:
    """Runs ``hepjax generate particle-flow``; returns a summary dict (the CLI prints it)."""
    start = time.perf_counter()
    data = generate(args.process, args.n_events, args.seed, pileup=args.pileup,
                    events_per_chunk=args.events_per_chunk)
    meta = {"process": args.process, "seed": int(args.seed), "pileup": float(args.pileup),
            "events_per_chunk": int(args.events_per_chunk), "n_events": int(args.n_events)}
    write(args.out, data, meta)
    seconds = time.perf_counter() - start
    return {"out": str(args.out), "n_events": int(args.n_events),
            "elements_per_event": round(len(data["features"]) / args.n_events, 1),
            "seconds": round(seconds, 2)}
