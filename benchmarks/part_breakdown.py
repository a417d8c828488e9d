"""Where ParT's inference time goes, hepjax vs weaver-core: each part timed alone, eval mode.

Parts, each jit-compiled (hepjax) or run under torch.no_grad (weaver) on its own, on the batch
of benchmarks/part_vs_weaver.py (default 128 jets x 128 particles, all real, paper config):
  * full: the whole forward pass;
  * pair_embed: pair features + pair MLP + the (B, H, N, N) bias;
  * embed: the particle embedding (input BatchNorm, 3 x LayerNorm-Linear-GELU);
  * blocks8: the 8 particle-attention blocks (on the embedding and bias computed beforehand);
  * block1: one particle-attention block.
The two sides run in turn (torch in a subprocess of benchmarks/.venv-weaver, created by
part_vs_weaver.py / particlenet_vs_weaver.py if missing), `--repeats` times each, and every
part's median over all calls is printed per side with the ratio weaver / hepjax. The parts do
not add up to `full` exactly: XLA runs independent parts concurrently inside one program.

    .venv/bin/python benchmarks/part_breakdown.py [--batch 128] [--particles 128]
                                                  [--calls 5] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from part_vs_weaver import NUM_CLASSES, NUM_FEATURES, PAPER, make_data, weaver_model
from weaver_peer import VENV_PY, cpu_description, ensure_venv, median

PARTS = ("full", "pair_embed", "embed", "blocks8", "block1")


def _time(fn, calls: int) -> list[float]:
    fn()  # warm-up (compilation for JAX)
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def torch_side(batch: int, particles: int, calls: int) -> dict:
    import torch

    model = weaver_model().eval()
    d = make_data(batch, particles)
    x = torch.from_numpy(d["features"]).transpose(1, 2).contiguous()
    v = torch.from_numpy(d["vectors"][..., [1, 2, 3, 0]]).transpose(1, 2).contiguous()
    mask = torch.from_numpy(d["mask"]).unsqueeze(1).float()
    padding = ~mask.squeeze(1).bool()
    with torch.no_grad():
        emb = model.embed(x).masked_fill(~mask.bool().transpose(1, 2), 0)
        bias = model.pair_embed(v, mask=mask.bool())

        def blocks(n):
            def run():
                h = emb
                for blk in model.blocks[:n]:
                    h = blk(h, x_cls=None, padding_mask=padding, attn_mask=bias)
            return run

        fns = {"full": lambda: model(x, v, mask),
               "pair_embed": lambda: model.pair_embed(v, mask=mask.bool()),
               "embed": lambda: model.embed(x), "blocks8": blocks(8), "block1": blocks(1)}
        return {k: _time(fns[k], calls) for k in PARTS}


def jax_side(batch: int, particles: int, calls: int) -> dict:
    import jax
    import ml_collections
    from flax import nnx

    from hepjax.models import part

    d = make_data(batch, particles)
    model = part.build(ml_collections.ConfigDict(dict(PAPER)), (particles, NUM_FEATURES),
                       NUM_CLASSES, nnx.Rngs(params=0, dropout=1))
    model.eval()
    graphdef, state = nnx.split(model)
    f, mask, v = (jax.device_put(d[k]) for k in ("features", "mask", "vectors"))

    def embed(st):
        m = nnx.merge(graphdef, st)
        h = m.input_norm(f, mask=mask)
        for norm, dense in zip(m.embed_norms, m.embed_denses):
            h = m.activation(dense(norm(h)))
        return h

    def pair(st):
        return nnx.merge(graphdef, st).pair_embed(v, mask, mask_keys=True)

    def blocks(n):
        def run(st, h, bias):
            for blk in list(nnx.merge(graphdef, st).blocks)[:n]:
                h = blk(h, mask, bias=bias, bias_masks_keys=True)
            return h
        return jax.jit(run)

    emb, bias = jax.jit(embed)(state), jax.jit(pair)(state)
    full = jax.jit(lambda st: nnx.merge(graphdef, st)(f, mask, v))
    jitted = {"full": (full, (state,)), "pair_embed": (jax.jit(pair), (state,)),
              "embed": (jax.jit(embed), (state,)), "blocks8": (blocks(8), (state, emb, bias)),
              "block1": (blocks(1), (state, emb, bias))}
    return {k: _time(lambda fn=fn, a=a: jax.block_until_ready(fn(*a)), calls)
            for k, (fn, a) in jitted.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--particles", type=int, default=128)
    p.add_argument("--calls", type=int, default=5, help="timed calls per part and repeat")
    p.add_argument("--repeats", type=int, default=2, help="turns of each side")
    p.add_argument("--side", choices=("driver", "torch"), default="driver",
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side == "torch":
        print(json.dumps(torch_side(args.batch, args.particles, args.calls)))
        return

    from hepjax import runtime
    allocator = runtime.same_allocator_for_all("tuned")
    ensure_venv("weaver.nn.model.ParticleTransformer")
    weaver = {k: [] for k in PARTS}
    ours = {k: [] for k in PARTS}
    for _ in range(args.repeats):
        out = subprocess.run(
            [str(VENV_PY), os.path.abspath(__file__), "--side", "torch", "--batch",
             str(args.batch), "--particles", str(args.particles), "--calls", str(args.calls)],
            check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
        for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items():
            weaver[k] += v
        for k, v in jax_side(args.batch, args.particles, args.calls).items():
            ours[k] += v
    import jax
    print(f"ParT eval, batch {args.batch} x {args.particles}, CPU: {cpu_description()}, jax "
          f"{jax.__version__}, malloc: {allocator}; medians of {args.repeats} x {args.calls} "
          f"calls per part")
    print(f"{'part':12s}{'weaver ms':>12s}{'hepjax ms':>12s}{'ratio':>8s}")
    for k in PARTS:
        w, h = median(weaver[k]), median(ours[k])
        print(f"{k:12s}{1e3 * w:12.1f}{1e3 * h:12.1f}{w / h:8.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
