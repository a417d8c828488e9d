"""Small Flax NNX building blocks: Dense, mask-aware BatchNorm, LayerNorm, Dropout, residual
blocks and an MLP, plus `one_hot`.

Conventions the training harness relies on:
  * every model is an `nnx.Module`; jit it through `nnx.split(model, nnx.Param, ...)` -> pure
    function of the state -> `nnx.merge` (tested);
  * dropout randomness comes from the 'dropout' stream of the `nnx.Rngs` passed at construction
    (build with e.g. `nnx.Rngs(params=0, dropout=1)`); `nnx.reseed(model, dropout=key)` resets it;
  * `model.train()` / `model.eval()` flip `Dropout.deterministic` and
    `BatchNorm.use_running_average` (eval: no dropout, running statistics).

Shapes: inputs are (..., features); masks are boolean with shape x.shape[:-1] (True = real entry,
False = padding). Where a mask is given, outputs at padded positions are exactly zero.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hepjax.nn import initializers as inits
from hepjax.nn.activations import gelu as _gelu_exact_act
from hepjax.nn.activations import get_activation, normal_cdf_pdf

Array = jax.Array

__all__ = ["counter_hash_bits", "dense_matmul", "materialize", "Dense", "BatchNorm", "LayerNorm", "Dropout", "ResidualBlock", "MLP", "one_hot"]


def dense_matmul(x: Array, kernel: Array) -> Array:
    """x (..., K) @ kernel (K, M) -> (..., M), with the leading axes flattened into one first.

    Same values as `x @ kernel`; the difference is in the backward pass. For x with two or more
    leading axes, XLA canonicalises the kernel-gradient product (a contraction over all leading
    axes) by materialising a transposed (K, rows) copy of the incoming gradient, fused into the
    elementwise op that produces it: strided writes of the whole activation. On ParT's pair
    embedding (10^6 pairs x 64 channels per batch) that copy cost ~0.9 s per layer per training
    step on a 2-core CPU; as a 2-D product the gradient is one matmul with a transposed operand
    flag and no copy."""
    if x.ndim <= 2:
        return x @ kernel
    return (x.reshape(-1, x.shape[-1]) @ kernel).reshape(*x.shape[:-1], kernel.shape[-1])


def materialize(x: Array) -> Array:
    """x, unchanged, but computed into its own buffer in the default (row-major) layout.

    XLA fuses elementwise producers into every consumer; when one large intermediate feeds
    several consumers (ParT's pair bias, read by 8 attention blocks) or a gather, it may be
    recomputed per consumer or read through a transposed layout each time. An identity
    `lax.cond` is a fusion boundary (XLA:CPU drops `lax.optimization_barrier` before fusion),
    so the value is computed once. Same value bit for bit; the predicate reads one element.
    Only on the CPU backend: on GPU a conditional costs a device-to-host sync, and its fusion
    choices differ; there it returns x as is."""
    if jax.default_backend() != "cpu":
        return x
    return jax.lax.cond(jnp.isnan(x[(0,) * x.ndim]), lambda t: t + 0.0, lambda t: t, x)


def _mix32(x: Array) -> Array:
    """C. Wellons' "lowbias32" integer finalizer: a bijection of uint32 with near-ideal avalanche
    (every input bit flips each output bit with probability ~1/2)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x21F0AAAD)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x735A2D97)
    return x ^ (x >> 15)


def counter_hash_bits(key: Array, shape: tuple[int, ...]) -> Array:
    """uint32 random bits of `shape` from a counter-based hash keyed by `key`.

    Element i (row-major index) gets mix(mix(i * 0x9E3779B9 + k0) ^ k1), with (k0, k1) two words
    drawn from `key` by jax.random (threefry) and mix = `_mix32`. For a fixed key the map from
    index to bits is a bijection of uint32 (no two of 2^32 elements collide); different keys
    give independent-looking streams. Not cryptographic, made for dropout masks: it is a handful
    of integer operations per element with no state, so XLA fuses it into the op that applies
    the mask instead of writing a random array first (threefry on XLA:CPU cost ParT's training
    step about 1 s in dropout masks at batch 128 x 128)."""
    k0, k1 = jax.random.bits(key, (2,), jnp.uint32)
    size = int(np.prod(shape)) if shape else 1
    if size >= 2**32:
        raise ValueError(f"counter_hash_bits: at most 2^32 elements per call, got shape {shape}")
    counter = jax.lax.iota(jnp.uint32, size).reshape(shape)
    return _mix32(_mix32(counter * jnp.uint32(0x9E3779B9) + k0) ^ k1)


class Dropout(nnx.Dropout):
    """nnx.Dropout (stream 'dropout', `deterministic` flipped by `model.train()` / `.eval()`,
    `nnx.reseed` works) with a cheaper mask: each entry is kept when its `counter_hash_bits`
    word is below round(keep * 2^32), and kept entries are scaled by 2^32 / that threshold, so
    the output is unbiased exactly (the keep probability is rounded to a multiple of 2^-32).
    The mask is computed inside the fusion that applies it (and again in the backward pass)
    instead of being drawn as a random array by threefry first: on CPU that removed most of
    the cost of ParT's dropout (10^7 attention weights per block). Same key, same mask."""

    def __call__(self, inputs, *, deterministic: bool | None = None, rngs=None):
        deterministic = self.deterministic if deterministic is None else deterministic
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        if self.broadcast_dims:
            return super().__call__(inputs, deterministic=deterministic, rngs=rngs)
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, nnx.Rngs):
            key = rngs[self.rng_collection]()
        elif isinstance(rngs, nnx.RngStream):
            key = rngs()
        else:
            key = rngs
        threshold = max(1, min(2**32 - 1, round((1.0 - self.rate) * 2**32)))
        keep = counter_hash_bits(key, inputs.shape) < jnp.uint32(threshold)
        scale = jnp.asarray(2.0**32 / threshold, inputs.dtype)
        return jnp.where(keep, inputs * scale, jnp.zeros_like(inputs))


def _zero_masked(y: Array, mask: Array | None) -> Array:
    if mask is None:
        return y
    return jnp.where(jnp.asarray(mask, bool)[..., None], y, jnp.zeros((), y.dtype))


def _check_mask(x: Array, mask: Array | None, where: str) -> None:
    if mask is not None and tuple(mask.shape) != tuple(x.shape[:-1]):
        raise ValueError(
            f"{where}: mask must have shape x.shape[:-1] = {tuple(x.shape[:-1])}, got "
            f"{tuple(mask.shape)} (x has shape {tuple(x.shape)})")


class Dense(nnx.Module):
    """y = x @ kernel + bias, kernel (in_features, out_features) drawn by `kernel_init`."""

    def __init__(self, in_features: int, out_features: int, *,
                 kernel_init: Callable = inits.glorot_uniform, use_bias: bool = True,
                 bias_init: Callable = inits.zeros, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.in_features = in_features
        self.out_features = out_features
        shape = (in_features, out_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
        self.bias = (nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype))
                     if use_bias else None)

    def __call__(self, x: Array) -> Array:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"Dense: expected x.shape[-1] == in_features = {self.in_features}, got x of shape "
                f"{tuple(x.shape)}")
        y = dense_matmul(x, self.kernel[...])
        if self.bias is not None:
            y = y + self.bias[...]
        return y


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def batch_norm_gelu(x, mask, scale, bias, epsilon, axes):
    """Training-mode masked batch normalisation followed by the exact GELU, with a hand-written
    VJP that keeps only x (and the per-feature statistics) for the backward pass and recomputes
    the normalised values there. Same values and gradients as `BatchNorm` + `gelu` by autodiff
    (tested), with about half the full-size intermediates XLA otherwise materialises: it is what
    the ParT pair embedding runs on its ~10^6 pairs x 64 channels.

    x (..., C); mask (...) bool (True = real entry; statistics over the real entries only) or
    None; scale, bias (C,); axes = the leading axes. Returns (y, batch mean, batch variance);
    y is 0 at masked entries. The statistics carry no gradient (they feed the running averages).
    """
    y, (mean, var), _ = _bn_gelu_forward(x, mask, scale, bias, epsilon, axes)
    return y, mean, var


def _masked_moments(x, mask, axes):
    """(mean, biased variance, count) per feature of x (..., C) over the entries with mask True
    (all if mask is None), reduced over `axes`. Computed in float32 at least, also for bf16 x
    (bf16 sums over ~10^6 entries lose the variance): the running averages are float32."""
    acc = jnp.promote_types(x.dtype, jnp.float32)
    w = (jnp.ones(x.shape[:-1], acc) if mask is None else jnp.asarray(mask, acc))[..., None]
    count = jnp.sum(w)
    denom = jnp.maximum(count, 1.0)
    wide = x.astype(acc)
    mean = jnp.sum(w * wide, axis=axes) / denom
    var = jnp.sum(w * jnp.square(wide - mean), axis=axes) / denom
    return mean, var, count


def _bn_gelu_forward(x, mask, scale, bias, epsilon, axes):
    # float32 statistics (returned for the running averages), applied in x's dtype
    mean, var, count = _masked_moments(x, mask, axes)
    n = jnp.maximum(count, 1.0)
    rstd = jax.lax.rsqrt(var + epsilon).astype(x.dtype)
    u = (x - mean.astype(x.dtype)) * (rstd * scale) + bias
    cdf, _ = normal_cdf_pdf(u)
    y = u * cdf
    if mask is not None:
        y = jnp.where(mask[..., None], y, jnp.zeros((), y.dtype))
    return y, (mean, var), (x, mask, scale, bias, mean.astype(x.dtype), rstd, n)


def _bn_gelu_fwd(x, mask, scale, bias, epsilon, axes):
    y, (mean, var), residuals = _bn_gelu_forward(x, mask, scale, bias, epsilon, axes)
    return (y, mean, var), residuals


def _bn_gelu_bwd(epsilon, axes, residuals, cotangents):
    # the barrier keeps XLA from merging this recomputation with the forward pass, which turns
    # it back into stored full-size intermediates (the step's memory traffic: 75.5 GB with it,
    # 78.9 GB without, ParT at batch 128 x 128)
    x, mask, scale, bias, mean, rstd, n = jax.lax.optimization_barrier(residuals)
    dy = cotangents[0]
    xhat = (x - mean) * rstd
    u = xhat * scale + bias
    cdf, pdf = normal_cdf_pdf(u)
    g = dy * (cdf + u * pdf)
    if mask is not None:
        g = jnp.where(mask[..., None], g, jnp.zeros((), g.dtype))
    dbias = jnp.sum(g, axis=axes, dtype=n.dtype)
    dscale = jnp.sum(g * xhat, axis=axes, dtype=n.dtype)
    dx = (rstd * scale) * (g - ((dbias + xhat * dscale) / n).astype(g.dtype))
    if mask is not None:
        dx = jnp.where(mask[..., None], dx, jnp.zeros((), dx.dtype))
    dmask = None if mask is None else np.zeros(mask.shape, jax.dtypes.float0)
    return dx.astype(x.dtype), dmask, dscale.astype(scale.dtype), dbias.astype(bias.dtype)


batch_norm_gelu.defvjp(_bn_gelu_fwd, _bn_gelu_bwd)


class BatchNorm(nnx.Module):
    """Mask-aware batch normalisation over all leading axes of (..., num_features).

    Training mode (use_running_average=False): mean and (biased) variance per feature are taken
    over every leading position with mask True, y = scale * (x - mean) / sqrt(var + epsilon) + bias,
    and the running statistics are updated
        running = momentum * running + (1 - momentum) * batch
    (flax convention; biased variance also in the running average). A batch with no unmasked
    entry leaves the running statistics unchanged. Padded entries never enter any statistic, so
    adding padding changes neither the outputs at real entries nor the running averages.
    Eval mode (use_running_average=True, set by `model.eval()`): the running statistics are used.
    Outputs at masked positions are zero. The output dtype is that of x and the parameters
    (scale, bias) together: the float32 running statistics do not promote a bfloat16 forward
    pass (mixed precision, `hepjax.train.step`) back to float32.
    """

    def __init__(self, num_features: int, *, momentum: float = 0.99, epsilon: float = 1e-5,
                 use_running_average: bool = False, param_dtype=jnp.float32, rngs: nnx.Rngs):
        del rngs  # no random parameters; kept for a uniform constructor
        self.num_features = num_features
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = use_running_average
        self.scale = nnx.Param(jnp.ones((num_features,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x: Array, mask: Array | None = None,
                 use_running_average: bool | None = None) -> Array:
        self._check(x, mask)
        use_ra = self.use_running_average if use_running_average is None else use_running_average
        if use_ra:
            mean, var = self.mean[...], self.var[...]
        else:
            mean, var, count = _masked_moments(x, mask, tuple(range(x.ndim - 1)))
            self.update_running(mean, var, count)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.bias[...]
        return _zero_masked(y.astype(jnp.result_type(x, self.scale[...])), mask)

    def gelu(self, x: Array, mask: Array | None = None, shift: Array | None = None) -> Array:
        """gelu(self(x + shift, mask)) (exact GELU), 0 at masked entries; in training mode
        through `batch_norm_gelu` (same values, cheaper backward pass on large inputs).

        ``shift`` (C,), e.g. the bias of the Dense layer before: batch normalisation removes it
        in training mode (its gradient is exactly 0), so it only enters the running mean there
        and x + shift is never formed; in eval mode it is added."""
        if self.use_running_average:
            x = x if shift is None else x + shift
            return _zero_masked(_gelu_exact_act(self(x, mask)), mask)
        self._check(x, mask)
        mask = None if mask is None else jnp.asarray(mask, bool)
        y, mean, var = batch_norm_gelu(x, mask, self.scale[...], self.bias[...],
                                       float(self.epsilon), tuple(range(x.ndim - 1)))
        count = x[..., 0].size if mask is None else jnp.sum(mask)
        mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
        if shift is not None:
            mean = mean + jax.lax.stop_gradient(shift)
        self.update_running(mean, var, count)
        return y

    def _check(self, x: Array, mask: Array | None) -> None:
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"BatchNorm: expected x.shape[-1] == num_features = {self.num_features}, got "
                f"x of shape {tuple(x.shape)}")
        _check_mask(x, mask, "BatchNorm")

    def update_running(self, mean: Array, var: Array, count) -> None:
        """running = momentum * running + (1 - momentum) * batch; unchanged if count == 0."""
        m = self.momentum
        has_data = count > 0
        old_mean, old_var = self.mean[...], self.var[...]
        self.mean[...] = jnp.where(has_data, m * old_mean + (1 - m) * mean, old_mean)
        self.var[...] = jnp.where(has_data, m * old_var + (1 - m) * var, old_var)


class LayerNorm(nnx.Module):
    """Per-position normalisation over the last (feature) axis:
    y = scale * (x - mean) / sqrt(var + epsilon) + bias, mean/var (biased) over features.
    Positions are independent; `mask` only zeroes the outputs at padded positions."""

    def __init__(self, num_features: int, *, epsilon: float = 1e-5, param_dtype=jnp.float32,
                 rngs: nnx.Rngs | None = None):
        del rngs
        self.num_features = num_features
        self.epsilon = epsilon
        self.scale = nnx.Param(jnp.ones((num_features,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype))

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        _check_mask(x, mask, "LayerNorm")
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.bias[...]
        return _zero_masked(y, mask)


def _make_norm(norm: str | None, num_features: int, rngs: nnx.Rngs):
    if norm is None:
        return None
    if norm == "batch":
        return BatchNorm(num_features, rngs=rngs)
    if norm == "layer":
        return LayerNorm(num_features, rngs=rngs)
    raise ValueError(f"Unknown norm {norm!r}; valid: None, 'batch', 'layer'")


def _apply_norm(norm, x, mask):
    return x if norm is None else norm(x, mask=mask)


def _make_dropout(rate: float, rngs: nnx.Rngs):
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if rate == 0.0:
        return None
    if "dropout" not in rngs:
        raise ValueError(
            "dropout > 0 needs a 'dropout' stream in rngs so that nnx.reseed(model, dropout=key) "
            "controls it: build the model with nnx.Rngs(params=seed, dropout=seed2)")
    return nnx.Dropout(rate, rngs=rngs)


class ResidualBlock(nnx.Module):
    """One residual unit mapping (..., in_features) -> (..., out_features).

    pre_norm=True  (default, 'pre-activation'):  y = skip(x) + drop(act(dense(norm(x))))
    pre_norm=False (post-norm, original ResNet): y = norm(skip(x) + drop(act(dense(x))))
    skip is the identity if in_features == out_features, otherwise a bias-free Dense projection.
    norm: None | 'batch' | 'layer' (over in_features for pre-norm, out_features for post-norm).
    """

    def __init__(self, in_features: int, out_features: int, *, activation: str | Callable = "relu",
                 norm: str | None = None, dropout: float = 0.0, pre_norm: bool = True,
                 kernel_init: Callable = inits.he_uniform, rngs: nnx.Rngs):
        self.pre_norm = pre_norm
        self.activation = get_activation(activation)
        self.dense = Dense(in_features, out_features, kernel_init=kernel_init, rngs=rngs)
        self.norm = _make_norm(norm, in_features if pre_norm else out_features, rngs)
        self.dropout = _make_dropout(dropout, rngs)
        self.skip = (None if in_features == out_features else
                     Dense(in_features, out_features, use_bias=False, rngs=rngs))

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        skip = x if self.skip is None else self.skip(x)
        h = _apply_norm(self.norm, x, mask) if self.pre_norm else x
        h = self.activation(self.dense(h))
        if self.dropout is not None:
            h = self.dropout(h)
        y = skip + h
        if not self.pre_norm:
            y = _apply_norm(self.norm, y, mask)
        return _zero_masked(y, mask)


class MLP(nnx.Module):
    """Multi-layer perceptron (..., in_features) -> (..., out_features).

    residual=False: each hidden layer is Dense -> norm -> activation -> dropout.
    residual=True:  each hidden layer is a pre-norm `ResidualBlock` (projection skip where the
                    width changes).
    The output layer is a Dense followed by `final_activation` (None = linear).
    init='he' (default): hidden kernels He-uniform for relu-like activations, Glorot-uniform
    otherwise, the output kernel Glorot-uniform, biases zero. init='torch': every kernel and
    bias as PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (`initializers.torch_uniform`; residual blocks' biases stay zero).
    Call as mlp(x, mask=None); mask (x.shape[:-1], bool) feeds the mask-aware BatchNorm and
    zeroes the outputs at padded positions.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *,
                 activation: str | Callable = "relu", dropout: float = 0.0,
                 norm: str | None = None, residual: bool = False,
                 final_activation: str | Callable | None = None, init: str = "he",
                 rngs: nnx.Rngs):
        if init not in ("he", "torch"):
            raise ValueError(f"MLP: init={init!r}; valid: 'he', 'torch'")
        self.activation = get_activation(activation)
        self.final_activation = (None if final_activation is None
                                 else get_activation(final_activation))
        relu_like = isinstance(activation, str) and activation.lower() in (
            "relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "swish")
        kinit = inits.he_uniform if relu_like else inits.glorot_uniform
        out_init = inits.glorot_uniform
        bias = lambda fan_in: inits.zeros  # noqa: E731
        if init == "torch":
            kinit = out_init = inits.torch_uniform
            bias = inits.fan_in_uniform_bias
        self.residual = residual
        blocks, norms, drops = [], [], []
        prev = in_features
        for width in hidden:
            if residual:
                blocks.append(ResidualBlock(prev, width, activation=activation, norm=norm,
                                            dropout=dropout, kernel_init=kinit, rngs=rngs))
            else:
                blocks.append(Dense(prev, width, kernel_init=kinit, bias_init=bias(prev),
                                    rngs=rngs))
                norms.append(_make_norm(norm, width, rngs))
                drops.append(_make_dropout(dropout, rngs))
            prev = width
        self.blocks = nnx.List(blocks)
        self.norms = nnx.List(norms)
        self.drops = nnx.List(drops)
        self.out = Dense(prev, out_features, kernel_init=out_init, bias_init=bias(prev), rngs=rngs)

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        _check_mask(x, mask, "MLP")
        h = x
        for i, block in enumerate(self.blocks):
            if self.residual:
                h = block(h, mask=mask)
            else:
                h = _apply_norm(self.norms[i], block(h), mask)
                h = self.activation(h)
                if self.drops[i] is not None:
                    h = self.drops[i](h)
        y = self.out(h)
        if self.final_activation is not None:
            y = self.final_activation(y)
        return _zero_masked(y, mask)


def one_hot(labels: Array, num_classes: int, dtype=jnp.float32) -> Array:
    """One-hot encoding (..., ) int -> (..., num_classes).

    Raises ValueError for labels outside [0, num_classes) when `labels` is concrete (not traced);
    under jit out-of-range labels give all-zero rows (jax.nn.one_hot behaviour).
    """
    if not isinstance(labels, jax.core.Tracer):
        arr = np.asarray(labels)
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"one_hot: labels must be integers, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(
                f"one_hot: labels must lie in [0, {num_classes}); got min {arr.min()}, max "
                f"{arr.max()}. Check num_classes or remap the labels.")
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)
