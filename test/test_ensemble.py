"""Ensembling in the model's output space (depth_node.core.ensemble), held to a plain Marigold reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _marigold_reference import align, lower_median, objective, reference_ensemble
from depth_node.core.ensemble import ensemble, marigold_objective, reduce_members
from depth_node.core.spaces import Invariance


def _scene(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth field with a step edge: what a depth map looks like to the alignment."""
    yy, xx = np.mgrid[0:h, 0:w] / h
    return 1.0 + np.sin(3 * xx) + 0.5 * yy + (xx > 0.7) * 0.8


def _members(rng: np.random.Generator, n: int, noise: float, shift: bool = True) -> np.ndarray:
    truth = _scene()
    return np.stack([rng.uniform(0.5, 2.0) * truth + (rng.uniform(-1, 1) if shift else 0.0) + rng.normal(0, noise, truth.shape)
                     for _ in range(n)]).astype(np.float32)


def _normalized(aligned: np.ndarray, reduction: str, shift: bool) -> np.ndarray:
    """Marigold's final normalization of its result, applied to every member."""
    reduced = lower_median(aligned) if reduction == "median" else aligned.mean(0)
    low = reduced.min() if shift else 0.0
    return (aligned - low) / (reduced.max() - low)


def _ours_and_reference(members: np.ndarray, reduction: str, shift: bool) -> tuple[float, float]:
    """Marigold's objective of each method's normalized members, both computed by the reference code."""
    invariance = Invariance.AFFINE if shift else Invariance.SCALE
    ours = ensemble(torch.from_numpy(members), invariance, reduction)
    ours_param = np.concatenate([ours.scale.numpy(), ours.shift.numpy()]) if shift else ours.scale.numpy()
    ref_param = reference_ensemble(members, reduction, shift)
    score = [objective(_normalized(align(members.astype(np.float64), p, shift), reduction, shift), reduction, shift)
             for p in (ours_param, ref_param)]
    return score[0], score[1]


@pytest.mark.parametrize("noise", [0.01, 0.04, 0.16])
@pytest.mark.parametrize("reduction,shift", [("median", True), ("mean", True), ("median", False)])
def test_objective_reaches_the_scipy_bfgs_reference_on_random_members(noise: float, reduction: str, shift: bool) -> None:
    members = _members(np.random.default_rng(int(noise * 1000) + 7 * shift), 5, noise, shift)
    ours, reference = _ours_and_reference(members, reduction, shift)
    assert ours <= 1.01 * reference, (ours, reference)


def test_exact_affine_copies_align_back_to_member_zero() -> None:
    truth = _scene()
    gains = [(1.0, 0.0), (2.5, -0.7), (0.4, 3.0), (1.7, 1.1)]
    members = torch.from_numpy(np.stack([a * truth + b for a, b in gains]).astype(np.float32))
    result = ensemble(members, Invariance.AFFINE)
    np.testing.assert_allclose(result.values.numpy(), truth, rtol=1e-4, atol=1e-4)  # member 0's units
    assert float(result.uncertainty.max()) < 1e-4
    ratio = (result.scale * torch.tensor([a for a, _ in gains])).numpy()
    np.testing.assert_allclose(ratio / ratio[0], 1.0, rtol=1e-4)                    # sᵢ·aᵢ is the same for all
    assert result.objective < 1e-4


def test_metric_members_keep_metres_and_agree_in_scale() -> None:
    truth = _scene() * 2.0
    members = torch.from_numpy(np.stack([truth * g for g in (1.0, 1.1, 0.9, 1.0)]).astype(np.float32))
    result = ensemble(members, Invariance.METRIC)
    consensus = np.exp(np.mean(np.log([1.0, 1.1, 0.9, 1.0])))                     # geometric-mean scale stays 1
    np.testing.assert_allclose(result.values.numpy(), truth * consensus, rtol=1e-4)
    assert float(result.shift.abs().max()) == 0.0 and np.isnan(result.objective)


def test_outlier_member_region_does_not_move_the_median_ensemble() -> None:
    rng = np.random.default_rng(3)
    members = _members(rng, 5, 0.001)
    members[2, :, :20] = 50.0                                                        # one member wrong on a third of the image
    result = ensemble(torch.from_numpy(members), Invariance.AFFINE, "median")
    clean = ensemble(torch.from_numpy(np.delete(members, 2, axis=0)), Invariance.AFFINE, "median")
    np.testing.assert_allclose(result.values.numpy(), clean.values.numpy(), rtol=0.01, atol=0.01)
    assert float(result.uncertainty[:, :20].mean()) < 0.01 * float(result.values.abs().mean())


def test_invalid_pixels_of_single_members_are_ignored() -> None:
    members = torch.from_numpy(_members(np.random.default_rng(5), 4, 0.0))
    members[1, :10, :10] = float("nan")
    members[:, 40:, 60:] = float("nan")                                              # invalid in all: stays invalid
    result = ensemble(members, Invariance.AFFINE)
    assert bool(torch.isfinite(result.values[:10, :10]).all())
    assert bool(torch.isnan(result.values[40:, 60:]).all())
    np.testing.assert_allclose(result.values[:40].numpy(), members[0, :40].numpy(), rtol=1e-4, atol=1e-4)


def test_reductions_and_single_member() -> None:
    stack = torch.tensor([[1.0], [2.0], [4.0], [float("nan")]])
    centre, spread = reduce_members(stack, "median")
    assert float(centre[0]) == 2.0 and float(spread[0]) == 1.0                       # MAD of (1, 2, 4)
    centre, spread = reduce_members(stack, "mean")
    assert float(centre[0]) == pytest.approx(7 / 3) and float(spread[0]) == pytest.approx(np.std([1, 2, 4], ddof=1))
    one = ensemble(torch.ones(1, 4, 4) * 3, Invariance.AFFINE)
    assert float(one.values.max()) == 3.0 and float(one.uncertainty.max()) == 0.0
    with pytest.raises(ValueError, match="ensemble_reduction"):
        ensemble(torch.ones(2, 4, 4), Invariance.AFFINE, "mode")


def test_objective_matches_the_reference_formula() -> None:
    members = _members(np.random.default_rng(9), 6, 0.05).reshape(6, -1)
    for reduction in ("median", "mean"):
        ours = float(marigold_objective(torch.from_numpy(members).double(), reduction))
        assert ours == pytest.approx(objective(members.astype(np.float64), reduction), rel=1e-9)


def test_median_reduction_is_the_true_nan_aware_median() -> None:
    rng = np.random.default_rng(11)
    stack = rng.normal(size=(6, 50)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.3] = np.nan
    stack[:, 0] = np.nan                                                              # no member valid
    centre, spread = reduce_members(torch.from_numpy(stack), "median")
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(stack, axis=0)
        expected_mad = np.nanmedian(np.abs(stack - expected), axis=0)
    np.testing.assert_allclose(centre.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(spread.numpy(), expected_mad, rtol=1e-6)
    two = reduce_members(torch.tensor([[1.0], [3.0]]), "median")
    assert float(two[0][0]) == 2.0 and float(two[1][0]) == 1.0                       # two members: a real spread


@pytest.mark.parametrize("reduction", ["median", "mean"])
def test_without_uncertainty_the_values_are_the_same(reduction: str) -> None:
    members = torch.from_numpy(_members(np.random.default_rng(13), 5, 0.05))
    members[2, :4, :4] = float("nan")
    full = ensemble(members, Invariance.AFFINE, reduction)
    lean = ensemble(members, Invariance.AFFINE, reduction, uncertainty=False)
    assert lean.uncertainty is None and full.uncertainty is not None
    torch.testing.assert_close(lean.values, full.values, rtol=0, atol=0, equal_nan=True)
    assert ensemble(members[:1], Invariance.AFFINE, reduction, uncertainty=False).uncertainty is None
