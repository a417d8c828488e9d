"""A per-row MLP of 1x1 layers with training-mode BatchNorm and exact GELU.

    h_0 = x,   z_l = h_{l-1} W_l,   h_l = gelu(gamma_l (z_l - mean_l) / sqrt(var_l + eps) + beta_l)

over R rows (e.g. the 10^6 particle pairs of a ParT batch), with the batch statistics mean_l,
var_l taken over the rows whose mask is True. Padded rows give h_l = 0 and never enter a statistic.
The layers have no bias: in training mode BatchNorm removes a constant shift exactly (the caller
folds a Dense bias into the running mean, as `BatchNorm.gelu(shift=)` does).

Reference: layer by layer, each layer `batch_norm_gelu`'s reference, differentiated by autodiff.

Fast form, tile by tile: as whole-array XLA ops every layer streams its (R, C) activations
through memory 10-12 times per training step (product, two statistics passes, normalisation,
GELU, and as many in the backward pass). Here `lax.scan` walks over row tiles small enough to
stay in cache and does everything a tile needs in one visit:
  * forward, one scan per layer: normalise + GELU the previous layer's tile, multiply, write z_l
    and merge the tile's statistics (Chan et al.'s pairwise update of count, mean and M2, as
    stable as a two-pass variance);
  * backward, one scan per layer: the BatchNorm + GELU backward of layer l, the input gradient
    and the kernel gradient of W_l (accumulated over tiles), and the sums layer l - 1's
    BatchNorm backward needs, its GELU derivative recomputed from the stored z_{l-1}.
Only the z_l are kept for the backward pass: each layer reads and writes each (R, C) array about
3 times per step instead of 10-12. Same values as the reference up to float round-off of the
reductions' order (tested in float64). On the many small loop iterations of a GPU it would cost
more than it saves.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hepjax.kernels.batchnorm import batch_norm_gelu
from hepjax.kernels.select import dispatch
from hepjax.nn.activations import gelu, normal_cdf_pdf

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


def _merge_stats(carry, z, m, n_tile, axis=0):
    """Chan's update of (count, mean, M2) with the tile z (S, C) (rows with m False are 0), in
    the carry's dtype (float32 also for bf16 activations). axis=1: z is (C, S), m (1, S)."""
    z = z.astype(carry[1].dtype)
    mean_t = jnp.sum(z, axis=axis) / jnp.maximum(n_tile, 1.0)
    centred = z - (mean_t[:, None] if axis else mean_t)
    m2_t = jnp.sum(jnp.where(m, jnp.square(centred), 0.0), axis=axis)
    return _chan(carry, (n_tile, mean_t, m2_t))


def _split(a: Array, parts: int) -> list[Array]:
    """(T, ...) tiles -> `parts` arrays of T / parts consecutive tiles (T % parts == 0)."""
    t = a.shape[0] // parts
    return [a[i * t:(i + 1) * t] for i in range(parts)]


def _join(parts: list[Array], rows: int) -> Array:
    """Inverse of `_split` + tiling: the first `rows` rows of the concatenated tiles."""
    a = jnp.concatenate(parts) if len(parts) > 1 else parts[0]
    return a.reshape((-1,) + a.shape[2:])[:rows]


def _join_channels_first(parts: list[Array], rows: int) -> Array:
    """(T, C, S) tiles -> (C, R): the first `rows` columns of the concatenated tiles."""
    a = jnp.concatenate(parts) if len(parts) > 1 else parts[0]
    return jnp.moveaxis(a, 1, 0).reshape(a.shape[1], -1)[:, :rows]


def _col(v: Array) -> Array:
    """A per-channel (C,) vector as a (C, 1) column, for channel-major (C, S) tiles."""
    return v[:, None]


def _chan(a, b):
    """Merge two (count, mean, M2) summaries (Chan et al.)."""
    n = a[0] + b[0]
    frac = b[0] / jnp.maximum(n, 1.0)
    delta = b[1] - a[1]
    return n, a[1] + delta * frac, a[2] + b[2] + jnp.square(delta) * a[0] * frac


def _forward(x, mask, kernels, scales, biases, epsilon, tile_rows, parts, channels_first):
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
    top = len(kernels) - 1
    for l, kernel in enumerate(kernels):
        zero = jnp.zeros((kernel.shape[1],), acc)

        def body(carry, inputs, l=l, kernel=kernel):
            p, m, n_tile = inputs
            if l > 0:
                p = _gelu_bn(p, means[l - 1], rstds[l - 1], scales[l - 1], biases[l - 1], m)[0]
            if channels_first and l == top:  # z^T = W^T p^T, (C, S)
                z = jax.lax.dot_general(kernel, p, (((0,), (1,)), ((), ())))
                return _merge_stats(carry, z, m.T, n_tile, axis=1), z
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
    if channels_first:
        y = _join_channels_first(
            [_gelu_bn(z, _col(means[-1]), _col(rstds[-1]), _col(scales[-1]), _col(biases[-1]),
                      jnp.swapaxes(m, 1, 2))[0] for z, m in zip(prev, mt)], rows)
    else:
        y = _join([_gelu_bn(z, means[-1], rstds[-1], scales[-1], biases[-1], m)[0]
                   for z, m in zip(prev, mt)], rows)
    return y, returned_means, variances, (xt, mt, n, zs, means, rstds, size)


def _check(x, mask, kernels, scales, biases, parts=1):
    if x.ndim != 2 or mask.shape != x.shape[:1]:
        raise ValueError(f"bn_gelu_mlp: expected x (R, C) and mask (R,), got x {tuple(x.shape)} "
                         f"and mask {tuple(mask.shape)}")
    if not len(kernels) == len(scales) == len(biases) > 0:
        raise ValueError(f"bn_gelu_mlp: need as many kernels, scales and biases (>= 1), got "
                         f"{len(kernels)}, {len(scales)}, {len(biases)}")
    if parts < 1:
        raise ValueError(f"bn_gelu_mlp: parts must be >= 1, got {parts}")


def _bn_gelu_mlp_tiled(x, mask, kernels, scales, biases, epsilon=1e-5, tile_rows=4096, parts=1,
                       channels_first=False):
    _check(x, mask, kernels, scales, biases, parts)
    return _bn_gelu_mlp(x, jnp.asarray(mask, bool), tuple(kernels), tuple(scales), tuple(biases),
                        float(epsilon), int(tile_rows), int(parts), bool(channels_first))


@dispatch("rowwise", fast=_bn_gelu_mlp_tiled)
def bn_gelu_mlp(x: Array, mask: Array, kernels: Sequence[Array], scales: Sequence[Array],
                biases: Sequence[Array], epsilon: float = 1e-5, tile_rows: int = 4096,
                parts: int = 1, channels_first: bool = False):
    """Training-mode forward of the module docstring's MLP.

    x (R, C_0); mask (R,) bool (True = real row); kernels[l] (C_l, C_{l+1}); scales[l], biases[l]
    (C_{l+1},) the BatchNorm scale and shift. Returns (y (R, C_L), batch means, batch variances)
    with one (C_l,) mean and (biased) variance per layer for the running averages (they carry
    no gradient). y is 0 on masked rows; what x holds there does not matter.

    channels_first=True: y is returned (and its cotangent taken) as y.T (C_L, R); the fast form
    then computes the last layer channel-major per tile, (C_L, S) = W^T h^T: for a narrow C_L
    (ParT's 8 heads) its elementwise work runs along rows instead of C_L-wide, and with
    R = T * tile_rows the caller's (T, C_L, tile_rows) view of y needs no transpose.

    tile_rows and parts only shape the fast form: rows per tile, and `parts` > 1 shares the
    tiles out among that many independent scans, which XLA:CPU may run on different threads
    (one scan was faster and steadier inside ParT's training step on 2 cores, hence the
    default); the results differ only in the order of the statistics' sums."""
    _check(x, mask, kernels, scales, biases, parts)
    mask = jnp.asarray(mask, bool)
    h = jnp.where(mask[:, None], x, 0.0)
    means, variances = [], []
    for kernel, scale, bias in zip(kernels, scales, biases):
        h, mean, var = batch_norm_gelu.reference(h @ kernel, mask, scale, bias, epsilon, (0,))
        means.append(mean), variances.append(var)
    return (h.T if channels_first else h), tuple(means), tuple(variances)


@partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def _bn_gelu_mlp(x, mask, kernels, scales, biases, epsilon, tile_rows, parts, channels_first):
    y, means, variances, _ = _forward(x, mask, kernels, scales, biases, epsilon, tile_rows, parts,
                                      channels_first)
    return y, tuple(means), tuple(variances)


def _fwd(x, mask, kernels, scales, biases, epsilon, tile_rows, parts, channels_first):
    y, means, variances, res = _forward(x, mask, kernels, scales, biases, epsilon, tile_rows,
                                        parts, channels_first)
    return (y, tuple(means), tuple(variances)), (res, kernels, scales, biases, mask)


def _bwd(epsilon, tile_rows, parts, channels_first, residuals, cotangents):
    (xt, mt, n, zs, means, rstds, size), kernels, scales, biases, mask = residuals
    rows = mask.shape[0]
    tiles = sum(m.shape[0] for m in mt)
    if channels_first:  # (C, R) -> (T, C, S) tiles
        dy_t = cotangents[0]
        dy_t = jnp.pad(dy_t, ((0, 0), (0, tiles * size - rows)))
        dy = _split(jnp.moveaxis(dy_t.reshape(dy_t.shape[0], tiles, size), 0, 1), parts)
    else:
        dy = _split(_to_tiles(cotangents[0], tiles, size), parts)
    depth = len(kernels)
    acc = n.dtype  # sums and the kernel gradients accumulate in float32 (at least)
    dkernels, dscales, dbiases = [None] * depth, [None] * depth, [None] * depth
    # the last layer's BatchNorm + GELU backward sums, over the whole (R, C_L) output
    top = depth - 1
    # per-channel vectors and row masks in the top layer's tile layout
    col = _col if channels_first else (lambda v: v)
    rows_of = (lambda m: jnp.swapaxes(m, -1, -2)) if channels_first else (lambda m: m)
    sum_axes = (0, 2) if channels_first else (0, 1)
    g = []
    for z, m, d in zip(zs[top], mt, dy):
        _, u, cdf, pdf = _gelu_bn(z, col(means[top]), col(rstds[top]), col(scales[top]),
                                  col(biases[top]), rows_of(m))
        g.append(jnp.where(rows_of(m), d * (cdf + u * pdf), 0.0))
    dbiases[top] = sum(jnp.sum(gi, axis=sum_axes, dtype=acc) for gi in g)
    dscales[top] = sum(jnp.sum(gi * ((z - col(means[top])) * col(rstds[top])), axis=sum_axes,
                               dtype=acc) for gi, z in zip(g, zs[top]))
    for l in range(top, -1, -1):
        kernel = kernels[l]
        coef = rstds[l] * scales[l]
        zero = jnp.zeros((kernel.shape[0],), acc)

        def body(carry, inputs, l=l, kernel=kernel, coef=coef):
            g_l, z_l, p, m = inputs
            if channels_first and l == top:  # g_l, z_l (C, S): dz (C, S), dp = dz^T W^T
                xhat = (z_l - _col(means[l])) * _col(rstds[l])
                mean_g = ((_col(dbiases[l]) + xhat * _col(dscales[l])) / n).astype(g_l.dtype)
                dz = jnp.where(m.T, _col(coef) * (g_l - mean_g), 0.0)
                dp = jax.lax.dot_general(dz, kernel, (((0,), (1,)), ((), ())))

                def kernel_grad(h):  # transposed, (C_L, C_{L-1}) = dz h: see below
                    return jnp.dot(dz, h, preferred_element_type=acc)
            else:
                xhat = (z_l - means[l]) * rstds[l]
                mean_g = ((dbiases[l] + xhat * dscales[l]) / n).astype(g_l.dtype)
                dz = jnp.where(m, coef * (g_l - mean_g), 0.0)
                dp = dz @ kernel.T

                def kernel_grad(h):
                    return jnp.dot(h.T, dz, preferred_element_type=acc)
            if l == 0:
                return (carry[0] + kernel_grad(p),), dp
            h, u, cdf, pdf = _gelu_bn(p, means[l - 1], rstds[l - 1], scales[l - 1],
                                      biases[l - 1], m)
            g_prev = jnp.where(m, dp * (cdf + u * pdf), 0.0)
            dkernel, dbias, dscale = carry
            xhat_prev = (p - means[l - 1]) * rstds[l - 1]
            return (dkernel + kernel_grad(h),
                    dbias + jnp.sum(g_prev, axis=0, dtype=acc),
                    dscale + jnp.sum(g_prev * xhat_prev, axis=0, dtype=acc)), g_prev

        # the channel-major top layer accumulates its kernel gradient transposed, as the plain
        # product dz (C_L, S) @ h (S, C_{L-1}), transposed once after the scan: XLA:CPU runs
        # the h^T dz^T form, or a transpose inside the loop, 2-3x slower (ParT: 64 x 8)
        transposed = channels_first and l == top
        dkernel = jnp.zeros(kernel.shape[::-1] if transposed else kernel.shape, acc)
        init = (dkernel,) if l == 0 else (dkernel, zero, zero)
        prev = xt if l == 0 else zs[l - 1]
        out = [jax.lax.scan(body, init, inputs) for inputs in zip(g, zs[l], prev, mt)]
        carry = [sum(o[0][i] for o in out) for i in range(len(init))]
        g = [o[1] for o in out]
        dkernels[l] = carry[0].T if transposed else carry[0]
        if l > 0:
            dbiases[l - 1], dscales[l - 1] = carry[1], carry[2]
    dx = jnp.where(mask[:, None], _join(g, rows), 0.0).astype(xt[0].dtype)
    dmask = np.zeros(mask.shape, jax.dtypes.float0)

    def like(grads, primals):
        return tuple(d.astype(p.dtype) for d, p in zip(grads, primals))
    return (dx, dmask, like(dkernels, kernels), like(dscales, scales), like(dbiases, biases))


_bn_gelu_mlp.defvjp(_fwd, _bwd)


def _bn_gelu_mlp_eval_tiled(x, mask, kernels, shifts, means, variances, scales, biases,
                            epsilon=1e-5, tile_rows=4096, channels_first=False):
    """Every layer of a tile in one visit, the Dense bias and the running statistics folded into
    one affine map per layer."""
    rows = x.shape[0]
    tiles, size = tile_shape(rows, tile_rows)
    xt = _to_tiles(x, tiles, size)
    mt = _to_tiles(mask, tiles, size)[..., None]
    gains = [jax.lax.rsqrt(v + epsilon) * s for v, s in zip(variances, scales)]
    # in the activations' dtype: float32 running statistics do not promote a bf16 forward pass
    affine = [(a.astype(x.dtype), (b + (t - mu) * a).astype(x.dtype))
              for a, t, mu, b in zip(gains, shifts, means, biases)]

    def tile(inputs):
        h, m = inputs
        last = len(kernels) - 1
        for l, (kernel, (a, b)) in enumerate(zip(kernels, affine)):
            if channels_first and l == last:  # (C_L, S) = W^T h^T
                u = jax.lax.dot_general(kernel, h, (((0,), (1,)), ((), ()))) * a[:, None] \
                    + b[:, None]
                return jnp.where(m[:, 0], u * normal_cdf_pdf(u)[0], 0.0)
            u = (h @ kernel) * a + b
            h = u * normal_cdf_pdf(u)[0]
        return jnp.where(m, h, 0.0)

    y = jax.lax.map(tile, (xt, mt))
    if channels_first:  # (T, C, S) -> (C, T * S)
        return jnp.moveaxis(y, 1, 0).reshape(y.shape[1], tiles * size)[:, :rows]
    return y.reshape(tiles * size, -1)[:rows]


@dispatch("rowwise", fast=_bn_gelu_mlp_eval_tiled)
def bn_gelu_mlp_eval(x: Array, mask: Array, kernels: Sequence[Array], shifts: Sequence[Array],
                     means: Sequence[Array], variances: Sequence[Array], scales: Sequence[Array],
                     biases: Sequence[Array], epsilon: float = 1e-5,
                     tile_rows: int = 4096, channels_first: bool = False) -> Array:
    """Eval-mode forward (running statistics): h_l = gelu(BN(h_{l-1} W_l + shift_l)). Shapes as
    `bn_gelu_mlp`; shifts[l] (C_{l+1},) the Dense biases. Returns y (R, C_L), 0 on masked rows;
    channels_first=True returns y.T (C_L, R) (the fast form computes its last layer
    channel-major per tile). Computed in the activations' dtype: float32 running statistics do
    not promote a bf16 forward pass."""
    mask = jnp.asarray(mask, bool)
    h = jnp.where(mask[:, None], x, 0.0)
    for kernel, shift, mean, var, scale, bias in zip(kernels, shifts, means, variances, scales,
                                                     biases):
        gain = (jax.lax.rsqrt(var + epsilon) * scale).astype(x.dtype)
        h = gelu((h @ kernel + shift - mean.astype(x.dtype)) * gain + bias)
    h = jnp.where(mask[:, None], h, 0.0)
    return h.T if channels_first else h
