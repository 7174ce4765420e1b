"""Depth accuracy metrics, in the field's standard definitions, under four alignments.

Every function takes a predicted depth ``pred`` and a ground truth ``gt`` (float metres, same shape) and a boolean
``mask`` of the pixels to score. Callers build the mask with :func:`evaluation_mask` (GT valid and inside the
evaluation range, optional crop); pixels where the prediction itself is invalid (NaN, ≤ 0) are left out of the
metrics and counted in ``coverage`` instead, so a model that refuses hard pixels is not rewarded silently.

Alignments (``MODES``), each fitted per frame by least squares on the scored pixels:

============  ============================================================  ===================================
mode          prediction scored                                             use
============  ============================================================  ===================================
``metric``    as published                                                  metric models, the node's real output
``scale``     s·d, s = argmin Σ(s·d − d*)²                                   scale-ambiguous (e.g. monocular SLAM)
``affine``    s·d + t in depth (Marigold / DepthMaster protocol)             affine-invariant depth models
``affine_disparity``  1 / (s·(1/d) + t), fitted in disparity                  disparity models (DA-V2, Lotus)
============  ============================================================  ===================================

Aligned predictions are clipped to the evaluation range [min_depth, max_depth] before scoring (the KITTI / NYU
convention); the ``metric`` prediction is clipped the same way. Metrics (d = prediction, d* = GT, over scored
pixels): AbsRel = mean |d − d*| / d*; SqRel = mean (d − d*)² / d*; RMSE = √mean (d − d*)²;
RMSE-log = √mean (ln d − ln d*)²; SILog = 100·√(mean e² − (mean e)²), e = ln d − ln d* (KITTI benchmark scale);
δk = fraction with max(d/d*, d*/d) < 1.25^k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depth_node.core.least_squares import fit_scale, fit_scale_shift  # noqa: F401 - part of this module's API

MODES = ("metric", "scale", "affine", "affine_disparity")
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "delta1", "delta2", "delta3")
LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse", "rmse_log", "silog"}


@dataclass(frozen=True)
class EvalRange:
    """Which GT pixels count: depth in [min_depth, max_depth] metres, inside ``crop`` (top, bottom, left, right
    as fractions of the image; (0, 1, 0, 1) = whole image)."""

    min_depth: float = 1e-3
    max_depth: float = 80.0
    crop: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        if not 0.0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        top, bottom, left, right = self.crop
        if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
            raise ValueError(f"crop must be top,bottom,left,right fractions with top<bottom, left<right, got {self.crop}")


def evaluation_mask(gt: np.ndarray, eval_range: EvalRange) -> np.ndarray:
    """GT pixels that are finite, inside [min_depth, max_depth] and inside the crop."""
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(gt) & (gt >= eval_range.min_depth) & (gt <= eval_range.max_depth)
    top, bottom, left, right = eval_range.crop
    if eval_range.crop != (0.0, 1.0, 0.0, 1.0):
        h, w = gt.shape
        window = np.zeros_like(mask)
        window[int(round(top * h)):int(round(bottom * h)), int(round(left * w)):int(round(right * w))] = True
        mask &= window
    return mask


def fit(pred: np.ndarray, gt: np.ndarray, mode: str) -> tuple[float, float]:
    """The (scale, shift) of ``mode`` for 1-D positive finite ``pred`` against ``gt`` (least squares)."""
    if mode == "metric":
        return 1.0, 0.0
    if mode == "scale":
        return fit_scale(pred, gt), 0.0
    if mode == "affine":
        return fit_scale_shift(pred, gt)
    if mode == "affine_disparity":
        return fit_scale_shift(1.0 / pred, 1.0 / gt)
    raise ValueError(f"unknown alignment mode {mode!r}; one of {', '.join(MODES)}")


def apply_fit(pred: np.ndarray, mode: str, scale_shift: tuple[float, float]) -> np.ndarray:
    """``pred`` (any shape) under a fitted (scale, shift); a non-positive aligned disparity becomes +inf depth."""
    s, t = scale_shift
    if mode == "affine_disparity":
        with np.errstate(divide="ignore", invalid="ignore"):
            disparity = s / pred + t
            return np.where(disparity > 0, 1.0 / np.maximum(disparity, 1e-12), np.inf)
    return s * pred + t


_DELTA_LOG = tuple(math.log(1.25 ** k) for k in (1, 2, 3))  # max(d/d*, d*/d) < 1.25^k  ⇔  |ln(d/d*)| < k·ln 1.25


def depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The metrics of 1-D positive ``pred`` against 1-D positive ``gt`` (see the module docstring).
    Element-wise work in float32, every sum accumulated in float64."""
    p = pred.astype(np.float32, copy=False)
    g = gt.astype(np.float32, copy=False)
    inv_g = np.reciprocal(g)
    diff = p - g
    sq = diff * diff
    log_ratio = np.multiply(p, inv_g)
    np.log(log_ratio, out=log_ratio)
    n = p.size
    mean_log = float(log_ratio.sum(dtype=np.float64)) / n
    np.abs(diff, out=diff)
    abs_rel = float(np.multiply(diff, inv_g, out=diff).sum(dtype=np.float64)) / n
    sum_sq = float(sq.sum(dtype=np.float64))
    sq_rel = float(np.multiply(sq, inv_g, out=sq).sum(dtype=np.float64)) / n
    mean_log_sq = float(np.square(log_ratio, out=sq).sum(dtype=np.float64)) / n
    abs_log = np.abs(log_ratio, out=log_ratio)
    return {
        "abs_rel": abs_rel,
        "sq_rel": sq_rel,
        "rmse": math.sqrt(sum_sq / n),
        "rmse_log": math.sqrt(mean_log_sq),
        "silog": 100.0 * math.sqrt(max(mean_log_sq - mean_log * mean_log, 0.0)),
        "delta1": np.count_nonzero(abs_log < _DELTA_LOG[0]) / n,
        "delta2": np.count_nonzero(abs_log < _DELTA_LOG[1]) / n,
        "delta3": np.count_nonzero(abs_log < _DELTA_LOG[2]) / n,
    }


@dataclass
class FrameScore:
    """One frame's metrics per mode, the fitted (scale, shift) per mode, and pixel counts."""

    metrics: dict[str, dict[str, float]]  # mode → metric → value (NaN when nothing could be scored)
    fits: dict[str, tuple[float, float]]
    gt_pixels: int       # GT pixels in the evaluation mask
    scored_pixels: int   # of those, with a valid prediction
    sparsification: tuple[np.ndarray, np.ndarray] | None = None  # (by confidence, oracle) AbsRel curves

    @property
    def coverage(self) -> float:
        return self.scored_pixels / self.gt_pixels if self.gt_pixels else math.nan


def score_frame(
    pred: np.ndarray, gt: np.ndarray, eval_range: EvalRange, modes: tuple[str, ...] = MODES,
    confidence: np.ndarray | None = None, sparsification_mode: str = "metric",
) -> FrameScore:
    """Score one predicted depth map against GT (same shape, metres, NaN or ≤ 0 invalid in either); with a
    ``confidence`` map (same shape), also the sparsification curves of AbsRel under ``sparsification_mode``."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape: resample one first")
    mask = evaluation_mask(gt, eval_range)
    gt_pixels = int(mask.sum())
    with np.errstate(invalid="ignore"):
        mask &= np.isfinite(pred) & (pred > 0)
    p = pred[mask].astype(np.float32, copy=False)
    g = gt[mask].astype(np.float32, copy=False)
    p64, g64 = p.astype(np.float64), g.astype(np.float64)  # least-squares sums need float64
    metrics: dict[str, dict[str, float]] = {}
    fits: dict[str, tuple[float, float]] = {}
    curves = None
    for mode in modes:
        if p.size < 2:
            metrics[mode] = {name: math.nan for name in METRICS}
            fits[mode] = (math.nan, math.nan)
            continue
        fits[mode] = fit(p64, g64, mode)
        aligned = np.clip(apply_fit(p, mode, fits[mode]), eval_range.min_depth, eval_range.max_depth).astype(np.float32, copy=False)
        metrics[mode] = depth_errors(aligned, g)
        if confidence is not None and mode == sparsification_mode:
            step = max(1, -(-p.size // SPARSIFICATION_PIXELS))  # a regular subsample: sorting is the cost here
            curves = sparsification_curves((np.abs(aligned - g) / g)[::step], confidence[mask][::step])
    return FrameScore(metrics, fits, gt_pixels, int(p.size), curves)


# ----------------------------------------------------------------------------------------- sparsification
SPARSIFICATION_FRACTIONS = np.linspace(0.0, 0.98, 50)
SPARSIFICATION_PIXELS = 16384  # per frame, at most (a regular subsample of the scored pixels): sorting is the cost


def sparsification_curves(
    abs_rel_per_pixel: np.ndarray, confidence: np.ndarray, fractions: np.ndarray = SPARSIFICATION_FRACTIONS
) -> tuple[np.ndarray, np.ndarray]:
    """(by confidence, oracle): mean AbsRel of the pixels left after removing each fraction of them, least
    confident first (model) or largest error first (oracle). 1-D inputs over the scored pixels."""
    n = abs_rel_per_pixel.size
    if n == 0:
        nan = np.full(fractions.shape, np.nan)
        return nan, nan
    by_conf = abs_rel_per_pixel[np.argsort(-confidence)]                   # most confident first (deterministic introsort)
    by_error = np.sort(abs_rel_per_pixel)                                   # smallest error first
    keep = np.maximum(n - np.floor(fractions * n).astype(np.int64), 1)
    conf_cum = np.cumsum(by_conf)
    oracle_cum = np.cumsum(by_error)
    return conf_cum[keep - 1] / keep, oracle_cum[keep - 1] / keep


def ause(model_curve: np.ndarray, oracle_curve: np.ndarray, fractions: np.ndarray = SPARSIFICATION_FRACTIONS) -> float:
    """Area Under the Sparsification Error: ∫ (model − oracle) d(fraction), trapezoidal."""
    gap = model_curve - oracle_curve
    return float(np.sum((gap[1:] + gap[:-1]) * np.diff(fractions)) / 2.0)


def random_order_ause(model_curve: np.ndarray, oracle_curve: np.ndarray, fractions: np.ndarray = SPARSIFICATION_FRACTIONS) -> float:
    """The AUSE a random order would have on the same pixels: it removes pixels without regard to error, so its
    curve stays at the mean of all of them (``model_curve[0]``). A confidence is worth publishing below this."""
    return ause(np.full_like(model_curve, model_curve[0]), oracle_curve, fractions)


# ----------------------------------------------------------------------------------------- temporal
def scale_flicker(scales: list[float]) -> dict[str, float]:
    """Temporal consistency of a sequence from its per-frame least-squares scales to GT (no optical flow or poses
    needed): ``scale_drift`` = mean |ln(s_t / s_{t−1})| over consecutive frames (frame-to-frame flicker of the
    metric scale, 0 = steady) and ``scale_spread`` = std of ln s_t over the sequence."""
    logs = np.log([s for s in scales if math.isfinite(s) and s > 0])
    if logs.size < 2:
        return {"scale_drift": math.nan, "scale_spread": math.nan}
    return {"scale_drift": float(np.mean(np.abs(np.diff(logs)))), "scale_spread": float(np.std(logs))}
