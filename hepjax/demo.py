"""``hepjax demo``: a top tagger trained from scratch on jets generated with Pythia 8.

Generates hadronic top and QCD jets (``hepjax.data.generation``: 14 TeV, anti-kt R = 0.8,
550 < pT < 650 GeV, fast detector; cached under ``~/.cache/hepjax`` or ``$HEPJAX_CACHE`` after the
first run), trains an MLP on jet observables (mass, N-subjettiness, energy correlations...) with
the full harness (checkpoints, early stopping, run records), evaluates the best checkpoint on the
test split (``ttv == 1``), and writes the ROC curve as background rejection 1/eps_B against signal
efficiency to ``WORKDIR/roc.png`` and the average top and QCD jet images to
``WORKDIR/jet_images.png``. ``quick=True`` runs the CI variant (400 jets, 150 steps).
"""
from __future__ import annotations

import json
import pathlib

import numpy as np

from hepjax import config as config_lib
from hepjax import metrics


def run(workdir: str | pathlib.Path = "runs/demo", quick: bool = False,
        cache_dir: str = "", workers: int | None = None) -> dict:
    import time

    from hepjax.data import top_tagging
    from hepjax.train import experiment

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = config_lib.load_config("hepjax.configs.top_tagging_mlp" + (":smoke" if quick else ""))
    config.data.cache_dir = str(cache_dir or "")
    if workers is not None:
        config.data.workers = int(workers)
    cached = top_tagging.cache_path(config.data)
    print(f"hepjax demo: top vs QCD jets (Pythia 8, 14 TeV, pT 550-650 GeV), {config.data.n_jets} "
          f"jets ({'cached: ' if cached.is_file() else 'generating, then caching in '}{cached}), "
          f"MLP {tuple(config.model.hidden)} on {len(config.data.observables)} jet observables, "
          f"{config.train.num_steps} steps -> {workdir}")
    start = time.perf_counter()
    if not cached.is_file():
        top_tagging.generate_cached(config.data, progress=_progress(int(config.data.n_jets)))
    generated = time.perf_counter()
    result = experiment.train(config, workdir)
    scores, labels = _test_scores(workdir)
    _plot_roc(labels, scores, workdir / "roc.png")
    baseline = _mass_window_baseline(config)
    _plot_images(config, workdir / "jet_images.png")
    n_background = int(np.sum(labels == 0))
    print(f"test: accuracy {result['accuracy']:.4f}  AUC {result['auc']:.4f}")
    for key, eff in (("rej30", 0.3), ("rej50", 0.5)):
        print(f"  1/eps_B at eps_S = {eff}: {rejection_text(result[key], n_background)}")
    print(f"cut-based baseline (|m_jet - 175 GeV| alone): AUC {baseline:.4f}")
    print(f"ROC plot: {workdir / 'roc.png'}; jet images: {workdir / 'jet_images.png'}; "
          f"metrics: {workdir / 'test_metrics.json'}")
    result["mass_window_auc"] = baseline
    result["generation_s"] = generated - start
    result["total_s"] = time.perf_counter() - start
    (workdir / "demo_summary.json").write_text(json.dumps(result, indent=2))
    return result


def rejection_text(rejection: float, n_background: int) -> str:
    """1/eps_B with its Poisson error from the background jets that pass the cut, saying when
    fewer than ten pass (statistics-limited) or none does (only a lower bound)."""
    if not np.isfinite(rejection):
        return f"> {n_background} (none of the {n_background} background test jets passes)"
    n_pass, error = metrics.rejection_statistics(rejection, n_background)
    text = f"{rejection:.1f} ± {error:.1f} ({n_pass:.0f} of {n_background} background jets pass)"
    return text + (", statistics-limited" if n_pass < metrics.MIN_BACKGROUND_JETS else "")


def _test_scores(workdir):
    """Signal scores of the best checkpoint on the test split (re-using the saved pipeline)."""
    from hepjax.train import experiment

    return experiment.predict_run(workdir)


def _progress(total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="jet", desc="generating")

    def update(n):
        bar.update(n)
        if bar.n >= total:
            bar.close()
    return update


def _mass_window_baseline(config) -> float:
    from hepjax.data import features, top_tagging

    test = top_tagging.load_jets(config.data)["test"]
    mass = features.jet_kinematics(test["p4"], test["mask"])["mass"]
    return metrics.roc_auc(test["label"], -np.abs(mass - 175.0))


def _plot_images(config, path):
    """Average preprocessed jet images of the test split's top and QCD jets, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from hepjax.data import images, top_tagging

    test = top_tagging.load_jets(config.data)["test"]
    pictures = images.jet_images(test["p4"], test["mask"], int(config.data.image_size))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, label, name in zip(axes, (1, 0), ("top jets", "QCD jets")):
        mean = pictures[test["label"] == label].mean(0)
        shown = ax.imshow(mean.T, origin="lower", extent=(-1, 1, -1, 1),
                          norm=LogNorm(vmin=1e-5, vmax=max(mean.max(), 2e-5)), cmap="viridis")
        ax.set_title(f"average {name} ({int((test['label'] == label).sum())})")
        ax.set_xlabel(r"$\eta'$ (rotated, centred)")
        ax.set_ylabel(r"$\phi'$")
        fig.colorbar(shown, ax=ax, label="pT fraction per pixel")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_roc(labels, scores, path):
    from hepjax import plots

    plots.rejection_curves({"MLP on jet observables": (labels, scores)}, path,
                           "top vs QCD jets (Pythia 8 + fast detector)")
