"""Issue 27, item 3: point-cloud jet generation with the JetNet metrics.

    python -m experiments.generative.jets --variant smoke --workdir runs/generative_jets_smoke
    python -m experiments.generative.jets --variant cpu   --workdir runs/generative_jets_cpu

Data: the generated top-tagging sample of ``hepjax.data.top_tagging`` (Pythia 8 tt -> top jets
and QCD dijets, anti-kT R = 0.8, pT 550-650 GeV, the fast detector; generated and cached on
first use), loaded through ``top_tagging.load_jets``; each jet becomes the JetNet cloud of its
30 hardest constituents (eta_rel, phi_rel, pT_rel) with a mask (``pointcloud.jetnet_clouds``).
Per class (top; QCD, a quark/gluon mix, in the cpu variant): the model trains on the training
split; the ``test`` split is the truth the samples are compared with, and the ``val`` split,
cut to the test size, is the second, independent truth sample of the truth-vs-truth row.

Model: ``pointcloud.SetTransformerVelocity`` (``--backbone transformer``, the cpu variant's) or
``pointcloud.EPiCVelocity`` (``--backbone epic``: EPiC layers, Buhmann, Kasieczka, Thaler
arXiv:2301.08128; the smoke variant's) trained by conditional flow matching (Lipman et al.
2022; Buhmann et al. arXiv:2310.00049) with ``training.fit``, sampled with the midpoint ODE
solver; the multiplicity is drawn from the training distribution. A "noise" row (the flow's
prior pushed through the inverse scaling: independent Gaussian particles with the right
marginal means and widths, i.e. the untrained model) and a "uniform" row (particles uniform in
the cone sharing the jet pT equally) are trivially wrong references. ``--two-stage``: the
two-stage model (PC-Droid's design, Leigh et al. arXiv:2307.06836): ``pointcloud.JetLevelFlow``
draws the cloud's relative mass and sum pT_rel given n, and the velocity field is conditioned
on them (trained on each jet's own values); results add the first stage's W1 alone and how
closely generated clouds follow the given and the test jets' own conditions ("stage1").

Metrics (``jet_metrics``; Kansal et al. arXiv:2106.11535, 2211.10295): W1 of the relative jet
mass, of the constituents' pT_rel (and eta_rel, phi_rel), of the five n = 4, d = 4 prime EFPs
(mean over the five), FPD and KPD on the same EFPs, each with its error; sampling time per jet.
Writes results.json, table.md, features_<class>.png, images_<class>.png and loss.png into the
work directory. Model choices use W1M against the val split (``w1m_vs_val``), never the test
split. ``--diagnose NAME=generated_<class>.npz,...`` only compares saved samples with the truth
(sum pT_rel, centroid, mass with the centroid moved to 0, girth, hardest constituents).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import pickle
import platform
import sys
import time

import numpy as np

SEED = 27

VARIANTS = {
    # the 1,000-jet cached sample (generated in ~1 min if absent); the EPiC backbone, whose
    # compilation costs half the transformer's (the CI test's time is mostly compilation)
    "smoke": dict(data=dict(n_jets=1000, workers=1, events_per_chunk=100), classes=("top",),
                  backbone="epic", global_dim=8, width=32, depth=2, heads=2, steps=1200,
                  batch=128, lr=3e-3, chunk=300,
                  ode_steps=10, ema=0.0, w1_batches=5, fpd_min=40, fpd_max=2000, fpd_batches=5,
                  kpd_batches=5, kpd_size=2000, max_train=0, two_stage=False,
                  stage1=dict(layers=2, hidden=(32, 32), bins=8, steps=250, batch=256, lr=3e-3)),
    # the 150,000-jet sample of experiments/top_tagging's cpu variant (80/10/10 split)
    "cpu": dict(data=dict(n_jets=150_000, workers=2, events_per_chunk=200,
                          ttv_fractions=(0.8, 0.1, 0.1)), classes=("top", "qcd"),
                backbone="transformer", global_dim=16, width=64, depth=3, heads=4,
                steps={"top": 6000, "qcd": 3000}, batch=128,
                lr=1e-3, chunk=250, ode_steps=20, ema=0.999, w1_batches=10, fpd_min=1000,
                fpd_max=50_000, fpd_batches=20, kpd_batches=10, kpd_size=5000, max_train=0,
                two_stage=False,
                stage1=dict(layers=8, hidden=(64, 64), bins=16, steps=4000, batch=512, lr=1e-3)),
}
N_PARTICLES = 30
LABELS = {"top": 1, "qcd": 0}


def log(msg: str) -> None:
    print(f"[jets {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_classes(v: dict) -> tuple[dict, str]:
    """{class: {split: (clouds, mask)}} and the cache file's name."""
    from hepjax.configs import defaults
    from hepjax.data import top_tagging
    from hepjax.models.generative import pointcloud as pc

    cfg = defaults.top_tagging_data(**v["data"], max_particles=200)
    jets = top_tagging.load_jets(cfg)
    out = {}
    for name in v["classes"]:
        out[name] = {}
        for split in ("train", "test", "val"):
            j = jets[split]
            rows = j["label"] == LABELS[name]
            out[name][split] = pc.jetnet_clouds(j["p4"][rows], j["mask"][rows], j["jet_p4"][rows],
                                                N_PARTICLES)
        n_test = min(len(out[name]["test"][0]), len(out[name]["val"][0]))
        out[name]["test"] = tuple(a[:n_test] for a in out[name]["test"])
        out[name]["val"] = tuple(a[:n_test] for a in out[name]["val"])
        if v["max_train"]:
            out[name]["train"] = tuple(a[:v["max_train"]] for a in out[name]["train"])
    return out, top_tagging.cache_path(cfg).name


def save_params(model, path: pathlib.Path) -> None:
    import jax
    from flax import nnx

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(nnx.state(model))), f)


def build_model(v: dict, seed: int):
    """The velocity network of the variant: ``backbone`` 'transformer' (SetTransformerVelocity)
    or 'epic' (EPiCVelocity, EPiC layers of Buhmann et al. arXiv:2301.08128); with
    ``two_stage`` it also takes the two jet-level conditions (``pointcloud.jet_conditions``)."""
    from flax import nnx

    from hepjax.models.generative import pointcloud as pc

    nc = 2 if v.get("two_stage") else 0
    if v["backbone"] == "transformer":
        return pc.SetTransformerVelocity(3, width=v["width"], depth=v["depth"], heads=v["heads"],
                                         cond_features=nc, rngs=nnx.Rngs(seed))
    if v["backbone"] == "epic":
        return pc.EPiCVelocity(3, width=v["width"], depth=v["depth"],
                               global_dim=v["global_dim"], cond_features=nc,
                               rngs=nnx.Rngs(seed))
    raise ValueError(f"backbone {v['backbone']!r}: choose 'transformer' or 'epic'")


def train_stage1(name: str, v: dict, train: tuple, seed: int):
    """The first stage of the two-stage model: ``pointcloud.JetLevelFlow`` trained on the
    training jets' (relative mass, sum pT_rel) given n. Returns (model, history, seconds)."""
    import jax

    from hepjax.models.generative import pointcloud as pc

    s1 = v["stage1"]
    stage1 = pc.JetLevelFlow(*train, n_particles=N_PARTICLES, layers=s1["layers"],
                             hidden=s1["hidden"], bins=s1["bins"], seed=seed + 2)
    t0 = time.perf_counter()
    history = stage1.fit(steps=s1["steps"], batch_size=s1["batch"], lr=s1["lr"],
                         key=jax.random.key(seed + 3),
                         log=lambda r: log(f"{name} stage 1 step {r['step']} NLL "
                                           f"{r['loss']:.4f} ({r['time_s']:.0f} s)"))
    return stage1, history, time.perf_counter() - t0


def train_class(name: str, v: dict, train: tuple, seed: int, workdir: pathlib.Path,
                stage1=None):
    import jax

    from hepjax.models.generative import pointcloud as pc
    from hepjax.models.generative import training

    clouds, mask = train
    scaler = pc.CloudScaler(clouds, mask)
    x = scaler.transform(clouds, mask)
    model = build_model(v, seed)
    steps = v["steps"][name] if isinstance(v["steps"], dict) else v["steps"]
    data = (x, mask)
    if stage1 is not None:
        # the second stage learns the cloud given the true jet-level quantities of each jet
        data = (x, mask, stage1.transform(pc.jet_conditions(clouds, mask)))
    t0 = time.perf_counter()
    trained, ema_model, history = training.fit(
        model, pc.flow_matching_loss, data, steps=steps, batch_size=v["batch"],
        key=jax.random.key(seed + 1), lr=v["lr"], warmup=min(500, steps // 10),
        chunk=v["chunk"], ema=v["ema"],
        log=lambda r: log(f"{name} step {r['step']} loss {r['loss']:.4f} ({r['time_s']:.0f} s)"))
    train_s = time.perf_counter() - t0
    trained = ema_model if ema_model is not None else trained
    save_params(trained, workdir / "models" / f"flow_matching_{name}.pkl")
    return trained, scaler, history, train_s, pc.param_count(model), steps


def make_sampler(model, v: dict, batch: int = 1024):
    """``run(key, counts, cond=None) -> (x, mask)`` in jitted batches of ``batch`` jets (the
    last padded; batch b uses fold_in(key, b)); ``cond`` (N, 2): the standardised jet-level
    conditions of a two-stage model."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from hepjax.models.generative import pointcloud as pc

    graphdef, params = nnx.split(model)

    @jax.jit
    def sample(params, key, counts, cond):
        return pc.sample_clouds(nnx.merge(graphdef, params), key, counts, n_particles=N_PARTICLES,
                                steps=v["ode_steps"], method="midpoint", cond=cond)

    def run(key, counts, cond=None):
        counts = np.asarray(counts)
        xs, ms = [], []
        for b, start in enumerate(range(0, len(counts), batch)):
            c = counts[start:start + batch]
            pad = batch - len(c)
            c = np.concatenate([c, np.full(pad, c[-1])]) if pad else c
            cb = None
            if cond is not None:
                cb = np.asarray(cond[start:start + batch], np.float32)
                cb = jnp.asarray(np.concatenate([cb, np.repeat(cb[-1:], pad, 0)]) if pad else cb)
            x, m = sample(params, jax.random.fold_in(key, b), jnp.asarray(c), cb)
            xs.append(np.asarray(x)[:batch - pad])
            ms.append(np.asarray(m)[:batch - pad])
        return np.concatenate(xs), np.concatenate(ms)
    return run


def generate(model, scaler, probs, n: int, v: dict, seed: int, batch: int = 1024,
             stage1=None, cond=None):
    """n jets (clouds, mask), the sampling time per jet (one batch of ``batch`` jets after
    compilation, best of 2; network and ODE, plus the first stage's flow for a two-stage model;
    the numpy inverse scaling is excluded) and the standardised jet-level conditions used (None
    for a one-stage model). A two-stage model draws them from ``stage1`` unless ``cond`` (N, 2,
    standardised) is given (e.g. the test jets' own, to test the second stage alone)."""
    import jax

    from hepjax.models.generative import pointcloud as pc

    batch = min(batch, n)
    counts = np.asarray(pc.draw_counts(jax.random.key(seed + 7), probs, n))
    run = make_sampler(model, v, batch)
    stage1_s = 0.0
    if stage1 is not None and cond is None:
        cond = stage1.sample(jax.random.key(seed + 6), counts)
        stage1.sample(jax.random.key(seed + 6), counts[:batch])  # compiled for this size
        t0 = time.perf_counter()
        stage1.sample(jax.random.key(seed + 6), counts[:batch])
        stage1_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    x, m = run(jax.random.key(seed + 8), counts, cond)
    total = time.perf_counter() - t0
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        x2, _ = run(jax.random.key(seed + 8), counts[:batch],
                    None if cond is None else cond[:batch])
        times.append(time.perf_counter() - t0)
    if not np.array_equal(x[:batch], x2):
        raise RuntimeError("sampler is not deterministic for a fixed key")
    return scaler.inverse(x, m), m, {"s_per_jet": (min(times) + stage1_s) / batch,
                                     "stage1_s_per_jet": stage1_s / batch,
                                     "timing_batch": batch,
                                     "all_jets_s_incl_compile": total, "n_jets": n,
                                     "ode_steps": v["ode_steps"],
                                     "network_evals": 2 * v["ode_steps"]}, cond


def tracking(cond: np.ndarray, sample: tuple) -> dict:
    """How closely generated clouds follow the jet-level conditions they were given (physical
    units, (N, 2)): mean and standard deviation of generated - condition, and the correlation,
    for the relative mass and the sum of pT_rel."""
    from hepjax.models.generative import pointcloud as pc

    got = pc.jet_conditions(*sample)
    out = {}
    for i, name in enumerate(("mass", "sum_pt_rel")):
        diff = got[:, i] - cond[:, i]
        out[name] = {"bias": float(diff.mean()), "std": float(diff.std()),
                     "corr": float(np.corrcoef(got[:, i], cond[:, i])[0, 1])}
    return out


def stage_diagnostics(d: dict, stage1, cond, sample: tuple, v: dict, seed: int,
                      second_stage) -> dict:
    """The two-stage model's parts: W1 of the first stage's relative mass and sum pT_rel to
    the test jets' (the best the second stage can reach if it followed the conditions
    exactly), how the generated clouds track their conditions, and the second stage alone
    (an oracle first stage): ``second_stage(cond)`` -> clouds generated given the test jets'
    own standardised conditions, their tracking and W1M ("oracle_*")."""
    from hepjax.models.generative import jet_metrics as jm
    from hepjax.models.generative import pointcloud as pc

    phys = stage1.inverse(cond)
    test = pc.jet_conditions(*d["test"])
    given = stage1.transform(test)
    oracle = second_stage(given)
    return {"stage1_w1m": jm.w1(test[:, 0], phys[:, 0], num_batches=v["w1_batches"], seed=seed),
            "stage1_w1_sum_pt_rel": jm.w1(test[:, 1], phys[:, 1], num_batches=v["w1_batches"],
                                          seed=seed),
            "tracking": tracking(phys, sample),
            # the same as evaluate()'s "w1m", without its EFP-based metrics
            "oracle_w1m": jm.w1(jm.jet_mass(*d["test"]), jm.jet_mass(*oracle),
                                num_batches=v["w1_batches"], seed=seed),
            "oracle_tracking": tracking(stage1.inverse(given), oracle)}


def noise_sample(scaler, probs, n: int, seed: int):
    """The trivially wrong generator: the flow's Gaussian prior mapped by the inverse scaling."""
    rng = np.random.default_rng(seed)
    counts = rng.choice(len(probs) - 1, size=n, p=np.r_[probs[1:]] / probs[1:].sum()) + 1
    mask = np.arange(N_PARTICLES)[None, :] < counts[:, None]
    return scaler.inverse(rng.standard_normal((n, N_PARTICLES, 3)), mask), mask


def uniform_sample(probs, n: int, seed: int, radius: float = 0.8):
    """A second trivially wrong generator: particles uniform in the jet cone (dR < R) sharing
    the jet pT equally (pT_rel = 1/n): no core, no pT hierarchy."""
    rng = np.random.default_rng(seed)
    counts = rng.choice(len(probs) - 1, size=n, p=np.r_[probs[1:]] / probs[1:].sum()) + 1
    mask = np.arange(N_PARTICLES)[None, :] < counts[:, None]
    r = radius * np.sqrt(rng.uniform(size=(n, N_PARTICLES)))
    a = rng.uniform(0, 2 * np.pi, size=(n, N_PARTICLES))
    clouds = np.stack([r * np.cos(a), r * np.sin(a),
                       np.broadcast_to(1.0 / counts[:, None], r.shape)], -1)
    return np.where(mask[..., None], clouds, 0.0).astype(np.float32), mask


def evaluate(truth: tuple, sample: tuple, v: dict, seed: int) -> dict:
    from hepjax.models.generative import jet_metrics as jm

    (tc, tm), (sc, sm) = truth, sample
    nb = v["w1_batches"]
    out = {"n_truth": int(len(tc)), "n_sample": int(len(sc))}
    out["w1m"] = jm.w1(jm.jet_mass(tc, tm), jm.jet_mass(sc, sm), num_batches=nb, seed=seed)
    for i, f in enumerate(("eta_rel", "phi_rel", "pt_rel")):
        # JetNet's w1p resamples jets and takes their real particles; here all real particles
        # of the resampled jets as well
        out[f"w1p_{f}"] = _w1_particles(tc, tm, sc, sm, i, nb, seed)
    te, se = jm.efps(tc, tm), jm.efps(sc, sm)
    means, stds = jm.w1_features(te, se, num_batches=nb, seed=seed)
    out["w1efp"] = (float(means.mean()), float(np.linalg.norm(stds) / len(stds)))
    out["w1efp_each"] = [[float(a), float(b)] for a, b in zip(means, stds)]
    out["fpd"] = jm.fpd(te, se, min_samples=v["fpd_min"], max_samples=v["fpd_max"],
                        num_batches=v["fpd_batches"], seed=seed)
    out["kpd"] = jm.kpd(te, se, num_batches=v["kpd_batches"], batch_size=v["kpd_size"],
                        seed=seed)
    out["n_particles_mean"] = float(sm.sum(1).mean())
    return out


def _w1_particles(tc, tm, sc, sm, i, nb, seed):
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(seed)
    n = min(len(tc), len(sc))
    vals = []
    for _ in range(nb):
        a, b = rng.integers(0, len(tc), n), rng.integers(0, len(sc), n)
        vals.append(wasserstein_distance(tc[a][tm[a]][:, i], sc[b][sm[b]][:, i]))
    return float(np.mean(vals)), float(np.std(vals))


def cloud_diagnostics(clouds, mask) -> dict:
    """Per-jet quantities the relative jet mass depends on: the sum of pT_rel (the 30 hardest
    constituents' share of the jet pT), the pT_rel-weighted (eta_rel, phi_rel) centroid, the
    mass, the mass with the centroid moved to (0, 0) (a shift in eta is a longitudinal boost
    and one in phi a rotation, so for massless constituents this equals the mass), the mass per
    unit sum pT_rel, the pT_rel-weighted mean distance to the centroid (girth), and the pT_rel
    and Delta R of the three hardest constituents."""
    from hepjax.models.generative import jet_metrics as jm

    c, m = np.asarray(clouds, np.float64), np.asarray(mask, bool)
    z = np.where(m, c[..., 2], 0.0)
    sz = z.sum(1)
    cen = [(z * c[..., i]).sum(1) / sz for i in (0, 1)]
    shifted = np.stack([np.where(m, c[..., 0] - cen[0][:, None], 0.0),
                        np.where(m, c[..., 1] - cen[1][:, None], 0.0), c[..., 2]], -1)
    mass = jm.jet_mass(c, m)
    order = np.argsort(-z, 1, kind="stable")
    cs = np.take_along_axis(c, order[..., None], 1)
    dr = lambda i, j: np.hypot(cs[:, i, 0] - cs[:, j, 0], cs[:, i, 1] - cs[:, j, 1])  # noqa: E731
    return {"sum_pt_rel": sz, "centroid_eta": cen[0], "centroid_phi": cen[1], "mass": mass,
            "mass_recentred": jm.jet_mass(shifted, m), "mass_over_sum_pt_rel": mass / sz,
            "girth": (z * np.hypot(shifted[..., 0], shifted[..., 1])).sum(1) / sz,
            "pt_rel_1": cs[:, 0, 2], "pt_rel_2": cs[:, 1, 2], "pt_rel_3": cs[:, 2, 2],
            "delta_r_12": dr(0, 1), "delta_r_13": dr(0, 2), "delta_r_23": dr(1, 2)}


def diagnose(truth: dict, generated: dict, nb: int, seed: int) -> dict:
    """{quantity: {sample: {mean, std, w1: (mean, err) vs truth['test']}}} for every sample of
    ``truth`` (other than 'test') and ``generated`` ({name: (clouds, mask)})."""
    from hepjax.models.generative import jet_metrics as jm

    ref = cloud_diagnostics(*truth["test"])
    samples = {"val (second truth)": truth["val"], **generated}
    out = {}
    for name, (c, m) in [("test", truth["test"])] + list(samples.items()):
        d = cloud_diagnostics(c, m)
        for q, values in d.items():
            row = {"mean": float(values.mean()), "std": float(values.std())}
            if name != "test":
                row["w1"] = jm.w1(ref[q], values, num_batches=nb, seed=seed)
            out.setdefault(q, {})[name] = row
    return out


def diagnose_main(args, v: dict) -> dict:
    """``--diagnose NAME=FILE.npz,...``: compares saved generated clouds with the truth."""
    gens = {}
    for item in args.diagnose.split(","):
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--diagnose {item!r}: expected NAME=FILE.npz")
        if not pathlib.Path(path).is_file():
            raise SystemExit(f"--diagnose {name}: no file {path}")
        with np.load(path) as f:
            if "clouds" not in f or "mask" not in f:
                raise SystemExit(f"--diagnose {path}: needs arrays 'clouds' and 'mask' (a "
                                 "generated_<class>.npz of this runner)")
            gens[name] = (f["clouds"], f["mask"])
    cls = v["classes"][0]
    data, data_file = load_classes(dict(v, classes=(cls,)))
    d = data[cls]
    mult = {s: d[s][1].sum(1) for s in ("train", "test", "val")}
    res = {"class": cls, "data_file": data_file, "seed": args.seed, "files": args.diagnose,
           "fraction_jets_below_30_constituents": {
               s: float((mult[s] < N_PARTICLES).mean()) for s in mult},
           "quantities": diagnose(d, gens, v["w1_batches"], args.seed)}
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "diagnostics.json").write_text(json.dumps(res, indent=1))
    lines = [f"# Cloud diagnostics ({cls} jets, W1 to the test split; x 1e3)", "",
             "| quantity | test mean / std | " + " | ".join(
                 f"{n}: mean / std, W1" for n in res["quantities"]["mass"] if n != "test")
             + " |", "|---" * (2 + len(gens) + 1) + "|"]
    for q, rows in res["quantities"].items():
        cells = [f"{rows['test']['mean']:.4f} / {rows['test']['std']:.4f}"]
        cells += [f"{r['mean']:.4f} / {r['std']:.4f}, {r['w1'][0] * 1e3:.2f} ± "
                  f"{r['w1'][1] * 1e3:.2f}" for n, r in rows.items() if n != "test"]
        lines.append(f"| {q} | " + " | ".join(cells) + " |")
    (workdir / "diagnostics.md").write_text("\n".join(lines) + "\n")
    log("\n" + "\n".join(lines))
    return res


def table_md(res: dict) -> str:
    lines = [f"# Point-cloud jet generation ({res['variant']} variant)", "",
             f"Data: `{res['data_file']}`; JetNet clouds of the {N_PARTICLES} hardest "
             "constituents. Every distance is to the test sample; the reference row compares "
             "the second truth sample (val split) with it. Shown scaled: W1M x 1e3, W1P x 1e3, "
             "W1EFP x 1e5, FPD x 1e4, KPD x 1e4 (results.json holds the raw values); value ± "
             "error as defined in hepjax.models.generative.jet_metrics.", ""]
    for cls, r in res["classes"].items():
        lines += [f"## {cls} jets ({r['n_train']} training, {r['n_test']} test, "
                  f"{r['n_test']} second truth)", "",
                  "| sample | W1M | W1P pT_rel | W1P eta_rel | W1P phi_rel | W1EFP | FPD | KPD | "
                  "W1M / truth W1M | sampling [µs/jet] |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        ref = r["samples"]["reference"]["w1m"][0]
        for name, s in r["samples"].items():
            f = lambda k, sc: f"{s[k][0] * sc:.2f} ± {s[k][1] * sc:.2f}"  # noqa: E731
            t = s.get("timing", {}).get("s_per_jet")
            lines.append(f"| {name} | {f('w1m', 1e3)} | {f('w1p_pt_rel', 1e3)} | "
                         f"{f('w1p_eta_rel', 1e3)} | {f('w1p_phi_rel', 1e3)} | "
                         f"{f('w1efp', 1e5)} | {f('fpd', 1e4)} | {f('kpd', 1e4)} | "
                         f"{s['w1m'][0] / ref:.2f} | {'-' if t is None else f'{t * 1e6:.1f}'} |")
        fm = r["samples"]["flow_matching"]
        best = fm["w1m"][0] / ref
        cfg = res["config"]
        lines += ["", f"Bar (issue 27): W1M of the best model within 3x the truth-vs-truth W1M: "
                  f"ratio {best:.2f} ± {r.get('w1m_ratio_err', float('nan')):.2f} -> "
                  f"{'met' if best <= 3 else 'not met'}. Model: "
                  f"{'two-stage, ' if cfg.get('two_stage') else ''}"
                  f"{cfg['backbone']} backbone, width {cfg['width']}, depth {cfg['depth']}, "
                  f"{r['params']} parameters; training {r['train_s']:.0f} s ({r['steps']} "
                  "steps)."]
        if "stage1" in r:
            s1, t = r["stage1"], r["stage1"]["tracking"]["mass"]
            o = r["stage1"]["oracle_tracking"]["mass"]
            lines.append(
                f"Two-stage model: first stage (flow for relative mass and sum pT_rel given n, "
                f"{s1['params']} parameters, {s1['train_s']:.0f} s) alone: W1M x 1e3 = "
                f"{s1['stage1_w1m'][0] * 1e3:.2f} ± {s1['stage1_w1m'][1] * 1e3:.2f}; generated "
                f"mass - given mass: bias {t['bias'] * 1e3:.2f}e-3, std {t['std'] * 1e3:.2f}e-3, "
                f"correlation {t['corr']:.3f}. Second stage given the test jets' own "
                f"conditions: W1M x 1e3 = {s1['oracle_w1m'][0] * 1e3:.2f} ± "
                f"{s1['oracle_w1m'][1] * 1e3:.2f}, mass - given: std {o['std'] * 1e3:.2f}e-3, "
                f"correlation {o['corr']:.3f}.")
        if "w1m_vs_val" in fm:
            lines.append(f"Selection metric (generated vs the val split, not the test split): "
                         f"W1M x 1e3 = {fm['w1m_vs_val'][0] * 1e3:.2f} ± "
                         f"{fm['w1m_vs_val'][1] * 1e3:.2f}.")
        lines.append("")
    return "\n".join(lines)


def plots(workdir: pathlib.Path, samples: dict, cls: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hepjax.models.generative import jet_metrics as jm

    feats = {}
    for name, (c, m) in samples.items():
        if name == "uniform":
            continue
        e = jm.efps(c, m)
        feats[name] = {"relative jet mass": jm.jet_mass(c, m),
                       "constituent pT_rel": c[..., 2][m], "constituent eta_rel": c[..., 0][m],
                       "constituent phi_rel": c[..., 1][m],
                       **{f"EFP {k} (n=4, d=4)": e[:, k] for k in range(e.shape[1])}}
    names = list(feats["truth (test)"])
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 4.6),
                             gridspec_kw={"height_ratios": [3, 1]}, squeeze=False)
    colors = {"truth (test)": "k", "truth (second)": "tab:gray", "flow matching": "tab:blue",
              "noise": "tab:red"}
    for j, feat in enumerate(names):
        ref = feats["truth (test)"][feat]
        logx = feat.startswith("EFP") or "pT_rel" in feat
        lo, hi = np.quantile(ref, [0.001, 0.999])
        if logx:
            pos = ref[ref > 0]
            bins = np.geomspace(max(np.quantile(pos, 0.001), 1e-8), np.quantile(pos, 0.999), 31)
        else:
            bins = np.linspace(lo, hi, 31)
        href, _ = np.histogram(ref, bins)
        for name, f in feats.items():
            h, _ = np.histogram(f[feat], bins)
            h = h / max(len(f[feat]), 1) * len(ref)
            axes[0, j].stairs(h, bins, color=colors.get(name), label=name)
            if name != "truth (test)":
                ratio = np.divide(h, href, out=np.full(len(h), np.nan), where=href > 0)
                axes[1, j].stairs(ratio, bins, color=colors.get(name))
        band = np.divide(1.0, np.sqrt(href), out=np.full(len(href), np.nan), where=href > 0)
        axes[1, j].stairs(1 + band, bins, baseline=1 - band, fill=True, color="k", alpha=0.15)
        axes[1, j].set_ylim(0.5, 1.5)
        axes[1, j].set_xlabel(feat)
        if logx:
            axes[0, j].set_xscale("log")
            axes[1, j].set_xscale("log")
        axes[0, j].set_yscale("log")
    axes[1, 0].set_ylabel("ratio to test")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(workdir / f"features_{cls}.png", dpi=90)
    plt.close(fig)

    shown = [n for n in samples if n not in ("noise", "uniform")]
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(3.4 * (len(shown) + 1), 3.2))
    imgs = {n: jm.jet_images(*samples[n], npix=30) for n in shown}
    vmax = imgs["truth (test)"].max()
    for ax, n in zip(axes, shown):
        im = ax.imshow(np.log10(imgs[n] + vmax * 1e-5), origin="lower",
                       extent=(-0.8, 0.8, -0.8, 0.8), vmin=np.log10(vmax) - 5,
                       vmax=np.log10(vmax), cmap="viridis")
        ax.set_title(f"{cls}: {n}", fontsize=9)
        ax.set_xlabel("eta_rel")
        ax.set_ylabel("phi_rel")
    fig.colorbar(im, ax=axes[len(shown) - 1], label="log10 <pT_rel> per pixel")
    gen = imgs.get("flow matching", imgs[shown[-1]])
    ratio = np.divide(gen, imgs["truth (test)"], out=np.full(gen.shape, np.nan),
                      where=imgs["truth (test)"] > vmax * 1e-4)
    im = axes[-1].imshow(ratio, origin="lower", extent=(-0.8, 0.8, -0.8, 0.8), vmin=0.5,
                         vmax=1.5, cmap="coolwarm")
    axes[-1].set_title("flow matching / truth (test)", fontsize=9)
    fig.colorbar(im, ax=axes[-1])
    fig.tight_layout()
    fig.savefig(workdir / f"images_{cls}.png", dpi=90)
    plt.close(fig)


def loss_plot(workdir: pathlib.Path, histories: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for cls, h in histories.items():
        ax.plot([r["step"] for r in h], [r["loss"] for r in h], label=cls)
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss (chunk mean)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(workdir / "loss.png", dpi=90)
    plt.close(fig)


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("jax", "flax", "optax", "numpy", "scipy", "pythia8mc"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "none"
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="smoke")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--classes", default="", help="comma-separated subset of the variant's "
                        "classes (top, qcd)")
    parser.add_argument("--no-plots", action="store_true", help="skip the png files (CI)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps for every class (default: the variant's)")
    parser.add_argument("--backbone", choices=("transformer", "epic"), default=None,
                        help="velocity network (default: the variant's, transformer)")
    parser.add_argument("--width", type=int, default=None, help="network width")
    parser.add_argument("--depth", type=int, default=None,
                        help="transformer blocks or EPiC layers")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (cosine decay to 2 %% of it)")
    parser.add_argument("--two-stage", action="store_true",
                        help="the two-stage model: a flow for the jet's relative mass and sum "
                        "pT_rel given n, then the cloud conditioned on them")
    parser.add_argument("--diagnose", default="",
                        help="NAME=generated_<class>.npz,...: only compare saved generated clouds "
                        "with the truth (sum pT_rel, centroid, mass, ...) into "
                        "WORKDIR/diagnostics.json and .md; no training")
    args = parser.parse_args(argv)
    v = dict(VARIANTS[args.variant])
    for name in ("backbone", "width", "depth", "lr"):
        value = getattr(args, name)
        if value is not None:
            if name != "backbone" and value <= 0:
                raise SystemExit(f"--{name} {value}: must be positive")
            v[name] = value
    if args.two_stage:
        v["two_stage"] = True
    if args.steps is not None:
        if args.steps < 1:
            raise SystemExit(f"--steps {args.steps}: must be a positive number of steps")
        v["steps"] = args.steps
    if args.classes:
        chosen = tuple(c.strip() for c in args.classes.split(",") if c.strip())
        bad = [c for c in chosen if c not in LABELS]
        if bad:
            raise SystemExit(f"--classes: unknown {bad}; choose from {sorted(LABELS)}")
        v["classes"] = chosen
    if args.diagnose:
        return diagnose_main(args, v)
    # every module imported now, so later edits of the sources cannot reach a running job
    from hepjax.models.generative import jet_metrics, pointcloud, training  # noqa: F401
    if not args.no_plots:
        import matplotlib  # noqa: F401
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seed = args.seed
    t_start = time.perf_counter()
    data, data_file = load_classes(v)
    log(f"data {data_file}: " + ", ".join(f"{c}: " + "/".join(str(len(d[s][0])) for s in
                                                           ("train", "test", "val"))
                                         for c, d in data.items()))
    from hepjax.models.generative import pointcloud as pc

    res = {"variant": args.variant, "seed": seed, "data_file": data_file,
           "config": {k: (list(x) if isinstance(x, tuple) else x) for k, x in v.items()},
           "versions": versions(), "classes": {}}
    histories = {}
    for ci, cls in enumerate(v["classes"]):
        d = data[cls]
        cseed = seed + 100 * ci
        stage1, r_stage1 = None, None
        if v["two_stage"]:
            stage1, h1, s1_s = train_stage1(cls, v, d["train"], cseed)
            r_stage1 = {"history": h1, "train_s": s1_s, "mean": stage1.mean.tolist(),
                        "std": stage1.std.tolist(), "params": pc.param_count(stage1.flow)}
        model, scaler, history, train_s, params, steps = train_class(cls, v, d["train"], cseed,
                                                                     workdir, stage1)
        histories[cls] = history
        probs = pc.multiplicity_probs(d["train"][1])
        n = len(d["test"][0])
        gen_c, gen_m, timing, cond = generate(model, scaler, probs, n, v, cseed, stage1=stage1)
        log(f"{cls}: sampled {n} jets, {timing['s_per_jet'] * 1e6:.1f} µs/jet")
        if stage1 is not None:
            r_stage1.update(stage_diagnostics(
                d, stage1, cond, (gen_c, gen_m), v, seed,
                lambda c: generate(model, scaler, probs, n, v, cseed, stage1=stage1,
                                   cond=c)[:2]))
            log(f"{cls}: two-stage diagnostics {json.dumps(r_stage1['tracking'])}; oracle "
                f"W1M {r_stage1['oracle_w1m'][0]:.5f}")
        samples = {"truth (test)": d["test"], "truth (second)": d["val"],
                   "flow matching": (gen_c, gen_m),
                   "noise": noise_sample(scaler, probs, n, cseed + 9),
                   "uniform": uniform_sample(probs, n, cseed + 10)}
        r = {"n_train": int(len(d["train"][0])), "n_test": int(n), "train_s": train_s,
             "steps": steps, "params": params, "history": history, "scaler": scaler.state(),
             "samples": {}}
        if r_stage1 is not None:
            r["stage1"] = r_stage1
        for key, name in (("reference", "truth (second)"), ("flow_matching", "flow matching"),
                          ("noise", "noise"), ("uniform", "uniform")):
            r["samples"][key] = evaluate(d["test"], samples[name], v, seed)
            log(f"{cls} {key}: W1M {r['samples'][key]['w1m'][0]:.5f} FPD "
                f"{r['samples'][key]['fpd'][0]:.2e}")
        r["samples"]["flow_matching"]["timing"] = timing
        # model selection uses the val split (the second truth), never the test split
        from hepjax.models.generative import jet_metrics as jm
        r["samples"]["flow_matching"]["w1m_vs_val"] = jm.w1(
            jm.jet_mass(*d["val"]), jm.jet_mass(gen_c, gen_m), num_batches=v["w1_batches"],
            seed=seed)
        (a, sa), (b, sb) = r["samples"]["flow_matching"]["w1m"], r["samples"]["reference"]["w1m"]
        r["w1m_ratio_to_truth"] = a / b
        # first-order error of the ratio from the two resampling errors (taken independent)
        r["w1m_ratio_err"] = a / b * float(np.hypot(sa / a, sb / b))
        res["classes"][cls] = r
        if not args.no_plots:
            plots(workdir, samples, cls)
        np.savez_compressed(workdir / f"generated_{cls}.npz", clouds=gen_c, mask=gen_m)
    if not args.no_plots:
        loss_plot(workdir, histories)
    res["wall_s"] = time.perf_counter() - t_start
    (workdir / "results.json").write_text(json.dumps(res, indent=1))
    (workdir / "table.md").write_text(table_md(res))
    log(f"done in {res['wall_s']:.0f} s; " + ", ".join(
        f"{c}: W1M ratio {r['w1m_ratio_to_truth']:.2f}" for c, r in res["classes"].items()))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
