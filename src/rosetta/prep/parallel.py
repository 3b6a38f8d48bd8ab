"""``parallel_map``: the process pool every preparation step (rendering, conversion, validation, the overlap
guard) runs its per-sample work on, in input order and with a progress bar."""
from __future__ import annotations

import itertools
import multiprocessing
import os
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def resolve_workers(workers: int) -> int:
    return workers if workers > 0 else len(os.sched_getaffinity(0))


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 0, *, total: int | None = None,
                 desc: str | None = None, unit: str = " samples", chunksize: int = 32,
                 window: int = 8192) -> Iterator[R]:
    """``map(fn, items)`` in input order over ``workers`` processes (0 = all cores), with a progress bar.

    Items are handed out ``window`` at a time: Pool.imap would otherwise pull the whole input into
    its queue at once, which for millions of samples costs gigabytes.
    """
    workers = resolve_workers(workers)
    with tqdm(total=total, desc=desc, unit=unit, mininterval=1.0, smoothing=0.1) as bar:
        if workers == 1:
            for item in items:
                yield fn(item)
                bar.update(1)
            return
        # forkserver: forking a process that runs threads (an HTTP server, a Prefect task) can deadlock.
        with multiprocessing.get_context("forkserver").Pool(workers) as pool:
            it = iter(items)
            while batch := list(itertools.islice(it, window)):
                for result in pool.imap(fn, batch, chunksize=chunksize):
                    yield result
                    bar.update(1)
