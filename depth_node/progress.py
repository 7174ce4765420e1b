"""A dependency-free progress bar with ETA for long CLI work (stderr; quiet when not a terminal)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, label: str, stream=sys.stderr, width: int = 30) -> None:  # noqa: ANN001
        self.label, self.stream, self.width = label, stream, width
        self.start = time.monotonic()
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last_line = 0.0

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (total - done) if done else 0.0
        filled = int(self.width * done / max(total, 1))
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {elapsed:5.1f}s eta {eta:5.1f}s"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done >= total else ""))
        elif done >= total or time.monotonic() - self._last_line > 5.0:
            self.stream.write(line + "\n")
            self._last_line = time.monotonic()
        self.stream.flush()
