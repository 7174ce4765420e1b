"""Cleaning depth for clouds that costmaps can trust: flying pixels, sky, block-median decimation.

Each function is one transformation on float32 metres (NaN invalid), like depth_image_proc's components.

**Flying pixels.** A network (and the bilinear resize from its grid to the camera's) blends depth across an
occlusion edge, so the pixels on the edge land between the foreground and the background: points floating in
free space, which a costmap marks as obstacles. Two tests, both local:

``ratio``   the largest depth difference to a valid 8-neighbour, relative to the pixel's own depth, exceeds
            ``max_ratio``. A surface seen at a grazing angle trips it too, near the horizon of a floor, where
            monocular depth is least reliable anyway.
``normal``  the angle between the surface normal (from the 3D neighbours) and the viewing ray exceeds
            ``max_angle_deg``: the edge's blend is a surface that runs along the rays.

The blend is as wide as the resize factor from the model's grid, so neighbours are compared up to
:func:`edge_radius` pixels away. Measured on rendered rooms and corridors (test_cloud_filter.py, 2.5× and 4×
resize, points within 5 m): ``ratio`` at 0.05 removes ≥ 90 % of the points farther than 5 cm from the true
surface and keeps ≥ 95 % of the others.

**Sky.** Disparity models put the sky at disparity ≈ 0; after an affine alignment (a shift t) that becomes a
finite depth 1/t, a wall in the sky. :func:`sky_mask` finds it in the model's output space before alignment:
disparity below ``fraction`` of the frame's near-field disparity (its 99th percentile), i.e. more than
1/fraction times farther than the nearest content. Depth-space models put the sky far away, where
``max_range`` removes it. None of the supported families has a sky output of its own.

**Block-median decimation.** One point per k×k block at the median of the block's valid depths: a stride keeps
whichever pixel happens to land there (an edge pixel as readily as any), a median keeps the block's surface.
The point sits at the block's centre; :func:`block_camera` gives the intrinsics of that grid. A partial block
at the right or bottom edge is left out (its median would not sit at a block centre).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from depth_node.core.camera import PinholeCamera, normalized_rays
from depth_node.core.spaces import OutputSpace

EDGE_FILTERS = ("off", "ratio", "normal")
DECIMATION_MODES = ("stride", "median")
_BIG = np.float32(3.0e38)


def flying_pixels(depth_m: np.ndarray, camera: PinholeCamera, mode: str = "ratio", max_ratio: float = 0.05,
                  max_angle_deg: float = 80.0, radius: int = 1, rows: tuple[int, int] | None = None) -> np.ndarray:
    """Boolean (h, w): True where a pixel is a flying pixel by ``mode`` (see the module docstring), comparing
    neighbours up to ``radius`` pixels away (see :func:`edge_radius`). ``rows`` = (first, last): only those rows of
    the mask, read with ``radius`` rows around them, so they equal the whole frame's (a frame split into bands)."""
    if rows is not None:
        first, last = rows
        top, bottom = max(0, first - radius), min(depth_m.shape[0], last + radius)
        return _flying(depth_m[top:bottom], camera, top, mode, max_ratio, max_angle_deg, radius)[first - top:last - top]
    return _flying(depth_m, camera, 0, mode, max_ratio, max_angle_deg, radius)


def _flying(depth_m: np.ndarray, camera: PinholeCamera, top: int, mode: str, max_ratio: float, max_angle_deg: float,
            radius: int) -> np.ndarray:
    """:func:`flying_pixels` of ``depth_m``, rows ``top``.. of ``camera``'s image."""
    if mode == "off" or not depth_m.size:  # (OpenCV's patchNaNs dies on an empty array: SIGFPE)
        return np.zeros(depth_m.shape, bool)
    if mode == "ratio":
        # jump > max_ratio·d to the farthest or the nearest valid neighbour ⇔ highest > (1 + max_ratio)·d or
        # lowest < (1 − max_ratio)·d. Invalid neighbours take no part: 0 for the max, _BIG for the min (the pixel
        # itself is in its window, so a valid pixel's own depth bounds both). NaN compares false: never flagged.
        # OpenCV kernels and comparisons only: np.where on a frame costs as much as the whole test (issue 31).
        depth_m = depth_m.astype(np.float32, copy=False)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
        below = above = depth_m  # all valid (a metric model's usual frame): nothing to hide
        if not np.isfinite(depth_m).all():
            depth_m = _nan_for_inf(depth_m)
            below, above = depth_m.copy(), depth_m.copy()
            cv2.patchNaNs(below, 0.0)
            cv2.patchNaNs(above, float(_BIG))
        highest = cv2.dilate(below, kernel, borderType=cv2.BORDER_REPLICATE)
        lowest = cv2.erode(above, kernel, borderType=cv2.BORDER_REPLICATE)
        with np.errstate(invalid="ignore", over="ignore"):
            flying = highest > depth_m * np.float32(1.0 + max_ratio)
            flying |= lowest < depth_m * np.float32(1.0 - max_ratio)
        return flying
    valid = np.isfinite(depth_m)
    if mode == "normal":
        u, v = normalized_rays(camera)
        v = v[top:top + depth_m.shape[0]]
        u, v = np.broadcast_to(u[None, :], depth_m.shape), np.broadcast_to(v[:, None], depth_m.shape)
        x, y = depth_m * u, depth_m * v
        r = radius
        nan = np.float32(np.nan)
        # central differences along the rows (a) and the columns (b); undefined at the border
        a = [np.full(depth_m.shape, nan) for _ in range(3)]
        b = [np.full(depth_m.shape, nan) for _ in range(3)]
        for component, array in enumerate((x, y, depth_m)):
            a[component][:, r:-r] = array[:, 2 * r:] - array[:, :-2 * r]
            b[component][r:-r] = array[2 * r:] - array[:-2 * r]
        nx = a[1] * b[2] - a[2] * b[1]
        ny = a[2] * b[0] - a[0] * b[2]
        nz = a[0] * b[1] - a[1] * b[0]
        with np.errstate(invalid="ignore"):
            along = np.abs(nx * u + ny * v + nz)
            size = np.sqrt((nx * nx + ny * ny + nz * nz) * (u * u + v * v + 1.0))
            # cos(angle) < cos(max) ⇔ along < cos(max)·size; undefined normals (border, NaN) never condemn a pixel
            return valid & (along < np.float32(math.cos(math.radians(max_angle_deg))) * size)
    raise ValueError(f"edge filter must be one of {EDGE_FILTERS}, got {mode!r}")


def _nan_for_inf(depth_m: np.ndarray) -> np.ndarray:
    """``depth_m`` with ±Inf as NaN (invalid), the array itself when it has none (the pipeline's never has:
    ``core.spaces.to_metres`` gives positive finite metres or NaN)."""
    infinite = np.isinf(depth_m)
    return np.where(infinite, np.float32(np.nan), depth_m) if infinite.any() else depth_m


def edge_radius(upsampling: float) -> int:
    """The neighbourhood that spans an edge's blend: a prediction resized up by ``upsampling`` (output grid /
    model grid) smears an edge over about that many pixels, half of it on each side."""
    return max(1, math.ceil(upsampling / 2))


def sky_mask(values: np.ndarray, space: OutputSpace, fraction: float = 0.02) -> np.ndarray | None:
    """Boolean mask of sky pixels of a prediction in its output space (model grid), or None when the space
    puts the sky far away by itself (depth) or ``fraction`` is 0."""
    if fraction <= 0 or space is OutputSpace.DEPTH:
        return None
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    near = float(np.percentile(finite, 99))
    if not near > 0:
        return None
    threshold = fraction * near if space is OutputSpace.DISPARITY else math.sqrt(fraction) * near
    with np.errstate(invalid="ignore"):
        return values <= threshold


def block_camera(camera: PinholeCamera, block: int) -> PinholeCamera:
    """Intrinsics of the grid of whole ``block`` × ``block`` block centres."""
    if block == 1:
        return camera
    offset = (block - 1) / 2.0
    return PinholeCamera(camera.width // block, camera.height // block, camera.fx / block, camera.fy / block,
                         (camera.cx - offset) / block, (camera.cy - offset) / block)


def block_median(depth_m: np.ndarray, block: int) -> np.ndarray:
    """(h // k, w // k) median of each whole block's valid depths (NaN where a block has none)."""
    if block == 1:
        return depth_m
    h, w = depth_m.shape
    bh, bw = h // block, w // block
    whole = np.ascontiguousarray(depth_m[:bh * block, :bw * block], np.float32)
    blocks = np.sort(whole.reshape(bh, block, bw, block).transpose(0, 2, 1, 3).reshape(bh, bw, block * block), axis=-1)
    count = np.isfinite(blocks).sum(axis=-1)                    # NaN sorts last: the valid ones come first
    low = np.take_along_axis(blocks, np.maximum(count - 1, 0)[..., None] // 2, axis=-1)[..., 0]
    high = np.take_along_axis(blocks, (count // 2)[..., None], axis=-1)[..., 0]
    median = 0.5 * (low + high)
    median[count == 0] = np.nan
    return median.astype(np.float32)


def block_colour(rgb: np.ndarray, block: int) -> np.ndarray:
    """The colour at each whole block's centre pixel (the upper-left of the middle four for even blocks)."""
    if block == 1:
        return rgb
    h, w = rgb.shape[:2]
    start = (block - 1) // 2
    return np.ascontiguousarray(rgb[start:h // block * block:block, start:w // block * block:block])
