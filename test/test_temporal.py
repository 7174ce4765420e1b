"""Temporal smoothing (depth_node.core.temporal): steadier scale on a moving camera, same per-frame accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from depth_node.core.pipeline import DepthPipeline, PipelineConfig
from depth_node.core.spaces import Invariance
from depth_node.core.temporal import TemporalFilter
from depth_node.estimators import load_estimator

REPO = Path(__file__).resolve().parent.parent


def test_filter_removes_injected_scale_flicker_and_resets_on_a_cut() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:60, 0:80] / 60.0
    scene = 2.0 + np.sin(3 * xx) + yy
    flicker = np.exp(rng.normal(0, 0.05, 30))
    smoother = TemporalFilter(Invariance.METRIC, alpha=0.3)
    assert smoother.update(scene.astype(np.float32)) is not None and smoother.state.reset  # the first frame starts it
    out = [smoother.update((scene * f).astype(np.float32)) for f in flicker]
    scales = np.array([np.median(o / scene) for o in out])
    assert np.mean(np.abs(np.diff(np.log(scales)))) < 0.4 * np.mean(np.abs(np.diff(np.log(flicker))))
    assert abs(np.mean(np.log(scales[10:])) - np.mean(np.log(flicker[10:]))) < 0.05       # the long-run scale is the model's
    other = np.where(xx > 0.5, 9.0, 1.0).astype(np.float32)                               # a scene cut: nothing corresponds
    np.testing.assert_array_equal(smoother.update(other), other)
    assert smoother.state.reset
    np.testing.assert_array_equal(smoother.update(other[:30]), other[:30])                # new grid size: restart
    with pytest.raises(ValueError, match="temporal_alpha"):
        TemporalFilter(Invariance.METRIC, alpha=0.0)


def test_affine_filter_keeps_a_shifted_stream_on_one_offset() -> None:
    yy, xx = np.mgrid[0:40, 0:50] / 40.0
    disparity = 0.5 + 0.3 * xx + 0.2 * yy
    smoother = TemporalFilter(Invariance.AFFINE, alpha=0.2)
    out = [smoother.update((disparity * (1 + 0.05 * (-1) ** k) + 0.02 * (-1) ** k).astype(np.float32)) for k in range(20)]
    jumps_in = 0.02 + 0.05 * float(np.mean(disparity))
    jumps_out = np.mean([np.mean(np.abs(out[k] - out[k - 1])) for k in range(10, 20)])
    assert jumps_out < 0.3 * jumps_in


def test_a_large_change_is_followed_continuously_not_in_one_jump() -> None:
    """A step of the model's scale by e^0.6 (twice the cap), pixels still corresponding: the output moves towards it
    a capped step at a time — never the whole held-back change at once, as a restart would publish it."""
    yy, xx = np.mgrid[0:40, 0:50] / 40.0
    scene = (2.0 + np.sin(3 * xx) + yy).astype(np.float32)
    smoother = TemporalFilter(Invariance.METRIC, alpha=0.25, max_correction=0.3)
    for _ in range(5):
        smoother.update(scene)
    levels = [float(np.median(smoother.update(scene * np.float32(np.exp(0.6))) / scene)) for _ in range(40)]
    steps = np.diff(np.log([1.0] + levels))
    assert not smoother.state.reset
    uncapped = np.log(1 + 0.75 * (np.exp(-0.6) - 1))                                     # what α alone would hold back
    assert 0.6 + uncapped < steps[0] < 0.5                                                # faster than that, no full jump
    assert (steps > -1e-6).all() and abs(np.log(levels[-1]) - 0.6) < 0.01                 # monotone, and it gets there


def test_smoothing_on_a_synthetic_moving_camera_with_the_default_model() -> None:
    """A room and a corridor rendered along moving trajectories, the shipped model: frame-to-frame flicker of the
    metric scale (|Δ ln s|, s = least-squares scale to the exact depth) falls by ≥ 30 % with the default α, per-frame
    AbsRel worsens by ≤ 2 % (the issue's targets; α was chosen on seed 78, this is seed 77)."""
    from depth_node.core.camera import PinholeCamera
    from depth_node.eval.metrics import EvalRange, fit_scale, score_frame
    from depth_node.synth.writer import SynthSpec, generate

    spec = SynthSpec(scenes=("room", "corridor"), frames=24, width=320, height=240, seed=77, intrinsics=(259.0, 259.0, 159.5, 119.5))
    frames = list(generate(spec))
    estimator = load_estimator(REPO / "models" / "default.yaml")
    camera = PinholeCamera(320, 240, 259.0, 259.0, 159.5, 119.5)
    results = {}
    for smoothing in (False, True):
        pipeline = DepthPipeline(estimator, PipelineConfig(temporal_smoothing=smoothing))
        drift, abs_rel, resets = [], [], 0
        for scene in ("room", "corridor"):
            scales = []
            for frame in (f for f in frames if f.scene == scene):
                depth = pipeline.process(frame.rgb, camera, points=False, confidence=False).depth_m
                gt = np.where(np.isfinite(frame.depth_m) & (frame.depth_m < 20), frame.depth_m, np.nan)
                valid = np.isfinite(gt) & np.isfinite(depth)
                scales.append(fit_scale(depth[valid].astype(np.float64), gt[valid].astype(np.float64)))
                abs_rel.append(score_frame(depth, gt.astype(np.float32), EvalRange(0.1, 20.0), modes=("metric",)).metrics["metric"]["abs_rel"])
                if smoothing:
                    resets += pipeline.temporal.state.reset
            drift.extend(np.abs(np.diff(np.log(scales))))
        results[smoothing] = (float(np.mean(drift)), float(np.mean(abs_rel)), resets)
    (drift_off, abs_rel_off, _), (drift_on, abs_rel_on, resets) = results[False], results[True]
    assert drift_on <= 0.70 * drift_off, results
    assert abs_rel_on <= 1.02 * abs_rel_off, results
    assert resets >= 2, results                                                           # the scene change restarted it
