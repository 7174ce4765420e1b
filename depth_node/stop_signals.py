"""SIGINT and SIGTERM caught from the first line of a node process, before its slow imports (rclpy, OpenCV,
the model runtime): either signal then ends the node with exit code 0, as documented, even in its first second —
not a KeyboardInterrupt traceback or death by SIGTERM (rc -15)."""

from __future__ import annotations

import importlib
import signal
import threading
from typing import Any

STOP = threading.Event()  # set by SIGINT / SIGTERM once catch() ran; the node's main loop waits on it


def _request_stop(signum: int, frame: Any) -> None:
    STOP.set()


def catch() -> threading.Event:
    """Route SIGINT and SIGTERM to :data:`STOP` (idempotent; main thread only); returns it."""
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    return STOP


def run_node() -> int:
    """The ``depth_node`` executable (``ros2 run depth_node depth_node``): signals first, then the node."""
    catch()
    # imported only now, on purpose: the signals above must be in place while rclpy and the runtimes load
    return importlib.import_module("depth_node.ros.node").main()
