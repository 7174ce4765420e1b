"""What the node reports on /diagnostics: rates, latencies, stage times, drops, model, active warnings.

ROS-free bookkeeping (``FrameStats``, ``WarningBoard``) plus one function building the DiagnosticStatus.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels (bytes in the message)
WINDOW_S = 5.0
# A stamp latency this far from the window's median is one odd stamp (a camera clock glitch), kept out of the
# stamp-latency percentiles and counted; after ODD_STAMPS_TO_ACCEPT in a row it is the new normal (a clock jump).
ODD_STAMP_MS = 10_000.0
ODD_STAMPS_TO_ACCEPT = 5


class RateWindow:
    """Events per second over the last ``WINDOW_S`` seconds."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)

    def rate(self, now: float) -> float:
        while self._times and self._times[0] < now - WINDOW_S:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(now - self._times[0], 1e-9)


class FrameStats:
    """Counters and sliding windows, safe to update from the subscription and worker threads."""

    def __init__(self, samples: int = 200) -> None:
        self._lock = threading.Lock()
        self.counts = {"received": 0, "processed": 0, "dropped": 0, "throttled": 0, "bad_input": 0, "failed": 0,
                       "odd_stamps": 0}
        self._odd_in_a_row: list[float] = []
        self._in = RateWindow()
        self._out = RateWindow()
        self._latency_stamp: deque[float] = deque(maxlen=samples)
        self._latency_receive: deque[float] = deque(maxlen=samples)
        self._overhead: deque[float] = deque(maxlen=samples)
        self._frame_time: deque[float] = deque(maxlen=samples)  # the worker's busy time per frame, all stages
        self._stages: dict[str, deque[float]] = {}
        self._samples = samples

    def count(self, what: str, now: float | None = None) -> None:
        with self._lock:
            self.counts[what] += 1
            if what == "received":
                self._in.tick(time.monotonic() if now is None else now)

    def frame_done(self, stamp_latency_ms: float, receive_latency_ms: float, stages_ms: dict[str, float]) -> None:
        with self._lock:
            self.counts["processed"] += 1
            self._out.tick(time.monotonic())
            self._add_stamp_latency(stamp_latency_ms)
            self._latency_receive.append(receive_latency_ms)
            self._overhead.append(sum(ms for name, ms in stages_ms.items() if name != "infer"))
            self._frame_time.append(sum(stages_ms.values()))
            for name, ms in stages_ms.items():
                self._stages.setdefault(name, deque(maxlen=self._samples)).append(ms)

    def _add_stamp_latency(self, ms: float) -> None:
        window = self._latency_stamp
        if len(window) >= ODD_STAMPS_TO_ACCEPT and abs(ms - float(np.median(window))) > ODD_STAMP_MS:
            self.counts["odd_stamps"] += 1
            self._odd_in_a_row.append(ms)
            if len(self._odd_in_a_row) < ODD_STAMPS_TO_ACCEPT:
                return
            window.clear()  # not one odd stamp: the camera's clock moved; start over from the new ones
            window.extend(self._odd_in_a_row)
        else:
            window.append(ms)
        self._odd_in_a_row = []

    def snapshot(self) -> dict[str, Any]:
        """Plain numbers for reporting."""
        now = time.monotonic()
        with self._lock:

            def pct(values: deque[float], q: float) -> float:
                return float(np.percentile(values, q)) if values else float("nan")

            return {
                **self.counts,
                "input_rate_hz": self._in.rate(now),
                "output_rate_hz": self._out.rate(now),
                "latency_p50_ms": pct(self._latency_stamp, 50),
                "latency_p95_ms": pct(self._latency_stamp, 95),
                "processing_p50_ms": pct(self._latency_receive, 50),
                "processing_p95_ms": pct(self._latency_receive, 95),
                "overhead_p50_ms": pct(self._overhead, 50),  # every stage but the forward pass
                "frame_time_p50_ms": pct(self._frame_time, 50),
                "frame_time_p95_ms": pct(self._frame_time, 95),
                "stages_ms": {k: pct(v, 50) for k, v in self._stages.items()},
            }


@dataclass
class _Warning:
    level: int
    message: str
    last_s: float
    sticky: bool


class WarningBoard:
    """Active problems by key. A problem stays active ``hold_s`` after it last happened, or until cleared
    when ``sticky`` (e.g. a model that failed to load)."""

    def __init__(self, hold_s: float = WINDOW_S) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, _Warning] = {}
        self.hold_s = hold_s

    def raise_(self, key: str, message: str, level: int = WARN, sticky: bool = False) -> None:
        with self._lock:
            self._items[key] = _Warning(level, message, time.monotonic(), sticky)

    def clear(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def active(self) -> list[tuple[str, int, str]]:
        """(key, level, message), worst first."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, w in self._items.items() if not w.sticky and now - w.last_s > self.hold_s]:
                del self._items[key]
            items = [(k, w.level, w.message) for k, w in self._items.items()]
        return sorted(items, key=lambda item: -item[1])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.2f}"
    return str(value)


def build_status(
    stats: dict[str, Any], info: dict[str, Any], warnings: list[tuple[str, int, str]]
) -> tuple[int, str, list[tuple[str, str]]]:
    """(level, message, key/value pairs) for one DiagnosticStatus."""
    level = max([OK] + [lvl for _, lvl, _ in warnings])
    if warnings:
        message = warnings[0][2]
    elif stats["processed"]:
        message = "publishing"
    else:
        message = "computing the first frame" if stats["received"] else "waiting for images"
    values: list[tuple[str, str]] = [(k, _fmt(v)) for k, v in info.items()]
    for key in ("input_rate_hz", "output_rate_hz", "latency_p50_ms", "latency_p95_ms", "processing_p50_ms", "processing_p95_ms",
                "overhead_p50_ms", "frame_time_p50_ms", "frame_time_p95_ms"):
        values.append((key, _fmt(stats[key])))
    for key in ("received", "processed", "dropped", "throttled", "bad_input", "failed", "odd_stamps"):
        values.append((f"frames_{key}", str(stats[key])))
    for stage, ms in sorted(stats["stages_ms"].items()):
        values.append((f"stage_{stage}_ms", _fmt(ms)))
    for i, (key, lvl, msg) in enumerate(warnings):
        values.append((f"{'error' if lvl == ERROR else 'warning'}_{i}", f"[{key}] {msg}"))
    return level, message, values
