"""camera_info pairing: nearest within the slop, late arrivals, and no waiting when nothing can match."""

from __future__ import annotations

import threading
import time

from sensor_msgs.msg import CameraInfo

from depth_node.ros.sync import StampedCache, stamp_ns


def info(t_ns: int) -> CameraInfo:
    msg = CameraInfo()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t_ns, 1_000_000_000)
    return msg


def test_nearest_within_slop() -> None:
    cache = StampedCache(capacity=4)
    for t in (1_000_000_000, 1_100_000_000, 1_200_000_000, 1_300_000_000, 1_400_000_000):
        cache.add(info(t))
    assert stamp_ns(cache.nearest(1_190_000_000, 20_000_000).header.stamp) == 1_200_000_000
    assert cache.nearest(1_250_000_000, 20_000_000) is None
    assert cache.nearest(1_000_000_000, 50_000_000) is None  # evicted (capacity 4)
    assert stamp_ns(cache.latest().header.stamp) == 1_400_000_000 and cache.received == 5


def test_waits_for_a_late_camera_info() -> None:
    cache = StampedCache()
    cache.add(info(1_000_000_000))
    threading.Timer(0.05, cache.add, [info(1_100_000_000)]).start()
    start = time.monotonic()
    found = cache.wait_nearest(1_100_000_000, 10_000_000, timeout_s=1.0)
    assert found is not None and time.monotonic() - start < 0.5


def test_no_wait_when_a_match_cannot_come() -> None:
    cache = StampedCache()
    cache.add(info(5_000_000_000))  # newer than the image: the image's own info is not coming
    start = time.monotonic()
    assert cache.wait_nearest(1_000_000_000, 10_000_000, timeout_s=1.0) is None
    assert time.monotonic() - start < 0.1
