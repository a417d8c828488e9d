"""Clustering metrics: truth matching by shared energy, efficiency, fake rate, energy response.

The matching rule (``match_event``), per event. For truth particle p and reconstructed object r
(a set of hits):

* ``share_hp = signal_energy_h * fraction_hp``: particle p's energy in hit h (no noise);
  ``V_p = sum_h share_hp`` is p's visible energy (in all read-out hits).
* ``E_r = sum_{h in r} energy_h``: the object's measured energy (noise included).
* ``S_pr = sum_{h in r} share_hp``: the energy they share.
* p and r are **matched** iff ``S_pr > 0.5 V_p`` and ``S_pr > 0.5 E_r``. Both are strict
  majorities, so a particle matches at most one object and an object at most one particle.

Efficiency = matched particles / particles with ``V_p > 0``; fake rate = unmatched objects /
objects. Binomial errors sqrt(p (1 - p) / n). A particle is *close* when another particle of its
event enters within ``close_distance`` (2 Moliere radii of CE-E by default) of its entry point;
an object counts in the *close* category when the particle it shares most energy with is close
(objects sharing no energy with any particle -- pure noise -- count only in the inclusive rate).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["match_event", "evaluate", "binomial", "summarize", "response_table",
           "composition_table", "ENERGY_BINS", "nearest_distance"]

ENERGY_BINS = (10.0, 30.0, 60.0, 100.0, 150.0, 200.0)


def nearest_distance(xy: np.ndarray) -> np.ndarray:
    """(P, 2) entry points -> (P,) distance to the nearest other particle (inf if alone)."""
    p = len(xy)
    if p < 2:
        return np.full(p, np.inf)
    d = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
    d[np.arange(p), np.arange(p)] = np.inf
    return d.min(1)


def match_event(share: np.ndarray, hit_energy: np.ndarray, labels: np.ndarray,
                n_objects: int) -> dict:
    """Matching of one event (real hits only). share (N, P), hit_energy (N,), labels (N,) object
    per hit (-1 none), n_objects R. Returns ``S`` (P, R), ``visible`` (P,), ``reco_energy``
    (R,), ``particle_match`` (P,) object index or -1, ``object_match`` (R,) particle or -1,
    ``object_best`` (R,) particle sharing the most energy (-1 if none)."""
    p = share.shape[1]
    r = int(n_objects)
    sel = labels >= 0
    lab = labels[sel].astype(np.int64)
    if r and lab.size and lab.max() >= r:
        raise ValueError(f"labels reach {lab.max()} but n_objects={r}")
    s = np.stack([np.bincount(lab, weights=share[sel, k], minlength=r) for k in range(p)]) \
        if p else np.zeros((0, r))
    e_r = np.bincount(lab, weights=hit_energy[sel], minlength=r) if r else np.zeros(0)
    visible = share.sum(0)
    ok = (s > 0.5 * visible[:, None]) & (s > 0.5 * e_r[None, :])
    particle_match = np.where(ok.any(1), ok.argmax(1), -1) if r else np.full(p, -1)
    object_match = np.where(ok.any(0), ok.argmax(0), -1) if p else np.full(r, -1)
    object_best = np.where(s.max(0) > 0, s.argmax(0), -1) if (p and r) else np.full(r, -1)
    return {"S": s, "visible": visible, "reco_energy": e_r, "particle_match": particle_match,
            "object_match": object_match, "object_best": object_best}


def evaluate(padded: dict, labels: np.ndarray, object_energy: list, *, close_distance: float,
             type_prob: list | None = None) -> dict:
    """Per-particle and per-object rows over all events of ``padded`` (``pad_events``):
    ``labels`` (E, N) object per hit; ``object_energy[e]`` (R_e,) the algorithm's energy of each
    object (the network: corrected; CLUE: summed hit energy); ``type_prob[e]`` (R_e, C)
    optional. Returns numpy columns: particles (``energy``, ``pdg``, ``visible``, ``nn_distance``,
    ``close``, ``matched``, ``reco_energy`` (the algorithm's energy of the matched object),
    ``reco_type``, ``completeness`` S_pr / V_p and ``purity`` S_pr / E_r of the matched object,
    nan if unmatched) and objects (``matched``, ``close``, ``noise_only``, ``raw_energy``)."""
    cols = {k: [] for k in ("p_energy", "p_pdg", "p_visible", "p_nn", "p_matched", "p_reco_e",
                            "p_reco_type", "p_event", "p_completeness", "p_purity", "o_matched",
                            "o_close", "o_noise", "o_raw_e")}
    mask = padded["hit_mask"]
    for e in range(mask.shape[0]):
        n = int(mask[e].sum())
        npart = int(padded["n_particles"][e])
        share = (padded["hit_signal_energy"][e, :n, None].astype(np.float64)
                 * padded["hit_fraction"][e, :n, :npart])
        lab = np.asarray(labels[e][:n])
        obj_e = np.asarray(object_energy[e], np.float64)
        m = match_event(share, padded["hit_energy"][e, :n].astype(np.float64), lab, len(obj_e))
        nn = nearest_distance(padded["particle_position"][e, :npart, :2].astype(np.float64))
        pm = m["particle_match"]
        cols["p_energy"].append(padded["particle_energy"][e, :npart])
        cols["p_pdg"].append(padded["particle_pdg"][e, :npart])
        cols["p_visible"].append(m["visible"])
        cols["p_nn"].append(nn)
        cols["p_matched"].append(pm >= 0)
        cols["p_reco_e"].append(np.where(pm >= 0, obj_e[np.maximum(pm, 0)] if len(obj_e) else 0,
                                         np.nan))
        if type_prob is not None and len(obj_e):
            cols["p_reco_type"].append(np.where(pm >= 0, type_prob[e][np.maximum(pm, 0)].argmax(-1),
                                                -1))
        else:
            cols["p_reco_type"].append(np.full(npart, -1))
        cols["p_event"].append(np.full(npart, e))
        s_pm = m["S"][np.arange(npart), np.maximum(pm, 0)] if len(obj_e) else np.zeros(npart)
        with np.errstate(invalid="ignore", divide="ignore"):
            cols["p_completeness"].append(np.where(pm >= 0, s_pm / m["visible"], np.nan))
            cols["p_purity"].append(np.where(
                pm >= 0, s_pm / m["reco_energy"][np.maximum(pm, 0)] if len(obj_e) else 0, np.nan))
        best = m["object_best"]
        cols["o_matched"].append(m["object_match"] >= 0)
        cols["o_close"].append((best >= 0) & (nn[np.maximum(best, 0)] < close_distance)
                               if npart else np.zeros(len(best), bool))
        cols["o_noise"].append(best < 0)
        cols["o_raw_e"].append(m["reco_energy"])
    out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    out["p_close"] = out["p_nn"] < close_distance
    return out


def binomial(k: int, n: int) -> dict:
    """Fraction k/n with its binomial standard error (nan when n = 0)."""
    if n == 0:
        return {"value": math.nan, "error": math.nan, "k": 0, "n": 0}
    p = k / n
    return {"value": p, "error": math.sqrt(p * (1 - p) / n), "k": int(k), "n": int(n)}


def _eff(rows, sel):
    sel = sel & (rows["p_visible"] > 0)
    return binomial(int(rows["p_matched"][sel].sum()), int(sel.sum()))


def _fake(rows, sel):
    return binomial(int((~rows["o_matched"][sel]).sum()), int(sel.sum()))


def summarize(rows: dict, *, min_object_energy: float = 1.0) -> dict:
    """Efficiency and fake rate: all particles / objects, close ones, isolated ones; the fake
    rate also for objects above ``min_object_energy`` GeV (measured)."""
    allp = np.ones(len(rows["p_matched"]), bool)
    allo = np.ones(len(rows["o_matched"]), bool)
    return {
        "efficiency": _eff(rows, allp),
        "efficiency_close": _eff(rows, rows["p_close"]),
        "efficiency_isolated": _eff(rows, ~rows["p_close"]),
        "fake_rate": _fake(rows, allo),
        "fake_rate_close": _fake(rows, rows["o_close"]),
        "fake_rate_above_1gev": _fake(rows, rows["o_raw_e"] > min_object_energy),
        "objects_per_event_noise_only": int(rows["o_noise"].sum()),
    }


def _robust(r):
    """median, effective sigma (half the central 68 % interval), mean, std, n; errors
    sigma/sqrt(2n) (Gaussian approximation)."""
    r = r[np.isfinite(r)]
    n = len(r)
    if n == 0:
        return {"n": 0}
    lo, med, hi = np.percentile(r, [15.865, 50, 84.135])
    s_eff = 0.5 * (hi - lo)
    return {"n": int(n), "median": float(med), "sigma_eff": float(s_eff),
            "resolution": float(s_eff / med) if med > 0 else math.nan,
            "resolution_error": float(s_eff / med / math.sqrt(2 * n)) if med > 0 else math.nan,
            "mean": float(r.mean()), "std": float(r.std())}


def composition_table(rows: dict, classes: dict | None = None) -> dict:
    """Where the energy of matched particles goes, per class (``classes``: name -> tuple of
    |pdg|): mean missing fraction 1 - S_pr / V_p (the particle's visible energy outside its
    object) and mean foreign fraction 1 - S_pr / E_r (the object's measured energy from other
    particles and noise), with their standard errors."""
    classes = classes or {"all": None, "em": (11, 22), "hadron": (211,)}
    apdg = np.abs(rows["p_pdg"])
    out = {}
    for name, pdgs in classes.items():
        sel = rows["p_matched"] & (True if pdgs is None else np.isin(apdg, pdgs))
        n = int(sel.sum())
        entry = {"n": n}
        for key, col in (("missing", "p_completeness"), ("foreign", "p_purity")):
            x = 1.0 - rows[col][sel]
            entry[key] = float(x.mean()) if n else math.nan
            entry[key + "_error"] = float(x.std() / math.sqrt(n)) if n > 1 else math.nan
        out[name] = entry
    return out


def response_table(rows: dict, bins=ENERGY_BINS, classes: dict | None = None) -> dict:
    """Response E_reco / E_true of matched particles per bin of true energy: median and
    sigma_eff / median (the resolution), for all particles and per class (``classes``: name ->
    tuple of |pdg|)."""
    classes = classes or {"all": None, "em": (11, 22), "hadron": (211,)}
    out = {}
    m = rows["p_matched"]
    resp = rows["p_reco_e"] / rows["p_energy"]
    apdg = np.abs(rows["p_pdg"])
    for name, pdgs in classes.items():
        sel_c = m if pdgs is None else m & np.isin(apdg, pdgs)
        table = []
        for lo, hi in zip(bins[:-1], bins[1:]):
            sel = sel_c & (rows["p_energy"] >= lo) & (rows["p_energy"] < hi)
            table.append({"e_lo": lo, "e_hi": hi, **_robust(resp[sel])})
        out[name] = {"bins": table, "inclusive": _robust(resp[sel_c])}
    return out
