"""Test harness: a DepthNode and a peer node in one process, each test in its own rclpy context."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from depth_node.ros import outputs as ros_outputs
from depth_node.ros.node import DepthNode

OUTPUTS = dict(ros_outputs.OUTPUTS.values())  # topic → message type, as the node publishes them
SENSOR_QOS = QoSProfile(depth=5, reliability=qos_profile_sensor_data.reliability)
K = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]


def header(i: int, frame_id: str = "camera_optical") -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = 1000 + i // 10, (i % 10) * 100_000_000
    return h


def rgb_image(i: int, width: int = 640, height: int = 480, encoding: str = "rgb8") -> Image:
    from depth_node.ros.convert import array_to_image

    pixels = np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return array_to_image(pixels, "rgb8", header(i)) if encoding == "rgb8" else None


def jpeg_image(i: int, width: int = 640, height: int = 480) -> CompressedImage:
    pixels = np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)
    msg = CompressedImage(header=header(i), format="rgb8; jpeg compressed bgr8")
    msg.data = cv2.imencode(".jpg", pixels)[1].tobytes()
    return msg


def camera_info(i: int, width: int = 640, height: int = 480, k: list[float] | None = None) -> CameraInfo:
    info = CameraInfo(header=header(i), width=width, height=height, distortion_model="plumb_bob")
    info.k = k or K
    info.p = [info.k[0], 0.0, info.k[2], 0.0, 0.0, info.k[4], info.k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.0] * 5
    return info


class Harness:
    """Starts DepthNode(parameters) + a peer that records every output; use as a context manager."""

    def __init__(self, parameters: dict[str, Any], outputs: tuple[str, ...] = tuple(OUTPUTS), node_kwargs: dict | None = None) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        overrides = [Parameter(k, value=v) for k, v in parameters.items()]
        try:
            self.node = DepthNode(context=self.context, parameter_overrides=overrides, **(node_kwargs or {}))
        except BaseException:
            rclpy.shutdown(context=self.context)
            raise
        self.peer = rclpy.create_node("peer", context=self.context)
        self.received: dict[str, list[Any]] = {name: [] for name in (*outputs, "/diagnostics")}
        self._lock = threading.Lock()
        qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        for name in outputs:
            self.peer.create_subscription(OUTPUTS[name], name, self._recorder(name), qos)
        self.peer.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("/diagnostics"), 10)
        self.image_pub = self.peer.create_publisher(Image, "image", SENSOR_QOS)
        self.compressed_pub = self.peer.create_publisher(CompressedImage, "image/compressed", SENSOR_QOS)
        self.info_pub = self.peer.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()
        self.wait_for(lambda: all(p.get_subscription_count() > 0 for p in (self.node.publishers_by_output["depth"],)) if "depth/image" in outputs else True, 5.0)
        self.wait_for(lambda: self.image_pub.get_subscription_count() + self.compressed_pub.get_subscription_count() > 0, 5.0)

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            with self._lock:
                self.received[name].append(msg)

        return record

    def send(self, image: Any, info: CameraInfo | None = None) -> None:
        if info is not None:  # deliver camera_info first, as a driver's pair would usually arrive
            before = self.node._cache.received
            self.info_pub.publish(info)
            self.wait_for(lambda: self.node._cache.received > before, 2.0)
        (self.compressed_pub if isinstance(image, CompressedImage) else self.image_pub).publish(image)

    @staticmethod
    def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            time.sleep(0.02)
        return condition()

    def count(self, name: str) -> int:
        with self._lock:
            return len(self.received[name])

    def last(self, name: str) -> Any:
        with self._lock:
            return self.received[name][-1]

    def diagnostics(self) -> dict[str, str]:
        """Key/values of the newest diagnostic status, plus 'level' and 'message'."""
        self.node.publish_diagnostics()
        n = self.count("/diagnostics")
        self.wait_for(lambda: self.count("/diagnostics") > n, 5.0)
        status = self.last("/diagnostics").status[0]
        return {kv.key: kv.value for kv in status.values} | {"level": status.level[0] if isinstance(status.level, bytes) else status.level, "message": status.message}

    def close(self) -> None:
        self.node.close()
        self.executor.shutdown()
        self._spin.join(timeout=10)
        self.node.destroy_node()
        self.peer.destroy_node()
        rclpy.shutdown(context=self.context)

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
