"""JetCLR-style self-supervised jet representations (Dillon, Kasieczka, Olischlager, Plehn,
Sorrenson, Vogel, "Symmetries, safety, and self-supervision", SciPost Phys. 12 (2022) 188,
arXiv:2108.04253).

A jet is a set of constituents (delta eta, delta phi, z) relative to the jet axis, z the pT
fraction, with a mask. Contrastive learning (SimCLR: Chen, Kornblith, Norouzi, Hinton,
arXiv:2002.05709) pulls together the representations of two augmented views of one jet and
pushes apart those of different jets with the NT-Xent loss. The augmentations are the
symmetries and near-symmetries the representation should respect (JetCLR, section 3):

* :func:`rotate`      -- rotation of the constituents about the jet axis by a uniform angle;
* :func:`translate`   -- a common shift of every constituent in (eta, phi);
* :func:`collinear_split` -- each constituent split with probability ``p`` into two at the same
  (eta, phi) sharing its pT (IRC: a collinear splitting leaves an IRC-safe observable fixed);
* :func:`soft_emission`   -- up to ``n`` soft constituents of pT fraction ~ ``scale`` added at
  random positions within the jet radius (IR: soft emissions leave it fixed).

:class:`JetCLR` is a Deep Sets encoder (a per-constituent network on (delta eta, delta phi,
log z), summed; or, with ``weighted=True``, an Energy-Flow-Network-like z-weighted sum over
angular features, IRC safe by construction) followed by a projection head; the representation
is the encoder output before the head. It is evaluated by a linear classifier trained on a few
labels (:func:`linear_probe`) and as an anomaly score (Mahalanobis distance in representation
space, ``hepjax.anomaly.scores.LatentDistance``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hepjax.graphs.blocks import DeepSets
from hepjax.nn import MLP

Array = jax.Array

__all__ = ["rotate", "translate", "collinear_split", "soft_emission", "augment", "nt_xent",
           "JetCLR", "contrastive_loss", "linear_probe", "encoder_inputs"]


# --------------------------------------------------------------------------------------------
# Augmentations on (pos (B, N, 2) = (deta, dphi), z (B, N), mask (B, N)); padding: z = 0
# --------------------------------------------------------------------------------------------


def rotate(key: Array, pos: Array, z: Array, mask: Array):
    """Rotates every jet's constituents about the jet axis by its own uniform angle."""
    theta = jax.random.uniform(key, pos.shape[:-2] + (1,), minval=0.0, maxval=2 * math.pi)
    c, s = jnp.cos(theta), jnp.sin(theta)
    x, y = pos[..., 0], pos[..., 1]
    new = jnp.stack([c * x - s * y, s * x + c * y], -1)
    return jnp.where(mask[..., None], new, 0.0), z, mask


def translate(key: Array, pos: Array, z: Array, mask: Array, width: float = 0.5):
    """Shifts every jet's constituents by a common (deta, dphi) ~ U(-width, width)^2 (the
    JetCLR translations, which the network must learn to ignore once jets are centred)."""
    shift = jax.random.uniform(key, pos.shape[:-2] + (1, 2), minval=-width, maxval=width)
    return jnp.where(mask[..., None], pos + shift, 0.0), z, mask


def _free_slots(mask: Array, flags: Array) -> tuple[Array, Array]:
    """For each flagged real constituent, the index of the padding slot it may fill: the
    k-th flagged one gets slot n_real + k, or N (out of range: dropped) when none is left."""
    n = mask.shape[-1]
    n_real = jnp.sum(mask, -1, keepdims=True)
    rank = jnp.cumsum(flags, -1) - 1
    target = n_real + rank
    ok = flags & (target < n)
    return jnp.where(ok, target, n), ok


def collinear_split(key: Array, pos: Array, z: Array, mask: Array, p: float = 0.3):
    """Splits each real constituent with probability ``p`` (while padding slots remain) into
    two at the same (eta, phi) carrying u z and (1 - u) z, u ~ U(0, 1). The total pT and every
    IRC-safe observable are unchanged; the number of constituents grows."""
    k1, k2 = jax.random.split(key)
    flags = jax.random.bernoulli(k1, p, mask.shape) & mask
    u = jax.random.uniform(k2, mask.shape)
    target, ok = _free_slots(mask, flags)

    def one(pos, z, mask, target, ok, u):
        new_pos = pos.at[target].set(pos, mode="drop")
        new_z = z.at[target].set((1.0 - u) * z, mode="drop")
        new_mask = mask.at[target].set(True, mode="drop")
        return new_pos, jnp.where(ok, u * z, new_z), new_mask

    return jax.vmap(one)(pos, z, mask, target, ok, u)


def soft_emission(key: Array, pos: Array, z: Array, mask: Array, n: int = 5,
                  scale: float = 1e-3, radius: float = 0.8):
    """Adds up to ``n`` soft constituents (while padding slots remain), each at a uniform
    point of the disc of ``radius`` with z ~ scale * U(0, 1); then renormalises z to unit sum
    (the soft pT is taken proportionally from the others, a change of order n * scale)."""
    k1, k2, k3 = jax.random.split(key, 3)
    size = mask.shape[-1]
    n_real = jnp.sum(mask, -1, keepdims=True)
    slot = jnp.arange(size)
    new = (slot >= n_real) & (slot < n_real + n)
    r = radius * jnp.sqrt(jax.random.uniform(k1, mask.shape))
    phi = jax.random.uniform(k2, mask.shape, maxval=2 * math.pi)
    soft_pos = jnp.stack([r * jnp.cos(phi), r * jnp.sin(phi)], -1)
    soft_z = scale * jax.random.uniform(k3, mask.shape)
    pos = jnp.where(new[..., None], soft_pos, pos)
    z = jnp.where(new, soft_z, z)
    z = z / jnp.maximum(jnp.sum(z, -1, keepdims=True), 1e-30)
    return pos, z, mask | new


def augment(key: Array, pos: Array, z: Array, mask: Array, *, rotation: bool = True,
            translation: float = 0.5, split_p: float = 0.3, soft_n: int = 5,
            soft_scale: float = 1e-3):
    """The JetCLR chain: soft emissions, collinear splittings, rotation, translation (each
    skipped when its switch is off / 0)."""
    keys = jax.random.split(key, 4)
    if soft_n:
        pos, z, mask = soft_emission(keys[0], pos, z, mask, soft_n, soft_scale)
    if split_p:
        pos, z, mask = collinear_split(keys[1], pos, z, mask, split_p)
    if rotation:
        pos, z, mask = rotate(keys[2], pos, z, mask)
    if translation:
        pos, z, mask = translate(keys[3], pos, z, mask, translation)
    return pos, z, mask


# --------------------------------------------------------------------------------------------
# NT-Xent
# --------------------------------------------------------------------------------------------


def nt_xent(a: Array, b: Array, temperature: float = 0.1) -> Array:
    """NT-Xent (normalised temperature-scaled cross entropy; SimCLR, JetCLR eq. (1)) of two
    views a, b (B, D): with u = l2-normalised [a; b] (2B, D) and s_ij = u_i . u_j / T,

        loss = mean_i  -log( exp(s_{i, pos(i)}) / sum_{k != i} exp(s_ik) ),  pos(i) = i +- B.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"nt_xent: views must both be (B, D); got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    bsz = a.shape[0]
    u = jnp.concatenate([a, b], 0)
    u = u / jnp.maximum(jnp.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
    s = u @ u.T / temperature
    s = jnp.where(jnp.eye(2 * bsz, dtype=bool), -jnp.inf, s)
    pos = jnp.concatenate([jnp.arange(bsz) + bsz, jnp.arange(bsz)])
    logp = jax.nn.log_softmax(s, axis=-1)
    return -jnp.mean(logp[jnp.arange(2 * bsz), pos])


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def encoder_inputs(pos: Array, z: Array, mask: Array) -> Array:
    """Per-constituent inputs (deta, dphi, log z), 0 at padding: (B, N, 3)."""
    logz = jnp.log(jnp.where(mask & (z > 0), z, 1.0))
    return jnp.where(mask[..., None], jnp.concatenate([pos, logz[..., None]], -1), 0.0)


class JetCLR(nnx.Module):
    """Deep Sets encoder -> representation (B, rep_dim); projection head -> (B, proj_dim).
    ``weighted=False``: sum_i phi(deta_i, dphi_i, log z_i); ``weighted=True``: the IRC-safe
    sum_i z_i phi(deta_i, dphi_i)."""

    def __init__(self, rep_dim: int = 32, *, phi_sizes: Sequence[int] = (64, 64),
                 rho_sizes: Sequence[int] = (64,), head_sizes: Sequence[int] = (64,),
                 proj_dim: int = 32, weighted: bool = False, rngs: nnx.Rngs):
        self.weighted = weighted
        self.encoder = DeepSets(2 if weighted else 3, tuple(phi_sizes), tuple(rho_sizes),
                                rep_dim, pooling="sum", rngs=rngs)
        self.head = MLP(rep_dim, tuple(head_sizes), proj_dim, rngs=rngs)

    def represent(self, pos: Array, z: Array, mask: Array) -> Array:
        mask = jnp.asarray(mask, bool)
        if self.weighted:
            return self.encoder(jnp.where(mask[..., None], pos, 0.0), mask, weights=z)
        # sum pooling over (deta, dphi, log z) scaled by 1/10 so sums of ~50 stay O(1)
        return self.encoder(encoder_inputs(pos, z, mask), mask, weights=jnp.full(z.shape, 0.1))

    def __call__(self, pos: Array, z: Array, mask: Array) -> Array:
        return self.head(self.represent(pos, z, mask))


def contrastive_loss(model: JetCLR, batch, key: Array, temperature: float = 0.1,
                     **augment_kw) -> Array:
    """NT-Xent between two independently augmented views of each jet in ``batch`` =
    (pos, z, mask); the loss ``hepjax.anomaly.train.fit`` minimises."""
    pos, z, mask = batch
    k1, k2 = jax.random.split(key)
    v1 = model(*augment(k1, pos, z, mask, **augment_kw))
    v2 = model(*augment(k2, pos, z, mask, **augment_kw))
    return nt_xent(v1, v2, temperature)


def linear_probe(train_x, train_y, test_x, *, l2: float = 1e-3, steps: int = 500,
                 learning_rate: float = 0.05, seed: int = 0) -> np.ndarray:
    """Logistic regression (a linear classifier) on fixed representations: inputs standardised
    with the training statistics, weights fitted by full-batch Adam on the mean cross entropy
    plus ``l2`` |w|^2. Returns the test scores (logits)."""
    train_x = np.asarray(train_x, np.float32)
    train_y = np.asarray(train_y)
    classes = np.unique(train_y)
    if len(train_x) == 0 or not set(classes.tolist()) == {0, 1}:
        raise ValueError(f"linear_probe: the training labels must hold both classes 0 and 1; "
                         f"got {classes.tolist()} in {len(train_y)} examples")
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xs = jnp.asarray((train_x - mean) / std)
    ys = jnp.asarray(train_y, jnp.float32)
    params = {"w": jnp.zeros(xs.shape[1]), "b": jnp.zeros(())}
    tx = optax.adam(learning_rate)
    state = tx.init(params)

    def loss(p):
        logits = xs @ p["w"] + p["b"]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, ys)) + l2 * jnp.sum(
            jnp.square(p["w"]))

    @jax.jit
    def step(p, s):
        g = jax.grad(loss)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    for _ in range(steps):
        params, state = step(params, state)
    test = (np.asarray(test_x, np.float32) - mean) / std
    return np.asarray(test @ np.asarray(params["w"]) + float(params["b"]))
