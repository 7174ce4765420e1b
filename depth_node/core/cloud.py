"""Depth image → organized point cloud in the camera's optical frame (REP 103: x right, y down, z forward).

The cloud keeps the image's grid (``height × width`` after stride decimation) so consumers can index it like
the image (depth_image_proc does the same); invalid points are NaN, never dropped. ``min_range`` and
``max_range`` are Euclidean distances from the optical centre, in metres.

Output is one interleaved float32 buffer, x, y, z[, rgb] per point: PointCloud2's own memory layout, so the
message is a single memcpy away. ``rgb`` holds 0x00RRGGBB bit patterns (PCL/RViz convention).

Speed: this runs on every frame at the camera's resolution (307 200 points at 640×480), so each step is one
OpenCV kernel over the frame (multiply, merge, table lookup) against per-camera tables cached here; a numpy
``where`` or a strided write per channel cost several times the whole back-projection (issue 31).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from depth_node.core.camera import PinholeCamera, normalized_rays

# uint8 mask value → what to add to z: 0 keeps the point, 1 (True) makes it NaN
_DROP = np.zeros((1, 256), np.float32)
_DROP[0, 1:] = np.nan


@lru_cache(maxsize=16)
def _ray_grids(camera: PinholeCamera, step: int) -> tuple[np.ndarray, np.ndarray]:
    """x/z and y/z for every ``step``-th pixel as full (h', w') grids: one multiply each per frame."""
    u, v = normalized_rays(camera, step)
    shape = (len(v), len(u))
    grids = np.ascontiguousarray(np.broadcast_to(u[None, :], shape)), np.ascontiguousarray(np.broadcast_to(v[:, None], shape))
    for grid in grids:
        grid.flags.writeable = False
    return grids


@lru_cache(maxsize=16)
def _z_limits(camera: PinholeCamera, step: int, min_range: float, max_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel z bounds equivalent to min_range ≤ |ray · z| ≤ max_range (so the hot path only compares)."""
    u, v = normalized_rays(camera, step)
    length = np.sqrt(1.0 + u[None, :].astype(np.float64) ** 2 + v[:, None] ** 2)
    z_min, z_max = (min_range / length).astype(np.float32), (max_range / length).astype(np.float32)
    z_min.flags.writeable = z_max.flags.writeable = False
    return z_min, z_max


def packed_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3) RGB → float32 (h, w) holding 0x00RRGGBB bit patterns (little endian bytes B, G, R, 0)."""
    bgra = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGRA)
    packed = bgra.view(np.uint32)
    packed &= np.uint32(0x00FFFFFF)  # alpha 0: 0xFF.. would make the float an Inf/NaN pattern for R ≥ 128
    return packed.view(np.float32)[..., 0]


def backproject(
    depth_m: np.ndarray,
    camera: PinholeCamera,
    step: int = 1,
    min_range: float = 0.0,
    max_range: float = float("inf"),
    rgb: np.ndarray | None = None,
    drop: np.ndarray | None = None,
    out: np.ndarray | None = None,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """Interleaved points (h, w, 3), or (h, w, 4) with packed ``rgb``, for every ``step``-th pixel.

    ``depth_m``: float32 metres, NaN invalid, on the grid ``camera`` describes. ``rgb``: uint8 (H, W, 3) on the
    same grid (decimated here). Points outside [min_range, max_range], and where the bool ``drop`` (same grid as
    ``depth_m``) is True, are NaN. ``out``: a C-contiguous float32 array of the cloud's shape to write the points
    into (e.g. the data of the message that will carry them, ``ros.cdr.point_cloud_message``); returned.
    ``rows`` = (first, last): only those rows of the cloud (depth rows first·step ..), written to ``out[first:last]``
    and returned as that view: bands of one frame computed on several threads (``core.parallel``).
    """
    if depth_m.shape != (camera.height, camera.width):
        raise ValueError(f"depth is {depth_m.shape[1]}x{depth_m.shape[0]} but camera is {camera.width}x{camera.height}")
    if rgb is not None and rgb.shape[:2] != depth_m.shape:
        raise ValueError(f"rgb is {rgb.shape[1]}x{rgb.shape[0]} but depth is {depth_m.shape[1]}x{depth_m.shape[0]}")
    if drop is not None and drop.shape != depth_m.shape:
        raise ValueError(f"drop mask is {drop.shape[1]}x{drop.shape[0]} but depth is {depth_m.shape[1]}x{depth_m.shape[0]}")
    u, v = _ray_grids(camera, step)
    shape = u.shape + (3 if rgb is None else 4,)
    if out is not None and (out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous):
        raise ValueError(f"out must be C-contiguous float32 {shape}, got {out.dtype} {out.shape}")
    first, last = (0, shape[0]) if rows is None else rows
    band = slice(first * step, last * step, step)  # the depth rows of these cloud rows
    z = np.ascontiguousarray(depth_m[band, ::step], np.float32)
    outside = None if drop is None else np.ascontiguousarray(drop[band, ::step], bool)
    if min_range > 0.0 or np.isfinite(max_range):
        z_min, z_max = _z_limits(camera, step, float(min_range), float(max_range))
        with np.errstate(invalid="ignore"):
            beyond = (z < z_min[first:last]) | (z > z_max[first:last])
        outside = beyond if outside is None else outside | beyond
    if outside is not None and outside.any():
        z = cv2.add(z, cv2.LUT(outside.view(np.uint8), _DROP))  # + NaN where dropped, + 0 elsewhere
    channels = [cv2.multiply(z, u[first:last]), cv2.multiply(z, v[first:last]), z]
    if rgb is not None:
        channels.append(packed_rgb(rgb[band, ::step]))
    if out is None:
        return cv2.merge(channels)
    written = out[first:last]  # whole rows of a C-contiguous array: contiguous too
    cv2.merge(channels, dst=written)  # shape, type and layout checked above: OpenCV writes into it, never reallocates
    return out if rows is None else written


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """float32 0x00RRGGBB bit patterns → uint8 (..., 3) RGB (inverse of :func:`packed_rgb`)."""
    bits = np.ascontiguousarray(packed, np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1).astype(np.uint8)
