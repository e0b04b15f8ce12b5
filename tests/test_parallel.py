"""`brainseg.parallel`: results in input order whatever the job count; pool workers keep memory;
the next item read while the current one is used."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading

import pytest

from brainseg.errors import BrainsegError
from brainseg.parallel import default_jobs, map_subjects, read_ahead


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


def test_read_ahead_reads_the_next_item_while_the_current_one_is_used():
    started: list[int] = []
    events = {k: threading.Event() for k in range(3)}

    def load(k: int) -> int:
        started.append(k)
        events[k].set()
        return k * 10

    got = []
    for item, loaded in read_ahead(load, [0, 1, 2]):
        got.append((item, loaded()))
        if item < 2:  # while item k is worked on, item k + 1 is read
            assert events[item + 1].wait(5), f"item {item + 1} not read during item {item}"
    assert got == [(0, 0), (1, 10), (2, 20)]
    assert started == [0, 1, 2]


def test_read_ahead_raises_an_items_error_at_its_getter_and_goes_on():
    def load(k: int) -> int:
        if k == 1:
            raise BrainsegError(f"item {k} is unreadable")
        return k

    got, failed = [], []
    for _item, loaded in read_ahead(load, [0, 1, 2]):
        try:
            got.append(loaded())
        except BrainsegError as exc:
            failed.append(str(exc))
    assert got == [0, 2]
    assert failed == ["item 1 is unreadable"]
    assert list(read_ahead(load, [])) == []


def test_read_ahead_stops_reading_when_the_caller_stops():
    started: list[int] = []

    def load(k: int) -> int:
        started.append(k)
        return k

    for item, _ in read_ahead(load, list(range(10))):
        if item == 2:
            break
    # items are read in turn, whether or not the caller takes them; after the item the
    # caller stopped at, item 3 may have been read ahead (or cancelled), nothing after it
    assert started[:3] == [0, 1, 2] and set(started) <= {0, 1, 2, 3}
