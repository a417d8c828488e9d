"""Machine-learned particle flow (MLPF) against the Delphes-like rule-based particle flow.

    python -m experiments.particle_flow.run [--variant smoke|cpu|...] --workdir DIR [--seed S]
        [--data DIR_OF_EVENT_FILES]

Steps (each writes into DIR; event files and the trained model are cached there):

1. events (:mod:`hepjax.pf.events`): tt-bar with Poisson pile-up for training (seed), validation
   (seed + 1) and test (seed + 2), and QCD multijet test events (seed + 3), through the element
   detector (:mod:`hepjax.pf.elements`, whose docstring defines the targets).
2. training (:mod:`hepjax.models.mlpf`): Adam with cosine decay, cross-entropy + Huber, batches
   of events padded to bin_size x 2^L buckets; the validation loss is logged.
3. evaluation on the validation events (the only numbers a choice between variants may use)
   and on the held-out test events, for MLPF and the rule-based baseline
   (:mod:`hepjax.pf.baseline`): per class efficiency / fake rate / pT response, anti-kT 0.4 jet
   pT response and resolution against generator jets, missing-pT resolution (definitions in
   ``metrics.py``), with bootstrap-over-events errors. Writes ``results.json`` and the plots
   ``jets_met.png``, ``classes.png``, ``loss.png``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import pickle
import time

import numpy as np

from experiments.particle_flow import metrics


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    n_train: int
    n_val: int
    n_test: int
    n_test_qcd: int
    pileup: float
    width: int
    num_layers: int
    bin_size: int
    num_steps: int
    batch_size: int
    lr: float
    events_per_chunk: int
    seed: int = 0
    one_sample: bool = False   # smoke: train / val / test are consecutive events of one sample
    pad_to: int = 0            # > 0: pad every event to this size (one compiled shape)
    energy_weighted: bool = False   # regression loss weighted by sqrt(E_target)
    aggregation: str = "mean"       # graph-layer kernel: row-normalised ('mean') or not ('sum')
    linear_energy: bool = False     # also pT / 10 and E / 10 as inputs
    physics_inputs: bool = False    # hepjax.pf.links features in, pT regressed against ref_e
    shift: bool = False             # the half-bin-shifted second binning
    sigma_weighted: bool = False    # regression loss weighted by the reference's sigma (GeV)


VARIANTS = {
    # CI: every output written in seconds; the numbers mean nothing
    "smoke": Variant("smoke", n_train=8, n_val=2, n_test=4, n_test_qcd=0, pileup=0.0, width=16,
                     num_layers=1, bin_size=64, num_steps=40, batch_size=2, lr=1e-2,
                     events_per_chunk=14, one_sample=True, pad_to=1024, physics_inputs=True),
    # ~35 min of this 2-core VM
    "cpu": Variant("cpu", n_train=400, n_val=40, n_test=200, n_test_qcd=100, pileup=10.0,
                   width=64, num_layers=3, bin_size=64, num_steps=2500, batch_size=2, lr=2e-3,
                   events_per_chunk=40),
    # the same with the regression loss weighted by sqrt(E_target) (see README: run 2)
    "cpu_ew": Variant("cpu", n_train=400, n_val=40, n_test=200, n_test_qcd=100, pileup=10.0,
                      width=64, num_layers=3, bin_size=64, num_steps=2500, batch_size=2, lr=2e-3,
                      events_per_chunk=40, energy_weighted=True),
    # run 3: un-normalised (sum) kernels and linear energy inputs, so a cluster can subtract
    # the energies of its tracks
    "cpu_sum": Variant("cpu", n_train=400, n_val=40, n_test=200, n_test_qcd=100, pileup=10.0,
                       width=64, num_layers=3, bin_size=64, num_steps=2500, batch_size=2, lr=2e-3,
                       events_per_chunk=40, aggregation="sum", linear_energy=True),
    # run 4: truth-free track-cluster links as inputs (hepjax.pf.links) and the pT regressed as
    # a correction of the reference (track pT; cluster E minus linked tracks' E), in units of
    # its resolution, the Huber terms weighted by that resolution in GeV
    "cpu_phys_sw": Variant("cpu", n_train=400, n_val=40, n_test=200, n_test_qcd=100,
                           pileup=10.0, width=64, num_layers=3, bin_size=64, num_steps=2500,
                           batch_size=2, lr=2e-3, events_per_chunk=40, physics_inputs=True,
                           sigma_weighted=True),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_events(v: Variant, data_dir: pathlib.Path, seed: int) -> dict:
    from hepjax.pf import events as pfe
    data_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    if v.one_sample:
        n = v.n_train + v.n_val + v.n_test
        path = data_dir / f"{v.name}_all_ttbar_pu{v.pileup:g}_seed{seed}.h5"
        if not path.exists():
            data = pfe.generate("ttbar", n, seed, pileup=v.pileup, events_per_chunk=v.events_per_chunk)
            pfe.write(path, data, {"process": "ttbar", "seed": seed, "pileup": v.pileup, "n_events": n})
        allev = pfe.read(path)
        edges = np.cumsum([0, v.n_train, v.n_val, v.n_test])
        for k, split in enumerate(("train", "val", "test")):
            out[split] = allev.subset(range(edges[k], edges[k + 1]))
        return out
    for split, process, n, s in (("train", "ttbar", v.n_train, seed), ("val", "ttbar", v.n_val, seed + 1),
                                 ("test", "ttbar", v.n_test, seed + 2),
                                 ("test_qcd", "qcd", v.n_test_qcd, seed + 3)):
        if n == 0:
            continue
        path = data_dir / f"{v.name}_{split}_{process}_pu{v.pileup:g}_seed{s}.h5"
        if not path.exists():
            t0 = time.perf_counter()
            data = pfe.generate(process, n, s, pileup=v.pileup, events_per_chunk=v.events_per_chunk)
            pfe.write(path, data, {"process": process, "seed": s, "pileup": v.pileup, "n_events": n})
            log(f"{split}: {n} {process} events in {time.perf_counter() - t0:.0f} s")
        out[split] = pfe.read(path)
    return out


def _bucket(n, bin_size, pad_to=0):
    from hepjax.models.mlpf import padded_size
    if pad_to:
        if n > pad_to:
            raise ValueError(f"an event has {n} elements, more than the variant's pad_to={pad_to}")
        return pad_to
    return padded_size(max(int(n), 1), bin_size)


def train(v: Variant, data, val, seed: int, num_steps: int):
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from hepjax.models import mlpf

    model = mlpf.MLPF(width=v.width, num_layers=v.num_layers, bin_size=v.bin_size,
                      rngs=nnx.Rngs(seed), aggregation=v.aggregation, linear_energy=v.linear_energy,
                      physics_inputs=v.physics_inputs, shift=v.shift)
    sched = optax.cosine_decay_schedule(v.lr, max(num_steps, 1))
    opt = nnx.Optimizer(model, optax.adam(sched), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y, t, m):
        def f(model):
            lo, r = model(x, m)
            return mlpf.loss_fn(lo, r, x, y, t, m, energy_weighted=v.energy_weighted,
                                sigma_weighted=v.sigma_weighted)
        (loss, aux), g = nnx.value_and_grad(f, has_aux=True)(model)
        opt.update(model, g)
        return loss, aux

    forward = nnx.jit(lambda model, x, m: model(x, m))

    def evaluate_loss(model, x, y, t, m):
        lo, r = forward(model, x, m)
        return mlpf.loss_fn(lo, r, x, y, t, m, energy_weighted=v.energy_weighted,
                            sigma_weighted=v.sigma_weighted)[0]

    sizes = data.n_elements()
    buckets = np.array([_bucket(n, v.bin_size, v.pad_to) for n in sizes])
    rng = np.random.default_rng([seed, 7])
    batches = []
    while len(batches) < num_steps:
        order = rng.permutation(len(sizes))
        epoch = []
        for b in np.unique(buckets):
            idx = order[buckets[order] == b]
            epoch += [(int(b), idx[i:i + v.batch_size]) for i in range(0, len(idx), v.batch_size)]
        batches += [epoch[i] for i in rng.permutation(len(epoch))]
    batches = batches[:num_steps]
    val_batches = [(_bucket(n, v.bin_size, v.pad_to), [i]) for i, n in enumerate(val.n_elements())]
    log_rows = []
    t0 = time.perf_counter()
    running = []
    for s, (size, idx) in enumerate(batches):
        x, y, t, m = (jnp.asarray(a) for a in data.padded(idx, size, v.physics_inputs))
        loss, (lc, lr) = step(model, opt, x, y, t, m)
        running.append(float(loss))
        if (s + 1) % max(num_steps // 10, 1) == 0 or s + 1 == num_steps:
            vl = float(np.mean([float(evaluate_loss(
                model, *(jnp.asarray(a) for a in val.padded(i, sz, v.physics_inputs))))
                for sz, i in val_batches]))
            log_rows.append({"step": s + 1, "train_loss": float(np.mean(running)), "val_loss": vl,
                             "seconds": round(time.perf_counter() - t0, 1)})
            log(f"step {s + 1}: train {np.mean(running):.4f} val {vl:.4f}")
            running = []
    return model, log_rows, time.perf_counter() - t0


def predict(model, events, bin_size, pad_to=0, links=False):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from hepjax.models import mlpf

    forward = nnx.jit(lambda model, x, m: model(x, m))

    def run(model, x, m):
        lo, r = forward(model, x, m)
        return mlpf.decode(x, lo, r) + mlpf.decode(x, lo, r, soft=True)

    out, soft = [], []
    for i, n in enumerate(events.n_elements()):
        x, _, _, m = events.padded([i], _bucket(n, bin_size, pad_to), links)
        cls, cand, cls_s, cand_s = run(model, jnp.asarray(x), jnp.asarray(m))
        out.append((np.asarray(cls[0, :n]).astype(np.int8), np.asarray(cand[0, :n], np.float32)))
        soft.append((np.asarray(cls_s[0, :n]).astype(np.int8),
                     np.asarray(cand_s[0, :n], np.float32)))
    jax.block_until_ready(out[-1][1]) if out else None
    return out, soft


def evaluate_split(model, events, v):
    from hepjax.pf import baseline
    truth_cls = [events[i]["target_class"] for i in range(len(events))]
    target = [events[i]["target"] for i in range(len(events))]
    gen = [events[i]["particle"] for i in range(len(events))]
    t0 = time.perf_counter()
    ml, ml_soft = predict(model, events, v.bin_size, v.pad_to, v.physics_inputs)
    t_ml = time.perf_counter() - t0
    t0 = time.perf_counter()
    rb = baseline.reconstruct(events)
    t_rb = time.perf_counter() - t0
    res = {}
    for name, out in (("mlpf", ml), ("baseline", rb), ("mlpf_soft", ml_soft)):
        res[name] = metrics.evaluate([o[0] for o in out], [o[1] for o in out], truth_cls, target,
                                     gen)
    # on the same events and the jets both match: MLPF - baseline with paired bootstrap errors
    res["mlpf_vs_baseline"] = metrics.compare(res["mlpf"], res["baseline"])
    # the expected-momentum decoding (every element, pT x p(particle)): jets and MET only, its
    # classes are not a classification
    res["mlpf_soft"] = {k: res["mlpf_soft"][k] for k in ("jet_pt", "jet_match_fraction",
                                                          "met_resolution_gev", "met_response")}
    res["seconds"] = {"mlpf": round(t_ml, 2), "baseline": round(t_rb, 2)}
    res["n_events"] = len(events)
    res["elements_per_event"] = float(np.mean(events.n_elements()))
    return res


def _public(d):
    if isinstance(d, dict):
        return {k: _public(v) for k, v in d.items() if not k.startswith("_")}
    return d


def plots(results, train_log, workdir: pathlib.Path, variant: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    r = results["ttbar"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in (("mlpf", "C0"), ("baseline", "C1")):
        j = r[name]["_jet_ratios"]
        s = r[name]["jet_pt"]
        ax[0].hist(j, bins=np.linspace(0, 2, 61), histtype="step", color=c,
                   label=f"{name}: median {s['median']:.3f}, res {s['resolution']:.3f}")
        dm = r[name]["_met_diff"]
        s = r[name]["met_resolution_gev"]
        ax[1].hist(dm, bins=np.linspace(-60, 60, 61), histtype="step", color=c,
                   label=f"{name}: width {s['resolution']:.1f} GeV")
    ax[0].set_xlabel("jet pT_reco / pT_gen (anti-kT 0.4, pT_gen > 20 GeV)")
    ax[1].set_xlabel("MET_reco - MET_gen, x and y components [GeV]")
    for a in ax:
        a.legend(fontsize=8)
    fig.suptitle(f"tt-bar, pile-up {results['pileup']:g} ({variant})")
    fig.tight_layout()
    fig.savefig(workdir / "jets_met.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    names = list(metrics.CLASS_NAMES[1:])
    for k, (name, c) in enumerate((("mlpf", "C0"), ("baseline", "C1"))):
        eff = [r[name]["classes"][n]["efficiency"] for n in names]
        fake = [r[name]["classes"][n]["fake_rate"] for n in names]
        ax[0].bar(np.arange(len(names)) + 0.4 * k, eff, 0.4, color=c, label=name)
        ax[1].bar(np.arange(len(names)) + 0.4 * k, fake, 0.4, color=c, label=name)
    for a, t in zip(ax, ("efficiency", "fake rate")):
        a.set_xticks(np.arange(len(names)) + 0.2, names, rotation=30, fontsize=8)
        a.set_ylabel(t)
        a.legend()
    fig.tight_layout()
    fig.savefig(workdir / "classes.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([row["step"] for row in train_log], [row["train_loss"] for row in train_log], label="train")
    ax.plot([row["step"] for row in train_log], [row["val_loss"] for row in train_log], label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(workdir / "loss.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="cpu", choices=tuple(VARIANTS))
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--num-steps", type=int, default=None)
    ap.add_argument("--data", default=None,
                    help="directory of the cached event files (default WORKDIR/data); variants "
                         "with the same events share it")
    args = ap.parse_args(argv)
    v = VARIANTS[args.variant]
    seed = v.seed if args.seed is None else args.seed
    num_steps = v.num_steps if args.num_steps is None else args.num_steps
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    ev = ensure_events(v, pathlib.Path(args.data) if args.data else workdir / "data", seed)
    log("events: " + ", ".join(f"{k} {len(e)} ({np.mean(e.n_elements()):.0f} elements/event)"
                                for k, e in ev.items()))
    model_path = workdir / "model.pkl"
    if model_path.exists():
        with open(model_path, "rb") as f:
            model, train_log, train_seconds = pickle.load(f)
    else:
        model, train_log, train_seconds = train(v, ev["train"], ev["val"], seed, num_steps)
        with open(model_path, "wb") as f:
            pickle.dump((model, train_log, train_seconds), f)
    results = {"variant": args.variant, "seed": seed, "pileup": v.pileup, "num_steps": num_steps,
               "config": dataclasses.asdict(v), "train_seconds": round(train_seconds, 1),
               "train_log": train_log}
    # the validation events: the only numbers any choice between variants may use
    results["val"] = evaluate_split(model, ev["val"], v)
    results["ttbar"] = evaluate_split(model, ev["test"], v)
    if "test_qcd" in ev:
        results["qcd"] = evaluate_split(model, ev["test_qcd"], v)
    plots(results, train_log, workdir, v.name)
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    public = _public(results)
    (workdir / "results.json").write_text(json.dumps(public, indent=1))
    for split in ("val", "ttbar", "qcd"):
        if split in results:
            for name in ("mlpf", "mlpf_soft", "baseline"):
                r = results[split][name]
                log(f"{split} {name}: jet pT response {r['jet_pt']['median']:.3f} resolution "
                    f"{r['jet_pt']['resolution']:.3f} +- {r['jet_pt']['resolution_err']:.3f}; MET "
                    f"resolution {r['met_resolution_gev']['resolution']:.2f} +- "
                    f"{r['met_resolution_gev']['resolution_err']:.2f} GeV")
    return results


if __name__ == "__main__":
    main()
