"""The one pipeline the node and every tool call: RGB + intrinsics → metric depth, confidence, points.

Stages, each timed under its own name in ``DepthResult.timings_ms``:

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

Output grid: ``output_resolution='input'`` publishes on the camera image's grid (pixel-registered with the
RGB), ``'model'`` on the model's output grid (cheaper); ``DepthResult.camera`` always describes the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import backproject
from depth_node.core.cloud_filter import DECIMATION_MODES, EDGE_FILTERS, block_camera, block_colour, block_median, edge_radius, flying_pixels, sky_mask
from depth_node.core.colorize import COLORMAPS, colorize_depth
from depth_node.core.confidence import gradient_confidence, uncertainty_confidence
from depth_node.core.members import MEMBER_KINDS, Member, member_plan, run_members
from depth_node.core.scale import SCALE_MODES, GroundRegion, ScaleState, ScaleTracker, fit_ground_plane, fit_sparse, focal_scale, shift_known
from depth_node.core.spaces import Invariance, to_metres
from depth_node.core.temporal import TemporalFilter
from depth_node.core.timing import StageTimer
from depth_node.errors import ConfigError, InputError
from depth_node.estimators.base import DepthEstimator, Prediction

OUTPUT_RESOLUTIONS = ("input", "model")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the core needs besides the model. Units: metres; confidence in [0, 1]."""

    output_resolution: str = "input"
    scale_mode: str = "model"
    fixed_scale: float = 1.0
    fixed_shift: float = 0.0
    reference_focal_px: float = 0.0         # scale_mode model: focal length the model was trained at (0 = off)
    camera_height: float = 0.0              # ground_plane: metres from the optical centre down to the floor
    camera_pitch_deg: float = math.nan      # ground_plane: down-pitch of the optical axis; NaN = unknown
    ground_region: tuple[float, float, float, float] = (0.2, 0.55, 0.8, 1.0)  # left, top, right, bottom fractions
    ground_inlier_threshold: float = 0.02   # distance to the floor plane, relative to depth
    sparse_inlier_threshold: float = 0.1    # relative depth error of an inlier reference pixel
    scale_smoothing: float = 0.3            # weight of a new fit in the log-space average (1 = no smoothing)
    scale_outlier_log: float = 0.2          # |ln(new / tracked)| beyond which a fit is rejected …
    scale_accept_after: int = 3             # … unless this many consecutive fits agree on the jump
    scale_min_quality: float = 0.3          # fits with a lower inlier ratio are ignored
    confidence_gradient_scale: float = 0.05
    confidence_threshold: float = 0.0
    cloud_decimation: int = 1
    cloud_decimation_mode: str = "stride"   # stride | median (one point per block at its median depth)
    cloud_edge_filter: str = "ratio"        # off | ratio | normal: flying pixels at depth edges (core.cloud_filter)
    cloud_edge_max_ratio: float = 0.05      # ratio: largest relative depth jump to a neighbour
    cloud_edge_max_angle_deg: float = 80.0  # normal: largest angle between surface normal and viewing ray
    cloud_edge_radius: int = 0              # neighbours compared up to this many pixels away; 0 = from the resize
    cloud_min_confidence: float = 0.0       # cloud points below this confidence become NaN (depth keeps them)
    sky_disparity_fraction: float = 0.02    # disparity models: below this fraction of the near field = sky (0 = off)
    min_range: float = 0.0
    max_range: float = math.inf
    colormap: str = "turbo"
    colormap_min_m: float = 0.3
    colormap_max_m: float = 10.0
    ensemble_size: int = 1                  # 1 = off
    ensemble_members: str = "auto"          # auto | noise | tta (core.members)
    ensemble_reduction: str = "median"      # median (uncertainty = MAD) | mean (uncertainty = std)
    tta_scales: tuple[float, ...] = (1.0, 0.75, 1.25)
    confidence_tta: bool = False            # single pass: confidence from agreement with a flipped pass
    confidence_uncertainty_scale: float = 0.05  # relative depth uncertainty at which confidence is 0.5
    denoising_steps: int = 0                # multi-step models (Marigold): DDIM steps per pass; 0 = the card's
    temporal_smoothing: bool = False        # core.temporal: EMA of the frame-to-frame scale/shift, reset on cuts
    temporal_alpha: float = 0.25            # weight of the new frame's own scale/shift
    temporal_reset_residual: float = 0.15   # median relative disagreement after alignment that resets
    temporal_max_correction: float = 0.3    # cap of the scale correction (|ln s|)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        if self.output_resolution not in OUTPUT_RESOLUTIONS:
            raise ConfigError(f"output_resolution must be one of {OUTPUT_RESOLUTIONS}, got {self.output_resolution!r}")
        if self.scale_mode not in SCALE_MODES:
            raise ConfigError(f"scale.mode must be one of {SCALE_MODES}, got {self.scale_mode!r}")
        if not (math.isfinite(self.fixed_scale) and self.fixed_scale > 0):
            raise ConfigError(f"scale.fixed_scale must be a positive number, got {self.fixed_scale}")
        if not math.isfinite(self.fixed_shift):
            raise ConfigError(f"scale.fixed_shift must be finite, got {self.fixed_shift}")
        if not (self.reference_focal_px >= 0 and math.isfinite(self.reference_focal_px)):
            raise ConfigError(f"scale.reference_focal_px must be >= 0 (0 = off), got {self.reference_focal_px}")
        if self.scale_mode == "ground_plane" and not (self.camera_height > 0 and math.isfinite(self.camera_height)):
            raise ConfigError("scale.mode ground_plane needs scale.camera_height: the optical centre's height above the "
                              f"floor in metres (got {self.camera_height})")
        if not (math.isnan(self.camera_pitch_deg) or -90 < self.camera_pitch_deg < 90):
            raise ConfigError(f"scale.camera_pitch_deg must be in (-90, 90) or NaN (unknown), got {self.camera_pitch_deg}")
        try:
            GroundRegion(*self.ground_region)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"scale.ground_region [left, top, right, bottom]: {error}") from None
        if not (0 < self.ground_inlier_threshold < 1 and 0 < self.sparse_inlier_threshold < 1):
            raise ConfigError("scale.ground_inlier_threshold and scale.sparse_inlier_threshold must be in (0, 1)")
        if not (0 < self.scale_smoothing <= 1 and self.scale_outlier_log > 0 and self.scale_accept_after >= 1
                and 0 <= self.scale_min_quality <= 1):
            raise ConfigError("need 0 < scale.smoothing <= 1, scale.outlier_log > 0, scale.accept_after >= 1, "
                              "0 <= scale.min_quality <= 1")
        if not self.confidence_gradient_scale > 0:
            raise ConfigError(f"confidence_gradient_scale must be > 0, got {self.confidence_gradient_scale}")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ConfigError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold}")
        if self.cloud_decimation < 1:
            raise ConfigError(f"cloud_decimation must be >= 1, got {self.cloud_decimation}")
        if self.cloud_decimation_mode not in DECIMATION_MODES:
            raise ConfigError(f"cloud_decimation_mode must be one of {DECIMATION_MODES}, got {self.cloud_decimation_mode!r}")
        if self.cloud_edge_filter not in EDGE_FILTERS:
            raise ConfigError(f"cloud_edge_filter must be one of {EDGE_FILTERS}, got {self.cloud_edge_filter!r}")
        if not (self.cloud_edge_max_ratio > 0 and 0 < self.cloud_edge_max_angle_deg < 90 and self.cloud_edge_radius >= 0):
            raise ConfigError("need cloud_edge_max_ratio > 0, 0 < cloud_edge_max_angle_deg < 90, cloud_edge_radius >= 0")
        if not (0.0 <= self.cloud_min_confidence <= 1.0 and 0.0 <= self.sky_disparity_fraction < 1.0):
            raise ConfigError("need 0 <= cloud_min_confidence <= 1 and 0 <= sky_disparity_fraction < 1")
        if not 0.0 <= self.min_range < self.max_range:
            raise ConfigError(f"need 0 <= min_range < max_range, got {self.min_range}, {self.max_range}")
        if self.colormap not in COLORMAPS:
            raise ConfigError(f"colormap must be one of {sorted(COLORMAPS)}, got {self.colormap!r}")
        if self.ensemble_members not in MEMBER_KINDS:
            raise ConfigError(f"ensemble_members must be one of {MEMBER_KINDS}, got {self.ensemble_members!r}")
        if self.ensemble_reduction not in ("median", "mean"):
            raise ConfigError(f"ensemble_reduction must be median or mean, got {self.ensemble_reduction!r}")
        if not 0.0 < self.temporal_alpha <= 1.0:
            raise ConfigError(f"temporal_alpha must be in (0, 1], got {self.temporal_alpha}")
        if not (self.temporal_reset_residual > 0 and self.temporal_max_correction > 0):
            raise ConfigError("temporal_reset_residual and temporal_max_correction must be > 0")
        if self.denoising_steps < 0:
            raise ConfigError(f"denoising_steps must be >= 0 (0 = the model card's), got {self.denoising_steps}")
        if not self.confidence_uncertainty_scale > 0:
            raise ConfigError(f"confidence_uncertainty_scale must be > 0, got {self.confidence_uncertainty_scale}")
        if not self.colormap_min_m < self.colormap_max_m:
            raise ConfigError(f"need colormap_min_m < colormap_max_m, got {self.colormap_min_m}, {self.colormap_max_m}")


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


class DepthPipeline:
    """An estimator plus a :class:`PipelineConfig`; ``config`` may be replaced between frames."""

    def __init__(self, estimator: DepthEstimator, config: PipelineConfig | None = None) -> None:
        self.estimator = estimator
        self.config = config or PipelineConfig()

    @property
    def config(self) -> PipelineConfig:
        return self._config

    @config.setter
    def config(self, config: PipelineConfig) -> None:
        config.validate()
        spec = self.estimator.output
        if config.scale_mode == "model" and spec.invariance is not Invariance.METRIC and not (
                config.reference_focal_px > 0 and spec.invariance is Invariance.SCALE):
            raise ConfigError(
                f"model '{self.estimator.name}' outputs {spec.describe()}, which is not metres: set scale.mode to "
                "ground_plane (with scale.camera_height), sparse (with a reference depth topic) or fixed "
                "(scale.fixed_scale/fixed_shift for your camera)"
            )
        if config.scale_mode == "ground_plane" and not shift_known(spec.invariance) and math.isnan(config.camera_pitch_deg):
            raise ConfigError(
                f"model '{self.estimator.name}' outputs {spec.describe()}: its shift is unknown, so ground_plane needs "
                "the camera's pitch too: set scale.camera_pitch_known: true and scale.camera_pitch_deg (degrees, looking down positive)")
        if config.denoising_steps:
            if not (self.estimator.stochastic and hasattr(self.estimator, "denoising_steps")):
                raise ConfigError(f"denoising_steps applies to multi-step models (Marigold); '{self.estimator.name}' "
                                  "runs a single step: set denoising_steps: 0")
        if hasattr(self.estimator, "denoising_steps"):
            self.estimator.denoising_steps = config.denoising_steps
        self._plan = member_plan(config.ensemble_size, config.ensemble_members, tuple(config.tta_scales),
                                 self.estimator.stochastic, self.estimator.flexible_input)
        if config.confidence_tta and config.ensemble_size == 1:
            self._plan = [Member(), Member(flip=True)]
        if len(self._plan) > 1:
            try:
                import torch  # noqa: F401  (the ensemble runs in torch)
            except ImportError:
                raise ConfigError("ensemble_size > 1 and confidence_tta need torch: pip install torch==2.13.0") from None
            if config.ensemble_size > 1:
                from depth_node.core.ensemble import warm_up

                warm_up()
        tracking = (config.scale_mode, config.scale_smoothing, config.scale_outlier_log, config.scale_min_quality,
                    config.scale_accept_after)
        tracker = getattr(self, "_tracker", None)
        if tracker is None or (tracker.source, tracker.smoothing, tracker.outlier_log, tracker.min_quality,
                               tracker.accept_after) != tracking:
            self._tracker = ScaleTracker(*tracking)  # a tracker keeps its scale across other changes
        settings = (config.temporal_alpha, config.temporal_reset_residual, config.temporal_max_correction)
        current = getattr(self, "_temporal", None)
        if not config.temporal_smoothing:
            self._temporal = None
        elif current is None or (current.alpha, current.reset_residual, current.max_correction) != settings:
            self._temporal = TemporalFilter(spec.invariance, *settings)  # keeps its state across other changes
        self._config = config

    def reset_temporal(self) -> None:
        """Forget the previous frame (temporal smoothing); the scale tracker keeps its scale."""
        if self._temporal is not None:
            self._temporal.reset()

    def scale(self, prediction: np.ndarray, camera: PinholeCamera, reference_depth_m: np.ndarray | None = None) -> ScaleState:
        """The (scale, shift) for ``prediction`` (model grid, output space; ``camera`` on that grid), applied in
        the model's output space before conversion to metres. ``reference_depth_m``: metres, NaN/0 invalid, any
        resolution with the camera's field of view (``scale_mode`` sparse)."""
        cfg, spec = self.config, self.estimator.output
        if cfg.scale_mode == "fixed":
            return ScaleState(cfg.fixed_scale, cfg.fixed_shift, "fixed", 1.0, ok=True)
        if cfg.scale_mode == "model":
            s = focal_scale(camera, cfg.reference_focal_px, spec.space) if cfg.reference_focal_px > 0 else 1.0
            return ScaleState(s, 0.0, "model", 1.0, ok=True)
        if cfg.scale_mode == "ground_plane":
            fit = fit_ground_plane(prediction, spec.space, spec.invariance, camera, cfg.camera_height, cfg.camera_pitch_deg,
                                   GroundRegion(*cfg.ground_region), cfg.ground_inlier_threshold)
        else:
            fit = None if reference_depth_m is None else fit_sparse(prediction, spec.space, spec.invariance,
                                                                   reference_depth_m, cfg.sparse_inlier_threshold)
        return self._tracker.update(fit)

    def process(
        self,
        rgb: np.ndarray,
        camera: PinholeCamera,
        *,
        confidence: bool = True,
        points: bool = True,
        cloud_color: bool = True,
        colorized: bool = False,
        timer: StageTimer | None = None,
        reference_depth_m: np.ndarray | None = None,
    ) -> DepthResult:
        """Run every requested stage on one uint8 (H, W, 3) RGB image whose intrinsics are ``camera``.
        ``reference_depth_m``: this frame's reference depth for ``scale_mode`` sparse (see :meth:`scale`)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputError(f"pipeline input must be uint8 (H, W, 3) RGB, got {rgb.dtype} {rgb.shape}")
        if rgb.shape[:2] != (camera.height, camera.width):
            raise InputError(
                f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera_info is {camera.width}x{camera.height}"
            )
        cfg = self.config
        timer = timer or StageTimer()
        uncertainty = None
        if len(self._plan) == 1:
            with timer.stage("preprocess"):
                model_input = self.estimator.preprocess(rgb)
            with timer.stage("infer"):
                prediction = self.estimator.infer(model_input)
        else:
            with timer.stage("infer"):
                members = run_members(self.estimator, rgb, self._plan)
            with timer.stage("ensemble"):
                prediction, uncertainty = self._ensemble(members)
        if self._temporal is not None:
            with timer.stage("temporal"):
                smoothed = self._temporal.update(prediction.values)
                if uncertainty is not None:  # the spread scales with the published values
                    uncertainty = uncertainty * np.float32(abs(self._temporal.state.gain))
                prediction = Prediction(smoothed, prediction.spec, prediction.confidence)

        with timer.stage("scale"):
            model_height, model_width = prediction.values.shape
            scale_state = self.scale(prediction.values, camera.resized(model_width, model_height), reference_depth_m)
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

        conf = None
        if confidence or cfg.confidence_threshold > 0 or (points and cfg.cloud_min_confidence > 0):
            with timer.stage("confidence"):
                model_confidence = prediction.confidence
                if uncertainty is not None:
                    model_confidence = uncertainty_confidence(prediction.values, uncertainty, prediction.spec.space, scale, shift,
                                                              cfg.confidence_uncertainty_scale)
                if model_confidence is not None:
                    conf = _resize_values(model_confidence, height, width).copy()
                    conf[~np.isfinite(depth)] = 0.0
                else:
                    conf = gradient_confidence(depth, cfg.confidence_gradient_scale)
                if cfg.confidence_threshold > 0:
                    depth[conf < cfg.confidence_threshold] = np.nan

        cloud = None
        if points:
            with timer.stage("cloud"):
                colour = None
                if cloud_color:
                    colour = rgb if (height, width) == rgb.shape[:2] else cv2.resize(
                        rgb, (width, height), interpolation=cv2.INTER_AREA
                    )
                cloud = self._cloud(depth, depth_camera, conf, colour, width / model_width)

        picture = None
        if colorized:
            with timer.stage("colorize"):
                picture = colorize_depth(depth, cfg.colormap_min_m, cfg.colormap_max_m, cfg.colormap)

        return DepthResult(depth, conf, depth_camera, cloud, picture, prediction, timer.ms, uncertainty, scale_state)

    def _cloud(self, depth: np.ndarray, camera: PinholeCamera, confidence: np.ndarray | None, colour: np.ndarray | None,
               upsampling: float) -> np.ndarray:
        """The organized cloud of ``depth``: flying pixels and low-confidence points out, then decimated."""
        cfg = self.config
        removed = flying_pixels(depth, camera, cfg.cloud_edge_filter, cfg.cloud_edge_max_ratio, cfg.cloud_edge_max_angle_deg,
                                cfg.cloud_edge_radius or edge_radius(upsampling))
        if confidence is not None and cfg.cloud_min_confidence > 0:
            removed |= confidence < cfg.cloud_min_confidence
        if removed.any():
            depth = np.where(removed, np.float32(np.nan), depth)
        if cfg.cloud_decimation_mode == "median" and cfg.cloud_decimation > 1:
            block = cfg.cloud_decimation
            return backproject(block_median(depth, block), block_camera(camera, block), 1, cfg.min_range, cfg.max_range,
                               None if colour is None else block_colour(colour, block))
        return backproject(depth, camera, cfg.cloud_decimation, cfg.min_range, cfg.max_range, colour)

    def _ensemble(self, members: np.ndarray) -> tuple[Prediction, np.ndarray]:
        """(N, h, w) members → the prediction to publish and its uncertainty, both in the model's output space.

        An ensemble (``ensemble_size`` > 1) publishes the aligned, reduced members; ``confidence_tta`` publishes
        the plain pass and takes only the disagreement with its flip (half the absolute difference)."""
        import torch

        from depth_node.core.ensemble import ensemble

        spec = self.estimator.output
        if self.config.ensemble_size == 1:  # confidence_tta
            spread = 0.5 * np.abs(members[0] - members[1])
            return Prediction(members[0], spec), spread
        device = torch.device(self.estimator.device if str(self.estimator.device).startswith("cuda") else "cpu")
        result = ensemble(torch.from_numpy(members).to(device), spec.invariance, self.config.ensemble_reduction)
        return Prediction(result.values.cpu().numpy(), spec), result.uncertainty.cpu().numpy()


def _resize_values(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float map (the input itself when the size already matches)."""
    values = values.astype(np.float32, copy=False)
    if values.shape == (height, width):
        return values
    return cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
