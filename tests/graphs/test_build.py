"""Graph building: kNN / radius against brute-force numpy, padding never a neighbour, LSH bins."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax.graphs import build

RNG = np.random.default_rng(1)


def _set(b=3, n=12, d=3, min_real=2):
    x = RNG.normal(size=(b, n, d)).astype(np.float32)
    counts = RNG.integers(min_real, n + 1, size=b)
    counts[0] = n
    mask = np.arange(n)[None] < counts[:, None]
    return x, mask


@pytest.mark.parametrize("d", [2, 6])
def test_knn_matches_bruteforce(d):
    x, mask = _set(d=d)
    k = 4
    idx, valid = build.knn(jnp.asarray(x), jnp.asarray(mask), k)
    for b in range(x.shape[0]):
        real = np.flatnonzero(mask[b])
        for i in range(x.shape[1]):
            if not mask[b, i]:
                assert not valid[b, i].any()
                continue
            others = real[real != i]
            dist = np.sum((x[b, others] - x[b, i]) ** 2, -1)
            want = others[np.argsort(dist)[:k]]
            got = np.asarray(idx[b, i])[np.asarray(valid[b, i])]
            assert list(got) == list(want)


def test_knn_padding_never_neighbour_and_invariant_to_padding_values():
    x, mask = _set(n=10, min_real=3)
    x2 = np.where(mask[..., None], x, 1e3 * RNG.normal(size=x.shape)).astype(np.float32)
    x2[1, -1] = 0.0  # a padded point sitting on top of a real one
    i1, v1 = build.knn(jnp.asarray(x), jnp.asarray(mask), 5)
    i2, v2 = build.knn(jnp.asarray(x2), jnp.asarray(mask), 5)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(np.where(v1, i1, -1), np.where(v2, i2, -1))
    nb_real = np.take_along_axis(mask, np.asarray(i1).reshape(3, -1), 1).reshape(i1.shape)
    assert np.all(nb_real[np.asarray(v1)])


def test_eta_phi_distance_wraps_phi():
    pts = jnp.array([[[0.0, np.pi - 0.05], [0.0, -np.pi + 0.05], [0.0, 0.0]]])
    d = build.eta_phi_sq_distances(pts)
    np.testing.assert_allclose(d[0, 0, 1], 0.1 ** 2, rtol=1e-4)
    idx, _ = build.knn(pts, jnp.ones((1, 3), bool), 1, distance_fn=build.eta_phi_sq_distances)
    assert int(idx[0, 0, 0]) == 1


def test_radius_and_all_to_all_and_edge_list():
    x, mask = _set(b=2, n=8, d=2)
    r = 0.8
    idx, valid = build.radius_neighbours(jnp.asarray(x), jnp.asarray(mask), r, 7)
    for b in range(2):
        for i in range(8):
            got = set(np.asarray(idx[b, i])[np.asarray(valid[b, i])].tolist())
            want = {j for j in range(8) if j != i and mask[b, i] and mask[b, j]
                    and np.sum((x[b, i] - x[b, j]) ** 2) <= r * r}
            assert got == want
    adj = np.asarray(build.all_to_all(jnp.asarray(mask)))
    assert adj.sum() == sum(int(c) * (int(c) - 1) for c in mask.sum(1))
    s, rcv, em = build.to_edge_list(idx, valid)
    assert s.shape == (2 * 8 * 7,)
    np.testing.assert_array_equal(np.asarray(s)[np.asarray(em)] // 8, np.asarray(rcv)[np.asarray(em)] // 8)


def test_gather_neighbours():
    x = jnp.asarray(RNG.normal(size=(2, 5, 3)).astype(np.float32))
    idx = jnp.asarray(RNG.integers(0, 5, size=(2, 5, 4)))
    got = build.gather_neighbours(x, idx)
    np.testing.assert_array_equal(got, np.asarray(x)[np.arange(2)[:, None, None], np.asarray(idx)])


def test_knn_in_bins_exact_when_one_bin_and_local_when_many():
    n, k = 64, 5
    x = RNG.normal(size=(n, 2)).astype(np.float32)
    mask = np.arange(n) < 60
    proj = jax.random.normal(jax.random.key(0), (2, 4))
    idx1, v1 = build.knn_in_bins(jnp.asarray(x), jnp.asarray(mask), k, n, proj)
    ref, rv = build.knn(jnp.asarray(x)[None], jnp.asarray(mask)[None], k, exclude_self=False)
    np.testing.assert_array_equal(np.where(v1, idx1, -1), np.where(rv[0], ref[0], -1))
    idx, valid = build.knn_in_bins(jnp.asarray(x), jnp.asarray(mask), k, 16, proj)
    assert idx.shape == (n, k)
    assert not np.asarray(valid)[~mask].any()
    got = np.asarray(idx)[np.asarray(valid)]
    assert mask[got].all()  # padded points never neighbours
    # binned neighbours are real neighbours in the same bin: each point is its own nearest
    np.testing.assert_array_equal(np.asarray(idx)[mask, 0], np.flatnonzero(mask))
    with pytest.raises(ValueError, match="multiple of bin_size"):
        build.knn_in_bins(jnp.asarray(x), jnp.asarray(mask), k, 24, proj)


def test_knn_rejects_bad_k():
    x, mask = _set(n=6)
    with pytest.raises(ValueError, match="k=6"):
        build.knn(jnp.asarray(x), jnp.asarray(mask), 6)
