"""Model output spaces and the exact conversion from each to metres.

A depth model predicts in its *own* space; depth_node keeps a prediction there until the scale stage:

=================  ==========================================  ===========================
space              meaning of a value p                        metres, given scale s, shift t
=================  ==========================================  ===========================
``depth``          distance along the optical axis             d = s·p + t
``disparity``      inverse depth                               d = 1 / (s·p + t)
``sqrt_disparity`` square root of inverse depth (DepthMaster)  d = 1 / (s·p + t)²
=================  ==========================================  ===========================

``invariance`` says what the model leaves undetermined: ``metric`` (s = 1, t = 0 give metres), ``affine``
(unknown s and t, e.g. Marigold depth, Depth Anything disparity) or ``scale`` (unknown s only).
Values whose converted depth is not a positive finite number become NaN (invalid).
"""

from __future__ import annotations

from enum import Enum

import numpy as np


class OutputSpace(str, Enum):
    """Which quantity a model's output array holds."""

    DEPTH = "depth"
    DISPARITY = "disparity"
    SQRT_DISPARITY = "sqrt_disparity"


class Invariance(str, Enum):
    """What a model's output is determined up to."""

    METRIC = "metric"
    AFFINE = "affine"
    SCALE = "scale"


def to_metres(
    values: np.ndarray, space: OutputSpace, scale: float = 1.0, shift: float = 0.0, in_place: bool = False
) -> np.ndarray:
    """Convert a prediction in ``space`` to float32 metres (NaN invalid) with ``scale`` and ``shift``
    applied in that space (see the module table). ``in_place`` reuses a float32 ``values`` the caller owns."""
    aligned = values if in_place and values.dtype == np.float32 else values.astype(np.float32, copy=True)
    if scale != 1.0:
        aligned *= np.float32(scale)
    if shift != 0.0:
        aligned += np.float32(shift)
    if space is OutputSpace.DEPTH:
        depth = aligned
    elif space is OutputSpace.DISPARITY:
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.reciprocal(aligned, out=aligned)
    elif space is OutputSpace.SQRT_DISPARITY:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            np.square(aligned, out=aligned)
            depth = np.reciprocal(aligned, out=aligned)
    else:  # pragma: no cover - enum is closed
        raise ValueError(space)
    # not (d > 0) also catches NaN; inf comes from a zero disparity (a point at infinity).
    depth[~(depth > 0) | np.isinf(depth)] = np.nan
    return depth


def from_metres(depth_m: np.ndarray, space: OutputSpace) -> np.ndarray:
    """Inverse of :func:`to_metres` with scale 1 and shift 0 (used to build reference predictions)."""
    depth = depth_m.astype(np.float64)
    if space is OutputSpace.DEPTH:
        return depth.astype(np.float32)
    with np.errstate(divide="ignore"):
        disparity = 1.0 / depth
    if space is OutputSpace.DISPARITY:
        return disparity.astype(np.float32)
    return np.sqrt(disparity).astype(np.float32)
