"""The ``hepjax`` command.

    hepjax train CONFIG[:ARG] --workdir DIR [--config.key=value ...]
    hepjax evaluate --workdir DIR [--data PATH] [--checkpoint best|latest]
    hepjax demo [--workdir DIR] [--quick]
    hepjax generate top-tagging|quark-gluon --n-jets N --seed S --out PATH
                    [--detector none|fast] [--workers W] [--format reference|native|energyflow]

``generate`` writes top-tagging jets in the Top Tagging Reference Dataset layout (pandas HDF5,
key 'table') by default and quark/gluon jets in the energyflow .npz layout; ``native`` is
hepjax's columnar HDF5.

CONFIG is a Python file defining ``get_config(arg)`` or a module such as
``hepjax.configs.dijet_mlp``. ``evaluate`` prints its metrics as one JSON object on its last line
and writes them to ``DIR/eval_metrics.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys


def _json_line(metrics: dict) -> str:
    # 1/eps_B can be infinite on small samples; JSON has no inf, so write it as a string.
    clean = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in metrics.items()}
    return json.dumps(clean, sort_keys=True)


def _train(args, overrides) -> int:
    from hepjax import config as config_lib
    from hepjax.train import experiment

    config = config_lib.parse_overrides(config_lib.load_config(args.config), overrides)
    result = experiment.train(config, args.workdir)
    print(_json_line(result))
    return 0


def _evaluate(args) -> int:
    from hepjax.train import experiment

    result = experiment.evaluate_run(args.workdir, args.data, which=args.checkpoint)
    print(_json_line(result))
    return 0


def _demo(args) -> int:
    from hepjax import demo

    demo.run(args.workdir, quick=args.quick)
    return 0


def _generate(args) -> int:
    import time

    from tqdm import tqdm

    from hepjax.data import formats, generation

    fmt = args.format or ("reference" if args.task == "top-tagging" else "energyflow")
    bar = tqdm(total=args.n_jets, unit="jet", desc=f"{args.task} ({args.workers} workers)")
    start = time.perf_counter()
    jets = generation.generate(args.task, args.n_jets, args.seed, detector=args.detector,
                               workers=args.workers, events_per_chunk=args.events_per_chunk,
                               progress=bar.update)
    bar.close()
    seconds = time.perf_counter() - start
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "reference":
        formats.write_top_tagging(out, jets["p4"], jets["truth"], jets["ttv"], jets["label"])
    elif fmt == "energyflow":
        formats.write_energyflow_npz(out, formats.p4_to_ptyphi(jets["p4"], jets["pid"]), jets["label"])
    else:
        meta = {"task": args.task, "n_jets": args.n_jets, "seed": args.seed,
                "detector": args.detector, "events_per_chunk": args.events_per_chunk}
        formats.write_native(out, jets, meta)
    print(_json_line({"out": str(out), "format": fmt, "n_jets": int(len(jets["label"])),
                      "seconds": round(seconds, 2), "jets_per_s": round(args.n_jets / seconds, 2),
                      "workers": args.workers}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hepjax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from a config into a run directory")
    train.add_argument("config", help="PATH.py[:ARG] or module[:ARG] defining get_config(arg)")
    train.add_argument("--workdir", required=True, help="run directory (resumes if it has checkpoints)")
    evaluate = sub.add_parser("evaluate", help="evaluate a run's best checkpoint")
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument("--data", default=None, help=".npz with 'features' and 'label' (default: "
                          "the config's test split)")
    evaluate.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    demo = sub.add_parser("demo", help="train and evaluate the physics demo, write a ROC plot")
    demo.add_argument("--workdir", default="runs/demo")
    demo.add_argument("--quick", action="store_true", help="the few-second CI variant")
    generate = sub.add_parser("generate", help="generate jets with Pythia 8 + FastJet")
    generate.add_argument("task", choices=("top-tagging", "quark-gluon"))
    generate.add_argument("--n-jets", type=int, required=True)
    generate.add_argument("--seed", type=int, required=True)
    generate.add_argument("--out", required=True, help="output file")
    generate.add_argument("--detector", choices=("fast", "none"), default="fast")
    generate.add_argument("--workers", type=int, default=1, help="worker processes")
    generate.add_argument("--events-per-chunk", type=int, default=200,
                          help="events per seeded chunk (changes the sample; workers do not)")
    generate.add_argument("--format", choices=("reference", "native", "energyflow"), default=None)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        return _train(args, rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "generate":
        return _generate(args)
    return _demo(args)


def entry() -> int:
    """The `hepjax` console script: `main` in a process with the tuned allocator
    (`hepjax.runtime`)."""
    from hepjax import runtime

    runtime.reexec_with_tuned_allocator()
    return main()


if __name__ == "__main__":
    sys.exit(entry())
