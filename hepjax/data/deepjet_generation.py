"""Generated jets in the CMS DeepJet ntuple schema (Pythia 8 + pile-up + a fast detector).

    hepjax generate deepjet --n-events 20000 --seed 0 --out ~/.cache/hepjax/deepjet_gen.root

Writes a ROOT file with the tree ``deepntuplizer/tree`` and the branch names and meanings of
the CMS DeepNtuplizer output (DL4Jets/DeepJetCore's ``ntuple_ttbar.root``), so that
``hepjax.data.formats.read_deepjet_ntuple`` / ``hepjax.data.deepjet_ntuple.read_deepjet_ntuple``
reads it unchanged. DeepJet: E. Bols, J. Kieseler, M. Verzetti, M. Stoye, A. Stakia, "Jet flavour
classification using DeepJet", JINST 15 (2020) P12012.

Recipe (``RECIPE_VERSION``; everything per chunk of ``events_per_chunk`` events, seeded by
``hepjax.data.generation.chunk_seed``, so the output depends only on the arguments):

* **Hard process**: Pythia 8 at 13 TeV, MPI, ISR/FSR and hadronisation on; ``ttbar``
  (``Top:gg2ttbar``, ``Top:qqbar2ttbar``, inclusive top decays, like the CMS sample), and
  optionally ``qcd`` (``HardQCD:all``, pTHat > 15 GeV) and ``zjet`` (Z(->nu nu) + jet:
  ``qqbar -> Z g`` and ``q g -> Z q``, pTHat > 15 GeV) for more quark and gluon jets
  (``--process qcd|zjet``). Measured with pile-up mu = 20, seed 0 (2026-12-06): 2,000 QCD
  events -> 11,851 jets, 7,558 labelled (b, c, uds, g = 68, 291, 1,518, 5,681), median jet pT
  25 GeV; 1,000 Z+jet events -> 6,737 jets, 4,107 labelled (54, 160, 994, 2,899), median
  25 GeV (the uds jets 28 GeV); tt-bar, for comparison: median 33 GeV; the CMS file: 47 GeV.
  Both are gluon-rich at these thresholds: near 20-30 GeV most jets are radiation (ISR, the
  second and third jets), not the recoiling hard parton; a higher pTHat would be closer to
  the CMS kinematics. The unlabelled rest are pile-up jets. Rates (one niced core of a 2-core
  VM at load ~10): QCD 2.3 events/s, Z+jet 1.25 events/s. Particles with c tau0 > 10 mm are stable
  (``ParticleDecays:limitTau0``, the usual LHC setting: K0S, Lambda reach the detector).
* **Pile-up**: Poisson(``pileup_mu``) ``SoftQCD:nonDiffractive`` events per hard event (mean 20
  by default; the CMS file has about 28 vertices, so this is *modest*). Every vertex (hard and
  pile-up) sits at z ~ N(0, ``sigma_z_cm`` = 3.5 cm), x = y = 0; ``npv`` = 1 + the number of
  pile-up events. Pile-up particles join the E-flow and the jets.
* **Detector**: ``hepjax.data.detector`` (Delphes-ATLAS-like: tracking efficiency and pT
  smearing, ECal/HCal towers, energy flow) on the hard + pile-up particles, extended with
  track impact parameters: the true transverse and longitudinal IPs of the straight line from
  the particle's *production vertex* (so b/c-hadron, tau and strange decay products are
  displaced) with respect to the hard-scatter vertex, smeared by Gaussians with
  sigma_d0 = a (+) b / pT (15 um (+) 90 um GeV / pT) and sigma_dz = 40 um (+) 150 um GeV / pT
  (read off the CMS ntuple's prompt tracks: the median |dxy| of tracks used in the PV fit is
  105 um at pT < 1 GeV and 10 um above 10 GeV). Curvature is ignored for the IP.
* **Secondary vertices**: *truth-seeded*, not fitted: the displaced decay vertices of the hard
  event's generator record (b, c, tau, strange decays: every production point > 1 um from the
  primary vertex) with >= 2 reconstructed tracks of pT > 0.8 GeV; the position is smeared with
  sigma_T = 150 um (+) 5 % of the flight distance (per transverse coordinate) and sigma_z =
  1.5 sigma_T; kept if the 2D flight distance is < 2.5 cm with significance > 3 and the flight
  direction lies within Delta R < 0.4 of the jet axis (the CMS IVF-to-jet association).
  ``sv_chi2`` is drawn from a chi2 with ``sv_ndf`` = 2 ntracks - 3 degrees of freedom.
* **Jets**: anti-kT R = 0.4 (FastJet) on the E-flow objects, 20 < pT < 100 GeV, |eta| < 2.4
  (the CMS ntuple's range); uncorrected E-flow pT (CMS's ``jet_pt`` carries jet-energy
  corrections). Generator jets: anti-kT 0.4 on the hard event's final-state particles without
  neutrinos (``gen_pt``; with neutrinos ``gen_pt_WithNu``), matched to the closest reco jet
  within Delta R < 0.2 (0 when unmatched).
* **Flavour**: ghost matching (Cacciari, Salam, Soyez, "The catchment area of jets", JHEP 04
  (2008) 005; CMS's hadron/parton flavour): the weakly decaying b and c hadrons and the partons
  at the end of the shower (Pythia status |71|, |72|) are added to the clustering with their
  momenta scaled by 1e-18. isB: a b hadron in the jet; else isC: a c hadron; else the hardest
  ghost parton: gluon -> isG, u/d/s -> isUDS; otherwise (pile-up jets) no flag, and the
  reader excludes the jet.

Branches and where they differ from CMS (``Cpfcan_*`` = tracks, ``Npfcan_*`` = E-flow towers):

============================  ==================================================================
Cpfcan_pt, _etarel, _phirel   track pT (smeared), eta/phi relative to the jet axis (as CMS)
Cpfcan_dxy, Cpfcan_dz         smeared IPs in cm w.r.t. the hard-scatter vertex (as CMS)
Cpfcan_VTX_ass                pile-up track within 3 sigma in dz of its own vertex: 5; |dxy| and
                              |dz| within 3 sigma of the PV: 7 (UsedInFitTight); |dxy| < 0.2 cm
                              and |dz| < 0.3 cm: 4 (CompatibilityBTag); else 1 (OtherDeltaZ)
Cpfcan_puppiw                 1 for VTX_ass 7 and 4, else 0 (no PUPPI: a stated proxy)
Cpfcan_dptdpt                 (sigma_pT / pT^2)^2 from the detector's momentum resolution
Cpfcan_detadeta, _dphidphi    (0.3 mrad (+) 1.5 mrad GeV / pT)^2, a stated angular resolution
Cpfcan_isMu, Cpfcan_isEl      from the track's true PDG id (perfect lepton identification)
Cpfcan_chi2                   0 (neutral value: no track fit; CMS's median is 0 too)
Cpfcan_highPurity             2 (the constant of the CMS file)
Cpfcan_BtagPf_trackSip2dVal,  extra (not in the CMS test file): IP signed by the jet axis,
 _Sip2dSig, _Sip3dVal, _Sip3dSig  2D and 3D, with their significances
Npfcan_pt, _etarel, _phirel   E-flow tower pT and position relative to the jet axis
Npfcan_isGamma, _HadFrac      ECal tower: 1, 0; HCal tower: 0, 1 (CMS: the same values)
sv_*                          truth-seeded vertices (above); sv_dxy, sv_d3d in cm
jet_pt, jet_eta               uncorrected E-flow jet pT, |eta|
npv                           1 + pile-up events
QG_mult, QG_axis2             from the jet's tracks with puppiw = 1 and towers above 1 GeV:
                              multiplicity, minor axis of the pT^2-weighted eta-phi spread
QG_ptD, QG_ptD_true           QG_ptD = jet_qgl = -1, as CMS's file has it (its QG_ptD equals
                              jet_qgl); QG_ptD_true (extra) is pT_D of the same candidates
jet_qgl                       -1: CMS's quark-gluon likelihood is not computed here (the reader
                              turns it into NaN / qgl_valid = False)
gen_pt, gen_pt_WithNu         matched generator jet pT (0: unmatched)
event_no, jet_no              global event number, jet index in its event
isB, isC, isUDS, isG          ghost-matched flavour (b and c include g -> bb / cc)
============================  ==================================================================
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import time

import numpy as np

from hepjax.data import detector as detector_lib
from hepjax.data import generation as gen_lib

__all__ = ["RECIPE_VERSION", "PROCESSES", "GenConfig", "simulate_chunk", "generate",
           "write_root", "default_path", "impact_parameters", "ip_resolution", "add_arguments",
           "main"]

RECIPE_VERSION = 1
TREE = "deepntuplizer/tree"
_COMMON = ("Beams:eCM = 13000.", "ParticleDecays:limitTau0 = on", "ParticleDecays:tau0Max = 10")
PROCESSES = {
    "ttbar": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
    "qcd": ("HardQCD:all = on", "PhaseSpace:pTHatMin = 15."),
    "zjet": ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
             "23:onMode = off", "23:onIfAny = 12 14 16", "PhaseSpace:pTHatMin = 15."),
}
_PU_SETTINGS = ("SoftQCD:nonDiffractive = on",)
_PION_MASS = 0.13957
_GHOST_SCALE = 1e-18


@dataclasses.dataclass(frozen=True)
class GenConfig:
    process: str = "ttbar"
    events_per_chunk: int = 100
    pileup_mu: float = 20.0
    sigma_z_cm: float = 3.5
    jet_radius: float = 0.4
    pt_min: float = 20.0
    pt_max: float = 100.0
    eta_max: float = 2.4
    gen_match_dr: float = 0.2
    # track IP resolution: sigma = a (+) b / pT, cm and cm GeV
    d0_a: float = 15e-4
    d0_b: float = 90e-4
    dz_a: float = 40e-4
    dz_b: float = 150e-4
    # truth-seeded secondary vertices
    sv_track_pt_min: float = 0.8
    sv_sigma_t: float = 150e-4
    sv_sigma_rel: float = 0.05
    sv_min_sig: float = 3.0
    sv_max_dxy: float = 2.5
    sv_max_dr: float = 0.4


def ip_resolution(pt, a, b):
    """sigma = sqrt(a^2 + (b / pT)^2) (cm), the usual multiple-scattering + intrinsic form."""
    pt = np.asarray(pt, np.float64)
    return np.hypot(a, b / np.maximum(pt, 1e-3))


def impact_parameters(vx, vy, vz, px, py, pz, pv_z):
    """Straight-line transverse and longitudinal impact parameters (cm) of a track produced at
    (vx, vy, vz) with momentum (px, py, pz), with respect to the vertex (0, 0, pv_z): CMS's
    dxy = (-(vx) py + (vy) px) / pT and dz = (vz - pv_z) - ((vx) px + (vy) py) / pT * pz / pT."""
    pt = np.hypot(px, py)
    dxy = (-vx * py + vy * px) / pt
    dz = (vz - pv_z) - (vx * px + vy * py) / pt * pz / pt
    return dxy, dz


def _hadron_flavour(pid):
    """Heaviest quark of a hadron's PDG id (5, 4 or 0), vectorised."""
    a = np.abs(np.asarray(pid, np.int64))
    q1, q2, q3 = (a // 1000) % 10, (a // 100) % 10, (a // 10) % 10
    hadron = (a > 100) & (a < 10000)
    heavy = np.where(q1 > 0, np.maximum(np.maximum(q1, q2), q3), np.maximum(q2, q3))
    return np.where(hadron & np.isin(heavy, (4, 5)), heavy, 0)


def _flat(events, charge_of):
    import awkward as ak
    col, offsets = gen_lib._flat_event_record(events, charge_of)
    prt = events.prt
    for k, name in (("px", "vx"), ("py", "vy"), ("pz", "vz")):
        # vProd is None where Pythia left the vertex unset (the origin)
        v = ak.fill_none(ak.flatten(prt.vProd[k]), 0.0)
        col[name] = np.asarray(ak.to_numpy(v), np.float64) / 10.0   # mm -> cm
    return col, offsets


def _weak_heavy_hadrons(rec):
    """Indices of the weakly decaying b and c hadrons (no daughter of the same flavour)."""
    flav = _hadron_flavour(rec["id"])
    cand = np.flatnonzero(flav > 0)
    out = []
    for i in cand:
        d1, d2 = rec["daughter1"][i], rec["daughter2"][i]
        if d1 <= 0:
            continue
        base = i - _local(rec, i)
        ds = np.arange(d1, max(d2, d1) + 1) + base
        if not np.any(_hadron_flavour(rec["id"][ds]) == flav[i]):
            out.append(i)
    return np.asarray(out, np.int64)


def _local(rec, i):
    return rec["_local"][i]


def simulate_chunk(cfg: GenConfig, seed: int, chunk: int,
                   det: detector_lib.DetectorConfig = detector_lib.DetectorConfig()) -> dict:
    """Jets of one chunk: numpy columns, scalar branches (J,) and, per jagged collection
    ("Cpfcan", "Npfcan", "sv"), ``<coll>__counts`` (J,) and flat ``<coll>_<field>`` arrays."""
    pythia8, fastjet = gen_lib.require_generators()
    if cfg.process not in PROCESSES:
        raise ValueError(f"process={cfg.process!r}; valid: {sorted(PROCESSES)}")
    proc_index = sorted(PROCESSES).index(cfg.process)
    n_ev = int(cfg.events_per_chunk)
    pythia = gen_lib._pythia(_COMMON + PROCESSES[cfg.process],
                             gen_lib.chunk_seed(seed, proc_index, chunk))
    data = pythia.particleData
    charge_of = lambda i: data.chargeType(i) / 3.0  # noqa: E731
    rec, offsets = _flat(pythia.nextBatch(n_ev), charge_of)
    n_ev = len(offsets) - 1
    rec["_local"] = np.arange(len(rec["id"])) - np.repeat(offsets[:-1], np.diff(offsets))
    rng = np.random.default_rng([int(seed), proc_index, int(chunk), 7])
    z_hs = rng.normal(0.0, cfg.sigma_z_cm, n_ev)
    n_pu = rng.poisson(cfg.pileup_mu, n_ev) if cfg.pileup_mu > 0 else np.zeros(n_ev, np.int64)
    z_pu = rng.normal(0.0, cfg.sigma_z_cm, int(n_pu.sum()))

    # hard-event final state (neutrinos kept aside for gen_pt_WithNu)
    fs = (rec["status"] > 0) & (np.hypot(rec["px"], rec["py"]) > 0)
    nu = fs & np.isin(np.abs(rec["id"]), detector_lib.NEUTRINOS)
    vis = fs & ~nu
    cols = ("event", "px", "py", "pz", "E", "charge", "vx", "vy", "vz")
    hard = {k: rec[k][vis] for k in cols}
    hard["pid"] = rec["id"][vis]
    hard["vz"] = hard["vz"] + z_hs[hard["event"]]
    hard["pu"] = np.full(len(hard["px"]), -1, np.int64)
    parts = [hard]
    if n_pu.sum() > 0:
        pu_pythia = gen_lib._pythia(_COMMON + _PU_SETTINGS,
                                    gen_lib.chunk_seed(seed, 100 + proc_index, chunk))
        pu_rec, pu_off = _flat(pu_pythia.nextBatch(int(n_pu.sum())), charge_of)
        pfs = ((pu_rec["status"] > 0) & (np.hypot(pu_rec["px"], pu_rec["py"]) > 0)
               & ~np.isin(np.abs(pu_rec["id"]), detector_lib.NEUTRINOS))
        owner = np.repeat(np.arange(n_ev), n_pu)          # hard event of each pile-up event
        pu_event = pu_rec["event"][pfs]
        pu = {k: pu_rec[k][pfs] for k in cols}
        pu["pid"] = pu_rec["id"][pfs]
        pu["event"] = owner[pu_event]
        pu["vz"] = pu["vz"] + z_pu[pu_event]
        pu["pu"] = pu_event
        parts.append(pu)
    p = {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}
    order = np.argsort(p["event"], kind="stable")
    p = {k: v[order] for k, v in p.items()}

    # --- detector, and which particle each track is (replaying the detector's first draws)
    objects, tracked, trk_obj = simulate_with_tracks(
        p, np.random.default_rng([int(seed), proc_index, int(chunk), 1]), det,
        "deepjet_generation")
    is_trk = objects["charge"] != 0
    obj_part = np.full(len(objects["px"]), -1, np.int64)
    obj_part[trk_obj] = tracked

    # track quantities (over all objects; meaningful where is_trk)
    t_pt = np.hypot(objects["px"], objects["py"])
    ip_rng = np.random.default_rng([int(seed), proc_index, int(chunk), 2])
    ti = np.where(is_trk, obj_part, 0)
    px, py, pz = p["px"][ti], p["py"][ti], p["pz"][ti]
    true_dxy, true_dz = impact_parameters(p["vx"][ti], p["vy"][ti], p["vz"][ti], px, py, pz,
                                          z_hs[objects["event"]])
    s_dxy = ip_resolution(t_pt, cfg.d0_a, cfg.d0_b)
    s_dz = ip_resolution(t_pt, cfg.dz_a, cfg.dz_b)
    z2 = ip_rng.standard_normal((2, len(t_pt)))
    dxy = true_dxy + s_dxy * z2[0]
    dz = true_dz + s_dz * z2[1]
    # pile-up track: compatible with its own vertex in dz
    pu_id = p["pu"][ti]
    z_own = np.where(pu_id >= 0, z_pu[np.maximum(pu_id, 0)] if len(z_pu) else 0.0,
                     z_hs[objects["event"]])
    dz_own = dz + z_hs[objects["event"]] - z_own
    vtx = np.where((np.abs(dxy) < 3 * s_dxy) & (np.abs(dz) < 3 * s_dz), 7,
                   np.where((np.abs(dxy) < 0.2) & (np.abs(dz) < 0.3), 4, 1))
    vtx = np.where((pu_id >= 0) & (np.abs(dz_own) < 3 * s_dz) & (vtx != 7), 5, vtx)
    rel_res = detector_lib.track_resolution(objects["pid"], t_pt,
                                            np.arcsinh(objects["pz"] / np.maximum(t_pt, 1e-9)),
                                            det)
    ang = ip_resolution(t_pt, 3e-4, 1.5e-3) ** 2

    # --- clustering: reco (E-flow + ghosts), generator jets
    ghosts = _ghosts(rec)
    n_obj = len(objects["px"])
    ev_all = np.concatenate([objects["event"], ghosts["event"]])
    cl = {k: np.concatenate([objects[k], ghosts[k] * _GHOST_SCALE])
          for k in ("px", "py", "pz", "E")}
    order = np.argsort(ev_all, kind="stable")   # objects then ghosts, per event
    jets, const = _cluster(fastjet, {k: v[order] for k, v in cl.items()}, ev_all[order], n_ev,
                           cfg.jet_radius, 5.0)
    const_global = order   # position in clustering input -> index in objects + ghosts
    genj = {}
    for tag, sel in (("gen", vis), ("nu", fs)):
        g, _ = _cluster(fastjet, {k: rec[k][sel] for k in ("px", "py", "pz", "E")},
                        rec["event"][sel], n_ev, cfg.jet_radius, 3.0, constituents=False)
        genj[tag] = g

    jpt, jeta, jphi = _pt_eta_phi(jets["px"], jets["py"], jets["pz"])
    keep = (jpt > cfg.pt_min) & (jpt < cfg.pt_max) & (np.abs(jeta) < cfg.eta_max)
    out = {k: [] for k in _COLUMNS}
    vertices = {}
    for j in np.flatnonzero(keep):
        ev = jets["event"][j]
        idx = const_global[const[j]]
        ghost_idx = idx[idx >= n_obj] - n_obj
        idx = idx[idx < n_obj]
        idx = idx[np.argsort(-np.hypot(objects["px"][idx], objects["py"][idx]), kind="stable")]
        label = _label(ghosts, ghost_idx)
        o_pt, o_eta, o_phi = _pt_eta_phi(objects["px"][idx], objects["py"][idx],
                                         objects["pz"][idx])
        etarel = o_eta - jeta[j]
        phirel = _dphi(o_phi, jphi[j])
        c = is_trk[idx]
        ci = idx[c]
        # 2D/3D IP signed by the jet direction
        sign2 = np.sign(_pca_dot(jphi[j], dxy[ci], px[ci], py[ci]))
        sign2 = np.where(sign2 == 0, 1.0, sign2)
        sin_t = 1.0 / np.cosh(o_eta[c])
        ip3 = np.hypot(dxy[ci], dz[ci] * sin_t)
        s3 = np.hypot(s_dxy[ci], s_dz[ci] * sin_t)
        vc = vtx[ci]
        puppi = np.isin(vc, (7, 4)).astype(np.float32)
        col = {"pt": o_pt[c], "etarel": etarel[c], "phirel": phirel[c], "puppiw": puppi,
               "dxy": dxy[ci], "dz": dz[ci], "VTX_ass": vc.astype(np.int32),
               "dptdpt": (rel_res[ci] / o_pt[c]) ** 2, "detadeta": ang[ci], "dphidphi": ang[ci],
               "isMu": (np.abs(objects["pid"][ci]) == 13).astype(np.int32),
               "isEl": (np.abs(objects["pid"][ci]) == 11).astype(np.int32),
               "chi2": np.zeros(len(ci)), "highPurity": np.full(len(ci), 2, np.int32),
               "BtagPf_trackSip2dVal": sign2 * np.abs(dxy[ci]),
               "BtagPf_trackSip2dSig": sign2 * np.abs(dxy[ci]) / s_dxy[ci],
               "BtagPf_trackSip3dVal": sign2 * ip3, "BtagPf_trackSip3dSig": sign2 * ip3 / s3}
        n = ~c
        gamma = objects["pid"][idx[n]] == 22
        ncol = {"pt": o_pt[n], "etarel": etarel[n], "phirel": phirel[n],
                "isGamma": gamma.astype(np.int32), "HadFrac": (~gamma).astype(np.float32)}
        if ev not in vertices:
            vertices[ev] = _event_vertices(cfg, p, objects, obj_part, is_trk, ev, z_hs[ev],
                                           rng)
        sv = _jet_vertices(cfg, vertices[ev], jeta[j], jphi[j])
        qg = (c & np.isin(vtx[idx], (7, 4))) | (~c & (o_pt > 1.0))
        w = o_pt[qg] ** 2
        if qg.sum() >= 2:
            cov = np.cov(np.stack([etarel[qg], phirel[qg]]), aweights=w, bias=True)
            axis2 = float(np.sqrt(max(np.linalg.eigvalsh(cov)[0], 0.0)))
        else:
            axis2 = 0.0
        ptd = float(np.sqrt(w.sum()) / o_pt[qg].sum()) if qg.any() else 0.0
        out["Cpfcan"].append(col)
        out["Npfcan"].append(ncol)
        out["sv"].append(sv)
        scal = {"jet_pt": jpt[j], "jet_eta": abs(jeta[j]), "npv": 1 + n_pu[ev],
                "event_no": chunk * cfg.events_per_chunk + ev, "jet_no": jets["rank"][j],
                "QG_mult": int(qg.sum()), "QG_axis2": axis2, "QG_ptD_true": ptd,
                "jet_qgl": -1.0, "QG_ptD": -1.0,
                "gen_pt": _match(genj["gen"], ev, jeta[j], jphi[j], cfg.gen_match_dr),
                "gen_pt_WithNu": _match(genj["nu"], ev, jeta[j], jphi[j], cfg.gen_match_dr),
                "isB": int(label == 0), "isC": int(label == 1), "isUDS": int(label == 2),
                "isG": int(label == 3), "n_Cpfcand": int(c.sum()), "n_Npfcand": int(n.sum()),
                "n_sv": len(sv["pt"])}
        for k, v in scal.items():
            out.setdefault(k, []).append(v)
    return _to_arrays(out)


_COLUMNS = ("Cpfcan", "Npfcan", "sv")
_SCALAR_TYPES = {"jet_pt": np.float32, "jet_eta": np.float32, "npv": np.uint32,
                 "event_no": np.uint32, "jet_no": np.uint32, "QG_mult": np.int32,
                 "QG_axis2": np.float32, "QG_ptD_true": np.float32, "jet_qgl": np.float32,
                 "QG_ptD": np.float32, "gen_pt": np.float32, "gen_pt_WithNu": np.float32,
                 "isB": np.uint32, "isC": np.uint32, "isUDS": np.uint32, "isG": np.uint32,
                 "n_Cpfcand": np.uint32, "n_Npfcand": np.uint32, "n_sv": np.uint32}
_JAGGED_TYPES = {
    "Cpfcan": dict(pt=np.float32, etarel=np.float32, phirel=np.float32, puppiw=np.float32,
                   dxy=np.float32, dz=np.float32, VTX_ass=np.uint32, dptdpt=np.float32,
                   detadeta=np.float32, dphidphi=np.float32, isMu=np.uint32, isEl=np.uint32,
                   chi2=np.float32, highPurity=np.uint32, BtagPf_trackSip2dVal=np.float32,
                   BtagPf_trackSip2dSig=np.float32, BtagPf_trackSip3dVal=np.float32,
                   BtagPf_trackSip3dSig=np.float32),
    "Npfcan": dict(pt=np.float32, etarel=np.float32, phirel=np.float32, isGamma=np.uint32,
                   HadFrac=np.float32),
    "sv": dict(pt=np.float32, eta=np.float32, phi=np.float32, mass=np.float32,
               ntracks=np.uint32, chi2=np.float32, ndf=np.float32, dxy=np.float32,
               dxyerr=np.float32, d3d=np.float32, d3derr=np.float32, costhetasvpv=np.float32),
}


def _to_arrays(out):
    """Flat numpy (values, counts) per jagged branch and numpy scalars: picklable, npz-able."""
    arrays = {}
    for k, t in _SCALAR_TYPES.items():
        arrays[k] = np.asarray(out.get(k, []), t)
    for coll, fields in _JAGGED_TYPES.items():
        rows = out[coll]
        arrays[f"{coll}__counts"] = np.asarray([len(r["pt"]) for r in rows], np.int64)
        for f, t in fields.items():
            arrays[f"{coll}_{f}"] = (np.concatenate([np.asarray(r[f]) for r in rows]).astype(t)
                                     if rows else np.zeros(0, t))
    return arrays


def simulate_with_tracks(particles: dict, det_rng: np.random.Generator,
                         det: detector_lib.DetectorConfig, caller: str):
    """``hepjax.data.detector.simulate`` of ``particles`` with ``det_rng``, and which particle
    each track is: the detector's tracking draws replayed from a copy of the generator's state.
    Returns (objects, tracked particle indices, the objects that are those tracks); a
    RuntimeError naming ``caller`` if the replay does not match (the detector changed its draws)."""
    replay = np.random.default_rng()
    replay.bit_generator.state = det_rng.bit_generator.state
    objects = detector_lib.simulate(particles, det_rng, det)
    tracked = _tracked(particles, replay, det)
    trk_obj = np.flatnonzero(objects["charge"] != 0)
    if len(trk_obj) != len(tracked) or not np.array_equal(objects["event"][trk_obj],
                                                          particles["event"][tracked]):
        raise RuntimeError(f"{caller}: could not match the detector's tracks to "
                           "particles (hepjax.data.detector changed its random draws?)")
    return objects, tracked, trk_obj


def _tracked(p, rng, det):
    """Indices of the particles the detector turned into (kept) tracks, replaying its draws."""
    pt = np.hypot(p["px"], p["py"])
    live = pt ** 2 >= 1e-9
    eta = np.where(live, np.arcsinh(p["pz"] / np.where(live, pt, 1.0)), 0.0)
    phi = np.arctan2(p["py"], p["px"])
    pos_eta, pos_phi, reach = detector_lib.propagate(pt, eta, phi, p["charge"], det)
    live &= reach
    u = rng.random(len(pt))
    rng.standard_normal(len(pt))
    tracked = live & (p["charge"] != 0) & (u < detector_lib.track_efficiency(p["pid"], pt,
                                                                            pos_eta, det))
    keep = tracked.copy()
    for edges, nphi in ((det.ecal_eta_edges, det.ecal_nphi), (det.hcal_eta_edges, det.hcal_nphi)):
        _, _, inside = detector_lib._cells(pos_eta, pos_phi, np.asarray(edges, np.float64),
                                           np.asarray(nphi, np.int64))
        keep &= inside
    return np.flatnonzero(keep)


def _ghosts(rec):
    """Ghosts for flavour: weakly decaying b/c hadrons (kind 5 / 4) and end-of-shower partons
    (kind = |id|: 1-3 light quarks, 4, 5, 21 gluon)."""
    had = _weak_heavy_hadrons(rec)
    st = np.abs(rec["status"])
    ida = np.abs(rec["id"])
    par = np.flatnonzero(np.isin(st, (71, 72)) & ((ida <= 5) | (ida == 21)))
    idx = np.concatenate([had, par])
    kind = np.concatenate([_hadron_flavour(rec["id"][had]), ida[par]]).astype(np.int64)
    hadron = np.concatenate([np.ones(len(had), bool), np.zeros(len(par), bool)])
    g = {k: rec[k][idx] for k in ("px", "py", "pz", "E", "event")}
    good = np.hypot(g["px"], g["py"]) > 1e-6
    g = {k: v[good] for k, v in g.items()}
    g["kind"], g["hadron"] = kind[good], hadron[good]
    g["pt"] = np.hypot(g["px"], g["py"])
    return g


def _label(ghosts, idx):
    """0 b, 1 c, 2 uds, 3 g, -1 none (CMS hadron flavour, then the hardest parton)."""
    if len(idx) == 0:
        return -1
    had = ghosts["hadron"][idx]
    kind = ghosts["kind"][idx]
    if np.any(had & (kind == 5)):
        return 0
    if np.any(had & (kind == 4)):
        return 1
    par = idx[~had]
    if len(par) == 0:
        return -1
    k = ghosts["kind"][par[np.argmax(ghosts["pt"][par])]]
    return 3 if k == 21 else (2 if k <= 3 else -1)


def _cluster(fastjet, mom, event, n_ev, radius, min_pt, constituents=True):
    """``generation.cluster_antikt`` as columns px, py, pz, E, event, rank, with each jet's
    constituents as an array of global object indices."""
    jets = gen_lib.cluster_antikt(fastjet, mom, event, n_ev, radius, min_pt, constituents)
    out = {k: jets["p4"][:, i].copy() for i, k in enumerate(("E", "px", "py", "pz"))}
    out["event"], out["rank"] = jets["event"], jets["rank"]
    if not constituents:
        return out, None
    flat, nc = gen_lib.jet_constituents(jets, np.arange(len(jets["event"])))
    bounds = np.concatenate([[0], np.cumsum(nc)])
    const = [flat[bounds[j]:bounds[j + 1]] for j in range(len(nc))]
    return out, const


def _match(gen, ev, eta, phi, max_dr):
    """pT of the generator jet of event ``ev`` closest to (eta, phi) within ``max_dr``, else 0."""
    sel = np.flatnonzero(gen["event"] == ev)
    if len(sel) == 0:
        return 0.0
    pt, g_eta, g_phi = _pt_eta_phi(gen["px"][sel], gen["py"][sel], gen["pz"][sel])
    dr = np.hypot(g_eta - eta, _dphi(g_phi, phi))
    k = np.argmin(dr)
    return float(pt[k]) if dr[k] < max_dr else 0.0


def _pt_eta_phi(px, py, pz):
    pt = np.hypot(px, py)
    return pt, np.arcsinh(pz / np.maximum(pt, 1e-12)), np.arctan2(py, px)


def _dphi(a, b):
    return (np.asarray(a) - b + np.pi) % (2 * np.pi) - np.pi


def _pca_dot(jphi, dxy, px, py):
    """Sign source for the jet-signed IP: the transverse point of closest approach (from the
    smeared dxy: PCA = dxy * (-sin phi, cos phi)) dotted with the jet's transverse direction."""
    phi = np.arctan2(py, px)
    return dxy * (-np.sin(phi) * np.cos(jphi) + np.cos(phi) * np.sin(jphi))


def _event_vertices(cfg, p, objects, obj_part, is_trk, ev, pv_z, rng):
    """Truth-seeded SV candidates of event ``ev`` (rows with the sv_* fields and the flight
    direction ``f_eta``, ``f_phi``), before the association with a jet."""
    sel = np.flatnonzero(is_trk & (objects["event"] == ev)
                         & (np.hypot(objects["px"], objects["py"]) > cfg.sv_track_pt_min))
    part = obj_part[sel]
    hard = p["pu"][part] < 0
    sel, part = sel[hard], part[hard]
    v = np.stack([p["vx"][part], p["vy"][part], p["vz"][part] - pv_z], -1)
    displaced = np.linalg.norm(v, axis=1) > 1e-4
    sel, v = sel[displaced], v[displaced]
    if len(sel) < 2:
        return []
    keys, inv, cnt = np.unique(np.round(v, 9), axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    rows = []
    for k in np.flatnonzero(cnt >= 2):
        members = sel[inv == k]
        x = keys[k]
        s_t = np.hypot(cfg.sv_sigma_t, cfg.sv_sigma_rel * np.linalg.norm(x))
        s_z = 1.5 * s_t
        xm = x + rng.standard_normal(3) * np.array([s_t, s_t, s_z])
        dxy = np.hypot(xm[0], xm[1])
        d3d = np.linalg.norm(xm)
        d3derr = np.sqrt((s_t * dxy) ** 2 + (s_z * xm[2]) ** 2) / max(d3d, 1e-12)
        mom = np.stack([objects[c][members] for c in ("px", "py", "pz")], -1)
        e = np.sqrt((mom ** 2).sum(1) + _PION_MASS ** 2)
        ptot = mom.sum(0)
        mass = np.sqrt(max(e.sum() ** 2 - (ptot ** 2).sum(), 0.0))
        pt, eta, phi = _pt_eta_phi(*ptot)
        _, f_eta, f_phi = _pt_eta_phi(*xm)
        ndf = 2 * len(members) - 3
        chi2 = rng.chisquare(ndf)
        if dxy / s_t > cfg.sv_min_sig and dxy < cfg.sv_max_dxy:
            rows.append({"pt": pt, "eta": eta, "phi": phi, "mass": mass,
                         "ntracks": len(members), "chi2": chi2, "ndf": float(ndf), "dxy": dxy,
                         "dxyerr": s_t, "d3d": d3d, "d3derr": d3derr,
                         "costhetasvpv": float(xm @ ptot / (d3d * np.linalg.norm(ptot))),
                         "f_eta": f_eta, "f_phi": f_phi})
    return rows


def _jet_vertices(cfg, rows, jeta, jphi):
    """The event's SVs whose flight direction is within ``sv_max_dr`` of the jet axis, by
    decreasing 2D flight significance (CMS's order)."""
    rows = [r for r in rows if np.hypot(r["f_eta"] - jeta, _dphi(r["f_phi"], jphi))
            < cfg.sv_max_dr]
    rows.sort(key=lambda r: -r["dxy"] / r["dxyerr"])
    return {f: np.array([r[f] for r in rows], np.float64) for f in _JAGGED_TYPES["sv"]}


# ----------------------------------------------------------------------------- driver + I/O
def default_path(cfg: GenConfig, n_events: int, seed: int) -> pathlib.Path:
    base = pathlib.Path(os.environ.get("HEPJAX_CACHE", pathlib.Path.home() / ".cache" / "hepjax"))
    return base / (f"deepjet_gen_v{RECIPE_VERSION}_{cfg.process}_pu{cfg.pileup_mu:g}_"
                   f"n{n_events}_s{seed}.root")


def generate(cfg: GenConfig, n_events: int, seed: int, *, chunk_dir=None, progress=None,
             max_seconds: float | None = None):
    """Chunks 0, 1, ... of ``cfg.events_per_chunk`` events until ``n_events`` events (or
    ``max_seconds`` of wall time, stopping after a whole chunk). With ``chunk_dir`` each chunk is
    kept as an .npz and read back by a rerun (resumable; identical result). Returns the list of
    chunk arrays (see ``simulate_chunk``)."""
    n_chunks = -(-int(n_events) // int(cfg.events_per_chunk))
    chunks, t0 = [], time.perf_counter()
    if chunk_dir is not None:
        os.makedirs(chunk_dir, exist_ok=True)
    for c in range(n_chunks):
        path = None if chunk_dir is None else os.path.join(chunk_dir, f"chunk{c:06d}.npz")
        if path is not None and os.path.exists(path):
            with np.load(path) as saved:
                arr = {k: saved[k] for k in saved.files}
        else:
            arr = simulate_chunk(cfg, seed, c)
            if path is not None:
                tmp = f"{path}.partial-{os.getpid()}.npz"
                np.savez(tmp, **arr)
                os.replace(tmp, path)
        chunks.append(arr)
        if progress is not None:
            progress(c, len(arr["jet_pt"]), time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    return chunks


def _awkward(arr):
    import awkward as ak
    out = {k: arr[k] for k in _SCALAR_TYPES}
    for coll, fields in _JAGGED_TYPES.items():
        counts = arr[f"{coll}__counts"]
        out[coll] = ak.zip({f: ak.unflatten(arr[f"{coll}_{f}"], counts) for f in fields})
    return out


def write_root(chunks, path) -> int:
    """Writes the chunks to ``path`` (tree ``deepntuplizer/tree``); returns the jets written."""
    import uproot
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".partial-{os.getpid()}.root")
    n = 0
    with uproot.recreate(tmp) as f:
        tree = None
        for arr in chunks:
            if len(arr["jet_pt"]) == 0:
                continue
            data = _awkward(arr)
            if tree is None:
                tree = f.mktree(TREE, {k: v.type if hasattr(v, "layout") else v.dtype
                                       for k, v in data.items()})
            tree.extend(data)
            n += len(arr["jet_pt"])
    os.replace(tmp, path)
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-events", type=int, default=20000, help="hard events to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--process", choices=sorted(PROCESSES), default="ttbar")
    parser.add_argument("--pileup-mu", type=float, default=GenConfig.pileup_mu,
                        help="mean number of pile-up events per hard event")
    parser.add_argument("--events-per-chunk", type=int, default=GenConfig.events_per_chunk)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after the chunk that passes this wall time")
    parser.add_argument("--out", default=None, help="ROOT file to write (default: in "
                        "$HEPJAX_CACHE or ~/.cache/hepjax)")


def main(args) -> int:
    cfg = GenConfig(process=args.process, pileup_mu=args.pileup_mu,
                    events_per_chunk=args.events_per_chunk)
    out = pathlib.Path(args.out) if args.out else default_path(cfg, args.n_events, args.seed)
    chunk_dir = str(out) + ".chunks"
    total = [0]

    def progress(c, n, t):
        total[0] += n
        print(f"chunk {c}: {n} jets, total {total[0]} jets, {t:.0f} s, "
              f"{total[0] / max(t, 1e-9):.1f} jets/s", flush=True)

    t0 = time.perf_counter()
    chunks = generate(cfg, args.n_events, args.seed, chunk_dir=chunk_dir, progress=progress,
                      max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)
    n = write_root(chunks, out)
    print(f"wrote {n} jets to {out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(p)
    raise SystemExit(main(p.parse_args()))
