"""Raw camera images to the rectified geometry image_pipeline uses (``image_proc``'s rectify, in the node).

A ROS camera_info describes the raw image by K and D (distortion) and the rectified image by P (and R, the
rectification rotation; identity for a monocular camera). depth_image_proc and every consumer of ``depth/image``
project with P. So the node works in the rectified geometry: with ``camera_model: rectified`` the input already is
(``image_rect``) and only P is read; with ``camera_model: raw`` the input is remapped here first, pixel (u, v) of the
result looking along the ray of P's pixel (u, v). Distortion models: ``plumb_bob`` and ``rational_polynomial``
(OpenCV's 4–14 coefficients), ``equidistant`` (OpenCV's fisheye, 4 coefficients).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from depth_node.errors import InputError

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


@dataclass(frozen=True)
class Calibration:
    """One camera_info's geometry: 3×3 K, D, 3×3 R, 3×3 of P (the rectified camera), the image size."""

    k: tuple[float, ...]
    d: tuple[float, ...]
    r: tuple[float, ...]
    p: tuple[float, ...]
    distortion_model: str
    width: int
    height: int

    @property
    def distorted(self) -> bool:
        return any(v != 0.0 for v in self.d)

    @property
    def unchanged_by_rectifying(self) -> bool:
        """No distortion, no rectification rotation and P's camera = K: the raw image is the rectified one."""
        identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        return not self.distorted and self.r in ((0.0,) * 9, identity) and self.p == self.k


class Rectifier:
    """Remaps raw images of one calibration to its rectified grid (P); the maps are built once."""

    def __init__(self, calibration: Calibration) -> None:
        c = calibration
        if c.distortion_model not in DISTORTION_MODELS:
            raise InputError(f"camera_info distortion_model {c.distortion_model!r} is not one of {', '.join(DISTORTION_MODELS)}: "
                             "rectify the image upstream (image_proc) and set camera_model: rectified")
        k = np.array(c.k, np.float64).reshape(3, 3)
        r = np.array(c.r, np.float64).reshape(3, 3) if any(c.r) else np.eye(3)
        p = np.array(c.p, np.float64).reshape(3, 3)
        d = np.array(c.d, np.float64)
        size = (c.width, c.height)
        if c.distortion_model == "equidistant":
            if d.size != 4:
                raise InputError(f"equidistant distortion takes 4 coefficients, camera_info has {d.size}")
            self.map_x, self.map_y = cv2.fisheye.initUndistortRectifyMap(k, d, r, p, size, cv2.CV_32FC1)
        else:
            if d.size not in (4, 5, 8, 12, 14):
                raise InputError(f"{c.distortion_model} distortion takes 4, 5, 8, 12 or 14 coefficients, camera_info has {d.size}")
            self.map_x, self.map_y = cv2.initUndistortRectifyMap(k, d, r, p, size, cv2.CV_32FC1)
        self.calibration = calibration

    def rectify(self, image: np.ndarray) -> np.ndarray:
        """The rectified image (bilinear; pixels that see outside the raw image are black)."""
        if image.shape[:2] != (self.calibration.height, self.calibration.width):
            raise InputError(f"image is {image.shape[1]}x{image.shape[0]}, its calibration {self.calibration.width}x"
                             f"{self.calibration.height}")
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
