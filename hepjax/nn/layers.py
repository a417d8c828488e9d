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

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hepjax import kernels
from hepjax.nn import initializers as inits
from hepjax.nn.activations import gelu as _gelu_exact_act
from hepjax.nn.activations import get_activation

Array = jax.Array

__all__ = ["Dense", "BatchNorm", "LayerNorm", "Dropout", "ResidualBlock", "MLP", "one_hot"]


class Dropout(nnx.Dropout):
    """nnx.Dropout (stream 'dropout', `deterministic` flipped by `model.train()` / `.eval()`,
    `nnx.reseed` works) whose mask is drawn by `hepjax.kernels.dropout`: the same distribution,
    the same mask for the same key (the counter-hash fast form draws other masks than
    nnx.Dropout's threefry ones). broadcast_dims falls back to nnx.Dropout."""

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
        return kernels.dropout(key, self.rate, inputs)


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
        y = kernels.dense_matmul(x, self.kernel[...])
        if self.bias is not None:
            y = y + self.bias[...]
        return y


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
            mean, var, count = kernels.masked_moments(x, mask, tuple(range(x.ndim - 1)))
            self.update_running(mean, var, count)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.bias[...]
        return _zero_masked(y.astype(jnp.result_type(x, self.scale[...])), mask)

    def gelu(self, x: Array, mask: Array | None = None, shift: Array | None = None) -> Array:
        """gelu(self(x + shift, mask)) (exact GELU), 0 at masked entries; in training mode
        through `hepjax.kernels.batch_norm_gelu`.

        ``shift`` (C,), e.g. the bias of the Dense layer before: batch normalisation removes it
        in training mode (its gradient is exactly 0), so it only enters the running mean there
        and x + shift is never formed; in eval mode it is added."""
        if self.use_running_average:
            x = x if shift is None else x + shift
            return _zero_masked(_gelu_exact_act(self(x, mask)), mask)
        self._check(x, mask)
        mask = None if mask is None else jnp.asarray(mask, bool)
        y, mean, var = kernels.batch_norm_gelu(x, mask, self.scale[...], self.bias[...],
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
