"""The one pipeline the node and every tool call: RGB + intrinsics → metric depth, confidence, points.

Stages, in this order, each timed under its own name in ``DepthResult.timings_ms``:

``preprocess``  estimator: resize/normalize to the model's input rules
``infer``       estimator: forward pass → prediction in the model's own output space (every ensemble member's
                preprocess and pass when ensembling or ``confidence_tta``)
``ensemble``    align and reduce the members in the model's output space (``core.ensemble``); uncertainty
``temporal``    ``temporal_smoothing``: steady the frame-to-frame scale/shift (``core.temporal``)
``scale``       ``scale_mode``: the (scale, shift) to metres from the model, parameters, the floor or a reference
                depth image (``core.scale``), tracked over frames
``metric``      resize the prediction to the output grid (in its own space), convert to metres
``confidence``  ensemble spread, model head, flip agreement or single-pass heuristic (``core.confidence``);
                ``confidence_threshold`` masks depth to NaN
``cloud``       flying pixels and low-confidence points removed, stride or block-median decimation, organized
                back-projection (+ packed colour) (``core.cloud_filter``, ``core.cloud``)
``colorize``    fixed-range colormap for people

``cloud``, ``confidence`` and ``colorize`` only read the metric depth, so they run at once on every core
(``core.parallel``; the cloud in row bands) and are timed together, under their names joined by ``+`` (e.g.
``cloud+confidence+colorize``): the frame's wall time, so the stages' times still add up to the frame's. The
confidence runs first, alone, where it masks the depth (``confidence_threshold``) or the points
(``cloud_min_confidence``). At 640×480 on 2 cores these stages took 3.6 ms one after the other, 2.8 ms at once
(docs/benchmarks.md).

Configuration: :class:`PipelineConfig` (``core.parameters``), one field per node parameter.

Output grid: ``output_resolution='input'`` publishes on the camera image's grid (pixel-registered with the
RGB), ``'model'`` on the model's output grid (cheaper); ``DepthResult.camera`` always describes the grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import backproject
from depth_node.core.cloud_filter import (
    block_camera,
    block_colour,
    block_median,
    edge_radius,
    flying_pixels,
    sky_mask,
)
from depth_node.core.colorize import colorize_depth
from depth_node.core.confidence import gradient_confidence, uncertainty_confidence
from depth_node.core.estimator import DepthEstimator, Prediction
from depth_node.core.members import Member, member_plan, run_members
from depth_node.core.parallel import band_edges, together
from depth_node.core.parameters import PipelineConfig
from depth_node.core.scale import (
    GroundRegion,
    ScaleState,
    ScaleTracker,
    fit_ground_plane,
    fit_sparse,
    focal_scale,
    shift_known,
)
from depth_node.core.spaces import Invariance, to_metres
from depth_node.core.temporal import TemporalFilter
from depth_node.core.timing import StageTimer
from depth_node.errors import ConfigError, InputError


OutputArrays = Callable[[str, tuple[int, ...], type], np.ndarray]
"""Where :meth:`DepthPipeline.process` computes an output: called as ``out(name, shape, dtype)`` for
``"confidence"`` (float32 (h, w)), ``"points"`` (float32 (h', w', 3 | 4)) and ``"colorized"`` (uint8 (h, w, 3)), it
returns a C-contiguous array of that shape and dtype, e.g. the data of the message that will carry it
(``ros.outputs.OutputMessages``), so the output is computed straight into it, never copied."""


@dataclass
class DepthResult:
    """One frame's outputs, all on the grid ``camera`` describes.

    depth_m:     float32 (h, w), metres along the optical axis, NaN invalid.
    confidence:  float32 (h, w) in [0, 1], or None when not requested.
    points:      float32 (h', w', 3 or 4) organized cloud (x, y, z[, packed rgb]) in the optical frame,
                 NaN invalid, h' = ceil(h / cloud_decimation); or None when not requested.
    colorized:   uint8 (h, w, 3) RGB picture of depth, or None when not requested.
    prediction:  the model output (own space, model grid); ensembled when ensembling, smoothed with
                 ``temporal_smoothing``.
    uncertainty: (model grid) ensemble spread in the model's output space (MAD or std), or the flip disagreement
                 with ``confidence_tta``; None otherwise.
    timings_ms:  per-stage wall time.
    scale:       the (scale, shift) used, their source and fit quality (``core.scale.ScaleState``).
    model_invalid:      fraction of the model's prediction (model grid) that is NaN or ±Inf: a model fault
                        (those pixels publish NaN); 1.0 = nothing the model said is usable.
    confidence_invalid: fraction of valid depth pixels whose confidence came out NaN (published as 0).
    """

    depth_m: np.ndarray
    confidence: np.ndarray | None
    camera: PinholeCamera
    points: np.ndarray | None
    colorized: np.ndarray | None
    prediction: Prediction
    timings_ms: dict[str, float]
    uncertainty: np.ndarray | None = None
    scale: ScaleState | None = None
    no_return: np.ndarray | None = None  # bool (h, w): nothing to return there (sky of a disparity model), or None
    model_invalid: float = 0.0
    confidence_invalid: float = 0.0


# What one frame's outputs may take. At output_resolution input they grow with the camera: a 6600x6000 frame's
# xyz+rgb cloud alone is 634 MB, and reliable publishers keep the last two of each output. A 4K camera with every
# output (224 MB) fits; beyond, the frame is refused with what to change.
MAX_OUTPUT_BYTES = 256 * 1024 * 1024


def output_bytes(width: int, height: int, confidence: bool, points: bool, colorized: bool, cloud_decimation: int,
                 cloud_color: bool) -> dict[str, int]:
    """Bytes of each output of a ``width`` × ``height`` frame (depth and the arrays behind the requested outputs)."""
    pixels = width * height
    sizes = {"depth": 4 * pixels}
    if confidence:
        sizes["confidence"] = 4 * pixels
    if points:
        step = max(1, cloud_decimation)
        sizes["points"] = (16 if cloud_color else 12) * (-(-width // step)) * (-(-height // step))
    if colorized:
        sizes["colorized"] = 3 * pixels
    return sizes


@dataclass(frozen=True)
class _Settings:
    """Everything a frame runs with, swapped as one object: a parameter change made while a frame runs (the node's
    executor thread) takes effect at the next frame, never halfway through one."""

    config: PipelineConfig
    plan: list[Member]
    tracker: ScaleTracker
    temporal: TemporalFilter | None


class DepthPipeline:
    """An estimator plus a :class:`PipelineConfig` (``core.parameters``). ``config`` may be replaced at any time, from
    any thread: it is checked at once (:class:`ConfigError`) and a frame already running finishes with the old one."""

    def __init__(self, estimator: DepthEstimator, config: PipelineConfig | None = None) -> None:
        self.estimator = estimator
        self._settings: _Settings | None = None
        self.config = config or PipelineConfig()

    @property
    def config(self) -> PipelineConfig:
        return self._settings.config

    @config.setter
    def config(self, config: PipelineConfig) -> None:
        config.validate()
        spec = self.estimator.output
        if config.scale_mode == "model" and spec.invariance is not Invariance.METRIC and not (
                config.scale_reference_focal_px > 0 and spec.invariance is Invariance.SCALE):
            raise ConfigError(
                f"model '{self.estimator.name}' outputs {spec.describe()}, which is not metres: set scale.mode to "
                "ground_plane (with scale.camera_height), sparse (with a reference depth topic) or fixed "
                "(scale.fixed_scale/fixed_shift for your camera)"
            )
        if config.scale_mode == "ground_plane" and not shift_known(spec.invariance) and not config.scale_camera_pitch_known:
            raise ConfigError(
                f"model '{self.estimator.name}' outputs {spec.describe()}: its shift is unknown, so ground_plane needs "
                "the camera's pitch too: set scale.camera_pitch_known: true and scale.camera_pitch_deg (degrees, looking down positive)")
        if not self.estimator.multi_step:  # a check only; multi-step models take their steps at the start of a frame
            try:
                self.estimator.set_denoising_steps(config.denoising_steps)
            except ValueError as error:
                raise ConfigError(str(error)) from None
        plan = member_plan(config.ensemble_size, config.ensemble_members, tuple(config.tta_scales),
                           self.estimator.stochastic, self.estimator.flexible_input)
        if config.confidence_tta and config.ensemble_size == 1:
            plan = [Member(), Member(flip=True)]
        if len(plan) > 1:
            try:
                import torch  # noqa: F401  (the ensemble runs in torch)
            except ImportError:
                raise ConfigError("ensemble_size > 1 and confidence_tta need torch: pip install torch==2.13.0") from None
            if config.ensemble_size > 1:
                from depth_node.core.ensemble import warm_up

                warm_up()
        current = self._settings
        tracking = (config.scale_mode, config.scale_smoothing, config.scale_outlier_log, config.scale_min_quality,
                    config.scale_accept_after)
        tracker = None if current is None else current.tracker
        if tracker is None or (tracker.source, tracker.smoothing, tracker.outlier_log, tracker.min_quality,
                               tracker.accept_after) != tracking:
            tracker = ScaleTracker(*tracking)  # a tracker keeps its scale across other changes
        settings = (config.temporal_alpha, config.temporal_reset_residual, config.temporal_max_correction)
        temporal = None if current is None else current.temporal
        if not config.temporal_smoothing:
            temporal = None
        elif temporal is None or (temporal.alpha, temporal.reset_residual, temporal.max_correction) != settings:
            temporal = TemporalFilter(spec.invariance, *settings)  # keeps its state across other changes
        self._settings = _Settings(config, plan, tracker, temporal)  # one assignment: atomic for a running frame

    @property
    def temporal(self) -> TemporalFilter | None:
        """The temporal filter (its ``state`` says what the last frame did), None without ``temporal_smoothing``."""
        return self._settings.temporal

    def reset_temporal(self) -> None:
        """Forget the previous frame (temporal smoothing); the scale tracker keeps its scale."""
        temporal = self._settings.temporal
        if temporal is not None:
            temporal.reset()

    def scale(self, prediction: np.ndarray, camera: PinholeCamera, reference_depth_m: np.ndarray | None = None,
              settings: _Settings | None = None) -> ScaleState:
        """The (scale, shift) for ``prediction`` (model grid, output space; ``camera`` on that grid), applied in
        the model's output space before conversion to metres. ``reference_depth_m``: metres, NaN/0 invalid, any
        resolution with the camera's field of view (``scale_mode`` sparse). ``settings``: the frame's (default: now)."""
        settings = settings or self._settings
        cfg, spec = settings.config, self.estimator.output
        if cfg.scale_mode == "fixed":
            return ScaleState(cfg.scale_fixed_scale, cfg.scale_fixed_shift, "fixed", 1.0, ok=True)
        if cfg.scale_mode == "model":
            s = focal_scale(camera, cfg.scale_reference_focal_px, spec.space) if cfg.scale_reference_focal_px > 0 else 1.0
            return ScaleState(s, 0.0, "model", 1.0, ok=True)
        if cfg.scale_mode == "ground_plane":
            fit = fit_ground_plane(prediction, spec.space, spec.invariance, camera, cfg.scale_camera_height,
                                   cfg.scale_camera_pitch_deg if cfg.scale_camera_pitch_known else math.nan,
                                   GroundRegion(*cfg.scale_ground_region), cfg.scale_ground_inlier_threshold)
        else:
            fit = None if reference_depth_m is None else fit_sparse(prediction, spec.space, spec.invariance,
                                                                   reference_depth_m, cfg.scale_sparse_inlier_threshold)
        return settings.tracker.update(fit)

    def process(
        self,
        rgb: np.ndarray,
        camera: PinholeCamera,
        *,
        confidence: bool = True,
        points: bool = True,
        colorized: bool = False,
        timer: StageTimer | None = None,
        reference_depth_m: np.ndarray | None = None,
        out: OutputArrays | None = None,
    ) -> DepthResult:
        """Run every requested stage on one uint8 (H, W, 3) RGB image whose intrinsics are ``camera``.

        ``reference_depth_m``: this frame's reference depth for ``scale_mode`` sparse (see :meth:`scale`).
        ``out``: where the ``confidence``, ``points`` and ``colorized`` outputs are computed (see
        :data:`OutputArrays`); default new arrays."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputError(f"pipeline input must be uint8 (H, W, 3) RGB, got {rgb.dtype} {rgb.shape}")
        if rgb.shape[:2] != (camera.height, camera.width):
            raise InputError(
                f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera_info is {camera.width}x{camera.height}"
            )
        settings = self._settings  # this frame's, whatever changes while it runs
        cfg = settings.config
        if cfg.output_resolution == "input":  # refused before any of it is allocated (the model grid is small)
            sizes = output_bytes(camera.width, camera.height, confidence or cfg.confidence_threshold > 0, points, colorized,
                                 cfg.cloud_decimation, cfg.cloud_color)
            if sum(sizes.values()) > MAX_OUTPUT_BYTES:
                parts = ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in sizes.items())
                raise InputError(f"a {camera.width}x{camera.height} frame's outputs at output_resolution input would take "
                                 f"{sum(sizes.values()) / 1e6:.0f} MB ({parts}), over the {MAX_OUTPUT_BYTES / 1e6:.0f} MB a "
                                 "frame may use: set output_resolution: model, raise cloud_decimation, subscribe to fewer "
                                 "outputs, or resize the images upstream (image_proc's resize)")
        if self.estimator.multi_step:
            self.estimator.set_denoising_steps(cfg.denoising_steps)
        timer = timer or StageTimer()
        uncertainty = None
        if len(settings.plan) == 1:
            with timer.stage("preprocess"):
                model_input = self.estimator.preprocess(rgb)
            with timer.stage("infer"):
                prediction = self.estimator.infer(model_input)
        else:
            with timer.stage("infer"):
                members = run_members(self.estimator, rgb, settings.plan)
            with timer.stage("ensemble"):
                prediction, uncertainty = self._ensemble(members, cfg)
        finite = np.isfinite(prediction.values)
        model_invalid = 0.0 if finite.all() else 1.0 - float(finite.mean())
        if settings.temporal is not None:
            with timer.stage("temporal"):
                smoothed = settings.temporal.update(prediction.values)
                if uncertainty is not None:  # the spread scales with the published values
                    uncertainty = uncertainty * np.float32(abs(settings.temporal.state.gain))
                prediction = Prediction(smoothed, prediction.spec, prediction.confidence)

        with timer.stage("scale"):
            model_height, model_width = prediction.values.shape
            scale_state = self.scale(prediction.values, camera.resized(model_width, model_height), reference_depth_m, settings)
        with timer.stage("metric"):
            if cfg.output_resolution == "input":
                height, width = camera.height, camera.width
            else:
                height, width = model_height, model_width
            values = _resize_values(prediction.values, height, width)
            sky = sky_mask(values, prediction.spec.space, cfg.sky_disparity_fraction)
            depth_camera = camera.resized(width, height)
            # no scale yet (before the first floor or reference fit): every pixel is NaN, never a guess
            scale, shift = (scale_state.scale, scale_state.shift) if scale_state.ok else (math.nan, 0.0)
            # A resized map is ours to overwrite; the model's own array stays intact in DepthResult.prediction.
            depth = to_metres(values, prediction.spec.space, scale, shift, in_place=values is not prediction.values)
            if sky is not None:
                depth[sky] = np.nan  # never a wall in the sky (core.cloud_filter)

        result = DepthResult(depth, None, depth_camera, None, None, prediction, timer.ms, uncertainty, scale_state, sky,
                             model_invalid)
        confidence_first = cfg.confidence_threshold > 0 or (points and cfg.cloud_min_confidence > 0)
        if confidence_first:  # it masks the depth or the points: before them
            with timer.stage("confidence"):
                self._confidence(result, uncertainty, scale, shift, cfg, _array(out, "confidence", depth.shape, np.float32)
                                 if confidence else None)
        # The other stages only read the depth: they run at once, on every core (core.parallel), timed together
        # under their names joined by "+" (the frame's wall time, not the sum of each one's).
        names = [name for name, wanted in (("cloud", points), ("confidence", confidence and not confidence_first),
                                           ("colorize", colorized)) if wanted]
        if not names:
            return result
        with timer.stage("+".join(names)):
            tasks: list[Callable[[], None]] = []
            if points:
                colour = None
                if cfg.cloud_color:
                    colour = rgb if (height, width) == rgb.shape[:2] else cv2.resize(
                        rgb, (width, height), interpolation=cv2.INTER_AREA
                    )
                result.points, bands = self._cloud(depth, depth_camera, result.confidence, colour, width / model_width, cfg, out)
                tasks += bands  # first: the longest
            if "confidence" in names:
                target = _array(out, "confidence", depth.shape, np.float32)  # its message, made before the threads start
                tasks.append(lambda: self._confidence(result, uncertainty, scale, shift, cfg, target))
            if colorized:
                picture = _array(out, "colorized", (height, width, 3), np.uint8)

                def colorize() -> None:
                    result.colorized = colorize_depth(depth, cfg.colormap_min_m, cfg.colormap_max_m, cfg.colormap, out=picture)
                tasks.append(colorize)
            together(tasks)
        return result

    @staticmethod
    def _confidence(result: DepthResult, uncertainty: np.ndarray | None, scale: float, shift: float, cfg: PipelineConfig,
                    target: np.ndarray | None) -> None:
        """``result.confidence`` (and ``confidence_invalid``), computed into ``target`` (a new array when None);
        ``confidence_threshold`` masks ``result.depth_m``."""
        depth, prediction = result.depth_m, result.prediction
        model_confidence = prediction.confidence
        if uncertainty is not None:
            model_confidence = uncertainty_confidence(prediction.values, uncertainty, prediction.spec.space, scale, shift,
                                                      cfg.confidence_uncertainty_scale)
        if model_confidence is not None:
            conf = _resize_values(model_confidence, *depth.shape)
            if target is None:
                conf = conf.copy()  # the model's own array stays intact in DepthResult.prediction
            else:
                np.copyto(target, conf)
                conf = target
            conf[~np.isfinite(depth)] = 0.0
        else:
            conf = gradient_confidence(depth, cfg.confidence_gradient_scale, out=target)
        unknown = np.isnan(conf)
        if unknown.any():  # a model's NaN confidence is no confidence: 0, never a value that passes thresholds
            valid = np.isfinite(depth)
            result.confidence_invalid = float((unknown & valid).sum()) / max(int(valid.sum()), 1)
            conf[unknown] = 0.0
        if cfg.confidence_threshold > 0:
            depth[conf < cfg.confidence_threshold] = np.nan
        result.confidence = conf

    @staticmethod
    def _cloud(depth: np.ndarray, camera: PinholeCamera, confidence: np.ndarray | None, colour: np.ndarray | None,
               upsampling: float, cfg: PipelineConfig, out: OutputArrays | None) -> tuple[np.ndarray, list[Callable[[], None]]]:
        """The organized cloud of ``depth`` (flying pixels and low-confidence points out, then decimated), and the
        tasks that compute it into that array (row bands, any order, at once: ``core.parallel.together``)."""
        radius = cfg.cloud_edge_radius or edge_radius(upsampling)
        step, channels = cfg.cloud_decimation, 3 if colour is None else 4

        def removed_in(rows: tuple[int, int] | None = None) -> np.ndarray:
            removed = flying_pixels(depth, camera, cfg.cloud_edge_filter, cfg.cloud_edge_max_ratio,
                                    cfg.cloud_edge_max_angle_deg, radius, rows)
            if confidence is not None and cfg.cloud_min_confidence > 0:
                removed |= (confidence if rows is None else confidence[rows[0]:rows[1]]) < cfg.cloud_min_confidence
            return removed

        if cfg.cloud_decimation_mode == "median" and step > 1:
            grid = block_camera(camera, step)
            cloud = _array(out, "points", (grid.height, grid.width, channels), np.float32)

            def whole() -> None:
                removed = removed_in()
                blocks = np.where(removed, np.float32(np.nan), depth) if removed.any() else depth  # the median must not see them
                backproject(block_median(blocks, step), grid, 1, cfg.min_range, cfg.max_range,
                            None if colour is None else block_colour(colour, step), out=cloud)
            return cloud, [whole]
        shape = (-(-camera.height // step), -(-camera.width // step), channels)
        cloud = _array(out, "points", shape, np.float32)
        removed = np.empty(depth.shape, bool)

        def band(first: int, last: int) -> None:  # cloud rows [first, last): depth rows first·step ..
            rows = (first * step, min(camera.height, last * step))
            removed[rows[0]:rows[1]] = removed_in(rows)
            backproject(depth, camera, step, cfg.min_range, cfg.max_range, colour, drop=removed, out=cloud, rows=(first, last))

        edges = band_edges(shape[0], shape[1] * step * step)  # the filter's work is on the depth grid
        return cloud, [lambda first=first, last=last: band(first, last) for first, last in zip(edges[:-1], edges[1:])]

    def _ensemble(self, members: np.ndarray, cfg: PipelineConfig) -> tuple[Prediction, np.ndarray]:
        """(N, h, w) members → the prediction to publish and its uncertainty, both in the model's output space.

        An ensemble (``ensemble_size`` > 1) publishes the aligned, reduced members; ``confidence_tta`` publishes
        the plain pass and takes only the disagreement with its flip (half the absolute difference)."""
        import torch

        from depth_node.core.ensemble import ensemble

        spec = self.estimator.output
        if cfg.ensemble_size == 1:  # confidence_tta
            spread = 0.5 * np.abs(members[0] - members[1])
            return Prediction(members[0], spec), spread
        device = torch.device(self.estimator.device if str(self.estimator.device).startswith("cuda") else "cpu")
        result = ensemble(torch.from_numpy(members).to(device), spec.invariance, cfg.ensemble_reduction)
        return Prediction(result.values.cpu().numpy(), spec), result.uncertainty.cpu().numpy()


def _array(out: OutputArrays | None, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Where output ``name`` is computed: ``out``'s array, or a new one."""
    return np.empty(shape, dtype) if out is None else out(name, shape, dtype)


def _resize_values(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float map (the input itself when the size already matches)."""
    values = values.astype(np.float32, copy=False)
    if values.shape == (height, width):
        return values
    return cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
