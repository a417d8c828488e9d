"""Process settings that make XLA:CPU faster, applied at the command-line entry points.

XLA:CPU takes its buffers from glibc's malloc, and a compiled training step asks for one large
block for all its intermediates (for ParT at batch 128 x 128 particles, gigabytes in one
`malloc` per step). glibc serves blocks above 32 MB with a fresh ``mmap`` and returns them with
``munmap`` on free, so every step page-faults gigabytes of new zeroed pages: kernel time that
can be a large part of a step, and more right after another process has used the memory, as
the kernel compacts memory to find huge pages. The tuned settings (glibc tunables, glibc >= 2.35):

  * ``glibc.malloc.hugetlb=1``: transparent huge pages for malloc'd memory (512x fewer faults);
  * ``glibc.malloc.arena_max=1``, ``glibc.malloc.mmap_max=0``: every block comes from the
    main heap, also for XLA's worker threads (a thread arena cannot hold such a block and would
    fall back to mmap);
  * ``glibc.malloc.trim_threshold=2**36``: freed memory stays in the process for the next step
    (as a caching allocator would keep it) instead of going back to the kernel.

With them a step reuses the same memory: no page faults after the first step
(`benchmarks/part_vs_weaver.py --allocator tuned|default` measures the difference, and applies
the same settings to PyTorch; BENCHMARKS.md has the figures). The cost: the process keeps its
peak memory.

GLIBC_TUNABLES is read once at process start, so the entry points (`hepjax`, `python -m
hepjax.parallel`, the experiment runners) call `reexec_with_tuned_allocator()` first: when a
setting is missing and the system can use it, it re-executes the same command line with the
settings added, once. Opt out with ``HEPJAX_TUNE_ALLOCATOR=0``; a tunable the user already set
is left as it is. Scripts that import hepjax as a library can export
``GLIBC_TUNABLES=$(python -c "import hepjax.runtime as r; print(r.TUNED)")`` themselves.
Results do not change: only where the memory comes from.
"""
from __future__ import annotations

import os
import pathlib
import platform
import sys

__all__ = ["HUGETLB_TUNABLE", "TUNED", "allocator_env", "huge_pages_available",
           "reexec_with_tuned_allocator", "same_allocator_for_all"]

HUGETLB_TUNABLE = "glibc.malloc.hugetlb=1"
TUNED = ":".join([HUGETLB_TUNABLE, "glibc.malloc.arena_max=1", "glibc.malloc.mmap_max=0",
                  f"glibc.malloc.trim_threshold={2**36}"])
_THP = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _names(tunables: str) -> set[str]:
    return {t.split("=")[0] for t in tunables.split(":") if t}


def allocator_env(environ=None, tunables: str = TUNED) -> dict:
    """A copy of ``environ`` (default os.environ) with each of ``tunables`` (default: all the
    tuned settings) appended to GLIBC_TUNABLES unless that tunable is set there already (other
    tunables and explicit settings are kept)."""
    env = dict(os.environ if environ is None else environ)
    current = env.get("GLIBC_TUNABLES", "")
    have = _names(current)
    add = [t for t in tunables.split(":") if t and t.split("=")[0] not in have]
    if add:
        env["GLIBC_TUNABLES"] = ":".join(([current] if current else []) + add)
    return env


def huge_pages_available() -> bool:
    """True on Linux with glibc >= 2.35 and transparent huge pages not disabled."""
    if sys.platform != "linux":
        return False
    libc, version = platform.libc_ver()
    try:
        major, minor = (int(v) for v in version.split(".")[:2])
    except ValueError:
        return False
    if libc != "glibc" or (major, minor) < (2, 35):
        return False
    try:
        return "[never]" not in _THP.read_text()
    except OSError:
        return False


def reexec_with_tuned_allocator() -> None:
    """Re-executes this process's command line with the tuned GLIBC_TUNABLES (`TUNED`) when one
    of them is missing and the system can use them; returns (doing nothing) otherwise. Call it
    first thing in a command-line entry point, never from library code."""
    if os.environ.get("HEPJAX_TUNE_ALLOCATOR", "1") == "0":
        return
    env = allocator_env()
    if env.get("GLIBC_TUNABLES", "") == os.environ.get("GLIBC_TUNABLES", ""):
        return  # all set already (by us or by the user)
    if os.environ.get("_HEPJAX_REEXECED") or not huge_pages_available():
        return
    _reexec(env)


def _reexec(env: dict) -> None:
    """Replaces this process by the same command line under `env` (marked re-executed, so it
    never loops); returns when the command line is unknown."""
    argv = list(getattr(sys, "orig_argv", []) or [])
    if not argv or not sys.executable:
        return
    env = {**env, "_HEPJAX_REEXECED": "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + argv[1:], env)


def same_allocator_for_all(kind: str) -> str:
    """For benchmarks against other frameworks run as subprocesses (which inherit the
    environment): 'tuned' re-executes with the tuned GLIBC_TUNABLES like the entry points,
    'hugetlb' with only ``glibc.malloc.hugetlb=1`` (the setting of earlier benchmark records),
    'default' requires GLIBC_TUNABLES unset; so both sides always share one setting. Returns
    the setting in words."""
    current = os.environ.get("GLIBC_TUNABLES", "")
    if kind == "tuned":
        reexec_with_tuned_allocator()
    elif kind == "hugetlb":
        if current != HUGETLB_TUNABLE:
            if os.environ.get("_HEPJAX_REEXECED"):
                raise SystemExit(f"--allocator hugetlb: could not set {HUGETLB_TUNABLE}")
            _reexec({**os.environ, "GLIBC_TUNABLES": HUGETLB_TUNABLE})
    elif kind != "default":
        raise ValueError(f"allocator {kind!r}: use 'tuned', 'hugetlb' or 'default'")
    elif current:
        raise SystemExit("--allocator default: unset GLIBC_TUNABLES first")
    return os.environ.get("GLIBC_TUNABLES", "") or "glibc default"
