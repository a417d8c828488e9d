"""hepjax.export: the StableHLO (jax.export) and ONNX artefacts of a run reproduce the harness's
own predictions (``predict_run``) on the run's whole test split to 1e-5, with a symbolic batch
dimension and the padding mask as an input; bad run directories give one clear error."""
import json
import subprocess
import sys

import numpy as np
import pytest

from hepjax import export
from hepjax.train import experiment
from tests.export.runs import init_run, tiny_config

pytest.importorskip("jax2onnx")
pytest.importorskip("onnxruntime")

TOL = 1e-5


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """A really trained MLP run (4 steps through ``experiment.train``)."""
    workdir = tmp_path_factory.mktemp("mlp")
    experiment.train(tiny_config("mlp"), workdir, progress=False)
    return workdir


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mlp_run):
    """Restorable runs of each model, made on first use."""
    made = {"mlp": mlp_run}

    class Runs(dict):
        def __missing__(self, name):
            made[name] = init_run(tiny_config(name), tmp_path_factory.mktemp(name))
            return made[name]

    return Runs(made)


SLOW = pytest.mark.slow   # the graph models: compiling and converting them takes a minute on 2 cores
CASES = [("mlp", "stablehlo"), ("mlp", "onnx"), ("pfn", "stablehlo"), ("pfn", "onnx"),
         pytest.param("particlenet", "stablehlo", marks=SLOW),
         pytest.param("particlenet", "onnx", marks=SLOW),
         pytest.param("part", "stablehlo", marks=SLOW),
         # ParT's ln m^2 pair feature of unresolved pairs (massless self-pairs: float32
         # rounding noise that XLA:CPU and onnxruntime round differently) is the same in both
         # since pairwise_features floors m^2 at 1e-6 (E_a + E_b)^2; before, 5e-3 to 2e-2 apart
         pytest.param("part", "onnx", marks=SLOW),
         pytest.param("transformer", "onnx", marks=SLOW)]


@pytest.mark.parametrize("model,fmt", CASES)
def test_artefact_matches_harness_on_test_set(runs, tmp_path, model, fmt):
    out = tmp_path / ("model" + export.SUFFIX[fmt])
    info = export.export(runs[model], fmt, out)
    names = [i["name"] for i in info["inputs"]]
    expected = {"mlp": ["features"], "pfn": ["features", "mask"],
                "particlenet": ["features", "mask"], "part": ["features", "mask", "vectors"],
                "transformer": ["features", "mask"]}[model]
    assert names == expected
    assert all(i["shape"][0] == "B" for i in info["inputs"])
    check = export.check_export(runs[model], out, batch_size=50)   # batches of 50 and 38
    assert check["n_test"] == 88
    assert check["max_abs_diff"] < TOL, check


def test_onnx_mask_is_an_input(runs, tmp_path):
    """Changing padded particles' features changes nothing; changing a real one does."""
    out = export.export(runs["pfn"], "onnx", tmp_path / "pfn.onnx")["path"]
    config = experiment._read_config(runs["pfn"])
    raw = experiment.load_eval_data(config)
    feats, mask = raw["features"][:8].astype(np.float32), raw["mask"][:8].copy()
    mask[:, 10:] = False          # any padding pattern is a valid input
    assert (~mask).any() and mask.any()
    run = export.onnx_session(out)
    base = run([feats, mask])
    noisy = np.where(mask[..., None], feats, 1e3).astype(np.float32)
    np.testing.assert_array_equal(run([noisy, mask]), base)
    real = feats.copy()
    real[mask] += 5.0
    assert np.abs(run([real, mask]) - base).max() > 1e-3
    # dynamic batch: one jet at a time gives the batch's values
    singles = np.concatenate([run([feats[i:i + 1], mask[i:i + 1]]) for i in range(3)])
    np.testing.assert_allclose(singles, base[:3], atol=TOL)


def test_stablehlo_loads_with_plain_jax(mlp_run, tmp_path):
    """The docstring's loader, in a fresh interpreter: hepjax is never imported."""
    out = export.export(mlp_run, "stablehlo", tmp_path / "m.jaxexport")["path"]
    config = experiment._read_config(mlp_run)
    features = experiment.load_eval_data(config)["features"][:5].astype(np.float32)
    np.save(tmp_path / "x.npy", features)
    code = (
        "import sys, jax, numpy as np\n"
        f"e = jax.export.deserialize(bytearray(open({out!r}, 'rb').read()))\n"
        f"y = np.asarray(e.call(np.load({str(tmp_path / 'x.npy')!r})))\n"
        "assert not any(m.startswith('hepjax') for m in sys.modules)\n"
        "print(y.tolist())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    got = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    expected, _ = experiment.predict_run(mlp_run)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, expected[:5], atol=TOL)


def test_bad_path_and_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.export(tmp_path / "nowhere", "stablehlo")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        export.export(tmp_path, "onnx")
    run = init_run(tiny_config("mlp"), tmp_path / "untrained", checkpoint=False)
    with pytest.raises(FileNotFoundError, match="has no checkpoint"):
        export.export(run, "stablehlo")
    with pytest.raises(ValueError, match="format='tflite'"):
        export.export(run, "tflite")
