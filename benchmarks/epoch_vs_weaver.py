"""hepjax against weaver-core: one training epoch of ParT and of ParticleNet, end to end.

The same generated top-tagging jets, the same CPU, data loading included, compilation excluded
(timed apart and reported).

Data. N training jets (``--n-jets``, default 50,000) drawn (seeded, without replacement) from
the training split of a generated sample: by default the cached 150,000-jet sample of the
landscape's ``cpu`` variant (``experiments/top_tagging/config.py:MODEL,cpu``; generated first if
it is not cached), or ``--sample FILE`` (hepjax native HDF5). They are written twice, once per
framework, in its own format:

  hepjax  a directory of native files (``hepjax.data.formats.write_native``: four-momenta of
          every constituent) read by ``hepjax.data.load_splits`` (``config.data.path``); the
          seven particle features are computed from the four-momenta at load time, as always;
  weaver  a parquet file of jagged per-particle branches, as jet-universe/particle_transformer's
          utils/convert_top_datasets.py writes the top-landscape data: hepjax's seven features
          (``hepjax.data.features.particle_features`` of the first P particles, exactly what
          hepjax computes), the four-momenta (pf_vectors) and a mask, read directly by the data
          config benchmarks/weaver_configs/top_kin7.yaml (no ``new_variables``), filled in per
          model with P and with hepjax's standardisation (mean and std fitted on the training
          jets' real particles, no clipping), so both networks see the same numbers.

Networks: the hepjax landscape configs (``experiments/top_tagging/config.py:part`` and
``:particlenet``) with two changes: one epoch over these jets, and ``task = 'multiclass'`` with 2
classes (softmax cross entropy over two logits, weaver's loss; the binary task's single logit
would make the output layer one unit smaller). weaver builds the same networks from the network
configs benchmarks/weaver_configs/{ParticleTransformer,ParticleNet}.py (copies of the
repository's example_*.py) with the hepjax config's hyperparameters passed as
``--network-option``; the parameter counts are asserted equal before anything is timed (ParT
2,141,134, ParticleNet 366,160 for 7 features and 2 classes). P = the config's
``data.max_particles``: 128 for ParT, 100 for ParticleNet (weaver: ``length`` in the data
config).

Training recipe on both sides: the config's (train_TopLandscape.sh's): Ranger, lr 1e-3 with
weight decay 0.01 (ParT) / lr 1e-2 (ParticleNet), weaver's flat+decay (over a one-epoch run
both implementations hold 1 % of the rate throughout), batch ``--batch-size``, S = N // batch
steps (the ragged tail dropped on both sides), float32 (the recipe's ``--use-amp`` is CUDA
autocast; off on a CPU), torch with ``--threads`` threads (default: the cores this process may
use; XLA uses them all), one glibc malloc setting for both processes (``--allocator``,
hepjax.runtime, default ``tuned``).
The batch defaults to 128 (the landscape cpu variant's), not the recipe's 512: memory grows with
the batch (ParT's step at 128 jets x 128 particles: 7.5-8.3 GB resident in hepjax with one step
in flight, 7-9 GB in weaver), so 512 does not fit a 23 GB machine; ``--batch-size 512`` where
memory allows.

Each side trims its batches its own way: weaver's SequenceTrimmer (in both networks: after 5
untrimmed steps each training batch is cut to a random 90-100 % quantile of its jets' lengths,
dropping a random subset of the particles of the longest jets); hepjax's length bucketing
(``train.length_buckets`` = (32, 48, 64, 96, 128) from the config: each batch padded to the
smallest bucket holding its longest jet, nothing dropped) with batches of similar lengths
(``train.length_sort_window``, ``--sort-window``, default 16 here: each window of 16 batches
sorted by length, the epoch's batches then shuffled, all seeded; see hepjax.data.pipeline). The
landscape configs themselves keep random batches (window 0) until the effect of the window on
the taggers' accuracy is measured; without it, 1.4 % of these jets having over 100 particles,
most 128-jet batches hold one longer than 96 and hepjax mostly pads to P. The mean padded length
of the training batches is reported for both.

What is timed (each side a fresh subprocess; the sides run one after the other, never at once):

  weaver  weaver's own training entry point, ``weaver.train.main`` (what the ``weaver`` command
          runs), inside benchmarks/.venv-weaver, with train_TopLandscape.sh's data options
          (``--in-memory --fetch-step 1 --num-workers 1``) and ``--run-mode train --num-epochs 1
          --steps-per-epoch S --gpus ''``. The epoch is the wall time of its
          ``train_classification`` call (patched only to be timed): its DataLoader worker
          process starts, reads the parquet file, standardises, pads and keeps it in memory,
          then S optimiser steps with weaver's per-step host work (loss.item(), tqdm). Its
          startup before that call (imports, data config, model building, weaver's FLOPs count,
          optimiser) is reported as ``startup_s``; the checkpoint it writes after the epoch is
          outside the window; with ``--run-mode train`` it runs no validation.
  hepjax  the harness's own pieces as ``hepjax.train.experiment.train`` and ``loop.fit`` use
          them, without fit's validation, checkpoints and metric files: ``load_splits``, the
          config's preprocessing fitted and applied, ``TrainBatches`` with the length buckets,
          the jitted step of ``compile_steps``, the step's metrics fetched and NaN-checked every
          ``train.log_every`` steps. The epoch is the data loading (reading the files, features,
          preprocessing) plus the S steps. Compilation is excluded: between the two, the step is
          compiled ahead of time (``lower().compile()``, which fills jit's cache) for exactly
          the padded lengths the epoch will meet (known beforehand from the masks and the batch
          order); that is ``compile_s``. Compilations still happening inside the timed windows
          (JAX's small eager-op programs of the preprocessing; a missed shape would show here)
          are measured with jax.monitoring's spans, subtracted and added to ``compile_s``
          (``compile_in_epoch_s``). Startup (imports, config, model initialisation) is reported
          as ``startup_s``.

The ratio is weaver's epoch time / hepjax's (> 1: hepjax faster): ``ratio_part`` and
``ratio_particlenet``, the medians over ``--repeats`` (each repeat runs both sides, the order
alternating). Caveats of the comparison: weaver's data loading runs in its worker process,
beside the training (on these 2 cores it shares them), hepjax's in the training process
before the steps; hepjax computes the particle features from four-momenta while loading,
weaver reads them precomputed. Run it on an otherwise idle machine: each run records the CPU
that anything else used meanwhile (``foreign_load``, in cores, from /proc/stat minus the run's
own processes) and warns above 0.1. Under such load weaver suffers far more than hepjax (smoke
runs beside a ~1-core test suite: weaver's epoch up to 7x longer, hepjax's ~1.1x), so such a
ratio says little. Expected duration at the defaults on an idle 2-core machine: about 1.5 h
(390 steps per side and model; ParT steps of a few seconds).

Prints a table and, as the last line, a JSON object (``ratio_part``, ``ratio_particlenet``,
both sides' epoch, data, startup and compile seconds, mean padded lengths, peak memory,
parameter counts, jets, steps, the CPU, versions, the allocator, the commit).

    .venv/bin/python benchmarks/epoch_vs_weaver.py [--n-jets 50000] [--models part,particlenet]
        [--batch-size 128] [--repeats 1] [--threads 0] [--allocator tuned|hugetlb|default]
        [--buckets config|none|32,64,...] [--sort-window 16]
        [--sample FILE] [--work DIR] [--json OUT.json]
    .venv/bin/python benchmarks/epoch_vs_weaver.py --smoke   # 2,048 jets, batch 128, the
        # configs' small smoke widths: the script end to end in a few minutes

The weaver venv (torch 2.13.0 CPU, weaver-core; created if missing as for the other weaver
benchmarks) also needs weaver-core's data-pipeline requirements (awkward, pyarrow, numba,
PyYAML, tqdm, scikit-learn); they are installed into it from wheels when missing.
Intermediate files go to a temporary directory (kept with ``--work DIR``); each subprocess's
log is there (``<model>_<side>_<repeat>.log``).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from weaver_peer import VENV, VENV_PY, cpu_description, ensure_venv, median

HERE = pathlib.Path(__file__).resolve().parent
SCRIPT = pathlib.Path(__file__).resolve()
REPO = HERE.parent
CONFIG = REPO / "experiments" / "top_tagging" / "config.py"
WEAVER_CONFIGS = HERE / "weaver_configs"
DATA_TEMPLATE = WEAVER_CONFIGS / "top_kin7.yaml"
NETWORKS = {"part": WEAVER_CONFIGS / "ParticleTransformer.py",
            "particlenet": WEAVER_CONFIGS / "ParticleNet.py"}
MODELS = ("part", "particlenet")

# hepjax.data.features.PARTICLE_FEATURES (checked) and their weaver branch names, in order
HEPJAX_FEATURES = ("deta", "dphi", "log_pt", "log_e", "log_pt_rel", "log_e_rel", "delta_r")
FEATURE_BRANCHES = ("part_deta", "part_dphi", "part_pt_log", "part_e_log", "part_logptrel",
                    "part_logerel", "part_deltaR")
VECTOR_BRANCHES = ("part_px", "part_py", "part_pz", "part_energy")  # weaver's pf_vectors order
PARTICLE_BRANCHES = FEATURE_BRANCHES + VECTOR_BRANCHES + ("part_mask",)
NO_CLIP = 1e9  # weaver's clip bounds for the standardised features: no clipping, as hepjax

# weaver-core's requirements for its data pipeline and training loop (its METADATA's minimum
# versions); the model files alone need only torch (weaver_peer.ensure_venv)
PIPELINE_REQUIREMENTS = ("awkward>=2.6.8", "pyarrow>=22.0.0", "numba>=0.63.1", "PyYAML>=6.0.2",
                         "tqdm>=4.66.5", "scikit-learn>=1.5.2")
PIPELINE_PROBE = "import weaver.train, awkward, pyarrow.parquet, yaml, numba, sklearn, tqdm"
WEAVER_VERSIONS = ("torch", "weaver-core", "numpy", "awkward", "pyarrow", "numba", "PyYAML",
                   "scikit-learn", "tqdm")
HEPJAX_VERSIONS = ("jax", "jaxlib", "flax", "optax", "numpy", "ml_collections")

SMOKE = {"n_jets": 2048, "batch_size": 128}
SMALL_SPLITS = 1000   # val / test jets of the hepjax directory (load_splits wants all three)
SUBSET_SEED = 0

COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


def _versions(names) -> dict:
    import importlib.metadata as md
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _max_rss_gb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _cpu_busy_s() -> float:
    """CPU seconds used on this machine so far by everything, steal time included
    (/proc/stat: user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    """CPU seconds used so far by this process's live children (weaver's DataLoader worker,
    which no one waits for, so that rusage never counts it)."""
    me, total, tick = os.getpid(), 0.0, os.sysconf("SC_CLK_TCK")
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # ppid; then utime, stime (fields 4, 14, 15 of proc(5))
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                         text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


# ------------------------------------------------------------------------ hepjax: the config

def hepjax_config(model: str, data_dir: str, batch_size: int, smoke: bool, buckets,
                  sort_window=None):
    """The landscape config of ``model`` for this benchmark: one epoch over the jets in
    ``data_dir`` at ``batch_size``, a 2-class softmax head (weaver's), the smoke variant's
    widths with ``smoke``; ``buckets`` / ``sort_window`` None keep the config's length buckets /
    length-sort window."""
    from hepjax.config import load_config

    config = load_config(f"{CONFIG}:{model}")
    if smoke:
        config.model = load_config(f"{CONFIG}:{model},smoke").model
    config.task = "multiclass"
    config.model.num_classes = 2
    config.data.path = str(data_dir)
    config.data.update(max_train_jets=0, max_val_jets=0, train_fraction=1.0)
    config.train.update(num_epochs=1, num_steps=0, batch_size=int(batch_size))
    if buckets is not None:
        config.train.length_buckets = tuple(int(b) for b in buckets)
    if sort_window is not None:
        config.train.length_sort_window = int(sort_window) if config.train.length_buckets else 0
    return config


def weaver_options(model: str, config) -> tuple[dict, list[str]]:
    """(weaver --network-option values as Python literals, the optimiser's weaver arguments)
    mirroring the hepjax config; raises where the config holds something not mirrored."""
    m = config.model
    if model == "part":
        options = {
            "pair_input_dim": 4 if m.use_pair_features else 0,
            "use_pre_activation_pair": bool(m.use_pre_activation_pair),
            "embed_dims": [int(d) for d in m.embed_dims],
            "pair_embed_dims": [int(d) for d in m.pair_embed_dims],
            "num_heads": int(m.num_heads), "num_layers": int(m.num_layers),
            "num_cls_layers": int(m.num_cls_layers),
            "block_params": {"ffn_ratio": int(m.ffn_ratio), "dropout": float(m.dropout),
                             "attn_dropout": float(m.attn_dropout),
                             "activation_dropout": float(m.activation_dropout)},
            "cls_block_params": {"ffn_ratio": int(m.ffn_ratio), "dropout": 0,
                                 "attn_dropout": 0, "activation_dropout": 0},
            "fc_params": [(int(w), float(r)) for w, r in m.fc_params],
            "activation": str(m.activation)}
    else:
        mirrored = {"coord_index": (0, 1), "coord_metric": "euclidean", "aggregation": "mean"}
        differ = {k: m[k] for k, v in mirrored.items()
                  if (tuple(m[k]) if k == "coord_index" else m[k]) != v}
        if differ:
            raise ValueError(f"particlenet config {differ}: weaver's ParticleNet has {mirrored}")
        options = {"conv_params": [(int(k), tuple(int(c) for c in ch)) for k, ch in m.conv_params],
                   "fc_params": [(int(w), float(r)) for w, r in m.fc_params],
                   "use_fusion": bool(m.use_fusion), "use_fts_bn": bool(m.use_fts_bn)}
    opt = config.optimizer.to_dict()
    name = opt.pop("name")
    schedule = (opt.pop("schedule", None) or {}).get("name", "none")
    lr = float(opt.pop("learning_rate"))
    wd = float(opt.pop("weight_decay", 0.0) or 0.0)
    if name != "ranger" or schedule not in ("flat_decay", "none") or opt:
        raise ValueError(f"{model} optimizer {name}, schedule {schedule}, fields {sorted(opt)}: "
                         "only Ranger (lr, weight decay) with flat_decay or no schedule is "
                         "mirrored in weaver's arguments")
    argv = ["--optimizer", "ranger", "--start-lr", repr(lr),
            "--lr-scheduler", "flat+decay" if schedule == "flat_decay" else "none"]
    if wd:
        argv += ["--optimizer-option", "weight_decay", repr(wd)]
    return {k: repr(v) for k, v in options.items()}, argv


# ---------------------------------------------------------- step 1: the data (hepjax venv)

def _sample_path(spec: dict) -> pathlib.Path:
    """``--sample``, else the landscape cpu variant's cached sample if it holds enough training
    jets, else a sample generated (and cached) for this benchmark."""
    import math

    from hepjax.config import load_config
    from hepjax.configs import defaults
    from hepjax.data import top_tagging

    if spec["sample"]:
        return pathlib.Path(spec["sample"])
    cpu = load_config(f"{CONFIG}:part,cpu").data
    fraction = float(cpu.ttv_fractions[0])
    if int(cpu.n_jets) * fraction >= spec["n_jets"] * 1.02:
        path = top_tagging.cache_path(cpu)
        if path.is_file():
            return path
        if spec["n_jets"] > 10_000:
            print(f"generating the landscape cpu sample ({cpu.n_jets} jets, ~45 jets/s per "
                  f"core): {path}", flush=True)
            return top_tagging.generate_cached(cpu)
    n = int(math.ceil(spec["n_jets"] / 0.8 * 1.05 / 1000.0)) * 1000
    cfg = defaults.top_tagging_data(n_jets=n, ttv_fractions=(0.8, 0.1, 0.1),
                                    workers=int(spec["workers"]))
    print(f"generating {n} jets (cached): {top_tagging.cache_path(cfg)}", flush=True)
    return top_tagging.generate_cached(cfg)


def _flat_arrays(p4, mask, label, features) -> dict:
    """The jagged branches of weaver's parquet file, flattened over the real particles, with
    their per-jet counts and the two label branches."""
    import numpy as np

    flat = features[mask]
    out = {name: np.ascontiguousarray(flat[:, i], np.float32)
           for i, name in enumerate(FEATURE_BRANCHES)}
    vec = p4[mask]  # (E, px, py, pz)
    for name, col in zip(VECTOR_BRANCHES, (1, 2, 3, 0)):
        out[name] = np.ascontiguousarray(vec[:, col], np.float32)
    out["part_mask"] = np.ones(len(vec), np.float32)
    out["counts"] = mask.sum(1).astype(np.int64)
    out["jet_isTop"] = (label == 1).astype(np.int32)
    out["jet_isQCD"] = (label == 0).astype(np.int32)
    return out


def prepare(spec_path: str) -> None:
    """Writes the hepjax data directory, per model the weaver arrays (.npz, made parquet in the
    weaver venv) and data config, and counts hepjax's parameters; the answer to spec['out']."""
    import numpy as np
    import yaml
    from flax import nnx

    from hepjax import preprocessing
    from hepjax.data import features as features_lib
    from hepjax.data import formats
    from hepjax.models import model_fn_from_config
    from hepjax.train import experiment
    from hepjax.train.state import count_params

    spec = json.loads(pathlib.Path(spec_path).read_text())
    work = pathlib.Path(spec["work"])
    if tuple(features_lib.PARTICLE_FEATURES) != HEPJAX_FEATURES:
        raise RuntimeError(f"hepjax's particle features are now {features_lib.PARTICLE_FEATURES}"
                           f"; this script maps {HEPJAX_FEATURES} to {FEATURE_BRANCHES}")
    sample = _sample_path(spec)
    jets = formats.read_native(sample)
    ttv = jets["ttv"]
    train_rows = np.flatnonzero(ttv == 0)
    n = int(spec["n_jets"])
    if n > len(train_rows):
        raise SystemExit(f"{sample}: {len(train_rows)} training jets, --n-jets {n} asked")
    rows = {"train": np.sort(np.random.default_rng(SUBSET_SEED).permutation(train_rows)[:n]),
            "val": np.flatnonzero(ttv == 2)[:SMALL_SPLITS],
            "test": np.flatnonzero(ttv == 1)[:SMALL_SPLITS]}
    hepjax_dir = work / "data" / "hepjax"
    hepjax_dir.mkdir(parents=True, exist_ok=True)
    meta = {"task": "top-tagging", "source": str(sample)}
    for split, r in rows.items():
        formats.write_native(hepjax_dir / f"{split}.h5",
                             {"p4": jets["p4"][r], "n_constituents": jets["n_constituents"][r],
                              "label": jets["label"][r]}, {**meta, "split": split})
    out = {"sample": str(sample), "n_jets": n, "hepjax_dir": str(hepjax_dir),
           "signal_fraction": float(jets["label"][rows["train"]].mean()),
           "mean_constituents": float(jets["n_constituents"][rows["train"]].mean()), "models": {}}
    for model in spec["models"]:
        config = hepjax_config(model, hepjax_dir, spec["batch_size"], spec["smoke"],
                               spec["buckets"])
        p = int(config.data.max_particles)
        fitted = None
        for split in ("train", "val"):
            r = rows[split]
            p4, mask = jets["p4"][r][:, :p], jets["mask"][r][:, :p]
            feats, names = features_lib.particle_features(p4, mask)
            if fitted is None:   # fitted on the training jets, as hepjax fits it
                fitted = experiment._preprocessing(config, tuple(names)).fit(feats, mask)
            np.savez(work / f"{model}_{split}.npz",
                     **_flat_arrays(p4, mask, jets["label"][r], feats))
        steps = fitted.pipeline.steps
        if (len(steps) != 1 or not isinstance(steps[0], preprocessing.Standardize)
                or steps[0].features is not None or steps[0].groups):
            raise ValueError(f"{model} config preprocessing {steps}: only a plain per-feature "
                             "Standardize is mirrored in weaver's data config")
        mean = np.asarray(fitted.params[0]["mean"], np.float64)
        std = np.asarray(fitted.params[0]["std"], np.float64)
        data_config = yaml.safe_load(DATA_TEMPLATE.read_text())
        standard = {b: [float(mean[i]), float(1.0 / std[i]), -NO_CLIP, NO_CLIP]
                    for i, b in enumerate(FEATURE_BRANCHES)}
        for name, group in data_config["inputs"].items():
            group["length"] = p
            if name in ("pf_points", "pf_features"):
                group["vars"] = [[v[0], *standard[v[0]]] for v in group["vars"]]
        if [v[0] for v in data_config["inputs"]["pf_features"]["vars"]] != list(FEATURE_BRANCHES):
            raise ValueError(f"{DATA_TEMPLATE}: pf_features must list {FEATURE_BRANCHES} in order")
        yaml_path = work / f"{model}_data.yaml"
        yaml_path.write_text(f"# {DATA_TEMPLATE.name} filled in by {SCRIPT.name} for {model}: "
                             f"length {p}, hepjax's standardisation\n"
                             + yaml.safe_dump(data_config, sort_keys=False))
        built = model_fn_from_config(config.model, (p, len(HEPJAX_FEATURES)),
                                     experiment._num_outputs(config))(nnx.Rngs(params=0, dropout=1))
        options, optimizer_argv = weaver_options(model, config)
        out["models"][model] = {
            "particles": p, "yaml": str(yaml_path),
            "train_npz": str(work / f"{model}_train.npz"),
            "val_npz": str(work / f"{model}_val.npz"),
            "hepjax_params": count_params(nnx.state(built, nnx.Param)),
            "network_options": options, "optimizer_argv": optimizer_argv,
            "batch_size": int(config.train.batch_size),
            "steps": n // int(config.train.batch_size),
            "buckets": [int(b) for b in config.train.length_buckets]}
    pathlib.Path(spec["out"]).write_text(json.dumps(out, indent=2))


# --------------------------------------------------- step 2: weaver's files (weaver venv)

def weaver_prepare(spec_path: str) -> None:
    """Per model: the .npz arrays as parquet (awkward, LZ4 level 4 as convert_top_datasets.py)
    and weaver's parameter count of the network its config builds."""
    import ast

    import awkward as ak
    import numpy as np
    from weaver.utils.data.config import DataConfig
    from weaver.utils.import_tools import import_module

    spec = json.loads(pathlib.Path(spec_path).read_text())
    out = {"models": {}, "versions": _versions(WEAVER_VERSIONS)}
    for model, m in spec["models"].items():
        for split in ("train", "val"):
            with np.load(m[f"{split}_npz"]) as d:
                counts = d["counts"]
                table = {b: ak.unflatten(d[b], counts) for b in PARTICLE_BRANCHES}
                table.update(jet_isTop=d["jet_isTop"], jet_isQCD=d["jet_isQCD"])
            ak.to_parquet(ak.Array(table), m[f"{split}_parquet"], compression="LZ4",
                          compression_level=4)
        data_config = DataConfig.load(m["yaml"])
        network = import_module(str(NETWORKS[model]), name="_network_module")
        options = {k: ast.literal_eval(v) for k, v in m["network_options"].items()}
        net, _ = network.get_model(data_config, **options)
        out["models"][model] = {
            "params": int(sum(p.numel() for p in net.parameters() if p.requires_grad))}
    pathlib.Path(spec["out"]).write_text(json.dumps(out, indent=2))


# ------------------------------------------------------------ the timed runs: weaver side

def weaver_run(spec_path: str) -> None:
    """weaver.train.main for one epoch, its train_classification call timed (see the module
    docstring); the answer to spec['out'], then a hard exit (the in-memory DataLoader worker
    is not waited for)."""
    t_start = time.perf_counter()
    spec = json.loads(pathlib.Path(spec_path).read_text())
    import logging

    import torch

    torch.set_num_threads(int(spec["threads"]))
    import weaver.train as weaver_train
    import weaver.utils.nn.tools as weaver_tools
    from weaver.nn.model import ParticleTransformer as weaver_part

    info, lengths = {}, []
    trim_forward = weaver_part.SequenceTrimmer.forward

    def recording_trim(self, *args, **kwargs):  # the padded length each training batch gets
        out = trim_forward(self, *args, **kwargs)
        if self.training:
            lengths.append(int(out[2].shape[-1]))
        return out

    weaver_part.SequenceTrimmer.forward = recording_trim

    class FirstBatch:
        """The train loader, noting when its first batch arrives and how many it gave."""

        def __init__(self, loader):
            self.loader, self.dataset = loader, loader.dataset
            self.first, self.count = None, 0

        def __iter__(self):
            for batch in self.loader:
                if self.first is None:
                    self.first = time.perf_counter()
                self.count += 1
                yield batch

    train_classification = weaver_tools.train_classification

    def timed_train(model, loss_func, opt, scheduler, train_loader, dev, epoch, **kwargs):
        info["startup_s"] = time.perf_counter() - t_start
        info["params"] = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
        loader = FirstBatch(train_loader)
        t0 = time.perf_counter()
        result = train_classification(model, loss_func, opt, scheduler, loader, dev, epoch,
                                      **kwargs)
        info["epoch_s"] = time.perf_counter() - t0
        info["data_s"] = (loader.first or t0) - t0   # to the first batch: reading, preprocessing
        info["steps"] = loader.count
        return result

    weaver_tools.train_classification = timed_train

    class AverageLoss(logging.Handler):  # the epoch's mean training loss, from weaver's log
        def emit(self, record):
            text = record.getMessage()
            if text.startswith("Train AvgLoss:"):
                info["mean_loss"] = float(text.split()[2].rstrip(","))

    logging.getLogger("weaver").addHandler(AverageLoss())
    sys.argv = ["weaver"] + list(spec["argv"])
    weaver_train.main()
    if "epoch_s" not in info:
        raise RuntimeError("weaver's train_classification was never called")
    info.update(mean_length=sum(lengths) / max(1, len(lengths)), trimmed_batches=len(lengths),
                loader_cpu_s=_children_cpu_s(),
                threads=torch.get_num_threads(), max_rss_gb=_max_rss_gb(),
                versions=_versions(WEAVER_VERSIONS))
    pathlib.Path(spec["out"]).write_text(json.dumps(info, indent=2))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def weaver_argv(model: str, m: dict, work: pathlib.Path) -> list[str]:
    argv = ["--data-train", m["train_parquet"], "--data-val", m["val_parquet"],
            "--data-config", m["yaml"], "--network-config", str(NETWORKS[model]),
            "--model-prefix", str(work / "weaver_models" / model / "net"),
            "--run-mode", "train", "--gpus", "",
            # train_TopLandscape.sh's data options
            "--num-workers", "1", "--fetch-step", "1", "--in-memory",
            "--batch-size", str(m["batch_size"]), "--steps-per-epoch", str(m["steps"]),
            "--num-epochs", "1", *m["optimizer_argv"]]
    for name, value in m["network_options"].items():
        argv += ["--network-option", name, value]
    return argv


# ------------------------------------------------------------ the timed runs: hepjax side

def _overlap(spans, windows) -> float:
    """Seconds of the union of ``spans`` (start, end) that fall inside ``windows``."""
    merged = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return sum(max(0.0, min(end, hi) - max(start, lo))
               for start, end in merged for lo, hi in windows)


def hepjax_run(spec_path: str) -> None:
    """One epoch of hepjax training as the module docstring says; the answer to spec['out']."""
    t_start = time.time()
    spec = json.loads(pathlib.Path(spec_path).read_text())
    import jax
    import jax.monitoring
    import numpy as np

    spans, compiled = [], []   # (start, end) of every compilation phase; XLA compiles

    def on_span(event, start, end, **kwargs):
        if event in COMPILE_EVENTS:
            spans.append((start, end))
        if event == COMPILE_EVENTS[-1]:
            compiled.append((end, str(kwargs.get("fun_name", "?"))))

    jax.monitoring.register_event_time_span_listener(on_span)
    from hepjax import data as data_lib
    from hepjax.data import pipeline
    from hepjax.models import model_fn_from_config
    from hepjax.parallel import mesh as mesh_lib
    from hepjax.train import experiment
    from hepjax.train import spec as spec_lib
    from hepjax.train.loop import build_state, check_finite
    from hepjax.train.state import count_params
    from hepjax.train.step import compile_steps
    from hepjax.train.tasks import make_task

    config = spec_lib.complete(hepjax_config(spec["model"], spec["data_dir"], spec["batch_size"],
                                             spec["smoke"], spec["buckets"],
                                             spec.get("sort_window")))
    # ---- timed window 1: data loading (experiment.train's first lines)
    w0 = time.time()
    splits = data_lib.load_splits(config.data, ("train",))
    fitted = experiment._preprocessing(config, tuple(splits["feature_names"])).fit(
        splits["train"]["features"], splits["train"].get("mask"))
    train_data = experiment._transform(fitted, splits["train"])
    w1 = time.time()
    # ---- not timed: the model, optimiser and steps (experiment.train, loop.fit)
    run = spec_lib.resolve(config, len(train_data["label"]))
    task = make_task(config)
    model_fn = model_fn_from_config(config.model, train_data["features"].shape[1:],
                                    experiment._num_outputs(config))
    optimizer = experiment._optimizer(config, run)
    mesh = mesh_lib.make_mesh(run.num_devices)
    graphdefs, state = build_state(run, model_fn, optimizer)
    state = mesh_lib.replicate(state, mesh)
    train_step, _ = compile_steps(graphdefs, task, optimizer, mesh, ensemble=run.ensemble,
                                  precision=run.precision)
    n_params = count_params(state.params)
    steps = run.steps_per_epoch
    # the padded length of every step's batch (same permutation and buckets as the epoch's)
    plan = pipeline.TrainBatches({"mask": train_data["mask"], "label": train_data["label"]},
                                 run.batch_size, seed=run.seed, buckets=run.length_buckets,
                                 sort_window=run.length_sort_window)
    lengths = [int(plan.batch(s)["mask"].shape[1]) for s in range(steps)]
    # ---- not timed (compile_s): the step compiled for each of those lengths
    c0 = time.time()
    example = pipeline.with_weights({k: v[:run.batch_size] for k, v in train_data.items()})
    for length in sorted(set(lengths)):
        batch = mesh_lib.shard_global_batch(pipeline.trim(example, length), mesh)
        train_step.lower(state, batch).compile()
    c1 = time.time()
    # ---- timed window 2: the epoch's steps (loop.fit's training loop, without validation,
    # checkpoints and metric files)
    w2 = time.time()
    batches = pipeline.TrainBatches(train_data, run.batch_size, seed=run.seed,
                                    buckets=run.length_buckets,
                                    sort_window=run.length_sort_window)
    window, losses = [], []
    one_in_flight = jax.default_backend() == "cpu"   # as loop.fit (see there)
    batch = batches.batch(0)
    for step in range(steps):
        state, metrics = train_step(state, mesh_lib.shard_global_batch(batch, mesh))
        batch = batches.batch(step + 1) if step + 1 < steps else None
        if one_in_flight:
            jax.block_until_ready(metrics)
        window.append((step, metrics))
        done = step + 1
        if done % run.log_every == 0 or done == steps:
            fetched = jax.device_get([m for _, m in window])
            for (at, _), values in zip(window, fetched):
                check_finite(at, values)
            losses.extend(float(np.mean(v["loss"])) for v in fetched)
            window.clear()
    jax.block_until_ready(state)
    w3 = time.time()
    in_epoch = _overlap(spans, [(w0, w1), (w2, w3)])
    names = [name for end, name in compiled if w0 <= end <= w1 or w2 <= end <= w3]
    in_data = _overlap(spans, [(w0, w1)])
    info = {"epoch_s": (w1 - w0) + (w3 - w2) - in_epoch, "data_s": (w1 - w0) - in_data,
            "steps_s": (w3 - w2) - (in_epoch - in_data),
            "startup_s": (w0 - t_start) + (c0 - w1), "compile_s": (c1 - c0) + in_epoch,
            "compile_in_epoch_s": in_epoch,
            "compiles_in_epoch": {n: names.count(n) for n in sorted(set(names))},
            "compiled_lengths": sorted(set(lengths)),
            "mean_length": float(np.mean(lengths)), "steps": steps, "params": n_params,
            "mean_loss": float(np.mean(losses)), "loss_first": losses[0], "loss_last": losses[-1],
            "max_rss_gb": _max_rss_gb(),
            "buckets": list(run.length_buckets), "sort_window": run.length_sort_window,
            "devices": str(jax.devices()),
            "versions": _versions(HEPJAX_VERSIONS)}
    pathlib.Path(spec["out"]).write_text(json.dumps(info, indent=2))


# ------------------------------------------------------------------------------- driver

def ensure_weaver_pipeline() -> None:
    """weaver-core's data pipeline in the weaver venv: PIPELINE_REQUIREMENTS from wheels unless
    `PIPELINE_PROBE` already imports there."""
    env = {**os.environ, "PYTHONPATH": ""}
    probe = [str(VENV_PY), "-c", PIPELINE_PROBE]
    if subprocess.run(probe, capture_output=True, env=env).returncode == 0:
        return
    print(f"installing weaver-core's data-pipeline requirements into {VENV} (wheels only): "
          f"{' '.join(PIPELINE_REQUIREMENTS)}", flush=True)
    subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", "--only-binary=:all:",
                    *PIPELINE_REQUIREMENTS], check=True, env=env)
    result = subprocess.run(probe, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"{VENV}: `{PIPELINE_PROBE}` still fails after installing:\n"
                           f"{result.stderr[-2000:]}")


def _run(python, flag: str, spec: dict, work: pathlib.Path, name: str, env: dict) -> dict:
    """Runs this script's ``flag`` step with ``python`` on ``spec`` (stdout and stderr to
    work/name.log); returns its answer plus the wall time."""
    spec_path, out, log = (work / f"{name}.spec.json", work / f"{name}.out.json",
                           work / f"{name}.log")
    out.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({**spec, "out": str(out)}, indent=2))
    import resource

    def own_cpu_s():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    busy0, own0, t0 = _cpu_busy_s(), own_cpu_s(), time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run([str(python), str(SCRIPT), flag, str(spec_path)], stdout=f,
                              stderr=subprocess.STDOUT, env=env, cwd=work)
    wall = time.perf_counter() - t0
    busy, own = _cpu_busy_s() - busy0, own_cpu_s() - own0
    if proc.returncode or not out.is_file():
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-40:])
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); the end of {log}:\n{tail}")
    answer = json.loads(out.read_text())
    own += answer.get("loader_cpu_s", 0.0)
    # the machine's CPU use by anything but this run (other processes, steal), in cores: the
    # epochs are only comparable when it is ~0 (weaver's threads suffer most from contention)
    answer.update(wall_s=wall, foreign_load=max(0.0, busy - own) / max(wall, 1e-9))
    return answer


def _parse_buckets(text: str):
    if text == "config":
        return None
    if text == "none":
        return []
    return [int(b) for b in text.split(",") if b.strip()]


def _table(results: dict, prep: dict, jets: int) -> list[str]:
    lines = ["| model | side | parameters | jets x P | steps | epoch s | data s | startup s | "
             "compile s | mean padded length | mean train loss | peak RSS GB | jets/s | "
             "other load (cores) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, r in results.items():
        p = prep["models"][model]["particles"]
        for side in ("weaver", "hepjax"):
            s = r[side]
            compile_s = f"{s['compile_s']:.1f}" if side == "hepjax" else "-"
            lines.append(f"| {model} | {side} | {r['params']:,} | {jets:,} x {p} | {s['steps']} | "
                         f"{s['epoch_s']:.1f} | {s['data_s']:.1f} | {s['startup_s']:.1f} | "
                         f"{compile_s} | {s['mean_length']:.1f} | "
                         f"{s.get('mean_loss', float('nan')):.3f} | {s['max_rss_gb']:.2f} | "
                         f"{s['steps'] * r['batch_size'] / s['epoch_s']:.0f} | "
                         f"{s['foreign_load']:.2f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-jets", type=int, default=50_000, help="training jets (default 50,000)")
    ap.add_argument("--models", default="part,particlenet")
    ap.add_argument("--batch-size", type=int, default=128,
                    help="both sides (default 128; the recipe's 512 needs several times the "
                    "memory: see the docstring)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs of each side per model, the order alternating; medians reported")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: the cores this process may use)")
    ap.add_argument("--allocator", choices=("tuned", "hugetlb", "default"), default="tuned",
                    help="glibc malloc setting for BOTH frameworks (hepjax.runtime)")
    ap.add_argument("--buckets", default="config",
                    help="hepjax's length buckets: 'config' (the config's), 'none', or sizes")
    ap.add_argument("--sort-window", default="16",
                    help="hepjax's train.length_sort_window: a number of batches (0: random "
                         "batches) or 'config' (the config's); default 16")
    ap.add_argument("--sample", default="", help="hepjax native sample to draw the jets from "
                    "(default: the landscape cpu variant's cached 150k-jet sample)")
    ap.add_argument("--workers", type=int, default=2, help="generation workers, if generating")
    ap.add_argument("--work", default="", help="keep the intermediate files and logs here")
    ap.add_argument("--json", default="", help="also write the result object here")
    ap.add_argument("--smoke", action="store_true", help=f"{SMOKE['n_jets']} jets, batch "
                    f"{SMOKE['batch_size']}, the configs' smoke widths: the script end to end")
    for flag in ("--prepare", "--weaver-prepare", "--weaver-run", "--hepjax-run"):
        ap.add_argument(flag, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for flag, fn in (("prepare", prepare), ("weaver_prepare", weaver_prepare),
                     ("weaver_run", weaver_run), ("hepjax_run", hepjax_run)):
        if getattr(args, flag):
            fn(getattr(args, flag))
            return 0

    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - set(MODELS)
    if unknown or not models:
        raise SystemExit(f"--models: unknown {sorted(unknown)}; use {','.join(MODELS)}")
    n_jets = SMOKE["n_jets"] if args.smoke else args.n_jets
    batch_size = SMOKE["batch_size"] if args.smoke else args.batch_size
    if n_jets < batch_size:
        raise SystemExit(f"--n-jets {n_jets} < --batch-size {batch_size}")
    threads = args.threads or len(os.sched_getaffinity(0))

    from hepjax import runtime
    allocator = runtime.same_allocator_for_all(args.allocator)  # may re-execute this script
    ensure_venv("weaver.nn.model.ParticleTransformer")
    ensure_weaver_pipeline()
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="epoch_vs_weaver_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    hepjax_env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    weaver_env = {**os.environ, "PYTHONPATH": ""}
    buckets = _parse_buckets(args.buckets)
    sort_window = None if args.sort_window == "config" else int(args.sort_window)
    cpu = cpu_description()
    print(f"CPU: {cpu}; malloc (both sides): {allocator}; torch threads {threads}; work {work}",
          flush=True)
    try:
        t0 = time.perf_counter()
        prep = _run(sys.executable, "--prepare",
                    {"work": str(work), "models": models, "n_jets": n_jets,
                     "batch_size": batch_size, "smoke": args.smoke, "buckets": buckets,
                     "sample": args.sample, "workers": args.workers},
                    work, "prepare", hepjax_env)
        for model, m in prep["models"].items():
            for split in ("train", "val"):
                m[f"{split}_parquet"] = str(work / f"{model}_{split}.parquet")
        wprep = _run(VENV_PY, "--weaver-prepare", {"models": prep["models"]}, work,
                     "weaver_prepare", weaver_env)
        print(f"data: {n_jets:,} training jets from {prep['sample']} (signal fraction "
              f"{prep['signal_fraction']:.3f}, {prep['mean_constituents']:.1f} constituents on "
              f"average); files written in {time.perf_counter() - t0:.0f} s", flush=True)
        for model in models:
            ours, theirs = prep["models"][model]["hepjax_params"], wprep["models"][model]["params"]
            if ours != theirs:
                raise AssertionError(f"{model}: parameter counts differ: hepjax {ours:,}, weaver "
                                     f"{theirs:,}")
            print(f"{model}: {ours:,} parameters on both sides; weaver options "
                  f"{prep['models'][model]['network_options']}", flush=True)

        results = {}
        for model in models:
            m = prep["models"][model]
            runs = {"weaver": [], "hepjax": []}
            for r in range(args.repeats):
                for side in (("weaver", "hepjax") if r % 2 == 0 else ("hepjax", "weaver")):
                    name = f"{model}_{side}_{r}"
                    if side == "weaver":
                        info = _run(VENV_PY, "--weaver-run",
                                    {"argv": weaver_argv(model, m, work), "threads": threads},
                                    work, name, weaver_env)
                    else:
                        info = _run(sys.executable, "--hepjax-run",
                                    {"model": model, "data_dir": prep["hepjax_dir"],
                                     "batch_size": batch_size, "smoke": args.smoke,
                                     "buckets": buckets, "sort_window": sort_window},
                                    work, name, hepjax_env)
                    if info["params"] != m["hepjax_params"] or info["steps"] != m["steps"]:
                        raise AssertionError(f"{name}: {info['params']:,} parameters, "
                                             f"{info['steps']} steps; expected "
                                             f"{m['hepjax_params']:,}, {m['steps']}")
                    runs[side].append(info)
                    extra = (f", compile {info['compile_s']:.1f} s (in the epoch "
                             f"{info['compile_in_epoch_s']:.2f} s), lengths "
                             f"{info['compiled_lengths']}" if side == "hepjax" else "")
                    print(f"  {name}: epoch {info['epoch_s']:.1f} s (data {info['data_s']:.1f} "
                          f"s), startup {info['startup_s']:.1f} s{extra}, mean padded length "
                          f"{info['mean_length']:.1f}, mean training loss "
                          f"{info.get('mean_loss', float('nan')):.3f}, peak RSS "
                          f"{info['max_rss_gb']:.2f} GB, other load {info['foreign_load']:.2f} "
                          "cores", flush=True)
                    if info["foreign_load"] > 0.1:
                        print(f"  WARNING: other processes used {info['foreign_load']:.2f} "
                              "cores during this run: its time is not comparable", flush=True)
            summary = {}
            for side, infos in runs.items():
                best = dict(infos[0])
                for key in ("epoch_s", "data_s", "startup_s", "compile_s", "mean_length",
                            "max_rss_gb", "foreign_load"):
                    if key in best:
                        best[key] = median([i[key] for i in infos])
                best["epoch_s_all"] = [i["epoch_s"] for i in infos]
                summary[side] = best
            ratios = [w["epoch_s"] / h["epoch_s"] for w, h in zip(runs["weaver"], runs["hepjax"])]
            results[model] = {"params": m["hepjax_params"], "particles": m["particles"],
                              "batch_size": batch_size, "steps": m["steps"],
                              "buckets": m["buckets"], "ratio": median(ratios),
                              "ratios": ratios, **summary}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    lines = _table(results, prep, n_jets)
    print("\n" + "\n".join(lines))
    for model, r in results.items():
        print(f"{model}: weaver / hepjax epoch time = {r['ratio']:.2f}"
              f"{' (median of ' + str(len(r['ratios'])) + ')' if len(r['ratios']) > 1 else ''}")
    hepjax_versions = next(iter(results.values()))["hepjax"]["versions"]
    result = {
        "benchmark": "epoch_vs_weaver",
        **{f"ratio_{model}": (round(results[model]["ratio"], 3) if model in results else None)
           for model in MODELS},
        **{f"{model}_{side}_epoch_s": round(results[model][side]["epoch_s"], 2)
           for model in results for side in ("weaver", "hepjax")},
        "jets": n_jets, "batch_size": batch_size, "smoke": args.smoke, "repeats": args.repeats,
        "sort_window": next(iter(results.values()))["hepjax"].get("sort_window"),
        "results": results, "sample": prep["sample"], "cpu": cpu, "torch_threads": threads,
        "allocator": allocator, "commit": _git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": {"hepjax_side": hepjax_versions, "weaver_side": wprep["versions"]},
        "table": lines}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
