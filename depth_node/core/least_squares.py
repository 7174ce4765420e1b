"""Closed-form least-squares alignment of one array to another: the scale, or scale and shift, that evaluation,
scale recovery and tools all mean by "aligned"."""

from __future__ import annotations

import numpy as np


def fit_scale(x: np.ndarray, y: np.ndarray) -> float:
    """s minimizing Σ(s·x − y)²."""
    xx = float(np.dot(x, x))
    return float(np.dot(x, y)) / xx if xx > 0 else 1.0


def fit_scale_shift(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(s, t) minimizing Σ(s·x + t − y)² from the float64 sums Σx, Σy, Σx², Σxy (t alone when x is constant)."""
    n = x.size
    sx, sy = float(x.sum()), float(y.sum())
    var = float(np.dot(x, x)) - sx * sx / n
    if var <= 1e-12 * max(float(np.dot(x, x)), 1e-300):
        return 1.0, (sy - sx) / n
    s = (float(np.dot(x, y)) - sx * sy / n) / var
    return s, (sy - s * sx) / n
