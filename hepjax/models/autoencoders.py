"""Autoencoders for unsupervised learning and anomaly detection (Flax NNX).

The models of the lecture notes' unsupervised chapter (Sznajder, INCT 2024 lectures: "an AE
trained on a SM data sample, so that an anomalous event gives a large reconstruction error"):

* :class:`DenseAE`   -- fully connected autoencoder on flat inputs (jet observables or
  flattened jet images; Farina, Nakai, Shih, "Searching for New Physics with Deep
  Autoencoders", PRD 101 (2020) 075021);
* :class:`ConvAE`    -- convolutional autoencoder on jet images (Heimel, Kasieczka, Plehn,
  Thompson, "QCD or What?", SciPost Phys. 6 (2019) 030);
* denoising AE       -- any of the above trained on inputs corrupted by a :class:`NoiseModel`
  (Gaussian noise, or masking/dropout of entries or of jet constituents; Vincent et al.,
  "Extracting and composing robust features with denoising autoencoders", ICML 2008) and scored
  on clean inputs: :func:`denoising_loss`;
* :class:`VAE`       -- variational autoencoder (Kingma, Welling, "Auto-Encoding Variational
  Bayes", arXiv:1312.6114) with the reparameterisation trick, a beta weight on the analytic KL
  term (Higgins et al., beta-VAE, ICLR 2017) and a Gaussian decoder of fixed width
  ``decoder_sigma``, so that the ELBO is a proper lower bound on log p(x) (checked against the
  importance-sampled likelihood of Burda, Grosse, Salakhutdinov, arXiv:1509.00519);
* :class:`SetAE`     -- permutation-invariant autoencoder for jet constituents: a Deep Sets
  (Zaheer et al., arXiv:1703.06114) or EdgeConv (Wang et al., arXiv:1801.07829) encoder to a
  latent vector, and a set decoder emitting ``num_points`` weighted points; trained with a
  Chamfer distance or a Sinkhorn optimal-transport divergence (Cuturi, NeurIPS 2013; Feydy et
  al., "Interpolating between OT and MMD using Sinkhorn divergences", AISTATS 2019), both
  invariant to the order of either set.

Every model has ``encode`` and ``decode``; ``model(x)`` is the deterministic reconstruction.
Anomaly scores built on them live in :mod:`hepjax.anomaly.scores`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax import losses
from hepjax.graphs.blocks import DeepSets, EdgeConv, masked_pool
from hepjax.nn import MLP, Dense
from hepjax.nn.conv import Conv2D

Array = jax.Array

__all__ = ["DenseAE", "ConvAE", "VAE", "SetAE", "NoiseModel", "corrupt", "denoising_loss",
           "reconstruction_loss", "chamfer_distance", "sinkhorn_cost", "sinkhorn_divergence",
           "gaussian_log_likelihood"]


def _check_flat(x: Array, features: int, who: str) -> None:
    if x.ndim != 2 or x.shape[-1] != features:
        raise ValueError(f"{who}: expected inputs (batch, {features}), got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------
# Dense and convolutional autoencoders
# --------------------------------------------------------------------------------------------


class DenseAE(nnx.Module):
    """x (B, F) -> z (B, latent) -> x_hat (B, F); encoder and decoder MLPs with mirrored hidden
    widths (``hidden`` for the encoder, reversed for the decoder), linear latent and output."""

    def __init__(self, in_features: int, hidden: Sequence[int], latent: int, *,
                 activation: str = "relu", rngs: nnx.Rngs):
        if latent < 1 or in_features < 1:
            raise ValueError(f"DenseAE: in_features={in_features} and latent={latent} must be >= 1")
        self.in_features, self.latent = in_features, latent
        self.encoder = MLP(in_features, tuple(hidden), latent, activation=activation, rngs=rngs)
        self.decoder = MLP(latent, tuple(hidden)[::-1], in_features, activation=activation,
                           rngs=rngs)

    def encode(self, x: Array) -> Array:
        _check_flat(x, self.in_features, "DenseAE")
        return self.encoder(x)

    def decode(self, z: Array) -> Array:
        return self.decoder(z)

    def __call__(self, x: Array) -> Array:
        return self.decode(self.encode(x))


def _upsample2(x: Array) -> Array:
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")


class ConvAE(nnx.Module):
    """Convolutional autoencoder on (B, S, S, C) jet images, S = ``image_size``.

    Encoder: per entry of ``channels`` a 3x3 convolution with stride 2 (halving the image) and
    ReLU, then a dense layer to the ``latent`` bottleneck. Decoder: dense to the smallest feature
    map, then per level nearest-neighbour upsampling by 2 and a 3x3 convolution (ReLU except the
    last), mirroring the encoder. S must be divisible by 2**len(channels)."""

    def __init__(self, image_size: int, channels: Sequence[int] = (16, 32), latent: int = 32, *,
                 in_channels: int = 1, rngs: nnx.Rngs):
        channels = tuple(channels)
        if not channels:
            raise ValueError("ConvAE: channels must name at least one convolution")
        factor = 2 ** len(channels)
        if image_size % factor:
            raise ValueError(f"ConvAE: image_size={image_size} must be divisible by "
                             f"2**len(channels) = {factor}")
        self.image_size, self.in_channels, self.latent = image_size, in_channels, latent
        self.small = image_size // factor
        widths = (in_channels,) + channels
        self.down = nnx.List([Conv2D(a, b, 3, strides=2, rngs=rngs)
                              for a, b in zip(widths[:-1], widths[1:])])
        flat = self.small * self.small * channels[-1]
        self.to_latent = Dense(flat, latent, rngs=rngs)
        self.from_latent = Dense(latent, flat, rngs=rngs)
        rev = widths[::-1]
        self.up = nnx.List([Conv2D(a, b, 3, rngs=rngs) for a, b in zip(rev[:-1], rev[1:])])
        self.top_channels = channels[-1]

    def encode(self, x: Array) -> Array:
        want = (self.image_size, self.image_size, self.in_channels)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"ConvAE: expected images (batch, {want[0]}, {want[1]}, {want[2]}), "
                             f"got shape {tuple(x.shape)}")
        h = x
        for conv in self.down:
            h = jax.nn.relu(conv(h))
        return self.to_latent(h.reshape(h.shape[0], -1))

    def decode(self, z: Array) -> Array:
        h = jax.nn.relu(self.from_latent(z))
        h = h.reshape(z.shape[0], self.small, self.small, self.top_channels)
        for i, conv in enumerate(self.up):
            h = conv(_upsample2(h))
            if i < len(self.up) - 1:
                h = jax.nn.relu(h)
        return h

    def __call__(self, x: Array) -> Array:
        return self.decode(self.encode(x))


def reconstruction_loss(x_hat: Array, x: Array) -> Array:
    """Per-example squared error summed over every feature axis: shape (B,)."""
    if x_hat.shape != x.shape:
        raise ValueError(f"reconstruction_loss: reconstruction {tuple(x_hat.shape)} and input "
                         f"{tuple(x.shape)} differ in shape")
    return jnp.sum(jnp.square(x_hat - x).reshape(x.shape[0], -1), axis=-1)


# --------------------------------------------------------------------------------------------
# Denoising: noise models
# --------------------------------------------------------------------------------------------


class NoiseModel:
    """How a denoising AE corrupts its training inputs.

    kind: ``'gaussian'`` (add N(0, level^2) to every entry; at padded constituents nothing),
    ``'masking'`` (set each entry to 0 with probability ``level``: the DAE's masking noise), or
    ``'constituent_dropout'`` (for sets (B, N, F) with a mask: drop each real constituent with
    probability ``level``, i.e. mark it padding and zero its features; at least one is kept).
    """

    KINDS = ("gaussian", "masking", "constituent_dropout")

    def __init__(self, kind: str = "gaussian", level: float = 0.1):
        if kind not in self.KINDS:
            raise ValueError(f"NoiseModel: kind={kind!r}; valid: {self.KINDS}")
        if not (level >= 0 and (kind == "gaussian" or level < 1)):
            raise ValueError(f"NoiseModel: level={level} must be >= 0 (and < 1 for {kind!r})")
        self.kind, self.level = kind, float(level)

    def __call__(self, key: Array, x: Array, mask: Array | None = None):
        return corrupt(key, x, self.kind, self.level, mask)


def corrupt(key: Array, x: Array, kind: str, level: float, mask: Array | None = None):
    """Corrupted copy of ``x`` (and of ``mask`` for ``'constituent_dropout'``); see
    :class:`NoiseModel`. Returns ``x`` alone when ``mask`` is None, else ``(x, mask)``."""
    x = jnp.asarray(x)
    if kind == "gaussian":
        y = x + level * jax.random.normal(key, x.shape, x.dtype)
        if mask is not None:
            y = jnp.where(mask[..., None], y, 0.0)
    elif kind == "masking":
        keep = jax.random.bernoulli(key, 1.0 - level, x.shape)
        y = jnp.where(keep, x, 0.0)
    elif kind == "constituent_dropout":
        if mask is None or x.ndim != 3:
            raise ValueError("corrupt: 'constituent_dropout' needs sets x (B, N, F) and their "
                             f"mask (B, N); got x {tuple(x.shape)} and mask "
                             f"{None if mask is None else tuple(mask.shape)}")
        keep = jax.random.bernoulli(key, 1.0 - level, mask.shape) & mask
        # never empty a jet: keep its first real constituent (the leading one) whatever happens
        first = jnp.argmax(mask, axis=-1)
        keep = keep | (jax.nn.one_hot(first, mask.shape[-1], dtype=bool) & mask)
        return jnp.where(keep[..., None], x, 0.0), keep
    else:
        raise ValueError(f"corrupt: kind={kind!r}; valid: {NoiseModel.KINDS}")
    return y if mask is None else (y, mask)


def denoising_loss(model, key: Array, x: Array, noise: NoiseModel) -> Array:
    """Mean over the batch of ||model(corrupt(x)) - x||^2: the DAE objective (flat inputs or
    images). Scoring uses the clean input, ``reconstruction_loss(model(x), x)``."""
    return jnp.mean(reconstruction_loss(model(noise(key, x)), x))


# --------------------------------------------------------------------------------------------
# Variational autoencoder
# --------------------------------------------------------------------------------------------


def gaussian_log_likelihood(x: Array, mean: Array, sigma: float) -> Array:
    """log N(x; mean, sigma^2 I) summed over the feature axes: shape (B,) (or x's batch shape)."""
    d = x.shape[-1]
    sq = jnp.sum(jnp.square(x - mean), axis=-1)
    return -0.5 * sq / sigma ** 2 - 0.5 * d * math.log(2 * math.pi * sigma ** 2)


class VAE(nnx.Module):
    """Variational autoencoder on flat inputs (B, F).

    Encoder q(z|x) = N(mu(x), diag(exp(logvar(x)))), an MLP with two linear heads; prior
    p(z) = N(0, I); decoder p(x|z) = N(g(z), decoder_sigma^2 I), g an MLP (``decoder_hidden=()``
    makes it linear, for which log p(x) is a closed-form Gaussian).

    ``elbo(x, key)`` = E_q[log p(x|z)] - KL(q || p) with the KL analytic
    (``hepjax.losses.kl_gaussian``) and the expectation from ``num_samples`` reparameterised
    draws z = mu + exp(logvar / 2) * eps; ``loss`` is the beta-weighted negative ELBO;
    ``log_likelihood(x, key, K)`` is the importance-sampled estimate
    log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q, a tighter lower bound that tends to
    log p(x) as K grows (Burda et al., arXiv:1509.00519).
    """

    def __init__(self, in_features: int, hidden: Sequence[int], latent: int, *,
                 decoder_hidden: Sequence[int] | None = None, decoder_sigma: float = 1.0,
                 beta: float = 1.0, activation: str = "relu", rngs: nnx.Rngs):
        if decoder_sigma <= 0 or beta < 0:
            raise ValueError(f"VAE: decoder_sigma={decoder_sigma} must be > 0 and beta={beta} >= 0")
        self.in_features, self.latent = in_features, latent
        self.sigma, self.beta = float(decoder_sigma), float(beta)
        hidden = tuple(hidden)
        self.body = MLP(in_features, hidden[:-1], hidden[-1], activation=activation,
                        final_activation=activation, rngs=rngs) if hidden else None
        width = hidden[-1] if hidden else in_features
        self.mu_head = Dense(width, latent, rngs=rngs)
        self.logvar_head = Dense(width, latent, rngs=rngs)
        dec = hidden[::-1] if decoder_hidden is None else tuple(decoder_hidden)
        self.decoder = MLP(latent, dec, in_features, activation=activation, rngs=rngs)

    def encode(self, x: Array) -> tuple[Array, Array]:
        """(mu, logvar), each (B, latent)."""
        _check_flat(x, self.in_features, "VAE")
        h = x if self.body is None else self.body(x)
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z: Array) -> Array:
        return self.decoder(z)

    def __call__(self, x: Array) -> Array:
        """Deterministic reconstruction g(mu(x))."""
        return self.decode(self.encode(x)[0])

    @staticmethod
    def sample_z(key: Array, mu: Array, logvar: Array, num_samples: int = 1) -> Array:
        """Reparameterised draws (num_samples, B, latent)."""
        eps = jax.random.normal(key, (num_samples,) + mu.shape, mu.dtype)
        return mu + jnp.exp(0.5 * logvar) * eps

    def kl(self, x: Array) -> Array:
        """Analytic KL(q(z|x) || N(0, I)), shape (B,)."""
        mu, logvar = self.encode(x)
        return losses.kl_gaussian(mu, logvar, reduction="none")

    def elbo_terms(self, x: Array, key: Array, num_samples: int = 1) -> tuple[Array, Array]:
        """(E_q log p(x|z) estimated with ``num_samples`` draws, analytic KL), each (B,)."""
        mu, logvar = self.encode(x)
        z = self.sample_z(key, mu, logvar, num_samples)
        rec = jnp.mean(gaussian_log_likelihood(x[None], self.decode(z), self.sigma), axis=0)
        return rec, losses.kl_gaussian(mu, logvar, reduction="none")

    def elbo(self, x: Array, key: Array, num_samples: int = 1) -> Array:
        rec, kl = self.elbo_terms(x, key, num_samples)
        return rec - kl

    def loss(self, x: Array, key: Array, num_samples: int = 1) -> Array:
        """Batch mean of -(E_q log p(x|z) - beta * KL): the beta-VAE objective."""
        rec, kl = self.elbo_terms(x, key, num_samples)
        return jnp.mean(-rec + self.beta * kl)

    def log_likelihood(self, x: Array, key: Array, num_samples: int = 1000) -> Array:
        """Importance-sampled log p(x) with q(z|x) as proposal, shape (B,)."""
        mu, logvar = self.encode(x)
        z = self.sample_z(key, mu, logvar, num_samples)                      # (K, B, D)
        log_px_z = gaussian_log_likelihood(x[None], self.decode(z), self.sigma)
        log_pz = jnp.sum(-0.5 * jnp.square(z) - 0.5 * math.log(2 * math.pi), axis=-1)
        log_qz = jnp.sum(-0.5 * jnp.square(z - mu) * jnp.exp(-logvar) - 0.5 * logvar
                         - 0.5 * math.log(2 * math.pi), axis=-1)
        return jax.nn.logsumexp(log_px_z + log_pz - log_qz, axis=0) - math.log(num_samples)


# --------------------------------------------------------------------------------------------
# Set losses: Chamfer and Sinkhorn
# --------------------------------------------------------------------------------------------


def _sq_dist(x: Array, y: Array) -> Array:
    return jnp.sum(jnp.square(x[..., :, None, :] - y[..., None, :, :]), axis=-1)


def chamfer_distance(x: Array, x_mask: Array, y: Array, y_mask: Array | None = None) -> Array:
    """Symmetric Chamfer distance between point sets, shape (B,):

        mean_{i in x} min_{j in y} |x_i - y_j|^2 + mean_{j in y} min_{i in x} |x_i - y_j|^2

    over real points only (masks (B, N) / (B, M), y_mask None = all real). Invariant to the
    order of either set and zero when y is any permutation of x."""
    x_mask = jnp.asarray(x_mask, bool)
    y_mask = jnp.ones(y.shape[:-1], bool) if y_mask is None else jnp.asarray(y_mask, bool)
    d = _sq_dist(x, y)
    big = jnp.asarray(jnp.finfo(d.dtype).max / 4, d.dtype)
    pair = x_mask[..., :, None] & y_mask[..., None, :]
    d = jnp.where(pair, d, big)
    near_x = jnp.where(x_mask, jnp.min(d, axis=-1), 0.0)
    near_y = jnp.where(y_mask, jnp.min(d, axis=-2), 0.0)
    nx = jnp.maximum(jnp.sum(x_mask, -1), 1)
    ny = jnp.maximum(jnp.sum(y_mask, -1), 1)
    return jnp.sum(near_x, -1) / nx + jnp.sum(near_y, -1) / ny


def sinkhorn_cost(x: Array, a: Array, y: Array, b: Array, *, epsilon: float = 0.01,
                  num_iters: int = 100) -> Array:
    """Entropic optimal-transport cost OT_eps(a, b) between weighted point sets, shape (B,).

    x (B, N, D) with weights a (B, N) >= 0 (padding: weight 0), y (B, M, D) with weights b; each
    weight vector is normalised to unit sum. Ground cost |x_i - y_j|^2; ``num_iters``
    log-domain Sinkhorn iterations (Cuturi 2013). Returns <P, C> of the entropic plan P."""
    a = a / jnp.maximum(jnp.sum(a, -1, keepdims=True), 1e-30)
    b = b / jnp.maximum(jnp.sum(b, -1, keepdims=True), 1e-30)
    cost = _sq_dist(x, y)
    log_a = jnp.where(a > 0, jnp.log(jnp.where(a > 0, a, 1.0)), -jnp.inf)
    log_b = jnp.where(b > 0, jnp.log(jnp.where(b > 0, b, 1.0)), -jnp.inf)
    f = jnp.zeros_like(a)
    g = jnp.zeros_like(b)

    def body(_, fg):
        f, g = fg
        f = -epsilon * jax.nn.logsumexp(log_b[..., None, :] + (g[..., None, :] - cost) / epsilon,
                                        axis=-1)
        g = -epsilon * jax.nn.logsumexp(log_a[..., :, None] + (f[..., :, None] - cost) / epsilon,
                                        axis=-2)
        return f, g

    f, g = jax.lax.fori_loop(0, num_iters, body, (f, g))
    log_p = log_a[..., :, None] + log_b[..., None, :] + (f[..., :, None] + g[..., None, :]
                                                         - cost) / epsilon
    plan = jnp.exp(log_p)
    return jnp.sum(plan * cost, axis=(-2, -1))


def sinkhorn_divergence(x: Array, a: Array, y: Array, b: Array, *, epsilon: float = 0.01,
                        num_iters: int = 100) -> Array:
    """Debiased Sinkhorn divergence S(a, b) = OT(a, b) - OT(a, a)/2 - OT(b, b)/2 (Feydy et al.
    2019), shape (B,): zero when (y, b) is a permutation of (x, a), tends to the
    Wasserstein-2 cost (squared-distance EMD) as epsilon -> 0."""
    kw = dict(epsilon=epsilon, num_iters=num_iters)
    return (sinkhorn_cost(x, a, y, b, **kw) - 0.5 * sinkhorn_cost(x, a, x, a, **kw)
            - 0.5 * sinkhorn_cost(y, b, y, b, **kw))


# --------------------------------------------------------------------------------------------
# Set autoencoder
# --------------------------------------------------------------------------------------------


class SetAE(nnx.Module):
    """Permutation-invariant autoencoder for jet constituents.

    Input: features (B, N, F) and mask (B, N). Encoder: ``'deepsets'`` -- rho(sum_i phi(x_i))
    (``hepjax.graphs.blocks.DeepSets``), or ``'edgeconv'`` -- one EdgeConv block (kNN in the
    first ``coord_features`` features, no batch norm) then a mean pool and an MLP; both
    invariant to the order of the constituents and blind to padding. Decoder: an MLP from the
    latent vector to ``num_points`` points of F features plus one weight logit each; the set
    has no order, so the loss must not have one either:

    * ``'chamfer'``: :func:`chamfer_distance` on all F features (real input points vs the
      ``num_points`` decoded points);
    * ``'sinkhorn'``: :func:`sinkhorn_divergence` between the input constituents at their
      first ``coord_features`` features weighted by ``weights`` (e.g. pT fractions: an
      energy-mover's-distance-like loss, Komiske, Metodiev, Thaler, PRL 123 (2019) 041801) and
      the decoded points weighted by softmax(weight logits).
    """

    def __init__(self, in_features: int, latent: int = 16, *, num_points: int = 32,
                 encoder: str = "deepsets", phi_sizes: Sequence[int] = (64, 64),
                 hidden: Sequence[int] = (128,), loss: str = "chamfer", coord_features: int = 2,
                 k: int = 8, epsilon: float = 0.01, sinkhorn_iters: int = 50,
                 rngs: nnx.Rngs):
        if encoder not in ("deepsets", "edgeconv"):
            raise ValueError(f"SetAE: encoder={encoder!r}; valid: 'deepsets', 'edgeconv'")
        if loss not in ("chamfer", "sinkhorn"):
            raise ValueError(f"SetAE: loss={loss!r}; valid: 'chamfer', 'sinkhorn'")
        if not 1 <= coord_features <= in_features:
            raise ValueError(f"SetAE: coord_features={coord_features} must be in 1..{in_features}")
        self.in_features, self.latent, self.num_points = in_features, latent, num_points
        self.encoder_kind, self.loss_kind = encoder, loss
        self.coord_features, self.epsilon, self.iters = coord_features, epsilon, sinkhorn_iters
        if encoder == "deepsets":
            self.encoder = DeepSets(in_features, tuple(phi_sizes), tuple(hidden), latent,
                                    pooling="sum", rngs=rngs)
            self.edge = None
        else:
            self.edge = EdgeConv(in_features, tuple(phi_sizes), k=k, batch_norm=False, rngs=rngs)
            self.encoder = MLP(phi_sizes[-1], tuple(hidden), latent, rngs=rngs)
        self.decoder = MLP(latent, tuple(hidden)[::-1], num_points * (in_features + 1), rngs=rngs)

    def encode(self, x: Array, mask: Array) -> Array:
        if x.ndim != 3 or x.shape[-1] != self.in_features or tuple(mask.shape) != x.shape[:2]:
            raise ValueError(f"SetAE: expected features (batch, N, {self.in_features}) and mask "
                             f"(batch, N); got {tuple(x.shape)} and {tuple(jnp.shape(mask))}")
        mask = jnp.asarray(mask, bool)
        if self.edge is None:
            return self.encoder(x, mask)
        h = self.edge(x, mask, coords=x[..., :self.coord_features])
        return self.encoder(masked_pool(h, mask, "mean"))

    def decode(self, z: Array) -> tuple[Array, Array]:
        """(points (B, num_points, F), weights (B, num_points) summing to 1)."""
        out = self.decoder(z).reshape(z.shape[0], self.num_points, self.in_features + 1)
        return out[..., :-1], jax.nn.softmax(out[..., -1], axis=-1)

    def __call__(self, x: Array, mask: Array) -> tuple[Array, Array]:
        return self.decode(self.encode(x, mask))

    def set_loss(self, x: Array, mask: Array, points: Array, point_weights: Array,
                 weights: Array | None = None) -> Array:
        """Per-jet loss (B,) between the input set and a decoded (points, point_weights)."""
        mask = jnp.asarray(mask, bool)
        if self.loss_kind == "chamfer":
            return chamfer_distance(x, mask, points)
        c = self.coord_features
        w = mask.astype(x.dtype) if weights is None else jnp.where(mask, weights, 0.0)
        return sinkhorn_divergence(x[..., :c], w, points[..., :c], point_weights,
                                   epsilon=self.epsilon, num_iters=self.iters)

    def score(self, x: Array, mask: Array, weights: Array | None = None) -> Array:
        """Per-jet reconstruction loss (B,): the anomaly score."""
        points, pw = self(x, mask)
        return self.set_loss(x, mask, points, pw, weights)
