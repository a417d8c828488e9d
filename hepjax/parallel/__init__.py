"""Meshes, named shardings, the teaching pmap step, and the distributed runtime."""
from hepjax.parallel.mesh import (DATA, MODEL, data_sharded, data_size, make_mesh, replicated,
                                  shard_batch)

__all__ = ["DATA", "MODEL", "data_sharded", "data_size", "make_mesh", "replicated", "shard_batch"]
