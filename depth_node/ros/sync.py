"""Pairing images with camera_info (and with a reference depth image): approximate time with a slop, and
fallbacks for bags and bare cameras.

message_filters has no wheel, and an image needs exactly one camera_info (or reference depth), so this is a small
cache of the latest stamped messages searched by stamp rather than a general synchronizer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

# How a frame's camera was found; reported on /diagnostics.
MATCHED, LAST, NONE = "matched", "last", "none"
LIVE_S = 1.0  # camera_info counts as still streaming if one arrived this recently


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time → integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class StampedCache:
    """The last ``capacity`` messages with a header (camera_info, reference depth), thread-safe; the worker
    waits here for a late one."""

    def __init__(self, capacity: int = 32) -> None:
        self._infos: deque[tuple[int, Any]] = deque(maxlen=capacity)
        self._cond = threading.Condition()
        self.received = 0
        self._last_arrival = -float("inf")

    def add(self, info: Any) -> None:
        with self._cond:
            self._infos.append((stamp_ns(info.header.stamp), info))
            self.received += 1
            self._last_arrival = time.monotonic()
            self._cond.notify_all()

    def nearest(self, t_ns: int, slop_ns: int) -> Any | None:
        """The camera_info whose stamp is closest to ``t_ns`` and within ``slop_ns``, else None."""
        with self._cond:
            return self._nearest(t_ns, slop_ns)

    def _nearest(self, t_ns: int, slop_ns: int) -> Any | None:
        best = None
        best_dt = slop_ns + 1
        for stamp, info in self._infos:
            dt = abs(stamp - t_ns)
            if dt < best_dt:
                best, best_dt = info, dt
        return best

    def wait_nearest(self, t_ns: int, slop_ns: int, timeout_s: float) -> Any | None:
        """Like :meth:`nearest`, but waits up to ``timeout_s`` for a matching camera_info to arrive — only when
        one still can: camera_info is streaming and none newer than the image has arrived yet. (A bag whose
        camera_info never matches, or was published once, costs no waiting.)"""
        with self._cond:
            found = self._nearest(t_ns, slop_ns)
            may_come = (
                bool(self._infos)
                and self._infos[-1][0] < t_ns
                and time.monotonic() - self._last_arrival < LIVE_S
            )
            if found is None and timeout_s > 0 and may_come:
                self._cond.wait_for(lambda: self._nearest(t_ns, slop_ns) is not None, timeout=timeout_s)
                found = self._nearest(t_ns, slop_ns)
            return found

    def latest(self) -> Any | None:
        with self._cond:
            return self._infos[-1][1] if self._infos else None
