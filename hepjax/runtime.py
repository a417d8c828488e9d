"""Process settings that make XLA:CPU faster, applied at the command-line entry points.

XLA:CPU takes its buffers from glibc's malloc. Buffers larger than 32 MB (ParT's pair
embedding holds several of ~270 MB at batch 128 x 128 particles) are fresh ``mmap`` regions on
every call, so each training step first page-faults gigabytes of new 4 KiB pages: on the 2-core
development machine 40 % of a ParT training step was kernel time. glibc's tunable
``glibc.malloc.hugetlb=1`` (glibc >= 2.35) makes malloc ask for transparent huge pages
(``madvise(MADV_HUGEPAGE)``), 512x fewer faults (in a profiling run on that machine, a
pair-embedding-sized gradient went from 1.14 s to 0.68 s).

GLIBC_TUNABLES is read once at process start, so the entry points (`hepjax`, `python -m
hepjax.parallel`, the experiment runners) call `reexec_with_tuned_allocator()` first: when the
setting is missing and can help, it re-executes the same command line with it added, once.
Opt out with ``HEPJAX_TUNE_ALLOCATOR=0``. Scripts that import hepjax as a library can
``export GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` themselves. Results do not change: only where
the memory comes from.
"""
from __future__ import annotations

import os
import pathlib
import platform
import sys

__all__ = ["HUGETLB_TUNABLE", "allocator_env", "huge_pages_available", "reexec_with_tuned_allocator",
           "same_allocator_for_all"]

HUGETLB_TUNABLE = "glibc.malloc.hugetlb=1"
_THP = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")


def allocator_env(environ=None) -> dict:
    """A copy of ``environ`` (default os.environ) with ``glibc.malloc.hugetlb=1`` appended to
    GLIBC_TUNABLES (other tunables kept; an explicit hugetlb setting is left alone)."""
    env = dict(os.environ if environ is None else environ)
    current = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in current:
        env["GLIBC_TUNABLES"] = f"{current}:{HUGETLB_TUNABLE}" if current else HUGETLB_TUNABLE
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
    """Re-executes this process's command line with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``
    when that is missing and can help; returns (doing nothing) otherwise. Call it first thing
    in a command-line entry point, never from library code."""
    if os.environ.get("HEPJAX_TUNE_ALLOCATOR", "1") == "0":
        return
    if "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    if os.environ.get("_HEPJAX_REEXECED") or not huge_pages_available():
        return
    argv = list(getattr(sys, "orig_argv", []) or [])
    if not argv or not sys.executable:
        return
    env = allocator_env()
    env["_HEPJAX_REEXECED"] = "1"  # never loop, whatever glibc makes of the setting
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + argv[1:], env)


def same_allocator_for_all(kind: str) -> str:
    """For benchmarks against other frameworks run as subprocesses (which inherit the
    environment): 'hugetlb' re-executes with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 like the
    entry points, 'default' requires it absent, so both sides always share one setting.
    Returns the setting in words."""
    if kind == "hugetlb":
        reexec_with_tuned_allocator()
    elif kind != "default":
        raise ValueError(f"allocator {kind!r}: use 'hugetlb' or 'default'")
    elif "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", ""):
        raise SystemExit("--allocator default: unset GLIBC_TUNABLES first")
    return os.environ.get("GLIBC_TUNABLES", "") or "glibc default"
