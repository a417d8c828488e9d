"""Convolutions and pooling on images (B, H, W, C) (channels last), with padding modes.

Padding:
  'VALID'    no padding: output (H - k) // s + 1;
  'SAME'     zero padding so that output = ceil(H / s) (split as XLA / TensorFlow do);
  int p      p zeros on every side;
  'CIRCULAR' periodic wrap-around (natural for the azimuth of a jet image over the full 2 pi);
  'REFLECT'  mirror padding without repeating the edge (numpy's 'reflect').
The non-zero modes pad by the SAME amounts, then convolve VALID.

A stride-1 convolution commutes with translations (away from the borders, exactly for
'CIRCULAR'); pooling with stride > 1 does only for shifts by multiples of the stride.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax.nn import initializers as inits

Array = jax.Array

__all__ = ["Conv2D", "max_pool", "avg_pool", "global_avg_pool", "pad_image"]

PADDINGS = ("VALID", "SAME", "CIRCULAR", "REFLECT")


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def pad_image(x: Array, kernel: Sequence[int], strides: Sequence[int], padding) -> tuple[Array, str]:
    """Applies `padding` (see the module docstring) to x (B, H, W, C) explicitly where lax cannot.
    Returns (padded x, the lax padding string to use afterwards)."""
    if isinstance(padding, int):
        p = padding
        return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))), "VALID"
    if not isinstance(padding, str) or padding.upper() not in PADDINGS:
        raise ValueError(f"padding={padding!r}; valid: an int or one of {PADDINGS}")
    mode = padding.upper()
    if mode in ("VALID", "SAME"):
        return x, mode
    ph = _same_pads(x.shape[1], kernel[0], strides[0])
    pw = _same_pads(x.shape[2], kernel[1], strides[1])
    np_mode = "wrap" if mode == "CIRCULAR" else "reflect"
    return jnp.pad(x, ((0, 0), ph, pw, (0, 0)), mode=np_mode), "VALID"


class Conv2D(nnx.Module):
    """2-D convolution, images (B, H, W, C_in) -> (B, H', W', C_out).

    kernel (kh, kw, C_in / groups, C_out), He-uniform by default (fan_in = kh kw C_in / groups),
    zero bias. feature_group_count = groups splits the channels into independent groups
    (ResNeXt's grouped convolution); C_in and C_out must be divisible by it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, *, strides=1,
                 padding="SAME", feature_group_count: int = 1, use_bias: bool = True,
                 kernel_init=inits.he_uniform, rngs: nnx.Rngs):
        if in_channels % feature_group_count or out_channels % feature_group_count:
            raise ValueError(f"Conv2D: in_channels={in_channels} and out_channels="
                             f"{out_channels} must be divisible by feature_group_count="
                             f"{feature_group_count}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.strides = _pair(kernel_size), _pair(strides)
        pad_image(jnp.zeros((1, 1, 1, 1)), (1, 1), (1, 1), padding)  # validates `padding`
        self.padding = padding.upper() if isinstance(padding, str) else int(padding)
        self.groups = feature_group_count
        shape = (*self.kernel_size, in_channels // feature_group_count, out_channels)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((out_channels,))) if use_bias else None

    def __call__(self, x: Array) -> Array:
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"Conv2D: expected images (B, H, W, {self.in_channels}), got "
                             f"{tuple(x.shape)}")
        x, pad = pad_image(x, self.kernel_size, self.strides, self.padding)
        y = jax.lax.conv_general_dilated(
            x, self.kernel[...], self.strides, pad, dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=self.groups)
        return y if self.bias is None else y + self.bias[...]


def _pool(x, init, op, window, strides, padding):
    window, strides = _pair(window), _pair(window if strides is None else strides)
    if isinstance(padding, str) and padding.upper() in ("CIRCULAR", "REFLECT") or \
            isinstance(padding, int):
        x, padding = pad_image(x, window, strides, padding)
    padding = padding.upper()
    if padding not in ("VALID", "SAME"):
        raise ValueError(f"pooling padding={padding!r}; valid: an int or one of {PADDINGS}")
    return jax.lax.reduce_window(x, init, op, (1, *window, 1), (1, *strides, 1), padding)


def max_pool(x: Array, window=2, strides=None, padding="VALID") -> Array:
    """Max over window x window patches of (B, H, W, C); strides default to the window.
    'SAME' pads with -inf (padding never wins); an int pads with zeros."""
    return _pool(x, -jnp.inf, jax.lax.max, window, strides, padding)


def avg_pool(x: Array, window=2, strides=None, padding="VALID") -> Array:
    """Mean over window x window patches. With 'SAME' the mean is over the real (unpadded)
    pixels of each window only (count_include_pad=False)."""
    s = _pool(x, 0.0, jax.lax.add, window, strides, padding)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    if isinstance(padding, str) and padding.upper() == "SAME":
        count = _pool(ones, 0.0, jax.lax.add, window, strides, padding)
    else:
        w = _pair(window)
        count = jnp.asarray(w[0] * w[1], x.dtype)
    return s / count


def global_avg_pool(x: Array) -> Array:
    """(B, H, W, C) -> (B, C): mean over all pixels."""
    return jnp.mean(x, axis=(1, 2))
