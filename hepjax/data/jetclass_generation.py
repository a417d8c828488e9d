"""A JetClass-style ten-class jet sample made with Pythia 8, written in the JetClass ROOT layout.

    hepjax generate jetclass --n-per-class 1000 --seed 0 --out ~/.cache/hepjax/jetclass_gen.root

JetClass: H. Qu, C. Li, S. Qian, "Particle Transformer for Jet Tagging", ICML 2022
(arXiv:2202.03772), and its dataset card (huggingface ``jet-universe/jetclass``):
100M jets of ten classes, H->bb, H->cc, H->gg, H->4q, H->l nu q q', t->bqq', t->b l nu, W->qq',
Z->qq' and QCD (light quarks and gluons), made with MadGraph5_aMC@NLO + Pythia 8 + Delphes (CMS
card), anti-kT R = 0.8 jets with 500 < pT < 1000 GeV and |eta| < 2, the signal jets required to
contain the decay products of their resonance, QCD jets from Z(->nu nu) + jets. This module
makes the same ten classes with hepjax's own machinery, imported, not copied:
``hepjax.data.generation`` (the Pythia wrapper ``_pythia``, per-chunk seeding ``chunk_seed``,
the top truth ``_hadronic_tops``), ``hepjax.data.detector`` (the Delphes-like energy flow) and
``hepjax.data.deepjet_generation`` (production vertices ``_flat``, the replay of the detector's
tracking ``_tracked``, ``impact_parameters``, ``ip_resolution``).

Recipe (``RECIPE_VERSION``), every choice and where it differs from JetClass:

* **Collisions**: Pythia 8 (pythia8mc 8.317.2) at 13 TeV, its default tune, multi-parton
  interactions, ISR/FSR and hadronisation on, no pile-up (JetClass has none either); particles
  with c tau0 > 10 mm are stable (``ParticleDecays:limitTau0``, the usual LHC setting, so K0S and
  Lambda reach the detector and charged daughters of b/c/tau decays are displaced).
  *Differs*: JetClass's hard processes come from MadGraph; here Pythia's own 2 -> 2 matrix
  elements, with a generator cut ``PhaseSpace:pTHatMin/Max`` = 450/1100 GeV for efficiency (the
  jet pT spectrum inside 500-1000 GeV is therefore steeply falling, most jets below 650 GeV).
* **Signal production** (boosted by the pTHat cut, the boson recoiling against a jet):
  H + jet (``HiggsSM:gg2Hg(l:t)``, ``qg2Hq(l:t)``, ``qqbar2Hg(l:t)``, m_H = 125 GeV); W + jet
  (``WeakBosonAndParton:qqbar2Wg``, ``qg2Wq``); Z + jet (``qqbar2gmZg``, ``qg2gmZq`` with
  ``WeakZ0:gmZmode = 2``, pure Z); tt-bar (``Top:gg2ttbar``, ``qqbar2ttbar``). *Differs*: JetClass
  produces its bosons in MadGraph processes with a broad kinematic coverage; the bosons here
  recoil against one hard parton.
* **Decays forced per class** (Pythia ``onMode``): H->bb (``25:onIfMatch = 5 -5``), H->cc, H->gg;
  H->4q = H->WW* or ZZ* with W and Z -> quarks (u, d, s, c, b); H->l nu q q' = H->WW* with one W
  -> quarks and the other -> e nu or mu nu; W->qq' and Z->qq (five flavours); t->bqq' from
  all-hadronic tt-bar; t->b l nu (l = e, mu) from semileptonic tt-bar. Which W charge decays
  leptonically alternates chunk by chunk (``onPosIfAny``/``onNegIfAny``; even chunks W- -> l nu,
  odd chunks W+ -> l nu), so both lepton charges appear equally. *Differs*: tau leptons are not
  included in l (JetClass's l may include them; we could not confirm it from the sources here).
* **QCD**: Z(->nu nu) + jet (``qqbar2gmZg``, ``qg2gmZq``), the leading jet of the event, as
  JetClass's Z(->nu nu) + jets (no truth requirement: light quark or gluon initiated).
* **Detector**: ``hepjax.data.detector``, the Delphes ATLAS card's energy flow (tracks with
  efficiencies and pT smearing, ECal/HCal cells, neutral excesses as photons / neutral hadrons).
  *Differs*: JetClass used the Delphes CMS card (different resolutions, granularity and
  thresholds). Particle ID is read off the E-flow objects: tracks carry their true PDG id
  (perfect e/mu identification, as Delphes' EFlowTrack), towers are photons (ECal) or neutral
  hadrons (HCal).
* **Impact parameters** (tracks only): the straight-line transverse and longitudinal IPs of the
  particle's production vertex w.r.t. the hard-scatter vertex at the origin
  (``deepjet_generation.impact_parameters``, CMS's dxy, dz), smeared by Gaussians of width
  15 um (+) 90 um GeV / pT (d0) and 40 um (+) 150 um GeV / pT (dz)
  (``deepjet_generation.ip_resolution``), stored **in mm** with those widths as ``*err``, as
  Delphes' D0, DZ, ErrorD0, ErrorDZ; 0 (value and error) for the neutral objects.
  *Differs*: JetClass smeared Delphes' track parameters "to match the CMS tracker resolution";
  the resolution here is a stated parametrisation, and curvature is ignored.
* **Jets**: anti-kT R = 0.8 (FastJet) on the E-flow objects; the ``jets_per_event`` hardest jets
  of each event (2 for the H/W/Z + jet and tt-bar classes: the boson or top may be the second
  jet; 1 for QCD), kept if 500 < pT < 1000 GeV and |eta| < 2.
* **Truth labels**: a signal jet is kept only if its resonance (the last H, W, Z or t copy) has
  exactly the class's decay products (quarks or gluons of the decay, the charged lepton; the
  neutrino is required to exist but not contained) and every one of them but the neutrino lies
  within Delta R < 0.8 of the jet axis (eta, phi). For t->bqq' that is the top-tagging check
  ``generation._hadronic_tops`` (which also requires the top itself within 0.8).
* **Observables**: ``jet_sdmass`` soft-drop mass (beta = 0, z_cut = 0.1, R0 = 0.8; FastJet C/A
  reclustering, ``exclusive_jets_softdrop_grooming``); ``jet_tau1..4`` N-subjettiness (beta =
  1, R0 = 0.8, exclusive-kT axes: ``hepjax.data.features.nsubjettiness``).

ROOT layout (tree ``tree``, one entry per jet, written with uproot): jagged (counter ``npart``)
``part_px, part_py, part_pz, part_energy`` (GeV), ``part_deta, part_dphi`` (to the jet axis),
``part_charge``, ``part_isChargedHadron, part_isNeutralHadron, part_isPhoton, part_isElectron,
part_isMuon``, ``part_d0val, part_d0err, part_dzval, part_dzerr`` (mm), constituents sorted by
decreasing pT; scalars ``jet_pt, jet_eta, jet_phi, jet_energy, jet_nparticles, jet_sdmass,
jet_tau1..jet_tau4`` and the one-hot ``label_QCD, label_Hbb, label_Hcc, label_Hgg, label_H4q,
label_Hqql, label_Zqq, label_Wqq, label_Tbqq, label_Tbl``; and (counter ``naux_genpart``) the
truth ``aux_genpart_pt, _eta, _phi, _mass, _pid``: the resonance first, then its decay products
(empty for QCD). Floats are float32, flags bool, ``jet_nparticles`` and ``aux_genpart_pid``
int32. ``hepjax.data.formats.read_jetclass`` reads the file unchanged.

Training: ``load_splits(cfg)`` serves ``config.data.name = 'jetclass'`` (fields in
``data_defaults``): this sample (generated and cached on first use), any JetClass-layout file,
or a directory of the JetClass release, as ParT's 17 inputs (kinematics, charge and particle
ID, tanh of the impact parameters and their errors) or fewer.

Determinism: chunk ``c`` of class ``k`` (its index in ``CLASSES``) runs a fresh Pythia seeded
with ``generation.chunk_seed(seed, 200 + k, c)`` and the detector / IP smearing with
``numpy.random.default_rng([seed, 200 + k, c, 1 | 2])``; a class takes its chunks 0, 1, 2, ...
in order until it has ``n_per_class`` jets, and the classes are interleaved by a permutation
drawn from ``seed``: the file depends only on (classes, n_per_class, seed, events_per_chunk),
never on ``workers``.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import multiprocessing
import os
import pathlib
import time
from typing import Callable

import numpy as np

from hepjax.data import deepjet_generation as deepjet
from hepjax.data import detector as detector_lib
from hepjax.data import generation as gen_lib
from hepjax.physics import numpy_kinematics as npkin

__all__ = ["RECIPE_VERSION", "CLASSES", "LABEL_BRANCHES", "PROCESSES", "JetClassProcess",
           "simulate_chunk", "generate", "write_root", "generate_jetclass", "default_path",
           "data_defaults", "read_file", "cache_path", "load_jets", "represent", "load_splits",
           "add_arguments", "main"]

RECIPE_VERSION = 1
TREE = "tree"
# JetClass's label branch order (label_QCD, label_Hbb, ...); read_jetclass sorts them by name
CLASSES = ("QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl")
LABEL_BRANCHES = tuple(f"label_{c}" for c in CLASSES)
_SEED_OFFSET = 200   # chunk_seed's process index = 200 + class index (apart from other tasks)

_COMMON = ("Beams:eCM = 13000.", "ParticleDecays:limitTau0 = on", "ParticleDecays:tau0Max = 10",
           "PartonLevel:MPI = on", "PhaseSpace:pTHatMin = 450.", "PhaseSpace:pTHatMax = 1100.")
_H_JET = ("HiggsSM:gg2Hg(l:t) = on", "HiggsSM:qg2Hq(l:t) = on", "HiggsSM:qqbar2Hg(l:t) = on",
          "25:m0 = 125.0", "25:onMode = off")
_Z_JET = ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
          "WeakZ0:gmZmode = 2", "23:onMode = off")
_W_JET = ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on", "24:onMode = off")
_TTBAR = ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off")
_W_QUARKS = "1 2 3 4 5"
_LEPTONS = "11 13"


@dataclasses.dataclass(frozen=True)
class JetClassProcess:
    """One class: Pythia settings, the resonance it tags (PDG id, 0 for QCD), its expected decay
    products (sorted |PDG| ids of quarks/gluons/charged leptons/neutrinos) and how many of
    each event's hardest jets are considered. ``lepton_w``: the settings take a W charge that
    decays to l nu, alternating per chunk."""
    name: str
    settings: tuple[str, ...]
    resonance: int
    products: tuple[str, ...]   # "q" (u d s c b), "b", "c", "g", "l" (e, mu), "nu"
    jets_per_event: int = 2
    lepton_w: bool = False


PROCESSES = {
    "QCD": JetClassProcess("QCD", _Z_JET + ("23:onIfAny = 12 14 16",), 0, (), jets_per_event=1),
    "Hbb": JetClassProcess("Hbb", _H_JET + ("25:onIfMatch = 5 -5",), 25, ("b", "b")),
    "Hcc": JetClassProcess("Hcc", _H_JET + ("25:onIfMatch = 4 -4",), 25, ("c", "c")),
    "Hgg": JetClassProcess("Hgg", _H_JET + ("25:onIfMatch = 21 21",), 25, ("g", "g")),
    "H4q": JetClassProcess("H4q", _H_JET + ("25:onIfMatch = 24 -24", "25:onIfMatch = 23 23",
                                            "24:onMode = off", f"24:onIfAny = {_W_QUARKS}",
                                            "23:onMode = off", f"23:onIfAny = {_W_QUARKS}"),
                           25, ("q", "q", "q", "q")),
    "Hqql": JetClassProcess("Hqql", _H_JET + ("25:onIfMatch = 24 -24", "24:onMode = off"), 25,
                            ("q", "q", "l", "nu"), lepton_w=True),
    "Zqq": JetClassProcess("Zqq", _Z_JET + (f"23:onIfAny = {_W_QUARKS}",), 23, ("q", "q")),
    "Wqq": JetClassProcess("Wqq", _W_JET + (f"24:onIfAny = {_W_QUARKS}",), 24, ("q", "q")),
    "Tbqq": JetClassProcess("Tbqq", _TTBAR + (f"24:onIfAny = {_W_QUARKS}",), 6, ("b", "q", "q")),
    "Tbl": JetClassProcess("Tbl", _TTBAR, 6, ("b", "l", "nu"), lepton_w=True),
}
assert tuple(PROCESSES) == CLASSES

PT_MIN, PT_MAX, ETA_MAX, RADIUS = 500.0, 1000.0, 2.0, 0.8
DEFAULT_EVENTS_PER_CHUNK = 500
_IP = deepjet.GenConfig()   # d0_a, d0_b, dz_a, dz_b (cm)
_CM_TO_MM = 10.0
_NEUTRINOS = (12, 14, 16)


def pythia_settings(name: str, chunk: int) -> tuple[str, ...]:
    """The Pythia settings of one chunk of class ``name`` (without the seed)."""
    proc = _process(name)
    settings = _COMMON + proc.settings
    if proc.lepton_w:   # alternate which W charge decays to l nu
        lep, had = ("Neg", "Pos") if chunk % 2 == 0 else ("Pos", "Neg")
        settings += (f"24:on{had}IfAny = {_W_QUARKS}", f"24:on{lep}IfAny = {_LEPTONS}")
    return settings


def _process(name: str) -> JetClassProcess:
    if name not in PROCESSES:
        raise ValueError(f"class {name!r}: use one of {list(CLASSES)}")
    return PROCESSES[name]


# ----------------------------------------------------------------------------- truth
def _daughters(d1, d2, i):
    if d1[i] > 0 and d2[i] >= d1[i]:
        return list(range(d1[i], d2[i] + 1))
    return [d1[i]] if d1[i] > 0 else []


def _last_copy(ids, d1, d2, i):
    while True:
        ds = _daughters(d1, d2, i)
        if len(ds) == 1 and ids[ds[0]] == ids[i]:
            i = ds[0]
        else:
            return i


def _kind(pid: int) -> str | None:
    a = abs(int(pid))
    if a in (1, 2, 3):
        return "q"
    if a in (4, 5):
        return "c" if a == 4 else "b"
    if a == 21:
        return "g"
    if a in (11, 13):
        return "l"
    if a in _NEUTRINOS:
        return "nu"
    if a == 15:
        return "tau"
    return None


def _matches(found: list[str], expected: tuple[str, ...]) -> bool:
    """Whether the decay-product kinds equal the expected ones ("q" also takes c and b)."""
    if len(found) != len(expected):
        return False
    left = list(found)
    for want in sorted(expected, key=lambda k: k == "q"):   # specific kinds first
        options = ("q", "c", "b") if want == "q" else (want,)
        hit = next((f for f in left if f in options), None)
        if hit is None:
            return False
        left.remove(hit)
    return True


def _resonances(rec, start, stop, proc: JetClassProcess):
    """[(resonance p4 (E, px, py, pz), pid, [(product pid, p4), ...])] of the event's decaying
    resonances whose products match the class (indices local to the event)."""
    ids = rec["id"][start:stop]
    d1, d2 = rec["daughter1"][start:stop], rec["daughter2"][start:stop]

    def p4(i):
        return np.array([rec[k][start + i] for k in ("E", "px", "py", "pz")])

    def products(i):
        out = []
        for d in _daughters(d1, d2, i):
            if abs(ids[d]) in (23, 24):   # W/Z of a H or t decay: descend to its decay
                out += products(_last_copy(ids, d1, d2, d))
            elif _kind(ids[d]) is not None:
                out.append(d)
        return out

    found = []
    for r in np.flatnonzero(np.abs(ids) == proc.resonance):
        ds = _daughters(d1, d2, r)
        if not ds or any(ids[d] == ids[r] for d in ds):
            continue   # not the last copy
        prods = products(r)
        if _matches([_kind(ids[d]) for d in prods], proc.products):
            found.append((p4(r), int(ids[r]), [(int(ids[d]), p4(d)) for d in prods]))
    return found


# ----------------------------------------------------------------------------- one chunk
_SCALARS = {"jet_pt": np.float32, "jet_eta": np.float32, "jet_phi": np.float32,
            "jet_energy": np.float32, "jet_nparticles": np.int32, "jet_sdmass": np.float32,
            "jet_tau1": np.float32, "jet_tau2": np.float32, "jet_tau3": np.float32,
            "jet_tau4": np.float32}
_PART = {"px": np.float32, "py": np.float32, "pz": np.float32, "energy": np.float32,
         "deta": np.float32, "dphi": np.float32, "charge": np.float32,
         "isChargedHadron": bool, "isNeutralHadron": bool, "isPhoton": bool,
         "isElectron": bool, "isMuon": bool, "d0val": np.float32, "d0err": np.float32,
         "dzval": np.float32, "dzerr": np.float32}
_AUX = {"pt": np.float32, "eta": np.float32, "phi": np.float32, "mass": np.float32,
        "pid": np.int32}


def _empty() -> dict:
    out = {k: np.zeros(0, t) for k, t in _SCALARS.items()}
    out.update({f"part_{k}": np.zeros(0, t) for k, t in _PART.items()})
    out.update({f"aux_genpart_{k}": np.zeros(0, t) for k, t in _AUX.items()})
    out["part__counts"] = np.zeros(0, np.int64)
    out["aux_genpart__counts"] = np.zeros(0, np.int64)
    return out


def simulate_chunk(name: str, seed: int, chunk: int,
                   events_per_chunk: int = DEFAULT_EVENTS_PER_CHUNK,
                   det: detector_lib.DetectorConfig = detector_lib.DetectorConfig()) -> dict:
    """Jets of one chunk of class ``name``: scalar arrays (J,) ``jet_*``; flat arrays
    ``part_*`` with ``part__counts`` (J,) and ``aux_genpart_*`` with ``aux_genpart__counts``."""
    import awkward as ak

    proc = _process(name)
    k = CLASSES.index(name)
    _, fastjet = gen_lib.require_generators()
    pythia = gen_lib._pythia(pythia_settings(name, chunk),
                             gen_lib.chunk_seed(seed, _SEED_OFFSET + k, chunk))
    data = pythia.particleData
    rec, offsets = deepjet._flat(pythia.nextBatch(int(events_per_chunk)),
                                 lambda i: data.chargeType(i) / 3.0)
    n_ev = len(offsets) - 1
    final = ((rec["status"] > 0) & ~np.isin(np.abs(rec["id"]), detector_lib.NEUTRINOS)
             & (np.hypot(rec["px"], rec["py"]) > 0))
    parts = {c: rec[c][final] for c in ("event", "px", "py", "pz", "E", "charge", "vx", "vy",
                                          "vz")}
    parts["pid"] = rec["id"][final]

    # detector, and which particle each track comes from (replaying its tracking draws)
    obj, tracked, trk_obj = deepjet.simulate_with_tracks(
        parts, np.random.default_rng([int(seed), _SEED_OFFSET + k, int(chunk), 1]), det,
        "jetclass_generation")
    # impact parameters of the tracks (cm -> mm), 0 for towers
    n_obj = len(obj["px"])
    d0, dz, d0err, dzerr = (np.zeros(n_obj) for _ in range(4))
    t = tracked
    true_d0, true_dz = deepjet.impact_parameters(parts["vx"][t], parts["vy"][t], parts["vz"][t],
                                                 parts["px"][t], parts["py"][t], parts["pz"][t],
                                                 0.0)
    t_pt = np.hypot(obj["px"][trk_obj], obj["py"][trk_obj])
    s_d0 = deepjet.ip_resolution(t_pt, _IP.d0_a, _IP.d0_b)
    s_dz = deepjet.ip_resolution(t_pt, _IP.dz_a, _IP.dz_b)
    z = np.random.default_rng([int(seed), _SEED_OFFSET + k, int(chunk), 2]).standard_normal(
        (2, len(t)))
    d0[trk_obj] = (true_d0 + s_d0 * z[0]) * _CM_TO_MM
    dz[trk_obj] = (true_dz + s_dz * z[1]) * _CM_TO_MM
    d0err[trk_obj], dzerr[trk_obj] = s_d0 * _CM_TO_MM, s_dz * _CM_TO_MM

    # anti-kT R = 0.8 on the E-flow objects
    jets = gen_lib.cluster_antikt(fastjet, obj, obj["event"], n_ev, RADIUS, 0.8 * PT_MIN)
    jet_p4, jpt, jet_event, rank = jets["p4"], jets["pt"], jets["event"], jets["rank"]
    jeta, jphi = npkin.eta(jet_p4, jpt), npkin.phi(jet_p4, jpt)
    chosen = ((rank < proc.jets_per_event) & (PT_MIN < jpt) & (jpt < PT_MAX)
              & (np.abs(jeta) < ETA_MAX))

    truth = {}   # jet -> (resonance p4, pid, products)
    if proc.resonance:
        cache, used = {}, set()
        for j in np.flatnonzero(chosen):
            ev = jet_event[j]
            if ev not in cache:
                start, stop = offsets[ev], offsets[ev + 1]
                if proc.name == "Tbqq":   # the top-tagging truth (top and quarks within R)
                    tops = gen_lib._hadronic_tops(rec, start, stop)
                    mine = {t[0].tobytes() for t in tops}
                    cache[ev] = [r for r in _resonances(rec, start, stop, proc)
                                 if r[0].tobytes() in mine]
                else:
                    cache[ev] = _resonances(rec, start, stop, proc)
            match = None
            for n_res, (r_p4, r_id, prods) in enumerate(cache[ev]):
                vis = np.array([p for pid, p in prods if abs(pid) not in _NEUTRINOS])
                inside = np.all(npkin.delta_r(jeta[j], jphi[j], npkin.eta(vis),
                                              npkin.phi(vis)) < RADIUS)
                if proc.name == "Tbqq":
                    inside &= npkin.delta_r(jeta[j], jphi[j], npkin.eta(r_p4),
                                            npkin.phi(r_p4)) < RADIUS
                if inside and (ev, n_res) not in used:
                    match = (ev, n_res)
                    break
            if match is None:
                chosen[j] = False
            else:
                used.add(match)
                truth[j] = cache[ev][match[1]]
    selected = np.flatnonzero(chosen)
    if len(selected) == 0:
        return _empty()

    # constituents of the selected jets, sorted by decreasing pT
    index, n_parts = gen_lib.jet_constituents(jets, selected)
    owner = np.repeat(np.arange(len(selected)), n_parts)
    o_pt = np.hypot(obj["px"], obj["py"])
    index = index[np.lexsort((-o_pt[index], owner))]
    o_eta = npkin.eta(np.stack([obj[c][index] for c in ("E", "px", "py", "pz")], -1))
    o_phi = np.arctan2(obj["py"][index], obj["px"][index])
    pid, charge = np.abs(obj["pid"][index]), obj["charge"][index]
    out = {"part_px": obj["px"][index], "part_py": obj["py"][index],
           "part_pz": obj["pz"][index], "part_energy": obj["E"][index],
           "part_deta": o_eta - np.repeat(jeta[selected], n_parts),
           "part_dphi": npkin.delta_phi(o_phi, np.repeat(jphi[selected], n_parts)),
           "part_charge": charge,
           "part_isChargedHadron": (charge != 0) & (pid != 11) & (pid != 13),
           "part_isNeutralHadron": (charge == 0) & (pid == detector_lib.NEUTRAL_HADRON_PID),
           "part_isPhoton": (charge == 0) & (pid == 22),
           "part_isElectron": (charge != 0) & (pid == 11),
           "part_isMuon": (charge != 0) & (pid == 13),
           "part_d0val": d0[index], "part_d0err": d0err[index],
           "part_dzval": dz[index], "part_dzerr": dzerr[index],
           "part__counts": n_parts}

    # jet observables from the constituents
    sel_p4 = jet_p4[selected]
    out.update(jet_pt=jpt[selected], jet_eta=jeta[selected], jet_phi=jphi[selected],
               jet_energy=sel_p4[:, 0], jet_nparticles=n_parts)
    cons_arr = ak.unflatten(ak.zip({"px": out["part_px"], "py": out["part_py"],
                                    "pz": out["part_pz"], "E": out["part_energy"]}), n_parts)
    ca = fastjet.ClusterSequence(cons_arr, fastjet.JetDefinition(
        fastjet.cambridge_algorithm, fastjet.JetDefinition.max_allowable_R))
    groomed = ca.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1,
                                                  R0=RADIUS)
    out["jet_sdmass"] = ak.to_numpy(groomed.msoftdrop).astype(np.float64).reshape(-1)
    m = int(n_parts.max())
    slot = np.arange(len(index)) - np.repeat(np.cumsum(n_parts) - n_parts, n_parts)
    padded = np.zeros((len(selected), m, 4))
    padded[owner, slot] = np.stack([out[c] for c in ("part_energy", "part_px", "part_py",
                                                     "part_pz")], -1)
    from hepjax.data.features import nsubjettiness
    taus = nsubjettiness(padded, np.arange(m)[None] < n_parts[:, None], RADIUS, n_max=4)
    for n in range(4):
        out[f"jet_tau{n + 1}"] = taus[:, n]

    # truth: the resonance, then its decay products
    aux = {c: [] for c in _AUX}
    aux_counts = np.zeros(len(selected), np.int64)
    for row, j in enumerate(selected):
        if j not in truth:
            continue
        r_p4, r_id, prods = truth[j]
        vecs = np.array([r_p4] + [p for _, p in prods])
        aux["pt"].append(npkin.pt(vecs))
        aux["eta"].append(npkin.eta(vecs))
        aux["phi"].append(npkin.phi(vecs))
        aux["mass"].append(npkin.mass(vecs))
        aux["pid"].append(np.array([r_id] + [pid for pid, _ in prods]))
        aux_counts[row] = len(vecs)
    for c, t in _AUX.items():
        out[f"aux_genpart_{c}"] = (np.concatenate(aux[c]) if aux[c] else np.zeros(0)).astype(t)
    out["aux_genpart__counts"] = aux_counts
    for c, t in _SCALARS.items():
        out[c] = np.asarray(out[c]).astype(t)
    for c, t in _PART.items():
        out[f"part_{c}"] = np.asarray(out[f"part_{c}"]).astype(t)
    return out


# ----------------------------------------------------------------------------- driver
def _chunk_job(name, seed, chunk, events_per_chunk, chunk_file=None):
    if chunk_file is not None and os.path.exists(chunk_file):
        with np.load(chunk_file) as saved:
            return {c: saved[c] for c in saved.files}
    out = simulate_chunk(name, seed, chunk, events_per_chunk)
    if chunk_file is not None:
        partial = f"{chunk_file}.partial-{os.getpid()}.npz"
        np.savez(partial, **out)
        os.replace(partial, chunk_file)
    return out


def _take(arrays: dict, n: int) -> dict:
    """The first ``n`` jets of a chunk."""
    out = {}
    for coll in ("part", "aux_genpart"):
        counts = arrays[f"{coll}__counts"]
        stop = int(counts[:n].sum())
        for c in (_PART if coll == "part" else _AUX):
            out[f"{coll}_{c}"] = arrays[f"{coll}_{c}"][:stop]
        out[f"{coll}__counts"] = counts[:n]
    for c in _SCALARS:
        out[c] = arrays[c][:n]
    return out


def generate(n_per_class: int, seed: int, *, classes=CLASSES, workers: int = 1,
             events_per_chunk: int = DEFAULT_EVENTS_PER_CHUNK, chunk_dir=None,
             progress: Callable[[str, int, int], None] | None = None) -> dict:
    """``n_per_class`` jets of each of ``classes``: {class name: chunk-format arrays} (see
    ``simulate_chunk``). ``workers`` > 1 runs chunks in that many processes (same result).
    With ``chunk_dir`` finished chunks are kept there and a rerun reads them back (resumable).
    ``progress(name, jets taken, chunk index)`` after each chunk."""
    classes = tuple(classes)
    for name in classes:
        _process(name)
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes={classes}: expected distinct names from {list(CLASSES)}")
    n_per_class = int(n_per_class)
    if n_per_class < 1:
        raise ValueError(f"n_per_class={n_per_class}: expected >= 1")
    if chunk_dir is not None:
        os.makedirs(chunk_dir, exist_ok=True)
    collected = {name: [] for name in classes}
    have = dict.fromkeys(classes, 0)
    next_chunk = dict.fromkeys(classes, 0)

    def job(name):
        c = next_chunk[name]
        next_chunk[name] += 1
        path = None if chunk_dir is None else os.path.join(
            chunk_dir, f"{name}_epc{events_per_chunk}_chunk{c:06d}.npz")
        return (name, int(seed), c, int(events_per_chunk), path)

    def accept(args, arrays):
        name = args[0]
        take = min(len(arrays["jet_pt"]), n_per_class - have[name])
        if take > 0:
            collected[name].append(_take(arrays, take))
            have[name] += take
        if progress is not None:
            progress(name, max(take, 0), args[2])

    if workers <= 1:
        for name in classes:
            while have[name] < n_per_class:
                args = job(name)
                accept(args, _chunk_job(*args))
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(int(workers), mp_context=ctx) as pool:
            pending = {name: [] for name in classes}
            while any(have[n] < n_per_class for n in classes):
                for name in classes:
                    while have[name] < n_per_class and len(pending[name]) < workers:
                        args = job(name)
                        pending[name].append((args, pool.submit(_chunk_job, *args)))
                for name in classes:
                    while pending[name] and pending[name][0][1].done():
                        args, fut = pending[name].pop(0)
                        accept(args, fut.result())
                waiting = [f for fs in pending.values() for _, f in fs]
                if waiting and not any(f.done() for f in waiting):
                    concurrent.futures.wait(waiting,
                                            return_when=concurrent.futures.FIRST_COMPLETED)
            for fs in pending.values():
                for _, f in fs:
                    f.cancel()
    return {name: _concat(collected[name]) for name in classes}


def _concat(chunks: list[dict]) -> dict:
    return {c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}


def _awkward_columns(arrays: dict, labels: np.ndarray) -> dict:
    """The tree's branches: jagged collections as ak.zip records (uproot names them
    ``part_*`` / ``aux_genpart_*`` with counters ``npart`` / ``naux_genpart``)."""
    import awkward as ak

    out = {c: arrays[c] for c in _SCALARS}
    for coll, fields in (("part", _PART), ("aux_genpart", _AUX)):
        counts = arrays[f"{coll}__counts"]
        out[coll] = ak.zip({c: ak.unflatten(arrays[f"{coll}_{c}"], counts) for c in fields})
    for k, branch in enumerate(LABEL_BRANCHES):
        out[branch] = labels == k
    return out


def write_root(samples: dict, path, seed: int, basket_jets: int = 5000) -> int:
    """Writes the classes of ``samples`` ({class: arrays}) to ``path`` (tree ``tree``), jets
    interleaved by a permutation drawn from ``seed``; returns the number of jets written.
    Written to a temporary name and renamed, so a killed run leaves no partial file."""
    import uproot

    names = list(samples)
    merged = _concat([samples[n] for n in names])
    labels = np.concatenate([np.full(len(samples[n]["jet_pt"]), CLASSES.index(n), np.int64)
                             for n in names])
    n = len(labels)
    order = np.random.default_rng([int(seed), 0x5EED]).permutation(n)
    merged = _permute(merged, order)
    labels = labels[order]
    path = pathlib.Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".partial-{os.getpid()}")
    with uproot.recreate(tmp) as f:
        tree = None
        for start in range(0, n, basket_jets):
            block = _permute(merged, np.arange(start, min(start + basket_jets, n)))
            cols = _awkward_columns(block, labels[start:start + basket_jets])
            if tree is None:
                tree = f.mktree(TREE, {k: v.type if hasattr(v, "layout") else v.dtype
                                       for k, v in cols.items()})
            tree.extend(cols)
    os.replace(tmp, path)
    return n


def _permute(arrays: dict, rows: np.ndarray) -> dict:
    """Rows ``rows`` of the chunk-format arrays (jagged collections re-gathered)."""
    out = {c: arrays[c][rows] for c in _SCALARS}
    for coll, fields in (("part", _PART), ("aux_genpart", _AUX)):
        counts = arrays[f"{coll}__counts"]
        starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
        sel = counts[rows]
        idx = (np.repeat(starts[rows] - np.concatenate([[0], np.cumsum(sel)])[:-1], sel)
               + np.arange(int(sel.sum())))
        for c in fields:
            out[f"{coll}_{c}"] = arrays[f"{coll}_{c}"][idx]
        out[f"{coll}__counts"] = sel
    return out


def generate_jetclass(n_per_class: int, seed: int, out, workers: int = 1, *,
                      classes=CLASSES, events_per_chunk: int = DEFAULT_EVENTS_PER_CHUNK,
                      resume: bool = True, progress=None) -> pathlib.Path:
    """Generates ``n_per_class`` jets of each class and writes them to the JetClass-layout ROOT
    file ``out``; returns its path. With ``resume`` finished chunks are kept beside it in
    ``<out>.chunks/`` (removed once the file is written) and a rerun continues from them."""
    out = pathlib.Path(out).expanduser()
    chunk_dir = str(out) + ".chunks" if resume else None
    samples = generate(n_per_class, seed, classes=classes, workers=workers,
                       events_per_chunk=events_per_chunk, chunk_dir=chunk_dir,
                       progress=progress)
    write_root(samples, out, seed)
    if chunk_dir is not None:
        import shutil
        shutil.rmtree(chunk_dir, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- training data
def data_defaults(**fields):
    """The ``config.data`` section of ``name = 'jetclass'`` (``hepjax.configs.defaults``
    declares the same fields as ``jetclass_data``; this copy serves until it does).

    ``path``: a JetClass-layout ROOT file (split by a permutation seeded with ``seed`` into
    round(fraction * N) jets each of ``ttv_fractions`` = train, test, val), or a directory in
    the JetClass release's layout (``train*/``, ``val*/``, ``test*/`` subdirectories of
    ``*.root`` files, each read whole, at most ``max_files`` files per split, 0 = all); empty:
    the sample of ``n_per_class`` jets per class generated here with ``seed``
    (``generate_jetclass``), once, cached under
    ``cache_dir`` (default ``$HEPJAX_CACHE`` or ``~/.cache/hepjax``). Features: the seven
    kinematic ones of ``hepjax.data.features.particle_features``; with ``particle_id`` the charge
    and the five particle-ID flags (from the ``part_is*`` branches); with
    ``impact_parameters`` also tanh(d0val), d0err, tanh(dzval), dzerr (ParT's 17 JetClass inputs
    with both)."""
    import ml_collections

    section = ml_collections.ConfigDict({
        "name": "jetclass", "path": "", "cache_dir": "", "seed": 0, "n_per_class": 1000,
        "workers": 1, "events_per_chunk": DEFAULT_EVENTS_PER_CHUNK,
        "ttv_fractions": (0.7, 0.2, 0.1), "max_files": 0, "max_particles": 128,
        "particle_id": True, "impact_parameters": True, "train_fraction": 1.0,
        "max_train_jets": 0, "max_val_jets": 0})
    section.update(fields)
    return section


def _section(cfg):
    """``cfg`` completed with the declared defaults; fields only another dataset declares (left
    by switching ``data.name`` with an override) are kept unread, any other unknown one raises."""
    from hepjax.configs import defaults

    sections = getattr(defaults, "DATA_SECTIONS", {})
    declared = sections.get("jetclass", data_defaults)()
    other = {k for build in sections.values() for k in build()} - set(declared)
    given = {k: v for k, v in cfg.items() if k not in other}
    return defaults.overlay(declared, given, "config.data")


_FLAG_PID = (("isChargedHadron", 211), ("isNeutralHadron", 130), ("isPhoton", 22),
             ("isElectron", 11), ("isMuon", 13))
_IP_BRANCHES = ("part_d0val", "part_d0err", "part_dzval", "part_dzerr")


def read_file(path, max_particles: int = 128) -> dict:
    """One JetClass-layout file through ``formats.read_jetclass`` plus, where present, ``pid``
    (N, P) from the ``part_is*`` flags (211, 130, 22, 11, 13; 0 without flags) and ``ip``
    (N, P, 4) from ``part_d0val, d0err, dzval, dzerr``."""
    import awkward as ak
    import uproot

    from hepjax.data import formats

    jets = formats.read_jetclass(path, max_particles=max_particles)
    with uproot.open(path) as f:
        names = set(f["tree"].keys())
        flags = [f"part_{flag}" for flag, _ in _FLAG_PID]
        wanted = [b for b in flags + list(_IP_BRANCHES) if b in names]
        data = f["tree"].arrays(wanted) if wanted else {}

    def pad(name):
        return ak.to_numpy(ak.fill_none(ak.pad_none(data[name], max_particles, clip=True), 0))

    if all(b in names for b in flags):
        pid = np.zeros(jets["mask"].shape, np.int32)
        for (flag, code), branch in zip(_FLAG_PID, flags):
            pid = np.where(pad(branch).astype(bool), code, pid)
        jets["pid"] = pid
    if all(b in names for b in _IP_BRANCHES):
        ip = np.stack([pad(b).astype(np.float32) for b in _IP_BRANCHES], -1)
        if not np.isfinite(ip).all():
            raise ValueError(f"{path}: branches {list(_IP_BRANCHES)} hold NaN/Inf")
        jets["ip"] = ip
    return jets


def cache_path(cfg) -> pathlib.Path:
    cfg = _section(cfg)
    base = pathlib.Path(str(cfg.cache_dir) or os.environ.get("HEPJAX_CACHE", "")
                        or pathlib.Path.home() / ".cache" / "hepjax").expanduser()
    epc = int(cfg.events_per_chunk)
    suffix = "" if epc == DEFAULT_EVENTS_PER_CHUNK else f"_epc{epc}"
    name = f"jetclass_gen_v{RECIPE_VERSION}_n{int(cfg.n_per_class)}_s{int(cfg.seed)}{suffix}"
    return base / f"{name}.root"


_SPLIT_CODES = {"train": 0, "test": 1, "val": 2}


def _concat_jets(parts: list[dict]) -> dict:
    keys = [k for k in parts[0] if isinstance(parts[0][k], np.ndarray)]
    out = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    names = {p["label_names"] for p in parts}
    if len(names) != 1:
        raise ValueError(f"JetClass files with different label_* branches: {sorted(names)}")
    return out


def load_jets(cfg) -> dict[str, dict]:
    """{'train', 'val', 'test'} -> ``read_file`` arrays (see ``data_defaults`` for sources)."""
    cfg = _section(cfg)
    m = int(cfg.max_particles)
    path = str(cfg.path)
    if path and pathlib.Path(path).expanduser().is_dir():
        root = pathlib.Path(path).expanduser()
        out = {}
        for split in ("train", "val", "test"):
            files = sorted(root.glob(f"{split}*/*.root")) or sorted(root.glob(f"{split}*.root"))
            if int(cfg.max_files) > 0:
                files = files[:int(cfg.max_files)]
            if not files:
                raise FileNotFoundError(f"{root}: no {split}*/*.root or {split}*.root files "
                                        "(expected the JetClass release's layout)")
            out[split] = _concat_jets([read_file(f, m) for f in files])
        return out
    if path:
        file = pathlib.Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no such file (expected a JetClass-layout ROOT "
                                    "file or a directory of them)")
    else:
        file = cache_path(cfg)
        if not file.is_file():
            generate_jetclass(int(cfg.n_per_class), int(cfg.seed), file, int(cfg.workers),
                              events_per_chunk=int(cfg.events_per_chunk))
    jets = read_file(file, m)
    fractions = np.asarray(tuple(cfg.ttv_fractions), np.float64)
    if len(fractions) != 3 or fractions.min() <= 0 or abs(fractions.sum() - 1) > 1e-9:
        raise ValueError(f"config.data.ttv_fractions={tuple(cfg.ttv_fractions)}: expected three "
                         "positive fractions (train, test, val) summing to 1")
    n = len(jets["label"])
    # exact sizes: a seeded permutation cut at round(fraction * n) (train, test, val)
    sizes = np.round(fractions * n).astype(np.int64)
    codes = np.zeros(n, np.int64)
    order = np.random.default_rng([int(cfg.seed), 0x77]).permutation(n)
    codes[order[n - sizes[1] - sizes[2]:n - sizes[2]]] = 1
    codes[order[n - sizes[2]:]] = 2
    out = {}
    for split, code in _SPLIT_CODES.items():
        rows = codes == code
        if not rows.any():
            raise ValueError(f"{file}: no jets in the {split} split ({n} jets in all)")
        out[split] = {k: v[rows] for k, v in jets.items() if isinstance(v, np.ndarray)}
    return out


def represent(jets: dict, cfg) -> tuple[dict, tuple[str, ...]]:
    """features (N, P, F), mask, vectors (E, px, py, pz) and label of one split."""
    from hepjax.data import features as features_lib

    cfg = _section(cfg)
    mask = np.asarray(jets["mask"], bool)
    use_pid = bool(cfg.particle_id)
    if use_pid and ("pid" not in jets or "charge" not in jets):
        raise ValueError("config.data.particle_id=True, but the files lack part_charge or the "
                         "part_is* flags: set it to False")
    values, names = features_lib.particle_features(
        jets["p4"], mask, jets.get("pid") if use_pid else None,
        jets.get("charge") if use_pid else None)
    if bool(cfg.impact_parameters):
        if "ip" not in jets:
            raise ValueError("config.data.impact_parameters=True, but the files lack "
                             f"{list(_IP_BRANCHES)}: set it to False")
        ip = jets["ip"]
        extra = np.stack([np.tanh(ip[..., 0]), ip[..., 1], np.tanh(ip[..., 2]), ip[..., 3]], -1)
        values = np.concatenate([values, np.where(mask[..., None], extra, 0)], -1)
        names = names + ("tanh_d0val", "d0err", "tanh_dzval", "dzerr")
    vectors = np.where(mask[..., None], jets["p4"], 0).astype(np.float32)
    return {"features": values.astype(np.float32), "mask": mask, "vectors": vectors,
            "label": np.asarray(jets["label"], np.int64)}, names


def load_splits(cfg, splits=("train", "val", "test")) -> dict:
    """The ``splits`` as model inputs plus ``feature_names``; ``label`` indexes the file's
    ``label_*`` branches sorted by name (``formats.read_jetclass``). Subsets as
    ``hepjax.data.top_tagging.load_splits`` (``train_fraction``, ``max_train_jets``,
    ``max_val_jets``; the test split always whole)."""
    from hepjax.data.top_tagging import subset_splits

    unknown = [s for s in splits if s not in _SPLIT_CODES]
    if unknown or not splits:
        raise ValueError(f"load_splits: splits {tuple(splits)}; choose from {tuple(_SPLIT_CODES)}")
    cfg = _section(cfg)
    jets = subset_splits(load_jets(cfg), cfg)
    out, names = {}, ()
    for split in splits:
        out[split], names = represent(jets[split], cfg)
    out["feature_names"] = names
    return out


def default_path(n_per_class: int, seed: int) -> pathlib.Path:
    base = pathlib.Path(os.environ.get("HEPJAX_CACHE", "") or
                        pathlib.Path.home() / ".cache" / "hepjax").expanduser()
    return base / f"jetclass_gen_v{RECIPE_VERSION}_n{n_per_class}_s{seed}.root"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-per-class", type=int, default=1000, help="jets of each class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", default=",".join(CLASSES),
                        help=f"comma-separated subset of {','.join(CLASSES)}")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--events-per-chunk", type=int, default=DEFAULT_EVENTS_PER_CHUNK)
    parser.add_argument("--out", default=None, help="ROOT file to write (default: in "
                        "$HEPJAX_CACHE or ~/.cache/hepjax)")


def main(args) -> int:
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    out = pathlib.Path(args.out) if args.out else default_path(args.n_per_class, args.seed)
    t0 = time.perf_counter()
    have = {}

    def progress(name, n, chunk):
        have[name] = have.get(name, 0) + n
        print(f"{name} chunk {chunk}: +{n} jets, {have[name]}/{args.n_per_class}, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)

    generate_jetclass(args.n_per_class, args.seed, out, args.workers, classes=classes,
                      events_per_chunk=args.events_per_chunk, progress=progress)
    print(f"wrote {len(classes) * args.n_per_class} jets to {out} in "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(p)
    raise SystemExit(main(p.parse_args()))
