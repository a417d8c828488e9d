"""Particle-flow metrics on element-wise outputs (class, candidate (pT, eta, phi, E)).

Definitions (Pata et al., EPJC 81 (2021) 381, section 4, adapted):

* **efficiency** of class c: among elements whose target class is c, the fraction reconstructed
  as class c; **fake rate** of class c: among elements reconstructed as class c, the fraction
  whose target is "no particle" (class 0);
* **pT response / resolution** of class c: over elements with target c reconstructed as c, the
  median of pT_reco / pT_target and the half-width of its 16-84 % interval over the median;
* **jets**: anti-kT R = 0.4 (Cacciari, Salam, Soyez, JHEP 04 (2008) 063; FastJet) on all
  reconstructed candidates and, as the reference, on all generator particles (hard event and
  pile-up, neutrinos excluded) within |eta| < 3 (the calorimeter acceptance); generator jets
  with pT > 20 GeV and |eta| < 2.5 are matched to the nearest reconstructed jet within
  Delta R < 0.2; response = pT_reco / pT_gen, resolution as above;
* **missing pT**: MET vector = -sum of the candidates' (resp. the generator particles')
  transverse momenta; resolution = half-width of the 16-84 % interval of the components of
  (MET_reco - MET_gen) (x and y pooled), in GeV; response = median |MET_reco| / |MET_gen|.

Statistical errors: bootstrap over events (``n_boot`` resamples, standard deviation).
"""
from __future__ import annotations

import numpy as np

__all__ = ["class_metrics", "jets", "match_jets", "met", "summarize_ratio", "evaluate",
           "paired_difference", "compare"]

CLASS_NAMES = ("none", "charged_hadron", "neutral_hadron", "photon", "electron", "muon")


def _width(r):
    if len(r) < 2:
        return float("nan"), float("nan")
    q16, q50, q84 = np.percentile(r, [16, 50, 84])
    return float(q50), float((q84 - q16) / 2)


def summarize_ratio(per_event: list[np.ndarray], n_boot: int = 100, seed: int = 0,
                    relative: bool = True) -> dict:
    """Median and resolution (16-84 % half-width, over the median if ``relative``) of values
    grouped by event, with bootstrap-over-events errors."""
    allv = np.concatenate(per_event) if per_event else np.zeros(0)
    med, w = _width(allv)
    res = w / med if relative and med else w
    rng = np.random.default_rng(seed)
    meds, ress = [], []
    for _ in range(n_boot):
        pick = rng.integers(0, len(per_event), len(per_event))
        v = np.concatenate([per_event[i] for i in pick]) if len(pick) else np.zeros(0)
        m, ww = _width(v)
        meds.append(m)
        ress.append(ww / m if relative and m else ww)
    return {"n": int(len(allv)), "median": med, "median_err": float(np.nanstd(meds)),
            "resolution": float(res), "resolution_err": float(np.nanstd(ress))}


def class_metrics(pred_cls, pred, true_cls, target) -> dict:
    """Per class efficiency / fake rate (with binomial errors) and pT response, from lists of
    per-event arrays."""
    pc, tc = np.concatenate(pred_cls), np.concatenate(true_cls)
    out = {}
    for c in range(1, len(CLASS_NAMES)):
        n_true, n_pred = int((tc == c).sum()), int((pc == c).sum())
        k_eff, k_fake = int(((tc == c) & (pc == c)).sum()), int(((pc == c) & (tc == 0)).sum())
        eff = k_eff / n_true if n_true else float("nan")
        fake = k_fake / n_pred if n_pred else float("nan")
        ratios = [p[(t == c) & (q == c), 0] / g[(t == c) & (q == c), 0]
                  for p, q, t, g in zip(pred, pred_cls, true_cls, target)]
        out[CLASS_NAMES[c]] = {
            "n_true": n_true, "n_pred": n_pred,
            "efficiency": eff, "efficiency_err": float(np.sqrt(eff * (1 - eff) / n_true)) if n_true else float("nan"),
            "fake_rate": fake, "fake_rate_err": float(np.sqrt(fake * (1 - fake) / n_pred)) if n_pred else float("nan"),
            "pt_response": summarize_ratio(ratios)}
    return out


def jets(p4_list, radius: float = 0.4, pt_min: float = 10.0):
    """anti-kT jets of each event's (pT, eta, phi, E) rows -> list of (J, 3) (pT, eta, phi)."""
    import awkward as ak
    import fastjet
    recs = []
    for p in p4_list:
        p = np.asarray(p, np.float64)
        pt, eta, phi, e = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
        recs.append({"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
                     "E": np.maximum(e, pt * np.cosh(eta))})
    counts = [len(r["px"]) for r in recs]
    flat = {k: np.concatenate([r[k] for r in recs]) if recs else np.zeros(0) for k in ("px", "py", "pz", "E")}
    arr = ak.unflatten(ak.zip(flat), counts)
    seq = fastjet.ClusterSequence(arr, fastjet.JetDefinition(fastjet.antikt_algorithm, radius))
    js = seq.inclusive_jets(min_pt=pt_min)
    out = []
    for j in ak.to_list(js):
        if not j:
            out.append(np.zeros((0, 3)))
            continue
        px = np.array([x["px"] for x in j]); py = np.array([x["py"] for x in j])
        pz = np.array([x["pz"] for x in j])
        pt = np.hypot(px, py)
        out.append(np.stack([pt, np.arcsinh(pz / np.maximum(pt, 1e-9)), np.arctan2(py, px)], 1))
    return out


def match_jets(gen, reco, pt_min=20.0, eta_max=2.5, dr_max=0.2, every=False):
    """pT_reco / pT_gen of the generator jets (pT > pt_min, |eta| < eta_max) matched to the
    nearest reconstructed jet within dr_max; and the fraction matched. ``every``: per event one
    entry for *every* selected generator jet, NaN where unmatched (to compare algorithms on
    the jets both match)."""
    ratios, n_gen, n_match = [], 0, 0
    for g, r in zip(gen, reco):
        g = g[(g[:, 0] > pt_min) & (np.abs(g[:, 1]) < eta_max)]
        n_gen += len(g)
        if len(g) == 0 or len(r) == 0:
            ratios.append(np.full(len(g), np.nan) if every else np.zeros(0))
            continue
        dphi = (g[:, None, 2] - r[None, :, 2] + np.pi) % (2 * np.pi) - np.pi
        dr = np.hypot(g[:, None, 1] - r[None, :, 1], dphi)
        best = np.argmin(dr, 1)
        ok = dr[np.arange(len(g)), best] < dr_max
        n_match += int(ok.sum())
        ratios.append(np.where(ok, r[best, 0] / g[:, 0], np.nan) if every else
                      r[best[ok], 0] / g[ok, 0])
    return ratios, (n_match / n_gen if n_gen else float("nan"))


def paired_difference(a: list[np.ndarray], b: list[np.ndarray], n_boot: int = 100,
                      seed: int = 0, relative: bool = True) -> dict:
    """Resolution(a) - resolution(b) (as ``summarize_ratio``) of two algorithms' values grouped
    by the same events, with the bootstrap error of the difference (the same resampled events
    for both, so their correlation is kept)."""
    def res(v):
        m, w = _width(v)
        return w / m if relative and m else w
    def cat(x, idx):
        return np.concatenate([x[i] for i in idx]) if len(idx) else np.zeros(0)
    idx = np.arange(len(a))
    diff = res(cat(a, idx)) - res(cat(b, idx))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(a), len(a))
        boots.append(res(cat(a, pick)) - res(cat(b, pick)))
    return {"difference": float(diff), "difference_err": float(np.nanstd(boots))}


def met(p4_list):
    """MET vectors (E, 2) from per-event (pT, eta, phi, E) rows."""
    return np.array([[-np.sum(p[:, 0] * np.cos(p[:, 2])), -np.sum(p[:, 0] * np.sin(p[:, 2]))]
                     for p in p4_list]).reshape(-1, 2)


def evaluate(pred_cls, pred, true_cls, target, gen_particles, n_boot: int = 100) -> dict:
    """All metrics of one algorithm. pred_cls / pred / true_cls / target: per-event element
    arrays; gen_particles: per-event (P, 4) generator particles (pT, eta, phi, E)."""
    cands = [p[c > 0] for p, c in zip(pred, pred_cls)]
    gen = [g[np.abs(g[:, 1]) < 3.0] for g in gen_particles]
    gen_jets, reco_jets = jets(gen), jets(cands)
    ratios, matched = match_jets(gen_jets, reco_jets)
    every, _ = match_jets(gen_jets, reco_jets, every=True)
    m_reco, m_gen = met(cands), met(gen)
    diff = [d for d in (m_reco - m_gen)]
    met_ratio = [np.array([np.hypot(*a) / max(np.hypot(*b), 1e-9)]) for a, b in zip(m_reco, m_gen)]
    pc, tc = np.concatenate(pred_cls), np.concatenate(true_cls)
    return {"element_accuracy": float(np.mean(pc == tc)) if len(tc) else float("nan"),
            "classes": class_metrics(pred_cls, pred, true_cls, target),
            "jet_pt": summarize_ratio(ratios, n_boot), "jet_match_fraction": matched,
            "met_resolution_gev": summarize_ratio([np.asarray(d) for d in diff], n_boot, relative=False),
            "met_response": summarize_ratio(met_ratio, n_boot),
            "_jet_ratios": np.concatenate(ratios) if ratios else np.zeros(0),
            "_met_diff": np.concatenate(diff) if diff else np.zeros(0),
            "_jet_every": every, "_met_diff_per_event": [np.asarray(d) for d in diff]}


def compare(a: dict, b: dict, n_boot: int = 100) -> dict:
    """MLPF-style algorithm a against b (two ``evaluate`` results on the same events): jet pT
    resolution on the generator jets *both* match (so a lower match fraction cannot drop hard
    cases from one side only), with each one's value, and the paired-bootstrap differences
    (a - b) of that and of the MET resolution."""
    both = [x[np.isfinite(x) & np.isfinite(y)] for x, y in zip(a["_jet_every"], b["_jet_every"])]
    both_b = [y[np.isfinite(x) & np.isfinite(y)] for x, y in zip(a["_jet_every"], b["_jet_every"])]
    return {"n_common_jets": int(sum(len(x) for x in both)),
            "jet_pt_common": {"a": summarize_ratio(both, n_boot),
                              "b": summarize_ratio(both_b, n_boot)},
            "jet_resolution_common_diff": paired_difference(both, both_b, n_boot),
            "met_resolution_diff": paired_difference(a["_met_diff_per_event"],
                                                     b["_met_diff_per_event"], n_boot,
                                                     relative=False)}
