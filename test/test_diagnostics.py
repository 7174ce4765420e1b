"""What /diagnostics reports, ROS-free: latency percentiles that one odd stamp cannot move, the status message."""

from __future__ import annotations

import numpy as np

from depth_node.ros.diagnostics import ODD_STAMPS_TO_ACCEPT, FrameStats, build_status


def test_one_odd_stamp_stays_out_of_the_latency_percentiles() -> None:
    """A frame stamped 3 days off (a camera clock glitch) among 30 ms latencies: p95 stays ~30 ms (before: the one
    sample sat in the 200-frame window, and with few samples it was the p95), and it is counted."""
    stats = FrameStats()
    for n in range(10):
        stats.frame_done(30.0 + n % 3, 5.0, {"infer": 4.0})
    stats.frame_done(3 * 86_400_000.0, 5.0, {"infer": 4.0})
    for _ in range(3):
        stats.frame_done(31.0, 5.0, {"infer": 4.0})
    snapshot = stats.snapshot()
    assert snapshot["latency_p95_ms"] < 33.0 and snapshot["odd_stamps"] == 1
    assert snapshot["processed"] == 14  # the frame itself was processed and published
    assert dict(build_status(snapshot, {}, [])[2])["frames_odd_stamps"] == "1"


def test_a_clock_jump_becomes_the_new_normal() -> None:
    """Not one odd stamp but a clock that moved (sim time switched on, a bag started): after a few frames in a row
    the percentiles follow the new latencies instead of hiding every frame."""
    stats = FrameStats()
    for _ in range(20):
        stats.frame_done(30.0, 5.0, {})
    for _ in range(ODD_STAMPS_TO_ACCEPT + 3):
        stats.frame_done(60_000.0, 5.0, {})
    snapshot = stats.snapshot()
    assert snapshot["latency_p50_ms"] == 60_000.0 and snapshot["odd_stamps"] == ODD_STAMPS_TO_ACCEPT


def test_status_message_says_what_the_node_is_doing() -> None:
    stats = FrameStats()
    assert build_status(stats.snapshot(), {}, [])[:2] == (0, "waiting for images")
    stats.count("received")
    assert build_status(stats.snapshot(), {}, [])[:2] == (0, "computing the first frame")
    stats.frame_done(30.0, 5.0, {})
    assert build_status(stats.snapshot(), {}, [])[:2] == (0, "publishing")
    assert build_status(stats.snapshot(), {}, [("worker", 1, "stalled")])[:2] == (1, "stalled")
    assert np.isfinite(stats.snapshot()["latency_p95_ms"])
