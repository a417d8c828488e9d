"""hepjax's ParticleNet against weaver-core's, same configuration, same data, same CPU.

Both networks are the paper's ParticleNet (arXiv:1902.08570): k = 16, EdgeConv channels
(64,64,64), (128,128,128), (256,256,256), FC 256 with dropout 0.1, no fusion block, input
BatchNorm, mean pooling over the real particles; 7 input features, 2 classes. The parameter
counts are asserted equal (366,160). Jets have 30..N real particles padded to N (default 100);
weaver trims each batch to its longest jet, as in its default training mode.

Measured per batch (default 128 jets x 100 particles):
  * train: one Adam step (forward, cross entropy, backward, update) in training mode
    (hepjax: the harness's compiled step, hepjax.train.compile_steps);
  * infer: a forward pass in eval mode (torch.no_grad / jax.jit).
The two sides are timed alternately (torch runs in a subprocess worker driven over a pipe):
each round times --steps consecutive calls on each side; the ratio weaver / hepjax (> 1:
hepjax faster) is the median over --rounds rounds.

weaver-core and torch==2.13.0 (CPU) live in their own venv, benchmarks/.venv-weaver (git-ignored),
created and filled on first use.

    .venv/bin/python benchmarks/particlenet_vs_weaver.py [--batch 128] [--particles 100]
                                                         [--steps 5] [--rounds 3] [--threads 0]
                                                         [--allocator tuned|hugetlb|default]

--allocator: one glibc malloc configuration for both processes (hepjax.runtime.same_allocator_for_all).
"""
from __future__ import annotations

import argparse
import sys
import time

from weaver_peer import TorchWorker, compare, cpu_description, ensure_venv, serve, time_fn

NUM_FEATURES, NUM_CLASSES = 7, 2
CONV = [(16, (64, 64, 64)), (16, (128, 128, 128)), (16, (256, 256, 256))]
FC = [(256, 0.1)]
REFERENCE_PARAMS = 366_160


def make_data(batch: int, particles: int, seed: int = 0):
    """Random jets: features (B, N, 7) with (deta, dphi) in columns 0, 1; mask; int labels."""
    import numpy as np
    rng = np.random.default_rng(seed)
    counts = rng.integers(min(30, particles), particles + 1, batch)
    mask = np.arange(particles)[None] < counts[:, None]
    feats = rng.normal(size=(batch, particles, NUM_FEATURES)).astype(np.float32)
    feats[..., :2] *= 0.3
    feats *= mask[..., None]
    return {"features": feats, "mask": mask,
            "label": rng.integers(0, NUM_CLASSES, batch).astype(np.int32)}


# ------------------------------------------------------------------------------ torch worker

def torch_worker(threads: int) -> None:
    """Reads JSON commands from stdin, answers one JSON line each on stdout."""
    import torch
    from weaver.nn.model.ParticleNet import ParticleNet
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ParticleNet(NUM_FEATURES, NUM_CLASSES, conv_params=CONV, fc_params=FC, use_fusion=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    data = {}

    def on_data(cmd):
        d = make_data(cmd["batch"], cmd["particles"])
        data["tensors"] = (torch.from_numpy(d["features"][..., :2].transpose(0, 2, 1).copy()),
                           torch.from_numpy(d["features"].transpose(0, 2, 1).copy()),
                           torch.from_numpy(d["mask"][:, None, :].astype("float32")),
                           torch.from_numpy(d["label"].astype("int64")))
        return {"ok": True}

    def steps():
        points, feats, mask, label = data["tensors"]

        def train():
            model.train()
            opt.zero_grad()
            loss = loss_fn(model(points, feats, mask.bool()), label)
            loss.backward()
            opt.step()

        def infer():
            model.eval()
            with torch.no_grad():
                model(points, feats, mask.bool())

        return {"train": train, "infer": infer}

    serve({"params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__,
           "threads": torch.get_num_threads()}, on_data, steps)


# ------------------------------------------------------------------------------ hepjax side

def hepjax_steps(batch_np):
    import jax
    import ml_collections
    import optax
    from flax import nnx

    from hepjax.models import particlenet
    from hepjax.train import compile_steps, count_params, init_state, tasks

    cfg = particlenet.default_config()
    cfg.conv_params = tuple((k, c) for k, c in CONV)
    cfg.fc_params = tuple(FC)
    assert isinstance(cfg, ml_collections.ConfigDict)
    shape = batch_np["features"].shape[1:]
    opt = optax.adam(1e-3)
    model_fn = lambda rngs: particlenet.build(cfg, shape, NUM_CLASSES, rngs)  # noqa: E731
    graphdefs, state = init_state(model_fn, opt, jax.random.key(0))
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    task = tasks.multiclass_classification(NUM_CLASSES)
    train_step, _ = compile_steps(graphdefs, task, opt)
    batch = {k: jax.device_put(v) for k, v in batch_np.items()}
    batch["weight"] = jax.numpy.ones(batch_np["label"].shape, "float32")

    @jax.jit
    def infer(state, batch):
        model = nnx.merge(graphdefs.eval, state.params, state.model_state)
        return model(batch["features"], batch["mask"])

    holder = {"state": state}

    def train():
        holder["state"], metrics = train_step(holder["state"], batch)
        jax.block_until_ready(metrics["loss"])

    def inference():
        jax.block_until_ready(infer(holder["state"], batch))

    del count_params
    return n_params, train, inference


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--particles", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--allocator", choices=("tuned", "hugetlb", "default"), default="tuned",
                    help="glibc malloc setting for BOTH frameworks (hepjax.runtime)")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.torch_worker:
        torch_worker(args.threads)
        return 0

    from hepjax import runtime

    allocator = runtime.same_allocator_for_all(args.allocator)
    print(f"malloc: {allocator}", flush=True)
    ensure_venv("weaver.nn.model.ParticleNet")
    with TorchWorker(__file__, args.threads) as worker:
        hello = worker.hello
        worker.ask(op="data", batch=args.batch, particles=args.particles)
        data = make_data(args.batch, args.particles)
        n_params, train, infer = hepjax_steps(data)
        if not n_params == hello["params"] == REFERENCE_PARAMS:
            raise AssertionError(f"parameter counts differ: hepjax {n_params}, weaver "
                                 f"{hello['params']}, paper config {REFERENCE_PARAMS}")
        import jax
        print(f"ParticleNet, {n_params:,} parameters on both sides; batch {args.batch} x "
              f"{args.particles} particles x {NUM_FEATURES} features; jax {jax.__version__} "
              f"({jax.devices()[0].platform}), torch {hello['torch']} ({hello['threads']} threads), "
              f"CPU: {cpu_description()}", flush=True)
        t0 = time.perf_counter()
        time_fn(train, 1), time_fn(infer, 1)
        print(f"hepjax compile + first calls: {time.perf_counter() - t0:.1f} s", flush=True)
        compare(worker, {"train": train, "infer": infer}, args.rounds, args.steps,
                first_round_warmup=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
