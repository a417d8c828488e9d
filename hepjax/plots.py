"""Plots physicists expect from a tagger, drawn with matplotlib (Agg backend, files only)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from hepjax import metrics


def rejection_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path, title: str = "",
                     figsize=(5.5, 4.2)) -> None:
    """Background rejection 1/eps_B against signal efficiency eps_S, log scale — the plot of
    the top-tagging landscape paper. ``curves``: legend name -> (labels, scores); each legend
    entry carries the AUC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = metrics.roc_curve(labels, scores)
        keep = (fpr > 0) & (tpr > 0)
        ax.plot(tpr[keep], 1 / fpr[keep], label=f"{name} (AUC {metrics.roc_auc(labels, scores):.4f})")
    ax.set_yscale("log")
    ax.set_xlabel(r"signal efficiency $\epsilon_S$")
    ax.set_ylabel(r"background rejection $1/\epsilon_B$")
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7 if len(curves) > 4 else 9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
