"""hepjax.kernels.select: the one place that picks a kernel's form — modes, the per-backend
default, the HEPJAX_KERNELS override and its error, `use` restoring the previous mode, and the
import order of hepjax.kernels and hepjax.nn (each uses the other)."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from hepjax import kernels
from hepjax.kernels import select


def test_modes_pick_the_forms_and_use_restores():
    before = kernels.mode()
    on_cpu = jax.default_backend() == "cpu"
    with kernels.use("reference"):
        assert not any(kernels.uses_fast(k) for k in select.FAST_BACKENDS)
        with kernels.use("fast"):
            assert all(kernels.uses_fast(k) for k in select.FAST_BACKENDS)
        assert kernels.mode() == "reference"
        with kernels.use("auto"):
            assert kernels.uses_fast("attention") == on_cpu
    assert kernels.mode() == before
    with pytest.raises(ValueError, match="auto, fast, reference"):
        with kernels.use("fastest"):
            pass
    with pytest.raises(KeyError, match="unknown kernel 'softmax'"):
        kernels.uses_fast("softmax")


def test_dispatch_runs_the_selected_form_at_trace_time():
    calls = []

    @select.dispatch("matmul", fast=lambda x: calls.append("fast") or x)
    def twice(x):
        calls.append("reference")
        return x
    with kernels.use("fast"):
        twice(1.0)
        jax.jit(lambda x: twice(x))(jnp.ones(2))
    with kernels.use("reference"):
        twice(1.0)
    assert calls == ["fast", "fast", "reference"]
    assert twice.reference.__name__ == "twice" and twice.kernel == "matmul"


def _python(code, mode):
    env = dict(os.environ, HEPJAX_KERNELS=mode, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_environment_variable_is_read_on_import_and_checked():
    # hepjax.kernels imported first (before hepjax.nn, which it builds on and which uses it)
    code = ("import hepjax.kernels as k, hepjax.nn, hepjax.models.part; "
            "print(k.mode(), k.uses_fast('pairs'))")
    done = _python(code, "Reference")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["reference", "False"]
    bad = _python("import hepjax.nn", "quick")
    assert bad.returncode != 0 and "HEPJAX_KERNELS='quick'" in bad.stderr
