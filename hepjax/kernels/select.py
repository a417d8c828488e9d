"""The one place that chooses, per kernel, between its fast form and its reference.

A kernel is a function of `hepjax.kernels` with two implementations of the same maths: the
reference, written as a reader would write the maths, and a fast form (custom VJP, fused or
tiled layout) written for one backend's compiler. Which one runs depends on the mode:

  auto       (default) the fast form on the backends listed for it in `FAST_BACKENDS`, where it
             was written and measured; the reference everywhere else;
  fast       every fast form on every backend (to test a fast form where it is not the default);
  reference  every reference (to check that a result does not hang on a fast path).

The mode comes from the environment variable HEPJAX_KERNELS, read once when hepjax.kernels is
first imported; `set_mode` changes it for the process and `use` for a block of code (tests).
Nothing else in hepjax looks at the backend to choose an algorithm.

The choice is made when a function is traced: a function jitted before the mode changed keeps
the form it was traced with, so switch before the first call (a new jax.jit / nnx.jit traces
again).
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator

import jax

__all__ = ["ENV_VAR", "MODES", "FAST_BACKENDS", "mode", "set_mode", "use", "uses_fast",
           "dispatch"]

ENV_VAR = "HEPJAX_KERNELS"
MODES = ("auto", "fast", "reference")

# kernel -> the backends where mode 'auto' runs its fast form. All of them were written for
# XLA:CPU (layouts and fusion boundaries of its compiler); none has been shown to help on a GPU
# or TPU, where the references run.
FAST_BACKENDS: dict[str, frozenset[str]] = {
    "attention": frozenset({"cpu"}),        # bmm, softmax_matmul
    "matmul": frozenset({"cpu"}),           # dense_matmul, edge_matmul
    "dropout": frozenset({"cpu"}),          # dropout (counter-hash masks)
    "batch_norm_gelu": frozenset({"cpu"}),  # batch_norm_gelu
    "rowwise": frozenset({"cpu"}),          # bn_gelu_mlp, bn_gelu_mlp_eval
    "pairs": frozenset({"cpu"}),            # symmetric_pairs, unpack_symmetric_pairs
    "materialize": frozenset({"cpu"}),      # materialize, materialize_cotangent
    "spline_bins": frozenset({"cpu"}),      # select_bins (flows.ElementwiseSpline)
}


def _checked(value: str, where: str) -> str:
    m = value.strip().lower()
    if m not in MODES:
        raise ValueError(f"{where}={value!r}: the kernel mode must be one of {', '.join(MODES)} "
                         f"(auto: fast forms on the backends they were written for)")
    return m


_mode = _checked(os.environ.get(ENV_VAR, "auto") or "auto", ENV_VAR)


def mode() -> str:
    """The current mode: 'auto', 'fast' or 'reference'."""
    return _mode


def set_mode(new: str) -> None:
    """Sets the mode for the whole process (functions traced from now on)."""
    global _mode
    _mode = _checked(new, "set_mode")


@contextlib.contextmanager
def use(new: str) -> Iterator[None]:
    """`with use('reference'):` traces the block with that mode, then restores the previous one."""
    global _mode
    previous, _mode = _mode, _checked(new, "use")
    try:
        yield
    finally:
        _mode = previous


def uses_fast(kernel: str) -> bool:
    """Whether `kernel` (a key of FAST_BACKENDS) runs its fast form if traced now."""
    if kernel not in FAST_BACKENDS:
        raise KeyError(f"unknown kernel {kernel!r}; known: {', '.join(sorted(FAST_BACKENDS))}")
    if _mode == "auto":
        return jax.default_backend() in FAST_BACKENDS[kernel]
    return _mode == "fast"


def dispatch(kernel: str, fast: Callable) -> Callable[[Callable], Callable]:
    """Decorator for a kernel's public function, whose body is the reference: the result runs
    `fast` or the reference as `uses_fast(kernel)` says, with the same arguments. Both stay
    reachable as `.fast` and `.reference`: for the tests that compare them, and for a fast form
    built from other fast forms."""
    if kernel not in FAST_BACKENDS:
        raise KeyError(f"unknown kernel {kernel!r}; add it to FAST_BACKENDS")

    def wrap(reference: Callable) -> Callable:
        @functools.wraps(reference)
        def call(*args, **kwargs):
            return (fast if uses_fast(kernel) else reference)(*args, **kwargs)
        call.fast, call.reference, call.kernel = fast, reference, kernel
        return call
    return wrap
