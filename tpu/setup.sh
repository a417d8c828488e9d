#!/usr/bin/env bash
# Per-worker environment for hepjax: a virtual environment with JAX for the accelerator and
# hepjax installed editable from this checkout. Run it on every worker of a TPU VM slice
# (see tpu/README.md: `gcloud compute tpus tpu-vm ssh ... --worker=all --command=...`) or on
# every node of a GPU cluster.
#
#   bash tpu/setup.sh [JAX_EXTRA]
#
# JAX_EXTRA: the jax extra to install: tpu (default), cuda12 (NVIDIA GPUs) or cpu.
# Environment: HEPJAX_VENV (default ~/hepjax-venv), JAX_VERSION (default 0.10.2, the version the
# tests pin), PYTHON (default python3).
set -euo pipefail

extra="${1:-tpu}"
case "${extra}" in
  tpu | cuda12 | cpu) ;;
  *)
    echo "setup.sh: unknown JAX extra '${extra}'; use tpu, cuda12 or cpu" >&2
    exit 2
    ;;
esac

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HEPJAX_VENV:-${HOME}/hepjax-venv}"
jax_version="${JAX_VERSION:-0.10.2}"
python="${PYTHON:-python3}"

if [[ ! -f "${repo_dir}/pyproject.toml" ]]; then
  echo "setup.sh: ${repo_dir} is not a hepjax checkout (no pyproject.toml)" >&2
  exit 1
fi

if [[ ! -x "${venv}/bin/python" ]]; then
  "${python}" -m venv "${venv}"
fi
"${venv}/bin/pip" install --quiet --upgrade pip
if [[ "${extra}" == "cpu" ]]; then
  "${venv}/bin/pip" install --quiet "jax==${jax_version}"
else
  "${venv}/bin/pip" install --quiet "jax[${extra}]==${jax_version}"
fi
"${venv}/bin/pip" install --quiet -e "${repo_dir}"
# Import only: touching the devices here would start the accelerator runtime outside a job.
"${venv}/bin/python" -c "import jax, hepjax; print('hepjax', hepjax.__version__, 'jax', jax.__version__)"
echo "setup.sh: ready on $(hostname): ${venv}"
