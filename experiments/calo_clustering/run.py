"""Calorimeter clustering: a GravNet network trained with object condensation against CLUE.

    python -m experiments.calo_clustering.run [--variant smoke|cpu|full] --workdir DIR
        [--seed S] [--num-steps N]

Steps (each writes into DIR; events and the trained network are cached there, so a rerun only
re-evaluates):

1. events (``hepjax.sim``): training, validation and test sets of the variant's particle gun
   (``config.py``), and the two-particle events at fixed distances (``pairs``), each from its
   own seed: train = seed, val = seed + 1, test = seed + 2, pairs = seed + 3.
2. training (``hepjax.reco.train_oc.train``): ``CondensationNet`` with the object-condensation
   loss and the energy / position / particle-type payload; ``model.pkl`` and ``train_log.json``.
3. tuning on the *validation* events only: the network's (t_beta, t_d) and CLUE's thresholds,
   each maximising efficiency - fake rate (inclusive) over the variant's grids.
4. evaluation on the held-out test events and the two-particle events, for both algorithms:
   ``results.json``, ``table.md`` and the plots ``efficiency.png``, ``response.png``,
   ``loss.png``, ``event_display.png``.

The matching rule, efficiency, fake rate and response definitions are in ``metrics.py``; the
CLUE thresholds and their rationale in :func:`clue_params`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import pickle
import sys
import time

import numpy as np

from experiments.calo_clustering import metrics
from experiments.calo_clustering.config import VARIANTS, Variant, get

R_M = 1.123          # cm, Moliere radius of CE-E (hepjax.sim.geometry.CE_E)
CLOSE = 2 * R_M      # "close showers": another particle within two Moliere radii
N_EE = 28            # CE-E layers (1 cm cells); CE-H behind (4 cm cells)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------- events

def _gun(v: Variant):
    from hepjax.sim import GunConfig
    return GunConfig(n_particles=v.n_particles, energy=v.energy, pdgs=v.pdgs)


def make_pairs(n_per_distance: int, distances, seed: int, v: Variant) -> list[dict]:
    """Particles of the two-shower events: for each distance d, ``n_per_distance`` events of two
    particles (pdg uniform in ``v.pdgs``, energy uniform in ``v.energy``), entry points d apart
    in a random direction around a centre uniform in |x|, |y| < 5 cm, pointing back to the
    vertex 320 cm in front."""
    from hepjax.sim import make_particles
    out = []
    for i, d in enumerate(np.repeat(np.asarray(distances, float), n_per_distance)):
        rng = np.random.default_rng([seed, i])
        pdg = np.asarray(v.pdgs)[rng.integers(0, len(v.pdgs), 2)]
        energy = rng.uniform(v.energy[0], v.energy[1], 2)
        c = rng.uniform(-5, 5, 2)
        phi = rng.uniform(0, 2 * math.pi)
        u = np.array([math.cos(phi), math.sin(phi)])
        xy = np.stack([c - 0.5 * d * u, c + 0.5 * d * u])
        direction = np.stack([xy[:, 0], xy[:, 1], np.full(2, 320.0)], -1)
        out.append(make_particles(pdg, energy, xy[:, 0], xy[:, 1], direction=direction))
    return out


def ensure_events(v: Variant, data_dir: pathlib.Path, seed: int) -> dict[str, pathlib.Path]:
    from hepjax.sim import SimConfig, generate, io, simulate_events
    data_dir.mkdir(parents=True, exist_ok=True)
    gun = _gun(v)
    key = f"{v.name}_s{seed}"
    files = {}
    for split, n, s in (("train", v.n_train, seed), ("val", v.n_val, seed + 1),
                        ("test", v.n_test, seed + 2)):
        path = data_dir / f"{key}_{split}_{n}.h5"
        if not path.exists():
            t0 = time.perf_counter()
            summary = generate(n, s, path, gun=gun, workers=v.workers)
            log(f"generated {split}: {summary['n_events']} events, {summary['n_particles']} "
                f"showers, {summary['n_hits']} hits in {time.perf_counter() - t0:.0f} s")
        files[split] = path
    if v.n_train_pairs:
        lo, hi = v.train_pair_range
        path = data_dir / f"{key}_trainpairs_{v.n_train_pairs}_{lo:g}-{hi:g}cm.h5"
        if not path.exists():
            t0 = time.perf_counter()
            d = np.random.default_rng(seed + 4).uniform(lo, hi, v.n_train_pairs)
            parts = make_pairs(1, d, seed + 4, v)
            events = simulate_events(seed + 4, range(v.n_train_pairs), particles=parts)
            io.write_events(path, events, SimConfig(), {"seed": seed + 4, "source": "pairs",
                                                        "distance_range_cm": [lo, hi]})
            log(f"generated training pairs: {v.n_train_pairs} events in "
                f"{time.perf_counter() - t0:.0f} s")
        files["train_pairs"] = path
    n_pairs = v.pairs_per_distance * len(v.distances)
    path = data_dir / f"{key}_pairs_{n_pairs}.h5"
    if not path.exists():
        t0 = time.perf_counter()
        parts = make_pairs(v.pairs_per_distance, v.distances, seed + 3, v)
        events = simulate_events(seed + 3, range(n_pairs), particles=parts)
        io.write_events(path, events, SimConfig(), {"seed": seed + 3, "source": "pairs",
                                                    "distances": list(v.distances),
                                                    "per_distance": v.pairs_per_distance})
        log(f"generated pairs: {n_pairs} events in {time.perf_counter() - t0:.0f} s")
    files["pairs"] = path
    return files


def load(path, *, with_truth: bool = True, chunk: int = 500) -> tuple[dict, dict | None]:
    """(oc_targets, padded events or None) of a file; read in chunks, padded to the file's
    largest event."""
    from hepjax.reco.train_oc import oc_targets
    from hepjax.sim import io
    with io.CalorimeterFile(path) as f:
        n_events = len(f)
        n_max = int(np.diff(f.offsets["hit"]).max(initial=1))
        p_max = int(np.diff(f.offsets["particle"]).max(initial=1))
        targets, padded = [], []
        for a in range(0, n_events, chunk):
            pe = f.padded(a, min(a + chunk, n_events), max_hits=n_max, max_particles=p_max)
            targets.append(oc_targets(pe))
            if with_truth:
                padded.append(pe)
    cat = lambda parts: {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}  # noqa
    return cat(targets), (cat(padded) if with_truth else None)


# ------------------------------------------------------------------------------------- network

def build_model(v: Variant, seed: int):
    from flax import nnx
    from hepjax.models import condensation_net as cn
    cfg = cn.default_config()
    cfg.update(v.model)
    return cn.build(cfg, nnx.Rngs(seed))


def train_or_load(v: Variant, data: dict, workdir: pathlib.Path, seed: int, num_steps: int):
    from flax import nnx
    from hepjax.reco.train_oc import train
    model = build_model(v, seed)
    tcfg = dataclasses.replace(v.train, seed=seed, num_steps=num_steps)
    path = workdir / "model.pkl"
    tag = {"variant": v.name, "seed": seed, "num_steps": num_steps, "n_train": len(data["mask"]),
           "model": dict(v.model)}
    if path.exists():
        with open(path, "rb") as fh:
            saved = pickle.load(fh)
        if saved["tag"] == tag:
            nnx.update(model, saved["state"])
            log(f"loaded the trained network from {path}")
            return model, saved["log"], saved.get("seconds")
    log(f"training {num_steps} steps of {tcfg.batch_size} events on {len(data['mask'])} events")
    t0 = time.perf_counter()
    model, records = train(model, data, tcfg, log=lambda r: log(
        f"step {r['step']}: loss {r['loss']:.4f} (potential {r['potential']:.4f}, beta "
        f"{r['beta']:.4f}, payload {r['payload']:.4f}) {r['seconds']:.0f} s"))
    seconds = time.perf_counter() - t0
    import jax
    with open(path, "wb") as fh:
        pickle.dump({"tag": tag, "state": jax.device_get(nnx.state(model)), "log": records,
                     "seconds": seconds}, fh)
    return model, records, seconds


def _outputs_stamp(workdir: pathlib.Path, n_events: int) -> np.ndarray:
    stat = (workdir / "model.pkl").stat()
    return np.array([stat.st_size, stat.st_mtime_ns, n_events], np.int64)


def cached_outputs(workdir: pathlib.Path, split: str, n_events: int) -> dict | None:
    """The network outputs of ``split`` saved by ``cached_predict``, or None if absent or made
    by another ``model.pkl`` (size or mtime differ) or for another number of events."""
    path = workdir / f"predictions_{split}.npz"
    if not path.exists():
        return None
    with np.load(path) as f:
        if not np.array_equal(f["stamp"], _outputs_stamp(workdir, n_events)):
            return None
        return {k: f[k] for k in f.files if k != "stamp"}


def cached_predict(model, data: dict, v: Variant, workdir: pathlib.Path, split: str) -> dict:
    """``train_oc.predict`` of one split, saved as ``predictions_<split>.npz`` next to
    ``model.pkl`` and reused while the model file is unchanged (same size and mtime), so that
    re-evaluating other thresholds does not rerun the network."""
    from hepjax.reco.train_oc import predict
    n = len(data["mask"])
    out = cached_outputs(workdir, split, n)
    if out is not None:
        log(f"loaded the network's {split} outputs from {workdir / f'predictions_{split}.npz'}")
        return out
    out = predict(model, data, buckets=v.train.buckets)
    np.savez(workdir / f"predictions_{split}.npz", stamp=_outputs_stamp(workdir, n), **out)
    return out


def network_objects(outputs, data, t_beta, t_d, max_objects, assign="greedy", t_d_hadron=None,
                    reach=1.0, em_radius=None):
    """(labels (E, N), per-event object energies, per-event type probabilities, reco dict)."""
    from hepjax.reco.train_oc import reconstruct
    r = reconstruct(outputs, data, t_beta=t_beta, t_d=t_d, max_objects=max_objects,
                    assign=assign, t_d_hadron=t_d_hadron, reach=reach, em_radius=em_radius)
    k = r["valid"].sum(1)
    energies = [r["energy"][e, :k[e]] for e in range(len(k))]
    types = [r["type_prob"][e, :k[e]] for e in range(len(k))]
    return r["object_id"], energies, types, r


# ------------------------------------------------------------------------------------- CLUE

def clue_params(dc_ee: float, kappa: float, dc3_ee: float, rhoc3: float, window: int):
    """CLUE thresholds per layer (40 layers).

    2D (per layer, as CMS's HGCal layer clusters): d_c = ``dc_ee`` in CE-E (1 cm cells; CMSSW
    uses 1.3 cm for the silicon layers) and 4 x ``dc_ee`` in CE-H (4 cm cells, the same radius
    in cells); rho_c = ``kappa`` x the cell noise sigma (CMSSW: kappa = 9) = kappa x 0.15 MIP
    (1 MIP = 10.7 MeV in CE-E, 105 MeV in CE-H on the EM scale); delta_c = d_c and delta_o =
    2 d_c (CLUE's defaults).
    3D (the layer clusters, CLUE3D-like): d_c = ``dc3_ee`` in CE-E, 4 x in CE-H, over
    +-``window`` layers; rho_c = ``rhoc3`` GeV (the least energy around a shower seed);
    delta_c = d_c (two showers further apart than that can both seed), delta_o = 2 d_c.
    """
    from hepjax.reco import CLUEParams
    n_layers = 40
    scale = np.where(np.arange(n_layers) < N_EE, 1.0, 4.0)
    noise = np.where(np.arange(n_layers) < N_EE, 0.15 * 0.010690, 0.15 * 0.10514)
    layer = CLUEParams(d_c=dc_ee * scale, rho_c=kappa * noise)
    shower = CLUEParams(d_c=dc3_ee * scale, rho_c=np.full(n_layers, rhoc3), layer_window=window)
    return layer, shower


def run_clue(padded: dict, params, n_events: int | None = None):
    """(labels (E, N), per-event shower energies) of clue3d on the real hits."""
    from hepjax.reco import clue3d
    layer_p, shower_p = params
    mask = padded["hit_mask"]
    n_events = mask.shape[0] if n_events is None else n_events
    labels = np.full((n_events, mask.shape[1]), -1, np.int64)
    energies = []
    for e in range(n_events):
        n = int(mask[e].sum())
        pos = padded["hit_position"][e, :n]
        s = clue3d(pos[:, 0], pos[:, 1], padded["hit_layer"][e, :n],
                   padded["hit_energy"][e, :n], layer_params=layer_p, shower_params=shower_p)
        labels[e, :n] = s.labels
        energies.append(s.energy)
    return labels, energies


def _score(summary):
    return summary["efficiency"]["value"] - summary["fake_rate"]["value"]


def tune_clue(v: Variant, padded: dict):
    """Coordinate search on validation events: the 2D thresholds (d_c, kappa) with the 3D ones
    at their grids' middle values, then the 3D ones (d_c, rho_c, window)."""
    n = min(v.n_tune_clue, padded["hit_mask"].shape[0])
    sub = {k: val[:n] for k, val in padded.items()}
    mid = lambda g: g[len(g) // 2]  # noqa: E731
    best = (mid(v.clue_dc_grid), mid(v.clue_kappa_grid), mid(v.clue3d_dc_grid),
            mid(v.clue3d_rhoc_grid), mid(v.clue3d_window_grid))
    trials = []

    def score(p):
        labels, energies = run_clue(sub, clue_params(*p))
        s = metrics.summarize(metrics.evaluate(sub, labels, energies, close_distance=CLOSE))
        trials.append({"params": list(p), "efficiency": s["efficiency"]["value"],
                       "fake_rate": s["fake_rate"]["value"], "score": _score(s)})
        return _score(s)

    cands = [(dc, k) + best[2:] for dc in v.clue_dc_grid for k in v.clue_kappa_grid]
    best = max(cands, key=score)
    cands = [best[:2] + (dc3, r3, w) for dc3 in v.clue3d_dc_grid for r3 in v.clue3d_rhoc_grid
             for w in v.clue3d_window_grid]
    best = max(cands, key=score)
    return best, trials


def tune_network(v: Variant, outputs, data, padded):
    """Search on validation events maximising efficiency - fake rate: the grid of (t_beta, t_d,
    t_d_hadron) (t_d_hadron None: one radius for every condensation point) at reach 1, then
    the collection radius ``reach`` (``v.reach_grid``) at the best of those.
    Returns ((t_beta, t_d, t_d_hadron, reach), trials)."""
    trials = []

    def score(tb, td, tdh, reach):
        labels, energies, _, _ = network_objects(outputs, data, tb, td, v.max_objects, v.assign,
                                                 t_d_hadron=tdh, reach=reach)
        s = metrics.summarize(metrics.evaluate(padded, labels, energies, close_distance=CLOSE))
        trials.append({"t_beta": tb, "t_d": td, "t_d_hadron": tdh, "reach": reach,
                       "efficiency": s["efficiency"]["value"],
                       "efficiency_close": s["efficiency_close"]["value"],
                       "fake_rate": s["fake_rate"]["value"],
                       "fake_rate_close": s["fake_rate_close"]["value"], "score": _score(s)})
        return _score(s)

    grid = [(tb, td, tdh, 1.0) for tb in v.t_beta_grid for td in v.t_d_grid
            for tdh in v.t_d_hadron_grid]
    scores = [score(*p) for p in grid]
    i = int(np.argmax(scores))                       # first of equal scores, as before
    best, best_score = grid[i], scores[i]
    for r in v.reach_grid:
        if r != 1.0 and score(*best[:3], r) > best_score:
            best, best_score = best[:3] + (r,), trials[-1]["score"]
    return best, trials


def _predicted_hadron(types):
    from hepjax.models.condensation_net import PARTICLE_TYPES
    return [np.argmax(t, -1) == PARTICLE_TYPES.index("charged_pion") if len(t) else
            np.zeros(0, bool) for t in types]


def scale_by_type(energies, types, scales):
    """Object energies x the energy scale of their predicted type: ``scales`` = (e/gamma,
    charged pion)."""
    return [e * np.where(h, scales[1], scales[0]) for e, h in zip(energies,
                                                                  _predicted_hadron(types))]


def tune_em_radius(v: Variant, outputs, data, padded, thresholds):
    """The network's energy at the chosen thresholds, calibrated on validation events (the
    matching does not depend on it): for each e/gamma energy radius of ``v.em_radius_grid``
    (``reconstruct``'s ``em_radius``), one energy scale per predicted type (e/gamma, charged
    pion) = 1 / the median response of the matched particles whose object has that type; the
    radius with the best (lowest) resolution sigma_eff / median of all matched particles after
    that scaling. Returns (em_radius, (scale e/gamma, scale pion), trials)."""
    trials = []
    for radius in v.em_radius_grid:
        labels, energies, types, _ = network_objects(outputs, data, *thresholds[:2],
                                                     v.max_objects, v.assign, thresholds[2],
                                                     thresholds[3], radius)
        rows = metrics.evaluate(padded, labels, energies, close_distance=CLOSE, type_prob=types)
        from hepjax.models.condensation_net import PARTICLE_TYPES
        had = rows["p_reco_type"] == PARTICLE_TYPES.index("charged_pion")
        resp = rows["p_reco_e"] / rows["p_energy"]
        scales = tuple(float(1.0 / np.median(resp[rows["p_matched"] & sel]))
                       if (rows["p_matched"] & sel).any() else 1.0 for sel in (~had, had))
        rows = metrics.evaluate(padded, labels, scale_by_type(energies, types, scales),
                                close_distance=CLOSE)
        table = metrics.response_table(rows)
        trials.append({"em_radius": radius, "scales": list(scales),
                       "resolution": table["all"]["inclusive"].get("resolution", math.nan),
                       "resolution_em": table["em"]["inclusive"].get("resolution", math.nan),
                       "resolution_hadron": table["hadron"]["inclusive"].get("resolution",
                                                                             math.nan)})
    best = min(trials, key=lambda t: t["resolution"])       # first of equal values
    return best["em_radius"], tuple(best["scales"]), trials


# ------------------------------------------------------------------------------------- evaluation

def pair_curve(rows: dict, padded: dict, distances, per_distance: int) -> list[dict]:
    """Efficiency and fake rate of the two-particle events per distance."""
    out = []
    ev_p = rows["p_event"].astype(np.int64)
    n_obj = None
    for i, d in enumerate(distances):
        events = np.arange(i * per_distance, (i + 1) * per_distance)
        sel = np.isin(ev_p, events) & (rows["p_visible"] > 0)
        eff = metrics.binomial(int(rows["p_matched"][sel].sum()), int(sel.sum()))
        both = [bool(rows["p_matched"][ev_p == e].all()) for e in events]
        out.append({"distance_cm": float(d), "efficiency": eff,
                    "both_found": metrics.binomial(int(sum(both)), len(both))})
    del n_obj
    return out


def pair_fakes(obj_event: np.ndarray, rows: dict, distances, per_distance) -> list[dict]:
    out = []
    for i, d in enumerate(distances):
        sel = (obj_event >= i * per_distance) & (obj_event < (i + 1) * per_distance)
        out.append({"distance_cm": float(d), "fake_rate": metrics.binomial(
            int((~rows["o_matched"][sel]).sum()), int(sel.sum()))})
    return out


def evaluate_algorithm(name, padded_test, padded_pairs, labels_test, energies_test, labels_pairs,
                       energies_pairs, v: Variant, types_test=None):
    rows = metrics.evaluate(padded_test, labels_test, energies_test, close_distance=CLOSE,
                            type_prob=types_test)
    summary = metrics.summarize(rows)
    res = {"summary": summary, "response": metrics.response_table(rows),
           "composition": metrics.composition_table(rows)}
    # efficiency vs nearest-particle distance in the mixed events
    edges = [0.0, 1.0, 2.0, CLOSE, 3.5, 5.0, 7.5, 10.0, math.inf]
    curve = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (rows["p_nn"] >= lo) & (rows["p_nn"] < hi) & (rows["p_visible"] > 0)
        curve.append({"lo": lo, "hi": hi if math.isfinite(hi) else None,
                      "efficiency": metrics.binomial(int(rows["p_matched"][sel].sum()),
                                                     int(sel.sum()))})
    res["efficiency_vs_nn_distance"] = curve
    prow = metrics.evaluate(padded_pairs, labels_pairs, energies_pairs, close_distance=CLOSE)
    n_obj = np.array([len(e) for e in energies_pairs])
    obj_event = np.repeat(np.arange(len(n_obj)), n_obj)
    pc = pair_curve(prow, padded_pairs, v.distances, v.pairs_per_distance)
    for row, fk in zip(pc, pair_fakes(obj_event, prow, v.distances, v.pairs_per_distance)):
        row["fake_rate"] = fk["fake_rate"]
    res["pairs"] = pc
    close_pairs = np.repeat(np.asarray(v.distances) < CLOSE, v.pairs_per_distance)
    sel = close_pairs[prow["p_event"].astype(np.int64)] & (prow["p_visible"] > 0)
    res["pairs_closer_than_2RM"] = {
        "efficiency": metrics.binomial(int(prow["p_matched"][sel].sum()), int(sel.sum())),
        "fake_rate": metrics.binomial(int((~prow["o_matched"][close_pairs[obj_event]]).sum()),
                                      int(close_pairs[obj_event].sum()))}
    if types_test is not None:
        from hepjax.models.condensation_net import PARTICLE_TYPES, particle_type
        m = rows["p_matched"]
        true_t = particle_type(rows["p_pdg"])[m]
        pred_t = rows["p_reco_type"][m]
        conf = np.zeros((len(PARTICLE_TYPES),) * 2, np.int64)
        np.add.at(conf, (true_t, pred_t), 1)
        res["type_accuracy"] = metrics.binomial(int((true_t == pred_t).sum()), int(m.sum()))
        res["type_confusion"] = {"classes": list(PARTICLE_TYPES), "rows_true_cols_pred":
                                 conf.tolist()}
    return res, rows


# ------------------------------------------------------------------------------------- outputs

def _fmt(b):
    if b.get("n", 0) == 0 or not math.isfinite(b["value"]):
        return "n/a"
    return f"{100 * b['value']:.1f} ± {100 * b['error']:.1f} %"


def table_md(results: dict) -> str:
    net, clue = results["network"], results["clue"]
    rows = [("object efficiency, all particles", "efficiency"),
            ("efficiency, particles closer than 2 R_M to another", "efficiency_close"),
            ("efficiency, particles further than 2 R_M", "efficiency_isolated"),
            ("fake rate, all objects", "fake_rate"),
            ("fake rate, objects of close particles", "fake_rate_close"),
            ("fake rate, objects above 1 GeV", "fake_rate_above_1gev")]
    lines = ["| test events | network (GravNet + OC) | CLUE |", "|---|---|---|"]
    for text, key in rows:
        lines.append(f"| {text} | {_fmt(net['summary'][key])} | {_fmt(clue['summary'][key])} |")
    for text, key in (("two-particle events closer than 2 R_M: efficiency", "efficiency"),
                      ("two-particle events closer than 2 R_M: fake rate", "fake_rate")):
        lines.append(f"| {text} | {_fmt(net['pairs_closer_than_2RM'][key])} | "
                     f"{_fmt(clue['pairs_closer_than_2RM'][key])} |")
    for cls in ("all", "em", "hadron"):
        a, b = net["response"][cls]["inclusive"], clue["response"][cls]["inclusive"]
        if a.get("n") and b.get("n"):
            lines.append(f"| response median / resolution σ_eff/median, matched {cls} | "
                         f"{a['median']:.3f} / {100 * a['resolution']:.1f} ± "
                         f"{100 * a['resolution_error']:.1f} % | {b['median']:.3f} / "
                         f"{100 * b['resolution']:.1f} ± {100 * b['resolution_error']:.1f} % |")
    for key, who in (("response_both_matched", "particles matched by both"),
                     ("response_both_matched_close", "particles closer than 2 R_M matched by both")):
        for cls in ("all", "em", "hadron") if key in net else ():
            a, b = (alg[key][cls]["inclusive"] for alg in (net, clue))
            if a.get("n") and b.get("n"):
                lines.append(f"| resolution σ_eff/median, {cls} {who} (n = {a['n']}) | "
                             f"{100 * a['resolution']:.1f} ± {100 * a['resolution_error']:.1f} % | "
                             f"{100 * b['resolution']:.1f} ± {100 * b['resolution_error']:.1f} % |")
    for cls in ("em", "hadron"):
        if "composition_both_matched" not in net:
            break
        a, b = (alg["composition_both_matched"][cls] for alg in (net, clue))
        if a["n"] and b["n"]:
            lines.append(
                f"| {cls} particles matched by both: mean missing / foreign energy fraction | "
                f"{100 * a['missing']:.1f} / {100 * a['foreign']:.1f} % | "
                f"{100 * b['missing']:.1f} / {100 * b['foreign']:.1f} % |")
    if "type_accuracy" in net:
        lines.append(f"| particle-type accuracy (matched) | {_fmt(net['type_accuracy'])} | — |")
    lines += ["", "Two-shower separation (dedicated two-particle events):", "",
              "| distance [cm] | network efficiency | CLUE efficiency | network fake rate | "
              "CLUE fake rate |", "|---|---|---|---|---|"]
    for a, b in zip(net["pairs"], clue["pairs"]):
        lines.append(f"| {a['distance_cm']:g} | {_fmt(a['efficiency'])} | "
                     f"{_fmt(b['efficiency'])} | {_fmt(a['fake_rate'])} | {_fmt(b['fake_rate'])} |")
    lines += ["", "Energy resolution σ_eff/median of matched particles per true energy "
              "(network: corrected; CLUE: summed hits):", "",
              "| E [GeV] | network all | CLUE all | network e/γ | CLUE e/γ | network π± | "
              "CLUE π± |", "|---|---|---|---|---|---|---|"]
    for i, bin_ in enumerate(net["response"]["all"]["bins"]):
        cells = []
        for cls in ("all", "em", "hadron"):
            for alg in (net, clue):
                b = alg["response"][cls]["bins"][i]
                cells.append(f"{100 * b['resolution']:.1f} % (n={b['n']})" if b.get("n")
                             else "n/a")
        lines.append(f"| {bin_['e_lo']:g}-{bin_['e_hi']:g} | " + " | ".join(cells) + " |")
    if "response_uncorrected" in net:
        lines += ["", "Network energy definitions (matched particles, σ_eff/median, inclusive):",
                  "", "| | all | e/γ | π± |", "|---|---|---|---|"]
        for text, key in (("summed hits × correction at the condensation point × energy scale "
                           "of the predicted type (used above)", "response"),
                          ("summed hits, no correction, no scale", "response_uncorrected"),
                          ("Σ hit energy × the hit's own correction, no scale",
                           "response_per_hit_correction")):
            cells = []
            for cls in ("all", "em", "hadron"):
                b = net[key][cls]["inclusive"]
                cells.append(f"{100 * b['resolution']:.1f} % (median {b['median']:.3f})"
                             if b.get("n") else "n/a")
            lines.append(f"| {text} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(results: dict, workdir: pathlib.Path, display: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    net, clue = results["network"], results["clue"]
    algs = (("network", net, "C0"), ("CLUE", clue, "C3"))

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for name, r, col in algs:
        d = [p["distance_cm"] for p in r["pairs"]]
        ax.errorbar(d, [p["efficiency"]["value"] for p in r["pairs"]],
                    [p["efficiency"]["error"] for p in r["pairs"]], marker="o", color=col,
                    label=name)
    ax.axvline(CLOSE, ls=":", color="grey", label="2 R_M")
    ax.set(xlabel="distance between the two particles [cm]", ylabel="efficiency",
           title="two-shower separation", ylim=(0, 1.05))
    ax.legend()
    ax = axes[1]
    for name, r, col in algs:
        d = [p["distance_cm"] for p in r["pairs"]]
        ax.errorbar(d, [p["fake_rate"]["value"] for p in r["pairs"]],
                    [p["fake_rate"]["error"] for p in r["pairs"]], marker="o", color=col,
                    label=name)
    ax.axvline(CLOSE, ls=":", color="grey")
    ax.set(xlabel="distance between the two particles [cm]", ylabel="fake rate",
           title="two-particle events: fake rate", ylim=(0, 1.05))
    ax.legend()
    ax = axes[2]
    for name, r, col in algs:
        c = r["efficiency_vs_nn_distance"]
        x = [0.5 * (b["lo"] + (b["hi"] if b["hi"] is not None else 15.0)) for b in c]
        ax.errorbar(x, [b["efficiency"]["value"] for b in c],
                    [b["efficiency"]["error"] for b in c], marker="o", color=col, label=name)
    ax.axvline(CLOSE, ls=":", color="grey")
    ax.set(xlabel="distance to the nearest other particle [cm]", ylabel="efficiency",
           title="mixed test events (2-10 particles)", ylim=(0, 1.05))
    ax.legend()
    fig.tight_layout()
    fig.savefig(workdir / "efficiency.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for cls, ls in (("em", "-"), ("hadron", "--")):
        for name, r, col in algs:
            bins = [b for b in r["response"][cls]["bins"] if b.get("n")]
            x = [0.5 * (b["e_lo"] + b["e_hi"]) for b in bins]
            axes[0].plot(x, [b["median"] for b in bins], ls, marker="o", color=col,
                         label=f"{name} {cls}")
            axes[1].errorbar(x, [b["resolution"] for b in bins],
                             [b["resolution_error"] for b in bins], ls=ls, marker="o",
                             color=col, label=f"{name} {cls}")
    axes[0].set(xlabel="true energy [GeV]", ylabel="median E_reco / E_true", title="response")
    axes[1].set(xlabel="true energy [GeV]", ylabel="σ_eff / median", title="resolution")
    for a in axes:
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(workdir / "response.png", dpi=110)
    plt.close(fig)

    log_rows = results["training"]["log"]
    if log_rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        steps = [r["step"] for r in log_rows]
        for k in ("loss", "potential", "beta", "payload"):
            ax.plot(steps, [r[k] for r in log_rows], label=k)
        ax.set(xlabel="step", ylabel="loss (mean over the logging window)", yscale="log",
               title="object-condensation training")
        ax.legend()
        fig.tight_layout()
        fig.savefig(workdir / "loss.png", dpi=110)
        plt.close(fig)

    fig, axes = plt.subplots(2, 2, figsize=(12, 10))
    pos, e = display["position"], display["energy"]
    size = 2 + 30 * np.sqrt(e / e.max())

    def colours(labels):
        cmap = plt.get_cmap("tab20")
        return [cmap(int(lab) % 20) if lab >= 0 else (0.7, 0.7, 0.7, 0.5) for lab in labels]

    for ax, key, title in (
            (axes[0, 0], "truth", "truth (dominant particle; grey = noise)"),
            (axes[0, 1], "network", "network (matched objects in their particle's colour)"),
            (axes[1, 0], "clue", "CLUE (matched showers in their particle's colour)")):
        ax.scatter(pos[:, 2], pos[:, 0], s=size, c=colours(display[key]), linewidths=0)
        ax.set(xlabel="z [cm]", ylabel="x [cm]", title=title)
    ax = axes[1, 1]
    cc = display["coords"]
    ax.scatter(cc[:, 0], cc[:, 1], s=size, c=colours(display["truth"]), linewidths=0)
    cp = display["cp_coords"]
    ax.scatter(cp[:, 0], cp[:, 1], marker="*", s=250, c="k", label="condensation points")
    ax.set(xlabel="clustering coordinate 1", ylabel="clustering coordinate 2",
           title="learned clustering space (colour = truth)")
    ax.legend()
    fig.suptitle(f"test event {display['event']}: {display['n_particles']} particles, "
                 f"{len(e)} hits")
    fig.tight_layout()
    fig.savefig(workdir / "event_display.png", dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------- main

def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="cpu", choices=sorted(VARIANTS))
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--num-steps", type=int, default=None, help="override the variant's steps")
    args = ap.parse_args(argv)
    v = get(args.variant)
    seed = v.seed if args.seed is None else args.seed
    num_steps = v.train.num_steps if args.num_steps is None else args.num_steps
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    files = ensure_events(v, workdir / "data", seed)
    train_data, _ = load(files["train"], with_truth=False)
    if "train_pairs" in files:           # appended after the mixed events, padded to their N
        from hepjax.reco.train_oc import make_batch
        extra, _ = load(files["train_pairs"], with_truth=False)
        n_hits = train_data["mask"].shape[1]
        if extra["mask"].sum(1).max() > n_hits:
            raise ValueError(f"{files['train_pairs']}: an event has more hits than the padded "
                             f"length {n_hits} of the mixed training events")
        extra = make_batch(extra, np.arange(len(extra["mask"])), n_hits)
        train_data = {k: np.concatenate([train_data[k], extra[k]]) for k in train_data}
    val_data, val_pad = load(files["val"])
    test_data, test_pad = load(files["test"])
    pair_data, pair_pad = load(files["pairs"])
    log(f"events: train {len(train_data['mask'])}, val {len(val_data['mask'])}, test "
        f"{len(test_data['mask'])}, pairs {len(pair_data['mask'])}")

    model, train_log, train_seconds = train_or_load(v, train_data, workdir, seed, num_steps)
    del train_data

    t0 = time.perf_counter()
    val_out = cached_predict(model, val_data, v, workdir, "val")
    (t_beta, t_d, t_d_had, reach), net_trials = tune_network(v, val_out, val_data, val_pad)
    em_radius, scales, em_trials = tune_em_radius(v, val_out, val_data, val_pad,
                                                  (t_beta, t_d, t_d_had, reach))
    log(f"network thresholds from validation: t_beta={t_beta}, t_d={t_d}, t_d_hadron={t_d_had}, "
        f"reach={reach}; energy: e/gamma radius {em_radius} cm, scales (e/gamma, pion) "
        f"{scales[0]:.4f}, {scales[1]:.4f}")
    clue_best, clue_trials = tune_clue(v, val_pad)
    log(f"CLUE thresholds from validation: {clue_best}")
    t_tune = time.perf_counter() - t0

    t0 = time.perf_counter()
    test_out = cached_predict(model, test_data, v, workdir, "test")
    pair_out = cached_predict(model, pair_data, v, workdir, "pairs")
    t_net_inf = time.perf_counter() - t0
    nl_test, ne_test, nt_test, nr_test = network_objects(test_out, test_data, t_beta, t_d,
                                                         v.max_objects, v.assign, t_d_had, reach,
                                                         em_radius)
    nl_pair, ne_pair, nt_pair, _ = network_objects(pair_out, pair_data, t_beta, t_d,
                                                   v.max_objects, v.assign, t_d_had, reach,
                                                   em_radius)
    ne_test = scale_by_type(ne_test, nt_test, scales)
    ne_pair = scale_by_type(ne_pair, nt_pair, scales)
    t0 = time.perf_counter()
    params = clue_params(*clue_best)
    cl_test, ce_test = run_clue(test_pad, params)
    cl_pair, ce_pair = run_clue(pair_pad, params)
    t_clue = time.perf_counter() - t0

    net_res, net_rows = evaluate_algorithm("network", test_pad, pair_pad, nl_test, ne_test,
                                           nl_pair, ne_pair, v, types_test=nt_test)
    net_res["overflow_events"] = int(nr_test["overflow"].sum())
    clue_res, clue_rows = evaluate_algorithm("clue", test_pad, pair_pad, cl_test, ce_test,
                                             cl_pair, ce_pair, v)
    # resolution on the particles that both algorithms matched (the same showers on both sides)
    both = net_rows["p_matched"] & clue_rows["p_matched"]
    net_res["response_both_matched"] = metrics.response_table(dict(net_rows, p_matched=both))
    clue_res["response_both_matched"] = metrics.response_table(dict(clue_rows, p_matched=both))
    # ... and on those of them closer than 2 R_M to another particle (the bar's showers)
    close_both = both & net_rows["p_close"]
    net_res["response_both_matched_close"] = metrics.response_table(dict(net_rows,
                                                                         p_matched=close_both))
    clue_res["response_both_matched_close"] = metrics.response_table(dict(clue_rows,
                                                                          p_matched=close_both))
    net_res["composition_both_matched"] = metrics.composition_table(dict(net_rows, p_matched=both))
    clue_res["composition_both_matched"] = metrics.composition_table(dict(clue_rows,
                                                                          p_matched=both))
    # the network's energy from the summed hits alone (no correction), for reference
    for key, field in (("response_uncorrected", "raw_energy"),
                       ("response_per_hit_correction", "energy_hit_corrected")):
        rows = metrics.evaluate(test_pad, nl_test, [nr_test[field][e, :len(ne_test[e])]
                                                    for e in range(len(ne_test))],
                                close_distance=CLOSE)
        net_res[key] = metrics.response_table(rows)

    results = {
        "variant": v.name, "seed": seed,
        "command": " ".join(["python -m experiments.calo_clustering.run"]
                            + list(sys.argv[1:] if argv is None else argv)),
        "knn": f"LSH bins of {model.bin_size}" if model.bin_size else "exact",
        "events": {"train": int(v.n_train), "train_pairs": int(v.n_train_pairs),
                   "val": int(v.n_val), "test": int(v.n_test),
                   "pairs": int(len(pair_data["mask"])),
                   "test_particles": int(test_pad["n_particles"].sum())},
        "matching_rule": "matched iff shared energy > 50 % of the particle's visible energy and "
                         "> 50 % of the object's measured energy",
        "close_distance_cm": CLOSE,
        "network": {**net_res, "t_beta": t_beta, "t_d": t_d, "t_d_hadron": t_d_had,
                    "reach": reach, "em_radius_cm": em_radius, "energy_scales": list(scales),
                    "em_radius_tuning": em_trials,
                    "assign": v.assign,
                    "tuning": net_trials},
        "clue": {**clue_res, "params": dict(zip(("dc_ee", "kappa", "dc3_ee", "rhoc3_gev",
                                                 "window"), clue_best)),
                 "tuning": clue_trials},
        "training": {"steps": num_steps, "batch_size": v.train.batch_size,
                     "seconds": train_seconds, "log": train_log, "model": v.model},
        "seconds": {"tuning": round(t_tune, 1), "network_inference_test_and_pairs":
                    round(t_net_inf, 1), "clue_test_and_pairs": round(t_clue, 1),
                    "total": round(time.perf_counter() - t_start, 1)},
    }
    # event display: the test event with the most particles among the first 50
    e = int(np.argmax(test_pad["n_particles"][:50]))
    n = int(test_pad["hit_mask"][e].sum())
    k = int(nr_test["valid"][e].sum())
    cp_idx = [int(i) for i in np.flatnonzero(nr_test["valid"][e])]
    oid = nl_test[e, :n]
    cps = [np.flatnonzero(oid == j) for j in range(k)]
    coords = test_out["coords"][e, :n]
    cp_coords = np.array([coords[c[np.argmax(test_out["beta"][e, :n][c])]] for c in cps
                          if len(c)]).reshape(-1, coords.shape[1])
    del cp_idx
    npart = int(test_pad["n_particles"][e])
    share = (test_pad["hit_signal_energy"][e, :n, None].astype(np.float64)
             * test_pad["hit_fraction"][e, :n, :npart])

    def matched_colours(labels, n_obj):
        """Object labels -> the matched particle's index (its truth colour), else 10 + r."""
        m = metrics.match_event(share, test_pad["hit_energy"][e, :n].astype(np.float64), labels,
                                n_obj)
        col = np.where(m["object_match"] >= 0, m["object_match"], 10 + np.arange(n_obj))
        return np.where(labels >= 0, col[np.maximum(labels, 0)] if n_obj else -1, -1)

    display = {"event": e, "n_particles": npart,
               "position": test_pad["hit_position"][e, :n], "energy": test_pad["hit_energy"][e, :n],
               "truth": test_pad["hit_dominant"][e, :n], "network": matched_colours(oid, k),
               "clue": matched_colours(cl_test[e, :n], len(ce_test[e])),
               "coords": coords, "cp_coords": cp_coords}
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    (workdir / "table.md").write_text(table_md(results))
    plots(results, workdir, display)
    log(f"wrote {workdir / 'results.json'}, table.md and plots in "
        f"{time.perf_counter() - t_start:.0f} s")
    print(table_md(results))
    return results


if __name__ == "__main__":
    main()
