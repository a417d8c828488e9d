"""Training and inference glue for object condensation on calorimeter events.

Connects the padded events of ``hepjax.sim.io`` (``read_events`` / ``pad_events``), the network
``hepjax.models.condensation_net.CondensationNet`` and the loss / inference of
``hepjax.reco.condensation``:

* :func:`oc_targets` -- per-hit network inputs and truth from padded events: the truth object of
  a hit is its dominant particle (``hit_dominant``; -1 = noise), and every hit of an object
  carries the object's true energy, the summed measured energy of the object's hits (truth
  assignment), its particle-type class and its entry point (x, y).
* :func:`oc_loss` -- ``batched_object_condensation_loss`` with the payload
  ``w_E * Huber(relative energy error) + w_x * |dx / 1 cm|^2 + w_t * cross entropy``, where the
  predicted energy of a hit is ``energy_correction_i * (summed energy of its object's hits)``:
  the network learns a correction to the summed hit energy (threshold losses, shared hits,
  leakage), and at inference an object's energy is its hits' summed energy times the
  correction predicted at its condensation point (``reconstruct``).
* :func:`train` -- a self-contained, deterministic optax loop (Adam, warm-up + cosine decay,
  gradient clipping): batches of ``batch_size`` events drawn by a ``numpy`` generator seeded
  with ``seed``, events sorted by hit count in windows and padded to the smallest of ``buckets``
  (one compilation per bucket). The harness's ``loop.fit`` takes per-example labels and
  classification summaries; this loss needs per-hit truth of several kinds, so the loop is here.
* :func:`reconstruct` -- the network in eval mode (running batch-norm statistics) and
  ``batched_condense``; per event the hits' object ids and the objects' beta, energy, position,
  type probabilities.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable

import jax
import numpy as np
import optax
from flax import nnx

from hepjax.models import condensation_net as cn
from hepjax.reco import condensation as oc

__all__ = ["OCTrainConfig", "oc_targets", "oc_loss", "make_batch", "train", "predict",
           "reconstruct", "bucket_length"]

TARGET_KEYS = ("features", "mask", "hit_xy", "hit_energy", "object_id", "object_energy",
               "object_hit_sum", "object_type", "object_position")


def oc_targets(padded: dict) -> dict:
    """Network inputs and per-hit truth (numpy) from ``pad_events`` output (E events, N hits):
    ``features`` (E, N, 7), ``mask``, ``hit_xy`` (E, N, 2), ``hit_energy``, ``object_id`` (E, N)
    int32 (-1 noise and padding), ``object_energy`` / ``object_hit_sum`` (E, N) GeV (0 for
    noise), ``object_type`` (E, N) int32 (``condensation_net.PARTICLE_TYPES``; -1 noise),
    ``object_position`` (E, N, 2) cm."""
    mask = np.asarray(padded["hit_mask"], bool)
    e, n = mask.shape
    oid = np.where(mask, padded["hit_dominant"], -1).astype(np.int32)
    energy = np.where(mask, padded["hit_energy"], 0.0).astype(np.float32)
    p = padded["particle_energy"].shape[1]
    is_obj = oid >= 0
    safe = np.maximum(oid, 0)
    rows = np.arange(e)[:, None]
    hit_sum = np.zeros((e, max(p, 1)), np.float64)
    np.add.at(hit_sum, (np.broadcast_to(rows, oid.shape)[is_obj], oid[is_obj]), energy[is_obj])
    take = lambda arr: arr[rows, safe] if p else np.zeros((e, n) + arr.shape[2:])  # noqa: E731
    ptype = cn.particle_type(padded["particle_pdg"]) if p else np.zeros((e, 0), np.int64)
    zero = lambda v: np.where(is_obj.reshape(is_obj.shape + (1,) * (v.ndim - 2)), v, 0)  # noqa
    return {
        "features": cn.hit_features(padded["hit_position"], padded["hit_layer"], energy, mask),
        "mask": mask,
        "hit_xy": np.where(mask[..., None], padded["hit_position"][..., :2], 0).astype(np.float32),
        "hit_energy": energy,
        "object_id": oid,
        "object_energy": zero(take(padded["particle_energy"])).astype(np.float32),
        "object_hit_sum": zero(take(hit_sum)).astype(np.float32),
        "object_type": np.where(is_obj, take(ptype), -1).astype(np.int32),
        "object_position": zero(take(padded["particle_position"][..., :2])).astype(np.float32),
    }


@dataclasses.dataclass(frozen=True)
class OCTrainConfig:
    """Loss and optimiser settings of :func:`train` (the paper's q_min, s_B, s_C; payload
    weights; Adam with ``warmup_steps`` of linear warm-up and cosine decay to 1 % over
    ``num_steps``)."""
    num_steps: int = 1000
    batch_size: int = 4
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    clip_norm: float = 1.0
    q_min: float = 0.1
    s_b: float = 1.0
    s_c: float = 1.0
    beta_term: str = "condensation_point"
    energy_weight: float = 1.0
    energy_huber_delta: float = 0.5
    position_weight: float = 0.02
    type_weight: float = 0.5
    num_objects: int = 10
    buckets: tuple[int, ...] = (512, 1024, 1536, 2048, 3072, 4096, 6144, 8192)
    sort_window: int = 16
    seed: int = 0
    log_every: int = 25


def oc_loss(out: dict, batch: dict, cfg: OCTrainConfig) -> oc.OCLoss:
    """The batch-mean object-condensation loss with the payload of the module docstring."""
    e_pred = out["energy_correction"] * batch["object_hit_sum"]
    payload = {
        "energy": cfg.energy_weight * oc.energy_loss(e_pred, batch["object_energy"],
                                                     kind="huber", delta=cfg.energy_huber_delta),
        "position": cfg.position_weight * oc.position_loss(out["position"],
                                                           batch["object_position"]),
        "type": cfg.type_weight * oc.type_loss(out["type_logits"], batch["object_type"]),
    }
    return oc.batched_object_condensation_loss(
        out["beta"], out["coords"], batch["object_id"], batch["mask"],
        num_objects=cfg.num_objects, payload=payload, q_min=cfg.q_min, s_b=cfg.s_b, s_c=cfg.s_c,
        beta_term=cfg.beta_term)


def bucket_length(n: int, buckets) -> int:
    """The smallest bucket >= n (or n rounded up to a multiple of 1024 beyond the last)."""
    for b in sorted(buckets):
        if n <= b:
            return int(b)
    return int(math.ceil(n / 1024) * 1024)


def make_batch(data: dict, rows, length: int) -> dict:
    """Rows ``rows`` of ``oc_targets`` arrays, the hit axis cut or padded to ``length``
    (the rows' real hits must fit; real hits are at the front of every event)."""
    out = {}
    for k in TARGET_KEYS:
        v = data[k][rows]
        n = v.shape[1]
        if n >= length:
            v = v[:, :length]
        else:
            pad = [(0, 0)] * v.ndim
            pad[1] = (0, length - n)
            v = np.pad(v, pad, constant_values=-1 if k in ("object_id", "object_type") else 0)
        out[k] = v
    return out


def _schedule(cfg: OCTrainConfig):
    return optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1),
                                              max(cfg.num_steps, cfg.warmup_steps + 1),
                                              end_value=0.01 * cfg.learning_rate)


def _batch_order(n_hits: np.ndarray, cfg: OCTrainConfig, epoch: int) -> list[np.ndarray]:
    """One epoch of batches: a permutation seeded by (seed, epoch), sorted by hit count inside
    windows of ``sort_window`` batches, the batches then shuffled."""
    rng = np.random.default_rng([cfg.seed, epoch])
    perm = rng.permutation(len(n_hits))
    bs = cfg.batch_size
    w = max(1, cfg.sort_window) * bs
    batches = []
    for a in range(0, len(perm) - bs + 1, w):
        win = perm[a:a + w]
        win = win[np.argsort(n_hits[win], kind="stable")]
        batches.extend(win[i:i + bs] for i in range(0, len(win) - bs + 1, bs))
    rng.shuffle(batches)
    return batches


@functools.lru_cache(maxsize=8)
def _train_step(graphdef, cfg: OCTrainConfig):
    """The optimiser and the jitted training step of ``train`` for one model structure and
    config, built once: a second ``train`` of an equal structure with an equal config (a rerun,
    another seed of the initialisation) reuses the compiled step instead of compiling anew."""
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), optax.adam(_schedule(cfg)))

    @jax.jit
    def step(params, rest, opt_state, batch):
        m = nnx.merge(graphdef, params, rest)

        def loss_fn(mod):
            out = mod(batch["features"], batch["mask"], batch["hit_xy"])
            loss = oc_loss(out, batch, cfg)
            return loss.total, loss

        (_, loss), grads = nnx.value_and_grad(loss_fn, has_aux=True)(m)
        _, _, new_rest = nnx.split(m, nnx.Param, ...)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss.total, "potential": loss.potential, "beta": loss.beta,
                   "payload": loss.payload, **{f"payload_{k}": v
                                               for k, v in loss.payload_terms.items()},
                   "grad_norm": optax.tree.norm(grads)}
        return params, new_rest, opt_state, metrics

    return tx, step


def train(model: cn.CondensationNet, data: dict, cfg: OCTrainConfig, *,
          log: Callable[[dict], None] | None = None) -> tuple[cn.CondensationNet, list[dict]]:
    """Trains ``model`` in place on ``oc_targets`` arrays ``data`` for ``cfg.num_steps`` steps;
    returns it and the logged records (step, loss terms averaged over ``log_every`` steps,
    seconds). Deterministic for a given seed, data and model initialisation."""
    n_hits = np.asarray(data["mask"]).sum(1)
    if len(n_hits) < cfg.batch_size:
        raise ValueError(f"train: {len(n_hits)} events, fewer than batch_size={cfg.batch_size}")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, step = _train_step(graphdef, cfg)
    opt_state = tx.init(params)

    records, window = [], []
    order, epoch = [], 0
    t0 = time.perf_counter()
    for s in range(cfg.num_steps):
        if not order:
            order = _batch_order(n_hits, cfg, epoch)
            epoch += 1
        rows = np.sort(order.pop())
        length = bucket_length(int(n_hits[rows].max()), cfg.buckets)
        batch = make_batch(data, rows, length)
        params, rest, opt_state, metrics = step(params, rest, opt_state, batch)
        window.append(metrics)
        if (s + 1) % cfg.log_every == 0 or s + 1 == cfg.num_steps:
            got = jax.device_get(window)
            rec = {k: float(np.mean([m[k] for m in got])) for k in got[0]}
            if not all(math.isfinite(v) for v in rec.values()):
                raise FloatingPointError(f"train: non-finite loss terms at step {s + 1}: {rec}")
            rec.update(step=s + 1, epoch=epoch, seconds=round(time.perf_counter() - t0, 1))
            records.append(rec)
            window = []
            if log is not None:
                log(rec)
    nnx.update(model, params, rest)
    return model, records


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, feats, mask, xy):
    """The network's outputs; compiled once per model structure (train/eval mode included) and
    padded size, shared by every ``predict`` call."""
    return nnx.merge(graphdef, state)(feats, mask, xy)


def predict(model: cn.CondensationNet, data: dict, *, batch_size: int = 8,
            buckets=OCTrainConfig.buckets) -> dict:
    """Per-hit network outputs (numpy, the hit axis of ``data``) in eval mode (running
    batch-norm statistics), batches of events padded to ``buckets`` (or multiples of the
    model's bin size)."""
    model.eval()
    graphdef, state = nnx.split(model)

    n_events, n = data["mask"].shape
    n_hits = data["mask"].sum(1)
    outs = []
    for a in range(0, n_events, batch_size):
        rows = np.arange(a, min(a + batch_size, n_events))
        length = bucket_length(int(max(n_hits[rows].max(), 1)), buckets)
        if model.bin_size:
            length = int(math.ceil(length / model.bin_size) * model.bin_size)
        b = make_batch(data, rows, length)
        o = jax.device_get(_forward(graphdef, state, b["features"], b["mask"], b["hit_xy"]))
        outs.append({k: _fit_length(v, n) for k, v in o.items()})
    model.train()
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _fit_length(v, n):
    if v.shape[1] >= n:
        return v[:, :n]
    pad = [(0, 0)] * v.ndim
    pad[1] = (0, n - v.shape[1])
    return np.pad(v, pad)


def reconstruct(outputs: dict, data: dict, *, t_beta: float, t_d: float,
                max_objects: int = 64, assign: str = "greedy",
                t_d_hadron: float | None = None, reach: float = 1.0,
                em_radius: float | None = None) -> dict:
    """Condensation (``batched_condense``) of network ``outputs`` (``predict``) on the events of
    ``data``. Returns numpy: ``object_id`` (E, N) per hit (-1 unassigned), and per object (E, K):
    ``valid``, ``beta``, ``energy`` (summed measured energy of its hits x the energy correction
    at its condensation point), ``raw_energy`` (the sum alone), ``energy_hit_corrected`` (the
    sum of each hit's energy times its own correction, for comparison), ``position`` (E, K, 2) and
    ``type_prob`` (E, K, C) at the condensation point, ``overflow`` (E,). ``assign``: the
    hit-assignment rule of ``condense`` ("greedy", the paper's, or "nearest"). ``t_d_hadron``:
    if given, the radius of condensation points whose predicted type is a charged pion (broad
    hadron showers), ``t_d`` that of the others (compact e/gamma showers). ``reach``: with the
    nearest rule, hits beyond every radius but within ``reach`` x the nearest condensation
    point's radius join it (``condense``). ``em_radius`` (cm): if given, the energy of an
    object whose predicted type is not a charged pion (a compact e/gamma shower) sums only its
    hits within this transverse distance of the position predicted at its condensation point
    (the hits stay assigned to it; only its energy changes): hits of neighbouring showers that
    the clustering space gave it far from its axis do not count."""
    if t_d_hadron is not None:
        is_had = np.argmax(outputs["type_logits"], -1) == cn.PARTICLE_TYPES.index("charged_pion")
        t_d = np.where(is_had, t_d_hadron, t_d).astype(np.float32)
    payload = {"energy_correction": outputs["energy_correction"],
               "position": outputs["position"], "type_logits": outputs["type_logits"]}
    res = oc.batched_condense(outputs["beta"], outputs["coords"], data["mask"], payload,
                              max_objects=max_objects, t_beta=t_beta, t_d=t_d, assign=assign,
                              reach=reach, validate=False)
    res = jax.device_get(res)
    oid = np.asarray(res.object_id)
    e, _ = oid.shape
    rows = np.broadcast_to(np.arange(e)[:, None], oid.shape)
    counted = oid >= 0                       # hits whose energy counts for their object
    if em_radius is not None:
        safe = np.maximum(oid, 0)
        pos = np.asarray(res.payload["position"])[rows, safe]             # (E, N, 2)
        had = (np.argmax(np.asarray(res.payload["type_logits"]), -1)
               == cn.PARTICLE_TYPES.index("charged_pion"))[rows, safe]
        near = np.linalg.norm(np.asarray(data["hit_xy"]) - pos, axis=-1) <= em_radius
        counted &= had | near
    slot = np.where(counted, oid, max_objects)
    sums = np.zeros((e, max_objects + 1))
    np.add.at(sums, (rows, slot), data["hit_energy"])
    raw = sums[:, :max_objects]
    weighted = np.zeros((e, max_objects + 1))
    np.add.at(weighted, (rows, slot), data["hit_energy"] * outputs["energy_correction"])
    valid = np.asarray(res.valid)
    corr = np.asarray(res.payload["energy_correction"])
    return {"object_id": oid, "valid": valid, "beta": np.asarray(res.beta),
            "raw_energy": np.where(valid, raw, 0.0), "energy": np.where(valid, raw * corr, 0.0),
            "energy_hit_corrected": np.where(valid, weighted[:, :max_objects], 0.0),
            "position": np.asarray(res.payload["position"]),
            "type_prob": np.asarray(jax.nn.softmax(res.payload["type_logits"], -1)),
            "overflow": np.asarray(res.overflow)}
