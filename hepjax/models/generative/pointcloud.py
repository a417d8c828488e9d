"""Point-cloud jet generation (issue 27, item 3): JetNet-style jets and a permutation-equivariant
conditional flow-matching generator.

* **Data** (Kansal et al., "Particle Cloud Generation with Message Passing Generative Adversarial
  Networks", arXiv:2106.11535, the JetNet format): the ``n_particles`` (30) hardest constituents
  of a jet as (eta_rel, phi_rel, pT_rel) = (eta - eta_jet, phi - phi_jet wrapped to (-pi, pi],
  pT / pT_jet), with the jet axis and pT of the whole jet (``jet_p4``), and a mask for jets with
  fewer constituents (``jetnet_clouds``).
* **Preprocessing** (``CloudScaler``): eta_rel, phi_rel and ln pT_rel standardised with the means
  and standard deviations of the real training particles; padded particles are 0.
* **Model** (``SetTransformerVelocity``): a transformer without positional encoding (a
  set-attention network, Lee et al. "Set Transformer", 2019; as the attention backbones of Buhmann
  et al. "EPiC-ly fast particle cloud generation with flow-matching and diffusion",
  arXiv:2310.00049): per-particle embedding, ``depth`` pre-norm blocks of masked multi-head
  self-attention and a feed-forward layer, each block adding a projection of the embedding of
  (t, multiplicity); a zero-initialised output. Padded particles are masked as keys and their
  outputs zeroed, so the velocity field is permutation equivariant in the particles.
  ``EPiCVelocity``: the alternative backbone of EPiC-FM, Equivariant Point Cloud layers (Buhmann,
  Kasieczka, Thaler, "EPiC-GAN: Equivariant Point Cloud Generation for Particle Jets",
  arXiv:2301.08128): per-particle MLPs and a global vector updated from the masked mean- and
  sum-pooled particles (deep sets, no attention: O(P) per layer).
* **Training** (``flow_matching_loss``; Lipman et al. "Flow Matching for Generative Modeling",
  arXiv:2210.02747, the optimal-transport conditional path with sigma_min = 0; Liu et al.
  "Rectified flow"): x_t = (1 - t) x_0 + t x_1 with x_0 ~ N(0, 1) per particle and x_1 the data,
  regress v(x_t, t, n) on x_1 - x_0, squared error averaged over the real particles.
* **Sampling** (``sample_clouds``): the multiplicity n drawn from the training distribution,
  the first n slots marked real (the order of slots is immaterial to an equivariant model),
  the ODE dx/dt = v integrated from t = 0 to 1 with ``steps`` fixed Euler or midpoint steps,
  all inside one jitted ``lax.fori_loop``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hepjax.nn import Dense, MultiHeadAttention
from hepjax.nn import initializers as inits
from hepjax.models.generative.nets import sinusoidal_embedding

Array = jax.Array

__all__ = ["jetnet_clouds", "jet_conditions", "JetLevelFlow", "CloudScaler", "SetTransformerVelocity", "EPiCVelocity",
           "flow_matching_loss",
           "sample_clouds", "multiplicity_probs", "draw_counts", "param_count"]


def jetnet_clouds(p4: np.ndarray, mask: np.ndarray, jet_p4: np.ndarray,
                  n_particles: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """(N, P, 4) constituent (E, px, py, pz), (N, P) mask, (N, 4) jet four-momenta ->
    clouds (N, n, 3) float32 (eta_rel, phi_rel, pT_rel; zeros where padded) and mask (N, n) bool,
    the ``n`` hardest constituents in decreasing pT."""
    p4, mask, jet_p4 = np.asarray(p4, np.float64), np.asarray(mask, bool), np.asarray(jet_p4,
                                                                                     np.float64)
    if p4.ndim != 3 or p4.shape[-1] != 4 or mask.shape != p4.shape[:2]:
        raise ValueError(f"jetnet_clouds: p4 must be (N, P, 4) and mask (N, P); got p4 "
                         f"{p4.shape}, mask {mask.shape}")
    if jet_p4.shape != (p4.shape[0], 4):
        raise ValueError(f"jetnet_clouds: jet_p4 must be (N, 4) = ({p4.shape[0]}, 4); got "
                         f"{jet_p4.shape}")
    pt = np.hypot(p4[..., 1], p4[..., 2])
    order = np.argsort(-np.where(mask, pt, -1.0), axis=1, kind="stable")[:, :n_particles]
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    p4 = np.take_along_axis(p4, order[..., None], axis=1)
    mask, pt = take(mask), take(pt)
    if p4.shape[1] < n_particles:
        pad = n_particles - p4.shape[1]
        p4 = np.pad(p4, ((0, 0), (0, pad), (0, 0)))
        mask, pt = np.pad(mask, ((0, 0), (0, pad))), np.pad(pt, ((0, 0), (0, pad)))
    eta = np.arcsinh(np.divide(p4[..., 3], pt, out=np.zeros_like(pt), where=pt > 0))
    phi = np.arctan2(p4[..., 2], p4[..., 1])
    jpt = np.hypot(jet_p4[:, 1], jet_p4[:, 2])
    if (jpt <= 0).any():
        raise ValueError(f"jetnet_clouds: {int((jpt <= 0).sum())} jets with pT <= 0 in jet_p4")
    jeta = np.arcsinh(jet_p4[:, 3] / jpt)
    jphi = np.arctan2(jet_p4[:, 2], jet_p4[:, 1])
    dphi = (phi - jphi[:, None] + np.pi) % (2 * np.pi) - np.pi
    cloud = np.stack([eta - jeta[:, None], dphi, pt / jpt[:, None]], -1)
    cloud = np.where(mask[..., None], cloud, 0.0)
    return cloud.astype(np.float32), mask


def jet_conditions(clouds, mask) -> np.ndarray:
    """(N, 2) float64 jet-level quantities of JetNet clouds, the conditions of a two-stage
    generator: the cloud's relative mass m / pT_jet (massless constituents summed, as the W1M
    metric computes it) and its sum of pT_rel."""
    from hepjax.models.generative import jet_metrics as jm

    clouds, mask = np.asarray(clouds, np.float64), np.asarray(mask, bool)
    return np.stack([jm.jet_mass(clouds, mask), np.where(mask, clouds[..., 2], 0.0).sum(1)], -1)


class CloudScaler:
    """Standardises (eta_rel, phi_rel, ln pT_rel) with the real training particles' statistics;
    ``inverse`` maps back to (eta_rel, phi_rel, pT_rel) and zeroes padded particles."""

    def __init__(self, clouds: np.ndarray, mask: np.ndarray):
        feats = self._features(np.asarray(clouds, np.float64))[np.asarray(mask, bool)]
        if len(feats) < 2:
            raise ValueError("CloudScaler: fewer than two real particles to fit the scaling")
        self.mean = feats.mean(0)
        self.std = feats.std(0) + 1e-8

    @staticmethod
    def _features(clouds):
        pt = np.maximum(clouds[..., 2], 1e-12)
        return np.stack([clouds[..., 0], clouds[..., 1], np.log(pt)], -1)

    def transform(self, clouds, mask) -> np.ndarray:
        x = (self._features(np.asarray(clouds, np.float64)) - self.mean) / self.std
        return np.where(np.asarray(mask, bool)[..., None], x, 0.0).astype(np.float32)

    def inverse(self, x, mask) -> np.ndarray:
        y = np.asarray(x, np.float64) * self.std + self.mean
        cloud = np.stack([y[..., 0], y[..., 1], np.exp(y[..., 2])], -1)
        return np.where(np.asarray(mask, bool)[..., None], cloud, 0.0).astype(np.float32)

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


class JetLevelFlow:
    """The first stage of a two-stage jet generator: the jet-level quantities of
    ``jet_conditions`` (relative mass, sum of pT_rel) given the multiplicity n, learned by a
    conditional rational-quadratic-spline flow (``flows.ConditionalFlow``, context n / P); the
    second stage is a velocity field built with ``cond_features=2`` and trained on the true
    conditions of each jet. The two-stage design is PC-Droid's (Leigh et al., "PC-Droid: Faster
    diffusion and improved quality for particle cloud generation", arXiv:2307.06836: a flow for
    the jet's kinematics, the cloud generated conditioned on them), following PC-JeDi (Leigh et
    al., arXiv:2303.05376), which conditions on the jet's mass and pT.

    ``transform``/``inverse`` standardise with the training jets' means and standard
    deviations; ``fit`` trains the flow (``training.fit``, maximum likelihood); ``sample(key,
    counts)`` returns standardised conditions (N, 2) for jets of ``counts`` real particles."""

    def __init__(self, clouds, mask, *, n_particles: int, layers: int = 8, hidden=(64, 64),
                 bins: int = 16, seed: int = 0):
        from hepjax.models.generative import flows

        cond = jet_conditions(clouds, mask)
        if len(cond) < 2:
            raise ValueError("JetLevelFlow: fewer than two training jets")
        self.n_particles = int(n_particles)
        self.mean, self.std = cond.mean(0), cond.std(0) + 1e-12
        self.counts = np.asarray(mask, bool).sum(1)
        self.cond = cond
        # a coupling layer of a 2-D flow transforms one coordinate given the other: the first
        # permutation seed from ``seed`` on whose layers transform both coordinates
        perm_seed = seed
        while len({c.perm for c in flows.ConditionalFlow(
                2, 1, n_layers=layers, hidden=(1,), bins=2, perm_seed=perm_seed,
                rngs=nnx.Rngs(0)).layers}) < 2:
            perm_seed += 1
        self.flow = flows.ConditionalFlow(2, 1, n_layers=layers, kind="spline",
                                          hidden=tuple(hidden), bins=bins, bound=5.0,
                                          perm_seed=perm_seed, rngs=nnx.Rngs(seed))

    def transform(self, cond) -> np.ndarray:
        return ((np.asarray(cond, np.float64) - self.mean) / self.std).astype(np.float32)

    def inverse(self, y) -> np.ndarray:
        return np.asarray(y, np.float64) * self.std + self.mean

    def _context(self, counts):
        return (jnp.asarray(counts, jnp.float32) / self.n_particles)[:, None]

    def fit(self, *, steps: int, batch_size: int, lr: float, key, log=None) -> list:
        from hepjax.models.generative import flows, training

        data = (self.transform(self.cond), np.asarray(self._context(self.counts)))
        self.flow, _, history = training.fit(self.flow, flows.flow_loss, data, steps=steps,
                                             batch_size=batch_size, key=key, lr=lr,
                                             warmup=min(200, steps // 10),
                                             chunk=min(250, steps), log=log)
        return history

    def sample(self, key, counts) -> np.ndarray:
        graphdef, params = nnx.split(self.flow)
        if getattr(self, "_draw", None) is None or self._draw[0] != graphdef:
            self._draw = (graphdef, jax.jit(lambda p, k, c: nnx.merge(graphdef, p).sample(k, c)))
        return np.asarray(self._draw[1](params, key, self._context(np.asarray(counts))))


def multiplicity_probs(mask: np.ndarray) -> np.ndarray:
    """Empirical distribution (n_particles + 1,) of the number of real particles per jet."""
    mask = np.asarray(mask, bool)
    counts = np.bincount(mask.sum(1), minlength=mask.shape[1] + 1).astype(np.float64)
    return counts / counts.sum()


class _Block(nnx.Module):
    def __init__(self, width: int, heads: int, emb: int, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(width, rngs=rngs)
        self.attn = MultiHeadAttention(width, heads, rngs=rngs)
        self.norm2 = nnx.LayerNorm(width, rngs=rngs)
        self.cond = Dense(emb, width, rngs=rngs)
        self.fc1 = Dense(width, 2 * width, kernel_init=inits.he_uniform, rngs=rngs)
        self.fc2 = Dense(2 * width, width, kernel_init=inits.zeros, rngs=rngs)

    def __call__(self, h, e, attn_mask):
        h = h + self.attn(self.norm1(h), mask=attn_mask)
        y = self.norm2(h) + self.cond(e)[:, None, :]
        return h + self.fc2(jax.nn.gelu(self.fc1(y)))


class SetTransformerVelocity(nnx.Module):
    """``v(x (B, P, F), t (B,), mask (B, P)) -> (B, P, F)``: the flow-matching velocity field,
    conditioned on t and the multiplicity n / P (computed from the mask). Permutation
    equivariant in P; padded particles get 0."""

    def __init__(self, features: int = 3, *, width: int = 96, depth: int = 3, heads: int = 4,
                 time_dim: int = 32, cond_features: int = 0, rngs: nnx.Rngs):
        self.time_dim, self.cond_features = time_dim, int(cond_features)
        self.inp = Dense(features, width, rngs=rngs)
        emb = width
        self.emb1 = Dense(time_dim + 1 + self.cond_features, emb, kernel_init=inits.he_uniform,
                          rngs=rngs)
        self.emb2 = Dense(emb, emb, rngs=rngs)
        self.blocks = nnx.List([_Block(width, heads, emb, rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.out = Dense(width, features, kernel_init=inits.zeros, rngs=rngs)

    def __call__(self, x: Array, t: Array, mask: Array, cond: Array | None = None) -> Array:
        mask = jnp.asarray(mask, bool)
        e = _embed_t_n(self.emb1, self.emb2, self.time_dim, t, mask, cond, self.cond_features)
        attn_mask = mask[:, None, None, :]
        h = self.inp(x) + e[:, None, :]
        for block in self.blocks:
            h = block(h, e, attn_mask)
        v = self.out(jax.nn.gelu(self.norm(h)))
        return jnp.where(mask[..., None], v, 0.0)


def _embed_t_n(emb1, emb2, time_dim, t, mask, cond=None, cond_features=0):
    """The (t, n / P[, jet-level condition]) embedding both velocity fields add: a sinusoidal
    embedding of t, the fraction of real particles and the ``cond_features`` jet-level
    conditions (B, C) of a two-stage model, through Dense - SiLU - Dense."""
    n = jnp.sum(mask, -1, keepdims=True).astype(jnp.float32) / mask.shape[-1]
    parts = [sinusoidal_embedding(1000.0 * t, time_dim), n]
    if cond_features:
        if cond is None or cond.shape != (mask.shape[0], cond_features):
            raise ValueError(f"velocity field built with cond_features={cond_features}: expected "
                             f"cond of shape ({mask.shape[0]}, {cond_features}), got "
                             f"{None if cond is None else cond.shape}")
        parts.append(jnp.asarray(cond, jnp.float32))
    elif cond is not None:
        raise ValueError("velocity field built with cond_features=0 was given a cond")
    return emb2(jax.nn.silu(emb1(jnp.concatenate(parts, -1))))


def _leaky(x):
    return jax.nn.leaky_relu(x, 0.01)


class _EPiCLayer(nnx.Module):
    """One EPiC layer (Buhmann et al. arXiv:2301.08128, eq. 2-3) with residual updates and the
    (t, n) embedding ``e`` added to both inputs: g <- g + MLP(mean_i h_i, sum_i h_i / P, g, e);
    h_i <- h_i + MLP(h_i, g, e)."""

    def __init__(self, width: int, global_dim: int, emb: int, rngs: nnx.Rngs):
        self.g1 = Dense(2 * width + global_dim + emb, width, kernel_init=inits.he_uniform,
                        rngs=rngs)
        self.g2 = Dense(width, global_dim, rngs=rngs)
        self.l1 = Dense(width + global_dim + emb, width, kernel_init=inits.he_uniform, rngs=rngs)
        self.l2 = Dense(width, width, rngs=rngs)

    def __call__(self, h, g, e, m, count):
        total = jnp.sum(h * m, 1)
        pooled = jnp.concatenate([total / count, total / m.shape[1], g, e], -1)
        g = g + self.g2(_leaky(self.g1(pooled)))
        ge = jnp.broadcast_to(jnp.concatenate([g, e], -1)[:, None, :],
                              h.shape[:2] + (g.shape[-1] + e.shape[-1],))
        h = h + self.l2(_leaky(self.l1(jnp.concatenate([h, ge], -1))))
        return h * m, g


class EPiCVelocity(nnx.Module):
    """``v(x (B, P, F), t (B,), mask (B, P)) -> (B, P, F)`` with EPiC layers (the EPiC-FM
    backbone of Buhmann et al. arXiv:2310.00049): per-particle embedding, a global vector of
    ``global_dim`` initialised from the masked mean of the embeddings, ``depth`` EPiC layers, a
    zero-initialised per-particle output. Padded particles are excluded from the pooling and
    zeroed, so the field is permutation equivariant in P."""

    def __init__(self, features: int = 3, *, width: int = 128, depth: int = 6,
                 global_dim: int = 16, time_dim: int = 32, cond_features: int = 0,
                 rngs: nnx.Rngs):
        self.time_dim, self.cond_features = time_dim, int(cond_features)
        emb = width
        self.emb1 = Dense(time_dim + 1 + self.cond_features, emb, kernel_init=inits.he_uniform,
                          rngs=rngs)
        self.emb2 = Dense(emb, emb, rngs=rngs)
        self.inp = Dense(features + emb, width, kernel_init=inits.he_uniform, rngs=rngs)
        self.glob = Dense(width + emb, global_dim, rngs=rngs)
        self.layers = nnx.List([_EPiCLayer(width, global_dim, emb, rngs) for _ in range(depth)])
        self.out = Dense(width, features, kernel_init=inits.zeros, rngs=rngs)

    def __call__(self, x: Array, t: Array, mask: Array, cond: Array | None = None) -> Array:
        mask = jnp.asarray(mask, bool)
        m = mask[..., None].astype(x.dtype)
        count = jnp.maximum(jnp.sum(m, 1), 1.0)
        e = _embed_t_n(self.emb1, self.emb2, self.time_dim, t, mask, cond, self.cond_features)
        eb = jnp.broadcast_to(e[:, None, :], x.shape[:2] + e.shape[-1:])
        h = _leaky(self.inp(jnp.concatenate([x, eb], -1))) * m
        g = self.glob(jnp.concatenate([jnp.sum(h, 1) / count, e], -1))
        for layer in self.layers:
            h, g = layer(h, g, e, m, count)
        return jnp.where(mask[..., None], self.out(_leaky(h)), 0.0)


def flow_matching_loss(model: nnx.Module, batch, key) -> Array:
    """Conditional flow matching (Lipman et al. 2022, OT path, sigma_min = 0) on a batch
    (x (B, P, F) standardised with padded entries 0, mask (B, P)): mean squared error of the
    velocity over the real particles. A batch (x, mask, cond) trains a two-stage model's
    second stage: the field is also given the jets' conditions cond (B, C)."""
    x1, mask = batch[0], batch[1]
    cond = batch[2] if len(batch) > 2 else None
    kt, kn = jax.random.split(key)
    t = jax.random.uniform(kt, (x1.shape[0],))
    x0 = jax.random.normal(kn, x1.shape)
    m = mask[..., None].astype(x1.dtype)
    x0 = x0 * m
    xt = (1.0 - t[:, None, None]) * x0 + t[:, None, None] * x1
    err = (model(xt, t, mask, cond) - (x1 - x0)) ** 2 * m
    return jnp.sum(err) / (jnp.sum(m) * x1.shape[-1])


def _masks_from_counts(counts: Array, n_particles: int) -> Array:
    return jnp.arange(n_particles)[None, :] < counts[:, None]


def sample_clouds(model: nnx.Module, key, counts: Array, *, n_particles: int,
                  features: int = 3, steps: int = 40, method: str = "midpoint",
                  cond: Array | None = None):
    """Integrates the flow-matching ODE for jets with ``counts`` (B,) real particles (and, for a
    two-stage model, the jet-level conditions ``cond`` (B, C)): returns (x (B, P, F) in the
    standardised space, mask (B, P)). ``method``: 'euler' or 'midpoint'."""
    if method not in ("euler", "midpoint"):
        raise ValueError(f"sample_clouds: method={method!r}; use 'euler' or 'midpoint'")
    if steps < 1:
        raise ValueError(f"sample_clouds: steps={steps}; expected >= 1")
    mask = _masks_from_counts(counts, n_particles)
    m = mask[..., None].astype(jnp.float32)
    x = jax.random.normal(key, (counts.shape[0], n_particles, features)) * m
    dt = 1.0 / steps
    ones = jnp.ones((counts.shape[0],))

    def step(i, x):
        t = i * dt
        v = model(x, t * ones, mask, cond)
        if method == "midpoint":
            v = model(x + 0.5 * dt * v, (t + 0.5 * dt) * ones, mask, cond)
        return x + dt * v

    x = jax.lax.fori_loop(0, steps, step, x)
    return x * m, mask


def draw_counts(key, probs, size: int) -> Array:
    """``size`` multiplicities drawn from ``probs`` (n_particles + 1,) (at least 1 particle)."""
    p = jnp.asarray(probs, jnp.float32).at[0].set(0.0)
    return jax.random.choice(key, p.shape[0], (size,), p=p / jnp.sum(p))


def param_count(model: nnx.Module) -> int:
    return int(sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(nnx.state(model,
                                                                                    nnx.Param))))
