"""Temporal smoothing of a prediction stream: steadies the scale and shift that flicker from frame to frame.

Monocular models re-estimate the scene's scale (and, for affine outputs, the offset) on every frame, so the depth
of a static wall breathes while the camera moves. Per frame k, in the model's output space:

1. **Align** the new prediction v_k to the previous *published* prediction o_{k−1}: robust least squares
   (IRLS, L1 weights) for a scale s (and a shift t for affine-invariant models) on pixels valid in both. The
   previous frame is not warped: a moving camera changes which surface each pixel sees, but only a little from
   one frame to the next, and the L1 fit ignores the pixels that did change.
2. **Blend the correction, not the pixels**: o_k = α·v_k + (1 − α)·(s·v_k + t). This is an exponential moving
   average of the per-frame scale and shift (in the log domain for the scale: (1 − α) of the way to the previous
   frame's), while every pixel still comes from the current frame — no ghosting of moving objects or edges.
   A metric model's long-run scale is still its own (the EMA forgets the past with weight 1 − α per frame).
3. **Reset** on a cut: when the aligned new frame and the previous output disagree by more than
   ``reset_residual`` (median relative residual — a scene cut or fast motion, the pixels no longer correspond),
   publish v_k as it is and start over from it. A change of grid size (new camera_info) also resets.
4. **Cap** large corrections: a fitted |ln s| above ``max_correction`` counts as ``max_correction`` (the correction
   (1 − α)((s − 1)·v_k + t) is shrunk by max_correction / |ln s|), so a large real change is followed faster,
   continuously. (Restarting instead published everything held back in one jump — the flicker the filter is for —
   and made smaller α worse, not steadier.)

α = ``temporal_alpha`` (default 0.25): the weight of the new frame's own scale; smaller is steadier and slower.
A steady change (a camera walking towards a wall) is followed with a lag of about (1 − α) / α frames of it
(3 frames at 0.25: 5 cm at 0.5 m/s and 30 Hz). Chosen on the moving-camera rooms of seed 78 as the largest α whose
flicker falls ≥ 30 % (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depth_node.core.spaces import Invariance

SAMPLE_PIXELS = 1 << 14  # pixels the fit uses (a regular subsample): scale and shift need few


@dataclass
class TemporalState:
    """What the last update did (for diagnostics and tests)."""

    scale: float = 1.0
    shift: float = 0.0
    residual: float = math.nan
    reset: bool = True
    gain: float = 1.0  # the factor the published frame applied to the new one (its shift aside)


class TemporalFilter:
    """Stateful smoother for one prediction stream; see the module docstring."""

    def __init__(self, invariance: Invariance, alpha: float = 0.25, reset_residual: float = 0.15, max_correction: float = 0.3) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"temporal_alpha must be in (0, 1], got {alpha}")
        self.shift_free = invariance is Invariance.AFFINE
        self.alpha, self.reset_residual, self.max_correction = alpha, reset_residual, max_correction
        self.previous: np.ndarray | None = None
        self.state = TemporalState()

    def reset(self) -> None:
        self.previous = None

    def update(self, values: np.ndarray) -> np.ndarray:
        """The smoothed prediction for ``values`` (float32, model output space, NaN invalid); a new array."""
        values = values.astype(np.float32, copy=False)
        if self.previous is None or self.previous.shape != values.shape:
            return self._restart(values)
        scale, shift, residual = _robust_fit(values, self.previous, self.shift_free)
        if not (math.isfinite(scale) and scale > 0 and residual <= self.reset_residual):
            return self._restart(values, scale, shift, residual)
        # a large correction: follow the new frame faster (the correction shrinks to max_correction in |ln s|) rather
        # than restart, which would publish the whole held-back change in one jump
        keep = (1.0 - self.alpha) * min(1.0, self.max_correction / max(abs(math.log(scale)), 1e-12))
        gain = 1.0 + keep * (scale - 1.0)
        out = values * np.float32(gain) + np.float32(keep * shift)
        self.previous = out
        self.state = TemporalState(scale, shift, residual, reset=False, gain=gain)
        return out

    def _restart(self, values: np.ndarray, scale: float = 1.0, shift: float = 0.0, residual: float = math.nan) -> np.ndarray:
        self.previous = values.copy()
        self.state = TemporalState(scale, shift, residual, reset=True)
        return self.previous.copy()


def _robust_fit(new: np.ndarray, old: np.ndarray, shift_free: bool, iterations: int = 6) -> tuple[float, float, float]:
    """(s, t, median relative residual) of the L1 fit s·new + t ≈ old on pixels finite in both."""
    x, y = new.ravel(), old.ravel()
    valid = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    if valid.size < 16:
        return math.nan, 0.0, math.inf
    valid = valid[:: max(1, valid.size // SAMPLE_PIXELS)]
    x, y = x[valid].astype(np.float64), y[valid].astype(np.float64)
    weights = np.ones_like(x)
    scale, shift = 1.0, 0.0
    floor = 1e-3 * max(float(np.median(np.abs(y))), 1e-12)
    for _ in range(iterations):
        sw, sx, sy, sxx, sxy = weights.sum(), (weights * x).sum(), (weights * y).sum(), (weights * x * x).sum(), (weights * x * y).sum()
        if shift_free:
            det = sw * sxx - sx * sx
            if det <= 0:
                return math.nan, 0.0, math.inf
            scale, shift = (sw * sxy - sx * sy) / det, (sxx * sy - sx * sxy) / det
        else:
            scale, shift = (sxy / sxx if sxx > 0 else math.nan), 0.0
        weights = 1.0 / np.maximum(np.abs(scale * x + shift - y), floor)
    residual = float(np.median(np.abs(scale * x + shift - y) / np.maximum(np.abs(y), floor)))
    return float(scale), float(shift), residual
