#!/bin/bash
# ParT vs weaver-core on a GPU: benchmarks/part_vs_weaver.py --device gpu, bfloat16 (the
# issue's GPU bar: >= 2x on an H100, bf16 and fused attention allowed on both sides) and
# float32, in one command, for a machine with no internet (the device tool's H100/H200).
#
# 1. Here, once, with PyPI reachable: the pure-Python wheels that machine lacks go to .whl/
#    (git-ignored): weaver-core and ml_collections; flax and optax at hepjax's tested versions
#    as a fallback if the machine's own do not run hepjax.
#        bash benchmarks/part_gpu.sh --fetch
# 2. There, in one call (at most ~10 minutes of device time):
#        run(command="bash benchmarks/part_gpu.sh", carry=[".whl"], timeout_s=590)
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
LOG="$OUT/part_gpu.log"
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1

ls "$WHEELS"/weaver_core-*.whl "$WHEELS"/ml_collections-*.whl >/dev/null || {
    echo "no wheels in $WHEELS: run 'bash benchmarks/part_gpu.sh --fetch' first and carry .whl"
    exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/weaver_core-*.whl "$WHEELS"/ml_collections-*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site-pinned "$WHEELS"/flax-*.whl "$WHEELS"/optax-*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"

date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
# does hepjax's ParT run on this machine's own flax / optax? if not, on the pinned ones
smoke='import jax, flax, optax, ml_collections; from flax import nnx; from hepjax.models import part
m = part.build(ml_collections.ConfigDict(dict(num_layers=1, num_cls_layers=1)), (8, 3), 2, nnx.Rngs(params=0, dropout=1))
import jax.numpy as jnp; m.eval(); y = m(jnp.ones((2, 8, 3)), jnp.ones((2, 8), bool), jnp.ones((2, 8, 4)) * jnp.array([2., 1., 0., 0.]))
print("hepjax ParT ok:", jax.__version__, jax.default_backend(), "flax", flax.__version__, "optax", optax.__version__, y.shape)'
if ! python3 -c "$smoke"; then
    echo "hepjax does not run on this machine's flax/optax: using the pinned wheels"
    export PYTHONPATH="/tmp/site-pinned:$PYTHONPATH"
    python3 -c "$smoke" || exit 1
fi
python3 -c "import torch, weaver; print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1

run() {
    echo "=== python3 benchmarks/part_vs_weaver.py --device gpu $*"
    timeout 180 python3 benchmarks/part_vs_weaver.py --device gpu --worker-python python3 \
        --worker-pythonpath /tmp/site --allocator default --rounds 5 --steps 20 "$@"
}
# most important first: each run has 180 s, the call 590 s (compilation included)
run --precision bfloat16 --batch 128
run --precision float32 --batch 128
run --precision bfloat16 --batch 512
date -u
