"""Data efficiency: LorentzNet vs ParticleNet trained on 0.5 %, 1 % and 5 % of a generated
top-tagging training set (the fractions of the LorentzNet paper's Table 3, Gong et al.,
arXiv:2201.08187).

    python -m experiments.data_efficiency.run [--n-jets 20000] [--fractions 0.005,0.01,0.05]
        [--steps 1000] [--evals 10] [--max-particles N] [--workdir runs/data_efficiency] [--smoke]

Both taggers use their paper configurations (``experiments/top_tagging/config.py``) and the same
nested training subsets (``data.train_fraction``, seeded), the same validation and test splits,
and the same step budget with early stopping on the validation loss (best checkpoint restored):
with a few hundred jets a fixed number of epochs would mean a handful of steps. Writes
``WORKDIR/table.md``, ``table.json`` and ``efficiency.png`` (test AUC and 1/eps_B(0.3) against
the number of training jets).
"""
from __future__ import annotations

import argparse
import json
import pathlib

from hepjax import config as config_lib
from hepjax.train import experiment

CONFIG = pathlib.Path(__file__).parents[1] / "top_tagging" / "config.py"
MODELS = ("lorentznet", "particlenet")


def run_one(model: str, fraction: float, args) -> dict:
    config = config_lib.load_config(f"{CONFIG}:{model}{',smoke' if args.smoke else ''}")
    config.data.n_jets = args.n_jets
    config.data.train_fraction = fraction
    cadence = max(args.steps // args.evals, 1)
    config.train.update(num_epochs=0, num_steps=args.steps, batch_size=args.batch_size,
                        eval_every=cadence, checkpoint_every=cadence,
                        eval_every_epochs=0.0, checkpoint_every_epochs=0.0)
    if args.max_particles:
        config.data.max_particles = args.max_particles
    config.train.log_every = max(args.steps // 20, 1)
    config.train.early_stopping.patience = 4
    schedule = config.optimizer.get("schedule")   # flat_decay follows the run's own epochs
    if schedule and schedule.name == "warmup_cosine":
        schedule.warmup_steps = min(schedule.warmup_steps, max(args.steps // 10, 1))
    workdir = pathlib.Path(args.workdir) / f"{model}_{fraction:g}"
    result = experiment.train(config, workdir)
    sizes = json.loads((workdir / "data_sizes.json").read_text())
    return {"model": model, "fraction": fraction, "train_jets": sizes["train"],
            "test_jets": sizes["test"], **{k: result[k] for k in ("accuracy", "auc", "rej30", "rej50")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-jets", type=int, default=20_000)
    parser.add_argument("--fractions", default="0.005,0.01,0.05")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workdir", default="runs/data_efficiency")
    parser.add_argument("--evals", type=int, default=10, help="validation evaluations per training")
    parser.add_argument("--max-particles", type=int, default=0,
                        help="constituents per jet (default: the taggers' configs, 100)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated taggers to compare (default: {','.join(MODELS)})")
    parser.add_argument("--smoke", action="store_true", help="small models and data, for CI")
    args = parser.parse_args(argv)
    fractions = [float(f) for f in args.fractions.split(",")]
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown tagger(s) {unknown}; expected some of {list(MODELS)}")
    rows = [run_one(model, f, args) for f in fractions for model in models]
    workdir = pathlib.Path(args.workdir)
    lines = ["| training jets (fraction) | tagger | accuracy | AUC | 1/eps_B (0.3) | 1/eps_B (0.5) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['train_jets']} ({r['fraction']:.1%}) | {r['model']} | {r['accuracy']:.4f} | "
                     f"{r['auc']:.4f} | {r['rej30']:.1f} | {r['rej50']:.1f} |")
    table = "\n".join(lines) + "\n"
    (workdir / "table.md").write_text(table)
    (workdir / "table.json").write_text(json.dumps(rows, indent=2))
    _plot(rows, models, workdir / "efficiency.png")
    print(table)
    return 0


def _plot(rows, models, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        n = [r["train_jets"] for r in mine]
        axes[0].plot(n, [r["auc"] for r in mine], "o-", label=model)
        axes[1].plot(n, [min(r["rej30"], 1e4) for r in mine], "o-", label=model)
    for ax, label in zip(axes, ("test AUC", r"$1/\epsilon_B$ at $\epsilon_S = 0.3$")):
        ax.set_xscale("log")
        ax.set_xlabel("training jets")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    from hepjax import runtime

    runtime.reexec_with_tuned_allocator()
    raise SystemExit(main())
