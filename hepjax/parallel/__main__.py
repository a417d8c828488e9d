"""``python -m hepjax.parallel train CONFIG --workdir DIR [--config.x=y ...]``: the ``hepjax``
command joined to JAX's distributed runtime, i.e. ``hepjax --distributed ...`` (``hepjax.cli``
holds the entry point; this name stays for job scripts). See ``tpu/README.md``.
"""
import sys

if __name__ == "__main__":
    from hepjax import cli

    sys.exit(cli.entry(distributed=True))
