"""A learnt confidence head for a trained depth model (``depth-node train-confidence``), Depth Anything 3 style.

Why: a single pass has no spread to read confidence from, and the gradient heuristic (``core.confidence``) ranks the
shipped default's errors no better than a random order on rgbd_dev and on rendered rooms (docs/benchmarks.md). The
network's errors there are whole wrong regions, not edges; something has to learn where this network goes wrong.

What: a small CNN beside the **frozen** depth network. It sees the normalized image and the network's log-depth
(minus its image mean: where things are relative to the rest of the frame, not how far the network thinks the room
is) and predicts b, the expected |relative depth error| of each pixel, trained with the Laplace negative
log-likelihood |r| / b + ln b (its minimizer is b = E|r|) on the log residual r of the prediction as a target judges
it (``aligned_log_residual``: as published, after a per-image scale, or after a per-image scale and shift). Labels: exact
depth of freshly rendered scenes (other seeds than the depth training's) and the real RGB-D frames of the
training split, under the depth training's augmentations; never rgbd_dev.

Output: :class:`DepthWithConfidence` exports one ONNX graph with two outputs, ``depth`` (metres, the same computation
as the depth network's) and ``confidence`` = 1 / (1 + (b / b₀)²) = sigmoid(2 (ln b₀ − ln b)), b₀ = 0.05 — the same
mapping as the ensemble spread's (a 5 % expected error gives 0.5). Its card sets ``output.confidence_index: 1``,
which the pipeline publishes as the model's own confidence head.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from depth_node.train.network import conv_bn

REFERENCE_ERROR = 0.05   # b₀: the expected relative error at which confidence is 0.5 (as confidence_uncertainty_scale)
LOG_ERROR_RANGE = (math.log(1e-3), math.log(4.0))  # b is clamped here: the NLL has no floor as b → 0


class ConfidenceHead(nn.Module):
    """(N, 3, H, W) normalized RGB + (N, 1, H, W) ln metres → (N, 1, H, W) ln b, b the expected |relative error|.

    Encoder to 1/16 (≈ 150 px receptive field) plus image-level context (a region is wrong *for this scene*), a
    U-Net decoder to 1/4 (errors come in regions: a decoder to 1/2 cost 5 ms in ONNX Runtime on a 2-core CPU against
    2 ms, and ranked the held-out real scene's errors worse; docs/benchmarks.md), bilinear to full size. H and W
    multiples of 16."""

    def __init__(self, widths: tuple[int, int, int, int] = (16, 24, 32, 48)) -> None:
        super().__init__()
        w = widths
        self.down = nn.ModuleList([conv_bn(4, w[0], 3, 2), conv_bn(w[0], w[1], 3, 2), conv_bn(w[1], w[2], 3, 2), conv_bn(w[2], w[3], 3, 2)])
        self.context = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(w[3], w[3], 1), nn.ReLU(inplace=True))
        self.up = nn.ModuleList([conv_bn(w[3] + w[2], w[2]), conv_bn(w[2] + w[1], w[1])])
        self.out = nn.Conv2d(w[1], 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, math.log(0.1))  # start from a 10 % error everywhere

    def forward(self, image: torch.Tensor, log_depth: torch.Tensor) -> torch.Tensor:
        size = image.shape[-2:]
        centred = log_depth - log_depth.mean(dim=(2, 3), keepdim=True)
        features = [torch.cat([image, centred], dim=1)]
        for block in self.down:
            features.append(block(features[-1]))
        y = features[-1] + self.context(features[-1])
        for block, skip in zip(self.up, reversed(features[1:-1])):
            y = block(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], dim=1))
        y = F.interpolate(self.out(y), size=size, mode="bilinear", align_corners=False)
        return y.clamp(*LOG_ERROR_RANGE)


class DepthWithConfidence(nn.Module):
    """The exported pair: (N, 3, H, W) normalized RGB → (metres, confidence in [0, 1]), each (N, 1, H, W).
    The depth network is frozen and its output passed through unchanged."""

    def __init__(self, depth_model: nn.Module, head: ConfidenceHead) -> None:
        super().__init__()
        self.depth_model = depth_model.eval().requires_grad_(False)
        self.head = head

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        depth = self.depth_model(image)
        log_error = self.head(image, torch.log(depth))
        return depth, torch.sigmoid(2.0 * (math.log(REFERENCE_ERROR) - log_error))


TARGETS = ("metric", "scale", "affine")


def aligned_log_residual(log_depth: torch.Tensor, depth: torch.Tensor, target: str = "scale") -> torch.Tensor:
    """r = ln d̂' − ln d per pixel, NaN where ``depth`` (B, H, W metres) has no label; ``log_depth`` (B, 1, H, W).
    d̂' is the prediction as ``target`` judges it: ``metric`` as published; ``scale`` × the sample's median ratio
    (r − median r); ``affine`` s·d̂ + t, least squares in depth per sample (the evaluation's "aligned" AbsRel), floored
    at 1 mm where the fit goes negative. A sample without labels is all NaN."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    valid = torch.isfinite(depth) & (depth > 0)
    log_pred = log_depth[:, 0].detach()
    safe_depth = torch.where(valid, depth, torch.ones_like(depth))
    if target == "affine":
        weight = valid.to(log_pred.dtype)
        pred_depth = torch.exp(log_pred).double()
        pred = pred_depth * weight
        gt = safe_depth.double() * weight
        n = weight.double().sum(dim=(1, 2)).clamp(min=1)
        sx, sy = pred.sum(dim=(1, 2)), gt.sum(dim=(1, 2))
        var = (pred * pred).sum(dim=(1, 2)) - sx * sx / n
        scale = torch.where(var > 1e-12, ((pred * gt).sum(dim=(1, 2)) - sx * sy / n) / var.clamp(min=1e-12), torch.ones_like(var))
        shift = (sy - scale * sx) / n
        aligned = scale[:, None, None] * pred_depth + shift[:, None, None]
        log_pred = torch.log(aligned.clamp(min=1e-3)).to(log_pred.dtype)
    residual = log_pred - torch.log(safe_depth)
    residual = torch.where(valid, residual, torch.full_like(residual, float("nan")))
    if target == "scale":
        offset = torch.nan_to_num(residual.flatten(1).nanmedian(dim=1).values, nan=0.0)
        residual = residual - offset[:, None, None]
    return residual


def laplace_nll(log_error: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Mean over labelled pixels of |r| / b + ln b (b = exp(``log_error``), (B, 1, H, W); ``residual`` (B, H, W),
    NaN = no label). Its minimizer over b is E|r|, the expected absolute log error."""
    valid = torch.isfinite(residual)
    if not bool(valid.any()):
        return log_error.sum() * 0.0
    log_b = log_error[:, 0][valid]
    return (residual[valid].abs() * torch.exp(-log_b) + log_b).mean()


def ranking_ause(error: np.ndarray, confidence: np.ndarray) -> tuple[float, float]:
    """(AUSE of ``confidence``, AUSE of a random order) for one frame's per-pixel errors (1-D, labelled pixels)."""
    from depth_node.eval.metrics import ause, random_order_ause, sparsification_curves

    by_confidence, oracle = sparsification_curves(error, confidence)
    return ause(by_confidence, oracle), random_order_ause(by_confidence, oracle)
