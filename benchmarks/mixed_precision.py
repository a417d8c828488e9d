"""bfloat16 vs float32 train-step time and accuracy on whatever device JAX sees.

Both runs train the same MLP from the same initialisation on the same batches with the hepjax
step, ``precision='float32'`` and ``precision='bfloat16'`` (bf16 forward/backward matmuls,
float32 master parameters, Adam state, loss and gradient reductions). Reported:

* ms/step of each (median of ``--repeats`` timed windows of ``--steps`` steps after a warm-up)
  and the ratio bf16 / fp32 (< 1 means bf16 is faster: expected on GPUs with bf16 tensor cores
  and on TPUs; on CPUs bf16 is usually emulated and slower, so there it is a functional check);
* the mean training loss over the last window of each, the validation loss and AUC after
  training, and the relative size of the parameter difference.

    python benchmarks/mixed_precision.py [--hidden 512,512,512,512] [--batch 4096] [--steps 100]
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax

from hepjax import metrics
from hepjax.data import dijet
from hepjax.nn import MLP
from hepjax.train import state as state_lib, step as step_lib, tasks


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", default="512,512,512,512")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    hidden = tuple(int(h) for h in args.hidden.split(","))

    data = dijet.generate(60_000, seed=0)
    mean, std = data["features"].mean(0), data["features"].std(0)
    features = ((data["features"] - mean) / std).astype(np.float32)
    labels = data["label"].astype(np.float32)
    val = dijet.generate(20_000, seed=1)
    val_batch = {"features": ((val["features"] - mean) / std).astype(np.float32),
                 "label": val["label"].astype(np.float32), "weight": np.ones(len(val["label"]), np.float32)}
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(args.steps):
        idx = rng.integers(0, len(labels), args.batch)
        batches.append(jax.device_put({"features": features[idx], "label": labels[idx],
                                       "weight": np.ones(args.batch, np.float32)}))
    optimizer = optax.adam(1e-3)
    task = tasks.binary_classification()
    print(f"device: {jax.devices()[0].device_kind} (backend {jax.default_backend()}), jax {jax.__version__}; "
          f"MLP 10-{'-'.join(map(str, hidden))}-1, batch {args.batch}, Adam")
    results = {}
    for precision in ("float32", "bfloat16"):
        graphdefs, state = state_lib.init_state(lambda r: MLP(10, hidden, 1, rngs=r), optimizer,
                                                jax.random.key(0))
        train, evaluate = step_lib.compile_steps(graphdefs, task, optimizer, precision=precision)
        state, _ = train(state, batches[0])  # compile
        jax.block_until_ready(state)
        times, losses = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            window = []
            for b in batches:
                state, m = train(state, b)
                window.append(m["loss"])
            jax.block_until_ready(window)
            times.append((time.perf_counter() - start) / args.steps)
            losses = [float(x) for x in window]
        loss_sum, weight, scores = evaluate(state, val_batch)
        auc = metrics.roc_auc(val_batch["label"], np.asarray(scores))
        results[precision] = {"ms": float(np.median(times)) * 1e3, "train_loss": float(np.mean(losses)),
                              "val_loss": float(loss_sum / weight), "auc": float(auc),
                              "params": jax.device_get(state.params),
                              "dtypes": sorted({str(x.dtype) for x in jax.tree.leaves(state.params)})}
        r = results[precision]
        print(f"{precision:>9}: {r['ms']:8.3f} ms/step (runs {[f'{t * 1e3:.3f}' for t in times]}), "
              f"last-window train loss {r['train_loss']:.5f}, val loss {r['val_loss']:.5f}, "
              f"val AUC {r['auc']:.5f}, param dtypes {r['dtypes']}")
    flat = lambda p: np.concatenate([np.ravel(x) for x in jax.tree.leaves(p)])
    a, b = flat(results["float32"]["params"]), flat(results["bfloat16"]["params"])
    print(f"ratio bf16 / fp32 step time: {results['bfloat16']['ms'] / results['float32']['ms']:.3f}")
    print(f"|AUC bf16 - AUC fp32| = {abs(results['bfloat16']['auc'] - results['float32']['auc']):.5f}; "
          f"|val loss diff| = {abs(results['bfloat16']['val_loss'] - results['float32']['val_loss']):.5f}; "
          f"||params diff|| / ||params|| = {np.linalg.norm(a - b) / np.linalg.norm(a):.4f}")


if __name__ == "__main__":
    main()
