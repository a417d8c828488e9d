"""Jet samples generated with Pythia 8 and clustered with FastJet.

Recipe of the Top Tagging Reference Dataset (Kasieczka et al., SciPost Phys. 7 (2019) 014,
arXiv:1902.09914; recipe version ``RECIPE_VERSION``, line by line in ``hepjax/data/README.md``):
14 TeV pp; signal = hadronic ttbar (both W bosons forced to quarks, so every top decays
hadronically), background = QCD dijets (``HardQCD:all``); no multi-parton interactions
(``PartonLevel:MPI = off``, as the reference: ``Task.mpi``, or ``generate(..., mpi=True)`` to
turn them on); ISR, FSR and hadronisation on. Generator-level final-state particles (neutrinos
removed) go through the Delphes-ATLAS-like energy flow (``hepjax.data.detector``, default) or,
with ``detector="none"``, straight to the clustering. Only the leading anti-kt R = 0.8 jet of
each event is considered (``JetCuts.jets_per_event = 1``), and kept if 550 < pT < 650 GeV and
|eta| < 2; a signal jet is kept only if the hadronic top (its last copy before decay) and its
three decay quarks (the b and the W's two quarks) all lie within dR < 0.8 of the jet axis. Each
jet keeps its 200 hardest constituents sorted by pT, and the truth top four-momentum (zeros for
QCD). Hard-process pT is generated in [500, 700] GeV (``PhaseSpace:pTHatMin/Max``) for
efficiency.

The quark/gluon task follows the energyflow Pythia sample of the Energy Flow Networks paper
(Komiske, Metodiev, Thaler, "Energy Flow Networks: Deep Sets for Particle Jets", JHEP 01 (2019)
121, arXiv:1810.05165; energyflow's ``qg_jets`` docstring: Pythia 8.226, 14 TeV,
qqbar -> Z(->nu nu) + g and qg -> Z(->nu nu) + (uds), hadronisation and MPI on, default tune,
anti-kT R = 0.4 on all final non-neutrino particles, 500 < pT < 550 GeV, |y| < 1.7, no
detector): Z(->nu nu) + gluon (label 0) and Z(->nu nu) + light quark (label 1), the hardest
anti-kt R = 0.4 jet with 500 < pT < 550 GeV and |y| < 1.7. Pythia's qg -> Z q has no switch for
the quark flavour, so the quark process carries ``Process.veto_outgoing = (4, 5)``: an event
whose outgoing hard-process parton (Pythia status -23, the hardest subprocess; MPI partons have
status -31 to -33) is a c or b quark (|id| 4 or 5) gives no jet, leaving u, d, s (and their
antiquarks). Its cache version is ``QUARK_GLUON_RECIPE_VERSION``.

Determinism: events are made in chunks of ``events_per_chunk``; chunk ``c`` of process ``k`` runs
a fresh Pythia seeded with ``chunk_seed(seed, k, c)``, and so does the detector. A class takes the
jets of its chunks 0, 1, 2, ... in order until it has enough, so the output depends only on
(task, mpi, n_jets, seed, detector, events_per_chunk) — never on the number of worker processes.
Signal and background jets are then interleaved by a permutation drawn from the seed and given
``ttv`` codes (0 train, 1 test, 2 val, as in the reference) in fractions ``ttv_fractions``.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
from typing import Callable

import numpy as np

from hepjax.data import detector as detector_lib
from hepjax.physics import numpy_kinematics as npkin

# Bump when a change to the recipe, the detector or the jet selection changes the generated
# jets: cached samples are named by it (hepjax.data.top_tagging.cache_path).
# 2: top tagging without MPI, leading jet only, Delphes-ATLAS-like energy flow.
RECIPE_VERSION = 2
# The quark/gluon task's own version (hepjax.data.quark_gluon names its cache by it), so that a
# change to it leaves the top-tagging caches valid. 2: Z + q/g with |y| < 2, quarks u-b;
# 3: the energyflow sample's |y| < 1.7 and light quarks only (Process.veto_outgoing).
QUARK_GLUON_RECIPE_VERSION = 3

__all__ = ["Process", "JetCuts", "Task", "TASKS", "QUARK_GLUON_RECIPE_VERSION", "chunk_seed",
           "pythia_settings", "hard_process_vetoed",
           "simulate_chunk", "generate", "require_generators"]

_PYTHIA_COMMON = ("Beams:eCM = 14000.", "Next:numberCount = 0", "Print:quiet = on",
                  "Random:setSeed = on")


@dataclasses.dataclass(frozen=True)
class Process:
    """A Pythia process: its settings, the class label it gives and its truth matching."""
    name: str
    settings: tuple[str, ...]
    label: int
    truth: str = "none"   # "top": keep a jet only if it contains a hadronic top and its quarks;
                          # "w": a hadronic W and its two quarks (hepjax.anomaly.wjets)
    veto_outgoing: tuple[int, ...] = ()   # |PDG id|s: an event whose outgoing hard-process
                          # parton (status -23) has one of them gives no jet (hard_process_vetoed)


@dataclasses.dataclass(frozen=True)
class JetCuts:
    radius: float = 0.8
    pt_min: float = 550.0
    pt_max: float = 650.0
    eta_max: float = 2.0
    use_rapidity: bool = False   # cut on |y| instead of |eta|
    jets_per_event: int = 1      # consider the N hardest jets of each event (1: the leading one)
    max_constituents: int = 200


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    processes: tuple[Process, ...]   # one per class; jets are split evenly between them
    cuts: JetCuts
    events_per_chunk: int = 200
    mpi: bool = True   # Pythia's multi-parton interactions (PartonLevel:MPI), Pythia's default on


_PTHAT = ("PhaseSpace:pTHatMin = 500.", "PhaseSpace:pTHatMax = 700.")
TASKS = {
    "top-tagging": Task(
        "top-tagging",
        (Process("ttbar", ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off",
                           "24:onIfAny = 1 2 3 4 5") + _PTHAT, label=1, truth="top"),
         Process("qcd", ("HardQCD:all = on",) + _PTHAT, label=0)),
        JetCuts(jets_per_event=1), mpi=False),
    "quark-gluon": Task(
        "quark-gluon",
        (Process("z_gluon", ("WeakBosonAndParton:qqbar2gmZg = on", "23:onMode = off",
                             "23:onIfAny = 12 14 16", "PhaseSpace:pTHatMin = 450.",
                             "PhaseSpace:pTHatMax = 650."), label=0),
         Process("z_quark", ("WeakBosonAndParton:qg2gmZq = on", "23:onMode = off",
                             "23:onIfAny = 12 14 16", "PhaseSpace:pTHatMin = 450.",
                             "PhaseSpace:pTHatMax = 650."), label=1, veto_outgoing=(4, 5))),
        JetCuts(radius=0.4, pt_min=500.0, pt_max=550.0, eta_max=1.7, use_rapidity=True,
                jets_per_event=1), mpi=True),
}


def pythia_version() -> str:
    """The installed pythia8mc version ('none' without it): part of every cached sample's name,
    so a sample is never reused across Pythia versions."""
    import importlib.metadata

    try:
        return importlib.metadata.version("pythia8mc")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def require_generators():
    """Imports (pythia8mc, fastjet) or raises an ImportError naming the extra to install."""
    try:
        import fastjet
        import pythia8mc
    except ImportError as err:
        raise ImportError(f"event generation needs Pythia 8 and FastJet ({err}); install them "
                          "with `pip install 'hepjax[gen]'` (pythia8mc==8.317.2, fastjet)") from None
    return pythia8mc, fastjet


def _task(task: Task | str, mpi: bool | None = None) -> Task:
    if isinstance(task, str):
        if task not in TASKS:
            raise ValueError(f"task={task!r}: use one of {sorted(TASKS)}")
        task = TASKS[task]
    return task if mpi is None else dataclasses.replace(task, mpi=bool(mpi))


def pythia_settings(task: Task | str, process_index: int) -> tuple[str, ...]:
    """The Pythia settings of one process of ``task`` (without the seed): the process's own and
    ``PartonLevel:MPI = on|off`` from ``task.mpi``."""
    task = _task(task)
    return task.processes[process_index].settings + (
        f"PartonLevel:MPI = {'on' if task.mpi else 'off'}",)


def chunk_seed(seed: int, process_index: int, chunk_index: int) -> int:
    """Pythia seed of one chunk, in [1, 900_000_000] (Pythia's allowed range)."""
    state = np.random.SeedSequence([int(seed), int(process_index), int(chunk_index)])
    return int(state.generate_state(1, np.uint64)[0] % 900_000_000) + 1


_TEMPLATE = []   # one never-initialised Pythia per process: copying its databases is 50x
                 # faster than reading Pythia's XML files again for every chunk


def _pythia(settings, seed):
    pythia8, _ = require_generators()
    if not _TEMPLATE:
        _TEMPLATE.append(pythia8.Pythia("", False))
    pythia = pythia8.Pythia(_TEMPLATE[0].settings, _TEMPLATE[0].particleData, False)
    for line in _PYTHIA_COMMON + tuple(settings) + (f"Random:seed = {seed}",):
        if not pythia.readString(line):
            raise ValueError(f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise with {settings}")
    return pythia


def _flat_event_record(events, charge_of):
    """Flat numpy columns of a Pythia batch (awkward), with per-event offsets."""
    import awkward as ak

    prt = events.prt
    counts = ak.to_numpy(ak.num(prt)).astype(np.int64)
    col = {k: ak.to_numpy(ak.flatten(prt[k])) for k in ("id", "status", "daughter1", "daughter2")}
    for k, name in (("px", "px"), ("py", "py"), ("pz", "pz"), ("e", "E")):
        col[name] = ak.to_numpy(ak.flatten(prt.p[k])).astype(np.float64)
    col["event"] = np.repeat(np.arange(len(counts)), counts)
    ids, inverse = np.unique(col["id"], return_inverse=True)
    col["charge"] = np.array([charge_of(int(i)) for i in ids], np.float64)[inverse]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return col, offsets


def _hadronic_tops(rec, start, stop):
    """[(top p4 (E,px,py,pz), quark etas, quark phis)] of the hadronically decaying tops of one
    event (indices into the flat record are start + local index)."""
    ids = rec["id"][start:stop]
    d1, d2 = rec["daughter1"][start:stop], rec["daughter2"][start:stop]

    def p4(i):
        return np.array([rec[k][start + i] for k in ("E", "px", "py", "pz")])

    def daughters(i):
        return list(range(d1[i], d2[i] + 1)) if d1[i] > 0 and d2[i] >= d1[i] else (
            [d1[i]] if d1[i] > 0 else [])

    def last_copy(i):
        while True:
            ds = daughters(i)
            if len(ds) == 1 and ids[ds[0]] == ids[i]:
                i = ds[0]
            else:
                return i

    tops = []
    for t in np.flatnonzero(np.abs(ids) == 6):
        ds = daughters(t)
        if not ds or any(abs(ids[d]) == 6 for d in ds):
            continue   # not the last copy
        b = [d for d in ds if abs(ids[d]) == 5]
        w = [d for d in ds if abs(ids[d]) == 24]
        if not b or not w:
            continue
        wq = [d for d in daughters(last_copy(w[0])) if 1 <= abs(ids[d]) <= 5]
        if len(wq) != 2:
            continue   # leptonic W
        quarks = np.array([p4(q) for q in (b[0], *wq)])
        tops.append((p4(t), npkin.eta(quarks), npkin.phi(quarks)))
    return tops


def _hadronic_ws(rec, start, stop):
    """[(W p4 (E,px,py,pz), quark etas, quark phis)] of the hadronically decaying W bosons of one
    event: the last copy of each W (|id| 24) whose decay products include two quarks (|id| 1-5)."""
    ids = rec["id"][start:stop]
    d1, d2 = rec["daughter1"][start:stop], rec["daughter2"][start:stop]

    def p4(i):
        return np.array([rec[k][start + i] for k in ("E", "px", "py", "pz")])

    ws = []
    for w in np.flatnonzero(np.abs(ids) == 24):
        ds = (list(range(d1[w], d2[w] + 1)) if d1[w] > 0 and d2[w] >= d1[w]
              else ([d1[w]] if d1[w] > 0 else []))
        if not ds or any(abs(ids[d]) == 24 for d in ds):
            continue   # not the last copy
        quarks = [d for d in ds if 1 <= abs(ids[d]) <= 5]
        if len(quarks) != 2:
            continue   # leptonic W
        q = np.array([p4(d) for d in quarks])
        ws.append((p4(w), npkin.eta(q), npkin.phi(q)))
    return ws


def hard_process_vetoed(rec, offsets, veto_ids) -> np.ndarray:
    """(n_events,) bool: the events of the flat record ``rec`` (``offsets`` per event) with an
    outgoing parton of the hardest subprocess (Pythia status -23) whose |PDG id| is in
    ``veto_ids``. All False when ``veto_ids`` is empty."""
    n_events = len(offsets) - 1
    if not veto_ids:
        return np.zeros(n_events, bool)
    hit = (rec["status"] == -23) & np.isin(np.abs(rec["id"]), np.asarray(veto_ids))
    return np.bincount(rec["event"][hit], minlength=n_events) > 0


def _empty(m):
    return {"p4": np.zeros((0, m, 4), np.float32), "pid": np.zeros((0, m), np.int32),
            "charge": np.zeros((0, m), np.int8), "n_constituents": np.zeros(0, np.int32),
            "jet_p4": np.zeros((0, 4), np.float32), "truth": np.zeros((0, 4), np.float32),
            "event": np.zeros(0, np.int64)}


def cluster_antikt(fastjet, momenta: dict, event: np.ndarray, n_events: int, radius: float,
                   min_pt: float, constituents: bool = True) -> dict[str, np.ndarray]:
    """Anti-kT jets (FastJet, ``radius``, pT > ``min_pt``) of each event's objects:
    ``momenta`` holds px, py, pz, E per object, objects sorted by ``event`` (their event index,
    0 <= event < n_events). Returns over the J jets ``p4`` (J, 4) float64 (E, px, py, pz),
    ``pt``, ``event`` and ``rank`` (J,) (0 = the event's leading jet in pT); with
    ``constituents``, also FastJet's per-jet object indices within the event
    (``constituents``, awkward) and each event's first object (``offsets``, n_events + 1), which
    :func:`jet_constituents` turns into object indices. Every Pythia pipeline of hepjax
    clusters through here (top tagging / quark-gluon, DeepJet, JetClass, dijet resonances)."""
    import awkward as ak

    counts = np.bincount(event, minlength=n_events)
    arr = ak.unflatten(ak.zip({k: momenta[k] for k in ("px", "py", "pz", "E")}), counts)
    sequence = fastjet.ClusterSequence(arr, fastjet.JetDefinition(fastjet.antikt_algorithm,
                                                                  radius))
    jets = sequence.inclusive_jets(min_pt=min_pt)
    n_jets = ak.to_numpy(ak.num(jets)).astype(np.int64)
    p4 = np.stack([ak.to_numpy(ak.flatten(jets[k])).astype(np.float64)
                   for k in ("E", "px", "py", "pz")], -1)
    pt = npkin.pt(p4)
    jet_event = np.repeat(np.arange(n_events), n_jets)
    order = np.lexsort((-pt, jet_event))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(np.cumsum(n_jets) - n_jets, n_jets)
    out = {"p4": p4, "pt": pt, "event": jet_event, "rank": rank}
    if constituents:
        out["constituents"] = ak.flatten(sequence.constituent_index(min_pt=min_pt), axis=1)
        out["offsets"] = np.concatenate([[0], np.cumsum(counts)])
    return out


def jet_constituents(jets: dict, rows) -> tuple[np.ndarray, np.ndarray]:
    """The object indices of the constituents of jets ``rows`` of :func:`cluster_antikt`'s
    ``jets`` (in FastJet's order, jet after jet) and each jet's number of constituents."""
    import awkward as ak

    parts = jets["constituents"][rows]
    n_parts = ak.to_numpy(ak.num(parts)).astype(np.int64)
    index = (ak.to_numpy(ak.flatten(parts)).astype(np.int64)
             + np.repeat(jets["offsets"][jets["event"][rows]], n_parts))
    return index, n_parts


def simulate_chunk(task: Task | str, process_index: int, seed: int, chunk_index: int,
                   detector: str = "fast",
                   detector_config: detector_lib.DetectorConfig = detector_lib.DetectorConfig(),
                   events_per_chunk: int | None = None,
                   mpi: bool | None = None) -> dict[str, np.ndarray]:
    """Jets of one chunk of one process. Returns arrays over the J selected jets:
    ``p4`` (J, M, 4) float32 constituents (E, px, py, pz) in GeV sorted by pT, zero-padded;
    ``pid`` (J, M) int32; ``charge`` (J, M) int8; ``n_constituents`` (J,) int32;
    ``jet_p4`` (J, 4) and ``truth`` (J, 4) float32 (E, px, py, pz); ``event`` (J,) int64, the
    index of the jet's event in the chunk; M = max_constituents. ``mpi`` overrides ``task.mpi``."""
    _, fastjet = require_generators()
    task = _task(task, mpi)
    if detector not in ("fast", "none"):
        raise ValueError(f"detector={detector!r}: use 'fast' or 'none'")
    proc, cuts = task.processes[process_index], task.cuts
    n_events = int(events_per_chunk or task.events_per_chunk)
    pythia = _pythia(pythia_settings(task, process_index),
                     chunk_seed(seed, process_index, chunk_index))
    events = pythia.nextBatch(n_events)
    data = pythia.particleData
    rec, offsets = _flat_event_record(events, lambda i: data.chargeType(i) / 3.0)
    final = (rec["status"] > 0) & ~np.isin(np.abs(rec["id"]), detector_lib.NEUTRINOS)
    final &= np.hypot(rec["px"], rec["py"]) > 0
    particles = {k: rec[k][final] for k in ("event", "px", "py", "pz", "E", "charge")}
    particles["pid"] = rec["id"][final]
    if detector == "fast":
        rng = np.random.default_rng([int(seed), process_index, chunk_index, 1])
        objects = detector_lib.simulate(particles, rng, detector_config)
    else:
        pt = np.hypot(particles["px"], particles["py"])
        keep = np.abs(np.arcsinh(particles["pz"] / pt)) < detector_config.calo_eta_max
        objects = {k: v[keep] for k, v in particles.items()}
        objects["pid"] = objects["pid"].astype(np.int32)
        objects["charge"] = objects["charge"].astype(np.int8)
    n_events = len(offsets) - 1
    jets = cluster_antikt(fastjet, objects, objects["event"], n_events, cuts.radius,
                          0.8 * cuts.pt_min)
    jet_p4, jpt, jet_event, rank = jets["p4"], jets["pt"], jets["event"], jets["rank"]
    jeta = npkin.eta(jet_p4, jpt)
    position = npkin.rapidity(jet_p4) if cuts.use_rapidity else jeta
    chosen = ((rank < cuts.jets_per_event) & (cuts.pt_min < jpt) & (jpt < cuts.pt_max)
              & (np.abs(position) < cuts.eta_max))
    if proc.veto_outgoing:
        chosen &= ~hard_process_vetoed(rec, offsets, proc.veto_outgoing)[jet_event]
    truth = np.zeros((len(jpt), 4))
    if proc.truth in ("top", "w"):   # the top (W) and its 3 (2) decay quarks within dR < R
        find = _hadronic_tops if proc.truth == "top" else _hadronic_ws
        jphi = npkin.phi(jet_p4, jpt)
        tops = {}
        for j in np.flatnonzero(chosen):
            ev = jet_event[j]
            if ev not in tops:
                tops[ev] = find(rec, offsets[ev], offsets[ev + 1])
            matched = [t for t in tops[ev]
                       if np.all(npkin.delta_r(jeta[j], jphi[j], t[1], t[2]) < cuts.radius)
                       and npkin.delta_r(jeta[j], jphi[j], npkin.eta(t[0]),
                                         npkin.phi(t[0])) < cuts.radius]
            if matched:
                truth[j] = matched[0][0]
            else:
                chosen[j] = False
    selected = np.flatnonzero(chosen)
    m = cuts.max_constituents
    if len(selected) == 0:
        return _empty(m)
    # constituents of the selected jets, sorted by pT within each jet, the first m kept
    index, n_parts = jet_constituents(jets, selected)
    owner = np.repeat(np.arange(len(selected)), n_parts)
    obj_pt = np.hypot(objects["px"], objects["py"])
    by_pt = np.lexsort((-obj_pt[index], owner))
    index = index[by_pt]
    slot = np.arange(len(index)) - np.repeat(np.cumsum(n_parts) - n_parts, n_parts)
    keep = slot < m
    owner, slot, index = owner[keep], slot[keep], index[keep]
    n_sel = len(selected)
    p4 = np.zeros((n_sel, m, 4), np.float32)
    p4[owner, slot] = np.stack([objects[k][index] for k in ("E", "px", "py", "pz")], -1)
    pid = np.zeros((n_sel, m), np.int32)
    pid[owner, slot] = objects["pid"][index]
    charge = np.zeros((n_sel, m), np.int8)
    charge[owner, slot] = objects["charge"][index]
    return {"p4": p4, "pid": pid, "charge": charge,
            "n_constituents": np.minimum(n_parts, m).astype(np.int32),
            "jet_p4": jet_p4[selected].astype(np.float32),
            "truth": truth[selected].astype(np.float32),
            "event": jet_event[selected].astype(np.int64)}


def _chunk_job(args, chunk_file=None):
    """One chunk, read back from ``chunk_file`` when an earlier (killed) run finished it, else
    simulated and, with ``chunk_file``, saved there atomically (never a partial file)."""
    if chunk_file is not None and os.path.exists(chunk_file):
        with np.load(chunk_file) as saved:
            return {k: saved[k] for k in saved.files}
    out = simulate_chunk(*args)
    if chunk_file is not None:
        partial = f"{chunk_file}.partial-{os.getpid()}.npz"
        np.savez(partial, **out)
        os.replace(partial, chunk_file)
    return out


def generate(task: Task | str, n_jets: int, seed: int, *, detector: str = "fast",
             workers: int = 1, events_per_chunk: int | None = None,
             ttv_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
             detector_config: detector_lib.DetectorConfig = detector_lib.DetectorConfig(),
             progress: Callable[[int], None] | None = None,
             chunk_dir: str | os.PathLike | None = None,
             mpi: bool | None = None) -> dict[str, np.ndarray]:
    """``n_jets`` jets of ``task`` ('top-tagging' or 'quark-gluon'), split evenly over its classes.

    Returns the arrays of ``simulate_chunk`` over N = n_jets jets plus ``label`` (N,) int64 and
    ``ttv`` (N,) int64 (0 train, 1 test, 2 val). ``workers`` > 1 runs chunks in that many
    processes; the result is identical for any ``workers``. ``progress(k)`` is called with the
    number of jets each finished chunk contributed. With ``chunk_dir`` every finished chunk is
    kept there as it completes, and a rerun with the same arguments reads them back instead of
    simulating them again: a killed generation resumes where it stopped, with an identical
    result (chunks depend only on their seeds). The directory should be specific to these
    arguments (``hepjax.data.top_tagging`` names it after the cache file) and may be deleted
    once the sample is written. ``mpi`` (True/False) overrides the task's multi-parton
    interactions (``Task.mpi``: off for 'top-tagging', on for 'quark-gluon').
    """
    task = _task(task, mpi)
    require_generators()
    n_jets = int(n_jets)
    if n_jets < len(task.processes):
        raise ValueError(f"n_jets={n_jets}: need at least one jet per class ({len(task.processes)})")
    n_classes = len(task.processes)
    targets = [n_jets // n_classes + (1 if k < n_jets % n_classes else 0) for k in range(n_classes)]
    collected = [[] for _ in range(n_classes)]
    have = [0] * n_classes
    next_chunk = [0] * n_classes

    if chunk_dir is not None:
        os.makedirs(chunk_dir, exist_ok=True)

    def job(k):
        args = (task, k, seed, next_chunk[k], detector, detector_config, events_per_chunk)
        chunk_file = (None if chunk_dir is None
                      else os.path.join(chunk_dir, f"process{k}_chunk{next_chunk[k]:07d}.npz"))
        next_chunk[k] += 1
        return args, chunk_file

    def accept(k, chunk):
        if have[k] >= targets[k]:
            return
        take = min(len(chunk["p4"]), targets[k] - have[k])
        collected[k].append({key: v[:take] for key, v in chunk.items() if key != "event"})
        have[k] += take
        if progress is not None and take:
            progress(take)

    if workers <= 1:
        for k in range(n_classes):
            while have[k] < targets[k]:
                accept(k, _chunk_job(*job(k)))
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(int(workers), mp_context=context) as pool:
            pending = {k: [] for k in range(n_classes)}   # futures in chunk order per class
            while any(have[k] < targets[k] for k in range(n_classes)):
                for k in range(n_classes):
                    while have[k] < targets[k] and len(pending[k]) < workers:
                        pending[k].append(pool.submit(_chunk_job, *job(k)))
                for k in range(n_classes):
                    while pending[k] and pending[k][0].done():
                        accept(k, pending[k].pop(0).result())
                waiting = [f for fs in pending.values() for f in fs]
                if waiting and not any(f.done() for f in waiting):
                    concurrent.futures.wait(waiting, return_when=concurrent.futures.FIRST_COMPLETED)
            for fs in pending.values():
                for f in fs:
                    f.cancel()
    parts = []
    for k, proc in enumerate(task.processes):
        arrays = {key: np.concatenate([c[key] for c in collected[k]]) for key in collected[k][0]}
        arrays["label"] = np.full(targets[k], proc.label, np.int64)
        parts.append(arrays)
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = np.random.default_rng([int(seed), 0x5EED]).permutation(n_jets)
    out = {key: v[order] for key, v in out.items()}
    fractions = np.asarray(ttv_fractions, np.float64)
    codes = np.random.default_rng([int(seed), 0x77]).choice(3, size=n_jets, p=fractions / fractions.sum())
    out["ttv"] = codes.astype(np.int64)
    return out
