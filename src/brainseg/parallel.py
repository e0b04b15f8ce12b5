"""Run one function per subject, in a process pool, with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm.auto import tqdm


def default_jobs(jobs: int) -> int:
    """`jobs` if positive, else the number of usable CPU cores."""
    return jobs if jobs > 0 else len(os.sched_getaffinity(0))


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
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            for result in pool.map(fn, items, *([a] * len(items) for a in args)):
                results.append(result)
                bar.update()
    bar.close()
    return results
