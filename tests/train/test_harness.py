"""The training harness against references: 1 vs 8 devices, pmap vs jit, vmap ensembles vs
separate runs, one compilation, the NaN guard, bit-identical reruns, early stopping."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hepjax import data as data_lib
from hepjax.nn import MLP

from hepjax.train import experiment, loop, state as state_lib, step as step_lib, tasks
from hepjax.train.logging import read_metrics

from .helpers import leaves_equal, max_rel_diff, smoke_config


def _mlp(rngs, dropout=0.0):
    return MLP(10, (16, 16), 1, dropout=dropout, rngs=rngs)


def _batch(n=64, seed=0):
    data = data_lib.dijet.generate(n, seed)
    features = (data["features"] - data["features"].mean(0)) / data["features"].std(0)
    return {"features": features, "label": data["label"], "weight": np.ones(n, np.float32)}


def _final_params(config, workdir):
    experiment.train(config, workdir, progress=False)
    ckpt = loop.Checkpointer(workdir)
    step = ckpt.latest_step()
    restored = ckpt._last.restore(step)
    ckpt.close()
    return restored["state"]["params"]


def test_eight_devices_match_one(tmp_path):
    assert jax.device_count() == 8, "tests/conftest.py should fake 8 CPU devices"
    one = _final_params(smoke_config(num_devices=1, num_steps=30), tmp_path / "one")
    eight = _final_params(smoke_config(num_devices=8, num_steps=30), tmp_path / "eight")
    assert max_rel_diff(eight, one) < 1e-4
    assert not leaves_equal(one, jax.tree.map(lambda x: x * 0, one))


def test_reruns_are_bit_identical(tmp_path):
    a = _final_params(smoke_config(num_steps=30), tmp_path / "a")
    b = _final_params(smoke_config(num_steps=30), tmp_path / "b")
    assert leaves_equal(a, b)
    config = smoke_config(num_steps=30)
    config.seed = 1
    c = _final_params(config, tmp_path / "c")
    assert not leaves_equal(a, c)


def test_step_compiles_once():
    traces = []
    task = tasks.binary_classification()

    def counting_loss(model, batch, key):
        traces.append(1)
        return task.loss_fn(model, batch, key)

    optimizer = optax.adam(1e-3)
    graphdefs, state = state_lib.init_state(lambda r: _mlp(r, 0.2), optimizer, jax.random.key(0))
    train_step, _ = step_lib.compile_steps(graphdefs, task._replace(loss_fn=counting_loss), optimizer)
    for i in range(5):
        state, metrics = train_step(state, _batch(seed=i))
    assert len(traces) == 1 and int(state.step) == 5


def test_pmap_step_matches_jit_step():
    optimizer = optax.sgd(0.1, momentum=0.9)
    task = tasks.binary_classification()
    graphdefs, state = state_lib.init_state(_mlp, optimizer, jax.random.key(1))
    jit_step, _ = step_lib.compile_steps(graphdefs, task, optimizer)
    pmap_step = step_lib.pmap_train_step(graphdefs, task.loss_fn, optimizer)
    n = jax.device_count()
    pstate = jax.tree.map(lambda x: jnp.stack([x] * n), state)  # one replica per device
    jstate = state
    for i in range(4):
        batch = _batch(64, seed=i)
        jstate, jmetrics = jit_step(jstate, batch)
        pstate, pmetrics = pmap_step(pstate, jax.tree.map(lambda x: x.reshape(n, -1, *x.shape[1:]), batch))
    unreplicated = jax.tree.map(lambda x: x[0], pstate.params)
    assert max_rel_diff(unreplicated, jstate.params) < 1e-5
    np.testing.assert_allclose(pmetrics["loss"][0], jmetrics["loss"], rtol=1e-5)


def test_vmapped_ensemble_matches_separate_trainings():
    optimizer = optax.adam(1e-2)
    task = tasks.binary_classification()
    keys = jax.random.split(jax.random.key(7), 3)
    graphdefs, ens = state_lib.init_ensemble(lambda r: _mlp(r, 0.3), optimizer, keys)
    ens_step, ens_eval = step_lib.compile_steps(graphdefs, task, optimizer, ensemble=True)
    singles = [state_lib.init_state(lambda r: _mlp(r, 0.3), optimizer, k)[1] for k in keys]
    single_step, _ = step_lib.compile_steps(graphdefs, task, optimizer)
    for i in range(5):
        batch = _batch(seed=i)
        ens, _ = ens_step(ens, batch)
        singles = [single_step(s, batch)[0] for s in singles]
    for k, single in enumerate(singles):
        assert max_rel_diff(jax.tree.map(lambda x: x[k], ens.params), single.params) < 1e-5
    members = [jax.tree.map(lambda x: x[k], ens.params) for k in range(3)]
    assert not leaves_equal(members[0], members[1])  # independently seeded


def test_ensemble_run_reports_member_spread_and_ensembles(tmp_path):
    result = experiment.train(smoke_config(ensemble_size=3, num_steps=20), tmp_path, progress=False)
    for name in ("auc", "auc_std", "mean_ensemble_auc", "median_ensemble_auc"):
        assert name in result
    assert 0.5 < result["auc"] <= 1.0 and result["auc_std"] > 0


def test_nan_guard_names_the_step(tmp_path):
    config = smoke_config(num_steps=20, log_every=5)
    config.optimizer.learning_rate = 1e30
    config.optimizer.clip_norm = 0.0
    with pytest.raises(loop.NonFiniteError, match=r"training step \d+: .*NaN/Inf"):
        experiment.train(config, tmp_path, progress=False)


def test_early_stopping_stops_and_restores_best(tmp_path):
    config = smoke_config(num_steps=400, eval_every=10, checkpoint_every=10)
    config.train.early_stopping.patience = 2
    config.train.early_stopping.min_delta = 10.0  # nothing after the first evaluation improves by 10
    experiment.train(config, tmp_path, progress=False)
    stop = read_metrics(tmp_path, "early_stop")
    assert stop and stop[0]["step"] == 30 and stop[0]["best_step"] == 10
    evaluated = experiment.evaluate_run(tmp_path)
    assert evaluated["checkpoint_step"] == 10


def test_run_directory_records(tmp_path):
    import json
    experiment.train(smoke_config(num_steps=20), tmp_path, progress=False)
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["seed"] == 0 and info["versions"]["jax"] == jax.__version__
    for name in ("flax", "optax", "jaxlib"):
        assert info["versions"][name] != "not installed"
    assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == "mlp"
    train = read_metrics(tmp_path, "train")
    assert [r["step"] for r in train] == [10, 20] and all(r["examples_per_s"] > 0 for r in train)
    assert (tmp_path / "preprocessing.json").exists()


def test_tensorboard_logging(tmp_path):
    config = smoke_config(num_steps=20, tensorboard=True)
    experiment.train(config, tmp_path, progress=False)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
