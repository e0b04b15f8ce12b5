"""`brainseg.parallel`: results in input order whatever the job count; pool workers keep memory."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from brainseg.parallel import default_jobs, map_subjects


def _square_with_pid(item: int, offset: int) -> tuple[int, int]:
    return item * item + offset, os.getpid()


def test_results_keep_input_order_in_one_process_and_in_a_pool():
    items = list(range(7))
    serial = map_subjects(_square_with_pid, items, 1, "serial", 3)
    pooled = map_subjects(_square_with_pid, items, 2, "pool", 3)
    assert [r for r, _ in serial] == [r for r, _ in pooled] == [i * i + 3 for i in items]
    assert {pid for _, pid in serial} == {os.getpid()}
    assert os.getpid() not in {pid for _, pid in pooled}  # the work ran in the workers


def test_default_jobs_is_the_usable_cores():
    assert default_jobs(3) == 3
    assert default_jobs(0) == len(os.sched_getaffinity(0))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_is_accepted_by_glibc():
    """What the pool's initializer sets; on this (glibc) machine both mallopt calls succeed.

    Run in a child process: the setting lasts for the life of the process that makes it.
    """
    code = "from brainseg.parallel import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "True"
