"""Test set-up: fake 8 CPU devices before JAX is imported anywhere.

Multi-device code (data parallel over a mesh, pmap, ensembles) is tested on CPU by asking XLA for
8 host devices. This must happen before the first `import jax`, so it lives here, at the top of
the conftest that pytest loads first.
"""
import os

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
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
