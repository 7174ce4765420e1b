"""Ensemble members: which passes to run for one image, and running them.

``ensemble_members``:

``noise``  the same input ``ensemble_size`` times through a stochastic model (Marigold, Lotus-G): each pass
           draws fresh seeded noise.
``tta``    test-time augmentation of a deterministic model (Depth Anything, E2E-FT, DepthMaster, ONNX/TFLite
           models): the plain pass, its horizontal flip, then each ``tta_scales`` factor (model input long side ×
           factor; flexible-size models only) plain and flipped, in that order, the first ``ensemble_size`` of them.
``auto``   ``noise`` for stochastic models, ``tta`` for deterministic ones, where noise changes nothing.

Member 0 is always the plain pass. Every member comes back flipped back and resized (bilinear, in the model's
own output space) to member 0's output grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from depth_node.core.estimator import DepthEstimator
from depth_node.errors import ConfigError

MEMBER_KINDS = ("auto", "noise", "tta")


@dataclass(frozen=True)
class Member:
    """One pass: model input long side × ``scale``, horizontally flipped or not."""

    scale: float = 1.0
    flip: bool = False


def member_plan(size: int, kind: str, tta_scales: tuple[float, ...], stochastic: bool, flexible_input: bool) -> list[Member]:
    """The passes for ``ensemble_size`` = ``size``; raises :class:`ConfigError` with what to change when impossible."""
    if kind not in MEMBER_KINDS:
        raise ConfigError(f"ensemble_members must be one of {MEMBER_KINDS}, got {kind!r}")
    if size < 1:
        raise ConfigError(f"ensemble_size must be >= 1 (1 = off), got {size}")
    if kind == "auto":
        kind = "noise" if stochastic else "tta"
    if kind == "noise":
        if not stochastic and size > 1:
            raise ConfigError("ensemble_members: noise needs a stochastic model (Marigold, Lotus-G); this model is "
                              "deterministic, so every pass would be identical: use ensemble_members: tta (or auto)")
        return [Member()] * size
    if any(not (s > 0) for s in tta_scales):
        raise ConfigError(f"tta_scales must be positive factors, got {list(tta_scales)}")
    extra = [s for s in dict.fromkeys(tta_scales) if s != 1.0]
    if size > 2 and extra and not flexible_input:  # only the scale members need a flexible input size
        raise ConfigError(f"tta_scales {extra} need a model whose card sets input.long_side; this model takes a fixed "
                          "input size: use ensemble_size <= 2 (plain + flip)")
    plan = [Member(1.0, False), Member(1.0, True)] + [Member(s, f) for s in extra for f in (False, True)]
    if size > len(plan):
        wanted = (size + 1) // 2                   # scales needed, each plain and flipped
        suggestion = [1.0, *extra]
        for candidate in (0.75, 1.25, 0.875, 1.125, 0.625, 1.375, 0.5, 1.5, 0.9375, 1.0625, 0.8125, 1.1875, 0.6875, 1.3125):
            if len(suggestion) >= wanted:
                break
            if candidate not in suggestion:
                suggestion.append(candidate)
        raise ConfigError(f"ensemble_size {size} exceeds the {len(plan)} distinct test-time augmentations "
                          f"(flip × tta_scales {[1.0, *extra]}): give tta_scales {wanted} factors, e.g. {suggestion}")
    return plan[:size]


def run_members(estimator: DepthEstimator, rgb: np.ndarray, plan: list[Member]) -> np.ndarray:
    """Run ``plan`` on one uint8 RGB image → float32 (N, h, w) in the model's output space on member 0's grid."""
    inputs = []
    for member in plan:
        image = np.ascontiguousarray(rgb[:, ::-1]) if member.flip else rgb
        with estimator.scaled_input(member.scale):
            inputs.append(estimator.preprocess(image))
    predictions = estimator.infer_many(inputs)
    height, width = predictions[0].values.shape
    stack = np.empty((len(plan), height, width), np.float32)
    for k, (member, prediction) in enumerate(zip(plan, predictions)):
        values = prediction.values.astype(np.float32, copy=False)
        if values.shape != (height, width):
            values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
        stack[k] = values[:, ::-1] if member.flip else values
    return stack
