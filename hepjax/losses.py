"""Loss functions for HEP machine learning, in pure ``jax.numpy``.

Every loss here is a pure function of arrays. It first computes a *per-example* loss ``l`` and
then reduces it with the optional ``mask`` and per-example ``weights`` under an explicit
``reduction``:

* ``'sum'``:  ``sum(w * m * l)``
* ``'mean'``: ``sum(w * m * l) / sum(w * m)``; where the denominator is exactly zero (everything
  masked out, or all weights zero) the result is ``0.0``, not NaN, and its gradient is zero.
* ``'none'``: the per-example array ``w * m * l`` (masked entries are exactly 0), so that
  ``loss(..., reduction='none').sum() == loss(..., reduction='sum')``.

``mask`` is read as boolean (``True``/non-zero = keep). Masked entries are removed with
``jnp.where``, so NaN or inf in a padded entry's *value* does not leak into the reduction; its
gradient is zero as long as the per-example loss has a finite derivative there. ``weights`` are
real (negative event weights, as from NLO generators, are allowed; with ``'mean'`` the result is
then a ratio of signed sums).

``mask`` and ``weights`` must have exactly the per-example loss shape, or a *leading prefix* of it
(e.g. ``weights`` of shape ``(B,)`` for an element-wise loss of shape ``(B, D)``); in the prefix
case they are broadcast over the trailing axes, and ``'mean'`` is then the weighted mean over all
kept elements. Anything else raises a ``ValueError`` naming the argument and both shapes.

Classification losses take *logits* and are written in log-sigmoid / logsumexp form, so values and
gradients stay finite and correct at extreme logits (``|x| = 1e4`` in float32).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "REDUCTIONS",
    "reduce_loss",
    "mse",
    "binary_cross_entropy",
    "categorical_cross_entropy",
    "gaussian_nll",
    "kl_gaussian",
    "kl_diag_gaussians",
    "kl_categorical",
    "VAELoss",
    "vae_loss",
    "log_ratio_loss",
]

REDUCTIONS = ("mean", "sum", "none")

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Reduction
# --------------------------------------------------------------------------------------------


def _check_prefix(name: str, arr: jax.Array, loss_shape: tuple[int, ...], what: str) -> None:
    shape = tuple(arr.shape)
    if shape != tuple(loss_shape[: len(shape)]) or len(shape) > len(loss_shape):
        raise ValueError(
            f"{name} has shape {shape}, but the per-example loss ({what}) has shape "
            f"{tuple(loss_shape)}; {name} must have that shape or a leading prefix of it."
        )


def reduce_loss(
    loss: jax.Array,
    *,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduction: str = "mean",
    what: str = "loss",
) -> jax.Array:
    """Reduce a per-example loss with an optional mask and weights.

    Args:
      loss: per-example (or per-element) loss, shape ``S``.
      mask: optional, shape ``S`` or a leading prefix of ``S``; boolean or numeric (non-zero =
        keep).
      weights: optional real weights, shape ``S`` or a leading prefix of ``S``.
      reduction: ``'mean'`` (``sum(w*m*l)/sum(w*m)``, 0 where the denominator is 0), ``'sum'``
        (``sum(w*m*l)``) or ``'none'`` (``w*m*l`` of shape ``S``, masked entries 0).
      what: a short description of ``loss`` used in error messages.

    Returns:
      A scalar for ``'mean'``/``'sum'``, an array of shape ``S`` for ``'none'``.

    Raises:
      ValueError: unknown ``reduction``, or ``mask``/``weights`` shapes that are not ``S`` or a
        leading prefix of ``S``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not one of {REDUCTIONS}.")
    loss = jnp.asarray(loss)
    shape = tuple(loss.shape)

    def expand(a: jax.Array) -> jax.Array:
        return jnp.broadcast_to(a.reshape(a.shape + (1,) * (len(shape) - a.ndim)), shape)

    if mask is not None:
        mask = jnp.asarray(mask)
        _check_prefix("mask", mask, shape, what)
        keep = expand(mask.astype(bool))
    else:
        keep = None
    if weights is not None:
        weights = jnp.asarray(weights)
        _check_prefix("weights", weights, shape, what)
        w = expand(weights.astype(loss.dtype))
    else:
        w = jnp.ones(shape, loss.dtype)

    wl = w * loss
    if keep is not None:
        wl = jnp.where(keep, wl, jnp.zeros((), loss.dtype))
        w = jnp.where(keep, w, jnp.zeros((), loss.dtype))
    if reduction == "none":
        return wl
    total = jnp.sum(wl)
    if reduction == "sum":
        return total
    denom = jnp.sum(w)
    zero = denom == 0
    return jnp.where(zero, jnp.zeros((), total.dtype), total / jnp.where(zero, 1.0, denom))


def _check_same_shape(**arrays: jax.Array) -> None:
    items = list(arrays.items())
    name0, a0 = items[0]
    for name, a in items[1:]:
        if tuple(a.shape) != tuple(a0.shape):
            raise ValueError(
                f"{name} has shape {tuple(a.shape)} but {name0} has shape {tuple(a0.shape)}; "
                "they must match."
            )


# --------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------


def mse(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """Mean squared error, element-wise ``(predictions - targets)**2``.

    Args:
      predictions: shape ``S`` (e.g. ``(B,)`` or ``(B, D)``), in the units of the target
        (e.g. GeV).
      targets: shape ``S``.
      mask, weights, reduction: see the module docstring; shape ``S`` or a leading prefix.

    Returns:
      Scalar (units squared) for ``'mean'``/``'sum'``, shape ``S`` for ``'none'``.
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    _check_same_shape(predictions=predictions, targets=targets)
    loss = jnp.square(predictions - targets)
    return reduce_loss(loss, mask=mask, weights=weights, reduction=reduction, what="mse")


def gaussian_nll(
    mean: jax.Array,
    log_var: jax.Array,
    targets: jax.Array,
    *,
    include_constant: bool = False,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """Negative log-likelihood of ``targets`` under ``Normal(mean, exp(log_var))``, element-wise.

    Parametrised by the natural log of the *variance*, which is unconstrained and keeps the loss
    smooth::

        l = 0.5 * (log_var + (targets - mean)**2 * exp(-log_var)) [+ 0.5 * log(2*pi)]

    Args:
      mean: predicted mean, shape ``S``, units of the target.
      log_var: predicted ``log(sigma**2)``, shape ``S`` (sigma in units of the target).
      targets: shape ``S``.
      include_constant: add ``0.5 * log(2*pi)`` per element, making ``l`` the exact NLL
        (it does not change gradients).
      mask, weights, reduction: see the module docstring; shape ``S`` or a leading prefix.

    Returns:
      Scalar for ``'mean'``/``'sum'``, shape ``S`` for ``'none'``.
    """
    mean, log_var, targets = jnp.asarray(mean), jnp.asarray(log_var), jnp.asarray(targets)
    _check_same_shape(mean=mean, log_var=log_var, targets=targets)
    loss = 0.5 * (log_var + jnp.square(targets - mean) * jnp.exp(-log_var))
    if include_constant:
        loss = loss + _HALF_LOG_2PI
    return reduce_loss(loss, mask=mask, weights=weights, reduction=reduction, what="gaussian_nll")


def log_ratio_loss(
    log_correction: jax.Array,
    reco_energy: jax.Array,
    true_energy: jax.Array,
    *,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """Squared error in log space for learning a multiplicative jet energy correction.

    The network predicts ``log_correction = log(c)`` so that ``c * reco_energy`` estimates
    ``true_energy``::

        l = (log_correction - log(true_energy / reco_energy))**2

    The loss is scale-free (a 10% miss costs the same at 30 GeV and at 3 TeV) and ``c`` is
    positive by construction. The corrected energy is ``exp(log_correction) * reco_energy``.

    Args:
      log_correction: predicted ``log(c)``, shape ``S``, dimensionless.
      reco_energy: reconstructed energy (or pT), shape ``S``, GeV, must be > 0.
      true_energy: true (generator-level) energy (or pT), shape ``S``, GeV, must be > 0.
        Non-positive energies give NaN (not clipped): mask them out or remove them upstream.
      mask, weights, reduction: see the module docstring; shape ``S`` or a leading prefix.

    Returns:
      Scalar for ``'mean'``/``'sum'``, shape ``S`` for ``'none'``.
    """
    log_correction = jnp.asarray(log_correction)
    reco_energy, true_energy = jnp.asarray(reco_energy), jnp.asarray(true_energy)
    _check_same_shape(
        log_correction=log_correction, reco_energy=reco_energy, true_energy=true_energy
    )
    target = jnp.log(true_energy) - jnp.log(reco_energy)
    loss = jnp.square(log_correction - target)
    return reduce_loss(loss, mask=mask, weights=weights, reduction=reduction, what="log_ratio_loss")


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


def binary_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """Binary cross entropy from logits, element-wise, in log-sigmoid form.

    ``l = -(y * log_sigmoid(x) + (1 - y) * log_sigmoid(-x))``, which is exact and finite for any
    finite logit (e.g. ``l(x=1e4, y=0) = 1e4``) with gradient ``sigmoid(x) - y``.

    Args:
      logits: shape ``S``, real.
      labels: shape ``S``, targets in ``[0, 1]`` (hard 0/1 or soft). Not range-checked (it
        cannot be under jit); values outside ``[0, 1]`` give a meaningless loss.
      mask, weights, reduction: see the module docstring; shape ``S`` or a leading prefix.

    Returns:
      Scalar (nats) for ``'mean'``/``'sum'``, shape ``S`` for ``'none'``.
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    _check_same_shape(logits=logits, labels=labels)
    labels = labels.astype(logits.dtype)
    loss = -(labels * jax.nn.log_sigmoid(logits) + (1.0 - labels) * jax.nn.log_sigmoid(-logits))
    return reduce_loss(
        loss, mask=mask, weights=weights, reduction=reduction, what="binary_cross_entropy"
    )


def categorical_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """Categorical (softmax) cross entropy from logits, per example.

    ``l = -sum_c t_c * log_softmax(logits)_c`` with ``log_softmax = logits - logsumexp(logits)``.

    Args:
      logits: shape ``(*B, C)``.
      labels: either integer class indices of shape ``B`` (values in ``[0, C)``; an index out
        of range, including negative ones, gives NaN for that example, so mask padded
        entries), or floating targets of shape ``(*B, C)`` (one-hot or soft, each row summing
        to 1; not checked). The dtype decides which.
      mask, weights, reduction: see the module docstring; shape ``B`` or a leading prefix.

    Returns:
      Scalar (nats) for ``'mean'``/``'sum'``, shape ``B`` for ``'none'``.
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.ndim < 1:
        raise ValueError(f"logits must have a class axis, shape (*B, C); got {logits.shape}.")
    log_p = jax.nn.log_softmax(logits, axis=-1)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if tuple(labels.shape) != tuple(logits.shape[:-1]):
            raise ValueError(
                f"integer labels have shape {tuple(labels.shape)} but logits have shape "
                f"{tuple(logits.shape)}; integer labels must have shape logits.shape[:-1] = "
                f"{tuple(logits.shape[:-1])}."
            )
        picked = jnp.take_along_axis(
            log_p,
            labels[..., None],
            axis=-1,
            mode="fill",
            fill_value=jnp.nan,
            wrap_negative_indices=False,
        )[..., 0]
        loss = -picked
    elif jnp.issubdtype(labels.dtype, jnp.floating):
        if tuple(labels.shape) != tuple(logits.shape):
            raise ValueError(
                f"floating (one-hot/soft) targets have shape {tuple(labels.shape)} but logits "
                f"have shape {tuple(logits.shape)}; they must match (for class indices pass an "
                "integer array of shape logits.shape[:-1])."
            )
        loss = -jnp.sum(labels.astype(log_p.dtype) * log_p, axis=-1)
    else:
        raise ValueError(
            f"labels must be integer class indices or floating targets; got dtype {labels.dtype}."
        )
    return reduce_loss(
        loss, mask=mask, weights=weights, reduction=reduction, what="categorical_cross_entropy"
    )


# --------------------------------------------------------------------------------------------
# KL divergences and the VAE loss
# --------------------------------------------------------------------------------------------


def kl_gaussian(
    mu: jax.Array,
    logvar: jax.Array,
    *,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """KL divergence ``KL(N(mu, diag(exp(logvar))) || N(0, 1))``, summed over the latent axis.

    ``l = 0.5 * sum_d (exp(logvar) + mu**2 - 1 - logvar)``.

    Args:
      mu: shape ``(*B, D)``, D latent dimensions.
      logvar: ``log(sigma**2)``, shape ``(*B, D)``.
      mask, weights, reduction: see the module docstring; shape ``B`` or a leading prefix.

    Returns:
      Scalar (nats) for ``'mean'``/``'sum'``, shape ``B`` for ``'none'``.
    """
    mu, logvar = jnp.asarray(mu), jnp.asarray(logvar)
    _check_same_shape(mu=mu, logvar=logvar)
    if mu.ndim < 1:
        raise ValueError(f"mu must have a latent axis, shape (*B, D); got {mu.shape}.")
    loss = 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar, axis=-1)
    return reduce_loss(loss, mask=mask, weights=weights, reduction=reduction, what="kl_gaussian")


def kl_diag_gaussians(
    mu_p: jax.Array,
    logvar_p: jax.Array,
    mu_q: jax.Array,
    logvar_q: jax.Array,
    *,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """KL divergence ``KL(p || q)`` between diagonal Gaussians, summed over the latent axis.

    ``l = 0.5 * sum_d (logvar_q - logvar_p + (exp(logvar_p) + (mu_p - mu_q)**2) * exp(-logvar_q)
    - 1)``. With ``mu_q = logvar_q = 0`` this is :func:`kl_gaussian`.

    Args:
      mu_p, logvar_p: mean and ``log(sigma**2)`` of p, shape ``(*B, D)``.
      mu_q, logvar_q: mean and ``log(sigma**2)`` of q, shape ``(*B, D)``.
      mask, weights, reduction: see the module docstring; shape ``B`` or a leading prefix.

    Returns:
      Scalar (nats) for ``'mean'``/``'sum'``, shape ``B`` for ``'none'``.
    """
    mu_p, logvar_p = jnp.asarray(mu_p), jnp.asarray(logvar_p)
    mu_q, logvar_q = jnp.asarray(mu_q), jnp.asarray(logvar_q)
    _check_same_shape(mu_p=mu_p, logvar_p=logvar_p, mu_q=mu_q, logvar_q=logvar_q)
    if mu_p.ndim < 1:
        raise ValueError(f"mu_p must have a latent axis, shape (*B, D); got {mu_p.shape}.")
    per_dim = (
        logvar_q
        - logvar_p
        + (jnp.exp(logvar_p) + jnp.square(mu_p - mu_q)) * jnp.exp(-logvar_q)
        - 1.0
    )
    loss = 0.5 * jnp.sum(per_dim, axis=-1)
    return reduce_loss(
        loss, mask=mask, weights=weights, reduction=reduction, what="kl_diag_gaussians"
    )


def kl_categorical(
    logits_p: jax.Array,
    logits_q: jax.Array,
    *,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """KL divergence ``KL(p || q) = sum_c p_c (log p_c - log q_c)`` between categoricals.

    ``p = softmax(logits_p)`` and ``q = softmax(logits_q)``, computed with ``log_softmax`` so it
    is finite for extreme logits.

    Args:
      logits_p: shape ``(*B, C)``.
      logits_q: shape ``(*B, C)``.
      mask, weights, reduction: see the module docstring; shape ``B`` or a leading prefix.

    Returns:
      Scalar (nats) for ``'mean'``/``'sum'``, shape ``B`` for ``'none'``.
    """
    logits_p, logits_q = jnp.asarray(logits_p), jnp.asarray(logits_q)
    _check_same_shape(logits_p=logits_p, logits_q=logits_q)
    if logits_p.ndim < 1:
        raise ValueError(f"logits_p must have a class axis, shape (*B, C); got {logits_p.shape}.")
    log_p = jax.nn.log_softmax(logits_p, axis=-1)
    log_q = jax.nn.log_softmax(logits_q, axis=-1)
    loss = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    return reduce_loss(loss, mask=mask, weights=weights, reduction=reduction, what="kl_categorical")


class VAELoss(NamedTuple):
    """Result of :func:`vae_loss`: ``total = reconstruction + beta * kl``, each reduced alike."""

    total: jax.Array
    reconstruction: jax.Array
    kl: jax.Array


def vae_loss(
    reconstruction: jax.Array,
    targets: jax.Array,
    mu: jax.Array,
    logvar: jax.Array,
    *,
    beta: float = 1.0,
    reconstruction_loss: str = "mse",
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduction: str = "mean",
) -> VAELoss:
    """The (beta-)VAE loss: reconstruction + ``beta`` * KL to a standard normal prior.

    Per example (batch shape ``B = mu.shape[:-1]``)::

        rec = sum over the feature axes of  (reconstruction - targets)**2     ('mse')
                                       or  BCE(logits=reconstruction, targets)  ('bce')
        kl  = 0.5 * sum_d (exp(logvar) + mu**2 - 1 - logvar)
        total = rec + beta * kl

    With ``'mse'`` this is the negative ELBO of a Gaussian decoder of variance 1/2 up to a
    constant; with ``'bce'`` that of a Bernoulli decoder. Each part is reduced with the same
    ``mask``/``weights``/``reduction``, so ``total == reconstruction + beta * kl`` holds for the
    returned values too.

    Args:
      reconstruction: decoder output (values for ``'mse'``, logits for ``'bce'``), shape
        ``(*B, *F)``.
      targets: shape ``(*B, *F)``; in ``[0, 1]`` for ``'bce'``.
      mu: encoder mean, shape ``(*B, D)``.
      logvar: encoder ``log(sigma**2)``, shape ``(*B, D)``.
      beta: weight of the KL term (beta-VAE), a Python float or scalar array.
      reconstruction_loss: ``'mse'`` or ``'bce'``.
      mask, weights, reduction: see the module docstring; shape ``B`` or a leading prefix.

    Returns:
      ``VAELoss(total, reconstruction, kl)``: scalars for ``'mean'``/``'sum'``, arrays of shape
      ``B`` for ``'none'``.
    """
    reconstruction, targets = jnp.asarray(reconstruction), jnp.asarray(targets)
    mu, logvar = jnp.asarray(mu), jnp.asarray(logvar)
    _check_same_shape(reconstruction=reconstruction, targets=targets)
    _check_same_shape(mu=mu, logvar=logvar)
    if mu.ndim < 1:
        raise ValueError(f"mu must have a latent axis, shape (*B, D); got {mu.shape}.")
    batch = tuple(mu.shape[:-1])
    if tuple(reconstruction.shape[: len(batch)]) != batch:
        raise ValueError(
            f"reconstruction has shape {tuple(reconstruction.shape)} and mu has shape "
            f"{tuple(mu.shape)}; the leading (batch) axes of reconstruction must equal "
            f"mu.shape[:-1] = {batch}."
        )
    if reconstruction_loss == "mse":
        per_elem = jnp.square(reconstruction - targets)
    elif reconstruction_loss == "bce":
        y = targets.astype(reconstruction.dtype)
        per_elem = -(
            y * jax.nn.log_sigmoid(reconstruction) + (1.0 - y) * jax.nn.log_sigmoid(-reconstruction)
        )
    else:
        raise ValueError(
            f"reconstruction_loss={reconstruction_loss!r} is not one of ('mse', 'bce')."
        )
    feature_axes = tuple(range(len(batch), reconstruction.ndim))
    rec = jnp.sum(per_elem, axis=feature_axes)
    kl = 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar, axis=-1)
    kw = dict(mask=mask, weights=weights, reduction=reduction)
    rec_r = reduce_loss(rec, what="vae reconstruction", **kw)
    kl_r = reduce_loss(kl, what="vae kl", **kw)
    return VAELoss(total=rec_r + beta * kl_r, reconstruction=rec_r, kl=kl_r)
