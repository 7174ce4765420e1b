"""Ground-truth depth from a bag message, on the grid of the predicted depth.

GT is an REP 118 depth image (16UC1 millimetres or 32FC1 metres; 0 / NaN invalid), registered to the camera
(same optical centre: an RGB-D sensor's ``aligned_depth_to_color`` or LiDAR projected into the image). When its
grid differs from the prediction's (other resolution, ROI, binning or intrinsics), each prediction pixel takes the
GT pixel its ray falls in (nearest neighbour: depth is never interpolated across object edges), using the GT's
own camera_info; rays that leave the GT image are invalid.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.errors import InputError
from depth_node.ros.convert import camera_from_info, depth_image_to_metres


def gt_metres(msg: Any) -> np.ndarray:
    """A depth Image message → float32 metres, NaN invalid (16UC1 / mono16 as millimetres, 32FC1 as metres)."""
    return depth_image_to_metres(msg, "ground-truth depth")


def gt_camera(gt: np.ndarray, gt_info: Any | None, image_camera: PinholeCamera) -> PinholeCamera:
    """The GT grid's intrinsics: from its camera_info, else the image camera's field of view on the GT's grid — only
    when that grid has the image's shape (a uniform rescale); another shape without camera_info would be a guess
    (stretched ground truth), so it raises :class:`InputError` naming the flag."""
    height, width = gt.shape
    if gt_info is not None:
        return camera_from_info(gt_info, width, height)
    if abs(width * image_camera.height - height * image_camera.width) > max(width, height):  # more than a pixel's rounding
        raise InputError(f"ground truth is {width}x{height} but the image {image_camera.width}x{image_camera.height}, and "
                         "the bag has no camera_info for the ground truth: give it with --gt-info-topic (stretching the "
                         "depth onto the image would score a guess)")
    return image_camera.resized(width, height)


def resample_to(gt: np.ndarray, source: PinholeCamera, target: PinholeCamera) -> np.ndarray:
    """GT on ``source``'s grid → the same scene on ``target``'s grid (nearest neighbour, NaN outside)."""
    if (source.width, source.height, source.fx, source.fy, source.cx, source.cy) == (
        target.width, target.height, target.fx, target.fy, target.cx, target.cy
    ):
        return gt
    u = (np.arange(target.width, dtype=np.float64) - target.cx) / target.fx * source.fx + source.cx
    v = (np.arange(target.height, dtype=np.float64) - target.cy) / target.fy * source.fy + source.cy
    map_x = np.broadcast_to(u[None, :], (target.height, target.width)).astype(np.float32)
    map_y = np.broadcast_to(v[:, None], (target.height, target.width)).astype(np.float32)
    return cv2.remap(gt, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
