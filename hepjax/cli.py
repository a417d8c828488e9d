"""The ``hepjax`` command.

    hepjax [--distributed] train CONFIG[:ARG] --workdir DIR [--config.key=value ...]
    hepjax evaluate --workdir DIR [--data PATH] [--checkpoint best|latest]
    hepjax tune CONFIG[:ARG] --space PATH=DIST(ARGS) [--space ...] --study-dir DIR
                [--sampler grid|random|tpe|gp] [--n-trials N] [--n-jobs J] [--storage URL]
                [--population K] [--config.key=value ...]
    hepjax export --workdir RUN [--format stablehlo|onnx] [--out FILE] [--check-test-set]
    hepjax demo [--workdir DIR] [--quick]
    hepjax generate top-tagging|quark-gluon --n-jets N --seed S --out PATH
                    [--detector none|fast] [--mpi default|on|off] [--workers W]
                    [--format reference|native|energyflow]
    hepjax generate calorimeter --n-events N --seed S --out PATH [--particles 2-10]
                    [--energy 10,200] [--pdgs 11,-11,22,211,-211] [--source gun|jets] ...
    hepjax generate jetclass [--n-per-class N] [--seed S] [--classes QCD,Hbb,...] [--workers W]
                    [--events-per-chunk E] [--out PATH]
    hepjax generate deepjet [--n-events N] [--seed S] [--pileup-mu 20] [--max-minutes M]
                    [--process ttbar|qcd|zjet] [--out PATH]
    hepjax generate particle-flow --n-events N --seed S --out PATH [--process ttbar|qcd]
                    [--pileup 10]
    hepjax generate zjets --n-events N --seed S --out DIR [--events-per-chunk 500] [--workers W]

``generate`` writes top-tagging jets in the Top Tagging Reference Dataset layout (pandas HDF5,
key 'table') by default and quark/gluon jets in the energyflow .npz layout; ``native`` is
hepjax's columnar HDF5. ``generate calorimeter`` simulates events of overlapping particle showers
in the parametrised high-granularity calorimeter of ``hepjax.sim`` (hits with per-particle truth,
HDF5 layout in ``hepjax.sim.io``).

CONFIG is a Python file defining ``get_config(arg)`` or a module such as
``hepjax.configs.dijet_mlp``. ``evaluate`` prints its metrics as one JSON object on its last line
and writes them to ``DIR/eval_metrics.json``.

``--distributed`` first joins JAX's distributed runtime (``hepjax.parallel.distributed``:
every process of a multi-host job, each TPU-VM worker or SLURM task, runs the same command and
learns from the environment how to join); with no cluster in the environment it changes
nothing. ``python -m hepjax.parallel ARGS`` is the same as ``hepjax --distributed ARGS``.
Multi-process training needs ``--config.train.num_devices=0`` (a mesh over all devices).

Errors: a user error prints one line, ``hepjax: error: MESSAGE``, on stderr and exits with status
2; ``--debug`` (before or after the subcommand) lets it propagate with its traceback instead.
User errors are a fixed set, so that a bug still shows its traceback:

* ``OSError`` (a missing file or run directory, permissions, an unreadable HDF5 file);
* ``ValueError``, which includes ``FormatError`` (a malformed data file) and ``CheckpointError``
  (no intact checkpoint), and the library's checks of configs and data;
* what ``hepjax.config`` raises for a bad config spec or ``--config.x=y`` override: an unknown
  field (``KeyError``), a value of the wrong type (``TypeError``), no ``get_config``
  (``AttributeError``); and a config module that does not exist;
* ``KeyError``/``AttributeError`` raised inside ml_collections: a field the code needs is missing
  from the config (the message names the code that asked for it);
* ``ImportError`` whose message names the hepjax extra to install.

Anything else (``TypeError``, ``IndexError``, ``KeyError`` from our own code, ...) is a bug and
keeps its traceback. Warnings from ``hepjax`` (e.g. a skipped unreadable checkpoint) print as
one line ``hepjax: warning: MESSAGE`` when run as the ``hepjax`` command.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import traceback
import warnings


class UsageError(Exception):
    """A user error found by the command itself (a bad config spec or override)."""


def _json_line(metrics: dict) -> str:
    # 1/eps_B can be infinite on small samples; JSON has no inf, so write it as a string.
    clean = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in metrics.items()}
    return json.dumps(clean, sort_keys=True)


def _train(args, overrides) -> int:
    from hepjax.train import experiment

    config = _load_config(args.config, overrides)
    result = experiment.train(config, args.workdir)
    print(_json_line(result))
    return 0


def _load_config(spec: str, overrides):
    """The config of ``spec`` with ``overrides`` applied; a config module that does not exist is
    a UsageError (a module that fails to import for another reason is not)."""
    from hepjax import config as config_lib

    target = spec.partition(":")[0]
    try:
        config = config_lib.load_config(spec)
    except ModuleNotFoundError as err:
        if err.name and (target == err.name or target.startswith(err.name + ".")):
            raise UsageError(f"config {spec!r}: no module {err.name!r} (give PATH.py[:ARG] or "
                             "an importable module[:ARG])") from err
        raise
    return config_lib.parse_overrides(config, overrides)


def _evaluate(args) -> int:
    from hepjax.train import experiment

    result = experiment.evaluate_run(args.workdir, args.data, which=args.checkpoint)
    print(_json_line(result))
    return 0


def _tune(args, overrides) -> int:
    from hepjax import hpo

    _load_config(args.config, overrides)   # a bad config spec or override: a UsageError now
    print(_json_line(hpo.tune_main(args, overrides)))
    return 0


def _export(args) -> int:
    from hepjax import export

    print(_json_line(export.export_main(args)))
    return 0


def _demo(args) -> int:
    from hepjax import demo

    demo.run(args.workdir, quick=args.quick)
    return 0


def _generate(args) -> int:
    if args.task == "jetclass":
        from hepjax.data import jetclass_generation

        return jetclass_generation.main(args)
    if args.task == "deepjet":
        from hepjax.data import deepjet_generation

        return deepjet_generation.main(args)
    if args.task == "particle-flow":
        from hepjax.pf import events as pf_events

        print(_json_line(pf_events.main(args)))
        return 0
    if args.task == "calorimeter":
        from hepjax.sim import calorimeter

        print(_json_line(calorimeter.run_cli(args)))
        return 0
    if args.task == "zjets":
        from hepjax.data import zjets_generation

        print(_json_line(zjets_generation.main(args)))
        return 0
    if args.task == "dijet-resonance":
        from hepjax.anomaly import resonance

        print(_json_line(resonance.main(args)))
        return 0
    import time

    from tqdm import tqdm

    from hepjax.data import formats, generation

    fmt = args.format or ("reference" if args.task == "top-tagging" else "energyflow")
    bar = tqdm(total=args.n_jets, unit="jet", desc=f"{args.task} ({args.workers} workers)")
    start = time.perf_counter()
    mpi = {"default": None, "on": True, "off": False}[args.mpi]
    jets = generation.generate(args.task, args.n_jets, args.seed, detector=args.detector, mpi=mpi,
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
        meta = {"task": args.task, "n_jets": args.n_jets, "seed": args.seed, "mpi": args.mpi,
                "detector": args.detector, "events_per_chunk": args.events_per_chunk}
        formats.write_native(out, jets, meta)
    print(_json_line({"out": str(out), "format": fmt, "n_jets": int(len(jets["label"])),
                      "seconds": round(seconds, 2), "jets_per_s": round(args.n_jets / seconds, 2),
                      "workers": args.workers}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hepjax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="let errors propagate with their traceback (also after the subcommand)")
    parser.add_argument("--distributed", action="store_true",
                        help="join JAX's distributed runtime first (a multi-host job: every "
                             "process runs the same command; see hepjax.parallel.distributed); "
                             "also after the subcommand")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from a config into a run directory")
    train.add_argument("config", help="PATH.py[:ARG] or module[:ARG] defining get_config(arg)")
    train.add_argument("--workdir", required=True, help="run directory (resumes if it has checkpoints)")
    evaluate = sub.add_parser("evaluate", help="evaluate a run's best checkpoint")
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument("--data", default=None, help=".npz with 'features' and 'label' (default: "
                          "the config's test split)")
    evaluate.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    from hepjax import export, hpo   # light: neither imports JAX or Optuna at import time

    hpo.add_tune_arguments(sub.add_parser(
        "tune", help="hyperparameter search (Optuna: grid, random, TPE, GP), one run directory "
                     "per trial"))
    export.add_export_arguments(sub.add_parser(
        "export", help="write a trained run as StableHLO (jax.export) or ONNX"))
    demo = sub.add_parser("demo", help="train and evaluate the physics demo, write a ROC plot")
    demo.add_argument("--workdir", default="runs/demo")
    demo.add_argument("--quick", action="store_true", help="the few-second CI variant")
    generate = sub.add_parser("generate", help="generate jets with Pythia 8 + FastJet, or "
                              "calorimeter showers")
    tasks = generate.add_subparsers(dest="task", required=True)
    for task in ("top-tagging", "quark-gluon"):
        jets = tasks.add_parser(task, help=f"{task} jets (Pythia 8 + FastJet)")
        jets.add_argument("--n-jets", type=int, required=True)
        jets.add_argument("--seed", type=int, required=True)
        jets.add_argument("--out", required=True, help="output file")
        jets.add_argument("--detector", choices=("fast", "none"), default="fast")
        jets.add_argument("--workers", type=int, default=1, help="worker processes")
        jets.add_argument("--mpi", choices=("default", "on", "off"), default="default",
                          help="Pythia's multi-parton interactions (default: the task's recipe, "
                               "off for top-tagging as in the reference dataset, on for quark-gluon)")
        jets.add_argument("--events-per-chunk", type=int, default=200,
                          help="events per seeded chunk (changes the sample; workers do not)")
        jets.add_argument("--format", choices=("reference", "native", "energyflow"), default=None)
    from hepjax.data import jetclass_generation

    jetclass_generation.add_arguments(tasks.add_parser(
        "jetclass", help="the ten JetClass classes (H, W, Z, top decays, QCD) with Pythia 8 + "
                         "fast detector, a ROOT file in the JetClass layout"))
    from hepjax.data import deepjet_generation

    deepjet_generation.add_arguments(tasks.add_parser(
        "deepjet", help="jets in the CMS DeepJet ntuple schema (Pythia 8 ttbar + pile-up + fast "
                        "detector with impact parameters and secondary vertices), a ROOT file"))
    from hepjax.sim import calorimeter

    calorimeter.add_arguments(tasks.add_parser(
        "calorimeter", help="overlapping showers in the parametrised high-granularity "
                            "calorimeter (hepjax.sim)"))
    from hepjax.pf import events as pf_events

    pf_events.add_arguments(tasks.add_parser(
        "particle-flow", help="whole Pythia 8 events with pile-up as particle-flow elements "
                              "(tracks, calorimeter clusters) with targets (hepjax.pf)"))
    from hepjax.anomaly import resonance

    resonance.add_arguments(tasks.add_parser(
        "dijet-resonance", help="13 TeV QCD dijets and a W' -> X Y -> 4 quarks signal, two "
                                "leading R = 1.0 jets per event (LHC Olympics R&D style)"))
    from hepjax.data import zjets_generation

    zjets_generation.add_arguments(tasks.add_parser(
        "zjets", help="13 TeV Z(-> mu mu) + 1-3 jets at hadron level (Pythia 8 + FastJet "
                      "anti-kT R = 0.4), for event generation with flows (issue 27)"))
    return parser


# where hepjax.config judges a config spec or a --config.x=y override (its errors are user errors)
_CONFIG_CHECKS = ("load_config", "apply_override", "parse_overrides")


def _text(err: BaseException) -> str:
    """The message of an error on one line (a KeyError's without the quotes repr adds)."""
    text = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
    return " ".join(str(text).split()) or type(err).__name__


def _user_message(err: BaseException) -> str | None:
    """The one-line message for a user error (see the module docstring), None for a bug."""
    from hepjax import config as config_lib

    frames = traceback.extract_tb(err.__traceback__)
    last = frames[-1] if frames else None
    if isinstance(err, (UsageError, OSError, ValueError)):
        return _text(err)
    if (isinstance(err, (KeyError, TypeError, AttributeError)) and last is not None
            and last.filename == config_lib.__file__ and last.name in _CONFIG_CHECKS):
        return _text(err)
    inside_ml_collections = last is not None and "ml_collections" in last.filename
    if isinstance(err, (KeyError, AttributeError)) and inside_ml_collections:
        caller = next((f for f in reversed(frames) if "ml_collections" not in f.filename), None)
        where = (f" (needed by {pathlib.Path(caller.filename).name}:{caller.lineno} in {caller.name})"
                 if caller else "")
        # ml_collections' message: "'name'" or "'name'\nDid you mean \"other\" instead of ...?"
        inner = err
        while isinstance(inner, BaseException) and inner.args:
            inner = inner.args[0]   # AttributeError(KeyError("'name'...")) -> the text
        text = str(inner)
        field, _, hint = text.partition("\n")
        field = field.strip("'\"\\ ")
        hint = f" ({hint.strip()})" if hint.strip() else ""
        return f"the config has no field {field!r}{where}{hint}; add it to the config"
    if isinstance(err, ImportError) and "hepjax[" in str(err):
        return _text(err)
    return None


def _run(args, rest, parser) -> int:
    if args.command == "train":
        return _train(args, rest)
    if args.command == "tune":
        return _tune(args, rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "generate":
        return _generate(args)
    if args.command == "export":
        return _export(args)
    return _demo(args)


def _join_distributed() -> None:
    """Joins the multi-host job the environment describes, before anything touches a device."""
    from hepjax.parallel import distributed

    spec = distributed.initialize()
    if spec.distributed:
        print(f"hepjax: joined the {spec.source} job: {distributed.describe()}", file=sys.stderr,
              flush=True)


def main(argv=None, *, distributed: bool = False) -> int:
    """Runs the command; a user error prints ``hepjax: error: ...`` and returns 2 (with
    ``--debug`` it propagates). ``distributed=True`` acts as ``--distributed``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    distributed = distributed or "--distributed" in argv
    # both accepted before or after the subcommand
    argv = [a for a in argv if a not in ("--debug", "--distributed")]
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if distributed:
            _join_distributed()
        return _run(args, rest, parser)
    except Exception as err:  # noqa: BLE001 - re-raised unless it is a user error
        message = None if debug else _user_message(err)
        if message is None:
            raise
        print(f"hepjax: error: {message}", file=sys.stderr)
        return 2


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """hepjax's warnings as one line; other libraries' warnings as Python prints them."""
    if filename.startswith(str(pathlib.Path(__file__).parent)) and issubclass(category, UserWarning):
        print(f"hepjax: warning: {message}", file=file or sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def entry(distributed: bool = False) -> int:
    """The `hepjax` console script (and, with ``distributed=True``, ``python -m
    hepjax.parallel``): `main` in a process with the tuned allocator (`hepjax.runtime`),
    hepjax's warnings printed as one line."""
    from hepjax import runtime

    runtime.reexec_with_tuned_allocator()
    warnings.showwarning = _show_warning
    return main(distributed=distributed)


if __name__ == "__main__":
    sys.exit(entry())
