"""Test set-up: fake 8 CPU devices, and cheap XLA compilation, before JAX is imported anywhere.

Multi-device code (data parallel over a mesh, pmap, ensembles) is tested on CPU by asking XLA for
8 host devices. This must happen before the first `import jax`, so it lives here, at the top of
the conftest that pytest loads first.

The tests' models are small and their inputs a few jets or hits, so most of the suite's time is
XLA compiling, and most of that is LLVM optimising the generated CPU code. The suite compiles
with the backend optimisation level 0 (``--xla_backend_optimization_level=0``): on this
project's ParT test model that halves the compile time (2-core AMD EPYC VM) while the HLO-level
optimisations (fusion, layout, algebraic simplification) still run. Every comparison in the
suite is between runs under the same flags or against a tolerance, so the level does not change
what a test checks. A level already in ``XLA_FLAGS`` is kept (e.g. ``=2`` to test the default).

Many tests compile the same programs again (a model's parameter initialisers in every test that
builds it, a training step rerun for a determinism or resume check, a subprocess repeating its
parent's run). JAX's persistent compilation cache, in a directory fresh for each test run and
shared by the xdist workers and the subprocesses they start, turns those repeats into loads:
17 % less CPU time on tests/train plus two model files (measured cold, as in CI). The cache is
keyed by the program, the flags and the JAX version, so it changes no result. A cache directory
already set (``JAX_COMPILATION_CACHE_DIR``) is kept.
"""
import os

_FLAGS = {"--xla_force_host_platform_device_count": "8", "--xla_backend_optimization_level": "0"}
for _name, _value in _FLAGS.items():
    if _name not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_name}={_value}").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_OWN_CACHE = None   # the cache directory this process made (and removes at the end)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:   # the main pytest process: xdist workers
    import tempfile                                  # and subprocesses inherit the variable
    _OWN_CACHE = tempfile.mkdtemp(prefix="hepjax-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data; skips the test with a clear message where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found at {SHARED_DATA}: these tests need the shared HEP files")
    return SHARED_DATA


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        import shutil
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
