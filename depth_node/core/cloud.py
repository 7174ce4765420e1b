"""Depth image → organized point cloud in the camera's optical frame (REP 103: x right, y down, z forward).

The cloud keeps the image's grid (``height × width`` after stride decimation) so consumers can index it like
the image (depth_image_proc does the same); invalid points are NaN, never dropped. ``min_range`` and
``max_range`` are Euclidean distances from the optical centre, in metres.

Output is one interleaved float32 buffer, x, y, z[, rgb] per point: PointCloud2's own memory layout, so the
message is a single memcpy away. ``rgb`` holds 0x00RRGGBB bit patterns (PCL/RViz convention).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from depth_node.core.camera import PinholeCamera, normalized_rays


@lru_cache(maxsize=16)
def _z_limits(camera: PinholeCamera, step: int, min_range: float, max_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel z bounds equivalent to min_range ≤ |ray · z| ≤ max_range (so the hot path only compares)."""
    u, v = normalized_rays(camera, step)
    length = np.sqrt(1.0 + u[None, :].astype(np.float64) ** 2 + v[:, None] ** 2)
    z_min, z_max = (min_range / length).astype(np.float32), (max_range / length).astype(np.float32)
    z_min.flags.writeable = z_max.flags.writeable = False
    return z_min, z_max


def backproject(
    depth_m: np.ndarray,
    camera: PinholeCamera,
    step: int = 1,
    min_range: float = 0.0,
    max_range: float = float("inf"),
    rgb: np.ndarray | None = None,
) -> np.ndarray:
    """Interleaved points (h, w, 3), or (h, w, 4) with packed ``rgb``, for every ``step``-th pixel.

    ``depth_m``: float32 metres, NaN invalid, on the grid ``camera`` describes. ``rgb``: uint8 (H, W, 3) on the
    same grid (decimated here). Points outside [min_range, max_range] are NaN.
    """
    if depth_m.shape != (camera.height, camera.width):
        raise ValueError(f"depth is {depth_m.shape[1]}x{depth_m.shape[0]} but camera is {camera.width}x{camera.height}")
    z = depth_m[::step, ::step]
    if min_range > 0.0 or np.isfinite(max_range):
        z_min, z_max = _z_limits(camera, step, float(min_range), float(max_range))
        with np.errstate(invalid="ignore"):
            outside = (z < z_min) | (z > z_max)
        z = np.where(outside, np.float32(np.nan), z)
    u, v = normalized_rays(camera, step)
    points = np.empty(z.shape + (3 if rgb is None else 4,), np.float32)
    np.multiply(z, u[None, :], out=points[..., 0])
    np.multiply(z, v[:, None], out=points[..., 1])
    points[..., 2] = z
    if rgb is not None:
        if rgb.shape[:2] != depth_m.shape:
            raise ValueError(f"rgb is {rgb.shape[1]}x{rgb.shape[0]} but depth is {depth_m.shape[1]}x{depth_m.shape[0]}")
        # little-endian 0x00RRGGBB = bytes B, G, R, 0
        packed = points.view(np.uint8).reshape(z.shape + (16,))
        colour = rgb[::step, ::step]
        packed[..., 12] = colour[..., 2]
        packed[..., 13] = colour[..., 1]
        packed[..., 14] = colour[..., 0]
        packed[..., 15] = 0
    return points


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """float32 0x00RRGGBB bit patterns → uint8 (..., 3) RGB (inverse of the packing in :func:`backproject`)."""
    bits = np.ascontiguousarray(packed, np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1).astype(np.uint8)
