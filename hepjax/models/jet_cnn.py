"""Jet-image top taggers: the Macaluso-Shih CNN and a ResNeXt-style variant.

Images are (B, H, W, C), channels last; the layers fit any size (Macaluso-Shih's and the
landscape CNN's images are 37 x 37 pT images, C = 1).

* `MacalusoShihCNN` — S. Macaluso, D. Shih, "Pulling out all the tops with computer vision and
  deep learning", JHEP 10 (2018) 121, arXiv:1803.00107, the "CNN" of the top-tagging landscape
  (Kasieczka et al., SciPost Phys. 7 (2019) 014): DeepTop-style convolution stacks with 4 x 4
  kernels, zero ('SAME') padding and ReLU; 2 x 2 max pooling after the second and the fourth
  convolution; flattened; dense layers with ReLU; logits. Defaults: filters (64, 64, 64, 64),
  dense (64, 256, 256) — set `filters` / `dense_dims` in the config to change them.
* `ResNeXtTagger` — S. Xie et al., "Aggregated Residual Transformations for Deep Neural
  Networks", CVPR 2017 (arXiv:1611.05431), the landscape's "ResNeXt" at jet-image size: a 3 x 3
  stem, stages of bottleneck blocks [1x1 conv -> 3x3 grouped conv (cardinality groups) ->
  1x1 conv] with BatchNorm + ReLU and an identity or projection shortcut, global average
  pooling, a Dense to the logits.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hepjax.nn.conv import Conv2D, global_avg_pool, max_pool
from hepjax.nn.layers import BatchNorm, Dense

Array = jax.Array

__all__ = ["MacalusoShihCNN", "ResNeXtTagger", "ResNeXtBlock", "build", "build_resnext",
           "default_config", "default_resnext_config"]


def _check_images(x, shape, name):
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{name}: expected images (B, {', '.join(map(str, shape))}), got "
                         f"{tuple(x.shape)}")


class MacalusoShihCNN(nnx.Module):
    """Call: model(images (B, H, W, C)) -> logits (B, num_outputs). `features(images)` returns
    the last feature maps before pooling-free flattening (for equivariance tests)."""

    def __init__(self, input_shape: Sequence[int], num_outputs: int, *,
                 filters: Sequence[int] = (64, 64, 64, 64), kernel_size: int = 4,
                 pool_after: Sequence[int] = (1, 3), padding: str = "SAME",
                 dense_dims: Sequence[int] = (64, 256, 256), dropout: float = 0.0,
                 rngs: nnx.Rngs):
        h, w, c = (int(s) for s in input_shape)
        self.input_shape = (h, w, c)
        self.pool_after = tuple(int(i) for i in pool_after)
        convs, prev = [], c
        for f in filters:
            convs.append(Conv2D(prev, int(f), kernel_size, padding=padding, rngs=rngs))
            prev = int(f)
        self.convs = nnx.List(convs)
        # spatial size after the convolutions and pools (computed on abstract values)
        out = jax.eval_shape(self._feature_maps, jax.ShapeDtypeStruct((1, h, w, c), jnp.float32))
        flat = int(out.shape[1] * out.shape[2] * out.shape[3])
        dense, prev = [], flat
        for d in dense_dims:
            dense.append(Dense(prev, int(d), rngs=rngs))
            prev = int(d)
        self.dense = nnx.List(dense)
        self.drop = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
        self.out = Dense(prev, num_outputs, rngs=rngs)

    def _feature_maps(self, x):
        for i, conv in enumerate(self.convs):
            x = jax.nn.relu(conv(x))
            if i in self.pool_after:
                x = max_pool(x, 2)
        return x

    def features(self, images: Array, *, pool: bool = True) -> Array:
        """Feature maps after the convolutions (and the pools unless pool=False)."""
        if pool:
            return self._feature_maps(images)
        x = images
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return x

    def __call__(self, images: Array) -> Array:
        _check_images(images, self.input_shape, "MacalusoShihCNN")
        x = self._feature_maps(images)
        x = x.reshape(x.shape[0], -1)
        for d in self.dense:
            x = jax.nn.relu(d(x))
            if self.drop is not None:
                x = self.drop(x)
        return self.out(x)


class ResNeXtBlock(nnx.Module):
    """Bottleneck y = relu(shortcut(x) + BN(conv1x1(relu(BN(gconv3x3(relu(BN(conv1x1(x))))))))),
    the 3 x 3 convolution grouped into `cardinality` paths of `group_width` channels."""

    def __init__(self, in_channels: int, out_channels: int, *, cardinality: int,
                 group_width: int, stride: int = 1, rngs: nnx.Rngs):
        inner = cardinality * group_width
        self.conv1 = Conv2D(in_channels, inner, 1, use_bias=False, rngs=rngs)
        self.bn1 = BatchNorm(inner, momentum=0.9, rngs=rngs)
        self.conv2 = Conv2D(inner, inner, 3, strides=stride, feature_group_count=cardinality,
                            use_bias=False, rngs=rngs)
        self.bn2 = BatchNorm(inner, momentum=0.9, rngs=rngs)
        self.conv3 = Conv2D(inner, out_channels, 1, use_bias=False, rngs=rngs)
        self.bn3 = BatchNorm(out_channels, momentum=0.9, rngs=rngs)
        if stride != 1 or in_channels != out_channels:
            self.proj = Conv2D(in_channels, out_channels, 1, strides=stride, use_bias=False,
                               rngs=rngs)
            self.proj_bn = BatchNorm(out_channels, momentum=0.9, rngs=rngs)
        else:
            self.proj = self.proj_bn = None

    def __call__(self, x: Array) -> Array:
        h = jax.nn.relu(self.bn1(self.conv1(x)))
        h = jax.nn.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        skip = x if self.proj is None else self.proj_bn(self.proj(x))
        return jax.nn.relu(h + skip)


class ResNeXtTagger(nnx.Module):
    """Call: model(images (B, H, W, C)) -> logits (B, num_outputs).
    stages: ((channels, stride, blocks), ...)."""

    def __init__(self, input_shape: Sequence[int], num_outputs: int, *, stem_width: int = 32,
                 stages: Sequence[Sequence[int]] = ((64, 1, 1), (128, 2, 1), (256, 2, 1)),
                 cardinality: int = 8, group_width: int = 4, rngs: nnx.Rngs):
        h, w, c = (int(s) for s in input_shape)
        self.input_shape = (h, w, c)
        self.stem = Conv2D(c, stem_width, 3, use_bias=False, rngs=rngs)
        self.stem_bn = BatchNorm(stem_width, momentum=0.9, rngs=rngs)
        blocks, prev = [], stem_width
        for channels, stride, n in stages:
            for i in range(int(n)):
                blocks.append(ResNeXtBlock(prev, int(channels), cardinality=cardinality,
                                           group_width=group_width * int(channels) // 64 or 1,
                                           stride=int(stride) if i == 0 else 1, rngs=rngs))
                prev = int(channels)
        self.blocks = nnx.List(blocks)
        self.out = Dense(prev, num_outputs, rngs=rngs)

    def __call__(self, images: Array) -> Array:
        _check_images(images, self.input_shape, "ResNeXtTagger")
        x = jax.nn.relu(self.stem_bn(self.stem(images)))
        for block in self.blocks:
            x = block(x)
        return self.out(global_avg_pool(x))


def default_config():
    import ml_collections
    return ml_collections.ConfigDict(dict(
        name="jet_cnn", filters=(64, 64, 64, 64), kernel_size=4, pool_after=(1, 3),
        padding="SAME", dense_dims=(64, 256, 256), dropout=0.0))


def default_resnext_config():
    import ml_collections
    return ml_collections.ConfigDict(dict(
        name="resnext", stem_width=32, stages=((64, 1, 1), (128, 2, 1), (256, 2, 1)),
        cardinality=8, group_width=4))


def _image_shape(input_shape, name):
    if len(input_shape) != 3:
        raise ValueError(f"model {name!r} takes images (H, W, C), got per-example shape "
                         f"{tuple(input_shape)}")
    return tuple(int(s) for s in input_shape)


def build(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> MacalusoShihCNN:
    """MacalusoShihCNN from cfg (fields of `default_config`); input_shape = (H, W, C)."""
    shape = _image_shape(input_shape, "jet_cnn")
    d = default_config()
    kw = {f: cfg.get(f, d[f]) for f in ("filters", "kernel_size", "pool_after", "padding",
                                        "dense_dims", "dropout")}
    kw["filters"] = tuple(int(f) for f in kw["filters"])
    kw["dense_dims"] = tuple(int(f) for f in kw["dense_dims"])
    kw["pool_after"] = tuple(int(f) for f in kw["pool_after"])
    kw["kernel_size"], kw["dropout"] = int(kw["kernel_size"]), float(kw["dropout"])
    return MacalusoShihCNN(shape, int(num_outputs), rngs=rngs, **kw)


def build_resnext(cfg, input_shape, num_outputs: int, rngs: nnx.Rngs) -> ResNeXtTagger:
    """ResNeXtTagger from cfg (fields of `default_resnext_config`); input_shape = (H, W, C)."""
    shape = _image_shape(input_shape, "resnext")
    d = default_resnext_config()
    kw = {f: cfg.get(f, d[f]) for f in ("stem_width", "stages", "cardinality", "group_width")}
    kw["stages"] = tuple(tuple(int(v) for v in s) for s in kw["stages"])
    return ResNeXtTagger(shape, int(num_outputs), stem_width=int(kw["stem_width"]),
                         stages=kw["stages"], cardinality=int(kw["cardinality"]),
                         group_width=int(kw["group_width"]), rngs=rngs)
