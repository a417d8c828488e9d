"""Optimisers vs hand-written numpy update rules; schedules vs closed forms; clipping; weight
decay masks; early stopping on scripted metric sequences."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from hepjax import optim

STEPS = 5
RNG = np.random.default_rng(0)
P0 = {"w": RNG.normal(size=(3, 2)), "b": RNG.normal(size=(2,))}
GRADS = [{"w": RNG.normal(size=(3, 2)), "b": RNG.normal(size=(2,))} for _ in range(STEPS)]


def _run_optax(config, grads=GRADS, params=P0, **kw):
    tx = optim.make_optimizer(config, **kw)
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    state = tx.init(p)
    for g in grads:
        upd, state = tx.update(jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), g), state, p)
        p = optax.apply_updates(p, upd)
    return jax.tree.map(np.asarray, p)


def _run_numpy(direction, params=P0, grads=GRADS):
    """direction(state, key, g, w, t) -> (state, update) applied as w += update, t = 1, 2, ..."""
    p = {k: v.copy() for k, v in params.items()}
    states = {k: {} for k in p}
    for t, g in enumerate(grads, start=1):
        for k in p:
            states[k], upd = direction(states[k], k, g[k], p[k], t)
            p[k] = p[k] + upd
    return p


def _close(a, b, rtol=1e-5):
    for k in b:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-6)


def test_sgd():
    lr = 0.1
    ref = _run_numpy(lambda s, k, g, w, t: (s, -lr * g))
    _close(_run_optax({"name": "sgd", "learning_rate": lr}), ref)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum(nesterov):
    lr, mu = 0.05, 0.9

    def rule(s, k, g, w, t):
        v = mu * s.get("v", 0.0) + g
        return {"v": v}, -lr * (g + mu * v if nesterov else v)

    got = _run_optax({"name": "momentum", "learning_rate": lr, "momentum": mu,
                      "nesterov": nesterov})
    _close(got, _run_numpy(rule))
    if nesterov:  # Nesterov really differs from heavy-ball
        heavy = _run_optax({"name": "momentum", "learning_rate": lr, "momentum": mu})
        assert not np.allclose(got["w"], heavy["w"], atol=1e-4)


def _adam_rule(lr, b1, b2, eps, wd=0.0, decay_keys=("w",)):
    def rule(s, k, g, w, t):
        m = b1 * s.get("m", 0.0) + (1 - b1) * g
        v = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        d = mhat / (np.sqrt(vhat) + eps)
        if k in decay_keys:
            d = d + wd * w
        return {"m": m, "v": v}, -lr * d
    return rule


def test_adam_bias_correction():
    cfg = {"name": "adam", "learning_rate": 0.01, "b1": 0.8, "b2": 0.95, "eps": 1e-7}
    got = _run_optax(cfg)
    _close(got, _run_numpy(_adam_rule(0.01, 0.8, 0.95, 1e-7)))
    # first step of bias-corrected Adam is ~ -lr * sign(g)
    one = _run_optax(cfg, grads=GRADS[:1])
    np.testing.assert_allclose(one["w"] - P0["w"], -0.01 * np.sign(GRADS[0]["w"]), rtol=1e-4)


def test_adamw_decoupled_decay_and_mask():
    wd = 0.1
    cfg = {"name": "adamw", "learning_rate": 0.01, "weight_decay": wd}
    got = _run_optax(cfg)
    _close(got, _run_numpy(_adam_rule(0.01, 0.9, 0.999, 1e-8, wd=wd)))
    # zero gradients: kernels shrink by (1 - lr wd) per step, biases untouched (default mask)
    zeros = [jax.tree.map(np.zeros_like, g) for g in GRADS]
    got = _run_optax(cfg, grads=zeros)
    np.testing.assert_allclose(got["w"], P0["w"] * (1 - 0.01 * wd) ** STEPS, rtol=1e-5)
    np.testing.assert_array_equal(got["b"], P0["b"].astype(np.float32))
    # explicit mask: decay everything
    got = _run_optax(cfg, grads=zeros, weight_decay_mask=lambda p: jax.tree.map(lambda _: True, p))
    np.testing.assert_allclose(got["b"], P0["b"] * (1 - 0.01 * wd) ** STEPS, rtol=1e-5)


def test_weight_decay_mask_on_nnx_state():
    from hepjax import nn
    model = nn.MLP(3, [4], 2, norm="layer", rngs=nnx.Rngs(0))
    _, params, _ = nnx.split(model, nnx.Param, ...)
    mask = optim.default_weight_decay_mask(params)
    paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(params)]
    flat = dict(zip(paths, jax.tree.leaves(mask)))
    assert sum(flat.values()) == 2  # the two kernels
    assert all(not v for k, v in flat.items() if "bias" in k or "scale" in k)
    tx = optim.make_optimizer({"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.5})
    state = tx.init(params)
    upd, _ = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    new = optax.apply_updates(params, upd)
    for (path, old), nw in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(new)):
        if old.ndim > 1:
            np.testing.assert_allclose(nw, old * (1 - 0.05), rtol=1e-6)
        else:
            np.testing.assert_array_equal(nw, old)


def test_sgd_weight_decay_and_l2():
    lr, wd = 0.1, 0.01
    ref = _run_numpy(lambda s, k, g, w, t: (s, -lr * (g + (wd * w if k == "w" else 0))))
    _close(_run_optax({"name": "sgd", "learning_rate": lr, "weight_decay": wd}), ref)
    _close(_run_optax({"name": "sgd", "learning_rate": lr, "l2": wd}), ref)
    # l2 is coupled: it passes through Adam's normalisation, unlike adamw's decoupled decay
    l2 = _run_optax({"name": "adam", "learning_rate": 0.01, "l2": 0.5})
    dec = _run_optax({"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.5})
    assert not np.allclose(l2["w"], dec["w"], atol=1e-4)
    pen = optim.l2_penalty(P0, 0.3)
    np.testing.assert_allclose(pen, 0.15 * np.sum(P0["w"] ** 2), rtol=1e-6)
    g = jax.grad(optim.l2_penalty)(P0, 0.3)
    np.testing.assert_allclose(g["w"], 0.3 * P0["w"], rtol=1e-6)
    np.testing.assert_array_equal(g["b"], 0.0)


@pytest.mark.parametrize("c", [0.5, 100.0])
def test_clip_by_global_norm(c):
    g = GRADS[0]
    norm = math.sqrt(sum(np.sum(v ** 2) for v in g.values()))
    scale = min(1.0, c / norm)
    ref = {k: P0[k] - 0.1 * g[k] * scale for k in g}
    _close(_run_optax({"name": "sgd", "learning_rate": 0.1, "clip_norm": c}, grads=[g]), ref)


def test_clip_by_value():
    g = GRADS[0]
    ref = {k: P0[k] - 0.1 * np.clip(g[k], -0.3, 0.3) for k in g}
    _close(_run_optax({"name": "sgd", "learning_rate": 0.1, "clip_value": 0.3}, grads=[g]), ref)


T = np.array([0, 1, 2, 5, 10, 37, 99])
L0 = 0.2


@pytest.mark.parametrize("cfg,closed", [
    (None, lambda t: L0 + 0 * t),
    ({"name": "constant"}, lambda t: L0 + 0 * t),
    ({"name": "time_based", "decay_rate": 0.3}, lambda t: L0 / (1 + 0.3 * t)),
    ({"name": "step", "decay_factor": 0.5, "step_size": 10}, lambda t: L0 * 0.5 ** (t // 10)),
    ({"name": "exponential", "tau": 20.0}, lambda t: L0 * np.exp(-t / 20.0)),
    ({"name": "warmup_cosine", "warmup_steps": 10, "decay_steps": 100, "end_value": 0.01},
     lambda t: np.where(t < 10, L0 * t / 10,
                        0.01 + (L0 - 0.01) * 0.5 * (1 + np.cos(np.pi * (t - 10) / 90)))),
])
def test_schedules_closed_form(cfg, closed):
    sched = optim.make_schedule(cfg, learning_rate=L0)
    got = np.array([float(sched(int(t))) for t in T])
    np.testing.assert_allclose(got, closed(T.astype(float)), rtol=1e-5, atol=1e-8)
    jitted = np.asarray(jax.jit(jax.vmap(sched))(jnp.asarray(T)))
    np.testing.assert_allclose(jitted, got, rtol=1e-6)


def test_schedule_drives_sgd_from_step_zero():
    k = 0.5
    cfg = {"name": "sgd", "learning_rate": 0.1, "schedule": {"name": "time_based",
                                                               "decay_rate": k}}
    ref = _run_numpy(lambda s, key, g, w, t: (s, -0.1 / (1 + k * (t - 1)) * g))
    _close(_run_optax(cfg), ref)


def test_warmup_cosine_uses_total_steps_and_configdict():
    cfg = ml_collections.ConfigDict({"name": "adamw", "learning_rate": 1e-3, "weight_decay": 1e-4,
                                     "schedule": {"name": "warmup_cosine", "warmup_steps": 5}})
    with pytest.raises(ValueError, match="decay_steps"):
        optim.make_optimizer(cfg)
    tx = optim.make_optimizer(cfg, total_steps=50)
    assert isinstance(tx, optax.GradientTransformation)
    sched = optim.make_schedule(cfg.schedule, 1e-3, total_steps=50)
    np.testing.assert_allclose(float(sched(5)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(sched(50)), 0.0, atol=1e-9)


def test_errors_list_valid_names():
    with pytest.raises(ValueError, match=r"valid names are \['sgd', 'momentum', 'adam', 'adamw', 'ranger'\]"):
        optim.make_optimizer({"name": "rmsprop", "learning_rate": 0.1})
    with pytest.raises(ValueError, match="valid names are.*exponential"):
        optim.make_schedule({"name": "cosine"}, 0.1)
    with pytest.raises(ValueError, match="unknown fields.*lr"):
        optim.make_optimizer({"name": "sgd", "lr": 0.1})
    with pytest.raises(ValueError, match="unknown fields.*decay"):
        optim.make_schedule({"name": "step", "decay": 0.5}, 0.1)
    with pytest.raises(ValueError, match="adamw"):
        optim.make_optimizer({"name": "adam", "learning_rate": 0.1, "weight_decay": 0.1})
    with pytest.raises(ValueError, match="missing required field 'learning_rate'"):
        optim.make_optimizer({"name": "sgd"})
    with pytest.raises(ValueError, match="'momentum' only applies"):
        optim.make_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9})


def _run_es(es, values):
    state = es.init()
    log = []
    for step, v in enumerate(values):
        state, improved = es.update(state, v, step)
        log.append((improved, state.should_stop))
    return state, log


def test_early_stopping_min_patience():
    es = optim.early_stopping(patience=2)
    state = es.init()
    assert isinstance(state, optim.EarlyStoppingState) and state.best == math.inf
    state, log = _run_es(es, [1.0, 0.8, 0.9, 0.7, 0.75, 0.71, 0.6])
    assert [i for i, _ in log] == [True, True, False, True, False, False, True]
    assert [s for _, s in log] == [False, False, False, False, False, True, False]
    assert state.best == 0.6 and state.best_step == 6 and state.bad_evals == 0


def test_early_stopping_min_delta_and_nan():
    es = optim.early_stopping(patience=3, min_delta=0.05)
    state, log = _run_es(es, [1.0, 0.97, 0.96, float("nan")])
    assert [i for i, _ in log] == [True, False, False, False]  # 0.97, 0.96 within min_delta
    assert state.should_stop and state.best == 1.0 and state.best_step == 0
    assert state.bad_evals == 3


def test_early_stopping_max_mode():
    es = optim.early_stopping(patience=1, min_delta=0.01, mode="max")
    assert es.init().best == -math.inf
    state, log = _run_es(es, [0.80, 0.85, 0.855])
    assert [i for i, _ in log] == [True, True, False]
    assert state.should_stop and state.best == 0.85 and state.best_step == 1
    with pytest.raises(ValueError, match="mode"):
        optim.early_stopping(3, mode="maximum")


# ---------------------------------------------------------------------------------------------
# Ranger (RAdam + Lookahead) and weaver's flat+decay schedule
# ---------------------------------------------------------------------------------------------


def test_ranger_is_radam_inside_lookahead_hand_loop():
    from hepjax import optim as optim_lib
    with jax.enable_x64(True):
        tx = optim_lib.make_optimizer({"name": "ranger", "learning_rate": 0.1})
        inner = optax.chain(optax.scale_by_radam(b1=0.95, b2=0.999, eps=1e-5),
                            optax.scale_by_learning_rate(0.1))
        w = jnp.array([1.0, -2.0, 3.0])
        state = tx.init(w)
        fast = slow = w
        inner_state = inner.init(w)
        for t in range(1, 25):
            update, state = tx.update(2 * w, state, w)
            w = w + update
            inner_update, inner_state = inner.update(2 * fast, inner_state, fast)
            fast = fast + inner_update
            if t % 6 == 0:  # slow weights pulled halfway to the fast ones, fast reset to slow
                slow = slow + 0.5 * (fast - slow)
                fast = slow
            np.testing.assert_allclose(w, fast, rtol=1e-12)
        assert not np.allclose(w, [1.0, -2.0, 3.0])


def test_flat_decay_schedule_matches_weaver():
    from hepjax import optim as optim_lib
    # 20 epochs of 100 steps, the epoch length from the run's resolved spec (no copy in the config)
    schedule = optim_lib.make_schedule({"name": "flat_decay"}, 1e-3, total_steps=2000,
                                       steps_per_epoch=100)
    gamma = 0.01 ** (1 / 6)  # 6 = int(0.3 * 20) decay epochs
    for step, factor in ((0, 1.0), (1399, 1.0), (1400, gamma), (1650, gamma**3), (1999, gamma**6)):
        np.testing.assert_allclose(float(schedule(step)), 1e-3 * factor, rtol=1e-6)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        optim_lib.make_schedule({"name": "flat_decay"}, 1e-3, total_steps=2000)
    with pytest.raises(ValueError, match="unknown fields"):   # epochs are the run's, not a copy
        optim_lib.make_schedule({"name": "flat_decay", "num_epochs": 20}, 1e-3, total_steps=2000,
                                steps_per_epoch=100)


def test_learning_rate_is_injected_and_readable_at_every_step():
    """make_optimizer's chain carries the learning rate as an injected hyperparameter: after each
    update, current_learning_rate is the scheduled rate that update applied (and with Ranger's
    lookahead wrapper around the chain too)."""
    params = {"w": jnp.ones(3)}
    for name, extra in (("adamw", {"weight_decay": 0.1}), ("ranger", {})):
        cfg = {"name": name, "learning_rate": 0.1,
               "schedule": {"name": "warmup_cosine", "warmup_steps": 3}, **extra}
        tx = optim.make_optimizer(cfg, total_steps=10)
        schedule = optim.make_schedule(cfg["schedule"], 0.1, total_steps=10)
        state = tx.init(params)
        for t in range(6):
            _, state = tx.update({"w": jnp.full(3, 0.5)}, state, params)
            np.testing.assert_allclose(optim.current_learning_rate(state), schedule(t), rtol=1e-6)
    assert optim.current_learning_rate(optax.sgd(0.1).init(params)) is None


def test_registries_build_every_entry():
    """Every registered optimiser and schedule builds from its name (no per-name branches)."""
    for name, entry in optim.OPTIMIZERS.items():
        cfg = {"name": name, "learning_rate": 0.01}
        if name == "adamw":
            cfg["weight_decay"] = 1e-4
        tx = optim.make_optimizer(cfg, total_steps=20)
        state = tx.init({"w": jnp.ones(2)})
        updates, _ = tx.update({"w": jnp.ones(2)}, state, {"w": jnp.ones(2)})
        assert np.all(np.isfinite(np.asarray(updates["w"])))
    required = {"time_based": {"decay_rate": 0.1}, "step": {"decay_factor": 0.5, "step_size": 5},
                "exponential": {"tau": 10.0}, "warmup_cosine": {"warmup_steps": 2},
                }
    for name in optim.SCHEDULES:
        schedule = optim.make_schedule({"name": name, **required.get(name, {})}, 0.01, total_steps=20,
                                       steps_per_epoch=5)
        assert np.isfinite(float(schedule(3)))


def test_warmup_in_epochs_reads_the_run_epoch_length():
    """warmup_epochs x the run's steps_per_epoch == the same warm-up given in steps; giving
    both, or epochs without the run's epoch length, is refused."""
    by_steps = optim.make_schedule({"name": "warmup_cosine", "warmup_steps": 25}, 1.0, total_steps=100)
    by_epochs = optim.make_schedule({"name": "warmup_cosine", "warmup_epochs": 2.5}, 1.0,
                                    total_steps=100, steps_per_epoch=10)
    t = np.arange(100)
    np.testing.assert_array_equal(np.asarray(by_steps(t)), np.asarray(by_epochs(t)))
    with pytest.raises(ValueError, match="give warmup_steps or warmup_epochs"):
        optim.make_schedule({"name": "warmup_cosine", "warmup_steps": 5, "warmup_epochs": 1.0}, 1.0,
                            total_steps=100, steps_per_epoch=10)
    with pytest.raises(ValueError, match="needs the run's steps_per_epoch"):
        optim.make_schedule({"name": "warmup_cosine", "warmup_epochs": 1.0}, 1.0, total_steps=100)
