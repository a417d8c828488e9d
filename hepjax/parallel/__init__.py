"""Meshes, named shardings and JAX's distributed runtime (the teaching pmap step lives in
``hepjax.train.step.pmap_train_step``)."""
from hepjax.parallel import distributed
from hepjax.parallel.distributed import ClusterSpec, initialize, is_main_process
from hepjax.parallel.mesh import (DATA, MODEL, data_sharded, data_size, make_mesh, process_rows,
                                  replicate, replicated, shard_batch, shard_global_batch)

__all__ = ["DATA", "MODEL", "ClusterSpec", "data_sharded", "data_size", "distributed", "initialize",
           "is_main_process", "make_mesh", "process_rows", "replicate", "replicated", "shard_batch",
           "shard_global_batch"]
