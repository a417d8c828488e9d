"""hepjax.runtime: the allocator setting the entry points re-execute with."""
import os
import subprocess
import sys

import pytest

from hepjax import runtime

SCRIPT = ("import os, sys\nfrom hepjax import runtime\nruntime.reexec_with_tuned_allocator()\n"
          "print(os.environ.get('GLIBC_TUNABLES'), os.environ.get('_HEPJAX_REEXECED'), sys.argv[1:])\n")


def test_allocator_env_appends_and_keeps_other_tunables():
    assert runtime.allocator_env({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    env = runtime.allocator_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "X": "1"})
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert env["X"] == "1"
    explicit = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert runtime.allocator_env(explicit)["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"


def _run(tmp_path, **extra):
    script = tmp_path / "entry.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", "_HEPJAX_REEXECED", "HEPJAX_TUNE_ALLOCATOR")}
    env.update(extra)
    out = subprocess.run([sys.executable, str(script), "a", "--b=1"], env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    return out.stdout.strip().splitlines()


def test_entry_point_reexecutes_once_with_the_same_arguments(tmp_path):
    if not runtime.huge_pages_available():
        pytest.skip("no glibc >= 2.35 with transparent huge pages here: nothing to re-execute")
    lines = _run(tmp_path)
    assert lines == ["glibc.malloc.hugetlb=1 1 ['a', '--b=1']"]  # printed once: one process


def test_opt_out_and_already_set_leave_the_process_alone(tmp_path):
    assert _run(tmp_path, HEPJAX_TUNE_ALLOCATOR="0") == ["None None ['a', '--b=1']"]
    assert _run(tmp_path, GLIBC_TUNABLES="glibc.malloc.hugetlb=1") == [
        "glibc.malloc.hugetlb=1 None ['a', '--b=1']"]
