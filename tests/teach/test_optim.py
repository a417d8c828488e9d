"""The written-out optimisers follow optax's trajectories to 1e-10 over 200 steps (float64).

Same MLP (2, 16, 16, 1, tanh), same data, same initial weights; the optax side computes the
loss in jax.numpy and its gradients with jax.grad.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hepjax.teach import MLP, optim
from hepjax.teach.tutorial import bce_loss, make_blobs, make_circles

STEPS = 200
RTOL = 1e-10


def setup(seed=0):
    rng = np.random.default_rng(seed)
    X, y = make_circles(rng, n=64)
    model = MLP((2, 16, 16, 1), rng, activation="tanh")
    return model, X, y


def jax_loss(params, X, y):
    h = jnp.asarray(X)
    n = len(params) // 2
    for k in range(n):
        h = h @ params[2 * k] + params[2 * k + 1]
        if k < n - 1:
            h = jnp.tanh(h)
    return jnp.mean(optax.losses.sigmoid_binary_cross_entropy(h[:, 0], y))


def optax_trajectory(tx, params0, X, y, steps=STEPS):
    """Parameter lists after each step, and the loss before each step."""
    with jax.enable_x64(True):
        params = [jnp.asarray(p, dtype=jnp.float64) for p in params0]
        X, y = jnp.asarray(X, dtype=jnp.float64), jnp.asarray(y, dtype=jnp.float64)
        state = tx.init(params)

        @jax.jit
        def step(params, state):
            loss, g = jax.value_and_grad(jax_loss)(params, X, y)
            updates, state = tx.update(g, state, params)
            return optax.apply_updates(params, updates), state, loss

        traj, losses = [], []
        for _ in range(steps):
            params, state, loss = step(params, state)
            traj.append([np.asarray(p) for p in params])
            losses.append(float(loss))
        return traj, losses


def teach_trajectory(make_opt, model, X, y, steps=STEPS):
    opt = make_opt(model.parameters())
    traj, losses = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = bce_loss(model, X, y)
        loss.backward()
        opt.step()
        traj.append([p.data.copy() for p in model.parameters()])
        losses.append(loss.item())
    return traj, losses


def max_rel_diff(traj_a, traj_b):
    """max over steps and arrays of max|a - b| / max|b|."""
    return max(
        float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
        for step_a, step_b in zip(traj_a, traj_b)
        for a, b in zip(step_a, step_b)
    )


LR, ALPHA = 0.1, 0.9
CASES = {
    "sgd": (lambda ps: optim.SGD(ps, lr=LR), optax.sgd(LR)),
    "momentum": (lambda ps: optim.Momentum(ps, lr=LR, alpha=ALPHA), optax.sgd(LR, momentum=ALPHA)),
    "momentum_ema": (
        lambda ps: optim.MomentumEMA(ps, lr=0.5, beta=0.8),
        optax.sgd(0.5 * (1 - 0.8), momentum=0.8),
    ),
    "adam": (lambda ps: optim.Adam(ps, lr=0.01), optax.adam(0.01)),
    "adam_custom": (
        lambda ps: optim.Adam(ps, lr=0.02, b1=0.8, b2=0.99, eps=1e-6),
        optax.adam(0.02, b1=0.8, b2=0.99, eps=1e-6),
    ),
    "sgd_exponential_decay": (
        lambda ps: optim.SGD(ps, lr=optim.exponential_decay(0.3, tau=50.0)),
        optax.sgd(lambda s: 0.3 * jnp.exp(-s / 50.0)),  # optax schedules get count = 0, 1, ...
    ),
    "sgd_time_decay": (
        lambda ps: optim.SGD(ps, lr=optim.time_decay(0.3, k=0.05)),
        optax.sgd(lambda s: 0.3 / (1.0 + 0.05 * s)),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_trajectory_matches_optax(name):
    make_opt, tx = CASES[name]
    model, X, y = setup()
    params0 = [p.data.copy() for p in model.parameters()]
    ours, our_losses = teach_trajectory(make_opt, model, X, y)
    ref, ref_losses = optax_trajectory(tx, params0, X, y)
    assert max_rel_diff(ours, ref) < RTOL
    np.testing.assert_allclose(our_losses, ref_losses, rtol=RTOL)
    assert our_losses[-1] < 0.7 * our_losses[0]  # it is really training


def test_trajectory_test_can_tell_conventions_apart():
    """Negative control: the EMA form is *not* optax.sgd(lr, momentum=beta) -- a big difference."""
    model, X, y = setup()
    params0 = [p.data.copy() for p in model.parameters()]
    ours, _ = teach_trajectory(lambda ps: optim.MomentumEMA(ps, lr=0.5, beta=0.8), model, X, y, steps=20)
    ref, _ = optax_trajectory(optax.sgd(0.5, momentum=0.8), params0, X, y, steps=20)
    assert max_rel_diff(ours, ref) > 1e-3


def test_momentum_velocity_is_minus_lr_times_optax_trace():
    """Seed-000 v equals -lr * optax's trace t after each step (the docstring's mapping)."""
    model, X, y = setup()
    params0 = [p.data.copy() for p in model.parameters()]
    opt = optim.Momentum(model.parameters(), lr=LR, alpha=ALPHA)
    tx = optax.sgd(LR, momentum=ALPHA)
    with jax.enable_x64(True):
        params = [jnp.asarray(p) for p in params0]
        state = tx.init(params)
        for _ in range(5):
            opt.zero_grad()
            bce_loss(model, X, y).backward()
            opt.step()
            g = jax.grad(jax_loss)(params, jnp.asarray(X), jnp.asarray(y, dtype=jnp.float64))
            updates, state = tx.update(g, state, params)
            params = optax.apply_updates(params, updates)
        trace = state[0].trace
        for v, t in zip(opt.v, trace):
            np.testing.assert_allclose(v, -LR * np.asarray(t), rtol=1e-10, atol=1e-14)


def test_adam_first_step_is_lr_times_sign():
    """With bias correction, Adam's first step is lr * g / (|g| + eps) ~ lr * sign(g)."""
    from hepjax.teach import Tensor

    w = Tensor(np.array([1.0, -2.0, 3.0]))
    opt = optim.Adam([w], lr=0.1)
    (w * np.array([5.0, 0.01, -3.0])).sum().backward()
    opt.step()
    np.testing.assert_allclose(w.data, [1.0 - 0.1, -2.0 - 0.1, 3.0 + 0.1], rtol=1e-6)


def test_zero_grad_and_schedules():
    from hepjax.teach import Tensor

    w = Tensor(np.ones(2))
    opt = optim.SGD([w], lr=optim.step_decay(1.0, lam=0.5, tau=2))
    lrs = []
    for _ in range(5):
        opt.zero_grad()
        w.sum().backward()
        lrs.append(opt.current_lr())
        opt.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]
    np.testing.assert_allclose(w.data, 1.0 - sum(lrs))  # zero_grad kept g = 1 each step
    assert optim.time_decay(2.0, 0.5)(2) == pytest.approx(1.0)
    assert optim.exponential_decay(2.0, 10.0)(10) == pytest.approx(2.0 / np.e)


def test_perceptron_rule_single_update_and_convergence():
    p = optim.Perceptron(2)
    # W = 0, B = 0 predicts 0; a positive example with target 1 moves W towards x.
    err = p.update(np.array([1.0, 2.0]), 1, r=0.5)
    assert err == -1
    np.testing.assert_array_equal(p.W, [0.5, 1.0])
    assert p.B == 0.5
    # now it predicts 1 for a target-0 example: W moves away from it
    err = p.update(np.array([1.0, 0.0]), 0, r=0.5)
    assert err == 1
    np.testing.assert_array_equal(p.W, [0.0, 1.0])
    assert p.B == 0.0
    # linearly separable blobs: converges to zero error
    X, y = make_blobs(np.random.default_rng(3), n=200)
    p = optim.Perceptron(2)
    errors = p.fit(X, y, r=1.0, epochs=50)
    assert errors[0] == 0.5 and errors[-1] == 0.0
    assert np.all(p.predict(X) == y)
