"""Optimisers, learning-rate schedules, gradient clipping, weight decay and early stopping.

`make_optimizer(config)` turns a small config (dict or ml_collections.ConfigDict) into an
`optax.GradientTransformation` built from small optax pieces: the optimiser's direction from
the `OPTIMIZERS` registry (name -> `Optimizer`), the learning rate from the `SCHEDULES` registry
(name -> builder), combined with `optax.chain`; the learning rate enters through
`optax.inject_hyperparams`, so its current value is in the optimiser state
(`current_learning_rate`) and the training loop logs it:

    {'name': 'adamw', 'learning_rate': 1e-3,
     'schedule': {'name': 'warmup_cosine', 'warmup_steps': 100},   # optional, default constant
     'weight_decay': 1e-4, 'clip_norm': 1.0,                        # optional
     'b1': 0.9, 'b2': 0.999, 'eps': 1e-8}                           # adam/adamw
    {'name': 'momentum', 'learning_rate': 0.1, 'momentum': 0.9, 'nesterov': True}

The chain applied to the raw gradient g of the loss, in order:
  1. 'l2' (coupled L2 penalty):  g <- g + l2 * w        (= gradient of l2/2 * |w|^2, masked)
  2. 'clip_value':               g <- clip(g, -clip_value, clip_value) elementwise
  3. 'clip_norm':                g <- g * min(1, clip_norm / ||g||_global)
  4. the optimiser direction d (sgd: g; momentum: heavy-ball / Nesterov trace; adam: bias-
     corrected m_hat / (sqrt(v_hat) + eps))
  5. 'weight_decay' (decoupled, masked): d <- d + weight_decay * w   (sgd, momentum, adamw)
  6. update = -lr(t) * d
so AdamW follows the optax / PyTorch convention w <- w - lr(t) (m_hat/(sqrt(v_hat)+eps) + wd w):
decay is decoupled from the adaptive scaling but multiplied by the (scheduled) learning rate.

Weight-decay masks: by default only parameters with ndim > 1 (kernels) are decayed; biases and
normalisation scales/offsets (ndim <= 1) are not (`default_weight_decay_mask`).

Early stopping is an (init, update) pair with a NamedTuple state, run on the host.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "make_optimizer", "make_schedule", "current_learning_rate", "default_weight_decay_mask",
    "l2_penalty", "Optimizer", "OPTIMIZERS", "SCHEDULES", "EarlyStoppingState", "EarlyStopping", "early_stopping",
]

_COMMON_KEYS = {"name", "learning_rate", "schedule", "weight_decay", "clip_norm", "clip_value",
                "l2"}


class Optimizer(NamedTuple):
    """A registry entry: ``direction(cfg)`` -> the optax transformation giving the update
    direction d (step 4 of the module docstring), the extra fields it reads, whether it takes
    decoupled ``weight_decay``, and an optional ``wrap(chain, cfg)`` around the whole chain."""
    direction: Callable[[dict], optax.GradientTransformation]
    fields: tuple[str, ...] = ()
    decoupled_decay: bool = True
    wrap: Callable[[optax.GradientTransformation, dict], optax.GradientTransformation] | None = None


def _adam(cfg: dict) -> optax.GradientTransformation:
    return optax.scale_by_adam(b1=float(cfg.get("b1", 0.9)), b2=float(cfg.get("b2", 0.999)),
                               eps=float(cfg.get("eps", 1e-8)))


def _radam(cfg: dict) -> optax.GradientTransformation:
    # weaver-core's Ranger defaults: b1 = 0.95, eps = 1e-5
    return optax.scale_by_radam(b1=float(cfg.get("b1", 0.95)), b2=float(cfg.get("b2", 0.999)),
                                eps=float(cfg.get("eps", 1e-5)))


def _lookahead(chain: optax.GradientTransformation, cfg: dict) -> optax.GradientTransformation:
    return lookahead(chain, int(cfg.get("lookahead_steps", 6)), float(cfg.get("lookahead_alpha", 0.5)))


# name -> Optimizer; add an entry to add an optimiser (make_optimizer has no per-name branches).
OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(lambda cfg: optax.identity()),
    "momentum": Optimizer(lambda cfg: optax.trace(decay=float(cfg.get("momentum", 0.9)),
                                                  nesterov=bool(cfg.get("nesterov", False))),
                          ("momentum", "nesterov")),
    "adam": Optimizer(_adam, ("b1", "b2", "eps"), decoupled_decay=False),
    "adamw": Optimizer(_adam, ("b1", "b2", "eps")),
    "ranger": Optimizer(_radam, ("b1", "b2", "eps", "lookahead_steps", "lookahead_alpha"),
                        wrap=_lookahead),
}

def _as_dict(config: Any, what: str) -> dict:
    if config is None:
        return {}
    if hasattr(config, "to_dict"):  # ml_collections.ConfigDict
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise TypeError(f"{what} must be a dict or ConfigDict, got {type(config).__name__}")
    return dict(config)


def _require(cfg: dict, key: str, where: str):
    if key not in cfg or cfg[key] is None:
        raise ValueError(f"{where}: missing required field {key!r} (config: {cfg})")
    return cfg[key]


def make_schedule(config: Any = None, learning_rate: float | None = None,
                  total_steps: int | None = None, *,
                  steps_per_epoch: int | None = None) -> optax.Schedule:
    """Learning-rate schedule lr(t) for step t = 0, 1, ... (an optax schedule).

    config: None (constant) or a dict with 'name' and the fields below; l0 = `learning_rate`
    (or config['learning_rate'] if given there).
      constant:       lr = l0
      time_based:     lr = l0 / (1 + decay_rate * t)
      step:           lr = l0 * decay_factor ** floor(t / step_size)
      exponential:    lr = l0 * exp(-t / tau)
      warmup_cosine:  linear warm-up from init_value (default 0) to l0 over warmup_steps (or
                      warmup_epochs of `steps_per_epoch` steps, rounded; give one), then
                      cosine decay to end_value (default 0) at decay_steps (total length,
                      warm-up included; default `total_steps`);
                      optax.warmup_cosine_decay_schedule.
      flat_decay:     weaver-core's default 'flat+decay': with epochs of `steps_per_epoch`
                      steps (the run's, from its resolved spec), E = total_steps /
                      steps_per_epoch epochs (rounded) and D = max(1, int(0.3 E)) decay epochs,
                      lr = l0 * gamma ** max(0, epoch - (E - D) + 1), gamma = 0.01 ** (1 / D):
                      flat for 70 % of training, then down to 1 % of l0 in epoch steps.
    """
    cfg = _as_dict(config, "schedule config")
    if "learning_rate" in cfg:
        lr_cfg = cfg.pop("learning_rate")
        if learning_rate is not None and lr_cfg != learning_rate:
            raise ValueError(f"make_schedule: learning_rate given twice ({learning_rate} and "
                             f"{lr_cfg} in the schedule config); give it once")
        learning_rate = lr_cfg
    if learning_rate is None:
        raise ValueError("make_schedule: no learning_rate; set config['learning_rate']")
    name = cfg.pop("name", "constant")
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}; valid names are {sorted(SCHEDULES)}")
    fields, build = SCHEDULES[name]
    unknown = set(cfg) - set(fields)
    if unknown:
        raise ValueError(f"schedule {name!r}: unknown fields {sorted(unknown)}; valid fields are "
                         f"{list(fields)}")
    return build(float(learning_rate), cfg, _Run(total_steps, steps_per_epoch), f"schedule {name!r}")


class _Run(NamedTuple):
    """The run's length and epoch, from its resolved spec (``hepjax.train.spec``)."""
    total_steps: int | None
    steps_per_epoch: int | None


def _constant(l0, cfg, run, where):
    return optax.constant_schedule(l0)


def _time_based(l0, cfg, run, where):
    k = float(_require(cfg, "decay_rate", where))
    return lambda t: l0 / (1.0 + k * jnp.asarray(t, jnp.float32))


def _step(l0, cfg, run, where):
    lam = float(_require(cfg, "decay_factor", where))
    tau = int(_require(cfg, "step_size", where))
    if tau <= 0:
        raise ValueError(f"{where}: step_size must be a positive integer, got {tau}")
    return lambda t: l0 * jnp.power(lam, jnp.floor_divide(jnp.asarray(t), tau).astype(jnp.float32))


def _exponential(l0, cfg, run, where):
    tau = float(_require(cfg, "tau", where))
    return lambda t: l0 * jnp.exp(-jnp.asarray(t, jnp.float32) / tau)


def _flat_decay(l0, cfg, run, where):
    if not run.total_steps or not run.steps_per_epoch:
        raise ValueError(f"{where}: needs the run's total_steps and steps_per_epoch (got "
                         f"{run.total_steps} and {run.steps_per_epoch})")
    per_epoch = int(run.steps_per_epoch)
    epochs = max(1, int(round(run.total_steps / per_epoch)))
    decay_epochs = max(1, int(epochs * 0.3))
    gamma = 0.01 ** (1.0 / decay_epochs)

    def flat_decay(t):
        epoch = jnp.minimum(jnp.asarray(t) // per_epoch, epochs - 1)
        k = jnp.maximum(0, epoch - (epochs - decay_epochs) + 1).astype(jnp.float32)
        return l0 * jnp.power(gamma, k)

    return flat_decay


def _warmup_cosine(l0, cfg, run, where):
    decay_steps = cfg.get("decay_steps", run.total_steps)
    if decay_steps is None:
        raise ValueError(f"{where}: needs 'decay_steps' in the schedule config or total_steps=")
    steps, epochs = int(cfg.get("warmup_steps") or 0), float(cfg.get("warmup_epochs") or 0.0)
    if (steps > 0) == (epochs > 0) and (steps, epochs) != (0, 0.0) or min(steps, epochs) < 0:
        raise ValueError(f"{where}: give warmup_steps or warmup_epochs (> 0, the other 0), got "
                         f"{steps} and {epochs}")
    if epochs > 0:
        if not run.steps_per_epoch:
            raise ValueError(f"{where}: warmup_epochs needs the run's steps_per_epoch")
        steps = max(1, int(round(epochs * run.steps_per_epoch)))
    return optax.warmup_cosine_decay_schedule(
        init_value=float(cfg.get("init_value", 0.0)), peak_value=l0,
        warmup_steps=steps, decay_steps=int(decay_steps),
        end_value=float(cfg.get("end_value", 0.0)))


# schedule name -> (its fields besides 'name', builder(l0, cfg, run, where)); see
# make_schedule. Add an entry to add a schedule.
SCHEDULES: dict[str, tuple[tuple[str, ...], Callable]] = {
    "constant": ((), _constant),
    "time_based": (("decay_rate",), _time_based),
    "step": (("decay_factor", "step_size"), _step),
    "exponential": (("tau",), _exponential),
    "warmup_cosine": (("warmup_steps", "warmup_epochs", "decay_steps", "init_value", "end_value"),
                      _warmup_cosine),
    "flat_decay": ((), _flat_decay),
}


def default_weight_decay_mask(params: Any) -> Any:
    """Pytree of bools like `params`: True (decay) for leaves with ndim > 1 (kernels), False for
    biases and normalisation scales/offsets (ndim <= 1)."""
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def l2_penalty(params: Any, coefficient: float, mask: Any = None) -> jax.Array:
    """Explicit L2 term coefficient/2 * sum w^2 over masked leaves, to add to the loss.

    mask: None (use `default_weight_decay_mask`), a bool pytree, or a callable params -> pytree.
    Equivalent to config['l2'] = coefficient in make_optimizer.
    """
    if mask is None:
        mask = default_weight_decay_mask
    if callable(mask):
        mask = mask(params)
    terms = jax.tree.map(lambda p, m: jnp.sum(jnp.square(p)) if m else 0.0, params, mask)
    return 0.5 * coefficient * sum(jax.tree.leaves(terms))


def make_optimizer(config: Any, total_steps: int | None = None,
                   weight_decay_mask: Any = None, *,
                   steps_per_epoch: int | None = None) -> optax.GradientTransformation:
    """Builds the optax chain described in the module docstring from `config`.

    Fields: name ('sgd' | 'momentum' | 'adam' | 'adamw'), learning_rate, schedule (see
    make_schedule), weight_decay, l2, clip_norm, clip_value, momentum (default 0.9), nesterov
    (default False), b1 (0.9), b2 (0.999), eps (1e-8).
    weight_decay_mask: bool pytree or callable params -> pytree for weight_decay and l2;
    default `default_weight_decay_mask`. total_steps and steps_per_epoch (the run's, from its
    resolved spec) are passed to make_schedule.
    """
    cfg = _as_dict(config, "optimizer config")
    name = cfg.get("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; valid names are {list(OPTIMIZERS)}")
    entry = OPTIMIZERS[name]
    every = _COMMON_KEYS.union(*(o.fields for o in OPTIMIZERS.values()))
    unknown = set(cfg) - every
    if unknown:
        raise ValueError(f"optimizer config: unknown fields {sorted(unknown)}; valid fields are "
                         f"{sorted(every)}")
    foreign = sorted(set(cfg) - _COMMON_KEYS - set(entry.fields))
    if foreign:
        key = foreign[0]
        owners = [n for n, o in OPTIMIZERS.items() if key in o.fields]
        raise ValueError(f"optimizer config: {key!r} only applies to {owners}, not to name={name!r}")
    lr = make_schedule(cfg.get("schedule"), _require(cfg, "learning_rate", "optimizer config"),
                       total_steps, steps_per_epoch=steps_per_epoch)
    mask = default_weight_decay_mask if weight_decay_mask is None else weight_decay_mask
    wd = float(cfg.get("weight_decay") or 0.0)
    if wd and not entry.decoupled_decay:
        raise ValueError(f"optimizer {name!r} with weight_decay: use name='adamw' for decoupled "
                         "weight decay, or 'l2' for a coupled L2 penalty")
    if name == "adamw" and "weight_decay" not in cfg:
        raise ValueError("optimizer 'adamw' needs 'weight_decay' in the config (e.g. 1e-4)")

    chain: list[optax.GradientTransformation] = []
    if cfg.get("l2"):
        chain.append(optax.add_decayed_weights(float(cfg["l2"]), mask=mask))
    if cfg.get("clip_value"):
        chain.append(optax.clip(float(cfg["clip_value"])))
    if cfg.get("clip_norm"):
        chain.append(optax.clip_by_global_norm(float(cfg["clip_norm"])))
    chain.append(entry.direction(cfg))
    if wd:
        chain.append(optax.add_decayed_weights(wd, mask=mask))
    # the learning rate as an injected hyperparameter: its value at each step sits in the
    # optimiser state, where `current_learning_rate` reads it for the training logs
    chain.append(optax.inject_hyperparams(optax.scale_by_learning_rate)(learning_rate=lr))
    tx = optax.chain(*chain)
    return entry.wrap(tx, cfg) if entry.wrap is not None else tx


def current_learning_rate(opt_state: Any) -> jax.Array | None:
    """The learning rate ``make_optimizer``'s chain applied at its latest update (the
    injected hyperparameter in ``opt_state``), or None for a chain without one."""
    found = []

    def visit(node):
        hyperparams = getattr(node, "hyperparams", None)   # optax's Inject*HyperparamsState
        if isinstance(hyperparams, dict) and "learning_rate" in hyperparams:
            found.append(hyperparams["learning_rate"])
        elif isinstance(node, (tuple, list)):
            for child in node:
                visit(child)

    visit(opt_state)
    return found[0] if found else None


class LookaheadState(NamedTuple):
    inner: Any
    slow: Any
    count: jax.Array


def lookahead(inner: optax.GradientTransformation, sync_period: int = 6,
              alpha: float = 0.5) -> optax.GradientTransformation:
    """Lookahead (Zhang et al. 2019) around ``inner``, on ordinary parameters.

    The fast weights follow ``inner``; every ``sync_period`` steps the slow weights move
    ``slow += alpha (fast - slow)`` and the fast weights are reset to them. The update returned
    on a sync step is ``slow_new - params``, so callers apply it like any optax update (unlike
    ``optax.lookahead``, which needs its own parameter wrapper). With the RAdam direction
    (b1 = 0.95, eps = 1e-5) this is the Ranger optimiser weaver-core trains ParticleNet and ParT
    with.
    """
    if sync_period < 1 or not 0.0 < alpha <= 1.0:
        raise ValueError(f"lookahead: need sync_period >= 1 and 0 < alpha <= 1, got "
                         f"{sync_period}, {alpha}")

    def init(params):
        # A copy, not an alias: the training step donates its state, and XLA refuses one
        # buffer donated twice (params and slow weights).
        slow = jax.tree.map(lambda p: jnp.array(p, copy=True), params)
        return LookaheadState(inner.init(params), slow, jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("lookahead needs params in update(updates, state, params)")
        fast_updates, inner_state = inner.update(updates, state.inner, params)
        count = state.count + 1
        sync = count % sync_period == 0
        fast = optax.apply_updates(params, fast_updates)
        slow = jax.tree.map(lambda s, f: jnp.where(sync, s + alpha * (f - s), s), state.slow, fast)
        new_updates = jax.tree.map(lambda u, s, p: jnp.where(sync, s - p, u).astype(u.dtype),
                                   fast_updates, slow, params)
        return new_updates, LookaheadState(inner_state, slow, count)

    return optax.GradientTransformation(init, update)


class EarlyStoppingState(NamedTuple):
    """best: best metric so far (+inf / -inf before the first update); best_step: its step
    (-1 before); bad_evals: evaluations since the last improvement; should_stop: bad_evals
    reached patience."""
    best: float
    best_step: int
    bad_evals: int
    should_stop: bool


class EarlyStopping(NamedTuple):
    init: Callable[[], EarlyStoppingState]
    update: Callable[[EarlyStoppingState, float, int], tuple[EarlyStoppingState, bool]]


def early_stopping(patience: int, min_delta: float = 0.0, mode: str = "min") -> EarlyStopping:
    """Early stopping on a validation metric, as an (init, update) pair (host-side python).

    An evaluation improves if value < best - min_delta (mode='min') or value > best + min_delta
    (mode='max'); a NaN never improves. On improvement best/best_step are updated and bad_evals
    resets to 0; otherwise bad_evals += 1 and should_stop becomes True once bad_evals >= patience.

    `update` returns (new_state, improved). Restoring the best parameters is the training
    loop's job: keep a copy of the parameters whenever `improved` is True, and restore that copy
    when `should_stop` is True (or at the end of training).
    """
    if mode not in ("min", "max"):
        raise ValueError(f"early_stopping: mode must be 'min' or 'max', got {mode!r}")
    if int(patience) != patience or patience < 0:
        raise ValueError(f"early_stopping: patience must be a non-negative integer, got {patience}")
    if min_delta < 0:
        raise ValueError(f"early_stopping: min_delta must be >= 0, got {min_delta}")

    def init() -> EarlyStoppingState:
        return EarlyStoppingState(best=math.inf if mode == "min" else -math.inf, best_step=-1,
                                  bad_evals=0, should_stop=False)

    def update(state: EarlyStoppingState, value: float, step: int):
        value = float(value)
        if mode == "min":
            improved = value < state.best - min_delta
        else:
            improved = value > state.best + min_delta
        if improved:
            return EarlyStoppingState(value, int(step), 0, False), True
        bad = state.bad_evals + 1
        return EarlyStoppingState(state.best, state.best_step, bad, bad >= patience), False

    return EarlyStopping(init, update)
