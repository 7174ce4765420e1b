"""The refinement's cost (depth_node.core.refine): Marigold's objective of the normalized members from moments and
candidate pixels, held to the plain per-pixel composition, and the BFGS that minimizes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_node.core.ensemble import marigold_objective
from depth_node.core.refine import Objective, refine


def _samples(seed: int, n: int = 6, pixels: int = 3000, offset: float = 0.0) -> torch.Tensor:
    """(N, P) members of one smooth field with a step, each with its own scale, shift and noise."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, pixels)
    truth = 1.0 + np.sin(3 * x) + (x > 0.7) * 0.8
    return torch.from_numpy(np.stack([offset + rng.uniform(0.5, 2) * truth + rng.uniform(-1, 1) + rng.normal(0, 0.05, pixels)
                                      for _ in range(n)]))


def _plain(samples: torch.Tensor, x: np.ndarray, reduction: str, shift: bool) -> tuple[float, np.ndarray]:
    """marigold_objective of the members normalized as Marigold normalizes its result, by autograd, pixel by pixel."""
    n = samples.shape[0]
    params = torch.from_numpy(x.copy()).requires_grad_(True)
    aligned = params[:n, None] * samples + (params[n:, None] if shift else 0.0)
    reduced = aligned.median(dim=0).values if reduction == "median" else aligned.mean(dim=0)
    low = reduced.min() if shift else 0.0
    value = marigold_objective((aligned - low) / (reduced.max() - low), reduction, shift)
    value.backward()
    return float(value.detach()), params.grad.numpy()


def _point(n: int, shift: bool) -> np.ndarray:
    s, t = np.linspace(0.5, 1.5, n), np.linspace(-0.2, 0.3, n)
    return np.concatenate([s, t]) if shift else s


@pytest.mark.parametrize("offset", [0.0, 1000.0])  # members far from 0: the moments must stay well conditioned
@pytest.mark.parametrize("reduction,shift", [("median", True), ("mean", True), ("median", False), ("mean", False)])
def test_cost_and_gradient_equal_the_plain_objective(reduction: str, shift: bool, offset: float) -> None:
    samples = _samples(3, offset=offset)
    objective = Objective(samples, reduction, shift)
    objective.candidates = samples.numpy()               # the span over every pixel
    x = _point(6, shift)
    value, grad = objective(x)
    plain_value, plain_grad = _plain(samples, x, reduction, shift)
    assert value == pytest.approx(plain_value, rel=1e-9)
    np.testing.assert_allclose(grad, plain_grad, rtol=1e-6, atol=1e-9 * np.abs(plain_grad).max())


@pytest.mark.parametrize("reduction,shift", [("median", True), ("mean", True), ("median", False)])
def test_candidate_cost_is_exact_where_chosen_and_an_upper_bound_elsewhere(reduction: str, shift: bool) -> None:
    samples = _samples(4)
    objective = Objective(samples, reduction, shift)
    x = _point(6, shift)
    n = 6
    exact = objective.exact(x[:n], x[n:] if shift else np.zeros(n))
    assert objective.candidates.shape[1] < samples.shape[1]
    assert objective(x)[0] == pytest.approx(exact, rel=1e-12)
    plain = Objective(samples, reduction, shift)
    for step in np.random.default_rng(5).normal(0, 0.05, (20, x.size)):
        plain.candidates = samples.numpy()
        assert objective(x + step)[0] >= plain(x + step)[0] - 1e-12


@pytest.mark.parametrize("reduction,shift", [("median", True), ("mean", True), ("median", False)])
def test_refinement_lowers_the_exact_objective_and_keeps_the_better_end(reduction: str, shift: bool) -> None:
    samples = _samples(6, n=8).float()
    n = 8
    rng = np.random.default_rng(7)
    s = torch.from_numpy(rng.uniform(0.3, 0.6, n)).float()
    t = torch.from_numpy(rng.uniform(-0.5, 0.5, n) if shift else np.zeros(n)).float()
    start = Objective(samples.double(), reduction, shift).exact(s.double().numpy(), t.double().numpy())
    new_s, new_t, end = refine(samples, s, t, reduction, shift, iterations=10)
    assert end < 0.5 * start                             # far from the optimum at the start
    exact = Objective(samples.double(), reduction, shift).exact(new_s.double().numpy(), new_t.double().numpy())
    assert exact == pytest.approx(end, rel=1e-5)
    assert new_s.dtype == s.dtype and new_s.device == s.device
    same_s, same_t, same = refine(samples, new_s, new_t, reduction, shift, iterations=0)
    assert same_s is new_s and same == pytest.approx(end, rel=1e-5)
