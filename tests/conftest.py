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
"""
import os

_FLAGS = {"--xla_force_host_platform_device_count": "8", "--xla_backend_optimization_level": "0"}
for _name, _value in _FLAGS.items():
    if _name not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_name}={_value}").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
