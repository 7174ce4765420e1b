"""The training loss: scale-invariant log error (Eigen et al. 2014), per sample, on labelled pixels.

For e = ln d̂ − ln d over a sample's labelled pixels, L = √(mean e² − λ·(mean e)²):
- λ = 0.85 for ``metric`` samples (real RGB-D, synthetic): mostly scale-invariant, but the 15 % that is not
  teaches metres (as BTS / AdaBins train metric depth);
- λ = 1 for ``relative`` samples (teacher pseudo-labels): fully invariant to a global scale, so the teacher's
  structure is learnt and its scale is not.
The network predicts ln(metres), so the node publishes its output as metric depth with no scale to set.
"""

from __future__ import annotations

import torch

LAMBDA_METRIC = 0.85
LAMBDA_RELATIVE = 1.0
GRADIENT_WEIGHT = 0.5  # of gradient_loss, added to the SILog term


def silog_per_sample(log_pred: torch.Tensor, depth: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SILog of each sample, (B,), and whether it has a labelled pixel, (B,) bool. log_pred (B, 1, H, W); depth
    (B, H, W) metres, NaN = no label; lam (B,)."""
    valid = torch.isfinite(depth) & (depth > 0)
    target = torch.log(torch.where(valid, depth, torch.ones_like(depth)))
    e = (log_pred[:, 0] - target) * valid
    n = valid.sum(dim=(1, 2)).clamp(min=1)
    mean = e.sum(dim=(1, 2)) / n
    mean_sq = (e * e).sum(dim=(1, 2)) / n
    return torch.sqrt((mean_sq - lam * mean * mean).clamp(min=1e-8)), valid.flatten(1).any(dim=1)


def silog_loss(log_pred: torch.Tensor, depth: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of per-sample SILog (:func:`silog_per_sample`). Samples without a labelled pixel contribute
    nothing."""
    per_sample, has_label = silog_per_sample(log_pred, depth, lam)
    return (per_sample * has_label).sum() / has_label.sum().clamp(min=1)


def router_loss(gate_logit: torch.Tensor, base_log: torch.Tensor, expert_log: torch.Tensor, depth: torch.Tensor,
                lam: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a per-image gate's logit, (B, 1, 1, 1), against which of two frozen networks has the
    lower SILog on each labelled sample (1 = the expert). Unlike the blend's depth loss, its gradient does not vanish
    when the gate's sigmoid saturates on the wrong side, so an early pull towards one network (most batches are real
    images, where the base is better) cannot leave the gate stuck there."""
    with torch.no_grad():
        base_error, has_label = silog_per_sample(base_log, depth, lam)
        expert_better = (silog_per_sample(expert_log, depth, lam)[0] < base_error).float()
    per_sample = torch.nn.functional.binary_cross_entropy_with_logits(gate_logit.flatten(), expert_better, reduction="none")
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
