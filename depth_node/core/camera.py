"""Pinhole intrinsics of an image grid, and how they change when the grid is resized.

Convention (OpenCV, ROS ``image_geometry``): pixel (u, v) has its centre at integer coordinates, so
pixel 0 covers [-0.5, 0.5). ``cv2.resize`` maps destination pixel x to source x' = (x + 0.5) / s - 0.5,
hence a principal point moves as cx' = (cx + 0.5) * s - 0.5 and focal lengths scale as fx' = fx * s.
Every resize in depth_node goes through :meth:`PinholeCamera.resized`, so intrinsics and pixels agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from depth_node.errors import InputError


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of a ``width`` × ``height`` image, in pixels. No distortion (expects rectified images)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"camera size must be positive, got {self.width}x{self.height}")
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise InputError(f"camera {name} is not finite ({value})")
        if self.fx <= 0 or self.fy <= 0:
            raise InputError(
                f"camera focal lengths must be positive, got fx={self.fx} fy={self.fy} "
                "(an uncalibrated camera_info has K all zeros: calibrate it, or set fallback_hfov_deg)"
            )

    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_deg: float) -> PinholeCamera:
        """A camera with square pixels, centred principal point and the given horizontal field of view."""
        if not 0.0 < hfov_deg < 180.0:
            raise InputError(f"horizontal field of view must be in (0, 180) degrees, got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the matrix is called K everywhere in the field
        """3×3 intrinsic matrix, float64."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scale_factors(self, width: int, height: int) -> tuple[float, float]:
        """(sx, sy) that take this grid to a ``width`` × ``height`` grid."""
        return width / self.width, height / self.height

    def resized(self, width: int, height: int) -> PinholeCamera:
        """Intrinsics of this camera's image after ``cv2.resize`` to ``width`` × ``height``."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = self.scale_factors(width, height)
        return PinholeCamera(
            width,
            height,
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
        )


@lru_cache(maxsize=16)
def _rays(camera: PinholeCamera, step: int) -> tuple[np.ndarray, np.ndarray]:
    u = (np.arange(0, camera.width, step, dtype=np.float64) - camera.cx) / camera.fx
    v = (np.arange(0, camera.height, step, dtype=np.float64) - camera.cy) / camera.fy
    return u.astype(np.float32), v.astype(np.float32)


def normalized_rays(camera: PinholeCamera, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """x/z per column and y/z per row of the optical frame, for every ``step``-th pixel (cached, read-only)."""
    u, v = _rays(camera, step)
    u.flags.writeable = False
    v.flags.writeable = False
    return u, v
