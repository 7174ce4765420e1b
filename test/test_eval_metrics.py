"""Evaluation metrics: exact on constructed inputs, hand-computed for known perturbations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depth_node.core.camera import PinholeCamera
from depth_node.eval.groundtruth import resample_to
from depth_node.eval.metrics import (
    METRICS, MODES, EvalRange, ause, evaluation_mask, scale_flicker, score_frame, sparsification_curves,
)

RANGE = EvalRange(0.1, 80.0)


def gt_ramp(h: int = 48, w: int = 64) -> np.ndarray:
    """A GT spanning 1..5 m (a ramp), so alignment fits are well posed."""
    return np.linspace(1.0, 5.0, h * w, dtype=np.float32).reshape(h, w)


def test_ground_truth_as_prediction_scores_perfect_in_every_mode() -> None:
    gt = gt_ramp()
    score = score_frame(gt.copy(), gt, RANGE)
    for mode in MODES:
        m = score.metrics[mode]
        assert m["abs_rel"] == pytest.approx(0, abs=1e-7) and m["rmse"] == pytest.approx(0, abs=1e-6), mode
        assert m["sq_rel"] == pytest.approx(0, abs=1e-7) and m["rmse_log"] == pytest.approx(0, abs=1e-6)
        assert m["silog"] == pytest.approx(0, abs=1e-3)
        assert m["delta1"] == m["delta2"] == m["delta3"] == 1.0
        assert score.fits[mode] == pytest.approx((1.0, 0.0), abs=1e-6)
    assert score.coverage == 1.0


def test_scale_by_1_1_gives_hand_computed_values() -> None:
    gt = gt_ramp().astype(np.float64)
    score = score_frame((gt * 1.1).astype(np.float32), gt.astype(np.float32), RANGE)
    m = score.metrics["metric"]
    assert m["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert m["sq_rel"] == pytest.approx(0.01 * gt.mean(), rel=1e-5)            # (0.1 g)² / g = 0.01 g
    assert m["rmse"] == pytest.approx(0.1 * math.sqrt((gt**2).mean()), rel=1e-5)
    assert m["rmse_log"] == pytest.approx(math.log(1.1), rel=1e-5)
    assert m["silog"] == pytest.approx(0, abs=1e-2)                              # a pure scale error is scale-invariant
    assert m["delta1"] == 1.0                                                    # 1.1 < 1.25
    for mode in ("scale", "affine", "affine_disparity"):                         # every alignment undoes a scale
        assert score.metrics[mode]["abs_rel"] == pytest.approx(0, abs=1e-6), mode
    assert score.fits["scale"][0] == pytest.approx(1 / 1.1, rel=1e-6)
    worse = score_frame((gt * 1.3).astype(np.float32), gt.astype(np.float32), RANGE).metrics["metric"]
    assert (worse["delta1"], worse["delta2"], worse["delta3"]) == (0.0, 1.0, 1.0)  # 1.25 < 1.3 < 1.5625


def test_additive_noise_gives_hand_computed_values() -> None:
    gt = gt_ramp().astype(np.float64)
    noise = np.where(np.indices(gt.shape).sum(axis=0) % 2 == 0, 0.1, -0.1)  # ±10 cm checkerboard
    m = score_frame((gt + noise).astype(np.float32), gt.astype(np.float32), RANGE).metrics["metric"]
    assert m["rmse"] == pytest.approx(0.1, rel=1e-5)
    assert m["abs_rel"] == pytest.approx(float(np.mean(0.1 / gt)), rel=1e-5)
    assert m["sq_rel"] == pytest.approx(float(np.mean(0.01 / gt)), rel=1e-5)


def test_shifted_disparity_is_undone_by_disparity_alignment_only() -> None:
    gt = np.array([[1.0, 4.0] * 50], np.float32)                     # half the pixels at 1 m, half at 4 m
    pred = (1.0 / (1.0 / gt + 0.1)).astype(np.float32)                # disparity shifted by 0.1 / m
    score = score_frame(pred, gt, RANGE)
    # as published: |1/(1/g + 0.1) − g| / g = 0.1 g / (1 + 0.1 g): 1/11 at 1 m, 0.4/1.4 at 4 m
    assert score.metrics["metric"]["abs_rel"] == pytest.approx((1 / 11 + 0.4 / 1.4) / 2, rel=1e-5)
    assert score.metrics["affine_disparity"]["abs_rel"] == pytest.approx(0, abs=1e-6)
    assert score.fits["affine_disparity"] == pytest.approx((1.0, -0.1), abs=1e-6)
    assert score.metrics["affine"]["abs_rel"] == pytest.approx(0, abs=1e-6)  # two depths: an affine map fits too
    three = np.array([[1.0, 2.0, 4.0] * 30], np.float32)                 # three depths: only disparity alignment is exact
    score3 = score_frame((1.0 / (1.0 / three + 0.1)).astype(np.float32), three, RANGE)
    assert score3.metrics["affine_disparity"]["abs_rel"] == pytest.approx(0, abs=1e-6)
    assert score3.metrics["affine"]["abs_rel"] > 1e-3


def test_invalid_predictions_count_against_coverage_not_the_metrics() -> None:
    gt = gt_ramp()
    pred = gt.copy()
    pred[:12] = np.nan                                                   # a quarter of the rows: no prediction
    score = score_frame(pred, gt, RANGE)
    assert score.coverage == pytest.approx(0.75)
    assert score.metrics["metric"]["abs_rel"] == pytest.approx(0, abs=1e-7)
    nothing = score_frame(np.full_like(gt, np.nan), gt, RANGE)
    assert nothing.coverage == 0.0 and all(math.isnan(nothing.metrics[m]["abs_rel"]) for m in MODES)


def test_evaluation_range_and_crop_select_the_scored_pixels() -> None:
    gt = gt_ramp()
    gt[0, 0] = np.nan
    gt[0, 1] = 0.0
    mask = evaluation_mask(gt, EvalRange(2.0, 4.0))
    assert not mask[0, :2].any() and ((gt[mask] >= 2.0) & (gt[mask] <= 4.0)).all()
    crop = evaluation_mask(gt_ramp(), EvalRange(0.1, 80.0, (0.5, 1.0, 0.0, 0.25)))
    assert crop.sum() == 24 * 16 and crop[24:, :16].all()
    with pytest.raises(ValueError, match="crop"):
        EvalRange(crop=(0.5, 0.4, 0, 1))
    with pytest.raises(ValueError, match="min_depth"):
        EvalRange(5.0, 1.0)


def test_prediction_is_clipped_to_the_evaluation_range() -> None:
    gt = np.full((4, 4), 2.0, np.float32)
    m = score_frame(np.full((4, 4), 100.0, np.float32), gt, EvalRange(0.1, 10.0)).metrics["metric"]
    assert m["abs_rel"] == pytest.approx(4.0)                            # 100 m clipped to 10 m: |10 − 2| / 2


def test_sparsification_of_a_perfect_confidence_equals_the_oracle() -> None:
    rng = np.random.default_rng(0)
    errors = rng.uniform(0, 1, 10_000)
    model, oracle = sparsification_curves(errors, -errors)              # confidence ranks errors exactly
    np.testing.assert_allclose(model, oracle)
    assert ause(model, oracle) == pytest.approx(0.0)
    assert oracle[0] == pytest.approx(errors.mean()) and np.all(np.diff(oracle) <= 1e-12)
    random_model, _ = sparsification_curves(errors, rng.uniform(0, 1, errors.size))
    assert ause(random_model, oracle) > 0.1                              # an uninformative confidence: a large area
    # hand-computed: errors 1..4, confidence ranks them backwards → removing the best pixels first
    model, oracle = sparsification_curves(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1]), np.array([0.0, 0.5]))
    assert list(model) == [2.5, 1.5] and list(oracle) == [2.5, 1.5]
    model, oracle = sparsification_curves(np.array([1.0, 2, 3, 4]), np.array([1.0, 2, 3, 4]), np.array([0.0, 0.5]))
    assert list(model) == [2.5, 3.5] and list(oracle) == [2.5, 1.5]
    assert ause(model, oracle, np.array([0.0, 0.5])) == pytest.approx(0.5 * (0 + 2) / 2)


def test_sparsification_comes_with_a_confidence_map() -> None:
    gt = gt_ramp()
    pred = gt * np.float32(1.2)
    pred[:, :32] = gt[:, :32]                                            # left half exact, right half 20 % off
    confidence = np.zeros_like(gt)
    confidence[:, :32] = 1.0
    score = score_frame(pred, gt, RANGE, confidence=confidence)
    model, oracle = score.sparsification
    assert model[0] == pytest.approx(score.metrics["metric"]["abs_rel"], rel=1e-5)
    assert ause(model, oracle) == pytest.approx(0.0, abs=1e-6)           # this confidence is the oracle


def test_scale_flicker_of_a_sequence() -> None:
    assert scale_flicker([2.0, 2.0, 2.0]) == {"scale_drift": 0.0, "scale_spread": 0.0}
    flicker = scale_flicker([1.0, 1.1, 1.0, 1.1])
    assert flicker["scale_drift"] == pytest.approx(math.log(1.1))
    assert flicker["scale_spread"] == pytest.approx(math.log(1.1) / 2)
    assert math.isnan(scale_flicker([1.0])["scale_drift"])


def test_metric_names_are_stable() -> None:  # metrics.json and frames.csv columns are an interface
    assert METRICS == ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "delta1", "delta2", "delta3")
    assert MODES == ("metric", "scale", "affine", "affine_disparity")


def test_ground_truth_on_another_grid_is_resampled_through_its_intrinsics() -> None:
    image = PinholeCamera(64, 48, 60.0, 60.0, 31.5, 23.5)
    fine = image.resized(128, 96)                                        # the GT at twice the resolution
    blocks = np.arange(48 * 64, dtype=np.float32).reshape(48, 64) + 1.0  # a distinct value per image pixel
    gt_fine = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)         # each image pixel = a 2×2 block
    np.testing.assert_array_equal(resample_to(gt_fine, fine, image), blocks)
    assert resample_to(blocks, image, image) is blocks                   # same grid: untouched
    # a GT camera that sees only the central part: outside it nothing is scored (NaN), inside it maps exactly
    narrow = PinholeCamera(32, 24, 60.0, 60.0, 15.5, 11.5)
    centre = blocks[12:36, 16:48]
    on_image = resample_to(centre.copy(), narrow, image)
    np.testing.assert_array_equal(on_image[12:36, 16:48], centre)
    assert np.isnan(on_image[:12]).all() and np.isnan(on_image[:, :16]).all()
