"""The ``hepjax`` command.

    hepjax train CONFIG[:ARG] --workdir DIR [--config.key=value ...]
    hepjax evaluate --workdir DIR [--data PATH] [--checkpoint best|latest]
    hepjax demo [--workdir DIR] [--quick]

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
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
