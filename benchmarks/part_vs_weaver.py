"""hepjax's Particle Transformer against weaver-core's, same configuration, same data, same CPU.

Both networks are the paper's ParT (arXiv:2202.03772; jet-universe/particle_transformer
networks/example_ParticleTransformer.py): embed 128-512-128, pair embed 64-64-64 -> 8 heads,
8 particle-attention and 2 class-attention blocks, 17 input features, 10 classes, dropout 0.1,
no `trim` (hepjax has static shapes; every particle is real here, so trimming would change
nothing but weaver's random reordering). The parameter counts are asserted equal.

First an output check: weaver's freshly initialised weights are copied into the hepjax model and
both evaluate 16 jets with 40-100 % real particles (zero padding) in eval mode; the logits must
agree to 1e-3 (relative to their size), else the script stops (with --device gpu it warns
and times anyway).

Measured, per batch (default 128 jets x 128 particles, all real):
  * train: one Adam step (forward, cross entropy, backward, update) in training mode;
  * infer: a forward pass in eval mode (torch.no_grad / jax.jit).
The two sides are timed alternately, after warm-up (compilation for JAX): the torch side runs in
a worker subprocess (this file with --torch-worker, in benchmarks/.venv-weaver) driven over a
pipe, and each round times --steps consecutive calls on each side in turn, so slow phases of a
shared machine hit both. Prints per-round and median ms per batch and the median ratio
weaver / hepjax (> 1: hepjax faster).

weaver-core and torch==2.13.0 (CPU) live in their own venv, benchmarks/.venv-weaver, shared with
benchmarks/particlenet_vs_weaver.py; it is created and filled if missing (or --worker-python
names a python that imports torch and weaver-core, with --worker-pythonpath).

--device gpu runs both sides on the GPU (JAX's GPU backend, torch's cuda:0, synchronised after
every call); --precision bfloat16 runs weaver under torch.autocast(bfloat16) and hepjax with
hepjax.train's mixed precision (bf16 products and activations, float32 master weights, loss,
Adam and four-momenta); float32 means float32 on both (no TF32 on a GPU). The output check is
always float32. benchmarks/part_gpu.sh runs the GPU comparison (both precisions) in one command,
also on a cluster node without internet (its header says how).

    .venv/bin/python benchmarks/part_vs_weaver.py [--batch 128] [--particles 128]
                                                  [--steps 1] [--rounds 3] [--threads 0]
                                                  [--allocator tuned|hugetlb|default]
                                                  [--device cpu|gpu]
                                                  [--precision float32|bfloat16]
                                                  [--worker-python PY] [--worker-pythonpath P]
"""
from __future__ import annotations

import argparse
import os
import tempfile

from weaver_peer import TorchWorker, compare, cpu_description, ensure_venv, serve

NUM_FEATURES, NUM_CLASSES = 17, 10

PAPER = dict(embed_dims=(128, 512, 128), pair_embed_dims=(64, 64, 64), num_heads=8,
             num_layers=8, num_cls_layers=2, fc_params=(), activation="gelu")


# --------------------------------------------------------------------------------------------
# shared: data
# --------------------------------------------------------------------------------------------

def make_data(batch: int, particles: int, seed: int = 0):
    """Random jets: features (B, N, 17), four-momenta (B, N, 4) (E, px, py, pz) GeV, labels."""
    import numpy as np
    rng = np.random.default_rng(seed)
    pt = rng.exponential(20.0, (batch, particles)) + 0.5
    eta = rng.normal(0.0, 0.3, (batch, particles))
    phi = rng.normal(0.0, 0.3, (batch, particles))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + 0.14**2)
    return {"features": rng.normal(size=(batch, particles, NUM_FEATURES)).astype(np.float32),
            "vectors": np.stack([e, px, py, pz], -1).astype(np.float32),
            "mask": np.ones((batch, particles), bool),
            "label": rng.integers(0, NUM_CLASSES, batch).astype(np.int32)}


def make_check_data(particles: int, seed: int = 1):
    """16 jets with 40-100 % of the particles real (the rest zero padding), for the output check."""
    import numpy as np
    d = make_data(16, particles, seed)
    rng = np.random.default_rng(seed)
    n_real = rng.integers(max(1, int(0.4 * particles)), particles + 1, 16)
    mask = np.arange(particles)[None] < n_real[:, None]
    return {"check_features": np.where(mask[..., None], d["features"], 0.0).astype(np.float32),
            "check_vectors": np.where(mask[..., None], d["vectors"], 0.0).astype(np.float32),
            "check_mask": mask}


# --------------------------------------------------------------------------------------------
# torch / weaver side (runs inside benchmarks/.venv-weaver)
# --------------------------------------------------------------------------------------------

def weaver_model():
    """weaver-core's ParticleTransformer in the paper configuration (the same as ours: equal
    parameter count, checked by the benchmark), freshly initialised from torch seed 0."""
    import torch
    from weaver.nn.model.ParticleTransformer import ParticleTransformer

    torch.manual_seed(0)
    return ParticleTransformer(
        input_dim=NUM_FEATURES, num_classes=NUM_CLASSES, pair_input_dim=4,
        use_pre_activation_pair=False, embed_dims=list(PAPER["embed_dims"]),
        pair_embed_dims=list(PAPER["pair_embed_dims"]), num_heads=8, num_layers=8,
        num_cls_layers=2, block_params=None,
        cls_block_params={"dropout": 0, "attn_dropout": 0, "activation_dropout": 0},
        fc_params=[], activation="gelu", trim=False, for_inference=False)


def torch_worker(threads: int, device: str = "cpu", precision: str = "float32") -> None:
    """Reads JSON commands from stdin, answers one JSON line each on stdout (the protocol of
    benchmarks/particlenet_vs_weaver.py): {"op": "data", "path": npz} loads the batch and
    writes the freshly initialised weights and eval-mode logits on the check jets to
    path + ".weights.npz"; {"op": "train" | "infer", "steps": S, "warmup": W} times S calls."""
    import contextlib

    import numpy as np
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    if dev.type == "cuda":  # float32 means float32 on both sides (JAX: precision "highest")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def amp():  # bfloat16: weaver's model under autocast (products and SDPA in bf16)
        if precision == "bfloat16":
            return torch.autocast(dev.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    model = weaver_model()
    init_weights = {k: t.detach().numpy().copy() for k, t in model.state_dict().items()}
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = {}

    def weaver_inputs(features, vectors, mask):
        """hepjax layout (B, N, F), (B, N, 4) (E, px, py, pz), (B, N) -> weaver's (B, F, N),
        (B, 4, N) (px, py, pz, E), (B, 1, N) float, on the device."""
        return (torch.from_numpy(features).transpose(1, 2).contiguous().to(dev),
                torch.from_numpy(vectors[..., [1, 2, 3, 0]]).transpose(1, 2).contiguous().to(dev),
                torch.from_numpy(mask).unsqueeze(1).float().to(dev))

    def on_data(cmd):
        d = dict(np.load(cmd["path"]))
        batch["x"], batch["v"], batch["mask"] = weaver_inputs(d["features"], d["vectors"],
                                                              d["mask"])
        batch["y"] = torch.from_numpy(d["label"]).long().to(dev)
        # the output check: weights and eval-mode logits on padded jets, before training
        model.eval()
        with torch.no_grad():
            check = weaver_inputs(d["check_features"], d["check_vectors"], d["check_mask"])
            check_logits = model(*check).cpu().numpy()  # float32, no autocast
        np.savez(cmd["path"] + ".weights.npz", check_logits=check_logits, **init_weights)
        return {"ok": True}

    def train():
        model.train()
        opt.zero_grad(set_to_none=True)
        with amp():
            logits = model(batch["x"], batch["v"], batch["mask"])
        loss = loss_fn(logits.float(), batch["y"])
        loss.backward()
        opt.step()
        sync()

    def infer():
        model.eval()
        with torch.no_grad(), amp():
            model(batch["x"], batch["v"], batch["mask"])
        sync()

    serve({"params": sum(p.numel() for p in model.parameters() if p.requires_grad),
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"},
          on_data, lambda: {"train": train, "infer": infer})


# --------------------------------------------------------------------------------------------
# JAX / hepjax side
# --------------------------------------------------------------------------------------------

# weaver orders the pair features (ln kT, ln z, ln Delta, ln m^2); hepjax (ln Delta, ln kT, ln z,
# ln m^2): hepjax channel c is weaver channel _PAIR_PERM[c]
_PAIR_PERM = [2, 0, 1, 3]


def load_weaver_weights(model, w):
    """Copies a weaver ParticleTransformer state_dict (numpy arrays) into a hepjax
    ParticleTransformer of the same configuration (Linear/Conv1d weights transposed)."""
    import numpy as np

    def lin(dense, prefix, perm=None):
        k = w[prefix + ".weight"]
        k = k[..., 0] if k.ndim == 3 else k  # Conv1d (out, in, 1)
        k = k.T
        dense.kernel[...] = k if perm is None else k[perm]
        dense.bias[...] = w[prefix + ".bias"]

    def ln(norm, prefix):
        norm.scale[...] = w[prefix + ".weight"]
        norm.bias[...] = w[prefix + ".bias"]

    def bn(norm, prefix, perm=None):
        sel = (lambda a: a) if perm is None else (lambda a: a[perm])
        norm.scale[...] = sel(w[prefix + ".weight"])
        norm.bias[...] = sel(w[prefix + ".bias"])
        norm.mean[...] = sel(w[prefix + ".running_mean"])
        norm.var[...] = sel(w[prefix + ".running_var"])

    bn(model.input_norm, "embed.input_bn")
    for i, (norm, dense) in enumerate(zip(model.embed_norms, model.embed_denses)):
        ln(norm, f"embed.embed.{3 * i}")
        lin(dense, f"embed.embed.{3 * i + 1}")
    pe = model.pair_embed
    bn(pe.input_norm, "pair_embed.embed.0", _PAIR_PERM)
    for i, (layer, norm) in enumerate(zip(pe.layers, pe.norms)):
        lin(layer, f"pair_embed.embed.{1 + 3 * i}", _PAIR_PERM if i == 0 else None)
        bn(norm, f"pair_embed.embed.{2 + 3 * i}")
    for name, blocks in (("blocks", model.blocks), ("cls_blocks", model.cls_blocks)):
        for i, blk in enumerate(blocks):
            p = f"{name}.{i}."
            ln(blk.pre_attn_norm, p + "pre_attn_norm")
            e = blk.embed_dim
            win, bin_ = w[p + "attn.in_proj.weight"], w[p + "attn.in_proj.bias"]
            blk.attn.q_proj.kernel[...] = win[:e].T
            blk.attn.q_proj.bias[...] = bin_[:e]
            blk.attn.kv_proj.kernel[...] = win[e:].T
            blk.attn.kv_proj.bias[...] = bin_[e:]
            lin(blk.attn.out_proj, p + "attn.out_proj")
            ln(blk.post_attn_norm, p + "post_attn_norm")
            ln(blk.pre_fc_norm, p + "pre_fc_norm")
            lin(blk.fc1, p + "fc1")
            ln(blk.post_fc_norm, p + "post_fc_norm")
            lin(blk.fc2, p + "fc2")
            blk.head_scale[...] = w[p + "c_attn"]
            blk.resid_scale[...] = w[p + "w_resid"]
    model.cls_token[...] = w["cls_token"]
    ln(model.norm, "norm")
    lin(model.out, "fc.0")
    return np.asarray(w["check_logits"])


def check_outputs(cfg, weights_path, data) -> float:
    """Max |logit difference| between weaver and hepjax with weaver's weights, eval mode, on
    padded jets."""
    import numpy as np
    from flax import nnx

    from hepjax.models import part

    particles = data["check_features"].shape[1]
    model = part.build(cfg, (particles, NUM_FEATURES), NUM_CLASSES,
                       nnx.Rngs(params=0, dropout=1))
    ref = load_weaver_weights(model, dict(np.load(weights_path)))
    model.eval()
    import jax
    with jax.default_matmul_precision("highest"):  # float32 products on a GPU too (no TF32)
        ours = np.asarray(nnx.jit(lambda m, f, k, v: m(f, k, v))(
            model, data["check_features"], data["check_mask"], data["check_vectors"]))
    return float(np.max(np.abs(ours - ref))), float(np.max(np.abs(ref)))


def hepjax_steps(data, precision: str = "float32"):
    """(parameter count, train(), infer()) for hepjax's ParT on the batch `data`; precision
    'bfloat16' is hepjax.train's mixed precision (bf16 forward and backward, float32 master
    weights, loss and Adam), the forward pass of infer() in bf16 as well."""
    import jax
    import ml_collections
    import optax
    from flax import nnx

    from hepjax.models import part
    from hepjax.train import compile_steps, count_params, init_state, tasks
    from hepjax.train.step import cast_batch, cast_floats, compute_dtype

    batch_size, particles, _ = data["features"].shape
    cfg = ml_collections.ConfigDict(dict(PAPER, dropout=0.1, attn_dropout=0.1,
                                         activation_dropout=0.1))
    opt = optax.adam(1e-3)
    graphdefs, state = init_state(
        lambda r: part.build(cfg, (particles, NUM_FEATURES), NUM_CLASSES, r), opt,
        jax.random.key(0))
    n_params = count_params(state.params)
    train_step, _ = compile_steps(graphdefs, tasks.multiclass_classification(NUM_CLASSES), opt,
                                  precision=precision)
    dtype = compute_dtype(precision)
    batch = {k: jax.device_put(v) for k, v in data.items()}
    batch["weight"] = jax.numpy.ones((batch_size,), jax.numpy.float32)

    holder = {"state": state}

    def train():
        holder["state"], metrics = train_step(holder["state"], batch)
        jax.block_until_ready(metrics["loss"])

    @jax.jit
    def forward(params, model_state, b):
        b = cast_batch(b, dtype)  # the four-momenta stay float32 (hepjax.train.step)
        model = nnx.merge(graphdefs.eval, cast_floats(params, dtype), model_state)
        return model(b["features"], b["mask"], b["vectors"]).astype(jax.numpy.float32)

    def infer():
        s = holder["state"]
        jax.block_until_ready(forward(s.params, s.model_state, batch))

    return n_params, train, infer


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--particles", type=int, default=128)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--allocator", choices=("tuned", "hugetlb", "default"), default="tuned",
                   help="glibc malloc setting for BOTH frameworks (hepjax.runtime)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="where BOTH sides run (gpu: JAX's GPU backend and torch's cuda:0)")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="BOTH sides: float32 (no TF32 on a GPU), or bfloat16 mixed precision "
                        "(weaver: torch.autocast; hepjax: hepjax.train's precision='bfloat16')")
    p.add_argument("--worker-python", default=None,
                   help="python for the torch side (must import torch and weaver-core); default "
                        "benchmarks/.venv-weaver, created if missing. On a GPU machine: a python3 "
                        "with CUDA torch (weaver-core on it or on --worker-pythonpath)")
    p.add_argument("--worker-pythonpath", default="", help="PYTHONPATH of the torch side")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_worker:
        torch_worker(args.threads, args.device, args.precision)
        return
    if args.device == "cpu":  # before JAX starts: the CPU even where a GPU is visible
        os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import numpy as np
    from hepjax import runtime

    allocator = runtime.same_allocator_for_all(args.allocator)
    import jax
    if jax.default_backend() != args.device:
        raise SystemExit(f"--device {args.device}, but JAX's default backend is "
                         f"{jax.default_backend()!r} (JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS')!r})")
    if args.device == "gpu" and args.precision == "float32":
        jax.config.update("jax_default_matmul_precision", "highest")  # as torch: no TF32
    if args.worker_python is None:
        ensure_venv("weaver.nn.model.ParticleTransformer")
    with TorchWorker(__file__, args.threads, python=args.worker_python,
                     pythonpath=args.worker_pythonpath,
                     extra_args=("--device", args.device, "--precision", args.precision)) as worker:
        hello = worker.hello
        data = make_data(args.batch, args.particles)
        with tempfile.TemporaryDirectory() as tmp:
            data_path = os.path.join(tmp, "data.npz")
            check = make_check_data(args.particles)
            np.savez(data_path, **data, **check)
            worker.ask(op="data", path=data_path)
            import ml_collections
            diff, scale = check_outputs(ml_collections.ConfigDict(dict(PAPER)),
                                        data_path + ".weights.npz", check)
        print(f"output check (weaver's weights loaded into hepjax, eval mode, 16 padded jets): "
              f"max |logit difference| = {diff:.2e} (logits up to {scale:.2f})", flush=True)
        if diff > 1e-3 * max(1.0, scale):
            message = f"hepjax and weaver ParT disagree: max |logit diff| {diff:.3e}"
            if args.device != "gpu":
                raise AssertionError(message)
            # on a borrowed GPU the timings are still worth having; the log says it loudly
            print(f"WARNING: {message} (GPU kernels; timing anyway, check before quoting)",
                  flush=True)
        n_params, train, infer = hepjax_steps(data, args.precision)
        if n_params != hello["params"]:
            raise AssertionError(f"parameter counts differ: hepjax {n_params:,} vs weaver "
                                 f"{hello['params']:,}")
        where = (f"GPU ({jax.devices()[0].device_kind}; torch: {hello['device']})"
                 if args.device == "gpu" else f"CPU: {cpu_description()}")
        print(f"ParT paper config, {n_params:,} parameters (both), batch {args.batch} x "
              f"{args.particles} particles, {where}, {args.precision}, torch {hello['torch']} "
              f"({hello['threads']} threads), jax {jax.__version__}, malloc: {allocator}",
              flush=True)
        # warm-up (compilation for JAX; both sides' memory), alternating as the timing does
        for _ in range(2):
            train(), infer()
            worker.ask(op="train", steps=1), worker.ask(op="infer", steps=1)
        compare(worker, {"train": train, "infer": infer}, args.rounds, args.steps)


if __name__ == "__main__":
    main()
