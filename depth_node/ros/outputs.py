"""The node's output messages for one frame, built in one place: :func:`output_cdr` gives them serialized (CDR, one
uint8 buffer each), which the node publishes as they are and ``depth-node eval`` writes into its output bag;
:func:`output_messages` gives the same as rclpy message objects (for code that wants messages; the tests hold the
two equal). :class:`OutputMessages` lets the pipeline compute its outputs straight into their messages.

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


def published_depth(result: DepthResult, config: Any, out: np.ndarray | None = None) -> np.ndarray:
    """The depth/image array in ``config.depth_encoding``: REP 117's ±Inf for no return (sky), beyond ``max_range``
    and closer than ``min_range`` — NaN instead with ``depth_no_return: nan``, 0 in 16UC1 (REP 118). ``out`` (32FC1
    only): a float32 array to write it into, e.g. the data of its message."""
    far, near = (np.inf, -np.inf) if config.depth_no_return == "inf" else (np.nan, np.nan)
    if out is not None and config.depth_encoding != "32FC1":
        raise ValueError(f"depth is written into a given array only as 32FC1, not {config.depth_encoding}")
    metres = no_return_values(result.depth_m, result.no_return, config.min_range, config.max_range, far, near, out=out)
    return encode_depth(metres, config.depth_encoding)


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


class OutputMessages:
    """One frame's serialized output messages (CDR, :mod:`depth_node.ros.cdr`), the pipeline's outputs computed
    straight into them.

    Pass it as ``DepthPipeline.process(out=messages)``: the confidence, cloud and colorized picture are computed into
    the buffers of the messages that carry them (:data:`~depth_node.core.pipeline.OutputArrays`), so no output is
    computed first and copied (the cloud is 4.9 MB at 640×480 with colour). :meth:`serialized` then gives the
    ``wanted`` outputs the result holds, in :data:`OUTPUTS`'s order: those buffers as they are, depth/image and
    depth/camera_info serialized then. ``camera_info``/``camera``: the input's (message or None, and the intrinsics
    the pipeline ran with); depth/camera_info is rescaled from them to the depth grid. ``config``: the
    :class:`~depth_node.core.parameters.PipelineConfig`."""

    ENCODINGS = {"confidence": "32FC1", "colorized": "rgb8"}  # the image outputs the pipeline computes into

    def __init__(self, header: Any, camera_info: Any | None, camera: PinholeCamera, config: Any,
                 wanted: Container[str] = tuple(OUTPUTS)) -> None:
        self.header, self.camera_info, self.camera, self.config, self.wanted = header, camera_info, camera, config, wanted
        self._buffers: dict[str, np.ndarray] = {}  # output → its serialized message
        self._arrays: dict[str, np.ndarray] = {}  # output → the view of its data the pipeline computed into

    def __call__(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        if name == "points":
            if np.dtype(dtype) != np.float32 or len(shape) != 3:
                raise ValueError(f"a cloud is float32 (h, w, channels), got {np.dtype(dtype)} {shape}")
            buffer, array = cdr.point_cloud_message(self.header, *shape)
        elif name in self.ENCODINGS:
            buffer, array = cdr.image_message(self.header, self.ENCODINGS[name], shape, dtype)
        else:
            raise ValueError(f"no output {name!r} is computed into its message (only points, {', '.join(self.ENCODINGS)})")
        self._buffers[name], self._arrays[name] = buffer, array
        return array

    def serialized(self, result: DepthResult, names: Container[str] = tuple(OUTPUTS)) -> dict[str, np.ndarray]:
        """{output: serialized message} for the wanted ``names`` ``result`` holds; an array is copied once, into its
        message, or not at all where it was computed there."""
        messages: dict[str, np.ndarray] = {}
        for name in OUTPUTS:
            if name not in self.wanted or name not in names:
                continue
            if name == "depth" and self.config.depth_encoding == "32FC1":  # written once, into its message
                messages[name], pixels = cdr.image_message(self.header, "32FC1", result.depth_m.shape, np.float32)
                published_depth(result, self.config, out=pixels)
            elif name == "depth":  # 16UC1: the millimetres are a new array anyway
                messages[name] = cdr.image(self.header, published_depth(result, self.config), self.config.depth_encoding)
            elif name == "camera_info":
                messages[name] = cdr.camera_info(convert.camera_info_for_grid(self.camera_info, self.camera, result.camera,
                                                                              self.header))
            else:
                array = {"confidence": result.confidence, "points": result.points, "colorized": result.colorized}[name]
                if array is None:
                    continue
                if self._arrays.get(name) is array:  # computed in its message
                    messages[name] = self._buffers[name]
                elif name == "points":
                    messages[name] = cdr.point_cloud(self.header, array)
                else:
                    messages[name] = cdr.image(self.header, array, self.ENCODINGS[name])
        return messages


def output_cdr(result: DepthResult, header: Any, camera_info: Any | None, camera: PinholeCamera, config: Any,
               wanted: Container[str] = tuple(OUTPUTS)) -> dict[str, np.ndarray]:
    """:func:`output_messages`, serialized (CDR, :mod:`depth_node.ros.cdr`): each array copied once, into its
    message's buffer, instead of through a Python message and rclpy's conversion (:class:`OutputMessages` passed to
    the pipeline saves even that copy)."""
    return OutputMessages(header, camera_info, camera, config, wanted).serialized(result)
