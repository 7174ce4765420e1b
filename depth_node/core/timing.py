"""Per-stage wall-clock timing: every stage of the pipeline reports its own milliseconds."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class StageTimer:
    """Collects ``{stage: milliseconds}`` for one frame; a stage timed twice accumulates."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self.current: str | None = None  # the stage running now (another thread may read it: a stalled frame's stage)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start, outer = time.perf_counter(), self.current
        self.current = name
        try:
            yield
        finally:
            self.current = outer
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000.0
