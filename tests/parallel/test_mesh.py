"""Global meshes, batch placement and checkpoints restored onto a different device count
(single process, 8 fake CPU devices)."""
import jax
import numpy as np
import optax
import pytest

from hepjax.nn import MLP
from hepjax.parallel import (data_sharded, make_mesh, process_rows, replicate, shard_batch,
                             shard_global_batch)
from hepjax.train import state as state_lib
from hepjax.train.checkpoint import Checkpointer


def test_mesh_shapes_order_and_errors():
    mesh = make_mesh()
    assert mesh.shape == {"data": 8, "model": 1}
    assert [d.id for d in mesh.devices.ravel()] == sorted(d.id for d in jax.devices())
    assert make_mesh(4, model_parallel=2).shape == {"data": 2, "model": 2}
    with pytest.raises(ValueError, match="asked for 16 devices"):
        make_mesh(16)
    with pytest.raises(ValueError, match="groups of 3"):
        make_mesh(8, model_parallel=3)
    assert process_rows(12) == slice(0, 12)


def test_global_batch_placement_keeps_rows_in_order():
    mesh = make_mesh(8)
    batch = {"features": np.arange(32 * 3, dtype=np.float32).reshape(32, 3), "label": np.arange(32)}
    placed = shard_global_batch(batch, mesh)
    assert placed["features"].sharding == data_sharded(mesh)
    for shard in placed["features"].addressable_shards:  # device k holds rows [4k, 4k + 4)
        k = list(mesh.devices.ravel()).index(shard.device)
        np.testing.assert_array_equal(np.asarray(shard.data), batch["features"][4 * k:4 * k + 4])
    np.testing.assert_array_equal(np.asarray(placed["label"]), batch["label"])
    np.testing.assert_array_equal(np.asarray(shard_batch(batch, mesh)["features"]), batch["features"])
    with pytest.raises(ValueError, match="divisible by 8"):
        shard_global_batch({"x": np.zeros((12, 2))}, mesh)


def test_checkpoint_restores_onto_another_device_count(tmp_path):
    optimizer = optax.adam(1e-2)
    _, state = state_lib.init_state(lambda r: MLP(4, (8,), 1, dropout=0.1, rngs=r), optimizer,
                                    jax.random.key(5))
    state = state._replace(params=jax.tree.map(lambda x: x + 0.5, state.params))
    on_eight = replicate(state, make_mesh(8))
    ckpt = Checkpointer(tmp_path)
    ckpt.save(3, on_eight, {"step": 3})
    for mesh in (make_mesh(1), make_mesh(2), make_mesh(4, model_parallel=2)):
        _, like = state_lib.init_state(lambda r: MLP(4, (8,), 1, dropout=0.1, rngs=r), optimizer,
                                       jax.random.key(0))  # another seed: values come from disk
        restored, meta = ckpt.restore_latest(replicate(like, mesh))
        assert meta == {"step": 3}
        for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
            assert got.sharding.mesh.shape == mesh.shape  # the target's placement
            if jax.dtypes.issubdtype(want.dtype, jax.dtypes.prng_key):
                got, want = jax.random.key_data(got), jax.random.key_data(want)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    ckpt.close()
