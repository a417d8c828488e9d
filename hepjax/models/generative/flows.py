"""Conditional normalising flows with exact log-likelihood: coupling layers with rational-quadratic
splines or affine transforms (CaloFlow: Krause & Shih, arXiv:2106.05285, which uses masked
autoregressive RQS flows; here coupling layers, whose inverse costs one pass, for fast sampling).

A flow maps data x to a latent z = f(x; c) of the same dimension D with a tractable Jacobian;
the log-likelihood is the change-of-variables formula

    log p(x | c) = log N(f(x; c); 0, 1) + log |det df/dx|.

``ConditionalFlow`` is a stack of ``n_layers`` coupling layers, each "permute, then transform the
second part conditioned on the first part and on c":

    y_p = x[perm];  y_a = x_p[:d];  y_b = g(x_p[d:]; theta(x_p[:d], c))

with theta from a ``ConditionalMLP`` (zero-initialised output: every layer starts near the
identity) and g elementwise:

* ``"spline"``: the monotonic rational-quadratic spline of Durkan, Bekasov, Murray, Papamakarios,
  "Neural spline flows" (arXiv:1906.04032), K bins on [-B, B], identity (linear tails) outside;
  per dimension 3K - 1 parameters (K widths, K heights, K - 1 interior derivatives; the boundary
  derivatives are 1 so the tails join smoothly). Its inverse solves a quadratic per dimension.
* ``"affine"``: RealNVP (Dinh, Sohl-Dickstein, Bengio, arXiv:1605.08803), y = x exp(s) + t with
  s = S tanh(s_raw / S) bounded by ``scale_bound``.

The permutations are fixed (drawn from ``perm_seed`` with numpy, stored as static tuples), so
they are part of the model's definition, not its parameters; log |det| of a permutation is 0.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hepjax.models.generative.nets import ConditionalMLP

Array = jax.Array

__all__ = ["rational_quadratic_spline", "affine_transform", "CouplingLayer", "ConditionalFlow",
           "flow_loss", "standard_normal_logpdf"]


def standard_normal_logpdf(z: Array) -> Array:
    """log N(z; 0, I) summed over the last axis."""
    return -0.5 * jnp.sum(z * z, -1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def _knots(raw: Array, bound: float, minimum: float) -> tuple[Array, Array]:
    """(K+1 knot positions on [-B, B], K bin sizes) from K unnormalised logits."""
    k = raw.shape[-1]
    frac = minimum + (1.0 - minimum * k) * jax.nn.softmax(raw, -1)
    cum = jnp.concatenate([jnp.zeros_like(frac[..., :1]), jnp.cumsum(frac, -1)], -1)
    knots = 2.0 * bound * cum - bound
    knots = knots.at[..., 0].set(-bound).at[..., -1].set(bound)
    return knots, knots[..., 1:] - knots[..., :-1]


def rational_quadratic_spline(x: Array, w_raw: Array, h_raw: Array, d_raw: Array, *,
                              bound: float = 4.0, inverse: bool = False,
                              min_bin: float = 1e-3, min_derivative: float = 1e-3
                              ) -> tuple[Array, Array]:
    """Elementwise monotonic rational-quadratic spline (Durkan et al. 2019, eqs. 4-6 and the
    appendix's inverse), identity outside [-bound, bound].

    x (..., ) values; w_raw, h_raw (..., K) and d_raw (..., K-1) unconstrained parameters.
    Returns (y, log |dy/dx|) elementwise for the forward map, or (x, log |dx/dy|) with
    ``inverse=True`` (then the first argument is y)."""
    k = w_raw.shape[-1]
    xk_all, widths = _knots(w_raw, bound, min_bin)
    yk_all, heights = _knots(h_raw, bound, min_bin)
    d = min_derivative + jax.nn.softplus(d_raw)
    ones = jnp.ones_like(d[..., :1])
    d = jnp.concatenate([ones, d, ones], -1)           # K + 1 knot derivatives, 1 at the ends

    inside = (x >= -bound) & (x <= bound)
    xc = jnp.clip(x, -bound, bound)
    grid = yk_all if inverse else xk_all
    idx = jnp.clip(jnp.sum(xc[..., None] >= grid, -1) - 1, 0, k - 1)
    onehot = (jnp.arange(k) == idx[..., None]).astype(x.dtype)   # a gather as a dot (fast on CPU)

    def take(a):
        return jnp.sum(a[..., :k] * onehot, -1)

    x0, w, y0, h = take(xk_all), take(widths), take(yk_all), take(heights)
    d0, d1 = take(d), take(d[..., 1:])
    s = h / w
    if not inverse:
        xi = (xc - x0) / w
        om = xi * (1.0 - xi)
        den = s + (d1 + d0 - 2.0 * s) * om
        out = y0 + h * (s * xi * xi + d0 * om) / den
    else:
        dy = xc - y0
        c2 = d1 + d0 - 2.0 * s
        a = h * (s - d0) + dy * c2
        b = h * d0 - dy * c2
        c = -s * dy
        disc = jnp.maximum(b * b - 4.0 * a * c, 0.0)
        xi = jnp.clip(2.0 * c / (-b - jnp.sqrt(disc)), 0.0, 1.0)
        out = x0 + xi * w
        om = xi * (1.0 - xi)
        den = s + c2 * om
    log_grad = (2.0 * jnp.log(s) + jnp.log(d1 * xi * xi + 2.0 * s * om + d0 * (1.0 - xi) ** 2)
                - 2.0 * jnp.log(den))
    if inverse:
        log_grad = -log_grad
    return jnp.where(inside, out, x), jnp.where(inside, log_grad, 0.0)


def affine_transform(x: Array, shift: Array, raw_scale: Array, *, scale_bound: float = 3.0,
                     inverse: bool = False) -> tuple[Array, Array]:
    """y = x exp(s) + shift with s = scale_bound tanh(raw_scale / scale_bound); returns
    (y, s) or, with ``inverse=True``, ((x - shift) exp(-s), -s)."""
    s = scale_bound * jnp.tanh(raw_scale / scale_bound)
    if inverse:
        return (x - shift) * jnp.exp(-s), -s
    return x * jnp.exp(s) + shift, s


class CouplingLayer(nnx.Module):
    """Permute by ``perm``, then transform the last D - D//2 coordinates conditioned on the first
    D//2 and on the condition."""

    def __init__(self, dim: int, cond_features: int, perm: tuple[int, ...], *,
                 kind: str = "spline", hidden=(128, 128), bins: int = 8, bound: float = 4.0,
                 scale_bound: float = 3.0, activation: str = "silu", rngs: nnx.Rngs):
        if kind not in ("spline", "affine"):
            raise ValueError(f"coupling kind {kind!r}: use 'spline' or 'affine'")
        if dim < 2:
            raise ValueError("a coupling layer needs dim >= 2")
        self.dim, self.kind, self.bins = int(dim), kind, int(bins)
        self.bound, self.scale_bound = float(bound), float(scale_bound)
        self.perm = tuple(int(p) for p in perm)
        self.inv_perm = tuple(int(i) for i in np.argsort(np.asarray(perm)))
        self.d_a = dim // 2
        d_b = dim - self.d_a
        per = 3 * bins - 1 if kind == "spline" else 2
        self.net = ConditionalMLP(self.d_a, cond_features, hidden, d_b * per,
                                  activation=activation, zero_init_output=True, rngs=rngs)

    def _params(self, a: Array, cond: Array | None):
        p = self.net(a, cond)
        p = p.reshape(p.shape[:-1] + (self.dim - self.d_a, -1))
        if self.kind == "spline":
            k = self.bins
            return p[..., :k], p[..., k:2 * k], p[..., 2 * k:]
        return p[..., 0], p[..., 1]

    def _transform(self, b, params, inverse):
        if self.kind == "spline":
            return rational_quadratic_spline(b, *params, bound=self.bound, inverse=inverse)
        return affine_transform(b, *params, scale_bound=self.scale_bound, inverse=inverse)

    def forward(self, x: Array, cond: Array | None) -> tuple[Array, Array]:
        """(y, log |det dy/dx|) per row."""
        xp = x[..., jnp.asarray(self.perm)]
        a, b = xp[..., :self.d_a], xp[..., self.d_a:]
        yb, logdet = self._transform(b, self._params(a, cond), False)
        return jnp.concatenate([a, yb], -1), jnp.sum(logdet, -1)

    def inverse(self, y: Array, cond: Array | None) -> tuple[Array, Array]:
        """(x, log |det dx/dy|) per row."""
        a, yb = y[..., :self.d_a], y[..., self.d_a:]
        b, logdet = self._transform(yb, self._params(a, cond), True)
        xp = jnp.concatenate([a, b], -1)
        return xp[..., jnp.asarray(self.inv_perm)], jnp.sum(logdet, -1)


class ConditionalFlow(nnx.Module):
    """x (B, D), cond (B, C) -> z = f(x; c) through ``n_layers`` coupling layers.

    ``log_prob(x, cond)`` is exact; ``sample(key, cond)`` draws one x per row of cond by
    inverting the stack on z ~ N(0, I) (``temperature`` scales z)."""

    def __init__(self, dim: int, cond_features: int, *, n_layers: int = 8, kind: str = "spline",
                 hidden=(128, 128), bins: int = 8, bound: float = 4.0, scale_bound: float = 3.0,
                 activation: str = "silu", perm_seed: int = 0, rngs: nnx.Rngs):
        self.dim, self.cond_features = int(dim), int(cond_features)
        prng = np.random.default_rng(perm_seed)
        perms = [tuple(range(dim))] + [tuple(prng.permutation(dim).tolist())
                                      for _ in range(n_layers - 1)]
        self.layers = nnx.List([
            CouplingLayer(dim, cond_features, perms[i], kind=kind, hidden=hidden, bins=bins,
                          bound=bound, scale_bound=scale_bound, activation=activation, rngs=rngs)
            for i in range(n_layers)])

    def forward(self, x: Array, cond: Array | None = None) -> tuple[Array, Array]:
        """Data to latent: (z, log |det dz/dx|)."""
        total = jnp.zeros(x.shape[:-1], x.dtype)
        for layer in self.layers:
            x, ld = layer.forward(x, cond)
            total = total + ld
        return x, total

    def inverse(self, z: Array, cond: Array | None = None) -> tuple[Array, Array]:
        """Latent to data: (x, log |det dx/dz|)."""
        total = jnp.zeros(z.shape[:-1], z.dtype)
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z, cond)
            total = total + ld
        return z, total

    def log_prob(self, x: Array, cond: Array | None = None) -> Array:
        z, logdet = self.forward(x, cond)
        return standard_normal_logpdf(z) + logdet

    def sample(self, key: Array, cond: Array, temperature: float = 1.0) -> Array:
        z = temperature * jax.random.normal(key, cond.shape[:-1] + (self.dim,))
        return self.inverse(z, cond)[0]


def flow_loss(model: ConditionalFlow, batch: tuple[Array, Array], key: Array | None = None
              ) -> Array:
    """Mean negative log-likelihood per dimension (nats) of a batch (x, cond)."""
    del key
    x, cond = batch
    return -jnp.mean(model.log_prob(x, cond)) / x.shape[-1]
