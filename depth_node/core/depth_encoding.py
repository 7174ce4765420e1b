"""The one place that knows how depth is stored in an image (REP 118).

- ``32FC1``: float32 metres along the optical axis, NaN = invalid (0 would be a point at the origin); with REP 117
  (:func:`no_return_values`) +Inf = no return within range (sky, beyond the largest range), -Inf = too close.
- ``16UC1``: uint16 millimetres, 0 = invalid; values above 65.535 m cannot be stored and become invalid.

Inside depth_node, depth is always float32 metres with NaN invalid; these two functions convert at the edge.
"""

from __future__ import annotations

import numpy as np

from depth_node.errors import ConfigError, InputError

DEPTH_ENCODINGS = ("32FC1", "16UC1")
NO_RETURN_VALUES = ("inf", "nan")  # REP 117 ±Inf for out of range, or NaN for every pixel without a measurement
_MM_MAX = np.iinfo(np.uint16).max


def encode_depth(depth_m: np.ndarray, encoding: str) -> np.ndarray:
    """float32 metres (NaN invalid) → the array stored under ``encoding``."""
    if encoding == "32FC1":
        return np.ascontiguousarray(depth_m, dtype=np.float32)
    if encoding == "16UC1":
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float range → inf → invalid below
            mm = np.rint(depth_m * 1000.0)
        valid = np.isfinite(mm) & (mm > 0) & (mm <= _MM_MAX)
        out = np.zeros(depth_m.shape, np.uint16)
        out[valid] = mm[valid].astype(np.uint16)
        return out
    raise ConfigError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {encoding!r}")


def no_return_values(depth_m: np.ndarray, no_return: np.ndarray | None, min_range: float, max_range: float,
                     far: float = np.inf, near: float = -np.inf, out: np.ndarray | None = None) -> np.ndarray:
    """REP 117 for a published 32FC1 image: ``depth_m`` (float32 metres along the optical axis, NaN invalid) with
    ``far`` (+Inf) where nothing returns within range — ``no_return`` (e.g. sky) and depth beyond ``max_range`` — and
    ``near`` (-Inf) where the depth is closer than ``min_range``; NaN stays NaN (no estimate at all). ``out``: a
    float32 array of the same shape to write it into (e.g. the data of its message), returned; without it, a copy only
    when a pixel changes (``depth_m`` itself is never written)."""
    with np.errstate(invalid="ignore"):
        beyond, closer = depth_m > max_range, depth_m < min_range
    if no_return is not None:
        beyond |= no_return
    changes = beyond.any() or closer.any()
    if out is None:
        if not changes:
            return depth_m
        out = depth_m.copy()
    else:
        np.copyto(out, depth_m)
    if not changes:
        return out
    out[beyond] = far
    out[closer] = near
    return out


def decode_depth(stored: np.ndarray, encoding: str) -> np.ndarray:
    """The array stored under ``encoding`` → float32 metres, NaN invalid."""
    if encoding == "32FC1":
        depth = np.array(stored, dtype=np.float32)
        depth[~(depth > 0)] = np.nan  # also catches NaN, -inf, 0 and negative values
        depth[np.isinf(depth)] = np.nan
        return depth
    if encoding == "16UC1":
        depth = stored.astype(np.float32) / 1000.0
        depth[stored == 0] = np.nan
        return depth
    raise InputError(f"not a depth encoding: {encoding!r} (expected one of {DEPTH_ENCODINGS})")
