"""``depth-node eval --live``: the bag played into a running node over DDS, and what the node publishes scored.

The node runs as users run it (``depth-node run`` in its own process, the parameters file, the shipped Fast DDS
profile, ``use_sim_time``) under a private namespace. This process plays the clock and the camera: for each image
it publishes ``/clock`` at the image's stamp, then the recorded camera_info and image bytes unchanged
(sensor-data QoS, as a driver would), and waits for the node's depth/image, depth/camera_info and
depth/confidence with that stamp. Frames go one at a time (lock-step), so the scores do not depend on this
machine's speed; an image with no answer within ``timeout_s`` is counted as dropped, never silently skipped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message

from depth_node.core.camera import PinholeCamera
from depth_node.core.depth_encoding import decode_depth
from depth_node.errors import DepthNodeError
from depth_node.eval.bag_input import COMPRESSED, EvalFrame, TopicChoice
from depth_node.eval.runner import Outcome
from depth_node.ros import convert
from depth_node.ros.harness import NodeProcess, cdr_stamp_ns
from depth_node.ros.outputs import OUTPUTS


class DroppedFrame(DepthNodeError):
    """The node published nothing for an image within the timeout."""


class LiveNode:
    """A ``depth-node run`` process (:class:`~depth_node.ros.harness.NodeProcess`, sim time) and the bag played
    into it; a depth source for :class:`Evaluator`."""

    def __init__(self, params_file: Path, param_args: list[str], topics: TopicChoice, spec: Any, log_path: Path,
                 timeout_s: float, points: bool, diagnostics_period_s: float) -> None:
        self.spec, self.timeout_s, self.topics = spec, timeout_s, topics
        self.diagnostics_period_s = float(diagnostics_period_s)
        self.log_path = log_path
        outputs = ("depth", "camera_info", "confidence", "points") if points else ("depth", "camera_info", "confidence")
        self.node = NodeProcess(param_args, params_file=params_file, outputs=outputs, sim_time=True, log_path=log_path,
                                transport="compressed" if topics.image_type == COMPRESSED else "raw")
        self._last_stamp = 0
        try:
            self.node.wait_ready()
        except BaseException:
            self.node.close()
            raise

    def final_diagnostics(self, wait_s: float = 3.0) -> dict[str, str]:
        """The node's own /diagnostics after the last frame (frames received / processed / dropped, latency,
        stage times): sim time is moved past its diagnostics period so the node reports once more."""
        seen = self.node.diagnostics_count
        stamp = self._last_stamp + int(self.diagnostics_period_s * 1e9) + 1
        self.node.publish_clock(stamp)
        self.node.spin_until(lambda: self.node.diagnostics_count > seen, wait_s)
        return dict(self.node.diagnostics)

    def __call__(self, frame: EvalFrame, rgb: np.ndarray, camera: PinholeCamera) -> Outcome:
        stamp = self._last_stamp = frame.stamp_ns
        for queue in self.node.received.values():
            queue.clear()
        start = time.perf_counter()
        info = frame.raw[self.topics.camera_info][1] if self.topics.camera_info and self.topics.camera_info in frame.raw else None
        self.node.publish(frame.raw[self.topics.image][1], info, clock_ns=stamp)
        found: dict[str, bytes] = {}

        def answered() -> bool:
            for name, queue in self.node.received.items():
                while name not in found and queue:
                    data = queue.pop(0)[1]  # every output is matched by stamp: a late one belongs to an earlier image
                    if cdr_stamp_ns(data) == stamp:
                        found[name] = data
            return len(found) == len(self.node.received)

        if not self.node.spin_until(answered, self.timeout_s):
            missing = ", ".join(f"/{OUTPUTS[k][0]}" for k in self.node.received if k not in found)
            raise DroppedFrame(f"no {missing} for this image within {self.timeout_s:g} s (see {self.log_path})")
        roundtrip_ms = (time.perf_counter() - start) * 1e3
        depth_msg = deserialize_message(found["depth"], OUTPUTS["depth"][1])
        info_msg = deserialize_message(found["camera_info"], OUTPUTS["camera_info"][1])
        depth = decode_depth(convert.image_to_array(depth_msg), depth_msg.encoding)
        depth_camera = convert.camera_from_info(info_msg, depth.shape[1], depth.shape[0])
        confidence = convert.image_to_array(deserialize_message(found["confidence"], OUTPUTS["confidence"][1])).astype(np.float32, copy=False)
        messages = [(f"/{OUTPUTS[k][0]}", f"sensor_msgs/msg/{OUTPUTS[k][1].__name__}", data) for k, data in found.items()]
        return Outcome(depth, confidence, depth_camera, {"roundtrip": roundtrip_ms}, lambda: messages)

    def close(self) -> None:
        """Stop the node (SIGINT, as Ctrl-C would) and this process's middleware."""
        self.node.close()
