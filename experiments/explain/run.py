"""Layer-wise relevance propagation for ParticleNet and ParT on top tagging.

    python -m experiments.explain.run --variant smoke|cpu --workdir runs/explain [--rule epsilon
        --eps 1e-6]

Trains a small ParticleNet and a small ParT on the generated top-tagging jets (hepjax.data's
Pythia 8 sample, seed 2024, cached under ~/.cache/hepjax; 60/20/20 train/test/val), tests them
on the test split, and explains the logit difference z_top - z_QCD of the test jets with
``hepjax.explain`` (``taggers.explain_jets``): relevance per constituent (summed over its input
features). Writes to WORKDIR:
  results.json   AUCs, conservation residuals (float32 on the explained jets, float64 on a
                 subset, input-only and with the relevance absorbed by the biases), the share of
                 relevance on the three exclusive-kT subjets, and the constituent-removal test;
  jet_images.png mean relevance images of top and QCD jets in the rotated (eta, phi) plane,
                 next to the mean pT-fraction images;
  examples.png   single jets, constituents coloured by relevance, size by pT;
  removal.png    the logit difference as constituents are removed most-relevant first, vs
                 hardest first and random (Samek et al., "Evaluating the visualization of what a
                 deep neural network has learned", IEEE TNNLS 28 (2017): "pixel flipping").
Nothing is tuned on the test jets (the configurations below were fixed before running).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hepjax import metrics
from hepjax.configs import defaults
from hepjax.data import features as features_lib
from hepjax.data import top_tagging
from hepjax.explain import lrp, taggers
from hepjax.models.part import ParticleTransformer
from hepjax.models.particlenet import ParticleNet

VARIANTS = {
    "smoke": dict(n_jets=400, events_per_chunk=100, max_particles=16, max_train=96, epochs=1,
                  batch=32, lr=2e-3, n_explain=32, n_removal=16, n_f64=4,
                  particlenet=dict(conv_params=((4, (8, 8)),), fc_params=((16, 0.1),)),
                  part=dict(embed_dims=(16, 16), pair_embed_dims=(8,), num_heads=2,
                            num_layers=1, num_cls_layers=1)),
    "cpu": dict(n_jets=6000, events_per_chunk=200, max_particles=50, max_train=0, epochs=3,
                batch=64, lr=1e-3, n_explain=500, n_removal=300, n_f64=32,
                particlenet=dict(conv_params=((16, (32, 32, 32)), (16, (64, 64, 64))),
                                 fc_params=((128, 0.1),)),
                part=dict(embed_dims=(64, 64), pair_embed_dims=(32, 32), num_heads=4,
                          num_layers=3, num_cls_layers=1)),
}
SEED = 0
IMAGE_BINS, IMAGE_RANGE = 25, 0.8


# ------------------------------------------------------------------------------------- data
def load(variant: dict) -> dict:
    cfg = defaults.top_tagging_data(n_jets=variant["n_jets"],
                                    events_per_chunk=variant["events_per_chunk"],
                                    max_particles=variant["max_particles"])
    jets = top_tagging.load_jets(cfg)
    out = {}
    for split in ("train", "test"):
        j = jets[split]
        feats, _ = features_lib.particle_features(j["p4"], j["mask"])
        out[split] = dict(features=feats, mask=j["mask"].astype(bool),
                          vectors=np.asarray(j["p4"], np.float32), label=j["label"].astype(int),
                          p4=np.asarray(j["p4"], np.float64))
    if variant["max_train"]:
        out["train"] = {k: v[:variant["max_train"]] for k, v in out["train"].items()}
    return out


def build(name: str, variant: dict, n_features: int):
    if name == "particlenet":
        return ParticleNet(n_features, 2, rngs=nnx.Rngs(SEED), **variant["particlenet"])
    return ParticleTransformer(n_features, 2, rngs=nnx.Rngs(params=SEED, dropout=SEED + 1),
                               **variant["part"])


# --------------------------------------------------------------------------------- training
def train(model, data: dict, variant: dict) -> dict:
    tx = optax.adamw(variant["lr"], weight_decay=0.01)
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, f, m, v, y):
        def loss_fn(model):
            logits = model(f, m, v)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    model.train()
    rng = np.random.default_rng(SEED)
    n, b = len(data["label"]), variant["batch"]
    losses = []
    start = time.perf_counter()
    for _ in range(variant["epochs"]):
        order = rng.permutation(n)
        for i in range(n // b):
            idx = order[i * b:(i + 1) * b]
            losses.append(float(step(model, opt, jnp.asarray(data["features"][idx]),
                                      jnp.asarray(data["mask"][idx]),
                                      jnp.asarray(data["vectors"][idx]),
                                      jnp.asarray(data["label"][idx]))))
    model.eval()
    return {"steps": len(losses), "first_loss": losses[0],
            "last_loss": float(np.mean(losses[-10:])),
            "train_s": round(time.perf_counter() - start, 1)}


def batched(fn, arrays, size=100):
    n = len(arrays[0])
    outs = [fn(*(jnp.asarray(a[i:i + size]) for a in arrays)) for i in range(0, n, size)]
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate([np.asarray(o[k]) for o in outs]) for k in range(len(outs[0])))
    return np.concatenate([np.asarray(o) for o in outs])


def logit_diff(model, f, m, v):
    z = model(f, m, v)
    return z[:, 1] - z[:, 0]


# ------------------------------------------------------------------------------ explanations
def rotate(p4: np.ndarray, mask: np.ndarray, feats: np.ndarray):
    """(deta, dphi) per constituent, rotated so that the pT-weighted principal axis is vertical
    and flipped so that the pT-weighted centroid lies at positive x and y (plots only)."""
    deta, dphi = feats[..., 0], feats[..., 1]
    pt = np.where(mask, np.hypot(p4[..., 1], p4[..., 2]), 0.0)
    xy = np.stack([deta, dphi], -1)
    out = np.zeros_like(xy)
    for j in range(len(xy)):
        w = pt[j] / max(pt[j].sum(), 1e-12)
        c = xy[j] - (w[:, None] * xy[j]).sum(0)  # centre on the pT centroid
        cov = (w[:, None, None] * c[:, :, None] * c[:, None, :]).sum(0)
        _, vecs = np.linalg.eigh(cov)
        r = c @ vecs[:, ::-1][:, [1, 0]]          # major axis -> y
        for k in (0, 1):
            if (w * r[:, k]).sum() < 0 or ((w * r[:, k]).sum() == 0 and k == 0):
                r[:, k] = -r[:, k]
        # second-hardest constituent to the right half (for the x orientation)
        r[:, 0] *= 1 if np.sum(w * r[:, 0] ** 3) >= 0 else -1
        out[j] = np.where(mask[j][:, None], r, 0.0)
    return out


def subjet_share(p4, mask, rel, n_axes=3, radius=0.2):
    """Per jet: the share of positive relevance and of pT carried by constituents within
    `radius` (in y, phi) of the `n_axes` exclusive-kT subjet axes (hepjax.data.features'
    fastjet conventions); jets with fewer than n_axes + 1 constituents are skipped."""
    import awkward as ak
    import warnings

    from hepjax.data.generation import require_generators
    from hepjax.physics import numpy_kinematics as npkin

    _, fastjet = require_generators()
    counts = mask.sum(1)
    rows = np.flatnonzero(counts > n_axes)
    flat = p4[rows][mask[rows]]
    arr = ak.unflatten(ak.zip({"px": flat[:, 1], "py": flat[:, 2], "pz": flat[:, 3],
                               "E": flat[:, 0]}), counts[rows])
    definition = fastjet.JetDefinition(fastjet.kt_algorithm, fastjet.JetDefinition.max_allowable_R)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = fastjet.ClusterSequence(arr, definition).exclusive_jets(n_jets=n_axes)
    axes = np.stack([ak.to_numpy(axes[c]).reshape(len(rows), n_axes)
                     for c in ("E", "px", "py", "pz")], -1)

    def y_phi(p):
        pt = np.hypot(p[..., 1], p[..., 2])
        y = 0.5 * np.log(np.maximum(p[..., 0] + p[..., 3], 1e-12) /
                         np.maximum(p[..., 0] - p[..., 3], 1e-12))
        return pt, y, np.arctan2(p[..., 2], p[..., 1])

    pt, y, phi = y_phi(p4[rows])
    _, ay, aphi = y_phi(axes)
    dr = npkin.delta_r(y[:, :, None], phi[:, :, None], ay[:, None, :], aphi[:, None, :]).min(-1)
    near = (dr < radius) & mask[rows]
    pos = np.maximum(rel[rows], 0) * mask[rows]
    pt = pt * mask[rows]
    return (rows, (pos * near).sum(1) / np.maximum(pos.sum(1), 1e-12),
            (pt * near).sum(1) / np.maximum(pt.sum(1), 1e-12), near.sum(1) / counts[rows])


def removal_curves(model, data, rel, n_jets, steps=(0, 1, 2, 4, 8)):
    """Mean logit difference of top jets when their k constituents are masked out: most
    relevant first, hardest (pT) first, random. Returns {order: [mean, stderr] per k}."""
    top = np.flatnonzero(data["label"][:n_jets] == 1)
    f, m, v = (data[k][top] for k in ("features", "mask", "vectors"))
    pt = np.where(m, np.hypot(data["p4"][top][..., 1], data["p4"][top][..., 2]), -np.inf)
    r = np.where(m, rel[top], -np.inf)
    rng = np.random.default_rng(SEED)
    rand = np.where(m, rng.uniform(size=m.shape), -np.inf)
    fn = jax.jit(lambda a, b, c: logit_diff(model, a, b, c))
    out = {}
    for name, score in (("relevance", r), ("pt", pt), ("random", rand)):
        order = np.argsort(-score, axis=1)
        rows = []
        for k in steps:
            mk = m.copy()
            if k:
                drop = order[:, :k]
                keep_one = m.sum(1) > k  # never empty a jet
                np.put_along_axis(mk, drop, np.where(keep_one[:, None], False,
                                                     np.take_along_axis(m, drop, 1)), 1)
            y = batched(fn, (f, mk, v))
            rows.append([float(y.mean()), float(y.std() / np.sqrt(len(y)))])
        out[name] = rows
    return {"k": list(steps), "n_top_jets": int(len(top)), **out}


def float64_conservation(model, data, n, rule):
    """Relative residuals in float64 (x64 switched on for this check only) with the rule's
    stabiliser eps -> 1e-12 (the conservation limit): input relevance alone, and input plus bias
    relevance, against the explained output."""
    rule = rule._replace(eps=1e-12)
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        graphdef, state = nnx.split(model)
        state = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64)
                             if jnp.issubdtype(a.dtype, jnp.floating) else a, state)
        m64 = nnx.merge(graphdef, state)
        m64.eval()
        f = jnp.asarray(data["features"][:n], jnp.float64)
        m = jnp.asarray(data["mask"][:n])
        v = jnp.asarray(data["vectors"][:n], jnp.float64)
        run = jax.jit(lambda a, b, c: (taggers.explain_jets(m64, a, b, c, rule=rule),
                                       taggers.bias_relevance(m64, a, b, c, rule=rule)))
        (y, r), rb = run(f, m, v)
        y, rin, rb = np.asarray(y), np.asarray(jnp.sum(r, (1, 2))), np.asarray(rb)
    finally:
        jax.config.update("jax_enable_x64", old)
    scale = np.abs(y)
    return {"n_jets": n, "eps": rule.eps,
            "input_only_rel_residual_median": float(np.median(np.abs(rin - y) / scale)),
            "with_bias_rel_residual_max": float(np.max(np.abs(rin + rb - y) / scale)),
            "with_bias_rel_residual_median": float(np.median(np.abs(rin + rb - y) / scale))}


def explain(name, model, data, variant, rule) -> tuple[dict, np.ndarray]:
    n = min(variant["n_explain"], len(data["label"]))
    f, m, v = (data[k][:n] for k in ("features", "mask", "vectors"))
    run = jax.jit(lambda a, b, c: taggers.explain_jets(model, a, b, c, rule=rule))
    start = time.perf_counter()
    y, r = batched(run, (f, m, v))
    seconds = time.perf_counter() - start
    rel = r.sum(-1)                                     # (n, N) per constituent
    resid = np.abs(rel.sum(1) - y) / np.abs(y)
    n_b = min(variant["n_f64"], n)
    rb = np.asarray(jax.jit(lambda a, b, c: taggers.bias_relevance(model, a, b, c, rule=rule))(
        *(jnp.asarray(a[:n_b]) for a in (f, m, v))))
    resid_b = np.abs(rel[:n_b].sum(1) + rb - y[:n_b]) / np.abs(y[:n_b])
    out = {"n_jets": n, "explain_s": round(seconds, 1),
           "float32": {"input_only_rel_residual_median": float(np.median(resid)),
                       "with_bias_rel_residual_median": float(np.median(resid_b)),
                       "with_bias_rel_residual_max": float(np.max(resid_b)), "n_bias": n_b},
           "float64": float64_conservation(model, data, n_b, rule)}
    labels = data["label"][:n]
    rows, share_r, share_pt, share_n = subjet_share(data["p4"][:n], m, rel)
    for cls, lab in (("top", 1), ("qcd", 0)):
        sel = labels[rows] == lab
        out[f"subjets_{cls}"] = {
            key: [float(x[sel].mean()), float(x[sel].std() / np.sqrt(sel.sum()))]
            for key, x in (("positive_relevance_share", share_r), ("pt_share", share_pt),
                           ("constituent_share", share_n))}
    out["removal"] = removal_curves(model, data, rel, min(variant["n_removal"], n))
    return out, rel


# ------------------------------------------------------------------------------------ plots
def _norm(rel):
    """Relevance per constituent over the jet's total absolute relevance (the sum itself, the
    explained output, can be near 0); the sign stays: positive = evidence for top."""
    return rel / np.maximum(np.abs(rel).sum(1, keepdims=True), 1e-12)


def plot_images(path, data, rels: dict, n):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = data["mask"][:n]
    xy = rotate(data["p4"][:n], m, data["features"][:n])
    pt = np.where(m, np.hypot(data["p4"][:n][..., 1], data["p4"][:n][..., 2]), 0.0)
    labels = data["label"][:n]
    edges = np.linspace(-IMAGE_RANGE, IMAGE_RANGE, IMAGE_BINS + 1)

    def image(weights, sel):
        img = np.zeros((IMAGE_BINS, IMAGE_BINS))
        for j in np.flatnonzero(sel):
            mj = m[j]
            h, _, _ = np.histogram2d(xy[j, mj, 0], xy[j, mj, 1], bins=[edges, edges],
                                     weights=weights[j, mj])
            img += h
        return img.T / max(sel.sum(), 1)

    rows = [("pT fraction", pt / pt.sum(1, keepdims=True))] + [
        (f"{name}: R / sum|R|", _norm(rel)) for name, rel in rels.items()]
    fig, axes = plt.subplots(len(rows), 2, figsize=(8, 3.6 * len(rows)))
    for i, (title, w) in enumerate(rows):
        for k, (cls, lab) in enumerate((("top", 1), ("QCD", 0))):
            img = image(w, labels == lab)
            ax = axes[i, k]
            if i == 0:
                im = ax.imshow(np.log10(np.maximum(img, 1e-5)), origin="lower", cmap="viridis",
                               extent=[edges[0], edges[-1]] * 2, vmin=-4)
                label = "log10 mean pT fraction"
            else:
                lim = np.abs(img).max()
                im = ax.imshow(img, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim,
                               extent=[edges[0], edges[-1]] * 2)
                label = "mean R / sum|R| (red: for top)"
            fig.colorbar(im, ax=ax, label=label, fraction=0.046)
            ax.set_title(f"{title} ({cls}, {int((labels == lab).sum())} jets)", fontsize=9)
            ax.set_xlabel("rotated eta'")
            ax.set_ylabel("rotated phi'")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(path, data, rels: dict, n_each=2):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = data["label"][:len(next(iter(rels.values())))]
    picks = list(np.flatnonzero(labels == 1)[:n_each]) + list(np.flatnonzero(labels == 0)[:n_each])
    fig, axes = plt.subplots(len(rels), len(picks), figsize=(3.2 * len(picks), 3.2 * len(rels)),
                             squeeze=False)
    xy = rotate(data["p4"][picks], data["mask"][picks], data["features"][picks])
    for i, (name, rel) in enumerate(rels.items()):
        for k, j in enumerate(picks):
            m = data["mask"][j]
            pt = np.hypot(data["p4"][j, m, 1], data["p4"][j, m, 2])
            r = _norm(rel[j:j + 1])[0, m]
            lim = np.abs(r).max()
            ax = axes[i, k]
            sc = ax.scatter(xy[k, m, 0], xy[k, m, 1], s=8 + 300 * pt / pt.max(), c=r,
                            cmap="RdBu_r", vmin=-lim, vmax=lim, edgecolors="k", linewidths=0.3)
            fig.colorbar(sc, ax=ax, fraction=0.046)
            ax.set_xlim(-IMAGE_RANGE, IMAGE_RANGE)
            ax.set_ylim(-IMAGE_RANGE, IMAGE_RANGE)
            ax.set_title(f"{name}, {'top' if labels[j] else 'QCD'} jet {j}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_removal(path, results: dict):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.5), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        rem = res["explain"]["removal"]
        for order in ("relevance", "pt", "random"):
            mean, err = np.asarray(rem[order]).T
            ax.errorbar(rem["k"], mean, err, marker="o", label=f"{order} first")
        ax.set_xlabel("constituents removed")
        ax.set_ylabel("mean z_top - z_QCD (top jets)")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="cpu")
    parser.add_argument("--workdir", default="runs/explain")
    parser.add_argument("--models", default="particlenet,part")
    parser.add_argument("--rule", choices=lrp.RULES, default="epsilon")
    parser.add_argument("--eps", type=float, default=1e-6)
    parser.add_argument("--gamma", type=float, default=0.25)
    parser.add_argument("--plots-only", action="store_true",
                        help="redraw the plots from WORKDIR/results.json and relevance.npz")
    args = parser.parse_args(argv)
    variant = VARIANTS[args.variant]
    workdir = pathlib.Path(args.workdir)
    if args.plots_only:
        out = json.loads((workdir / "results.json").read_text())
        rels = dict(np.load(workdir / "relevance.npz"))
        return plots(workdir, load(variant)["test"], rels, out["models"], out)
    rule = {"epsilon": lambda: lrp.epsilon(args.eps),
            "gamma": lambda: lrp.gamma(args.gamma, args.eps),
            "zplus": lambda: lrp.zplus(args.eps)}[args.rule]()
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = load(variant)
    test = data["test"]
    results, rels = {}, {}
    for name in [m for m in args.models.split(",") if m]:
        if name not in ("particlenet", "part"):
            raise ValueError(f"--models: unknown {name!r}; valid: particlenet, part")
        model = build(name, variant, test["features"].shape[-1])
        print(f"{time.strftime('%H:%M:%S')} training {name}", flush=True)
        res = {"train": train(model, data["train"], variant)}
        print(f"{time.strftime('%H:%M:%S')} trained {name}: {res['train']}", flush=True)
        scores = batched(jax.jit(lambda a, b, c: logit_diff(model, a, b, c)),
                         (test["features"], test["mask"], test["vectors"]))
        auc = metrics.bootstrap(metrics.roc_auc, test["label"], scores, n_resamples=200, seed=0)
        res["test_auc"] = [float(auc.value), float(auc.std)]
        res["n_test"] = int(len(scores))
        res["explain"], rels[name] = explain(name, model, test, variant, rule)
        is_key = lambda a: jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)  # noqa: E731
        state = jax.tree.map(lambda a: None if is_key(a) else np.asarray(a),
                             nnx.to_pure_dict(nnx.state(model)))
        np.save(workdir / f"{name}_state.npy", np.asarray(state, dtype=object), allow_pickle=True)
        results[name] = res
        print(json.dumps({name: res}, indent=1), flush=True)
    out = {"variant": args.variant, "rule": rule._asdict(), "seed": SEED,
           "n_train": int(len(data["train"]["label"])), "models": results,
           "versions": {"jax": jax.__version__, "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d", time.gmtime())}
    (workdir / "results.json").write_text(json.dumps(out, indent=1))
    np.savez_compressed(workdir / "relevance.npz", **rels)
    return plots(workdir, test, rels, results, out)


def plots(workdir, test, rels, results, out):
    n = rels[next(iter(rels))].shape[0] if rels else 0
    plot_images(workdir / "jet_images.png", test, rels, n)
    plot_examples(workdir / "examples.png", test, rels)
    plot_removal(workdir / "removal.png", results)
    return out


if __name__ == "__main__":
    main()
