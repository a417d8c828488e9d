"""load_splits for the top_tagging dataset: reference directories, single files split by ttv."""
import ml_collections
import numpy as np
import pytest

from hepjax import data as data_lib
from hepjax.data import formats

pytest.importorskip("pandas")


def _write(path, n, ttv=None, seed=0):
    rng = np.random.default_rng(seed)
    m = 40
    counts = rng.integers(5, m, n)
    pt = rng.exponential(30, (n, m)) + 1
    eta, phi = rng.normal(0, 0.3, (n, m)), rng.normal(0, 0.3, (n, m))
    p4 = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    p4 = np.where((np.arange(m)[None] < counts[:, None])[..., None], p4, 0)
    ttv = rng.integers(0, 3, n) if ttv is None else np.full(n, ttv)
    formats.write_top_tagging(path, p4, None, ttv, rng.integers(0, 2, n))
    return p4, ttv


def _cfg(path, representation, **kw):
    return ml_collections.ConfigDict(dict(name="top_tagging", path=str(path), representation=representation,
                                          max_particles=32, image_size=16, **kw))


def test_reference_directory_all_representations(tmp_path):
    pytest.importorskip("fastjet")
    for split, code, n in (("train", 0, 30), ("test", 1, 12), ("val", 2, 10)):
        _write(tmp_path / f"{split}.h5", n, code, seed=code)
    obs = data_lib.load_splits(_cfg(tmp_path, "jet_observables"))
    assert obs["train"]["features"].shape == (30, 11) and obs["test"]["label"].shape == (12,)
    assert obs["feature_names"][0] == "mass"
    parts = data_lib.load_splits(_cfg(tmp_path, "particles"))
    val = parts["val"]
    assert val["features"].shape == (10, 32, 7) and val["mask"].shape == (10, 32)
    assert val["vectors"].shape == (10, 32, 4) and val["mask"].dtype == bool
    assert np.all(val["vectors"][~val["mask"]] == 0) and np.all(val["features"][~val["mask"]] == 0)
    imgs = data_lib.load_splits(_cfg(tmp_path, "images"))
    assert imgs["train"]["features"].shape == (30, 16, 16, 1)


def test_single_file_split_by_ttv(tmp_path):
    p4, ttv = _write(tmp_path / "all.h5", 60)
    splits = data_lib.load_splits(_cfg(tmp_path / "all.h5", "particles"))
    for split, code in (("train", 0), ("test", 1), ("val", 2)):
        assert len(splits[split]["label"]) == np.sum(ttv == code)
    np.testing.assert_allclose(splits["test"]["vectors"], p4[ttv == 1][:, :32], rtol=1e-6)
    with pytest.raises(ValueError, match="representation='bogus'"):
        data_lib.load_splits(_cfg(tmp_path / "all.h5", "bogus"))
    with pytest.raises(FileNotFoundError, match=r"missing \['train.h5', 'test.h5', 'val.h5'\]"):
        (tmp_path / "d").mkdir()
        data_lib.load_splits(_cfg(tmp_path / "d", "particles"))


def test_generated_and_cached(tmp_path):
    pytest.importorskip("pythia8mc")
    cfg = _cfg("", "jet_observables", cache_dir=str(tmp_path), seed=3, n_jets=8, detector="none",
               events_per_chunk=30, workers=1)
    first = data_lib.load_splits(cfg)
    cached = list(tmp_path.glob("top-tagging_n8_seed3_none_epc30_recipe*_pythia*.h5"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    second = data_lib.load_splits(cfg)
    assert cached[0].stat().st_mtime_ns == stamp      # read from the cache, not regenerated
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(first[split]["features"], second[split]["features"])
    assert sum(len(first[s]["label"]) for s in ("train", "val", "test")) == 8


def test_max_train_and_val_jets_are_nested_seeded_subsets(tmp_path):
    p4, ttv = _write(tmp_path / "all.h5", 200, seed=4)
    full = data_lib.load_splits(_cfg(tmp_path / "all.h5", "particles", seed=5))
    small = data_lib.load_splits(_cfg(tmp_path / "all.h5", "particles", seed=5,
                                      max_train_jets=20, max_val_jets=7))
    larger = data_lib.load_splits(_cfg(tmp_path / "all.h5", "particles", seed=5,
                                       max_train_jets=40))
    assert len(small["train"]["label"]) == 20 and len(small["val"]["label"]) == 7
    # the test split is never cut: every configuration is tested on the same jets
    np.testing.assert_array_equal(small["test"]["vectors"], full["test"]["vectors"])

    def rows(sub, whole):
        flat = whole.reshape(len(whole), -1)
        return {int(np.flatnonzero((flat == r).all(1))[0]) for r in sub.reshape(len(sub), -1)}

    small_rows = rows(small["train"]["vectors"], full["train"]["vectors"])
    larger_rows = rows(larger["train"]["vectors"], full["train"]["vectors"])
    assert len(small_rows) == 20 and small_rows < larger_rows      # nested
    assert sorted(small_rows) != list(range(20))                   # a random choice, not the head
    # train_fraction and max_train_jets draw from the same seeded permutation
    frac = data_lib.load_splits(_cfg(tmp_path / "all.h5", "particles", seed=5,
                                     train_fraction=20 / len(full["train"]["label"])))
    np.testing.assert_array_equal(frac["train"]["vectors"], small["train"]["vectors"])
    with pytest.raises(ValueError, match="max_val_jets=-1"):
        data_lib.load_splits(_cfg(tmp_path / "all.h5", "particles", max_val_jets=-1))


def test_only_the_requested_splits_are_built(tmp_path):
    _write(tmp_path / "all.h5", 60, seed=6)
    test_only = data_lib.load_splits(_cfg(tmp_path / "all.h5", "images"), ("test",))
    assert set(test_only) == {"test", "feature_names"}
    with pytest.raises(ValueError, match="choose from"):
        data_lib.load_splits(_cfg(tmp_path / "all.h5", "images"), ("training",))


def test_ttv_fractions_name_the_cache_and_are_checked():
    from hepjax.data import top_tagging
    base = dict(n_jets=100, seed=1, detector="fast", events_per_chunk=200)
    default = top_tagging.cache_path(ml_collections.ConfigDict(base)).name
    same = top_tagging.cache_path(ml_collections.ConfigDict(dict(base, ttv_fractions=(0.6, 0.2, 0.2)))).name
    other = top_tagging.cache_path(ml_collections.ConfigDict(dict(base, ttv_fractions=(0.8, 0.1, 0.1)))).name
    assert default == same and "_ttv" not in default
    assert "_ttv80-10-10_" in other
    with pytest.raises(ValueError, match="ttv_fractions"):
        top_tagging.ttv_fractions(ml_collections.ConfigDict(dict(ttv_fractions=(0.5, 0.2, 0.2))))


def _fake_generate(log):
    """A slow stand-in for generation.generate that writes chunks and logs each call."""
    def generate(task, n_jets, seed, *, chunk_dir=None, **_):
        import os
        import time
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        os.makedirs(chunk_dir, exist_ok=True)
        for i in range(5):   # a second generator would find these deleted under it
            time.sleep(0.1)
            np.savez(os.path.join(chunk_dir, f"c{os.getpid()}_{i}.npz"), a=np.zeros(3))
        p4 = np.zeros((n_jets, 4, 4), np.float32)
        p4[:, :2, 0] = 10.0
        return {"p4": p4, "mask": p4[..., 0] > 0, "label": np.arange(n_jets) % 2,
                "ttv": np.arange(n_jets) % 3, "n_constituents": np.full(n_jets, 2, np.int32)}
    return generate


def test_concurrent_requests_generate_the_sample_once(tmp_path, monkeypatch):
    """Two processes asking for the same uncached sample at once (pytest-xdist workers): one
    generates under the lock, the other waits and reads the same file; no process removes chunks
    under another."""
    import multiprocessing

    from hepjax.configs import defaults
    from hepjax.data import generation, top_tagging

    log = tmp_path / "calls.txt"
    monkeypatch.setattr(generation, "generate", _fake_generate(log))
    cfg = defaults.top_tagging_data(n_jets=12, cache_dir=str(tmp_path / "cache"))
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        paths = pool.map(top_tagging.generate_cached, [cfg, cfg])
    assert paths[0] == paths[1] == top_tagging.cache_path(cfg) and paths[0].is_file()
    assert len(log.read_text().split()) == 1                      # generated once
    assert not top_tagging.cache_path(cfg).with_name(paths[0].stem + ".chunks").exists()
