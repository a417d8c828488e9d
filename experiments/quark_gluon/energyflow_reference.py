"""The independent check of our quark/gluon training: the Energy Flow Networks authors' own code
(the energyflow package's PFN and EFN in Keras, and its preprocessing) trained on exactly the
jets our run used, scored on the same test jets.

Komiske, Metodiev, Thaler, "Energy Flow Networks: Deep Sets for Particle Jets", JHEP 01 (2019)
121; the recipe of energyflow's ``examples/pfn_example.py`` and ``efn_example.py``: per jet,
(y, phi) minus their pT-weighted mean, pT divided by the jet's sum, ``remap_pids`` for PFN-ID;
``PFN(input_dim, Phi_sizes, F_sizes)`` / ``EFN(input_dim=2, ...)`` with a two-class softmax,
categorical cross-entropy, Keras' Adam at its default 1e-3; here with our batch size, epochs and
early stopping (patience, best weights restored) so that only the implementation differs.

Two steps, in two environments (energyflow 1.4 needs TensorFlow and tf-keras, which hepjax does
not install):

    # 1. in hepjax's environment: the splits of a run's sample in energyflow's layout
    python -m experiments.quark_gluon.energyflow_reference export --n-jets N [--train-fraction F] \
        --out runs/quark_gluon/ef_sample.npz
    # 2. in an environment with energyflow==1.4.0 tensorflow-cpu==2.20.0 tf-keras==2.20.1
    #    numpy==1.26.4 ml-dtypes==0.5.1 (energyflow's wasserstein extension builds against numpy 1)
    python experiments/quark_gluon/energyflow_reference.py train --data runs/quark_gluon/ef_sample.npz \
        --model pfn|pfn_id|efn --epochs E --patience P --batch-size B --out DIR \
        [--ours runs/quark_gluon/RUN/test_outputs.npz]
    # 3. (either environment with scipy) the paired difference, if our run finished after step 2
    python experiments/quark_gluon/energyflow_reference.py compare --model M --out DIR \
        --ours runs/quark_gluon/RUN/test_outputs.npz
    # 4. several seeds of each on the same test jets: means, seed spread, difference of the means
    python experiments/quark_gluon/energyflow_reference.py seeds \
        energyflow=DIR_S0/energyflow_pfn_id_scores.npz,DIR_S1/... ours=RUN_S0/test_outputs.npz,... \
        [--out summary.json]

``train`` writes ``DIR/energyflow_MODEL.json`` (test AUC with its bootstrap error, the epochs,
the versions) and ``DIR/energyflow_MODEL_scores.npz``; with ``--ours`` also our AUC and the
paired bootstrap difference (energyflow - ours) on the same test jets (the labels must agree jet
by jet, or it stops). Seeds: TensorFlow / numpy 0, bootstrap 1 (200 resamples).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

BOOTSTRAP = 200


def export(args) -> None:
    """The train / val / test jets of hepjax's quark/gluon loader (``config.data`` of the PFN
    config with ``n_jets``, the nested ``train_fraction``) as energyflow (pT, y, phi, pid)."""
    from hepjax.configs import quark_gluon_pfn
    from hepjax.data import formats, quark_gluon
    from hepjax.data.top_tagging import subset_splits

    cfg = quark_gluon_pfn.get_config("none,cpu").data
    cfg.n_jets = args.n_jets
    cfg.train_fraction = args.train_fraction
    jets = subset_splits(quark_gluon.load_jets(cfg), cfg)
    arrays = {}
    for split, part in jets.items():
        arrays[f"X_{split}"] = formats.p4_to_ptyphi(part["p4"], part["pid"]).astype(np.float32)
        arrays[f"y_{split}"] = part["label"]
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    print(json.dumps({"out": str(out), **{k: list(v.shape) for k, v in arrays.items()}}))


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged), the Mann-Whitney statistic."""
    from scipy.stats import rankdata

    r = rankdata(scores)
    pos = labels == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _bootstrap(labels, *scores):
    rng = np.random.default_rng(1)
    draws = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, len(labels), len(labels))
        draws.append([_auc(labels[i], s[i]) for s in scores])
    return np.asarray(draws)


def _preprocess(X: np.ndarray, with_pid: bool) -> np.ndarray:
    """energyflow's examples/pfn_example.py, verbatim in effect."""
    X = np.array(X, np.float64)
    for x in X:
        mask = x[:, 0] > 0
        yphi_avg = np.average(x[mask, 1:3], weights=x[mask, 0], axis=0)
        x[mask, 1:3] -= yphi_avg
        x[mask, 0] /= x[:, 0].sum()
    if with_pid:
        from energyflow.utils import remap_pids
        from energyflow.utils.data_utils import PID2FLOAT_MAP

        unknown = set(np.unique(X[..., 3][X[..., 0] > 0]).astype(int)) - set(PID2FLOAT_MAP)
        if unknown:
            raise SystemExit(f"particle ids {sorted(unknown)} are not in energyflow's PID2FLOAT_MAP")
        remap_pids(X, pid_i=3, error_on_unknown=False)   # the padding's pid 0 -> 0
        return X
    return X[..., :3]


def _scores(path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of our run's test_outputs.npz (outputs (N, K): the last column) or
    energyflow's *_scores.npz (scores (N,))."""
    saved = np.load(path)
    labels = np.asarray(saved["labels"]).astype(np.int64)
    if "scores" in saved:
        return labels, np.asarray(saved["scores"], np.float64)
    return labels, np.asarray(saved["outputs"], np.float64).reshape(len(labels), -1)[:, -1]


def _paired(labels: np.ndarray, scores: np.ndarray, ours_path: str) -> dict:
    """Our run's AUC on the same test jets and the paired bootstrap difference energyflow - ours."""
    mine_labels, mine = _scores(ours_path)
    if not np.array_equal(mine_labels, labels):
        raise SystemExit(f"{ours_path}: its test labels differ from the reference's; not the same jets")
    draws = _bootstrap(labels, scores, mine)
    return {"ours": str(ours_path), "ours_auc": _auc(labels, mine),
            "ours_auc_err": float(draws[:, 1].std()),
            "energyflow_minus_ours": _auc(labels, scores) - _auc(labels, mine),
            "energyflow_minus_ours_err": float((draws[:, 0] - draws[:, 1]).std())}


def compare(args) -> None:
    """``train``'s result with the paired difference to our run added (our run may finish later)."""
    out = pathlib.Path(args.out)
    result = json.loads((out / f"energyflow_{args.model}.json").read_text())
    result.update(_paired(*_scores(out / f"energyflow_{args.model}_scores.npz"), args.ours))
    (out / f"energyflow_{args.model}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


def seeds(args) -> None:
    """Several trainings per implementation (seeds, variants) on the same test jets: every run's
    AUC with its bootstrap error, each group's mean and seed-to-seed standard deviation, and the
    difference of the group means with its error (the seed spread over sqrt(runs), added in
    quadrature; the test jets are common, so their fluctuation cancels to first order)."""
    groups = {}
    labels = None
    for spec in args.group:
        name, _, paths = spec.partition("=")
        runs = []
        for path in paths.split(","):
            y, s = _scores(path)
            if labels is None:
                labels = y
            elif not np.array_equal(y, labels):
                raise SystemExit(f"{path}: its test labels differ from the first run's; not the same jets")
            runs.append({"path": path, "auc": _auc(y, s), "auc_err": float(_bootstrap(y, s)[:, 0].std())})
        aucs = np.array([r["auc"] for r in runs])
        spread = float(aucs.std(ddof=1)) if len(aucs) > 1 else None   # null for a single run
        groups[name] = {"runs": runs, "mean": float(aucs.mean()), "seed_std": spread,
                        "mean_err": spread / np.sqrt(len(aucs)) if spread is not None else None}
    names = list(groups)
    ref = groups[names[0]]
    for name in names[1:]:
        g = groups[name]
        g[f"minus_{names[0]}"] = g["mean"] - ref["mean"]
        g[f"minus_{names[0]}_err"] = (float(np.hypot(g["mean_err"], ref["mean_err"]))
                                      if None not in (g["mean_err"], ref["mean_err"]) else None)
    result = {"test_jets": int(len(labels)), "bootstrap": BOOTSTRAP, "groups": groups}
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for name, g in groups.items():
        diff = (f"  {name} - {names[0]}: {g[f'minus_{names[0]}']:+.4f} +- "
                f"{fmt(g[f'minus_{names[0]}_err'])}" if name != names[0] else "")
        print(f"{name}: " + " ".join(f"{r['auc']:.4f}" for r in g["runs"])
              + f"  mean {g['mean']:.4f} +- {fmt(g['mean_err'])} (seed std {fmt(g['seed_std'])})"
              + diff)


def train(args) -> None:
    import energyflow
    import tensorflow as tf
    import tf_keras
    from energyflow.archs import EFN, PFN
    from energyflow.utils import to_categorical

    tf.keras.utils.set_random_seed(args.seed)
    data = np.load(args.data)
    X = {s: _preprocess(data[f"X_{s}"], args.model == "pfn_id") for s in ("train", "val", "test")}
    y = {s: np.asarray(data[f"y_{s}"]).astype(np.int64) for s in ("train", "val", "test")}
    Y = {s: to_categorical(y[s], num_classes=2) for s in y}
    sizes = dict(Phi_sizes=(100, 100, 256), F_sizes=(100, 100, 100), summary=False)
    if args.model == "efn":
        model = EFN(input_dim=2, **sizes)
        inputs = {s: [X[s][..., 0], X[s][..., 1:3]] for s in X}
    else:
        model = PFN(input_dim=X["train"].shape[-1], **sizes)
        inputs = X
    stop = tf_keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience,
                                            restore_best_weights=True)
    start = time.perf_counter()
    history = model.fit(inputs["train"], Y["train"], epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(inputs["val"], Y["val"]), callbacks=[stop], verbose=2)
    seconds = time.perf_counter() - start
    scores = model.predict(inputs["test"], batch_size=1000, verbose=0)[:, 1]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / f"energyflow_{args.model}_scores.npz", scores=scores, labels=y["test"])
    result = {"model": args.model, "implementation": "energyflow (Keras)", "seed": args.seed,
              "train_jets": len(y["train"]), "val_jets": len(y["val"]), "test_jets": len(y["test"]),
              "epochs_run": len(history.history["loss"]), "best_epoch":
              int(np.argmin(history.history["val_loss"])) + 1, "batch_size": args.batch_size,
              "patience": args.patience, "max_epochs": args.epochs, "train_seconds": round(seconds, 1),
              "auc": _auc(y["test"], scores),
              "versions": {"energyflow": energyflow.__version__, "tensorflow": tf.__version__,
                           "tf_keras": tf_keras.__version__, "numpy": np.__version__,
                           "python": sys.version.split()[0]}}
    result["auc_err"] = float(_bootstrap(y["test"], scores)[:, 0].std())
    if args.ours:
        result.update(_paired(y["test"], scores, args.ours))
    (out / f"energyflow_{args.model}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    e = sub.add_parser("export", help="hepjax's splits in energyflow's layout (hepjax's environment)")
    e.add_argument("--n-jets", type=int, required=True)
    e.add_argument("--train-fraction", type=float, default=1.0)
    e.add_argument("--out", required=True)
    t = sub.add_parser("train", help="energyflow's PFN / EFN (an energyflow + tf-keras environment)")
    t.add_argument("--data", required=True)
    t.add_argument("--model", choices=("pfn", "pfn_id", "efn"), default="pfn")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--patience", type=int, default=6)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--seed", type=int, default=0, help="tf.keras.utils.set_random_seed")
    t.add_argument("--out", required=True)
    t.add_argument("--ours", default="", help="our run's test_outputs.npz, for the paired difference")
    c = sub.add_parser("compare", help="add the paired difference to our run to a finished train step")
    c.add_argument("--model", choices=("pfn", "pfn_id", "efn"), default="pfn")
    c.add_argument("--out", required=True, help="the train step's --out")
    c.add_argument("--ours", required=True, help="our run's test_outputs.npz")
    g = sub.add_parser("seeds", help="several runs per implementation on the same test jets: "
                                     "means, seed spread, differences of the means")
    g.add_argument("group", nargs="+",
                   help="NAME=PATH[,PATH...]: test_outputs.npz or energyflow *_scores.npz files; "
                        "the first group is the reference of the differences")
    g.add_argument("--out", default="", help="write the summary here (JSON)")
    args = parser.parse_args(argv)
    {"export": export, "train": train, "compare": compare, "seeds": seeds}[args.step](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
