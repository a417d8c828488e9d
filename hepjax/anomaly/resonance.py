"""Dijet events for an LHC-Olympics-style resonance search, generated with Pythia 8 + FastJet.

The R&D dataset of the LHC Olympics 2020 (Kasieczka et al., "The LHC Olympics 2020: a community
challenge for anomaly detection in high energy physics", Rep. Prog. Phys. 84 (2021) 124201):
13 TeV pp, a QCD dijet background and a heavy resonance W' (3.5 TeV) decaying to two lighter
bosons X (500 GeV) and Y (100 GeV), each decaying to a quark pair, so that the signal is two
two-prong large-R jets of masses ~500 and ~100 GeV at m_jj ~ 3.5 TeV. Events are kept if the
leading anti-kT R = 1.0 jet has pT > 1.2 TeV (the R&D dataset's trigger-like cut); we also
require a second jet and |eta| < 2.5 for both leading jets (inside the tracker, so that their
substructure is measured).

Processes (``PROCESSES``):

* ``qcd``: ``HardQCD:all`` with ``PhaseSpace:pTHatMin`` = ``QCD_PTHAT_MIN`` GeV (below the 1.2 TeV
  jet cut so that ISR/FSR do not bias the selected events at the m_jj values the bump hunt fits;
  ``experiments/anomaly/resonance.py`` fits above the turn-on).
* ``signal``: Pythia's ``NewGaugeBoson:ffbar2Wprime`` (W', code 34) with ``Wprime:coup2WZ = 1``
  and its decays forced to ``W Z`` (``34:onMode = off``, ``34:onIfMatch = 23 24``), where the
  W (24) is *redefined* as the X (``24:m0 = 500``) and the Z (23) as the Y (``23:m0 = 100``),
  both forced to light quarks (``onIfAny = 1 2 3 4 (5)``; X -> t b switched off). Pythia
  computes the widths of the redefined particles from their couplings at the new masses
  (Gamma_X ~ 13 GeV, Gamma_Y ~ 2.7 GeV, Gamma_W' ~ 180 GeV). The W' line shape is truncated to
  [``SIGNAL_MHAT_MIN``, ``SIGNAL_MHAT_MAX``] (``34:mMin/mMax``): the parton luminosities would
  otherwise put most W's far below the pole, where no event passes the jet cut. The redefinition
  of the SM W and Z only affects the signal sample (where they appear only as the X and Y; weak
  showers are off by default in Pythia). ``print_decay_chain`` prints the chain of one event.

Both with multi-parton interactions, ISR, FSR and hadronisation on (Pythia's defaults, as the
R&D dataset), the Delphes-ATLAS-like energy flow of ``hepjax.data.detector`` (or generator-level
particles with ``detector="none"``), anti-kT R = 1.0 (FastJet). Per event: the two leading jets
(by pT) with their four-momenta (E, px, py, pz), masses, N-subjettiness tau1..tau3 (beta = 1,
R0 = 1.0, exclusive-kT axes: ``hepjax.data.features.nsubjettiness``) and constituent counts, and
m_jj of the two; the jets are stored by pT order and ``mass_sorted_features`` reorders them
heavier first (the LHCO convention).

Determinism and resumption: events come in chunks of ``events_per_chunk``; chunk ``c`` of a
process runs a fresh Pythia seeded with ``hepjax.data.generation.chunk_seed(seed, k, c)`` (k the
process index in ``PROCESSES``) and a detector RNG seeded with (seed, k, c); with ``chunk_dir``
each finished chunk is saved (atomically) and read back by a rerun, so a killed generation
resumes and gives the identical sample.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import numpy as np

from hepjax.data import detector as detector_lib
from hepjax.data import features as features_lib
from hepjax.data import generation as generation_lib
from hepjax.physics import numpy_kinematics as npkin

__all__ = ["PROCESSES", "EventCuts", "process_settings", "simulate_chunk", "generate",
           "write_h5", "read_h5", "print_decay_chain", "mass_sorted_features", "FEATURE_NAMES",
           "QCD_PTHAT_MIN", "SIGNAL_MASSES", "add_arguments", "main"]

SQRT_S = 13000.0
QCD_PTHAT_MIN = 1100.0
SIGNAL_MASSES = {"wprime": 3500.0, "x": 500.0, "y": 100.0}
SIGNAL_MHAT_MIN, SIGNAL_MHAT_MAX = 2500.0, 4500.0
PROCESSES = ("qcd", "signal")


@dataclasses.dataclass(frozen=True)
class EventCuts:
    radius: float = 1.0
    lead_pt_min: float = 1200.0    # GeV, leading large-R jet
    jet_pt_min: float = 100.0      # GeV, the second jet must exist above this
    eta_max: float = 2.5           # both leading jets


def process_settings(process: str, *, mpi: bool = True, masses: dict | None = None,
                     pthat_min: float = QCD_PTHAT_MIN) -> tuple[str, ...]:
    """Pythia settings of ``process`` ('qcd' or 'signal'), without the seed."""
    common = (f"Beams:eCM = {SQRT_S:.1f}", f"PartonLevel:MPI = {'on' if mpi else 'off'}")
    if process == "qcd":
        return common + ("HardQCD:all = on", f"PhaseSpace:pTHatMin = {float(pthat_min):.1f}")
    if process == "signal":
        m = dict(SIGNAL_MASSES, **(masses or {}))
        lo = min(SIGNAL_MHAT_MIN, 0.7 * m["wprime"])
        hi = max(SIGNAL_MHAT_MAX, 1.3 * m["wprime"])
        return common + (
            "NewGaugeBoson:ffbar2Wprime = on", "Wprime:coup2WZ = 1.",
            f"34:m0 = {m['wprime']:.1f}", f"34:mMin = {lo:.1f}", f"34:mMax = {hi:.1f}",
            "34:onMode = off", "34:onIfMatch = 23 24",
            f"24:m0 = {m['x']:.1f}", "24:onMode = off", "24:onIfAny = 1 2 3 4",
            "24:offIfAny = 5 6",
            f"23:m0 = {m['y']:.1f}", "23:onMode = off", "23:onIfAny = 1 2 3 4 5")
    raise ValueError(f"process={process!r}: use one of {PROCESSES}")


def _pythia(settings, seed):
    # hepjax.data.generation's Pythia factory; its 14 TeV default is overridden by our
    # Beams:eCM line, which comes later in the settings.
    return generation_lib._pythia(settings, seed)


def print_decay_chain(seed: int = 1, *, masses: dict | None = None, out=print) -> list[tuple]:
    """Generates one signal event (hard process only) and prints W' -> X Y -> quarks from its
    event record; returns [(index, id, mass, daughter ids)] of the W', X and Y."""
    settings = process_settings("signal", masses=masses) + (
        "PartonLevel:all = off", "HadronLevel:all = off")
    pythia = _pythia(settings, seed)
    while not pythia.next():
        pass
    rows = []
    proc = pythia.process
    for i in range(proc.size()):
        p = proc[i]
        if abs(p.id()) in (34, 24, 23) and p.daughter1() > 0:
            ds = [proc[d].id() for d in range(p.daughter1(), p.daughter2() + 1)]
            rows.append((i, p.id(), float(p.m()), ds))
            name = {34: "W' ", 24: "X  ", 23: "Y  "}[abs(p.id())]
            out(f"{name} record {i:3d}  id {p.id():+4d}  m = {p.m():8.1f} GeV  -> {ds}")
    return rows


def _empty():
    return {"jet_p4": np.zeros((0, 2, 4), np.float32), "tau": np.zeros((0, 2, 3), np.float32),
            "n_constituents": np.zeros((0, 2), np.int32), "mass": np.zeros((0, 2), np.float32),
            "mjj": np.zeros(0, np.float32), "n_generated": np.zeros((), np.int64)}


def simulate_chunk(process: str, seed: int, chunk_index: int, events_per_chunk: int = 500, *,
                   detector: str = "fast", cuts: EventCuts = EventCuts(), mpi: bool = True,
                   masses: dict | None = None) -> dict[str, np.ndarray]:
    """Selected events of one chunk: ``jet_p4`` (E, 2, 4) float32 (E, px, py, pz) of the two
    leading anti-kT jets by pT, ``mass`` (E, 2), ``tau`` (E, 2, 3) tau1..tau3,
    ``n_constituents`` (E, 2), ``mjj`` (E,), and ``n_generated`` (the chunk's event count,
    for efficiencies)."""
    _, fastjet = generation_lib.require_generators()
    if process not in PROCESSES:
        raise ValueError(f"process={process!r}: use one of {PROCESSES}")
    if detector not in ("fast", "none"):
        raise ValueError(f"detector={detector!r}: use 'fast' or 'none'")
    k = PROCESSES.index(process)
    pythia = _pythia(process_settings(process, mpi=mpi, masses=masses),
                     generation_lib.chunk_seed(seed, k, chunk_index))
    events = pythia.nextBatch(int(events_per_chunk))
    data = pythia.particleData
    rec, offsets = generation_lib._flat_event_record(events, lambda i: data.chargeType(i) / 3.0)
    n_events = len(offsets) - 1
    final = (rec["status"] > 0) & ~np.isin(np.abs(rec["id"]), detector_lib.NEUTRINOS)
    final &= np.hypot(rec["px"], rec["py"]) > 0
    particles = {key: rec[key][final] for key in ("event", "px", "py", "pz", "E", "charge")}
    particles["pid"] = rec["id"][final]
    if detector == "fast":
        rng = np.random.default_rng([int(seed), k, int(chunk_index), 1])
        objects = detector_lib.simulate(particles, rng)
    else:
        pt = np.hypot(particles["px"], particles["py"])
        keep = np.abs(np.arcsinh(particles["pz"] / pt)) < detector_lib.DetectorConfig().calo_eta_max
        objects = {key: v[keep] for key, v in particles.items()}
    jets = generation_lib.cluster_antikt(fastjet, objects, objects["event"], n_events,
                                         cuts.radius, cuts.jet_pt_min)
    jet_p4, jpt, jet_event, rank = jets["p4"], jets["pt"], jets["event"], jets["rank"]
    n_jets = np.bincount(jet_event, minlength=n_events)
    two = n_jets >= 2
    lead = np.full((n_events, 2), -1, np.int64)
    for r in (0, 1):
        sel = np.flatnonzero(rank == r)
        lead[jet_event[sel], r] = sel
    ok = two.copy()
    ok[two] &= jpt[lead[two, 0]] > cuts.lead_pt_min
    ok[two] &= (np.abs(npkin.eta(jet_p4[lead[two]])) < cuts.eta_max).all(-1)
    events_kept = np.flatnonzero(ok)
    out = _empty()
    out["n_generated"] = np.asarray(n_events, np.int64)
    if len(events_kept) == 0:
        return out
    idx = lead[events_kept]                                  # (E, 2) global jet indices
    flat_jets = idx.reshape(-1)
    obj, n_parts = generation_lib.jet_constituents(jets, flat_jets)   # object indices
    width = int(n_parts.max())
    owner = np.repeat(np.arange(len(flat_jets)), n_parts)
    slot = np.arange(n_parts.sum()) - np.repeat(np.cumsum(n_parts) - n_parts, n_parts)
    p4 = np.zeros((len(flat_jets), width, 4))
    p4[owner, slot] = np.stack([objects[c][obj] for c in ("E", "px", "py", "pz")], -1)
    mask = np.zeros((len(flat_jets), width), bool)
    mask[owner, slot] = True
    taus = features_lib.nsubjettiness(p4, mask, radius=cuts.radius, n_max=3)
    jp4 = jet_p4[idx]                                        # (E, 2, 4)
    out.update({"jet_p4": jp4.astype(np.float32),
                "tau": taus.reshape(-1, 2, 3).astype(np.float32),
                "n_constituents": n_parts.reshape(-1, 2).astype(np.int32),
                "mass": npkin.mass(jp4).astype(np.float32),
                "mjj": npkin.mass(jp4.sum(1)).astype(np.float32)})
    return out


def _chunk(args, kwargs, chunk_file):
    if chunk_file is not None and os.path.exists(chunk_file):
        with np.load(chunk_file) as saved:
            return {key: saved[key] for key in saved.files}
    out = simulate_chunk(*args, **kwargs)
    if chunk_file is not None:
        partial = f"{chunk_file}.partial-{os.getpid()}.npz"
        np.savez(partial, **out)
        os.replace(partial, chunk_file)
    return out


def generate(process: str, n_events: int, seed: int, *, events_per_chunk: int = 500,
             detector: str = "fast", cuts: EventCuts = EventCuts(), mpi: bool = True,
             masses: dict | None = None, chunk_dir: str | os.PathLike | None = None,
             max_chunks: int | None = None,
             progress: Callable[[int, int, float], None] | None = None) -> dict[str, np.ndarray]:
    """``n_events`` *selected* events of ``process`` (chunks 0, 1, ... in order until enough,
    the last one truncated): the arrays of ``simulate_chunk`` plus ``n_generated``, the number
    of generated events behind them (the whole last chunk counted pro rata). ``max_chunks``
    stops early (a budget) with what there is. Same arguments, same events, resumed or not."""
    if n_events < 1:
        raise ValueError(f"n_events={n_events}: must be >= 1")
    got, chunks, generated, c = 0, [], 0.0, 0
    t0 = time.time()
    while got < n_events and (max_chunks is None or c < max_chunks):
        chunk_file = None if chunk_dir is None else os.path.join(
            os.fspath(chunk_dir), f"{process}_seed{seed}_chunk{c:06d}.npz")
        if chunk_dir is not None:
            os.makedirs(chunk_dir, exist_ok=True)
        out = _chunk((process, seed, c, events_per_chunk),
                     dict(detector=detector, cuts=cuts, mpi=mpi, masses=masses), chunk_file)
        n_sel = len(out["mjj"])
        take = min(n_sel, n_events - got)
        frac = take / n_sel if n_sel else 1.0
        generated += float(out["n_generated"]) * frac
        chunks.append({key: v[:take] for key, v in out.items() if key != "n_generated"})
        got += take
        c += 1
        if progress is not None:
            progress(c, got, time.time() - t0)
    result = {key: np.concatenate([ch[key] for ch in chunks]) for key in chunks[0]}
    result["n_generated"] = np.asarray(generated)
    return result


def write_h5(path, samples: dict[str, dict], attrs: dict | None = None) -> None:
    """One HDF5 group per sample (e.g. 'qcd', 'signal'), its arrays as datasets; atomic."""
    import h5py
    tmp = f"{path}.partial-{os.getpid()}"
    with h5py.File(tmp, "w") as f:
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for name, arrays in samples.items():
            g = f.create_group(name)
            for key, v in arrays.items():
                g.create_dataset(key, data=v, compression="gzip" if np.ndim(v) else None)
    os.replace(tmp, path)


_REQUIRED = {"jet_p4": (2, 4), "tau": (2, 3), "mass": (2,), "mjj": ()}


def read_h5(path) -> dict[str, dict[str, np.ndarray]]:
    """The samples written by ``write_h5``; checks the fields and shapes each group needs."""
    import h5py
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file (generate it with "
                                "experiments/anomaly/resonance.py)")
    out = {}
    with h5py.File(path, "r") as f:
        for name in f:
            g = f[name]
            arrays = {key: g[key][()] for key in g}
            for key, shape in _REQUIRED.items():
                if key not in arrays:
                    raise ValueError(f"{path}: group {name!r} lacks the field {key!r}")
                if arrays[key].shape[1:] != shape:
                    raise ValueError(f"{path}: {name}/{key} has shape {arrays[key].shape}, "
                                     f"expected (N, {', '.join(map(str, shape))})")
            out[name] = arrays
    return out


FEATURE_NAMES = ("mj_heavy/mjj", "mj_light/mjj", "tau21_heavy", "tau21_light", "tau32_heavy",
                 "tau32_light")


def mass_sorted_features(sample: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 6) per-event features with the jets ordered heavier first (the LHCO R&D convention):
    the two jet masses divided by m_jj (so that the features depend less on m_jj than the
    masses do and a cut on them sculpts the m_jj spectrum less), tau21 and tau32 of each."""
    mass = np.asarray(sample["mass"], np.float64)
    tau = np.asarray(sample["tau"], np.float64)
    mjj = np.asarray(sample["mjj"], np.float64)
    order = np.argsort(-mass, axis=1, kind="stable")
    mass = np.take_along_axis(mass, order, 1)
    tau = np.take_along_axis(tau, order[..., None], 1)
    t21 = npkin.divide_or_zero(tau[..., 1], tau[..., 0])
    t32 = npkin.divide_or_zero(tau[..., 2], tau[..., 1])
    rel = npkin.divide_or_zero(mass, mjj[:, None])
    return np.stack([rel[:, 0], rel[:, 1], t21[:, 0], t21[:, 1], t32[:, 0], t32[:, 1]],
                    -1).astype(np.float32)


def add_arguments(parser) -> None:
    """Arguments of ``hepjax generate dijet-resonance``."""
    parser.add_argument("--n-qcd", type=int, required=True, help="selected QCD events")
    parser.add_argument("--n-signal", type=int, required=True,
                        help="selected W' -> X Y signal events (0: none)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="output HDF5 file (groups qcd, signal)")
    parser.add_argument("--detector", choices=("fast", "none"), default="fast")
    parser.add_argument("--events-per-chunk", type=int, default=500,
                        help="generated events per seeded chunk (changes the sample)")
    parser.add_argument("--chunk-dir", default=None,
                        help="keep finished chunks here; a rerun resumes from them")


def main(args) -> dict:
    """Runs ``hepjax generate dijet-resonance``; returns a summary dict (the CLI prints it)."""
    start = time.perf_counter()
    samples = {}
    for process, n in (("qcd", args.n_qcd), ("signal", args.n_signal)):
        if n > 0:
            samples[process] = generate(process, n, args.seed, detector=args.detector,
                                        events_per_chunk=args.events_per_chunk,
                                        chunk_dir=args.chunk_dir)
    if not samples:
        raise ValueError("--n-qcd and --n-signal are both 0: nothing to generate")
    write_h5(args.out, samples, {"seed": int(args.seed), "sqrt_s": SQRT_S,
                                 "qcd_pthat_min": QCD_PTHAT_MIN,
                                 "events_per_chunk": int(args.events_per_chunk),
                                 "detector": args.detector})
    return {"out": str(args.out), **{f"n_{k}": int(len(v["mjj"])) for k, v in samples.items()},
            **{f"efficiency_{k}": round(len(v["mjj"]) / float(v["n_generated"]), 4)
               for k, v in samples.items()},
            "seconds": round(time.perf_counter() - start, 2)}
