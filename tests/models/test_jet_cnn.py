"""Jet-image CNNs: shapes and parameter counts, translation equivariance of the convolution
stack before pooling, and training smoke tests through hepjax.train."""
import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from hepjax.models import jet_cnn

from .toyjets import train_losses


def _count(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_default_cnn_on_40x40_parameter_count():
    model = nnx.eval_shape(lambda: jet_cnn.build(jet_cnn.default_config(), (40, 40, 1), 1,
                                                 nnx.Rngs(params=0)))
    conv = (16 * 1 * 64 + 64) + 3 * (16 * 64 * 64 + 64)
    dense = (10 * 10 * 64 * 64 + 64) + (64 * 256 + 256) + (256 * 256 + 256) + (256 + 1)
    assert _count(model) == conv + dense
    with pytest.raises(ValueError, match="images"):
        jet_cnn.build(jet_cnn.default_config(), (40, 4), 1, nnx.Rngs(params=0))


def test_landscape_cnn_on_37x37_has_the_landscapes_parameter_count():
    """The top-tagging landscape lists the CNN (Macaluso-Shih) at 610k parameters: these layers on
    Macaluso-Shih's 37 x 37 images (SAME padding, two 2 x 2 pools -> 9 x 9 x 64), two logits."""
    from experiments.top_tagging import config as landscape
    cfg = landscape.get_config("cnn")
    n = cfg.data.image_size
    assert n == 37
    model = nnx.eval_shape(lambda: jet_cnn.build(cfg.model, (n, n, 1), 2, nnx.Rngs(params=0)))
    conv = (16 * 1 * 64 + 64) + 3 * (16 * 64 * 64 + 64)
    dense = (9 * 9 * 64 * 64 + 64) + (64 * 256 + 256) + (256 * 256 + 256) + (256 * 2 + 2)
    assert _count(model) == conv + dense == 612_674
    assert abs(_count(model) - 610_000) / 610_000 < 0.01


def test_cnn_translation_equivariant_before_pooling():
    cfg = ml_collections.ConfigDict(dict(filters=(4, 4, 4, 4), dense_dims=(8,)))
    model = jet_cnn.build(cfg, (40, 40, 1), 1, nnx.Rngs(params=0))
    img = np.zeros((1, 40, 40, 1), np.float32)
    img[0, 18:23, 17:21, 0] = np.random.default_rng(0).uniform(0, 1, (5, 4))  # a central jet
    feats = nnx.jit(lambda m, x: m.features(x, pool=False))
    # zero ('SAME') padding and the biases make the borders differ: compare the interior, further
    # than the receptive field (4 layers of 4x4: 12 pixels) plus the shift from every edge
    m = 15
    shifted = np.roll(img, (2, -3), axis=(1, 2))
    got = np.asarray(feats(model, shifted))[:, m:-m, m:-m]
    want = np.roll(np.asarray(feats(model, img)), (2, -3), axis=(1, 2))[:, m:-m, m:-m]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(want).max() > 1e-3  # the jet is visible in the compared region
    # with pooling (total stride 4), equivariance holds for shifts by multiples of 4 only
    pooled = nnx.jit(lambda m, x: m.features(x))
    moved4 = np.roll(img, (4, 4), axis=(1, 2))
    np.testing.assert_allclose(np.asarray(pooled(model, moved4))[:, 4:-4, 4:-4],
                               np.roll(np.asarray(pooled(model, img)), (1, 1),
                                       axis=(1, 2))[:, 4:-4, 4:-4], atol=1e-5)
    moved1 = np.roll(img, (1, 0), axis=(1, 2))
    assert np.abs(np.asarray(pooled(model, moved1)) - np.asarray(pooled(model, img))).max() > 1e-4


def test_resnext_shapes_and_grouping():
    def build_and_call():
        model = jet_cnn.build_resnext(jet_cnn.default_resnext_config(), (16, 16, 1), 2,
                                      nnx.Rngs(params=0))
        model.eval()
        return model, model(jax.numpy.zeros((3, 16, 16, 1)))

    model, y = nnx.eval_shape(build_and_call)
    assert y.shape == (3, 2)
    assert model.blocks[0].conv2.groups == 8
    assert model.blocks[0].conv2.kernel.shape == (3, 3, 4, 32)  # 8 groups x 4 channels
    assert model.blocks[2].conv2.kernel.shape == (3, 3, 16, 128)


def _images(b, size, seed):
    """Toy 'top' (three hard prongs) vs 'QCD' (one core) images."""
    rng = np.random.default_rng(seed)
    label = (np.arange(b) % 2).astype(np.float32)
    img = np.zeros((b, size, size, 1), np.float32)
    c = size // 2
    for i in range(b):
        img[i, c, c, 0] = 1.0
        if label[i]:
            for _ in range(2):
                r, s = rng.integers(2, size - 2, 2)
                img[i, r, s, 0] = rng.uniform(0.3, 0.8)
        img[i] += 0.02 * rng.random((size, size, 1)).astype(np.float32)
    return img, label


@pytest.mark.parametrize("which", ["cnn", "resnext"])
def test_smoke_training_loss_decreases(which):
    size, b = 16, 32
    img, label = _images(b, size, 0)
    batch = {"features": img, "label": label, "weight": np.ones(b, np.float32)}
    if which == "cnn":
        cfg = ml_collections.ConfigDict(dict(filters=(8, 8, 8, 8), dense_dims=(16,)))
        model_fn = lambda r: jet_cnn.build(cfg, (size, size, 1), 1, r)  # noqa: E731
    else:
        cfg = ml_collections.ConfigDict(dict(stem_width=8, stages=((16, 2, 1),),
                                             cardinality=4, group_width=2))
        model_fn = lambda r: jet_cnn.build_resnext(cfg, (size, size, 1), 1, r)  # noqa: E731
    losses = train_losses(model_fn, batch, 3e-3 if which == "cnn" else 1e-2, 20)
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.6 * losses[0], losses
