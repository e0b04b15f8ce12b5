"""Run one function per subject, in a process pool, with a progress bar; read the next
subject while the current one is worked on."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from tqdm.auto import tqdm

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")


def default_jobs(jobs: int) -> int:
    """`jobs` if positive, else the number of usable CPU cores."""
    return jobs if jobs > 0 else len(os.sched_getaffinity(0))


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse in this process, instead of unmapping it.

    Every subject allocates a few hundred MB of volumes. glibc serves blocks that large
    with fresh `mmap` pages and unmaps them on free, so the next subject faults in and
    zeroes them again: on a VM that kernel work took as long as the computation itself.
    With mmap off and no trimming, the next subject reuses the same pages; the process
    keeps its peak size until it exits. Called in the pool's worker processes only (they
    exist for one stage). A no-op returning False without glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # mallopt parameters, <malloc.h>
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def map_subjects(
    fn: Callable[..., Any], items: Sequence[Any], jobs: int, desc: str, *args: Any
) -> list[Any]:
    """Call `fn(item, *args)` for every item, in order; in `jobs` processes when > 1.

    Results come back in the order of `items`, so outputs do not depend on `jobs`.
    """
    jobs = min(default_jobs(jobs), len(items)) or 1
    bar = tqdm(total=len(items), desc=desc, unit="subject")
    results: list[Any] = []
    if jobs == 1:
        for item in items:
            results.append(fn(item, *args))
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_start)
        try:
            work = functools.partial(_in_worker, fn)
            for result in pool.map(work, items, *([a] * len(items) for a in args)):
                results.append(result)
                bar.update()
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: the subjects not started are dropped, the running ones
            # stopped with SIGTERM, which each worker turns into `Stopped` (its temporary
            # files removed) rather than running them to the end.
            for process in list((pool._processes or {}).values()):
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
    bar.close()
    return results


def read_ahead(load: Callable[[Item], Loaded], items: Sequence[Item]
               ) -> Iterator[tuple[Item, Callable[[], Loaded]]]:
    """Each item with a getter of `load(item)`, loaded one item ahead in a thread.

    While the caller works on item k (a forward pass that releases the GIL), item k + 1 is
    read and decoded beside it; at most two items are held at once. The getter returns
    what `load` returned or raises what it raised, so a caller handles one item's failure
    as if it had called `load` itself. Results do not depend on the overlap: `load` runs
    once per item, in order.
    """
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        ahead = pool.submit(load, items[0])
        try:
            for k, item in enumerate(items):
                current = ahead
                wait([current])  # item k read before k + 1 starts: two items at most
                if k + 1 < len(items):
                    ahead = pool.submit(load, items[k + 1])
                yield item, current.result
        finally:  # the caller stopped early: nothing more is read
            pool.shutdown(wait=True, cancel_futures=True)


# the main process that started this worker (set by `_worker_start`)
_MAIN_PID: int | None = None


def _worker_start() -> None:
    """A worker stops as the main process does: on SIGTERM (`Stopped`, its temporary files
    removed), which Linux also sends it when the main process dies (even by SIGKILL), so
    that no orphan goes on writing into the outputs of a rerun."""
    import signal

    from brainseg.errors import stop_on_sigterm

    global _MAIN_PID
    _MAIN_PID = os.getppid()
    stop_on_sigterm()
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1  # <sys/prctl.h>
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    keep_freed_memory()


def _in_worker(fn: Callable[..., Any], item: Any, *args: Any) -> Any:
    """Run one subject in a worker; a stopped worker ends rather than take the next one.

    The pool keeps a subject or two queued for each worker. Without this, a worker stopped
    by its main process's death would report `Stopped` to nobody and start the queued
    subject as an orphan, writing into the outputs of whatever run comes next.
    """
    from brainseg.errors import Stopped
    from brainseg.io.atomic import remove_pending

    if os.getppid() != _MAIN_PID:  # the main process is gone: nobody wants this result
        os._exit(143)
    try:
        return fn(item, *args)
    except Stopped:  # the `finally` blocks on the way here removed its temporary files,
        remove_pending()  # and this those of a write the signal caught outside its `try`
        os._exit(143)
