"""Preprocessing vs numpy: mask-aware standardisation, shared scales, log transforms, PCA vs
np.linalg, pipelines, and bit-identical save/load."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hepjax import preprocessing as pp


def _jets(seed=0, n=200, p=10):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p, 4)) * [20.0, 1.0, 2.0, 5.0] + [50.0, 0.0, 1.0, -3.0]
    x[..., 0] = np.abs(x[..., 0]) + 1.0  # pt-like, positive
    mask = rng.random((n, p)) < 0.7
    x[~mask] = 0.0  # zero padding, as in padded particle arrays
    return x, mask


def test_masked_standardize_vs_numpy():
    x, mask = _jets()
    params = pp.Standardize().fit(x, mask)
    real = x[mask]
    np.testing.assert_allclose(params["mean"], real.mean(0), rtol=1e-12)
    np.testing.assert_allclose(params["std"], real.std(0), rtol=1e-12)
    assert not np.allclose(params["mean"], x.reshape(-1, 4).mean(0), rtol=1e-2)  # padding ignored
    y = np.asarray(pp.Standardize().apply(params, jnp.asarray(x, jnp.float32), mask))
    np.testing.assert_allclose(y[mask], (real - real.mean(0)) / real.std(0), rtol=1e-4, atol=1e-4)
    assert np.all(y[~mask] == 0)
    mean, std = pp.masked_mean_std(x, mask)
    np.testing.assert_allclose(mean, real.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, real.std(0), rtol=1e-12)


def test_standardize_zero_std_and_feature_subset():
    x = np.random.default_rng(1).normal(size=(50, 3))
    x[:, 1] = 4.0
    params = pp.Standardize(features=(0, 1)).fit(x)
    assert params["std"][1] == 1.0 and params["mean"][1] == 4.0
    assert params["mean"][2] == 0.0 and params["std"][2] == 1.0  # feature 2 untouched
    y = np.asarray(pp.Standardize(features=(0, 1)).apply(params, x))
    assert np.all(np.isfinite(y)) and np.all(y[:, 1] == 0)
    np.testing.assert_allclose(y[:, 2], x[:, 2], rtol=1e-6)


def test_shared_scale_for_correlated_observables():
    x, mask = _jets(2)
    step = pp.Standardize(groups=((1, 2, 3),))
    params = step.fit(x, mask)
    pooled = x[mask][:, 1:].reshape(-1)
    np.testing.assert_allclose(params["mean"][1:], pooled.mean(), rtol=1e-12)
    np.testing.assert_allclose(params["std"][1:], pooled.std(), rtol=1e-12)
    np.testing.assert_allclose(params["std"][0], x[mask][:, 0].std(), rtol=1e-12)
    # a common scale preserves ratios of the (centred) components
    assert len(set(params["std"][1:].tolist())) == 1
    with pytest.raises(ValueError, match="more than one group"):
        pp.Standardize(groups=((0, 1), (1, 2))).fit(x, mask)


def test_log_transform():
    x, mask = _jets(3)
    step = pp.LogTransform(features=(0,), eps=-0.5)
    y = np.asarray(step.apply({}, jnp.asarray(x, jnp.float32), mask))
    np.testing.assert_allclose(y[mask][:, 0], np.log(x[mask][:, 0] - 0.5), rtol=1e-5)
    np.testing.assert_allclose(y[mask][:, 1:], x[mask][:, 1:], rtol=1e-6)
    assert np.all(y[~mask] == 0)  # zero padding did not trip the positivity check
    with pytest.raises(ValueError, match="feature 0 has value"):
        pp.LogTransform(features=(0,), eps=-2.0).apply({}, x, mask)
    with pytest.raises(ValueError, match="x > -1"):
        pp.LogTransform(features=(1,), kind="log1p").apply({}, x, mask)
    y1 = np.asarray(pp.LogTransform(features=(0,), kind="log1p").apply({}, x, mask))
    np.testing.assert_allclose(y1[mask][:, 0], np.log1p(x[mask][:, 0]), rtol=1e-5)
    back = np.asarray(step.inverse({}, jnp.asarray(y), mask))
    np.testing.assert_allclose(back[mask], x[mask], rtol=1e-4, atol=1e-4)


def test_pca_vs_numpy_on_known_covariance():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 3))
    cov = a @ a.T + np.diag([3.0, 0.5, 0.1])
    x = rng.multivariate_normal([1.0, -2.0, 0.5], cov, size=20000)
    params = pp.PCA().fit(x)
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(evals)[::-1]
    np.testing.assert_allclose(params["explained_variance"], evals[order], rtol=1e-10)
    np.testing.assert_allclose(params["explained_variance_ratio"], evals[order] / evals.sum(),
                               rtol=1e-10)
    for comp, vec in zip(params["components"], evecs[:, order].T):
        np.testing.assert_allclose(np.abs(comp @ vec), 1.0, rtol=1e-8)
    # and the population covariance within sampling error
    tevals = np.sort(np.linalg.eigvalsh(cov))[::-1]
    np.testing.assert_allclose(params["explained_variance"], tevals, rtol=0.05)
    z = np.asarray(pp.PCA().apply(params, x))
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.diag(evals[order]),
                               atol=1e-6 * evals.max())
    with jax.enable_x64(True):
        back = np.asarray(pp.PCA().inverse(params, pp.PCA().apply(params, x)))
    np.testing.assert_allclose(back, x, rtol=1e-10, atol=1e-10)
    wz = np.asarray(pp.PCA(whiten=True).apply(params, x))
    np.testing.assert_allclose(np.var(wz, axis=0, ddof=1), 1.0, rtol=1e-4)


def test_pca_masked_and_truncated():
    x, mask = _jets(5)
    params = pp.PCA(n_components=2).fit(x, mask)
    real = x[mask]
    evals = np.sort(np.linalg.eigvalsh(np.cov(real, rowvar=False)))[::-1]
    np.testing.assert_allclose(params["explained_variance"], evals[:2], rtol=1e-10)
    z = np.asarray(pp.PCA(n_components=2).apply(params, jnp.asarray(x, jnp.float32), mask))
    assert z.shape == (200, 10, 2) and np.all(z[~mask] == 0)
    with pytest.raises(ValueError, match="n_components"):
        pp.PCA(n_components=5).fit(x, mask)


def _pipeline():
    return pp.Pipeline([pp.LogTransform(features=(0,)), pp.Standardize(groups=((1, 2),)),
                        pp.PCA(n_components=3)])


def test_pipeline_fit_apply_and_eval_data_uses_train_stats():
    x, mask = _jets(6)
    xe, me = _jets(7, n=50)
    xe[me] = xe[me] * 2.0 + 3.0  # an evaluation set with different statistics
    fitted = _pipeline().fit(x, mask)
    # reference: each step by hand in numpy, fitted on train only
    real = x[mask].copy()
    real[:, 0] = np.log(real[:, 0])
    r12 = real[:, 1:3]
    mean = np.array([real[:, 0].mean(), r12.mean(), r12.mean(), real[:, 3].mean()])
    std = np.array([real[:, 0].std(), r12.std(), r12.std(), real[:, 3].std()])
    s = (real - mean) / std
    _, _, vt = np.linalg.svd(s - s.mean(0), full_matrices=False)
    ev = xe[me].copy()
    ev[:, 0] = np.log(ev[:, 0])
    ref = ((ev - mean) / std - s.mean(0)) @ vt[:3].T
    got = np.asarray(fitted.transform(jnp.asarray(xe, jnp.float32), me))[me]
    np.testing.assert_allclose(np.abs(got), np.abs(ref), rtol=1e-3, atol=1e-3)  # PCA signs
    assert np.all(np.asarray(fitted(xe, me))[~me] == 0)
    # refitting on the eval data would give different outputs
    refit = _pipeline().fit(xe, me)
    assert not np.allclose(np.asarray(refit.transform(xe, me))[me], got, atol=1e-2)
    # pure apply is jit-able
    jitted = jax.jit(lambda x, m: fitted.pipeline.apply(fitted.params, x, m))
    np.testing.assert_allclose(jitted(jnp.asarray(xe, jnp.float32), me)[me], got, rtol=1e-5,
                               atol=1e-5)


def _assert_params_identical(a, b):
    assert len(a) == len(b)
    for pa, pb in zip(a, b):
        assert pa.keys() == pb.keys()
        for k in pa:
            assert pa[k].dtype == pb[k].dtype and pa[k].shape == pb[k].shape
            assert pa[k].tobytes() == pb[k].tobytes()  # bit-identical


def test_save_load_round_trip_bit_identical(tmp_path):
    x, mask = _jets(8)
    fitted = _pipeline().fit(x, mask)
    path = tmp_path / "preprocessing.json"
    fitted.save(path)
    loaded = pp.FittedPipeline.load(path)
    assert loaded.pipeline == fitted.pipeline
    _assert_params_identical(fitted.params, loaded.params)
    xj = jnp.asarray(x, jnp.float32)
    np.testing.assert_array_equal(loaded.transform(xj, mask), fitted.transform(xj, mask))
    again = pp.FittedPipeline.from_dict(json.loads(json.dumps(fitted.to_dict())))
    _assert_params_identical(fitted.params, again.params)


def test_serialisation_exact_for_awkward_values():
    vals = np.array([1 / 3, 1e-310, -0.0, np.pi * 1e300, np.nan, np.inf], np.float64)
    f32 = np.array([1 / 3, 1e-45, 16777217.0, -np.inf], np.float32)
    fitted = pp.FittedPipeline(pp.Pipeline([pp.Standardize(), pp.Standardize(features=(0,))]),
                               ({"mean": vals, "std": vals[::-1].copy()},
                                {"mean": f32, "std": f32.reshape(2, 2)}))
    loaded = pp.FittedPipeline.from_dict(json.loads(json.dumps(fitted.to_dict())))
    _assert_params_identical(fitted.params, loaded.params)
    assert loaded.pipeline.steps[1].features == (0,)
    with pytest.raises(ValueError, match="unknown step type"):
        pp.FittedPipeline.from_dict({"format": "hepjax.preprocessing/1",
                                     "steps": [{"type": "Whatever", "settings": {}, "params": {}}]})
