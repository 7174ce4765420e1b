"""The node's output messages for one frame, built in one place: :func:`output_cdr` gives them serialized (CDR, one
uint8 buffer each), which the node publishes as they are and ``depth-node eval`` writes into its output bag;
:func:`output_messages` gives the same as rclpy message objects (for code that wants messages; the tests hold the
two equal). :class:`CloudMessage` lets the pipeline compute the cloud straight into its message.

Topic names are relative (the node's namespace and remappings apply); each message carries the input image's
header, so stamps and frame ids pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_node.core.camera import PinholeCamera
from depth_node.core.depth_encoding import encode_depth, no_return_values
from depth_node.core.pipeline import DepthResult
from depth_node.ros import cdr, convert

# output → (topic, message type); the node publishes them in this order, the cloud on a thread of its own (ros.node)
OUTPUTS: dict[str, tuple[str, Any]] = {
    "depth": ("depth/image", Image),
    "camera_info": ("depth/camera_info", CameraInfo),
    "confidence": ("depth/confidence", Image),
    "points": ("depth/points", PointCloud2),
    "colorized": ("depth/colorized", Image),
}


def published_depth(result: DepthResult, config: Any) -> np.ndarray:
    """The depth/image array in ``config.depth_encoding``: REP 117's ±Inf for no return (sky), beyond ``max_range``
    and closer than ``min_range`` — NaN instead with ``depth_no_return: nan``, 0 in 16UC1 (REP 118)."""
    far, near = (np.inf, -np.inf) if config.depth_no_return == "inf" else (np.nan, np.nan)
    return encode_depth(no_return_values(result.depth_m, result.no_return, config.min_range, config.max_range, far, near),
                        config.depth_encoding)


def output_messages(result: DepthResult, header: Any, camera_info: Any | None, camera: PinholeCamera, config: Any,
                    wanted: Container[str] = tuple(OUTPUTS)) -> dict[str, Any]:
    """{output: message} for the ``wanted`` outputs the result holds. ``camera_info``/``camera``: the input's
    (message or None, and the intrinsics the pipeline ran with); ``depth/camera_info`` is rescaled from them to the
    depth grid (``result.camera``). ``config``: the :class:`~depth_node.core.parameters.PipelineConfig`."""
    messages: dict[str, Any] = {}
    if "depth" in wanted:
        messages["depth"] = convert.array_to_image(published_depth(result, config), config.depth_encoding, header)
    if "camera_info" in wanted:
        messages["camera_info"] = convert.camera_info_for_grid(camera_info, camera, result.camera, header)
    if "confidence" in wanted and result.confidence is not None:
        messages["confidence"] = convert.array_to_image(result.confidence, "32FC1", header)
    if "points" in wanted and result.points is not None:
        messages["points"] = convert.points_to_cloud(result.points, header)
    if "colorized" in wanted and result.colorized is not None:
        messages["colorized"] = convert.array_to_image(result.colorized, "rgb8", header)
    return messages


class CloudMessage:
    """One frame's depth/points message before its cloud exists: pass it as ``DepthPipeline.process(points_out=...)``
    and the cloud is computed into the message's own buffer (the largest output, 4.9 MB at 640×480 with colour, is
    then written once, not computed and copied); :func:`output_cdr` publishes that buffer."""

    def __init__(self, header: Any) -> None:
        self.header = header
        self.serialized: np.ndarray | None = None
        self.points: np.ndarray | None = None

    def __call__(self, height: int, width: int, channels: int) -> np.ndarray:
        self.serialized, self.points = cdr.point_cloud_message(self.header, height, width, channels)
        return self.points


def output_cdr(result: DepthResult, header: Any, camera_info: Any | None, camera: PinholeCamera, config: Any,
               wanted: Container[str] = tuple(OUTPUTS), cloud: CloudMessage | None = None) -> dict[str, np.ndarray]:
    """:func:`output_messages`, serialized (CDR, :mod:`depth_node.ros.cdr`): each array is copied once, into its
    message's buffer, instead of through a Python message and rclpy's conversion; the cloud not even once when
    the pipeline computed it into ``cloud``."""
    serialized: dict[str, np.ndarray] = {}
    if "depth" in wanted:
        serialized["depth"] = cdr.image(header, published_depth(result, config), config.depth_encoding)
    if "camera_info" in wanted:
        serialized["camera_info"] = cdr.camera_info(convert.camera_info_for_grid(camera_info, camera, result.camera, header))
    if "confidence" in wanted and result.confidence is not None:
        serialized["confidence"] = cdr.image(header, result.confidence, "32FC1")
    if "points" in wanted and result.points is not None:
        computed_in_place = cloud is not None and cloud.points is result.points
        serialized["points"] = cloud.serialized if computed_in_place else cdr.point_cloud(header, result.points)
    if "colorized" in wanted and result.colorized is not None:
        serialized["colorized"] = cdr.image(header, result.colorized, "rgb8")
    return serialized

