"""A straightforward implementation of Marigold's test-time ensembling, the reference our ensemble is held to.

As described in ../shared/docs/field-notes.md ("Marigold test-time ensembling"): members initialized from their
min/max; objective = mean over pairs i<j of RMSE(aligned_i, aligned_j) + 0.02·(|min m| + |1 − max m|), m the
reduced (median or mean) prediction; scipy BFGS on the CPU with numerical gradients, on a copy downsampled to
≤ 1024 px; the Marigold repository's settings max_iter 50, tol 1e-6. numpy only: nothing shared with
depth_node.core.ensemble.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np


def lower_median(stack: np.ndarray) -> np.ndarray:
    """Median over axis 0 that, for an even count, takes the lower middle value, as torch.median (Marigold) does."""
    return np.sort(stack, axis=0)[(stack.shape[0] - 1) // 2]


def objective(aligned: np.ndarray, reduction: str = "median", shift_invariant: bool = True) -> float:
    """Marigold's cost for (N, …) aligned members, one pair at a time."""
    n = aligned.shape[0]
    pairs = [np.sqrt(np.mean((aligned[i] - aligned[j]) ** 2)) for i, j in combinations(range(n), 2)]
    cost = float(np.mean(pairs)) if pairs else 0.0
    reduced = lower_median(aligned) if reduction == "median" else np.mean(aligned, axis=0)
    near = abs(0.0 - reduced.min()) if shift_invariant else 0.0
    return cost + 0.02 * (near + abs(1.0 - reduced.max()))


def align(members: np.ndarray, param: np.ndarray, shift_invariant: bool) -> np.ndarray:
    n = members.shape[0]
    s = param[:n].reshape(n, *([1] * (members.ndim - 1)))
    t = param[n:].reshape(s.shape) if shift_invariant else 0.0
    return members * s + t


def reference_ensemble(members: np.ndarray, reduction: str = "median", shift_invariant: bool = True,
                       max_iter: int = 50, tol: float = 1e-6, max_res: int = 1024) -> np.ndarray:
    """(N, H, W) float members → the BFGS parameters (scales, then shifts when shift-invariant)."""
    from scipy.optimize import minimize

    work = members.astype(np.float32)
    h, w = work.shape[1:]
    if max(h, w) > max_res:  # nearest-neighbour subsample, as Marigold's resize_to_max_edge(..., "nearest-exact")
        step = max(h, w) / max_res
        rows = (np.arange(int(h / step)) * step).astype(int)
        cols = (np.arange(int(w / step)) * step).astype(int)
        work = work[:, rows][:, :, cols]
    flat = work.reshape(work.shape[0], -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    if shift_invariant:
        s = 1.0 / np.maximum(high - low, 1e-6)
        param = np.concatenate([s, -s * low])
    else:
        param = 1.0 / np.maximum(high, 1e-6)
    result = minimize(lambda p: objective(align(work, p, shift_invariant), reduction, shift_invariant), param,
                      method="BFGS", tol=tol, options={"maxiter": max_iter, "disp": False})
    return result.x
