"""Multi-pass ensembling in the model's own output space: Marigold's test-time ensembling, solved fast.

``N`` predictions of one image (*members*: noise seeds of a stochastic model, or test-time augmentations of a
deterministic one), each on the same grid and in the model's output space (affine depth, disparity or
sqrt-disparity), become one prediction and a per-pixel uncertainty:

1. **Gauge.** Alignment works in normalized coordinates where the reduced prediction spans [0, 1] (Marigold's
   convention; for scale-only alignment its maximum is 1). Members start min–max normalized.
2. **IRLS.** Each member i gets a scale sᵢ and shift tᵢ (scale only for scale-invariant and metric models),
   fitted in closed form by weighted least squares to the running reduced prediction, with L1 weights
   (1 / max(|residual|, δ)) so that a member's outliers do not pull its fit; the reduced prediction is recomputed
   which is stretched to [0, 1] (the gauge) before every round. All members at once, as batched 2×2 normal equations, in torch
   on the members' device.
3. **Refinement** (affine and scale-invariant models): BFGS with exact gradients on Marigold's objective,

       E(s, t) = mean over pairs i<j of RMSE(aᵢ, aⱼ) + 0.02 · (|min m| + |1 − max m|),   aᵢ = sᵢ·pᵢ + tᵢ,

   m the reduced prediction — the objective Marigold minimizes with scipy BFGS on the CPU from numerical
   gradients — evaluated on the members after Marigold's final normalization (m → [0, 1]; ``core.refine`` says
   why the raw objective is degenerate), where it is the members' pairwise RMSE over the span of m.
   ``core.refine`` evaluates the RMSEs from the members' second moments (N×N numbers) and the
   span on the pixels where m is extreme, so an evaluation costs microseconds whatever the image size.
4. **Reduction** at full resolution: ``median`` (uncertainty = median absolute deviation; a selection network
   over cache-sized chunks with the alignment applied inside, ``core.median``) or ``mean`` (uncertainty =
   standard deviation), ignoring NaN (invalid) pixels of single members.
5. **Back to the model's units.** The result is mapped back to the coordinates of member 0 (the plain pass), so
   an ensemble reads like a single prediction: ``scale.fixed_scale`` calibrated for one pass still holds, and a
   metric model keeps metres (for metric models the gauge is instead the geometric mean of the scales, = 1).

Steps 2–3 run on a fixed subsample of at most ``sample_pixels`` (4 096) pixels valid in every member, on a regular
grid (IRLS: ``irls_iterations`` rounds, 5; the refinement: at least ``refine_iterations`` BFGS iterations, then
rounds of 5 while a round lowers the objective by ≥ 0.5 %, at most 50). Marigold aligns a copy downsampled to
≤ 1024 px for the same reason: a handful of scales and shifts does not need millions of pixels — on real members,
4 096 samples reach the same objective as 16 384 (git log -p docs/benchmarks.md), and both cost per round, not per pixel.
Steps 4–5 touch every pixel once. Time and objective against the scipy reference: docs/benchmarks.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from depth_node.core.median import median_and_mad, median_rows
from depth_node.core.refine import refine
from depth_node.core.spaces import Invariance

REDUCTIONS = ("median", "mean")
REGULARIZER = 0.02  # Marigold's weight of the [0, 1]-range term


@dataclass
class Ensemble:
    """An ensembled prediction, in the units of member 0.

    values:      (H, W) reduced prediction in the model's output space, NaN where no member is valid.
    uncertainty: (H, W) ≥ 0, MAD (median) or std (mean) of the aligned members, same units as ``values``; None
                 when not asked for.
    scale/shift: (N,) per-member alignment in normalized coordinates (aᵢ = scaleᵢ·pᵢ + shiftᵢ).
    objective:   Marigold's objective E of the normalized members on the alignment subsample (NaN for metric models).
    """

    values: torch.Tensor
    uncertainty: torch.Tensor | None
    scale: torch.Tensor
    shift: torch.Tensor
    objective: float


def reduce_members(aligned: torch.Tensor, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, …) aligned members → (reduced, uncertainty), NaN-aware: median/MAD or mean/std."""
    if reduction == "median":
        return median_and_mad(aligned)
    if reduction != "mean":
        raise ValueError(f"ensemble_reduction must be one of {REDUCTIONS}, got {reduction!r}")
    centre = torch.nanmean(aligned, dim=0)
    finite = torch.isfinite(aligned)
    count = finite.sum(0).clamp(min=1)
    deviation = torch.where(finite, aligned - centre, torch.zeros_like(aligned))
    spread = torch.sqrt((deviation ** 2).sum(0) / (count - 1).clamp(min=1))
    return centre, spread


def marigold_objective(aligned: torch.Tensor, reduction: str = "median", shift_invariant: bool = True,
                       reduced: torch.Tensor | None = None) -> torch.Tensor:
    """Marigold's alignment objective E for (N, P) aligned members (differentiable; see the module docstring).
    ``reduced``: their median (or mean) when the caller has it already — it is the costly part."""
    n = aligned.shape[0]
    centred = aligned - aligned.mean(dim=0, keepdim=True)  # pairwise differences are unchanged; the Gram is well conditioned
    gram = centred @ centred.T / aligned.shape[1]
    diag = torch.diagonal(gram)
    square = (diag[:, None] + diag[None, :] - 2 * gram).clamp(min=1e-20)
    i, j = torch.triu_indices(n, n, 1, device=aligned.device)
    pairwise = torch.sqrt(square[i, j]).mean() if n > 1 else aligned.new_zeros(())
    if reduced is None:
        reduced = aligned.median(dim=0).values if reduction == "median" else aligned.mean(dim=0)
    near = reduced.min().abs() if shift_invariant else reduced.new_zeros(())
    return pairwise + REGULARIZER * (near + (1.0 - reduced.max()).abs())


def _sample(members: torch.Tensor, count: int) -> torch.Tensor:
    """(N, H, W) → (N, P): pixels valid in every member, on a regular grid (deterministic), P ≤ count."""
    n, h, w = members.shape
    step = max(1, math.isqrt(h * w // count) + 1)
    while True:
        grid = members[:, ::step, ::step].reshape(n, -1)  # strided slicing: a copy of the grid, no index gather
        valid = torch.isfinite(grid.sum(dim=0))  # any NaN or ±inf member makes the sum non-finite (and is 5× cheaper)
        found = int(valid.sum())
        if found >= count // 2 or step == 1:  # else many pixels are invalid somewhere: a finer grid
            break
        step = max(1, step // 2)
    if found < grid.shape[1]:
        grid = grid[:, valid]
    if grid.shape[1] > count:
        grid = grid[:, torch.linspace(0, grid.shape[1] - 1, count, device=grid.device).long()]
    return grid


def _weighted_fit(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, shift: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of (N, P) ``x``: the (scale, shift) minimizing Σ w (s·x + t − y)²; y is (P,)."""
    sw, sx, sy = w.sum(1), (w * x).sum(1), (w * y).sum(1)
    sxx, sxy = (w * x * x).sum(1), (w * x * y).sum(1)
    if not shift:
        return sxy / sxx.clamp(min=1e-20), torch.zeros_like(sw)
    det = (sw * sxx - sx * sx).clamp(min=1e-20)
    return (sw * sxy - sx * sy) / det, (sxx * sy - sx * sxy) / det


def ensemble(members: torch.Tensor, invariance: Invariance, reduction: str = "median", irls_iterations: int = 5,
             refine_iterations: int = 10, sample_pixels: int = 1 << 12, uncertainty: bool = True) -> Ensemble:
    """Align and reduce (N, H, W) predictions of one image in the model's output space; member 0 is the plain pass.
    ``uncertainty=False`` skips the spread (``Ensemble.uncertainty`` is None), as Marigold's ``output_uncertainty``."""
    if members.dim() != 3 or members.shape[0] < 1:
        raise ValueError(f"members must be (N, H, W) with N >= 1, got {tuple(members.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"ensemble_reduction must be one of {REDUCTIONS}, got {reduction!r}")
    members = members.float()
    n = members.shape[0]
    shift_free = invariance is Invariance.AFFINE
    samples = _sample(members, sample_pixels)
    ones, zeros = members.new_ones(n), members.new_zeros(n)
    if n == 1 or samples.shape[1] < 2:
        values, spread = reduce_members(members, reduction)
        return Ensemble(values, spread if uncertainty else None, ones, zeros, math.nan)

    if invariance is Invariance.METRIC:
        s, t = ones.clone(), zeros.clone()
    else:
        low = samples.min(dim=1).values if shift_free else zeros
        span = (samples.max(dim=1).values - low).clamp(min=1e-12)
        s, t = 1.0 / span, -low / span
    for _ in range(irls_iterations):
        aligned = s[:, None] * samples + t[:, None]
        target = median_rows(aligned) if reduction == "median" else aligned.mean(dim=0)
        if invariance is not Invariance.METRIC:  # the gauge: fit to the reduced prediction stretched to [0, 1]
            low, span = _unit_range(target, shift_free)
            target = (target - low) / span
        floor = 1e-3 * (target.max() - target.min()).clamp(min=1e-12)
        weights = 1.0 / (aligned - target).abs().clamp(min=floor)
        new_s, new_t = _weighted_fit(samples, target, weights, shift_free)
        if invariance is Invariance.METRIC:
            new_s = new_s / torch.exp(torch.log(new_s.clamp(min=1e-12)).mean())  # metres: geometric-mean scale 1
        converged = bool(((new_s - s).abs().max() < 1e-6 * s.abs().max()) & ((new_t - t).abs().max() < 1e-6))
        s, t = new_s, new_t
        if converged:
            break

    objective = math.nan
    if invariance is not Invariance.METRIC:
        # a scalar optimizer over 2N numbers: its samples go to the host once (core.refine)
        new_s, new_t, objective = refine(samples, s, t, reduction, shift_free, refine_iterations)
        s, t = _gauge(samples, new_s, new_t, reduction, shift_free)  # E ignores the gauge; the parameters do not

    if reduction == "median":  # the alignment is applied chunk by chunk inside the reduction
        values, spread = median_and_mad(members, s, t, mad=uncertainty)
    elif uncertainty:
        values, spread = reduce_members(s[:, None, None] * members + t[:, None, None], reduction)
    else:
        values, spread = torch.nanmean(s[:, None, None] * members + t[:, None, None], dim=0), None
    if invariance is not Invariance.METRIC:  # back to member 0's units: the inverse of its own alignment
        values = (values - t[0]) / s[0]
        spread = spread / s[0].abs() if spread is not None else None
    return Ensemble(values, spread, s, t, objective)


def warm_up() -> None:
    """Align a tiny ensemble once, so that first-use costs (lazy imports and initializations in torch and numpy)
    do not land on the first ensembled frame."""
    ensemble(torch.linspace(1, 2, 64).reshape(1, 8, 8) * torch.tensor([1.0, 2.0]).view(2, 1, 1), Invariance.AFFINE)


def _unit_range(reduced: torch.Tensor, shift_free: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, span) of the map x → (x − low) / span that sends ``reduced`` to [0, 1] (scale-only: low = 0)."""
    low = reduced.min() if shift_free else reduced.new_zeros(())
    return low, (reduced.max() - low).clamp(min=1e-12)


def _gauge(samples: torch.Tensor, s: torch.Tensor, t: torch.Tensor, reduction: str, shift_free: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The same affine map for every member so that the reduced samples span [0, 1] (scale-only: max → 1)."""
    aligned = s[:, None] * samples + t[:, None]
    low, span = _unit_range(median_rows(aligned) if reduction == "median" else aligned.mean(dim=0), shift_free)
    return s / span, (t - low) / span
