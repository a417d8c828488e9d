#!/usr/bin/env bash
# Launches one hepjax training on every worker of a TPU VM slice, from your own machine.
#
#   bash tpu/run.sh TPU_NAME ZONE CONFIG WORKDIR [--config.key=value ...]
#
# Every worker runs the same command,
#   cd ~/hepjax && ~/hepjax-venv/bin/python -m hepjax.parallel train CONFIG \
#       --workdir WORKDIR --config.train.num_devices=0 [--config.key=value ...]
# where `python -m hepjax.parallel` joins JAX's distributed runtime (the TPU metadata names the
# workers and the coordinator) and trains on a mesh over all devices of the slice.
# WORKDIR must be one directory that every worker sees (a Filestore/NFS mount, or a bucket mounted
# with gcsfuse at the same path on every worker): all workers write checkpoint shards there.
#
# Environment: HEPJAX_REMOTE_DIR (checkout on the workers, relative to the home directory,
# default hepjax), HEPJAX_VENV (default hepjax-venv, relative to the home directory),
# GCLOUD (default gcloud), GCLOUD_PROJECT (optional --project).
set -euo pipefail

if [[ $# -lt 4 ]]; then
  echo "usage: bash tpu/run.sh TPU_NAME ZONE CONFIG WORKDIR [--config.key=value ...]" >&2
  exit 2
fi
tpu_name="$1"
zone="$2"
config="$3"
workdir="$4"
shift 4

remote_dir="${HEPJAX_REMOTE_DIR:-hepjax}"
venv="${HEPJAX_VENV:-hepjax-venv}"
gcloud="${GCLOUD:-gcloud}"

# Quote every argument for the remote shell.
train_args=(train "${config}" --workdir "${workdir}" --config.train.num_devices=0 "$@")
printf -v quoted ' %q' "${train_args[@]}"
remote="cd ~/${remote_dir} && ~/${venv}/bin/python -m hepjax.parallel${quoted}"

project_args=()
if [[ -n "${GCLOUD_PROJECT:-}" ]]; then
  project_args=(--project "${GCLOUD_PROJECT}")
fi

exec "${gcloud}" compute tpus tpu-vm ssh "${tpu_name}" --zone="${zone}" "${project_args[@]}" \
  --worker=all --command="${remote}"
