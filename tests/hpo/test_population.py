"""The vmapped population: member k of one vmapped optimiser equals the ordinary optimiser built
with member k's learning rate and weight decay (to float32 rounding), for every schedule shape
the population accepts; unsupported settings are refused."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax import hpo, optim

LRS = [1e-3, 3e-3, 2e-2]
WDS = [0.0, 1e-2, 1e-1]


def _params(key):
    a, b = jax.random.split(key)
    return {"w": jax.random.normal(a, (3, 4)), "b": jax.random.normal(b, (4,))}


@pytest.mark.parametrize("name,schedule", [
    ("adamw", {"name": "warmup_cosine", "warmup_steps": 2}),
    ("adamw", {"name": "step", "decay_factor": 0.5, "step_size": 2}),
    ("momentum", {"name": "constant"})])
def test_member_k_equals_the_optimizer_with_its_hyperparameters(name, schedule):
    cfg = {"name": name, "learning_rate": 1.0, "weight_decay": 0.0, "clip_norm": 1.0,
           "schedule": schedule}
    steps = 6
    pop = hpo.population_optimizer(cfg, total_steps=steps, steps_per_epoch=3)
    params0 = _params(jax.random.key(0))
    grads = [_params(jax.random.key(i + 1)) for i in range(steps)]

    def run_population():
        stacked = jax.tree.map(lambda x: jnp.stack([x] * len(LRS)), params0)
        state = jax.vmap(pop.init)(stacked)
        state = dict(state, lr=jnp.asarray(LRS, jnp.float32), wd=jnp.asarray(WDS, jnp.float32))

        def step(p, s, g):
            u, s = pop.update(g, s, p)
            return jax.tree.map(lambda a, b: a + b, p, u), s

        step = jax.jit(jax.vmap(step, in_axes=(0, 0, None)))
        p = stacked
        for g in grads:
            p, state = step(p, state, g)
        return p

    got = run_population()
    for k, (lr, wd) in enumerate(zip(LRS, WDS)):
        tx = optim.make_optimizer(dict(cfg, learning_rate=lr, weight_decay=wd), total_steps=steps,
                                  steps_per_epoch=3)
        p, s = params0, tx.init(params0)

        @jax.jit
        def one(p, s, g, tx=tx):
            u, s = tx.update(g, s, p)
            return jax.tree.map(lambda a, b: a + b, p, u), s

        for g in grads:
            p, s = one(p, s, g)
        for leaf in ("w", "b"):
            np.testing.assert_allclose(got[leaf][k], p[leaf], rtol=2e-6, atol=2e-7)
        # the members really differ (a test that could not fail would not show anything)
        if k:
            assert np.abs(got["w"][k] - got["w"][0]).max() > 1e-4


def test_population_refuses_nonlinear_settings():
    with pytest.raises(ValueError, match="not linear"):
        hpo.population_optimizer({"name": "ranger", "learning_rate": 1e-3}, 10, 5)
    with pytest.raises(ValueError, match="init_value/end_value"):
        hpo.population_optimizer({"name": "adamw", "learning_rate": 1e-3, "weight_decay": 0.0,
                                  "schedule": {"name": "warmup_cosine", "warmup_steps": 1,
                                               "end_value": 1e-5}}, 10, 5)
