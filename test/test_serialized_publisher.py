"""Publishing CDR buffers through rcl from the buffer itself (ros/serialized_publisher.py), over real rclpy pub/sub."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from _ros import camera_info, header
from depth_node.ros import cdr, convert
from depth_node.ros.serialized_publisher import SerializedPublisher, zero_copy_available


class _Pair:
    """A publisher and a subscriber of one type, in one context, spun on a thread."""

    def __init__(self, msg_type: type) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("serialized_publisher_test", context=self.context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.node.create_publisher(msg_type, "topic", qos)
        self.received: list[Any] = []
        self.node.create_subscription(msg_type, "topic", self.received.append, qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.wait(lambda: self.publisher.get_subscription_count() > 0)

    def wait(self, condition: Any, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not condition():
            time.sleep(0.01)
        return condition()

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=5)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="librcl is found through /proc/self/maps")
def test_librcl_is_found_on_linux() -> None:
    assert zero_copy_available()


@pytest.mark.parametrize("zero_copy", [True, False])
def test_buffers_arrive_as_the_messages_they_serialize(zero_copy: bool) -> None:
    """An image, a cloud written into its message and a camera_info, published from their buffers (and through
    rclpy's bytes path, the fallback), arrive equal to the messages rclpy builds from the same arrays."""
    rng = np.random.default_rng(7)
    hdr = header(3, "cam_optical")
    depth = rng.random((61, 97)).astype(np.float32)
    points = rng.normal(size=(61, 97, 4)).astype(np.float32)
    serialized_cloud, view = cdr.point_cloud_message(hdr, *points.shape)
    view[...] = points
    info = camera_info(3, 97, 61)
    cases = [(Image, cdr.image(hdr, depth, "32FC1"), convert.array_to_image(depth, "32FC1", hdr)),
             (PointCloud2, serialized_cloud, convert.points_to_cloud(points, hdr)),
             (CameraInfo, cdr.camera_info(info), info)]
    for msg_type, serialized, expected in cases:
        pair = _Pair(msg_type)
        try:
            sender = SerializedPublisher(pair.publisher, zero_copy=zero_copy)
            assert sender.zero_copy == (zero_copy and zero_copy_available())
            sender.publish(serialized)
            sender.publish(serialized.tobytes())  # bytes are a buffer too
            assert pair.wait(lambda: len(pair.received) == 2), msg_type
            assert pair.received[0] == expected and pair.received[1] == expected, msg_type
        finally:
            pair.close()


def test_what_is_not_a_serialized_message_and_a_destroyed_publisher_are_refused() -> None:
    pair = _Pair(Image)
    try:
        sender = SerializedPublisher(pair.publisher)
        buffer = cdr.image(header(0), np.zeros((2, 3), np.float32), "32FC1")
        with pytest.raises(ValueError, match="contiguous uint8"):
            sender.publish(np.concatenate([buffer, buffer])[::2])
        with pytest.raises(ValueError, match="contiguous uint8"):
            sender.publish(buffer.view(np.uint16))
        pair.node.destroy_publisher(pair.publisher)
        with pytest.raises(Exception, match="destruction was requested"):  # rclpy.InvalidHandle
            sender.publish(buffer)
    finally:
        pair.close()
