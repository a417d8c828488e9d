"""A JetClass-style generated sample: per-class generation rates and jet-mass distributions.

JetClass: Qu, Li, Qian, "Particle Transformer for Jet Tagging", ICML 2022 (arXiv:2202.03772).
The generator and every recipe choice: ``hepjax/data/jetclass_generation.py``.

    python -m experiments.jetclass.run --variant smoke|cpu [--workdir DIR] [--n-per-class N]
        [--seed S] [--out FILE]

1. Generates ``--n-per-class`` jets of each of the ten classes, class after class in one process
   (smoke: 20 per class; cpu: 1,000), timing each class (wall and CPU seconds of the chunks it
   needed), and writes them to one JetClass-layout ROOT file (``--out``, default
   ``~/.cache/hepjax/jetclass_gen_v1_n{N}_s{S}.root``). Finished chunks are kept in
   ``--workdir`` (default ``runs/jetclass_{variant}``), so a killed run resumes.
2. Reads the file back with ``hepjax.data.formats.read_jetclass`` (the reader the training
   pipeline uses) and ``uproot``, and reports per class: jets/s, the soft-drop and plain jet-mass
   peaks (the mode of a 4 GeV histogram refined by the mean within +-15 GeV of it, with its
   standard error) and the medians with bootstrap errors.

Writes ``results_VARIANT.json``, ``table_VARIANT.md`` and ``mass_VARIANT.png`` into the
experiment folder.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

HERE = pathlib.Path(__file__).parent
SIZES = {"smoke": 20, "cpu": 1000}
BOOTSTRAP = 200
# the resonance each class should peak at (GeV; PDG values, Pythia's defaults)
POLE = {"Hbb": 125.0, "Hcc": 125.0, "Hgg": 125.0, "H4q": 125.0, "Hqql": 125.0,
        "Zqq": 91.19, "Wqq": 80.38, "Tbqq": 173.0, "Tbl": 173.0}


def peak(values: np.ndarray, width: float = 15.0, bin_width: float = 4.0):
    """(peak, standard error, jets in the window): the mode of a histogram of ``values``
    above 20 GeV (the soft-drop mass has a spike near 0), refined by the mean within +-width."""
    v = values[values > 20.0]
    if len(v) < 5:
        return float("nan"), float("nan"), int(len(v))
    edges = np.arange(20.0, v.max() + bin_width, bin_width)
    counts, edges = np.histogram(v, edges)
    mode = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
    win = v[np.abs(v - mode) < width]
    return float(win.mean()), float(win.std(ddof=1) / np.sqrt(len(win))), int(len(win))


def median_with_error(values: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    boots = [np.median(rng.choice(values, len(values))) for _ in range(BOOTSTRAP)]
    return float(np.median(values)), float(np.std(boots, ddof=1))


def generate(n_per_class: int, seed: int, out: pathlib.Path, workdir: pathlib.Path) -> dict:
    from hepjax.data import jetclass_generation as jg

    samples, timing = {}, {}
    for name in jg.CLASSES:
        t0, c0 = time.perf_counter(), time.process_time()
        chunks = []
        samples.update(jg.generate(n_per_class, seed, classes=(name,),
                                   chunk_dir=workdir / "chunks",
                                   progress=lambda n, k, c: chunks.append(c)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        timing[name] = {"jets": n_per_class, "chunks": len(chunks), "wall_s": round(wall, 1),
                        "cpu_s": round(cpu, 1), "jets_per_wall_s": round(n_per_class / wall, 2),
                        "jets_per_cpu_s": round(n_per_class / max(cpu, 1e-9), 2)}
        print(name, timing[name], flush=True)
    jg.write_root(samples, out, seed)
    return timing


def analyse(path: pathlib.Path, seed: int) -> dict:
    import uproot

    from hepjax.data import formats
    from hepjax.data import jetclass_generation as jg

    jets = formats.read_jetclass(path, max_particles=128)   # what training will meet
    with uproot.open(path) as f:
        b = f["tree"].arrays(["jet_sdmass", "jet_pt", "jet_energy", "jet_eta", "jet_nparticles"]
                             + list(jg.LABEL_BRANCHES), library="np")
    e, pt, eta = b["jet_energy"].astype(float), b["jet_pt"].astype(float), b["jet_eta"]
    mass = np.sqrt(np.maximum(e ** 2 - (pt * np.cosh(eta)) ** 2, 0))
    names = [jets["label_names"][k].removeprefix("label_") for k in jets["label"]]
    names = np.array(names)
    out = {}
    for k, name in enumerate(jg.CLASSES):
        rows = names == name
        assert np.array_equal(rows, b[f"label_{name}"].astype(bool))
        sd_peak, sd_err, sd_n = peak(b["jet_sdmass"][rows].astype(float))
        m_peak, m_err, m_n = peak(mass[rows])
        sd_med, sd_med_err = median_with_error(b["jet_sdmass"][rows].astype(float), seed + k)
        out[name] = {"jets": int(rows.sum()), "sdmass_peak": round(sd_peak, 1),
                     "sdmass_peak_err": round(sd_err, 1), "sdmass_peak_jets": sd_n,
                     "mass_peak": round(m_peak, 1), "mass_peak_err": round(m_err, 1),
                     "sdmass_median": round(sd_med, 1), "sdmass_median_err": round(sd_med_err, 1),
                     "pole": POLE.get(name),
                     "mean_constituents": round(float(b["jet_nparticles"][rows].mean()), 1),
                     "median_pt": round(float(np.median(pt[rows])), 1)}
    return out, b, names, mass


def plot(b, names, mass, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hepjax.data import jetclass_generation as jg

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    bins = np.linspace(0, 300, 61)
    for ax, values, title in ((axes[0], b["jet_sdmass"], "soft-drop mass (beta=0, z_cut=0.1)"),
                              (axes[1], mass, "jet mass")):
        for k, name in enumerate(jg.CLASSES):
            ax.hist(values[names == name], bins, histtype="step", density=True, label=name,
                    color=plt.cm.tab10(k), lw=1.4)
        for pole in (80.38, 91.19, 125.0, 173.0):
            ax.axvline(pole, color="grey", ls=":", lw=0.8)
        ax.set_xlabel(f"{title} [GeV]")
        ax.set_ylabel("jets (normalised)")
    axes[0].legend(ncol=2, fontsize=8)
    fig.suptitle("hepjax JetClass-style sample: anti-kT 0.8, 500 < pT < 1000 GeV, |eta| < 2 "
                 "(dotted: W, Z, H, t)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(rates: dict, ana: dict) -> str:
    lines = ["| class | jets | jets/s (wall) | jets/s (CPU) | m_SD peak [GeV] | m_SD median [GeV] "
             "| m_jet peak [GeV] | pole [GeV] | <n constituents> | median pT [GeV] |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, a in ana.items():
        r = rates.get(name, {})
        pole = "" if a["pole"] is None else f"{a['pole']:g}"
        lines.append(f"| {name} | {a['jets']} | {r.get('jets_per_wall_s', '')} | "
                     f"{r.get('jets_per_cpu_s', '')} | {a['sdmass_peak']} ± {a['sdmass_peak_err']}"
                     f" | {a['sdmass_median']} ± {a['sdmass_median_err']} | {a['mass_peak']} ± "
                     f"{a['mass_peak_err']} | {pole} | {a['mean_constituents']} | "
                     f"{a['median_pt']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from hepjax.data import jetclass_generation as jg

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", choices=sorted(SIZES), default="smoke")
    p.add_argument("--workdir", default=None)
    p.add_argument("--n-per-class", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="the ROOT file (default under ~/.cache/hepjax)")
    args = p.parse_args(argv)
    n = args.n_per_class or SIZES[args.variant]
    workdir = pathlib.Path(args.workdir or f"runs/jetclass_{args.variant}")
    out = pathlib.Path(args.out) if args.out else jg.default_path(n, args.seed)
    rates_file = workdir / "rates.json"
    if out.is_file() and rates_file.is_file():
        rates = json.loads(rates_file.read_text())
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        rates = generate(n, args.seed, out, workdir)
        rates_file.write_text(json.dumps(rates, indent=1))
    ana, b, names, mass = analyse(out, args.seed)
    import importlib.metadata as md
    results = {"variant": args.variant, "n_per_class": n, "seed": args.seed, "file": str(out),
               "events_per_chunk": jg.DEFAULT_EVENTS_PER_CHUNK,
               "recipe": jg.RECIPE_VERSION, "pythia8mc": md.version("pythia8mc"),
               "fastjet": md.version("fastjet"), "uproot": md.version("uproot"),
               "date": time.strftime("%Y-%m-%d"), "rates": rates, "classes": ana}
    (HERE / f"results_{args.variant}.json").write_text(json.dumps(results, indent=1))
    (HERE / f"table_{args.variant}.md").write_text(table(rates, ana))
    plot(b, names, mass, HERE / f"mass_{args.variant}.png")
    print(table(rates, ana))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
