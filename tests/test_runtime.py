"""hepjax.runtime: the allocator setting the entry points re-execute with."""
import os
import subprocess
import sys

import pytest

from hepjax import runtime

SCRIPT = ("import os, sys\nfrom hepjax import runtime\nruntime.reexec_with_tuned_allocator()\n"
          "print(os.environ.get('GLIBC_TUNABLES'), os.environ.get('_HEPJAX_REEXECED'), sys.argv[1:])\n")


def test_allocator_env_appends_and_keeps_other_tunables():
    assert runtime.allocator_env({})["GLIBC_TUNABLES"] == runtime.TUNED
    assert runtime.TUNED.split(":") == [
        "glibc.malloc.hugetlb=1", "glibc.malloc.arena_max=1", "glibc.malloc.mmap_max=0",
        "glibc.malloc.trim_threshold=68719476736"]
    env = runtime.allocator_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "X": "1"})
    # the user's arena_max is kept, the other three appended
    assert env["GLIBC_TUNABLES"] == (
        "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:"
        "glibc.malloc.trim_threshold=68719476736")
    assert env["X"] == "1"
    explicit = {"GLIBC_TUNABLES": runtime.TUNED.replace("hugetlb=1", "hugetlb=0")}
    assert runtime.allocator_env(explicit)["GLIBC_TUNABLES"] == explicit["GLIBC_TUNABLES"]
    assert runtime.allocator_env({}, runtime.HUGETLB_TUNABLE)["GLIBC_TUNABLES"] == (
        "glibc.malloc.hugetlb=1")


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
    assert lines == [f"{runtime.TUNED} 1 ['a', '--b=1']"]  # printed once: one process


def test_opt_out_and_already_set_leave_the_process_alone(tmp_path):
    assert _run(tmp_path, HEPJAX_TUNE_ALLOCATOR="0") == ["None None ['a', '--b=1']"]
    assert _run(tmp_path, GLIBC_TUNABLES=runtime.TUNED) == [
        f"{runtime.TUNED} None ['a', '--b=1']"]


FAULTS = ("import resource, numpy as np\n"
          "def faults():\n"
          "    a = np.ones(50_000_000, np.float32)  # 200 MB: above glibc's mmap threshold\n"
          "    del a\n"
          "faults()\n"
          "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
          "faults()\n"
          "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)\n")


@pytest.mark.parametrize("tuned", [False, True])
def test_tuned_allocator_reuses_freed_memory_without_page_faults(tmp_path, tuned):
    """The point of the settings: a second large allocation after a free reuses the memory
    (no page faults) instead of mapping and faulting in fresh pages."""
    if not runtime.huge_pages_available():
        pytest.skip("no glibc >= 2.35 with transparent huge pages here")
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if tuned:
        env["GLIBC_TUNABLES"] = runtime.TUNED
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    faults = int(out.stdout.split()[-1])
    if tuned:
        assert faults < 100, faults
    else:  # 200 MB in 4 KiB pages (or 2 MiB huge pages with THP 'always')
        assert faults >= 90, faults
