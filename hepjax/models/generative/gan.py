"""Conditional Wasserstein GAN with gradient penalty (Gulrajani, Ahmed, Arjovsky, Dumoulin,
Courville, "Improved training of Wasserstein GANs", arXiv:1704.00028), conditioned on the
incident energy as in CaloGAN (Paganini, de Oliveira, Nachman, PRL 120 (2018) 042003, whose
generator and discriminator both see the requested energy).

Critic loss (the paper's algorithm 1, lambda = 10):

    L_D = E[D(G(z, c), c)] - E[D(x, c)] + lambda E[(|grad_xhat D(xhat, c)|_2 - 1)^2]
          + drift E[D(x, c)^2]

with xhat = u x + (1 - u) G(z, c), u ~ U(0, 1) per example (the optional ``drift`` term of
Karras et al., arXiv:1710.10196, keeps D from drifting; 0 disables it). Generator loss
L_G = -E[D(G(z, c), c)]. The critic has no batch normalisation (the penalty is per example).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax.models.generative.nets import ConditionalMLP

Array = jax.Array

__all__ = ["Generator", "Critic", "interpolate", "gradient_penalty", "critic_loss",
           "generator_loss"]


class Generator(nnx.Module):
    def __init__(self, dim: int, cond_features: int, *, latent: int = 64, hidden=(256, 256, 256),
                 activation: str = "leaky_relu", rngs: nnx.Rngs):
        self.dim, self.latent = int(dim), int(latent)
        self.net = ConditionalMLP(latent, cond_features, hidden, dim, activation=activation,
                                  rngs=rngs)

    def __call__(self, z: Array, cond: Array) -> Array:
        return self.net(z, cond)

    def sample(self, key: Array, cond: Array) -> Array:
        return self(jax.random.normal(key, cond.shape[:-1] + (self.latent,)), cond)


class Critic(nnx.Module):
    def __init__(self, dim: int, cond_features: int, *, hidden=(256, 256, 256),
                 activation: str = "leaky_relu", layer_norm: bool = False, rngs: nnx.Rngs):
        self.net = ConditionalMLP(dim, cond_features, hidden, 1, activation=activation,
                                  layer_norm=layer_norm, rngs=rngs)

    def __call__(self, x: Array, cond: Array) -> Array:
        """(B,) critic values."""
        return self.net(x, cond)[..., 0]


def interpolate(real: Array, fake: Array, u: Array) -> Array:
    """xhat = u real + (1 - u) fake with u (B,)."""
    u = u.reshape(u.shape + (1,) * (real.ndim - 1))
    return u * real + (1.0 - u) * fake


def gradient_penalty(critic, real: Array, fake: Array, cond: Array, key: Array,
                     weight: float = 10.0) -> Array:
    """weight * mean over the batch of (|grad_x D(xhat, c)|_2 - 1)^2. The critic treats examples
    independently, so the gradient of the summed outputs is each example's own gradient."""
    u = jax.random.uniform(key, real.shape[:1], real.dtype)
    xhat = interpolate(real, fake, u)
    grads = jax.grad(lambda x: jnp.sum(critic(x, cond)))(xhat)
    norm = jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, -1) + 1e-12)
    return weight * jnp.mean((norm - 1.0) ** 2)


def critic_loss(critic, generator, batch: tuple[Array, Array], key: Array, *,
                gp_weight: float = 10.0, drift: float = 1e-3) -> tuple[Array, dict]:
    """(L_D, parts) for a batch (real x, cond); fakes are drawn inside (no gradient to G)."""
    real, cond = batch
    kz, ku = jax.random.split(key)
    fake = jax.lax.stop_gradient(generator.sample(kz, cond))
    d_real, d_fake = critic(real, cond), critic(fake, cond)
    gp = gradient_penalty(critic, real, fake, cond, ku, gp_weight)
    w = jnp.mean(d_real) - jnp.mean(d_fake)
    loss = -w + gp + drift * jnp.mean(d_real ** 2)
    return loss, {"wasserstein": w, "gp": gp}


def generator_loss(generator, critic, cond: Array, key: Array) -> Array:
    return -jnp.mean(critic(generator.sample(key, cond), cond))
