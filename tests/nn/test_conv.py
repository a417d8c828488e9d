"""Conv2D and pooling against numpy loops; padding modes; translation equivariance; LeNet toy."""
import jax
import numpy as np
import optax
import pytest
from flax import nnx

from hepjax.nn import conv


def _np_conv(x, k, b, stride=1):
    """VALID cross-correlation, x (B, H, W, C), k (kh, kw, C, O)."""
    bsz, h, w, _ = x.shape
    kh, kw, _, o = k.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((bsz, oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, k)
    return out + b


def _img(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("padding,np_mode", [("VALID", None), ("SAME", "constant"),
                                             ("CIRCULAR", "wrap"), ("REFLECT", "reflect"),
                                             (1, "constant")])
def test_conv_matches_numpy_for_each_padding(padding, np_mode):
    layer = conv.Conv2D(2, 3, 3, padding=padding, rngs=nnx.Rngs(0))
    layer.bias[...] = np.array([0.1, -0.2, 0.3], np.float32)
    x = _img((2, 6, 5, 2))
    xp = x if np_mode is None else np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=np_mode)
    ref = _np_conv(xp.astype(np.float64), np.asarray(layer.kernel[...], np.float64),
                   np.asarray(layer.bias[...]))
    np.testing.assert_allclose(np.asarray(layer(x)), ref, rtol=1e-4, atol=1e-5)


def test_strided_and_grouped_conv():
    layer = conv.Conv2D(4, 6, 3, strides=2, padding="VALID", feature_group_count=2,
                        rngs=nnx.Rngs(0))
    assert layer.kernel.shape == (3, 3, 2, 6)
    x = _img((1, 7, 7, 4))
    k = np.asarray(layer.kernel[...], np.float64)
    ref = np.concatenate([_np_conv(x[..., :2], k[..., :3], 0, 2),
                          _np_conv(x[..., 2:], k[..., 3:], 0, 2)], -1)
    np.testing.assert_allclose(np.asarray(layer(x)), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        conv.Conv2D(3, 6, 3, feature_group_count=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="padding"):
        conv.Conv2D(2, 2, 3, padding="ZEROS", rngs=nnx.Rngs(0))


def test_pooling_matches_numpy():
    x = _img((2, 6, 6, 3))
    ref_max = x.reshape(2, 3, 2, 3, 2, 3).max(axis=(2, 4))
    ref_avg = x.reshape(2, 3, 2, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(conv.max_pool(x, 2)), ref_max)
    # float32 sums of four O(1) values: round-off ~1e-7 absolute (means near 0 need the atol)
    np.testing.assert_allclose(np.asarray(conv.avg_pool(x, 2)), ref_avg, rtol=1e-6, atol=2e-7)
    # SAME on an odd size: the last window holds one row, its mean is over real pixels only
    y = np.asarray(conv.avg_pool(x[:, :5, :5], 2, padding="SAME"))
    assert y.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(y[:, 2, 2], x[:, 4, 4], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(conv.max_pool(x[:, :5, :5], 2, padding="SAME"))[:, 2, 2],
                               x[:, 4, 4])
    np.testing.assert_allclose(np.asarray(conv.global_avg_pool(x)), x.mean(axis=(1, 2)),
                               rtol=1e-5)


@pytest.mark.parametrize("padding,np_mode", [("CIRCULAR", "wrap"), ("REFLECT", "reflect"),
                                             (1, "constant")])
def test_pooling_with_explicit_padding_matches_numpy(padding, np_mode):
    """3 x 3 windows, stride 1, on a 5 x 6 image padded by one pixel each side (CIRCULAR and
    REFLECT pad as 'SAME' would; an int pads with zeros, which count in the mean)."""
    x = _img((2, 5, 6, 3), seed=3)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=np_mode)
    windows = np.stack([xp[:, i:i + 5, j:j + 6] for i in range(3) for j in range(3)])
    ref_max, ref_avg = windows.max(axis=0), windows.mean(axis=0)
    np.testing.assert_allclose(np.asarray(conv.max_pool(x, 3, 1, padding=padding)), ref_max)
    np.testing.assert_allclose(np.asarray(conv.avg_pool(x, 3, 1, padding=padding)), ref_avg,
                               rtol=1e-5, atol=1e-6)


def test_convolution_is_translation_equivariant():
    layer = conv.Conv2D(1, 4, 4, padding="CIRCULAR", rngs=nnx.Rngs(0))
    x = _img((1, 12, 12, 1))
    shifted = np.roll(x, (3, -2), axis=(1, 2))
    np.testing.assert_allclose(np.asarray(layer(shifted)),
                               np.roll(np.asarray(layer(x)), (3, -2), axis=(1, 2)),
                               rtol=1e-5, atol=1e-5)
    # zero padding: exact away from the borders (a blob far from the edges)
    same = conv.Conv2D(1, 2, 3, padding="SAME", rngs=nnx.Rngs(1))
    blob = np.zeros((1, 12, 12, 1), np.float32)
    blob[0, 4:7, 3:6, 0] = _img((3, 3))
    moved = np.roll(blob, (2, 3), axis=(1, 2))
    np.testing.assert_allclose(np.asarray(same(moved)),
                               np.roll(np.asarray(same(blob)), (2, 3), axis=(1, 2)), atol=1e-6)
    # pooling commutes with shifts by multiples of its stride only
    np.testing.assert_allclose(np.asarray(conv.max_pool(np.roll(x, 2, axis=1), 2)),
                               np.roll(np.asarray(conv.max_pool(x, 2)), 1, axis=1))


class _LeNet(nnx.Module):
    """LeNet-5-like: conv(6, 5x5) - pool - conv(16, 5x5) - pool - dense 32 - 10 (test toy)."""

    def __init__(self, rngs):
        self.c1 = conv.Conv2D(1, 6, 5, padding="SAME", rngs=rngs)
        self.c2 = conv.Conv2D(6, 16, 5, padding="VALID", rngs=rngs)
        self.d1 = nnx.Linear(16 * 1 * 1, 32, rngs=rngs)
        self.d2 = nnx.Linear(32, 4, rngs=rngs)

    def __call__(self, x):
        x = conv.max_pool(jax.nn.relu(self.c1(x)), 2)  # 12 -> 6
        x = conv.max_pool(jax.nn.relu(self.c2(x)), 2)  # 6 -> 2 -> 1
        return self.d2(jax.nn.relu(self.d1(x.reshape(x.shape[0], -1))))


def test_lenet_learns_digit_like_toy():
    """4 'digits' (bar, cross, box, diagonal) on 12x12 with noise and random shifts."""
    rng = np.random.default_rng(0)
    protos = np.zeros((4, 8, 8), np.float32)
    protos[0, :, 3:5] = 1
    protos[1, 3:5, :] = 1
    protos[1, :, 3:5] = 1
    protos[2, [0, 7], :] = 1
    protos[2, :, [0, 7]] = 1
    protos[3] = np.eye(8)

    def batch(n):
        y = rng.integers(0, 4, n)
        x = 0.2 * rng.normal(size=(n, 12, 12)).astype(np.float32)
        for i in range(n):
            di, dj = rng.integers(0, 5, 2)
            x[i, di:di + 8, dj:dj + 8] += protos[y[i]]
        return x[..., None], y

    model = _LeNet(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    for _ in range(150):
        step(model, opt, *batch(64))
    x, y = batch(400)
    acc = float(np.mean(np.argmax(np.asarray(nnx.jit(lambda m, x: m(x))(model, x)), -1) == y))
    assert acc > 0.95, acc
