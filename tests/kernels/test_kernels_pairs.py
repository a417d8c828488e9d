"""hepjax.kernels.pairs: the rectangular packing holds each unordered pair once and unpacks
exactly; symmetric_pairs and unpack_symmetric_pairs, fast (packed, with cotangent barriers)
against the reference (lower triangle by index, mirrored gather): the same pairs, the same
symmetric arrays and the same gradients (float64), for even and odd N."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.kernels.pairs import rfp_pack, rfp_unpack, symmetric_pairs, unpack_symmetric_pairs
from hepjax.physics import from_pt_eta_phi_m, pairwise_features


@pytest.mark.parametrize("k", [1, 2, 5])
def test_rectangular_packing_holds_each_pair_once_and_unpacks_exactly(k):
    """rfp_pack puts each unordered pair (i, j) of a symmetric 2k x 2k array, diagonal included,
    exactly once into (2k + 1, k); rfp_unpack rebuilds the array bit for bit."""
    n = 2 * k
    rng = np.random.default_rng(k)
    a = rng.normal(size=(2, n, n, 3)).astype(np.float32)
    a = a + a.transpose(0, 2, 1, 3)
    packed = rfp_pack(a[:, :k, :k], a[:, k:, k:], a[:, k:, :k])
    assert packed.shape == (2, 2 * k + 1, k, 3)
    full = np.moveaxis(np.asarray(rfp_unpack(np.moveaxis(np.asarray(packed), -1, 1))), 1, -1)
    np.testing.assert_array_equal(full, a)
    # label each pair by (max(i, j), min(i, j)): the packed labels are the n (n + 1) / 2 pairs
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    label = (np.maximum(i, j) * n + np.minimum(i, j)).astype(np.int32)
    got = np.asarray(rfp_pack(label[None, :k, :k], label[None, k:, k:], label[None, k:, :k]))
    rows, cols = np.tril_indices(n)
    assert sorted(got.ravel().tolist()) == sorted((rows * n + cols).tolist())


def _jets(n, seed=0):
    rng = np.random.default_rng(seed)
    b = 3
    vec = from_pt_eta_phi_m(rng.uniform(1, 100, (b, n)), rng.normal(0, 0.3, (b, n)),
                            rng.normal(0, 0.3, (b, n)), 0.14)
    mask = np.ones((b, n), bool)
    mask[1, n // 2:] = False
    mask[2, 1:] = False
    return jnp.asarray(np.asarray(vec)), jnp.asarray(mask)


@pytest.mark.parametrize("n", [1, 4, 7])
def test_symmetric_pairs_fast_and_reference_give_the_same_symmetric_arrays_float64(n):
    """Both forms, packed and unpacked again, give pairwise_features' full (N, N) array (its
    lower triangle mirrored) and the pair mask; per-pair values unpacked by either form get the
    same gradients (the fast form's cotangent barriers included) as autodiff of the plain
    mirrored gather, whose gradient sums the two mirrored entries."""
    with jax.enable_x64(True):
        vec, mask = _jets(n)
        full = np.asarray(pairwise_features(vec, mask))
        i, j = np.tril_indices(n)
        mirrored = full.copy()
        mirrored[:, j, i] = full[:, i, j]
        pair_mask = np.asarray(mask)[:, :, None] & np.asarray(mask)[:, None, :]
        rng = np.random.default_rng(n)
        weights = [jnp.asarray(rng.normal(size=(3, 4, n, n))) for _ in range(3)]
        grads = {}
        for form in ("fast", "reference"):
            feats, pmask = getattr(symmetric_pairs, form)(pairwise_features, vec, mask)
            assert feats.shape[:2] == pmask.shape and feats.shape[1] >= n * (n + 1) // 2
            unpack = getattr(unpack_symmetric_pairs, form)
            # (B, F, P) per-pair values -> (B, F, N, N)
            got = np.moveaxis(np.asarray(unpack(jnp.moveaxis(feats, -1, 1), n)), 1, -1)
            np.testing.assert_array_equal(got, mirrored)
            np.testing.assert_array_equal(
                np.asarray(unpack(pmask[:, None].astype(jnp.float64), n))[:, 0], pair_mask)
            values = jnp.asarray(rng.normal(size=(3, 4, feats.shape[1])))

            def loss(v, unpack=unpack):
                return sum(jnp.sum(jnp.tanh(unpack(v, n) * w)) for w in weights)
            # gradients mapped back to (N, N) by the same unpacking, to compare the forms
            grads[form] = np.asarray(unpack(jax.grad(loss)(values), n))
            # against autodiff of the mirrored gather on the (N, N) array the values make
            table = unpack(values, n)
            ref = jax.grad(lambda t: sum(jnp.sum(jnp.tanh(t * w)) for w in weights))(table)
            sym = np.asarray(ref) + np.swapaxes(np.asarray(ref), -1, -2)
            sym[..., np.arange(n), np.arange(n)] /= 2
            np.testing.assert_allclose(grads[form], sym, rtol=1e-12, atol=1e-14)
