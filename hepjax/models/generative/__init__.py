"""Generative models for fast simulation (issue 27, items 1-2): conditional normalising flows
(rational-quadratic-spline or affine couplings), a DDPM/DDIM diffusion model, a WGAN-GP and a
conditional VAE, each with its training loss and a jit-compiled, seedable sampler; the
calorimeter shower data and preprocessing (``calo_data``) and the CaloChallenge evaluation
(``metrics``). The experiment is ``experiments/generative``.

Conditions are (B, C) arrays (the calorimeter models use C = 1, the scaled ln E_inc); every
sampler takes a ``jax.random`` key and returns one sample per row of the condition.
"""
from hepjax.models.generative import calo_data, diffusion, flows, gan, metrics, training, vae
from hepjax.models.generative.diffusion import (Diffusion, ddim_sample, ddpm_sample,
                                                diffusion_loss)
from hepjax.models.generative.flows import ConditionalFlow, flow_loss
from hepjax.models.generative.gan import (Critic, Generator, critic_loss, generator_loss,
                                          gradient_penalty)
from hepjax.models.generative.training import fit, fit_wgan, make_sampler
from hepjax.models.generative.vae import ConditionalVAE, cvae_loss

__all__ = ["calo_data", "diffusion", "flows", "gan", "metrics", "training", "vae",
           "ConditionalFlow", "flow_loss", "Diffusion", "diffusion_loss", "ddpm_sample",
           "ddim_sample", "Generator", "Critic", "gradient_penalty", "critic_loss",
           "generator_loss", "ConditionalVAE", "cvae_loss", "fit", "fit_wgan", "make_sampler"]
