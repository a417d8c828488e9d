"""Sampling speed of the generative models against the simulator, in one process, one after the
other (so both see the same machine load):

    python -m experiments.generative.speed [--variant cpu] [--n-sim 300] [--batch 5000]
        [--out runs/generative_calo_cpu/speed.json]

Sampling cost does not depend on the parameter values (fixed architectures, fixed numbers of
coupling layers and DDIM steps), so the models are built with the variant's sizes and freshly
initialised; the simulator's time is that of ``simulate_showers`` (simulation + voxelisation)
in this process. Times per shower: best of 3 jitted calls after compilation; ``inverse_us``
is the numpy preprocessing inverse (vectors to voxels) per shower, reported apart.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="cpu")
    ap.add_argument("--n-sim", type=int, default=300)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--models", default="flow,diffusion,gan,vae")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from flax import nnx

    from experiments.generative.config import get
    from experiments.generative.run import sample_and_time
    from hepjax.models import generative as G
    from hepjax.models.generative.calo_data import CaloPreprocessor, simulate_showers
    v = get(args.variant)
    sim = simulate_showers(args.n_sim, 12345, v.data, workers=1)
    pre = CaloPreprocessor(energy=v.data.energy).fit(sim["voxels"], sim["e_inc"],
                                                     np.random.default_rng(0))
    rng = np.random.default_rng(1)
    e = np.exp(rng.uniform(np.log(v.data.energy[0]), np.log(v.data.energy[1]), args.batch))
    cond = pre.condition(e)
    dim, out = 4 + int(np.prod(v.data.shape)), {"variant": v.name,
                                                 "sim_s_per_shower": sim["sim_s_per_shower"],
                                                 "n_sim": args.n_sim, "batch": args.batch}
    print(f"simulator: {1e3 * sim['sim_s_per_shower']:.2f} ms per shower", flush=True)
    rngs = nnx.Rngs(0)
    for name in args.models.split(","):
        if name == "flow":
            c = v.flow
            m = G.ConditionalFlow(dim, 1, n_layers=c["n_layers"], kind=c["kind"],
                                  hidden=tuple(c["hidden"]), bins=c["bins"], rngs=rngs)
            fn = lambda m, k, c: m.sample(k, c)   # noqa: E731
        elif name == "diffusion":
            c = v.diffusion
            m = G.Diffusion(dim, 1, T=c["T"], width=c["width"], depth=c["depth"], rngs=rngs)
            fn = lambda m, k, cc, s=c["ddim_steps"]: G.ddim_sample(m, k, cc, s)  # noqa: E731
        elif name == "gan":
            c = v.gan
            m = G.Generator(dim, 1, latent=c["latent"], hidden=tuple(c["hidden"]), rngs=rngs)
            fn = lambda m, k, c: m.sample(k, c)   # noqa: E731
        elif name == "vae":
            c = v.vae
            m = G.ConditionalVAE(dim, 1, latent=c["latent"], hidden=tuple(c["hidden"]),
                                 rngs=rngs)
            fn = lambda m, k, c: m.sample(k, c)   # noqa: E731
        else:
            raise ValueError(name)
        x, t = sample_and_time(fn, m, cond, 0)
        t0 = time.perf_counter()
        pre.inverse(x, e, v.data.shape)
        t["inverse_us"] = 1e6 * (time.perf_counter() - t0) / len(e)
        t["speedup"] = sim["sim_s_per_shower"] / t["s_per_shower"]
        t["speedup_with_inverse"] = sim["sim_s_per_shower"] / (t["s_per_shower"]
                                                               + 1e-6 * t["inverse_us"])
        out[name] = t
        print(f"{name}: {1e6 * t['s_per_shower']:.1f} us per shower ({t['speedup']:.0f}x), "
              f"+ inverse {t['inverse_us']:.1f} us ({t['speedup_with_inverse']:.0f}x)",
              flush=True)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    return out


if __name__ == "__main__":
    main()
