"""One frame's work on several threads at once (:func:`together`): the pipeline's output stages and the row bands
of its cloud (:func:`band_edges`), the node's publishing. Threads pay because the work is OpenCV/numpy kernels and
middleware calls that release the GIL.

The cloud stage (flying-pixel filter, back-projection into the message) treats rows independently (the filter
reads a halo of ``radius`` rows), so bands of a frame give results equal, bit for bit, to one pass
(test_core_geometry.py); the confidence and the colorized picture only read the depth. So the pipeline hands all
of them to :func:`together` at once: at 640×480 on 2 cores they took 3.6 ms one after the other (the cloud alone
in two bands), 2.8 ms at once (docs/benchmarks.md). The kernels stream memory, so two cores give ~1.5×, not 2×,
and more, smaller bands measured no better. Small frames stay in one band: a hand-over costs ~30 µs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

THREADS = max(1, min(4, os.cpu_count() or 1))  # at most: beyond 4, memory bandwidth, not cores, is the limit
MIN_PIXELS = 64 * 1024  # per band: below, a thread's hand-over costs more than it saves
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()  # .busy: this thread runs tasks of a together() (their own together()s run serially)


def band_edges(rows: int, columns: int) -> list[int]:
    """Row edges of the bands a ``rows`` × ``columns`` frame is worked in: one per thread, none under
    :data:`MIN_PIXELS`; ``[0, rows]`` for a small frame."""
    count = max(1, min(THREADS, rows, rows * columns // MIN_PIXELS))
    return [rows * k // count for k in range(count + 1)]


def together(tasks: list[Callable[[], None]]) -> None:
    """Run ``tasks`` at once: this thread and the pool's (at most :data:`THREADS` in all) each take the next task
    not yet started, in the list's order, until none is left — so put the longest first. Returns when all are
    done, raising the first error in the list's order, if any. Called from one of the tasks it runs them there,
    one after the other (a task waiting on the pool could deadlock it)."""
    if len(tasks) <= 1 or THREADS == 1 or getattr(_local, "busy", False):
        for task in tasks:
            task()
        return
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(THREADS - 1, thread_name_prefix="depth_node", initializer=_mark_busy)
    pending = iter(enumerate(tasks))
    taking = threading.Lock()
    errors: list[tuple[int, BaseException]] = []

    def lane() -> None:
        while True:
            with taking:
                index, task = next(pending, (len(tasks), None))
            if task is None:
                return
            try:
                task()
            except BaseException as error:  # raised on the caller's thread once every task is done
                errors.append((index, error))

    others: list[Future] = [_pool.submit(lane) for _ in range(min(THREADS, len(tasks)) - 1)]
    _local.busy = True
    try:
        lane()
    finally:
        _local.busy = False
        for future in others:
            future.result()  # waits: no task runs after this returns (a lane raises nothing itself)
    if errors:
        raise min(errors, key=lambda item: item[0])[1]


def _mark_busy() -> None:
    _local.busy = True
