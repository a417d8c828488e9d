"""A conditional VAE used as a generator (Kingma & Welling, arXiv:1312.6114), with the loss of
``hepjax.losses.vae_loss`` (reconstruction MSE + beta KL to N(0, 1)). Samples decode z ~ N(0, I)
with the condition; the decoder mean is the sample (the MSE decoder's noise is not added), so the
VAE is the blurriest of the models: a baseline."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax.losses import vae_loss as _vae_loss
from hepjax.models.generative.nets import ConditionalMLP

Array = jax.Array

__all__ = ["ConditionalVAE", "cvae_loss"]


class ConditionalVAE(nnx.Module):
    def __init__(self, dim: int, cond_features: int, *, latent: int = 16, hidden=(256, 256),
                 beta: float = 1.0, rngs: nnx.Rngs):
        self.dim, self.latent, self.beta = int(dim), int(latent), float(beta)
        self.encoder = ConditionalMLP(dim, cond_features, hidden, 2 * latent, rngs=rngs)
        self.decoder = ConditionalMLP(latent, cond_features, tuple(reversed(hidden)), dim,
                                      rngs=rngs)

    def encode(self, x, cond):
        h = self.encoder(x, cond)
        return h[..., :self.latent], jnp.clip(h[..., self.latent:], -10.0, 5.0)

    def sample(self, key: Array, cond: Array) -> Array:
        return self.decoder(jax.random.normal(key, cond.shape[:-1] + (self.latent,)), cond)


def cvae_loss(model: ConditionalVAE, batch, key: Array) -> Array:
    x, cond = batch
    mu, logvar = model.encode(x, cond)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
    return _vae_loss(model.decoder(z, cond), x, mu, logvar, beta=model.beta).total / x.shape[-1]
