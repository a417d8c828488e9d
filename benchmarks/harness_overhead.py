"""How much the hepjax training loop adds over a hand-written ``jax.jit`` loop, per MLP step.

Both train the same MLP (10 -> 256 -> 256 -> 256 -> 1, ReLU, Adam, batch 512) on the same
generated dijet events. The hand-written loop is the minimal one: a jitted step with donated
state, a numpy permutation per epoch, ``state = step(state, batch)``. The harness is
``hepjax.train.loop.fit`` with everything on (NaN guard on every step, metrics fetched, progress
bar, JSON-lines logging every 100 steps; evaluation and checkpoints only at the end).

Per-step time is measured as the slope between two run lengths, (T(N2) - T(N1)) / (N2 - N1), so
compilation, start-up, the final evaluation and checkpoint cancel out. Repeated ``--repeats``
times; the median slope is reported. Prints the ratio harness / hand-written.

    python benchmarks/harness_overhead.py [--repeats 3] [--n1 500] [--n2 2500]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import jax
import numpy as np
import optax
from flax import nnx

from hepjax import config as config_lib
from hepjax.data import dijet
from hepjax.nn import MLP
from hepjax.train import loop, tasks

BATCH = 512
HIDDEN = (256, 256, 256)


def _data():
    d = dijet.generate(40_000, seed=0)
    f = (d["features"] - d["features"].mean(0)) / d["features"].std(0)
    return {"features": f.astype(np.float32), "label": d["label"]}


def hand_written(data, steps: int) -> float:
    model = MLP(10, HIDDEN, 1, rngs=nnx.Rngs(params=0))
    graphdef, params = nnx.split(model, nnx.Param)
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = nnx.merge(graphdef, p)(x)[:, 0]
            return optax.sigmoid_binary_cross_entropy(logits, y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step = jax.jit(step.__wrapped__ if hasattr(step, "__wrapped__") else step, donate_argnums=(0, 1))
    n = len(data["label"])
    per_epoch = n // BATCH
    start = time.perf_counter()
    for t in range(steps):
        epoch, pos = divmod(t, per_epoch)
        if pos == 0:
            perm = np.random.default_rng([0, epoch]).permutation(n)
        idx = perm[pos * BATCH:(pos + 1) * BATCH]
        params, opt_state, loss = step(params, opt_state, data["features"][idx],
                                       data["label"][idx].astype(np.float32))
    jax.block_until_ready(params)
    return time.perf_counter() - start


def harness(data, steps: int) -> float:
    config = config_lib.load_config("hepjax.configs.dijet_mlp")
    config.model.hidden, config.model.dropout = HIDDEN, 0.0
    config.optimizer = config_lib.ConfigDict({"name": "adam", "learning_rate": 1e-3})
    config.train.num_steps, config.train.batch_size = steps, BATCH
    config.train.log_every = 100
    config.train.eval_every = config.train.checkpoint_every = steps
    val = {k: v[:2048] for k, v in data.items()}
    model_fn = lambda rngs: MLP(10, HIDDEN, 1, rngs=rngs)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        loop.fit(config, workdir, task=tasks.binary_classification(), model_fn=model_fn,
                 optimizer=optax.adam(1e-3), train_data=data, val_data=val, progress=True)
        return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n1", type=int, default=500)
    parser.add_argument("--n2", type=int, default=2500)
    args = parser.parse_args()
    data = _data()
    slopes = {"hand": [], "harness": []}
    for _ in range(args.repeats):
        for name, fn in (("hand", hand_written), ("harness", harness)):
            t1, t2 = fn(data, args.n1), fn(data, args.n2)
            slopes[name].append((t2 - t1) / (args.n2 - args.n1))
    hand, ours = np.median(slopes["hand"]), np.median(slopes["harness"])
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, jax {jax.__version__}")
    print(f"hand-written jit loop: {hand * 1e3:.3f} ms/step  (runs: {[f'{s*1e3:.3f}' for s in slopes['hand']]})")
    print(f"hepjax harness:        {ours * 1e3:.3f} ms/step  (runs: {[f'{s*1e3:.3f}' for s in slopes['harness']]})")
    print(f"ratio harness / hand-written: {ours / hand:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
