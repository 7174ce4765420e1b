"""The training loss: scale-invariant log error (Eigen et al. 2014), per sample, on labelled pixels.

For e = ln d̂ − ln d over a sample's labelled pixels, L = √(mean e² − λ·(mean e)²), λ = 0.85: mostly
scale-invariant, but the 15 % that is not teaches metres (as BTS / AdaBins train metric depth). Plus a multi-scale
gradient term on log-depth (MiDaS) for edges in the right places. The network predicts metres, so the node
publishes its output as metric depth with no scale to set.
"""

from __future__ import annotations

import torch

LAMBDA = 0.85
GRADIENT_WEIGHT = 0.5  # of gradient_loss, added to the SILog term


def silog_per_sample(log_pred: torch.Tensor, depth: torch.Tensor, lam: float = LAMBDA) -> tuple[torch.Tensor, torch.Tensor]:
    """SILog of each sample, (B,), and whether it has a labelled pixel, (B,) bool. log_pred (B, 1, H, W); depth
    (B, H, W) metres, NaN = no label."""
    valid = torch.isfinite(depth) & (depth > 0)
    target = torch.log(torch.where(valid, depth, torch.ones_like(depth)))
    e = (log_pred[:, 0] - target) * valid
    n = valid.sum(dim=(1, 2)).clamp(min=1)
    mean = e.sum(dim=(1, 2)) / n
    mean_sq = (e * e).sum(dim=(1, 2)) / n
    return torch.sqrt((mean_sq - lam * mean * mean).clamp(min=1e-8)), valid.flatten(1).any(dim=1)


def silog_loss(log_pred: torch.Tensor, depth: torch.Tensor, lam: float = LAMBDA) -> torch.Tensor:
    """Mean over the batch of per-sample SILog (:func:`silog_per_sample`). Samples without a labelled pixel contribute
    nothing."""
    per_sample, has_label = silog_per_sample(log_pred, depth, lam)
    return (per_sample * has_label).sum() / has_label.sum().clamp(min=1)


def gradient_loss(log_pred: torch.Tensor, depth: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Multi-scale gradient matching on log-depth (MiDaS): mean |∇(ln d̂ − ln d)| over pixel pairs where both are
    labelled, at full, 1/2 and 1/4 resolution. Invariant to a global scale, it rewards edges in the right places,
    which the SILog term alone leaves blurry."""
    valid = (torch.isfinite(depth) & (depth > 0)).float()[:, None]
    diff = (log_pred - torch.log(torch.where(valid > 0, depth[:, None], torch.ones_like(depth[:, None])))) * valid
    total = log_pred.new_zeros(())
    for _ in range(scales):
        gx = (diff[..., :, 1:] - diff[..., :, :-1]).abs() * valid[..., :, 1:] * valid[..., :, :-1]
        gy = (diff[..., 1:, :] - diff[..., :-1, :]).abs() * valid[..., 1:, :] * valid[..., :-1, :]
        pairs = (valid[..., :, 1:] * valid[..., :, :-1]).sum() + (valid[..., 1:, :] * valid[..., :-1, :]).sum()
        total = total + (gx.sum() + gy.sum()) / pairs.clamp(min=1)
        diff = torch.nn.functional.avg_pool2d(diff, 2) * 4  # sums of 2×2 blocks …
        valid = torch.nn.functional.avg_pool2d(valid, 2) * 4
        diff = diff / valid.clamp(min=1)                       # … → means over labelled pixels
        valid = (valid >= 4).float()                           # a coarse pixel counts when its block is fully labelled
        diff = diff * valid
    return total / scales
