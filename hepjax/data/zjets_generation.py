"""Z(-> mu mu) + jets events at hadron level generated with Pythia 8 and clustered with FastJet,
for event generation with conditional flows (issue 27, item 4).

Anchor: Butter, Heimel, Hummerich, Krebs, Plehn, Rousselot, Vent, "Generative networks for
precision enthusiasts" (arXiv:2110.13632): Z -> mu mu + {1, 2, 3} jets, a generative network per
jet multiplicity, checked with distributions and their ratio to the truth, tails included. That
paper's events come from Sherpa; here they are Pythia 8 (recipe version ``RECIPE_VERSION``):

* pp at 13 TeV; the hard process is Z/gamma* + parton at order alpha_s
  (``WeakBosonAndParton:qqbar2gmZg`` and ``qg2gmZq``) with ``PhaseSpace:pTHatMin = 15 GeV``, the
  gamma*/Z line shape (full interference, Pythia's default ``WeakZ0:gmZmode = 0``) generated in
  60 < m < 130 GeV and decayed to mu+ mu- only. Why not inclusive Drell-Yan
  (``WeakSingleBoson:ffbar2gmZ``) with all jets from the shower: at 13 TeV only ~10 % of those
  events have a jet above 20 GeV, so 10x the Pythia time per accepted event, and the leading
  jet's tail would come from the shower's soft-collinear approximation; with the 2 -> 2 matrix
  element the leading jet is exact at O(alpha_s) and the shower (ISR/FSR, on) adds the second and
  third jets. The pT-hat cut (15 GeV) sits below the jet threshold (20 GeV), so the one-jet
  threshold region is only mildly sculpted by it; events whose Born parton fell below 15 GeV are
  missing (a known limitation: the sample is not an inclusive Z + jets cross section).
* multi-parton interactions, ISR, FSR (QCD and QED) and hadronisation on (Pythia defaults).
* muons: final-state |id| = 13 with pT > 20 GeV and |eta| < 2.5; the two hardest such muons must
  have opposite charges and 66 < m_mumu < 116 GeV (the Z window used by ATLAS and CMS, wider
  than 81-101 GeV so that the line shape's tails, incl. the QED-FSR low tail, are part of the
  sample);
* jets: anti-kT R = 0.4 (FastJet) on all other visible final-state particles (neutrinos and the
  two selected muons removed) with |eta| < 5, jets with pT > 20 GeV and |eta| < 5; events with
  exactly 1, 2 or 3 such jets are kept (exclusive multiplicities, as the anchor's samples;
  0 and >= 4 jets are counted and dropped).

Determinism: chunk c of a sample of seed s is a fresh Pythia seeded with
``generation.chunk_seed(s, 0, c)``; ``generate`` concatenates the accepted events of chunks
0, 1, 2, ... in order until it has ``n_events``, so the result depends only on
(n_events, seed, events_per_chunk), never on the number of worker processes.

Output (``generate``), over the N accepted events: ``mu`` (N, 2, 3) float64 (pT [GeV], eta,
phi) of the two muons sorted by pT; ``mu_charge`` (N, 2) int8; ``jets`` (N, 3, 4) float64
(pT, eta, phi, mass [GeV]) sorted by pT, zero-padded beyond ``n_jets`` (N,) int64;
``chunk`` (N,) int64 (the chunk each event came from); and per sample the counts
``n_generated`` (Pythia events used), ``n_fail_muons``, ``n_fail_window``, ``n_0jet``,
``n_4jet`` and the Pythia time ``pythia_s`` (seconds of Pythia + selection + clustering, summed
over chunks, for the speed comparison).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pathlib
import time
from typing import Callable

import numpy as np

from hepjax.data import generation
from hepjax.physics import numpy_kinematics as npkin

__all__ = ["RECIPE_VERSION", "SETTINGS", "MU_PT_MIN", "MU_ETA_MAX", "JET_PT_MIN", "JET_ETA_MAX",
           "JET_RADIUS", "MLL_WINDOW", "MAX_JETS", "pythia_version", "simulate_chunk",
           "select_events", "generate", "cache_path", "load_or_generate", "add_arguments",
           "main"]

# Bump when a change to the settings or the selection changes the events (names the cache).
RECIPE_VERSION = 1

SETTINGS = ("Beams:eCM = 13000.", "WeakBosonAndParton:qqbar2gmZg = on",
            "WeakBosonAndParton:qg2gmZq = on", "PhaseSpace:pTHatMin = 15.",
            "23:mMin = 60.", "23:mMax = 130.", "23:onMode = off", "23:onIfAny = 13",
            "PartonLevel:MPI = on")
MU_PT_MIN, MU_ETA_MAX = 20.0, 2.5
JET_PT_MIN, JET_ETA_MAX, JET_RADIUS = 20.0, 5.0, 0.4
MLL_WINDOW = (66.0, 116.0)
MAX_JETS = 3
_COUNTS = ("n_generated", "n_fail_muons", "n_fail_window", "n_0jet", "n_4jet")


pythia_version = generation.pythia_version


def _ptetaphim(p4):
    """(E, px, py, pz) (..., 4) -> (pT, eta, phi, m) (..., 4)."""
    pt = npkin.pt(p4)
    return np.stack([pt, npkin.eta(p4, pt), npkin.phi(p4, pt), npkin.mass(p4)], -1)


def select_events(rec: dict, n_events: int, fastjet) -> dict[str, np.ndarray]:
    """The event selection of the module docstring on a flat final-state record: ``rec`` holds
    per particle ``event`` (sorted, < n_events), ``id``, ``charge``, ``px``, ``py``, ``pz``,
    ``E`` (final-state particles only). Returns the per-event arrays of ``generate`` (without
    ``chunk``) for the accepted events plus the rejection counts."""
    event = np.asarray(rec["event"], np.int64)
    pt = np.hypot(rec["px"], rec["py"])
    eta = np.arcsinh(rec["pz"] / np.where(pt > 0, pt, 1e-12))
    is_mu = (np.abs(rec["id"]) == 13) & (pt > MU_PT_MIN) & (np.abs(eta) < MU_ETA_MAX)
    mu_idx = np.flatnonzero(is_mu)
    # the two hardest muons of each event
    order = np.lexsort((-pt[mu_idx], event[mu_idx]))
    mu_idx = mu_idx[order]
    ev_mu = event[mu_idx]
    first = np.searchsorted(ev_mu, np.arange(n_events))
    n_mu = np.bincount(ev_mu, minlength=n_events)
    has2 = n_mu >= 2
    i1 = mu_idx[np.minimum(first, len(mu_idx) - 1)] if len(mu_idx) else np.zeros(n_events, int)
    i2 = mu_idx[np.minimum(first + 1, len(mu_idx) - 1)] if len(mu_idx) else np.zeros(n_events, int)
    q1, q2 = rec["charge"][i1], rec["charge"][i2]
    ok_mu = has2 & (q1 * q2 < 0)
    p4 = np.stack([rec["E"], rec["px"], rec["py"], rec["pz"]], -1)
    mll = npkin.mass(p4[i1] + p4[i2]) if len(mu_idx) else np.zeros(n_events)
    ok_win = ok_mu & (mll > MLL_WINDOW[0]) & (mll < MLL_WINDOW[1])
    # jets from everything else (neutrinos and the selected muons removed), |eta| < 5
    drop = np.zeros(len(event), bool)
    drop[i1[ok_win]] = True
    drop[i2[ok_win]] = True
    visible = (~np.isin(np.abs(rec["id"]), (12, 14, 16)) & ~drop & (pt > 0)
               & (np.abs(eta) < JET_ETA_MAX) & ok_win[event])
    objects = {k: rec[k][visible] for k in ("px", "py", "pz", "E")}
    jets = generation.cluster_antikt(fastjet, objects, event[visible], n_events, JET_RADIUS,
                                     JET_PT_MIN, constituents=False)
    jk = _ptetaphim(jets["p4"])
    good = np.abs(jk[:, 1]) < JET_ETA_MAX
    n_jets = np.bincount(jets["event"][good], minlength=n_events)
    keep = ok_win & (n_jets >= 1) & (n_jets <= MAX_JETS)
    rows = np.flatnonzero(keep)
    # pT-ordered jets of the kept events (cluster_antikt's rank orders all jets by pT)
    jets_out = np.zeros((n_events, MAX_JETS, 4))
    g = np.flatnonzero(good & keep[jets["event"]])
    slot = np.zeros(len(jets["pt"]), np.int64)
    # rank among the good jets: the |eta| < 5 cut can only remove jets; recompute the rank
    ev_g = jets["event"][g]
    order = np.lexsort((-jets["pt"][g], ev_g))
    g = g[order]
    ev_g = jets["event"][g]
    start = np.searchsorted(ev_g, ev_g, side="left")
    slot[g] = np.arange(len(g)) - start
    jets_out[ev_g, slot[g]] = jk[g]
    mu = np.stack([_ptetaphim(p4[i1])[:, :3], _ptetaphim(p4[i2])[:, :3]], 1)
    return {"mu": mu[rows], "mu_charge": np.stack([q1, q2], 1)[rows].astype(np.int8),
            "jets": jets_out[rows], "n_jets": n_jets[rows].astype(np.int64),
            "n_generated": n_events, "n_fail_muons": int((~ok_mu).sum()),
            "n_fail_window": int((ok_mu & ~ok_win).sum()),
            "n_0jet": int((ok_win & (n_jets == 0)).sum()),
            "n_4jet": int((ok_win & (n_jets > MAX_JETS)).sum())}


def simulate_chunk(seed: int, chunk_index: int, events_per_chunk: int = 500) -> dict:
    """Accepted events of one chunk (a fresh Pythia seeded with ``chunk_seed(seed, 0, c)``)."""
    pythia8, fastjet = generation.require_generators()
    t0 = time.perf_counter()
    pythia = generation._pythia(SETTINGS, generation.chunk_seed(seed, 0, chunk_index))
    events = pythia.nextBatch(int(events_per_chunk))
    data = pythia.particleData
    rec, _ = generation._flat_event_record(events, lambda i: data.chargeType(i) / 3.0)
    final = rec["status"] > 0
    rec = {k: rec[k][final] for k in ("event", "id", "charge", "px", "py", "pz", "E")}
    out = select_events(rec, int(events_per_chunk), fastjet)
    out["chunk"] = np.full(len(out["n_jets"]), chunk_index, np.int64)
    out["pythia_s"] = time.perf_counter() - t0
    return out


def _chunk_job(seed, chunk_index, events_per_chunk, chunk_dir=None):
    """One chunk, read back from ``chunk_dir`` when an earlier (killed) run finished it, else
    simulated and, with ``chunk_dir``, saved there atomically."""
    path = None if chunk_dir is None else os.path.join(
        chunk_dir, f"zjets_recipe{RECIPE_VERSION}_pythia{pythia_version()}_seed{int(seed)}"
                   f"_chunk{int(chunk_index):06d}_n{int(events_per_chunk)}.npz")
    if path is not None and os.path.exists(path):
        with np.load(path) as f:
            return {k: (f[k] if f[k].ndim else f[k].item()) for k in f.files}
    out = simulate_chunk(seed, chunk_index, events_per_chunk)
    if path is not None:
        tmp = f"{path}.partial-{os.getpid()}.npz"
        np.savez(tmp, **out)
        os.replace(tmp, path)
    return out


def generate(n_events: int, seed: int, *, events_per_chunk: int = 500, workers: int = 1,
             progress: Callable[[int], None] | None = None,
             chunk_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """``n_events`` accepted Z(-> mu mu) + 1-3 jet events (module docstring), a function of
    (n_events, seed, events_per_chunk) only; ``workers`` > 1 runs chunks in that many processes
    (identical result). ``progress(k)`` gets the number of events each chunk contributed. With
    ``chunk_dir`` every finished chunk is kept there and read back by a rerun (a killed
    generation resumes; the chunk files are named by seed, index and size)."""
    generation.require_generators()
    n_events = int(n_events)
    if chunk_dir is not None:
        os.makedirs(chunk_dir, exist_ok=True)
    if n_events < 1:
        raise ValueError(f"n_events={n_events}: expected a positive number of events")
    chunks, have, nxt = [], 0, 0

    def accept(ch):
        nonlocal have
        take = min(len(ch["n_jets"]), n_events - have)
        if have >= n_events:
            return
        chunks.append({k: (v[:take] if isinstance(v, np.ndarray) else v) for k, v in ch.items()})
        have += take
        if progress is not None:
            progress(take)

    if workers <= 1:
        while have < n_events:
            accept(_chunk_job(seed, nxt, events_per_chunk, chunk_dir))
            nxt += 1
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(int(workers), mp_context=ctx) as pool:
            pending = []
            while have < n_events:
                while len(pending) < workers:
                    pending.append(pool.submit(_chunk_job, seed, nxt, events_per_chunk,
                                               chunk_dir))
                    nxt += 1
                accept(pending.pop(0).result())
            for f in pending:
                f.cancel()
    out = {k: np.concatenate([c[k] for c in chunks]) for k in ("mu", "mu_charge", "jets",
                                                               "n_jets", "chunk")}
    for k in _COUNTS:
        out[k] = np.int64(sum(c[k] for c in chunks))
    out["pythia_s"] = np.float64(sum(c["pythia_s"] for c in chunks))
    out["seed"] = np.int64(seed)
    out["events_per_chunk"] = np.int64(events_per_chunk)
    return out


def cache_path(directory, n_events: int, seed: int, events_per_chunk: int = 500) -> pathlib.Path:
    """``zjets_recipe{R}_pythia{version}_seed{S}_n{N}_chunk{C}.npz`` in ``directory``."""
    return pathlib.Path(directory) / (f"zjets_recipe{RECIPE_VERSION}_pythia{pythia_version()}"
                                      f"_seed{int(seed)}_n{int(n_events)}"
                                      f"_chunk{int(events_per_chunk)}.npz")


_REQUIRED = {"mu": 3, "mu_charge": 2, "jets": 3, "n_jets": 1}


def load_or_generate(directory, n_events: int, seed: int, *, events_per_chunk: int = 500,
                     workers: int = 1, progress=None) -> dict[str, np.ndarray]:
    """The cached sample (``cache_path``) or, if absent, a new one written there atomically
    (its chunks are kept in ``directory/chunks`` as they finish, so a killed run resumes and a
    larger sample of the same seed reuses them)."""
    path = cache_path(directory, n_events, seed, events_per_chunk)
    if path.exists():
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
        for k, nd in _REQUIRED.items():
            if k not in data or data[k].ndim != nd or len(data[k]) != n_events:
                raise ValueError(f"{path}: field {k!r} missing or not of {n_events} rows with "
                                 f"{nd} dimensions; delete the file to regenerate it")
        return data
    data = generate(n_events, seed, events_per_chunk=events_per_chunk, workers=workers,
                    progress=progress, chunk_dir=path.parent / "chunks")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.partial-{os.getpid()}.npz")
    np.savez(tmp, **data)
    os.replace(tmp, path)
    return data


def add_arguments(parser) -> None:
    """Arguments of ``hepjax generate zjets``."""
    parser.add_argument("--n-events", type=int, required=True,
                        help="accepted Z(-> mu mu) + 1-3 jet events")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True,
                        help="output directory: the sample is written there as "
                             "zjets_recipe{R}_pythia{version}_seed{S}_n{N}_chunk{C}.npz")
    parser.add_argument("--events-per-chunk", type=int, default=500,
                        help="Pythia events per seeded chunk (changes the sample)")
    parser.add_argument("--workers", type=int, default=1, help="Pythia processes")


def main(args) -> dict:
    """``hepjax generate zjets``: writes (or finds) the cached sample; returns a summary."""
    t = time.perf_counter()
    data = load_or_generate(args.out, args.n_events, args.seed,
                            events_per_chunk=args.events_per_chunk, workers=args.workers)
    seconds = time.perf_counter() - t
    return {"out": str(cache_path(args.out, args.n_events, args.seed, args.events_per_chunk)),
            "n_events": int(len(data["n_jets"])), "pythia_events": int(data["n_generated"]),
            "n_jets_1_2_3": np.bincount(data["n_jets"], minlength=4)[1:].tolist(),
            "seconds": round(seconds, 2), "events_per_s": round(args.n_events / seconds, 2),
            "pythia_s_per_event_one_core": float(data["pythia_s"]) / args.n_events,
            "workers": args.workers}
