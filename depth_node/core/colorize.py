"""Depth → rgb8 picture for people, with a FIXED range so colours mean the same metres in every frame."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

COLORMAPS = {
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "jet": cv2.COLORMAP_JET,
    "gray": None,
}


@lru_cache(maxsize=8)
def _table(colormap: str) -> np.ndarray:
    """256×1×3 uint8 RGB table for cv2.applyColorMap: entry 0 = black (invalid), 1..255 = the colormap."""
    ramp = np.linspace(0, 255, 255).astype(np.uint8)[:, None]
    if COLORMAPS[colormap] is None:
        rgb = np.repeat(ramp[..., None], 3, axis=2)
    else:
        rgb = cv2.applyColorMap(ramp, COLORMAPS[colormap])[..., ::-1]
    table = np.zeros((256, 1, 3), np.uint8)
    table[1:] = rgb
    return table


def colorize_depth(depth_m: np.ndarray, min_m: float, max_m: float, colormap: str = "turbo",
                   out: np.ndarray | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB: ``min_m`` → first colour, ``max_m`` → last, clipped outside; invalid (NaN) → black.
    ``out``: a C-contiguous uint8 (H, W, 3) array to write it into (returned); default a new one."""
    if not max_m > min_m:
        raise ValueError(f"colormap range needs max > min, got [{min_m}, {max_m}]")
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {sorted(COLORMAPS)}")
    gain = 254.0 / (max_m - min_m)
    # min_m..max_m → levels 1..255 (clipped outside), NaN → level 0 (black): three OpenCV passes over the frame
    level = np.clip(np.asarray(depth_m, np.float32), np.float32(min_m), np.float32(max_m))  # NaN stays NaN
    shape = level.shape + (3,)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous uint8 {shape}, got {out.dtype} {out.shape}")
    if not level.size:
        return out  # (OpenCV's patchNaNs dies on an empty array: SIGFPE)
    cv2.patchNaNs(level, min_m - 1.0 / gain)  # the depth whose level is 0
    level8 = cv2.convertScaleAbs(level, alpha=gain, beta=1.0 - min_m * gain)
    return cv2.applyColorMap(level8, _table(colormap), dst=out)  # shape and type checked: OpenCV writes into out


def display_range(depth_m: np.ndarray, low_pct: float = 2.0, high_pct: float = 98.0) -> tuple[float, float]:
    """A per-picture colour range for people (reports, demo pictures): the 2–98 % percentiles of the finite
    depths (0.3–10 m when there are none), never empty. The node's own colorized output keeps its fixed range."""
    finite = depth_m[np.isfinite(depth_m)]
    if not finite.size:
        return 0.3, 10.0
    lo, hi = np.percentile(finite, [low_pct, high_pct])
    return float(lo), float(max(hi, lo + 1e-3))

