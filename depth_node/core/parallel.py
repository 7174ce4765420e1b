"""One frame's work on several threads at once: row bands of a frame (:func:`in_bands`), independent tasks
(:func:`together`). Threads pay because the work is OpenCV/numpy kernels and middleware calls that release the GIL.

The cloud stage (flying-pixel filter, back-projection into the message) is OpenCV and numpy kernels that release
the GIL and treat rows independently (the filter reads a halo of ``radius`` rows), so bands of a frame run on
several cores with results equal, bit for bit, to one pass (test_core_geometry.py): in the node at 640×480 on 2
cores the cloud stage went 3.1 → 2.1 ms (docs/benchmarks.md). The lighter stages (confidence, colorize: < 1 ms)
did not gain, measured the same way: they stay on one thread. So do small frames, where handing work to another
thread costs more than it saves.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

THREADS = max(1, min(4, os.cpu_count() or 1))  # bands at most: beyond 4, memory bandwidth, not cores, is the limit
MIN_PIXELS = 64 * 1024  # per band: below, a thread's hand-over (~50 µs) costs more than it saves
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()  # .pooled: this thread is one of the pool's (its tasks run their own parts serially)


def _mark_pooled() -> None:
    _local.pooled = True


def band_count(rows: int, columns: int) -> int:
    """How many bands a ``rows`` × ``columns`` frame is worked in."""
    return max(1, min(THREADS, rows, rows * columns // MIN_PIXELS))


def in_bands(rows: int, columns: int, work: Callable[[int, int], None]) -> None:
    """Call ``work(first, last)`` for consecutive row bands covering ``range(rows)``, the first band on this
    thread and the others on the pool's; returns when all are done, raising the first band's error, if any."""
    count = band_count(rows, columns)
    if count == 1:
        work(0, rows)
        return
    edges = [rows * k // count for k in range(count + 1)]
    together([lambda first=first, last=last: work(first, last) for first, last in zip(edges[:-1], edges[1:])])


def together(tasks: list[Callable[[], None]]) -> None:
    """Run ``tasks`` at once (the first on this thread, the others on the pool's, at most :data:`THREADS` at a
    time); returns when all are done, raising the first error, if any."""
    if len(tasks) <= 1 or THREADS == 1 or getattr(_local, "pooled", False):  # a pooled task waiting on the pool could deadlock
        for task in tasks:
            task()
        return
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(THREADS - 1, thread_name_prefix="depth_node", initializer=_mark_pooled)
    others: list[Future] = [_pool.submit(task) for task in tasks[1:]]
    try:
        tasks[0]()
    finally:
        errors = [future.exception() for future in others]  # waits for every task: none still runs afterwards
    for error in errors:
        if error is not None:
            raise error
