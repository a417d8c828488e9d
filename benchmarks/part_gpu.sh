#!/bin/bash
# hepjax's Particle Transformer against weaver-core's on one NVIDIA GPU, in one command:
# benchmarks/part_vs_weaver.py --device gpu in bfloat16 mixed precision (batch 128, then 512;
# fused attention and bf16 allowed on both sides) and in float32 (batch 128, no TF32).
#
# What the GPU machine needs: python3 with JAX for CUDA (e.g. pip install "jax[cuda12]") and
# PyTorch with CUDA, and this checkout (hepjax is imported from it, not installed).
# weaver-core and ml_collections come from that python3 when it has them, else from wheels in
# .whl/ (see "no internet" below); flax and optax likewise, with hepjax's tested versions in .whl/
# as the fallback when hepjax does not run on the machine's own.
#
# A workstation or cloud VM with internet:
#     python3 -m pip install "jax[cuda12]" torch weaver-core==0.5.3 ml_collections flax optax
#     bash benchmarks/part_gpu.sh
#
# A cluster whose GPU nodes have no internet: download the pure-Python wheels once where PyPI is
# reachable (a login node; they go to .whl/, which git ignores), then run the script on a GPU
# node from the same checkout, e.g. with SLURM:
#     bash benchmarks/part_gpu.sh --fetch           # PYVER=3.11 to fetch for another python
#     srun --gres=gpu:1 --time=00:20:00 bash benchmarks/part_gpu.sh
# The three runs are capped at 170 + 120 + 120 s, plus the start-up checks.
#
# Settings (environment): PYTHON (default python3), OUT (where part_gpu.log goes; default
# ./part_gpu_out), WHEELS (default .whl). The log is printed as well; per run, the "median"
# lines hold ms per batch on each side and the ratio weaver / hepjax (> 1: hepjax faster).
# BENCHMARKS.md says what to record with it (GPU, driver, versions, date, command).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"
PINNED="weaver-core==0.5.3 ml_collections==1.1.0 flax==0.12.8 optax==0.2.8"

if [ "${1:-}" = "--fetch" ]; then
    pyver="${PYVER:-$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" $PINNED || exit 1
    ls -l "$WHEELS"
    exit 0
fi

OUT="${OUT:-$PWD/part_gpu_out}"
SITE="${TMPDIR:-/tmp}/hepjax_part_gpu"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# the driver (JAX) and the worker (torch) share the GPU: JAX takes 45 %, not its default 75 %
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45
# the float32 output check compiles the same forward pass in every run: compile it once
export JAX_COMPILATION_CACHE_DIR="$SITE/jax_cache"

install() {  # $1 target, then wheels; pure-Python wheels are zip files if pip is missing
    local target=$1; shift
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$target" "$@" 2>/dev/null && return 0
    mkdir -p "$target" && for w in "$@"; do "$PYTHON" -m zipfile -e "$w" "$target" || return 1; done
}

main() {
    local torch_path=""
    if "$PYTHON" -c "import weaver, ml_collections" 2>/dev/null; then
        echo "weaver-core and ml_collections: from $PYTHON"
    else
        ls "$WHEELS"/weaver_core-*.whl "$WHEELS"/ml_collections-*.whl >/dev/null || {
            echo "$PYTHON lacks weaver-core or ml_collections and $WHEELS has no wheels:"
            echo "pip install them, or run 'bash benchmarks/part_gpu.sh --fetch' where PyPI is reachable"
            return 1; }
        install "$SITE/site" "$WHEELS"/weaver_core-*.whl "$WHEELS"/ml_collections-*.whl || return 1
        torch_path="$SITE/site"
    fi
    export PYTHONPATH="${torch_path:+$torch_path:}$PWD"

    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    # does hepjax (ParT forward and one training step) run on this python's flax / optax?
    # if not, on the tested versions from the wheels
    local smoke='import jax, jax.numpy as jnp, flax, optax, ml_collections
from flax import nnx
from hepjax.models import part
from hepjax.train import compile_steps, init_state, tasks
cfg = ml_collections.ConfigDict(dict(num_layers=1, num_cls_layers=1))
opt = optax.adam(1e-3)
g, s = init_state(lambda r: part.build(cfg, (8, 3), 2, r), opt, jax.random.key(0))
step, _ = compile_steps(g, tasks.multiclass_classification(2), opt, precision="bfloat16")
v = jnp.ones((4, 8, 4)) * jnp.array([2.0, 1.0, 0.0, 0.0])
b = dict(features=jnp.ones((4, 8, 3)), mask=jnp.ones((4, 8), bool), vectors=v,
         label=jnp.array([0, 1, 0, 1]), weight=jnp.ones(4))
s, m = step(s, b)
print("hepjax ParT ok:", jax.__version__, jax.default_backend(), "flax", flax.__version__,
      "optax", optax.__version__, "loss", float(m["loss"]))'
    if ! "$PYTHON" -c "$smoke"; then
        ls "$WHEELS"/flax-*.whl "$WHEELS"/optax-*.whl >/dev/null || {
            echo "hepjax does not run on this python's flax/optax; install flax==0.12.8 optax==0.2.8"
            echo "or fetch them with 'bash benchmarks/part_gpu.sh --fetch'"
            return 1; }
        echo "hepjax does not run on this python's flax/optax: using the tested versions from $WHEELS"
        install "$SITE/site-pinned" "$WHEELS"/flax-*.whl "$WHEELS"/optax-*.whl || return 1
        export PYTHONPATH="$SITE/site-pinned:$PYTHONPATH"
        "$PYTHON" -c "$smoke" || return 1
    fi
    "$PYTHON" -c "import torch, weaver; print('torch', torch.__version__, torch.cuda.get_device_name())" \
        || return 1

    run() {  # $1: seconds
        local limit=$1; shift
        echo "=== $PYTHON benchmarks/part_vs_weaver.py --device gpu $* (limit ${limit} s)"
        timeout "$limit" "$PYTHON" benchmarks/part_vs_weaver.py --device gpu \
            --worker-python "$PYTHON" --worker-pythonpath "$torch_path" --allocator default \
            --rounds 5 --steps 20 "$@"
    }
    run 170 --precision bfloat16 --batch 128
    run 120 --precision float32 --batch 128
    run 120 --precision bfloat16 --batch 512
    date -u
}

main 2>&1 | tee "$OUT/part_gpu.log"
