"""A per-row MLP of 1x1 layers with training-mode BatchNorm and exact GELU, computed tile by tile.

    h_0 = x,   z_l = h_{l-1} W_l,   h_l = gelu(gamma_l (z_l - mean_l) / sqrt(var_l + eps) + beta_l)

over R rows (e.g. the 10^6 particle pairs of a ParT batch), with the batch statistics mean_l,
var_l taken over the rows whose mask is True. Padded rows give h_l = 0 and never enter a statistic.
The layers have no bias: in training mode BatchNorm removes a constant shift exactly (the caller
folds a Dense bias into the running mean, as `BatchNorm.gelu(shift=)` does).

Why tiles: as whole-array XLA ops every layer streams its (R, C) activations through memory 10-12
times per training step (product, two statistics passes, normalisation, GELU, and as many in the
backward pass); ParT's pair embedding was the largest item of its CPU step for that reason. Here
`lax.scan` walks over row tiles small enough to stay in cache and does everything a tile needs
in one visit:
  * forward, one scan per layer: normalise + GELU the previous layer's tile, multiply, write z_l
    and merge the tile's statistics (Chan et al.'s pairwise update of count, mean and M2, as
    stable as a two-pass variance);
  * backward, one scan per layer: the BatchNorm + GELU backward of layer l, the input gradient
    and the kernel gradient of W_l (accumulated over tiles), and the sums layer l - 1's
    BatchNorm backward needs, its GELU derivative recomputed from the stored z_{l-1}.
Only the z_l are kept for the backward pass: each layer reads and writes each (R, C) array about
3 times per step instead of 10-12. Same values as the layer-by-layer form up to float round-off
of the reductions' order (tested against autodiff of that form, in float64).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hepjax.nn.activations import normal_cdf_pdf

Array = jax.Array

__all__ = ["bn_gelu_mlp", "bn_gelu_mlp_eval", "tile_shape"]


def tile_shape(rows: int, tile_rows: int) -> tuple[int, int]:
    """(number of tiles, rows per tile) covering `rows` with tiles of at most `tile_rows` rows,
    as even as possible (the padding is fewer rows than tiles)."""
    if rows < 1 or tile_rows < 1:
        raise ValueError(f"tile_shape: rows={rows} and tile_rows={tile_rows} must be >= 1")
    tiles = -(-rows // tile_rows)
    return tiles, -(-rows // tiles)


def _to_tiles(a: Array, tiles: int, size: int) -> Array:
    pad = tiles * size - a.shape[0]
    if pad:
        a = jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)])
    return a.reshape((tiles, size) + a.shape[1:])


def _gelu_bn(z, mean, rstd, scale, bias, m):
    """(gelu(u), u, cdf, pdf) with u = (z - mean) rstd scale + bias, 0 on rows with m = 0."""
    u = (z - mean) * (rstd * scale) + bias
    cdf, pdf = normal_cdf_pdf(u)
    return jnp.where(m, u * cdf, 0.0), u, cdf, pdf


def _merge_stats(carry, z, m, n_tile):
    """Chan's update of (count, mean, M2) with the tile z (S, C) (rows with m False are 0), in
    the carry's dtype (float32 also for bf16 activations)."""
    z = z.astype(carry[1].dtype)
    mean_t = jnp.sum(z, axis=0) / jnp.maximum(n_tile, 1.0)
    m2_t = jnp.sum(jnp.where(m, jnp.square(z - mean_t), 0.0), axis=0)
    return _chan(carry, (n_tile, mean_t, m2_t))


def _split(a: Array, parts: int) -> list[Array]:
    """(T, ...) tiles -> `parts` arrays of T / parts consecutive tiles (T % parts == 0)."""
    t = a.shape[0] // parts
    return [a[i * t:(i + 1) * t] for i in range(parts)]


def _join(parts: list[Array], rows: int) -> Array:
    """Inverse of `_split` + tiling: the first `rows` rows of the concatenated tiles."""
    a = jnp.concatenate(parts) if len(parts) > 1 else parts[0]
    return a.reshape((-1,) + a.shape[2:])[:rows]


def _chan(a, b):
    """Merge two (count, mean, M2) summaries (Chan et al.)."""
    n = a[0] + b[0]
    frac = b[0] / jnp.maximum(n, 1.0)
    delta = b[1] - a[1]
    return n, a[1] + delta * frac, a[2] + b[2] + jnp.square(delta) * a[0] * frac


def _forward(x, mask, kernels, scales, biases, epsilon, tile_rows, parts):
    rows = x.shape[0]
    tiles, size = tile_shape(rows, tile_rows)
    tiles = -(-tiles // parts) * parts
    size = -(-rows // tiles)
    xt = _split(_to_tiles(jnp.where(mask[:, None], x, 0.0), tiles, size), parts)
    mt = _split(_to_tiles(mask, tiles, size)[..., None], parts)  # (T, S, 1) bool per part
    # statistics in float32 at least: bf16 sums over 10^6 rows would lose the variance
    acc = jnp.promote_types(x.dtype, jnp.float32)
    nt = [jnp.sum(m, axis=(1, 2)).astype(acc) for m in mt]  # real rows per tile
    n = sum(jnp.sum(c) for c in nt)
    zs, means, rstds, variances, returned_means = [], [], [], [], []
    prev = xt
    for l, kernel in enumerate(kernels):
        zero = jnp.zeros((kernel.shape[1],), acc)

        def body(carry, inputs, l=l, kernel=kernel):
            p, m, n_tile = inputs
            if l > 0:
                p = _gelu_bn(p, means[l - 1], rstds[l - 1], scales[l - 1], biases[l - 1], m)[0]
            z = p @ kernel
            return _merge_stats(carry, z, m, n_tile), z

        # the parts are independent scans: XLA:CPU runs them on different threads
        out = [jax.lax.scan(body, (jnp.zeros((), acc), zero, zero), (p, m, c))
               for p, m, c in zip(prev, mt, nt)]
        stats = out[0][0]
        for o in out[1:]:
            stats = _chan(stats, o[0])
        var = stats[2] / jnp.maximum(n, 1.0)
        # the float32 statistics are returned; the normalisation uses them in x's dtype
        zs.append([o[1] for o in out]), variances.append(var)
        means.append(stats[1].astype(x.dtype))
        rstds.append(jax.lax.rsqrt(var + epsilon).astype(x.dtype))
        returned_means.append(stats[1])
        prev = zs[-1]
    y = _join([_gelu_bn(z, means[-1], rstds[-1], scales[-1], biases[-1], m)[0]
               for z, m in zip(prev, mt)], rows)
    return y, returned_means, variances, (xt, mt, n, zs, means, rstds, size)


def bn_gelu_mlp(x: Array, mask: Array, kernels: Sequence[Array], scales: Sequence[Array],
                biases: Sequence[Array], epsilon: float = 1e-5, tile_rows: int = 4096,
                parts: int = 1):
    """Training-mode forward of the module docstring's MLP, tiled, with its own VJP.

    x (R, C_0); mask (R,) bool (True = real row); kernels[l] (C_l, C_{l+1}); scales[l], biases[l]
    (C_{l+1},) the BatchNorm scale and shift. Returns (y (R, C_L), batch means, batch variances)
    with one (C_l,) mean and (biased) variance per layer for the running averages (they carry
    no gradient). y is 0 on masked rows; what x holds there does not matter.

    `parts` > 1 shares the tiles out among that many independent scans, which XLA:CPU may run
    on different threads. On the 2-core development machine one scan was faster and steadier
    inside ParT's training step (4.0 s vs 4.1-5.3 s with 2 parts, alternating runs), so 1 is
    the default; the results differ only in the order of the statistics' sums."""
    if x.ndim != 2 or mask.shape != x.shape[:1]:
        raise ValueError(f"bn_gelu_mlp: expected x (R, C) and mask (R,), got x {tuple(x.shape)} "
                         f"and mask {tuple(mask.shape)}")
    if not len(kernels) == len(scales) == len(biases) > 0:
        raise ValueError(f"bn_gelu_mlp: need as many kernels, scales and biases (>= 1), got "
                         f"{len(kernels)}, {len(scales)}, {len(biases)}")
    if parts < 1:
        raise ValueError(f"bn_gelu_mlp: parts must be >= 1, got {parts}")
    return _bn_gelu_mlp(x, jnp.asarray(mask, bool), tuple(kernels), tuple(scales), tuple(biases),
                        float(epsilon), int(tile_rows), int(parts))


@partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _bn_gelu_mlp(x, mask, kernels, scales, biases, epsilon, tile_rows, parts):
    y, means, variances, _ = _forward(x, mask, kernels, scales, biases, epsilon, tile_rows, parts)
    return y, tuple(means), tuple(variances)


def _fwd(x, mask, kernels, scales, biases, epsilon, tile_rows, parts):
    y, means, variances, res = _forward(x, mask, kernels, scales, biases, epsilon, tile_rows,
                                        parts)
    return (y, tuple(means), tuple(variances)), (res, kernels, scales, biases, mask)


def _bwd(epsilon, tile_rows, parts, residuals, cotangents):
    (xt, mt, n, zs, means, rstds, size), kernels, scales, biases, mask = residuals
    rows = mask.shape[0]
    tiles = sum(m.shape[0] for m in mt)
    dy = _split(_to_tiles(cotangents[0], tiles, size), parts)
    depth = len(kernels)
    acc = n.dtype  # sums and the kernel gradients accumulate in float32 (at least)
    dkernels, dscales, dbiases = [None] * depth, [None] * depth, [None] * depth
    # the last layer's BatchNorm + GELU backward sums, over the whole (R, C_L) output
    top = depth - 1
    g = []
    for z, m, d in zip(zs[top], mt, dy):
        _, u, cdf, pdf = _gelu_bn(z, means[top], rstds[top], scales[top], biases[top], m)
        g.append(jnp.where(m, d * (cdf + u * pdf), 0.0))
    dbiases[top] = sum(jnp.sum(gi, axis=(0, 1), dtype=acc) for gi in g)
    dscales[top] = sum(jnp.sum(gi * ((z - means[top]) * rstds[top]), axis=(0, 1), dtype=acc)
                       for gi, z in zip(g, zs[top]))
    for l in range(top, -1, -1):
        kernel = kernels[l]
        coef = rstds[l] * scales[l]
        zero = jnp.zeros((kernel.shape[0],), acc)

        def body(carry, inputs, l=l, kernel=kernel, coef=coef):
            g_l, z_l, p, m = inputs
            xhat = (z_l - means[l]) * rstds[l]
            mean_g = ((dbiases[l] + xhat * dscales[l]) / n).astype(g_l.dtype)
            dz = jnp.where(m, coef * (g_l - mean_g), 0.0)
            dp = dz @ kernel.T
            if l == 0:
                return (carry[0] + jnp.dot(p.T, dz, preferred_element_type=acc),), dp
            h, u, cdf, pdf = _gelu_bn(p, means[l - 1], rstds[l - 1], scales[l - 1],
                                      biases[l - 1], m)
            g_prev = jnp.where(m, dp * (cdf + u * pdf), 0.0)
            dkernel, dbias, dscale = carry
            xhat_prev = (p - means[l - 1]) * rstds[l - 1]
            return (dkernel + jnp.dot(h.T, dz, preferred_element_type=acc),
                    dbias + jnp.sum(g_prev, axis=0, dtype=acc),
                    dscale + jnp.sum(g_prev * xhat_prev, axis=0, dtype=acc)), g_prev

        dkernel = jnp.zeros(kernel.shape, acc)
        init = (dkernel,) if l == 0 else (dkernel, zero, zero)
        prev = xt if l == 0 else zs[l - 1]
        out = [jax.lax.scan(body, init, inputs) for inputs in zip(g, zs[l], prev, mt)]
        carry = [sum(o[0][i] for o in out) for i in range(len(init))]
        g = [o[1] for o in out]
        dkernels[l] = carry[0]
        if l > 0:
            dbiases[l - 1], dscales[l - 1] = carry[1], carry[2]
    dx = jnp.where(mask[:, None], _join(g, rows), 0.0).astype(xt[0].dtype)
    dmask = np.zeros(mask.shape, jax.dtypes.float0)

    def like(grads, primals):
        return tuple(d.astype(p.dtype) for d, p in zip(grads, primals))
    return (dx, dmask, like(dkernels, kernels), like(dscales, scales), like(dbiases, biases))


_bn_gelu_mlp.defvjp(_fwd, _bwd)


def bn_gelu_mlp_eval(x: Array, mask: Array, kernels: Sequence[Array], shifts: Sequence[Array],
                     means: Sequence[Array], variances: Sequence[Array], scales: Sequence[Array],
                     biases: Sequence[Array], epsilon: float = 1e-5,
                     tile_rows: int = 4096) -> Array:
    """Eval-mode forward (running statistics): h_l = gelu(BN(h_{l-1} W_l + shift_l)), every
    layer of a tile in one visit. Shapes as `bn_gelu_mlp`; shifts[l] (C_{l+1},) the Dense biases.
    Returns y (R, C_L), 0 on masked rows."""
    rows = x.shape[0]
    tiles, size = tile_shape(rows, tile_rows)
    xt = _to_tiles(x, tiles, size)
    mt = _to_tiles(mask, tiles, size)[..., None]
    # fold the Dense bias and the running statistics into one affine map per layer
    gains = [jax.lax.rsqrt(v + epsilon) * s for v, s in zip(variances, scales)]
    # in the activations' dtype: float32 running statistics do not promote a bf16 forward pass
    affine = [(a.astype(x.dtype), (b + (t - mu) * a).astype(x.dtype))
              for a, t, mu, b in zip(gains, shifts, means, biases)]

    def tile(inputs):
        h, m = inputs
        for kernel, (a, b) in zip(kernels, affine):
            u = (h @ kernel) * a + b
            h = u * normal_cdf_pdf(u)[0]
        return jnp.where(m, h, 0.0)

    y = jax.lax.map(tile, (xt, mt))
    return y.reshape(tiles * size, -1)[:rows]
