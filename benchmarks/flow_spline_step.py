"""Training-step time of the calorimeter flow with and without the written-out gradient of its
marginal splines' bin selection (``hepjax.kernels.select_bins``: fast form vs reference).

The flow of ``experiments/generative`` (calo, cpu variant, ``flow_affine``): 8 affine couplings
(160, 160, layout per_param) and 4 marginal splines of 16 bins, D = 104, one condition, trained
by ``training.fit`` (batch 256, chunks of 250 steps in one jitted ``lax.scan``) on standard
normal vectors (the cost does not depend on the values). Three forms, the same initialisation,
key and data, measured back to back in one process: the kernel's fast form (``auto`` on the
CPU), its reference (``HEPJAX_KERNELS=reference`` semantics via ``kernels.use``), and the flow
without marginal splines (the floor). Time per step: the last of ``--chunks`` chunks (the first
includes compilation). Also checks that the fast and reference forms' training losses agree
(float rounding: the batch sums of the spline gradients are added in another order).

    .venv/bin/python benchmarks/flow_spline_step.py [--chunks 3] [--dim 104]

Last line: JSON with ms per step per form and ``ratio_reference_fast``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np
from flax import nnx

from hepjax import kernels
from hepjax.models.generative import flows, training


def run(form: str, dim: int, chunks: int, chunk: int = 250) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30000, dim)).astype(np.float32)
    c = rng.normal(size=(30000, 1)).astype(np.float32)
    ms = 0 if form == "no_marginal_splines" else 4
    flow = flows.ConditionalFlow(dim, 1, n_layers=8, kind="affine", hidden=(160, 160),
                                 layout="per_param", bound=4.0, marginal_splines=ms,
                                 marginal_bins=16, rngs=nnx.Rngs(0))
    mode = "reference" if form == "reference" else "auto"
    with kernels.use(mode):
        _, _, hist = training.fit(flow, flows.flow_loss, (x, c), steps=chunk * chunks,
                                  batch_size=256, key=jax.random.key(0), lr=1e-3, chunk=chunk)
    last = hist[-1]["time_s"] - hist[-2]["time_s"]
    return {"ms_per_step": last / chunk * 1e3, "first_chunk_s": hist[0]["time_s"],
            "losses": [h["loss"] for h in hist]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--dim", type=int, default=104)
    args = ap.parse_args()
    if args.chunks < 2:
        raise SystemExit("--chunks must be >= 2 (the first includes compilation)")
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "cpu": platform.processor() or platform.machine(), "jax": jax.__version__,
           "load_before": os.getloadavg()[0], "forms": {}}
    for form in ("fast", "reference", "no_marginal_splines"):
        out["forms"][form] = run(form, args.dim, args.chunks)
        print(f"{form}: {out['forms'][form]['ms_per_step']:.2f} ms/step", flush=True)
    f, r = out["forms"]["fast"], out["forms"]["reference"]
    out["max_rel_loss_diff_fast_reference"] = float(np.max(np.abs(
        np.subtract(f["losses"], r["losses"])) / np.abs(r["losses"])))
    out["ratio_reference_fast"] = r["ms_per_step"] / f["ms_per_step"]
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
