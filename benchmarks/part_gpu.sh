#!/bin/bash
# ParT vs weaver-core on a GPU: benchmarks/part_vs_weaver.py --device gpu, bfloat16 (the
# issue's GPU bar: >= 2x on an H100, bf16 and fused attention allowed on both sides) and
# float32, in one command, for a machine with no internet (the device tool's H100/H200).
#
# 1. Here, once, with PyPI reachable: the pure-Python wheels that machine lacks go to .whl/
#    (git-ignored): weaver-core and ml_collections; flax and optax at hepjax's tested versions
#    as a fallback if the machine's own do not run hepjax.
#        bash benchmarks/part_gpu.sh --fetch
# 2. There, in one call (at most ~8 minutes of running plus the machine's start, of the 15-minute budget):
#        run(command="bash benchmarks/part_gpu.sh", carry=[".whl"], timeout_s=560)
#    The log is printed and written to $OUT/part_gpu.log. Record it in BENCHMARKS.md.
#
# The machine's own python3 (torch with CUDA, JAX with CUDA) runs both sides; hepjax comes
# from this checkout (PYTHONPATH), weaver-core from the carried wheel.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=".whl"
PINNED="weaver-core==0.5.3 ml_collections==1.1.0 flax==0.12.8 optax==0.2.8"

if [ "${1:-}" = "--fetch" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" $PINNED || exit 1
    ls -l "$WHEELS"
    exit 0
fi

OUT="${OUT:-/tmp/part_gpu_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# the driver (JAX) and the worker (torch) share the GPU: JAX takes 45 %, not its default 75 %
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45
# the float32 output check compiles the same forward pass in every run: compile it once
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache

install() {  # $1 target, then wheels; pure-Python wheels are zip files if pip is missing
    local target=$1; shift
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$target" "$@" 2>/dev/null && return 0
    mkdir -p "$target" && for w in "$@"; do python3 -m zipfile -e "$w" "$target" || return 1; done
}

main() {
    ls "$WHEELS"/weaver_core-*.whl "$WHEELS"/ml_collections-*.whl >/dev/null || {
        echo "no wheels in $WHEELS: run 'bash benchmarks/part_gpu.sh --fetch' first, carry .whl"
        return 1; }
    install /tmp/site "$WHEELS"/weaver_core-*.whl "$WHEELS"/ml_collections-*.whl || return 1
    install /tmp/site-pinned "$WHEELS"/flax-*.whl "$WHEELS"/optax-*.whl || return 1
    export PYTHONPATH="/tmp/site:$PWD"

    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    # does hepjax (ParT forward and one training step) run on this machine's own flax / optax?
    # if not, on the pinned ones
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
    if ! python3 -c "$smoke"; then
        echo "hepjax does not run on this machine's flax/optax: using the pinned wheels"
        export PYTHONPATH="/tmp/site-pinned:$PYTHONPATH"
        python3 -c "$smoke" || return 1
    fi
    python3 -c "import torch, weaver; print('torch', torch.__version__, torch.cuda.get_device_name())" \
        || return 1

    run() {  # $1: seconds
        local limit=$1; shift
        echo "=== python3 benchmarks/part_vs_weaver.py --device gpu $* (limit ${limit} s)"
        timeout "$limit" python3 benchmarks/part_vs_weaver.py --device gpu --worker-python python3 \
            --worker-pythonpath /tmp/site --allocator default --rounds 5 --steps 20 "$@"
    }
    # the bar's run first; all three within ~7 minutes, so that a 560 s call has room
    run 170 --precision bfloat16 --batch 128
    run 120 --precision float32 --batch 128
    run 120 --precision bfloat16 --batch 512
    date -u
}

main 2>&1 | tee "$OUT/part_gpu.log"
