"""``python -m hepjax.parallel train CONFIG --workdir DIR [--config.x=y ...]``

The ``hepjax`` command run under JAX's distributed runtime: every process of the job (each
TPU-VM worker, each SLURM task) runs this same command; :func:`hepjax.parallel.distributed.initialize`
reads how to join the job from the environment before anything touches a device, then the
arguments go to ``hepjax.cli.main`` unchanged. With no cluster in the environment it is plain
``hepjax``. Multi-process runs need ``--config.train.num_devices=0`` (a mesh over all devices).
"""
import sys

from hepjax.parallel import distributed


def main(argv=None) -> int:
    spec = distributed.initialize()
    if spec.distributed:
        print(f"hepjax: joined the {spec.source} job: {distributed.describe()}", file=sys.stderr,
              flush=True)
    from hepjax import cli

    return cli.main(argv)


if __name__ == "__main__":
    from hepjax import runtime

    runtime.reexec_with_tuned_allocator()
    sys.exit(main())
