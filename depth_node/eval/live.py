"""``depth-node eval --live``: the bag played into a running node over DDS, and what the node publishes scored.

The node runs as users run it (``depth-node run`` in its own process, the parameters file, the shipped Fast DDS
profile, ``use_sim_time``) under a private namespace. This process plays the clock and the camera: for each image
it publishes ``/clock`` at the image's stamp, then the recorded camera_info and image bytes unchanged
(sensor-data QoS, as a driver would), and waits for the node's depth/image, depth/camera_info and
depth/confidence with that stamp. Frames go one at a time (lock-step), so the scores do not depend on this
machine's speed; an image with no answer within ``timeout_s`` is counted as dropped, never silently skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.depth_encoding import decode_depth
from depth_node.errors import DepthNodeError, ModelLoadError
from depth_node.eval.bag_input import COMPRESSED, EvalFrame, TopicChoice
from depth_node.eval.runner import OUTPUT_TOPICS, Outcome
from depth_node.ros import convert

STARTUP_TIMEOUT_S = 300.0  # a large model loads before the node subscribes


class DroppedFrame(DepthNodeError):
    """The node published nothing for an image within the timeout."""


class LiveNode:
    """A ``depth-node run`` process and the player feeding it; a depth source for :class:`Evaluator`."""

    def __init__(self, params_file: Path, param_args: list[str], topics: TopicChoice, spec: Any, log_path: Path,
                 timeout_s: float = 60.0, points: bool = False, diagnostics_period_s: float = 1.0) -> None:
        from depth_node.tools.run_cmd import apply_fastdds_profile

        apply_fastdds_profile(None)  # this process publishes 640x480 images too: same transport as the node
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        self.spec, self.timeout_s, self.topics = spec, timeout_s, topics
        self.diagnostics_period_s = float(diagnostics_period_s)
        self.namespace = f"/depth_eval_live_{os.getpid()}"
        compressed = topics.image_type == COMPRESSED
        command = [sys.executable, "-m", "depth_node.tools.cli", "run", "--params-file", str(params_file), "--ros-args",
                   "-r", f"__ns:={self.namespace}", "-p", "use_sim_time:=true",
                   "-p", f"input_transport:={'compressed' if compressed else 'raw'}"]
        for item in param_args:
            command += ["-p", item]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("w")
        # its own session: Ctrl-C in the terminal stops the evaluation after a frame; close() then stops the node
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.log_path = log_path
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)  # not sys.argv: its -p NAME:=VALUE would read as remaps
        self.node = rclpy.create_node("depth_eval_player", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        ns = self.namespace
        self.pub_clock = self.node.create_publisher(Clock, "/clock", 10)
        self.pub_image = self.node.create_publisher(CompressedImage if compressed else Image,
                                                    f"{ns}/image/compressed" if compressed else f"{ns}/image", qos_profile_sensor_data)
        self.pub_info = self.node.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.received: dict[str, list[bytes]] = {}
        outputs = {"depth": Image, "camera_info": CameraInfo, "confidence": Image}
        if points:
            outputs["points"] = PointCloud2
        self._types = outputs
        for key, msg_type in outputs.items():
            self.received[key] = []
            self.node.create_subscription(msg_type, f"{ns}{OUTPUT_TOPICS[key]}", self.received[key].append, reliable, raw=True)
        from diagnostic_msgs.msg import DiagnosticArray

        self.diagnostics: dict[str, str] = {}
        self._diagnostics_count = 0
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._last_stamp = 0
        self._wait_until_ready()

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(f"{self.namespace}/"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self._diagnostics_count += 1

    def final_diagnostics(self, wait_s: float = 3.0) -> dict[str, str]:
        """The node's own /diagnostics after the last frame (frames received / processed / dropped, latency,
        stage times): sim time is moved past its diagnostics period so the node reports once more."""
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        seen = self._diagnostics_count
        stamp = self._last_stamp + int(self.diagnostics_period_s * 1e9) + 1
        self.pub_clock.publish(Clock(clock=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)))
        end = time.monotonic() + wait_s
        while self._diagnostics_count == seen and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
        return dict(self.diagnostics)

    def _wait_until_ready(self) -> None:
        end = time.monotonic() + STARTUP_TIMEOUT_S
        while self.pub_image.get_subscription_count() == 0 or any(
            self.node.count_publishers(f"{self.namespace}{OUTPUT_TOPICS[k]}") == 0 for k in self.received
        ):
            if self.process.poll() is not None:
                raise ModelLoadError(f"the node exited ({self.process.returncode}) before subscribing:\n{self._log_tail()}")
            if time.monotonic() > end:
                raise ModelLoadError(f"the node did not subscribe within {STARTUP_TIMEOUT_S:.0f} s:\n{self._log_tail()}")
            self.executor.spin_once(timeout_sec=0.1)
        # DDS matching is asymmetric: give the node's subscriptions a moment to see this publisher too
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def _log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __call__(self, frame: EvalFrame, rgb: np.ndarray, camera: PinholeCamera) -> Outcome:
        from builtin_interfaces.msg import Time
        from rclpy.serialization import deserialize_message
        from rosgraph_msgs.msg import Clock
        stamp = self._last_stamp = frame.stamp_ns
        for queue in self.received.values():
            queue.clear()
        start = time.perf_counter()
        self.pub_clock.publish(Clock(clock=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)))
        if self.topics.camera_info and self.topics.camera_info in frame.raw:
            self.pub_info.publish(frame.raw[self.topics.camera_info][1])
        self.pub_image.publish(frame.raw[self.topics.image][1])
        found: dict[str, tuple[bytes, Any]] = {}
        end = time.monotonic() + self.timeout_s
        while len(found) < len(self.received):
            if self.process.poll() is not None:
                raise DepthNodeError(f"the node exited ({self.process.returncode}) during the run:\n{self._log_tail()}")
            if time.monotonic() > end:
                missing = ", ".join(OUTPUT_TOPICS[k] for k in self.received if k not in found)
                raise DroppedFrame(f"no {missing} for this image within {self.timeout_s:g} s (see {self.log_path})")
            self.executor.spin_once(timeout_sec=0.05)
            for key, queue in self.received.items():
                while key not in found and queue:
                    data = queue.pop(0)  # every output is matched by stamp: a late one belongs to an earlier image
                    msg = deserialize_message(data, self._types[key])
                    if msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == stamp:
                        found[key] = (data, msg)
        roundtrip_ms = (time.perf_counter() - start) * 1e3
        depth_msg, info_msg = found["depth"][1], found["camera_info"][1]
        depth = decode_depth(convert.image_to_array(depth_msg), depth_msg.encoding)
        depth_camera = convert.camera_from_info(info_msg, depth.shape[1], depth.shape[0])
        confidence = convert.image_to_array(found["confidence"][1]).astype(np.float32, copy=False)
        messages = [(OUTPUT_TOPICS[k], f"sensor_msgs/msg/{self._types[k].__name__}", data) for k, (data, _) in found.items()]
        return Outcome(depth, confidence, depth_camera, {"roundtrip": roundtrip_ms}, lambda: messages)

    def close(self) -> None:
        """Stop the node (SIGINT, as Ctrl-C would) and this process's middleware."""
        from depth_node.tools.run_cmd import interrupt

        interrupt(self.process)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        self._log.close()
