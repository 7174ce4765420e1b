"""Marigold's alignment objective from second moments, and the BFGS that refines an ensemble's alignment with it.

Marigold's objective of N members aligned by per-member scales sᵢ and shifts tᵢ (aᵢ = sᵢ·pᵢ + tᵢ), after its final
normalization (the reduced prediction m stretched to [0, 1]; scale-only: max m → 1), is

    E(s, t) = mean over pairs i<j of RMSE(aᵢ, aⱼ) / span(m),      span(m) = max m − min m   (scale-only: max m),

the range term 0.02·(|min m| + |1 − max m|) being 0 after the normalization. Normalized, because the raw objective
is minimized by shrinking every member towards one constant (all pairwise RMSEs → 0 at a range cost of only 0.02)
whenever members disagree by more than ~2 % of their range; normalized, E is the members' disagreement relative to
their range — what Marigold's output, normalized the same way, shows. Both parts are cheap without touching every
pixel per evaluation:

- **Pairwise RMSEs from moments.** With μᵢ the mean of member i and C the members' covariance over the pixels,
  mean((aᵢ − aⱼ)²) = sᵢ²Cᵢᵢ + sⱼ²Cⱼⱼ − 2sᵢsⱼCᵢⱼ + (bᵢ − bⱼ)², bᵢ = sᵢμᵢ + tᵢ: an N×N computation, exact for
  every pixel the moments were taken over, with an exact gradient.
- **The span from candidate pixels.** Only the pixels where m is extreme matter. Each round of iterations
  evaluates m on the ``CANDIDATES`` lowest and highest pixels of the current m; a span over fewer pixels is never
  larger, so that cost is an upper bound of the true one, equal to it where the round starts. Minimizing it cannot
  raise the true objective (majorize–minimize), and every round starts from fresh candidates.

The optimizer is BFGS with a backtracking (Armijo) line search, in float64 numpy: 2N unknowns, an evaluation costs
tens of microseconds, so there is nothing for torch to accelerate (the pixels are ranked in the members' own
dtype). E is invariant to one global affine map of all members (the gauge): its gradient has no component along
that map, and ``core.ensemble`` re-gauges the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from depth_node.core.median import median_rows

CANDIDATES = 64         # lowest and highest pixels of the reduced prediction that each round evaluates it on
ROUND = 5               # BFGS iterations between refreshes of the candidates
MAX_ITERATIONS = 50     # the refinement goes on past its minimum number of iterations while a round still pays …
MIN_GAIN = 0.005        # … i.e. lowers the objective by at least 0.5 %
AGREE = 1e-6            # members that agree to a millionth of their range (float32) are aligned: nothing to refine


@dataclass(frozen=True)
class Moments:
    """First and second moments of (N, P) member samples: what the pairwise RMSEs need, for any alignment."""

    mean: np.ndarray        # (N,)  μᵢ
    covariance: np.ndarray  # (N, N) Cᵢⱼ = mean over pixels of (pᵢ − μᵢ)(pⱼ − μⱼ)

    @classmethod
    def of(cls, samples: np.ndarray) -> "Moments":
        centred = samples - samples.mean(axis=1, keepdims=True)  # centred first: the Gram stays well conditioned
        return cls(samples.mean(axis=1), centred @ centred.T / samples.shape[1])


def pairwise_rmse(moments: Moments, s: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean over pairs i<j of RMSE(aᵢ, aⱼ) and its gradient with respect to s and t."""
    n = s.size
    c, mu = moments.covariance, moments.mean
    q = s[:, None] * c * s[None, :]
    b = s * mu + t
    gap = b[:, None] - b[None, :]
    square = np.diag(q)[:, None] + np.diag(q)[None, :] - 2 * q + gap * gap
    rmse = np.sqrt(np.maximum(square, 1e-20))
    pairs = n * (n - 1) / 2
    weight = 1.0 / (2 * rmse * pairs)  # d mean / d square of pair (i, j)
    np.fill_diagonal(weight, 0.0)
    value = float(np.triu(rmse, 1).sum() / pairs)
    row = weight.sum(axis=1)
    # d square_ij / d s_i = 2 s_i C_ii − 2 s_j C_ij + 2 (b_i − b_j) μ_i;  d square_ij / d t_i = 2 (b_i − b_j)
    d_b = 2 * (b * row - weight @ b)
    d_s = 2 * s * np.diag(c) * row - 2 * (weight * c) @ s + mu * d_b
    return value, d_s, d_b


class Objective:
    """E(s, t) of the normalized members (value and gradient) with the span taken over candidate pixels."""

    def __init__(self, samples: torch.Tensor, reduction: str, shift_free: bool):
        self.samples = samples.to("cpu")  # (N, P), one copy from the members' device; the span's pixels are ranked here
        self.moments = Moments.of(self.samples.double().numpy())
        self.reduction, self.shift_free = reduction, shift_free
        self.candidates = self.samples.double().numpy()

    def exact(self, s: np.ndarray, t: np.ndarray) -> float:
        """E over every sample pixel (the span's extremes ranked among all of them); its lowest and highest pixels
        become the candidates of the next round."""
        like = self.samples.dtype  # float32 members: the ranking in float32, twice as fast as in float64
        aligned = torch.from_numpy(s).to(like)[:, None] * self.samples + torch.from_numpy(t).to(like)[:, None]
        reduced = median_rows(aligned, lower=True) if self.reduction == "median" else aligned.mean(dim=0)
        k = min(CANDIDATES, reduced.numel())
        order = torch.cat([torch.topk(reduced, k, largest=False).indices, torch.topk(reduced, k).indices])
        self.candidates = self.samples[:, order].double().numpy()
        value = self(np.concatenate([s, t]) if self.shift_free else s)[0]  # the span in float64, from the candidates
        return value

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        n = self.samples.shape[0]
        s, t = x[:n], (x[n:] if self.shift_free else np.zeros(n))
        values = self.candidates                                     # (N, 2K) numpy: a few hundred numbers
        aligned = s[:, None] * values + t[:, None]
        columns = np.arange(values.shape[1])
        if self.reduction == "median":
            member = np.argsort(aligned, axis=0, kind="stable")[(n - 1) // 2]  # whose value each lower median is
            reduced = aligned[member, columns]
        else:
            member, reduced = None, aligned.mean(axis=0)
        high, low = int(reduced.argmax()), int(reduced.argmin())
        span = float(reduced[high]) - (float(reduced[low]) if self.shift_free else 0.0)
        if not span > 1e-12:
            return math.inf, np.zeros_like(x)
        pairwise, d_s, d_t = pairwise_rmse(self.moments, s, t)
        # d span: the reduced value at the highest (minus the lowest) candidate — one member's, or the mean of all
        span_s, span_t = np.zeros(n), np.zeros(n)
        for pixel, sign in ((high, 1.0), (low, -1.0)) if self.shift_free else ((high, 1.0),):
            if member is not None:
                k = member[pixel]
                span_s[k] += sign * values[k, pixel]
                span_t[k] += sign
            else:
                span_s += sign * values[:, pixel] / n
                span_t += sign / n
        value = pairwise / span
        grad_s = d_s / span - value * span_s / span
        grad_t = d_t / span - value * span_t / span
        return value, (np.concatenate([grad_s, grad_t]) if self.shift_free else grad_s)


def refine(samples: torch.Tensor, s: torch.Tensor, t: torch.Tensor, reduction: str, shift_free: bool,
           iterations: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """BFGS on E from the alignment (s, t) of (N, P) ``samples``: at least ``iterations`` iterations, then rounds of
    ``ROUND`` while a round lowers E by ≥ ``MIN_GAIN`` (≤ ``MAX_ITERATIONS`` in all). Returns the better of the start
    and the result, with E over all samples; s and t keep the start's gauge only up to E's invariance."""
    objective = Objective(samples.detach(), reduction, shift_free)
    s0, t0 = s.detach().cpu().double().numpy(), t.detach().cpu().double().numpy()
    start = objective.exact(s0, t0)
    if iterations <= 0 or not math.isfinite(start) or start < AGREE:
        return s, t, start
    n = s0.size
    x = np.concatenate([s0, t0]) if shift_free else s0.copy()
    inverse_hessian: np.ndarray | None = None
    done, previous, end = 0, start, start
    limit = max(iterations, MAX_ITERATIONS)
    while done < limit:  # every round starts right after an exact evaluation at x: fresh candidates
        value, grad = objective(x)
        for _ in range(min(ROUND, limit - done)):
            x, value, grad, inverse_hessian = _bfgs_step(objective, x, value, grad, inverse_hessian)
            done += 1
            if inverse_hessian is None:  # no descent left along the gradient
                done = limit
                break
        end = objective.exact(x[:n], x[n:] if shift_free else np.zeros(n))
        if not math.isfinite(end) or end < AGREE or (done >= iterations and end > (1 - MIN_GAIN) * previous):
            break
        previous = end
    s1, t1 = x[:n], (x[n:] if shift_free else np.zeros(n))
    if not (math.isfinite(end) and end < start):
        return s, t, start
    like = s.detach()
    return (torch.from_numpy(s1).to(like.device, like.dtype), torch.from_numpy(t1).to(like.device, like.dtype), end)


def _bfgs_step(objective: Objective, x: np.ndarray, value: float, grad: np.ndarray,
               inverse_hessian: np.ndarray | None) -> tuple[np.ndarray, float, np.ndarray, np.ndarray | None]:
    """One BFGS iteration with an Armijo backtracking line search; ``None`` as the new inverse Hessian when no
    step along the search direction (or, failing that, the gradient) lowers the cost."""
    h = inverse_hessian if inverse_hessian is not None else np.eye(x.size) * (1e-2 / max(np.linalg.norm(grad), 1e-12))
    for direction in (-h @ grad, -grad * (1e-2 / max(np.linalg.norm(grad), 1e-12))):
        slope = float(grad @ direction)
        if not slope < 0:
            continue
        step = 1.0
        for _ in range(20):
            candidate = x + step * direction
            new_value, new_grad = objective(candidate)
            if new_value <= value + 1e-4 * step * slope:
                moved, change = candidate - x, new_grad - grad
                curvature = float(moved @ change)
                if curvature > 1e-12 * float(moved @ moved):
                    if inverse_hessian is None:  # first step: scale the identity to the observed curvature
                        h = np.eye(x.size) * (curvature / float(change @ change))
                    rho = 1.0 / curvature
                    left = np.eye(x.size) - rho * np.outer(moved, change)
                    h = left @ h @ left.T + rho * np.outer(moved, moved)
                return candidate, new_value, new_grad, h
            step *= 0.5
    return x, value, grad, None
