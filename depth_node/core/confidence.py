"""Confidence in [0, 1] per pixel, always published. Sources, first that applies:

1. **ensemble spread** (``ensemble_size`` > 1) or **flip disagreement** (``confidence_tta``): an uncertainty u in
   the model's output space (MAD, std or half the flip difference) becomes a *relative depth* uncertainty
   r = |d(p − u) − d(p + u)| / (2 d(p)), d the frame's conversion to metres (its scale and shift, in the model's
   space), and confidence = 1 / (1 + (r / r₀)²), r₀ = ``confidence_uncertainty_scale`` (default 0.05: members
   that disagree by 5 % of the depth give 0.5). Relative, because depth errors are judged relative to the depth
   (AbsRel, δ1): an absolute spread ranks far pixels last merely for being far, and did worse than a random
   ordering on rendered rooms (docs/ensembling.md). A spread that reaches zero or infinite depth gives 0;
2. the model's own **confidence head** (cards with ``output.confidence_index``), as the model gives it;
3. the **gradient heuristic** below, for a single pass of a model without a head (the shipped default).

Heuristic (documented, cheap): a monocular prediction is least trustworthy at depth discontinuities, where
the model blurs foreground into background ("flying pixels"). With the relative depth gradient
g = max(|∂d/∂u|, |∂d/∂v|) / d (per pixel, central differences), confidence = 1 / (1 + (g / g₀)²),
where g₀ (``gradient_scale``) is the relative change per pixel at which confidence is 0.5.
Invalid depth has confidence 0. This is a ranking signal, not a calibrated probability.
"""

from __future__ import annotations

import cv2
import numpy as np

from depth_node.core.spaces import OutputSpace, to_metres


def gradient_confidence(depth_m: np.ndarray, gradient_scale: float = 0.05, out: np.ndarray | None = None) -> np.ndarray:
    """Confidence (float32, same shape as ``depth_m``) from the relative depth gradient; see module docs.
    ``out``: a C-contiguous float32 array of that shape to compute it into (returned); default a new one."""
    if gradient_scale <= 0:
        raise ValueError(f"gradient_scale must be positive, got {gradient_scale}")
    d = np.ascontiguousarray(depth_m, np.float32)
    if out is None:
        out = np.empty(d.shape, np.float32)
    elif out.shape != d.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float32 {d.shape}, got {out.dtype} {out.shape}")
    if not d.size:
        return out  # (OpenCV's patchNaNs dies on an empty array: SIGFPE)
    # |central difference| = |d[+1] − d[−1]| / 2 along each axis; the larger of the two, 0 on the border
    grad = np.zeros_like(d)
    if d.shape[1] > 2:
        cv2.absdiff(d[:, 2:], d[:, :-2], dst=grad[:, 1:-1])
    if d.shape[0] > 2:
        np.maximum(grad[1:-1], cv2.absdiff(d[2:], d[:-2]), out=grad[1:-1])  # numpy's: a NaN wins (not OpenCV's)
    # 1 / (1 + (g / (g₀ d))²) with g = grad / 2, as (2 g₀ d)² / ((2 g₀ d)² + grad²): one division, OpenCV kernels
    # writing in place (this runs on every frame at the camera's resolution). NaN depth or a NaN neighbour gives
    # NaN, d = 0 gives 0 / 0: unknown means not confident, 0.
    confidence = cv2.multiply(d, d, dst=out, scale=float((2.0 * gradient_scale) ** 2))  # OpenCV writes into out
    cv2.multiply(grad, grad, dst=grad)
    cv2.divide(confidence, cv2.add(confidence, grad, dst=grad), dst=confidence)
    cv2.patchNaNs(confidence, 0.0)
    return confidence


def uncertainty_confidence(values: np.ndarray, uncertainty: np.ndarray, space: OutputSpace, scale: float = 1.0,
                           shift: float = 0.0, uncertainty_scale: float = 0.05) -> np.ndarray:
    """Confidence (float32) from an uncertainty in the units of ``values`` (the model's ``space``, converted to
    metres with ``scale`` and ``shift``); see module docs (source 1). 0 where the depth is invalid."""
    if uncertainty_scale <= 0:
        raise ValueError(f"uncertainty_scale must be positive, got {uncertainty_scale}")
    spread = np.abs(uncertainty.astype(np.float32, copy=False))
    depth = to_metres(values, space, scale, shift)
    # values ± spread are fresh arrays: convert them in place rather than copy each once more
    near_far = (to_metres(values - spread, space, scale, shift, in_place=True)
                - to_metres(values + spread, space, scale, shift, in_place=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(near_far) / (2.0 * np.float32(uncertainty_scale) * depth)
        confidence = 1.0 / (1.0 + ratio * ratio)
    confidence[~np.isfinite(confidence)] = 0.0
    return confidence.astype(np.float32, copy=False)
