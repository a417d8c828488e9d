"""Fine-tuning: checkpoint loading by path, head replacement, freezing by pattern, body learning
rate (hepjax.train.finetune). Loading a DeepJetFull checkpoint end to end is exercised by
tests/experiments/test_cms_finetune_smoke.py."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hepjax.train import finetune as ft


class _Net(nnx.Module):
    """A small network with a body (two dense layers) and a head ``out``: the optimiser's
    grouping is model-agnostic, and this compiles in a fraction of DeepJetFull's time."""

    def __init__(self, n_out, rngs):
        self.body = nnx.List([nnx.Linear(6, 8, rngs=rngs), nnx.Linear(8, 8, rngs=rngs)])
        self.out = nnx.Linear(8, n_out, rngs=rngs)

    def __call__(self, x):
        for layer in self.body:
            x = jnp.tanh(layer(x))
        return self.out(x)


def _params(m):
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(m, nnx.Param))[0]
    return {ft._path_str(p): np.array(v) for p, v in leaves}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    run = tmp_path_factory.mktemp("pre") / "run"
    m = _Net(4, nnx.Rngs(0))
    step_dir = ft.save_checkpoint(run, m, {"model": "net", "num_outputs": 4, "dims": [6, 8]},
                                  step=7)
    return run, step_dir, _params(m)


def test_loaded_weights_equal_checkpoint_and_head_is_replaced(pretrained):
    run, step_dir, ref = pretrained
    relative = os.path.relpath(step_dir)    # relative to the working directory
    for init_from in (run, run / "checkpoints", step_dir, relative):
        m = _Net(2, nnx.Rngs(1))              # other seed, other head size
        fresh = _params(m)
        rep = ft.load_pretrained(m, init_from, reinit=(r"^out/",))
        got = _params(m)
        assert rep["reinitialised"] == ["out/bias", "out/kernel"]
        assert rep["unused"] == ["out/bias", "out/kernel"]
        assert len(rep["loaded"]) == 4
        for name, v in got.items():
            if name.startswith("out/"):
                assert v.shape[-1] == 2 and np.array_equal(v, fresh[name])
            else:
                assert np.array_equal(v, ref[name]), name          # bit-identical
        assert not np.array_equal(fresh["body/0/kernel"], ref["body/0/kernel"])
    cfg = ft.read_config(run)
    assert cfg["num_outputs"] == 4 and cfg["dims"] == [6, 8]


def test_frozen_bit_identical_unfrozen_change_body_lr_scaled(tmp_path):
    run = tmp_path / "run"
    ft.save_checkpoint(run, _Net(4, nnx.Rngs(0)), {"model": "net"})
    r = np.random.default_rng(0)
    x = jnp.asarray(r.normal(size=(16, 6)), jnp.float32)
    y = jnp.asarray(r.integers(0, 2, 16))

    def loss(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    # one SGD step: frozen unchanged bit for bit; body moves by lr * scale * grad; head by lr * grad
    m = _Net(2, nnx.Rngs(1))
    ft.load_pretrained(m, run, reinit=(r"^out/",))
    before = _params(m)
    lr, scale = 0.1, 0.25
    opt = nnx.Optimizer(m, ft.optimizer(lr, body_lr_scale=scale, freeze=(r"^body/0/",),
                                        base="sgd", check_against=m), wrt=nnx.Param)
    grads = nnx.jit(nnx.grad(loss))(m)
    g = {ft._path_str(p): np.array(v) for p, v in jax.tree_util.tree_flatten_with_path(grads)[0]}
    nnx.jit(lambda o, mm, gr: o.update(mm, gr))(opt, m, grads)
    after = _params(m)
    assert set(before) == {"body/0/kernel", "body/0/bias", "body/1/kernel", "body/1/bias",
                           "out/kernel", "out/bias"}
    for name in before:
        assert np.abs(g[name]).max() > 0, name
        if name.startswith("body/0/"):
            assert np.array_equal(after[name], before[name]), name
        else:
            rate = lr if name.startswith("out/") else lr * scale
            np.testing.assert_allclose(after[name], before[name] - rate * g[name], rtol=1e-5,
                                       atol=1e-7, err_msg=name)
            assert not np.array_equal(after[name], before[name]), name
    # several AdamW steps (weight decay on): the frozen layer stays bit-identical, the rest move
    m2 = _Net(2, nnx.Rngs(1))
    ft.load_pretrained(m2, run, reinit=(r"^out/",))
    b2 = _params(m2)
    opt2 = nnx.Optimizer(m2, ft.optimizer(1e-2, freeze=(r"^body/1/",), weight_decay=1e-2),
                         wrt=nnx.Param)
    step = nnx.jit(lambda o, mm: o.update(mm, nnx.grad(loss)(mm)))
    for _ in range(3):
        step(opt2, m2)
    a2 = _params(m2)
    for name in b2:
        assert np.array_equal(a2[name], b2[name]) == name.startswith("body/1/"), name


def test_labels_and_pattern_errors():
    m = _Net(4, nnx.Rngs(0))
    labels = ft.param_labels(nnx.state(m, nnx.Param), head=(r"^out/",), freeze=(r"^body/1/",))
    flat = {ft._path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(labels)[0]}
    assert flat == {"body/0/bias": "body", "body/0/kernel": "body", "body/1/bias": "frozen",
                    "body/1/kernel": "frozen", "out/bias": "head", "out/kernel": "head"}
    with pytest.raises(ValueError, match="matches no parameter"):
        ft.optimizer(1e-3, freeze=(r"^bdoy/",), check_against=m)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_bad_checkpoint_paths(tmp_path, pretrained):
    run, _, _ = pretrained
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        ft.load_pretrained(_Net(4, nnx.Rngs(0)), tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ft.CheckpointError, match="no checkpoint there"):
        ft.load_pretrained(_Net(4, nnx.Rngs(0)), tmp_path / "empty")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ft.CheckpointError, match="is a file"):
        ft.restore_params(tmp_path / "f.txt")
    # a head of another size without a reinit pattern: the error names the parameter
    with pytest.raises(ValueError, match=r"'out/(bias|kernel)' has shape"):
        ft.load_pretrained(_Net(2, nnx.Rngs(0)), run)
    # a model with another layout: a parameter missing from the checkpoint
    other = _Net(4, nnx.Rngs(0))
    other.extra = nnx.Linear(8, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="no parameter 'extra/"):
        ft.load_pretrained(other, run)
    # a corrupted checkpoint: its data files removed
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    for f in (bad / "checkpoints").rglob("*"):
        if f.is_file() and "d" == f.parent.name:
            f.unlink()
    with pytest.raises(ft.CheckpointError, match="cannot restore"):
        ft.restore_params(bad)


class _BNNet(nnx.Module):
    """A body with batch normalisation and dropout (non-parameter state: running statistics
    and the dropout stream's key) and a head with its own batch normalisation."""

    def __init__(self, n_out, rngs):
        self.body = nnx.Linear(6, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        self.out = nnx.Linear(8, n_out, rngs=rngs)
        self.out_bn = nnx.BatchNorm(n_out, rngs=rngs)

    def __call__(self, x):
        return self.out_bn(self.out(self.drop(jnp.tanh(self.bn(self.body(x))))))


def _stats(m):
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(m, nnx.BatchStat))[0]
    return {ft._path_str(p): np.array(v) for p, v in leaves}


def test_batch_norm_statistics_are_loaded_not_the_dropout_key(tmp_path):
    m = _BNNet(4, nnx.Rngs(0))
    m.train()
    x = jnp.asarray(np.random.default_rng(1).normal(2.0, 3.0, size=(64, 6)), jnp.float32)
    for _ in range(5):                    # running statistics away from (0, 1)
        m(x)
    ref = _stats(m)
    assert set(ref) == {"bn/mean", "bn/var", "out_bn/mean", "out_bn/var"}
    assert np.abs(ref["bn/mean"]).max() > 0.1
    run = tmp_path / "run"
    ft.save_checkpoint(run, m, {"model": "bnnet"})
    fresh = _BNNet(2, nnx.Rngs(5))
    key_before = np.asarray(jax.random.key_data(fresh.drop.rngs.key[...]))
    rep = ft.load_pretrained(fresh, run, reinit=(r"^out/", r"^out_bn/"))
    got = _stats(fresh)
    assert rep["batch_stats_loaded"] == ["bn/mean", "bn/var"]
    assert rep["batch_stats_reinitialised"] == ["out_bn/mean", "out_bn/var"]
    np.testing.assert_array_equal(got["bn/mean"], ref["bn/mean"])
    np.testing.assert_array_equal(got["bn/var"], ref["bn/var"])
    assert (got["out_bn/mean"] == 0).all() and (got["out_bn/var"] == 1).all()
    # the new run keeps its own dropout stream
    np.testing.assert_array_equal(
        np.asarray(jax.random.key_data(fresh.drop.rngs.key[...])), key_before)
    # the loaded network normalises as the pre-trained one: same body outputs in eval mode
    fresh.eval()
    m.eval()
    np.testing.assert_allclose(fresh.bn(fresh.body(x)), m.bn(m.body(x)), rtol=1e-6, atol=1e-6)
    # a statistic missing or with another shape is an error naming it
    stats = ft.restore_batch_stats(run)
    bad = dict(stats, **{"bn/var": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match="'bn/var' has shape"):
        ft.load_pretrained(_BNNet(2, nnx.Rngs(5)), run, reinit=(r"^out",), stored_stats=bad)
    with pytest.raises(ValueError, match="no batch statistic 'bn/var'"):
        ft.load_pretrained(_BNNet(2, nnx.Rngs(5)), run, reinit=(r"^out",),
                           stored_stats={k: v for k, v in stats.items() if k != "bn/var"})
    # a checkpoint without statistics leaves them as initialised, and says so
    rep = ft.load_pretrained(_BNNet(2, nnx.Rngs(5)), run, reinit=(r"^out",), stored_stats={})
    assert rep["batch_stats_loaded"] == [] and len(rep["batch_stats_reinitialised"]) == 4
