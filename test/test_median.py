"""The selection-network median (depth_node.core.median) against numpy's sort-based median."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_node.core import median as median_module
from depth_node.core.median import median_and_mad, median_rows


@pytest.mark.parametrize("n", list(range(1, 18)) + [25, 32])
def test_network_median_equals_numpy_for_every_member_count(n: int) -> None:
    rng = np.random.default_rng(n)
    stack = rng.normal(size=(n, 3000)).astype(np.float32)
    stack[:, :500] = np.round(stack[:, :500])                   # ties
    np.testing.assert_array_equal(median_rows(torch.from_numpy(stack)).numpy(), np.median(stack, axis=0))


@pytest.mark.parametrize("n", list(range(1, 18)) + [25, 32])
def test_median_and_mad_equal_numpy_for_every_member_count(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full-resolution path: a sorting network, then the MAD as a rank of two sorted deviation lists."""
    monkeypatch.setattr(median_module, "CHUNK", 700)            # several chunks, the last one shorter
    rng = np.random.default_rng(100 + n)
    stack = rng.normal(size=(n, 3000)).astype(np.float32)
    stack[:, :500] = np.round(stack[:, :500])                   # ties
    centre, spread = median_and_mad(torch.from_numpy(stack))
    expected = np.median(stack, axis=0)
    np.testing.assert_array_equal(centre.numpy(), expected)
    np.testing.assert_allclose(spread.numpy(), np.median(np.abs(stack - expected), axis=0), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n", [1, 2, 7, 10])
def test_lower_median_is_torch_median(n: int) -> None:
    stack = torch.from_numpy(np.random.default_rng(n).normal(size=(n, 500)).astype(np.float32))
    torch.testing.assert_close(median_rows(stack, lower=True), stack.median(dim=0).values, rtol=0, atol=0)


@pytest.mark.parametrize("n", [2, 5, 10])
def test_nan_members_are_ignored_and_all_nan_columns_stay_nan(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(median_module, "CHUNK", 64)             # several chunks, NaN columns in each
    rng = np.random.default_rng(3 + n)
    stack = rng.normal(size=(n, 1000)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.2] = np.nan
    stack[:, 7] = np.nan
    stack[0, 9] = np.inf                                        # infinities are values, not holes
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(stack, axis=0)
        expected_mad = np.nanmedian(np.abs(stack - expected), axis=0)
    centre, spread = median_and_mad(torch.from_numpy(stack))
    np.testing.assert_array_equal(centre.numpy(), expected)
    np.testing.assert_allclose(spread.numpy(), expected_mad, rtol=1e-6)
    assert np.isnan(centre.numpy()[7]) and np.isnan(spread.numpy()[7])


def test_median_and_mad_apply_the_per_member_affine_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(median_module, "CHUNK", 100)
    rng = np.random.default_rng(5)
    stack = rng.uniform(1, 5, size=(7, 12, 40)).astype(np.float32)
    stack[2, 3, :5] = np.nan
    scale, shift = rng.uniform(0.5, 2, 7).astype(np.float32), rng.uniform(-1, 1, 7).astype(np.float32)
    centre, spread = median_and_mad(torch.from_numpy(stack), torch.from_numpy(scale), torch.from_numpy(shift))
    aligned = stack * scale[:, None, None] + shift[:, None, None]
    expected = np.nanmedian(aligned, axis=0)
    assert centre.shape == (12, 40)
    np.testing.assert_allclose(centre.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(spread.numpy(), np.nanmedian(np.abs(aligned - expected), axis=0), rtol=1e-5, atol=1e-6)


def test_gradient_reaches_the_median_member_only() -> None:
    stack = torch.tensor([[3.0, 1.0], [1.0, 5.0], [2.0, 4.0]], requires_grad=True)
    median_rows(stack).sum().backward()
    np.testing.assert_array_equal(stack.grad.numpy(), [[0, 0], [0, 0], [1, 1]])
