"""Confidence in [0, 1] per pixel, always published. Sources, first that applies:

1. **ensemble spread** (``ensemble_size`` > 1) or **flip disagreement** (``confidence_tta``): an uncertainty u in
   the model's output space (MAD, std or half the flip difference), relative to the prediction's range
   R = p98 − p2 of its finite values: confidence = 1 / (1 + (u / (R · u₀))²), u₀ =
   ``confidence_uncertainty_scale`` (default 0.02: a spread of 2 % of the range gives 0.5);
2. the model's own **confidence head** (cards with ``output.confidence``), as the model gives it;
3. the **gradient heuristic** below, for a single pass of a model without a head.

Heuristic (documented, cheap): a monocular prediction is least trustworthy at depth discontinuities, where
the model blurs foreground into background ("flying pixels"). With the relative depth gradient
g = max(|∂d/∂u|, |∂d/∂v|) / d (per pixel, central differences), confidence = 1 / (1 + (g / g₀)²),
where g₀ (``gradient_scale``) is the relative change per pixel at which confidence is 0.5.
Invalid depth has confidence 0. This is a ranking signal, not a calibrated probability.
"""

from __future__ import annotations

import numpy as np


def gradient_confidence(depth_m: np.ndarray, gradient_scale: float = 0.05) -> np.ndarray:
    """Confidence (float32, same shape as ``depth_m``) from the relative depth gradient; see module docs."""
    if gradient_scale <= 0:
        raise ValueError(f"gradient_scale must be positive, got {gradient_scale}")
    d = depth_m.astype(np.float32, copy=False)
    grad = np.zeros_like(d)
    if d.shape[1] > 2:
        np.abs(d[:, 2:] - d[:, :-2], out=grad[:, 1:-1])
        grad[:, 1:-1] *= 0.5
    if d.shape[0] > 2:
        gv = np.abs(d[2:, :] - d[:-2, :]) * 0.5
        np.maximum(grad[1:-1, :], gv, out=grad[1:-1, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        g = grad / (d * np.float32(gradient_scale))
        confidence = 1.0 / (1.0 + g * g)
    # NaN depth (or a NaN neighbour) gives NaN here: unknown means not confident.
    confidence[~np.isfinite(confidence)] = 0.0
    return confidence.astype(np.float32, copy=False)


def uncertainty_confidence(values: np.ndarray, uncertainty: np.ndarray, uncertainty_scale: float = 0.02) -> np.ndarray:
    """Confidence (float32) from an uncertainty in the same units as ``values``; see module docs (source 1)."""
    if uncertainty_scale <= 0:
        raise ValueError(f"uncertainty_scale must be positive, got {uncertainty_scale}")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, np.float32)
    low, high = np.percentile(finite, (2, 98))
    span = max(float(high - low), 1e-12)
    with np.errstate(invalid="ignore"):
        ratio = uncertainty.astype(np.float32) / np.float32(span * uncertainty_scale)
        confidence = 1.0 / (1.0 + ratio * ratio)
    confidence[~np.isfinite(confidence) | ~np.isfinite(values)] = 0.0
    return confidence.astype(np.float32, copy=False)
