"""How much of the quark/gluon sample the generator's hard-process pT window removes, and what
that does to the AUC.

The quark/gluon recipe (``hepjax.data.generation.TASKS['quark-gluon']``) generates the hard
process with 450 < pTHat < 650 GeV for efficiency and keeps the hardest anti-kT R = 0.4 jet with
500 < pT < 550 GeV and |y| < 1.7. A jet can land in that window from a hard process outside it
(initial- and final-state radiation move the jet's pT away from the parton's), so the window is
a hidden selection, and not the same one for quarks and gluons. The energyflow sample of the
Energy Flow Networks paper (Komiske, Metodiev, Thaler, JHEP 01 (2019) 121) does not state its
generator window.

Steps:

``rates``: for each class and each pTHat slice, simulates ``--events`` events (chunks of 200,
seeded independently of the training pool), counts the jets that pass the jet selection and
reads Pythia's cross section of the slice (``Info.sigmaGen``, averaged over chunks). The rate
of selected jets per slice is sigma x acceptance; its share of all selected jets of the class
is what a window that leaves the slice out removes. Writes ``rates.json`` and keeps the
selected jets of every slice as native jets files (``slices/c{class}_{low}_{high}.h5``).

``evaluate``: takes a trained quark/gluon run (``hepjax train`` / ``run.py`` workdir, trained
on the standard sample) and scores (a) its own test split (in-window jets) and (b) the slices'
out-of-window jets; the AUC of the mixture, each out-of-window slice weighted to its measured
rate relative to the in-window jets, against the AUC on in-window jets alone, with a bootstrap
error of the difference (jets resampled within each sample). Also the same for the constituent
multiplicity (no network). Writes ``window_auc.json``.

    python experiments/quark_gluon/pthat_window.py rates --out runs/quark_gluon/pthat --workers 2
    python experiments/quark_gluon/pthat_window.py evaluate --out runs/quark_gluon/pthat \\
        --workdir runs/quark_gluon/XXX/pfn_id
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (low, high) pTHat slices in GeV; the recipe's window is (450, 650)
SLICES = ((250, 300), (300, 380), (380, 450), (450, 650), (650, 800), (800, 1000))
RECIPE_WINDOW = (450, 650)
EVENTS = {(250, 300): 20_000, (300, 380): 60_000, (380, 450): 30_000, (450, 650): 10_000,
          (650, 800): 10_000, (800, 1000): 10_000}
EVENTS_PER_CHUNK = 200
SEED = 7000   # chunk seeds chunk_seed(SEED + slice index, class, chunk): not the pool's 2019


def slice_task(process: int, low: float, high: float):
    """The quark/gluon task with ``process``'s pTHat window replaced by (low, high)."""
    from hepjax.data import generation

    base = generation.TASKS["quark-gluon"]
    proc = base.processes[process]
    settings = tuple(s for s in proc.settings if not s.startswith("PhaseSpace:pTHat"))
    settings += (f"PhaseSpace:pTHatMin = {low:g}", f"PhaseSpace:pTHatMax = {high:g}")
    processes = tuple(dataclasses.replace(p, settings=settings) if i == process else p
                      for i, p in enumerate(base.processes))
    return dataclasses.replace(base, processes=processes)


def _chunk(process: int, low: float, high: float, seed: int, chunk: int):
    """(selected jets, events, sigmaGen in mb, sigmaErr) of one chunk of one slice."""
    from hepjax.data import generation

    made = []
    original = generation._pythia

    def keep(settings, s):
        made.append(original(settings, s))
        return made[-1]

    generation._pythia = keep
    try:
        jets = generation.simulate_chunk(slice_task(process, low, high), process, seed, chunk,
                                         detector="none", events_per_chunk=EVENTS_PER_CHUNK)
    finally:
        generation._pythia = original
    info = made[0].infoPython()
    return jets, int(info.nAccepted()), float(info.sigmaGen()), float(info.sigmaErr())


def rates(args) -> dict:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scale = float(args.events_scale)
    jobs = []
    for s, (low, high) in enumerate(SLICES):
        n_chunks = max(1, int(round(EVENTS[(low, high)] * scale / EVENTS_PER_CHUNK)))
        for k in (0, 1):
            jobs += [(k, low, high, SEED + s, c) for c in range(n_chunks)]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        results = list(pool.map(_chunk, *zip(*jobs), chunksize=4))
    table, jets = [], {}
    for k in (0, 1):
        for low, high in SLICES:
            rows = [r for j, r in zip(jobs, results) if j[:3] == (k, low, high)]
            events = sum(r[1] for r in rows)
            n_sel = sum(len(r[0]["n_constituents"]) for r in rows)
            sigmas = np.array([r[2] for r in rows])
            sigma = float(sigmas.mean())
            sigma_err = float(sigmas.std(ddof=1) / np.sqrt(len(sigmas))) if len(rows) > 1 else 0.0
            acc = n_sel / events
            table.append({"class": k, "label": "gluon" if k == 0 else "quark", "pthat": [low, high],
                          "events": events, "selected": n_sel, "acceptance": acc,
                          "sigma_mb": sigma, "sigma_err_mb": sigma_err, "rate_mb": sigma * acc,
                          "rate_err_mb": sigma * np.sqrt(max(n_sel, 1)) / events
                          if n_sel else sigma * 1.84 / events})   # 0 jets: the 84 % Poisson upper limit
            if n_sel:
                jets[(k, low, high)] = {key: np.concatenate([r[0][key] for r in rows])
                                        for key in ("p4", "pid", "charge", "n_constituents", "jet_p4")}
    summary = {"slices": table, "recipe_window": list(RECIPE_WINDOW), "seed": SEED,
               "events_per_chunk": EVENTS_PER_CHUNK, "versions": _versions()}
    for k, name in ((0, "gluon"), (1, "quark")):
        rows = [r for r in table if r["class"] == k]
        total = sum(r["rate_mb"] for r in rows)
        inside = sum(r["rate_mb"] for r in rows if tuple(r["pthat"]) == RECIPE_WINDOW)
        below = sum(r["rate_mb"] for r in rows if r["pthat"][1] <= RECIPE_WINDOW[0])
        above = sum(r["rate_mb"] for r in rows if r["pthat"][0] >= RECIPE_WINDOW[1])
        summary[name] = {"fraction_outside_window": 1 - inside / total,
                         "fraction_below": below / total, "fraction_above": above / total,
                         "jets_in_window_per_event": next(r["acceptance"] for r in rows
                                                          if tuple(r["pthat"]) == RECIPE_WINDOW),
                         "jets_per_event_all_slices": total / sum(r["sigma_mb"] for r in rows)}
    write_slices(out, jets)
    (out / "rates.json").write_text(json.dumps(summary, indent=2))
    return summary


def slice_path(out, k: int, low: float, high: float) -> pathlib.Path:
    return pathlib.Path(out) / "slices" / f"c{k}_{low:g}_{high:g}.h5"


def write_slices(out, jets: dict) -> None:
    """Each slice's selected jets ({(class, low, high): simulate_chunk arrays}) as a native jets
    file (``hepjax.data.formats.write_native``, label = class), read back with ``read_native``
    exactly as the training sample is."""
    from hepjax.data import formats

    for (k, low, high), arrays in jets.items():
        path = slice_path(out, k, low, high)
        path.parent.mkdir(parents=True, exist_ok=True)
        formats.write_native(path, {**arrays, "label": np.full(len(arrays["p4"]), k, np.int64)},
                             meta={"task": "quark-gluon", "pthat": [low, high]})


def _versions() -> dict:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("pythia8mc", "fastjet", "numpy")}


def _predict(workdir, jets: dict) -> np.ndarray:
    """The run's signal probabilities on native-like jets (p4, pid, mask, label)."""
    from hepjax.data import quark_gluon
    from hepjax.train import experiment

    arrays, _ = quark_gluon.represent(jets, experiment._read_config(workdir).data)
    return experiment.predict_run(workdir, arrays=arrays)[0]


def mixture_weights(table: list[dict], labels_in: np.ndarray, slices_out: list[tuple]) -> tuple:
    """Per-jet weights of the in-window jets (one per class: its rate over its count) and of each
    out-of-window slice's jets (rate over count), so every slice enters its class in proportion
    to its measured rate of selected jets."""
    rate = {(r["class"], tuple(r["pthat"])): r["rate_mb"] for r in table}
    w_in = np.empty(len(labels_in))
    for k in (0, 1):
        n = int(np.sum(labels_in == k))
        w_in[labels_in == k] = rate[(k, RECIPE_WINDOW)] / n
    w_out = [rate[(k, window)] / n for k, window, n in slices_out]
    return w_in, w_out


def _auc_difference(y_in, s_in, w_in, y_out, s_out, w_out, n_boot: int, seed: int = 0) -> dict:
    from hepjax.metrics import roc_auc

    def aucs(i_in, i_out):
        y = np.concatenate([y_in[i_in], y_out[i_out]])
        s = np.concatenate([s_in[i_in], s_out[i_out]])
        w = np.concatenate([w_in[i_in], w_out[i_out]])
        return roc_auc(y_in[i_in], s_in[i_in]), roc_auc(y, s, sample_weight=w)

    a_in, a_mix = aucs(np.arange(len(y_in)), np.arange(len(y_out)))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        b_in, b_mix = aucs(rng.integers(0, len(y_in), len(y_in)),
                           rng.integers(0, len(y_out), len(y_out)))
        diffs.append(b_mix - b_in)
    return {"auc_in_window": a_in, "auc_mixture": a_mix, "difference": a_mix - a_in,
            "difference_err": float(np.std(diffs, ddof=1)), "bootstrap": n_boot}


def evaluate(args) -> dict:
    from hepjax.data import formats, quark_gluon
    from hepjax.train import experiment

    out = pathlib.Path(args.out)
    workdir = pathlib.Path(args.workdir)
    summary = json.loads((out / "rates.json").read_text())
    config = experiment._read_config(workdir)
    test_raw = quark_gluon.load_jets(config.data)["test"]
    max_particles = int(config.data.max_particles)
    # in-window: the run's own test split (scores written by the run)
    with np.load(workdir / "test_outputs.npz") as f:
        y_in = np.asarray(f["labels"], np.int64)
        s_in = np.asarray(f["outputs"], np.float64).reshape(len(y_in), -1)[:, -1]
    if len(y_in) != len(test_raw["label"]):
        raise ValueError(f"{workdir}/test_outputs.npz: {len(y_in)} scores, test split has "
                         f"{len(test_raw['label'])} jets")
    mult_in = test_raw["mask"].sum(1).astype(np.float64)
    outside = [(k, (lo, hi)) for k in (0, 1) for lo, hi in SLICES
               if (lo, hi) != RECIPE_WINDOW and slice_path(out, k, lo, hi).is_file()]
    jets = [formats.read_native(slice_path(out, k, lo, hi), max_particles) for k, (lo, hi) in outside]
    keys = ("p4", "pid", "mask", "label")
    merged = {key: np.concatenate([j[key] for j in jets]) for key in keys}
    # one pass scores 512 of the run's test jets (to check that this path reproduces its saved
    # scores) and the out-of-window jets
    n_check = min(512, len(y_in))
    scores = _predict(workdir, {key: np.concatenate([test_raw[key][:n_check], merged[key]])
                                for key in keys}).astype(np.float64)
    scores = scores.reshape(n_check + len(merged["label"]), -1)[:, -1]
    again, s_out = scores[:n_check], scores[n_check:]
    if not np.allclose(again, s_in[:n_check], atol=1e-5):
        raise RuntimeError(f"{workdir}: rescoring the test jets does not reproduce test_outputs.npz "
                           f"(max difference {np.abs(again - s_in[:n_check]).max():.2e})")
    y_out = merged["label"]
    mult_out = merged["mask"].sum(1).astype(np.float64)
    w_in, w_slices = mixture_weights(summary["slices"], y_in,
                                     [(k, w, len(j["label"])) for (k, w), j in zip(outside, jets)])
    w_out = np.concatenate([np.full(len(j["label"]), w) for w, j in zip(w_slices, jets)])
    result = {"workdir": str(workdir), "out_of_window_jets": {f"{'gq'[k]}_{lo}_{hi}": len(j["label"])
                                                             for (k, (lo, hi)), j in zip(outside, jets)},
              "network": _auc_difference(y_in, s_in, w_in, y_out, s_out, w_out, args.bootstrap),
              # fewer particles = more quark-like: score = -multiplicity
              "multiplicity": _auc_difference(y_in, -mult_in, w_in, y_out, -mult_out, w_out,
                                              args.bootstrap)}
    (out / "window_auc.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("rates", "evaluate"))
    parser.add_argument("--out", default="runs/quark_gluon/pthat")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--events-scale", type=float, default=1.0,
                        help="multiplies every slice's number of events")
    parser.add_argument("--workdir", default="", help="evaluate: a trained quark/gluon run")
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args(argv)
    result = rates(args) if args.step == "rates" else evaluate(args)
    print(json.dumps(result if args.step == "evaluate" else
                     {k: result[k] for k in ("gluon", "quark")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
