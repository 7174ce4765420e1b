"""Every parameter of the node, in one table: name, default, unit, range, whether it changes at run time.

The node declares exactly these (with descriptions and ranges), ``config/depth.yaml`` sets exactly these,
and the launch file's arguments name only these; a test keeps the three in agreement.
ROS-free (plain data), so tools and tests can read it without rclpy.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depth_node.backends.torch_backend import PRECISIONS
from depth_node.core.cloud_filter import DECIMATION_MODES, EDGE_FILTERS
from depth_node.core.colorize import COLORMAPS
from depth_node.core.depth_encoding import DEPTH_ENCODINGS
from depth_node.core.pipeline import OUTPUT_RESOLUTIONS, PipelineConfig
from depth_node.core.scale import SCALE_MODES
from depth_node.errors import ConfigError, ModelLoadError
from depth_node.estimators.base import COMPILE_MODES, DepthEstimator
from depth_node.estimators.registry import BACKENDS, load_estimator
from depth_node.paths import resolve_card


DEVICES = ("cpu", "cuda", "tensorrt")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    dynamic: bool = True  # False: read-only after start (changing it needs a restart)
    choices: tuple[str, ...] | None = None
    range: tuple[float, float] | None = None  # inclusive


PARAMS: tuple[ParamSpec, ...] = (
    # --- model ---
    ParamSpec("model_card", "default", "Model card: a YAML path, or the name of a card in the package's models/ folder.", dynamic=False),
    ParamSpec("backend", "auto", "Inference runtime; auto picks the one the card's weights need (.onnx: onnxruntime, HF folder: torch, .tflite: tflite).", dynamic=False, choices=BACKENDS),
    ParamSpec("device", "cpu", "Where the model runs (onnxruntime: cpu, cuda, tensorrt execution providers; torch: cpu, cuda).", dynamic=False, choices=DEVICES),
    ParamSpec("backend_fallback", "", "Comma-separated backend[:device] entries tried in order when the model fails to load on backend/device, e.g. 'onnxruntime:cpu' (empty = none).", dynamic=False),
    ParamSpec("precision", "fp32", "Numeric precision of torch models (fp16/bf16 keep norm layers in fp32) and TensorRT engines (fp16); ONNX Runtime and LiteRT run the graph as exported (a WARN says so).", dynamic=False, choices=PRECISIONS),
    ParamSpec("torch_compile", "off", "torch.compile mode for torch models (first frame compiles; reduce-overhead also captures CUDA graphs).", dynamic=False, choices=COMPILE_MODES),
    ParamSpec("channels_last", False, "Channels-last memory format for torch models (faster convolutions on tensor-core GPUs).", dynamic=False),
    ParamSpec("num_threads", 0, "CPU threads for the runtime (0 = runtime default).", dynamic=False, range=(0, 64)),
    # --- input ---
    ParamSpec("input_transport", "raw", "raw: subscribe to 'image' (sensor_msgs/Image); compressed: to 'image/compressed'.", dynamic=False, choices=("raw", "compressed")),
    ParamSpec("sync_slop_s", 0.05, "Seconds: the largest image/camera_info stamp difference accepted as a pair.", range=(0.0, 1.0)),
    ParamSpec("use_last_camera_info", True, "When no camera_info is within sync_slop_s, use the most recent one (bags, drivers with odd stamps)."),
    ParamSpec("fallback_hfov_deg", 60.0, "Degrees: horizontal field of view assumed while no camera_info has ever arrived (0 = wait for camera_info).", range=(0.0, 179.0)),
    ParamSpec("max_rate_hz", 0.0, "Hz: process at most this many frames per second (0 = as fast as the model allows).", range=(0.0, 1000.0)),
    # --- output ---
    ParamSpec("output_resolution", "input", "Grid of the published depth: input (the camera image's) or model (the model's output grid, cheaper).", choices=OUTPUT_RESOLUTIONS),
    ParamSpec("depth_encoding", "32FC1", "32FC1: metres, NaN invalid; 16UC1: millimetres, 0 invalid (REP 118).", choices=DEPTH_ENCODINGS),
    ParamSpec("scale.mode", "model", "How the prediction becomes metres: model (metric models), fixed (scale/shift below), ground_plane (floor at scale.camera_height) or sparse (fit to the reference_depth topic); see docs/scale.md.", choices=SCALE_MODES),
    ParamSpec("scale.fixed_scale", 1.0, "Scale s in the model's output space for scale.mode fixed (depth = s*p + t; disparity: 1/(s*p + t)).", range=(1e-9, 1e9)),
    ParamSpec("scale.fixed_shift", 0.0, "Shift t in the model's output space for scale.mode fixed.", range=(-1e9, 1e9)),
    ParamSpec("scale.reference_focal_px", 0.0, "scale.mode model: focal length (pixels on the model's grid) the model was trained at; depth is multiplied by f / f_ref (0 = off).", range=(0.0, 1e6)),
    ParamSpec("scale.camera_height", 0.0, "Metres from the camera's optical centre down to the floor (scale.mode ground_plane).", range=(0.0, 100.0)),
    ParamSpec("scale.camera_pitch_known", False, "ground_plane: the camera's pitch is scale.camera_pitch_deg (needed for affine models; checks the floor's tilt for others)."),
    ParamSpec("scale.camera_pitch_deg", 0.0, "Degrees the optical axis points below the horizon (ground_plane, with scale.camera_pitch_known).", range=(-89.0, 89.0)),
    ParamSpec("scale.ground_region", [0.2, 0.55, 0.8, 1.0], "ground_plane: image window searched for floor, [left, top, right, bottom] as fractions of width/height."),
    ParamSpec("scale.ground_inlier_threshold", 0.02, "ground_plane: a pixel is on the floor plane within this fraction of its depth.", range=(0.001, 0.5)),
    ParamSpec("scale.sparse_inlier_threshold", 0.1, "sparse: a reference pixel is an inlier when the fitted depth is within this fraction of it.", range=(0.001, 0.9)),
    ParamSpec("scale.reference_slop_s", 0.1, "sparse: seconds between image and reference_depth stamps accepted as a pair.", range=(0.0, 10.0)),
    ParamSpec("scale.smoothing", 0.3, "Weight of each new scale fit in the log-space running average (1 = no smoothing).", range=(0.01, 1.0)),
    ParamSpec("scale.outlier_log", 0.2, "A fit whose |ln(new/tracked scale)| exceeds this is rejected as an outlier ...", range=(0.001, 10.0)),
    ParamSpec("scale.accept_after", 3, "... unless this many consecutive fits agree on the jump (the scene or mount changed).", range=(1, 100)),
    ParamSpec("scale.min_quality", 0.3, "Fits with a lower inlier ratio are ignored (the last good scale is held).", range=(0.0, 1.0)),
    ParamSpec("confidence_gradient_scale", 0.05, "Relative depth change per pixel at which the gradient-heuristic confidence (single pass of a model without a confidence head) is 0.5.", range=(1e-4, 10.0)),
    ParamSpec("confidence_threshold", 0.0, "Pixels with confidence below this become invalid in depth and cloud (0 = keep all).", range=(0.0, 1.0)),
    ParamSpec("ensemble_size", 1, "Passes per frame, aligned and reduced in the model's output space (1 = off); the spread becomes the confidence.", range=(1, 32)),
    ParamSpec("ensemble_members", "auto", "Ensemble members: noise (seeds of a stochastic model), tta (flip, tta_scales), auto (noise for stochastic models, tta otherwise).", choices=("auto", "noise", "tta")),
    ParamSpec("ensemble_reduction", "median", "median (uncertainty = median absolute deviation) or mean (uncertainty = standard deviation).", choices=("median", "mean")),
    ParamSpec("tta_scales", [1.0, 0.75, 1.25], "Model input long-side factors for tta members, each plain and flipped (models with a long-side input rule)."),
    ParamSpec("confidence_tta", False, "Single pass: confidence from the agreement with a horizontally flipped pass (one more forward pass per frame)."),
    ParamSpec("confidence_uncertainty_scale", 0.05, "Relative depth uncertainty (ensemble spread or flip disagreement ÷ depth) at which confidence is 0.5.", range=(1e-4, 10.0)),
    ParamSpec("denoising_steps", 0, "Multi-step models (Marigold): DDIM steps per pass (0 = the model card's diffusion.steps).", range=(0, 1000)),
    ParamSpec("temporal_smoothing", False, "Steady the frame-to-frame scale/shift flicker: align each prediction to the previous output, EMA of the correction, reset on scene cuts."),
    ParamSpec("temporal_alpha", 0.25, "Weight of the new frame's own scale/shift in temporal smoothing (smaller = steadier, slower).", range=(0.01, 1.0)),
    ParamSpec("temporal_reset_residual", 0.15, "Temporal smoothing restarts when the aligned frames still differ by this much (median relative residual).", range=(0.001, 10.0)),
    ParamSpec("temporal_max_correction", 0.3, "Cap of the scale correction temporal smoothing applies (|ln s|): a larger change is followed faster instead of held back.", range=(0.001, 10.0)),
    ParamSpec("cloud_decimation", 1, "Keep every n-th pixel in both directions of the organized cloud.", range=(1, 16)),
    ParamSpec("cloud_decimation_mode", "stride", "stride: every n-th pixel; median: one point per n x n block at the median of its valid depths (steadier, keeps surfaces over edges).", choices=DECIMATION_MODES),
    ParamSpec("cloud_edge_filter", "ratio", "Flying pixels at depth edges become NaN in depth/points: ratio (depth jump to a neighbour), normal (surface along the viewing ray) or off.", choices=EDGE_FILTERS),
    ParamSpec("cloud_edge_max_ratio", 0.05, "ratio filter: largest depth jump to a neighbour, as a fraction of the pixel's depth.", range=(0.001, 10.0)),
    ParamSpec("cloud_edge_max_angle_deg", 80.0, "normal filter: largest angle between the surface normal and the viewing ray (degrees).", range=(1.0, 89.9)),
    ParamSpec("cloud_edge_radius", 0, "Edge filters compare neighbours up to this many pixels away (0 = from the model-to-output resize factor).", range=(0, 32)),
    ParamSpec("cloud_min_confidence", 0.0, "depth/points: points with confidence below this become NaN (depth/image keeps them; 0 = keep all).", range=(0.0, 1.0)),
    ParamSpec("sky_disparity_fraction", 0.02, "Disparity models: pixels below this fraction of the frame's near-field disparity are sky, NaN in depth and cloud (0 = off).", range=(0.0, 0.5)),
    ParamSpec("cloud_color", True, "Add a packed rgb field to depth/points."),
    ParamSpec("min_range", 0.0, "Metres: cloud points closer than this (Euclidean) become NaN.", range=(0.0, 1000.0)),
    ParamSpec("max_range", 20.0, "Metres: cloud points farther than this (Euclidean) become NaN.", range=(0.01, 1000.0)),
    ParamSpec("colormap", "turbo", "Colormap of depth/colorized.", choices=tuple(COLORMAPS)),
    ParamSpec("colormap_min_m", 0.3, "Metres shown as the first colour of depth/colorized (fixed, not per frame).", range=(0.0, 1000.0)),
    ParamSpec("colormap_max_m", 10.0, "Metres shown as the last colour of depth/colorized.", range=(0.01, 1000.0)),
    ParamSpec("diagnostics_period_s", 1.0, "Seconds between /diagnostics messages.", dynamic=False, range=(0.1, 60.0)),
)

PARAMS_BY_NAME = {p.name: p for p in PARAMS}


def pipeline_config(values: dict[str, Any]) -> PipelineConfig:
    """Parameter values → the core's config (not yet validated)."""
    return PipelineConfig(
        output_resolution=values["output_resolution"],
        scale_mode=values["scale.mode"],
        fixed_scale=float(values["scale.fixed_scale"]),
        fixed_shift=float(values["scale.fixed_shift"]),
        reference_focal_px=float(values["scale.reference_focal_px"]),
        camera_height=float(values["scale.camera_height"]),
        camera_pitch_deg=float(values["scale.camera_pitch_deg"]) if values["scale.camera_pitch_known"] else math.nan,
        ground_region=tuple(float(v) for v in values["scale.ground_region"]),
        ground_inlier_threshold=float(values["scale.ground_inlier_threshold"]),
        sparse_inlier_threshold=float(values["scale.sparse_inlier_threshold"]),
        scale_smoothing=float(values["scale.smoothing"]),
        scale_outlier_log=float(values["scale.outlier_log"]),
        scale_accept_after=int(values["scale.accept_after"]),
        scale_min_quality=float(values["scale.min_quality"]),
        confidence_gradient_scale=float(values["confidence_gradient_scale"]),
        confidence_threshold=float(values["confidence_threshold"]),
        cloud_decimation=int(values["cloud_decimation"]),
        cloud_decimation_mode=values["cloud_decimation_mode"],
        cloud_edge_filter=values["cloud_edge_filter"],
        cloud_edge_max_ratio=float(values["cloud_edge_max_ratio"]),
        cloud_edge_max_angle_deg=float(values["cloud_edge_max_angle_deg"]),
        cloud_edge_radius=int(values["cloud_edge_radius"]),
        cloud_min_confidence=float(values["cloud_min_confidence"]),
        sky_disparity_fraction=float(values["sky_disparity_fraction"]),
        min_range=float(values["min_range"]),
        max_range=float(values["max_range"]),
        colormap=values["colormap"],
        colormap_min_m=float(values["colormap_min_m"]),
        colormap_max_m=float(values["colormap_max_m"]),
        ensemble_size=int(values["ensemble_size"]),
        ensemble_members=values["ensemble_members"],
        ensemble_reduction=values["ensemble_reduction"],
        tta_scales=tuple(float(v) for v in values["tta_scales"]),
        confidence_tta=bool(values["confidence_tta"]),
        confidence_uncertainty_scale=float(values["confidence_uncertainty_scale"]),
        denoising_steps=int(values["denoising_steps"]),
        temporal_smoothing=bool(values["temporal_smoothing"]),
        temporal_alpha=float(values["temporal_alpha"]),
        temporal_reset_residual=float(values["temporal_reset_residual"]),
        temporal_max_correction=float(values["temporal_max_correction"]),
    )


def parse_backend_list(text: str) -> list[tuple[str, str | None]]:
    """'onnxruntime:cpu, torch' → [('onnxruntime', 'cpu'), ('torch', None)] (None = keep the device parameter)."""
    entries = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        backend, _, device = item.partition(":")
        if backend not in BACKENDS or (device and device not in DEVICES):
            raise ValueError(f"backend_fallback entry {item!r} is not backend[:device] with backend in {', '.join(BACKENDS)} "
                             f"and device in {', '.join(DEVICES)}")
        entries.append((backend, device or None))
    return entries


def defaults() -> dict[str, Any]:
    """Every parameter at its default."""
    return {p.name: p.default for p in PARAMS}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_params_file(path: str | Path, node_name: str = "depth_node", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The node's parameter values from a ROS 2 parameters YAML (``/**:`` or ``<node>:`` → ``ros__parameters``,
    nested keys joined with '.'), on top of the defaults, then ``overrides``; each value checked like the node
    checks it. Raises :class:`ConfigError` naming the file and key, so tools read a params file exactly as the node."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read parameters file {path}: {exc}") from exc
    values = defaults()
    sections = [v for k, v in raw.items() if k in ("/**", node_name, f"/{node_name}") or k.endswith(f"/{node_name}")] if isinstance(raw, dict) else []
    if isinstance(raw, dict) and raw and not sections:
        raise ConfigError(f"{path}: no '/**:' or '{node_name}:' section (found {', '.join(map(str, raw))})")
    for section in sections:
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
            raise ConfigError(f"{path}: each node section needs a 'ros__parameters:' mapping")
        values.update(_flatten(section["ros__parameters"]))
    values.update(overrides or {})
    for name, value in values.items():
        spec = PARAMS_BY_NAME.get(name)
        if spec is None:
            if name == "use_sim_time":
                continue
            close = difflib.get_close_matches(name, PARAMS_BY_NAME, n=1)
            raise ConfigError(f"{path}: unknown parameter {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
            values[name] = value = float(value)  # YAML '2' for a float parameter
        if isinstance(spec.default, list) and isinstance(value, list):
            values[name] = value = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        problem = check_value(spec, value)
        if problem:
            raise ConfigError(f"{path}: {problem}")
    return values


def backend_attempts(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(backend, device) in the order the node tries them: the parameters', then each ``backend_fallback`` entry."""
    return [(values["backend"], values["device"])] + [
        (b, d or values["device"]) for b, d in parse_backend_list(values["backend_fallback"])]


def load_model(values: dict[str, Any], start: int = 0) -> tuple[DepthEstimator, list[str], int]:
    """The model the parameters name, on the first of :func:`backend_attempts` from index ``start`` that loads;
    returns (estimator, why each earlier attempt failed, the index used). Raises :class:`ModelLoadError` when
    all fail."""
    card = resolve_card(values["model_card"])
    failures = []
    for index, (backend, device) in enumerate(backend_attempts(values)):
        if index < start:
            continue
        try:
            estimator = load_estimator(card, backend, device, values["num_threads"], values["precision"],
                                       values["torch_compile"], values["channels_last"])
            return estimator, failures, index
        except ModelLoadError as exc:
            failures.append(f"{backend}:{device}: {exc}")
    if not failures:
        raise ModelLoadError("no backend_fallback entry left to try")
    raise ModelLoadError(failures[0] if len(failures) == 1 else "every backend failed — " + " | ".join(failures))


def check_value(spec: ParamSpec, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``spec`` (type, choice, range), or None."""
    default = spec.default
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, float)
    elif isinstance(default, list):
        ok = not isinstance(value, (str, bytes)) and hasattr(value, "__len__") and len(value) > 0 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)  # rclpy gives array('d')
    else:
        ok = isinstance(value, str)
    if not ok:
        return f"{spec.name} must be a {type(default).__name__}, got {value!r}"
    if spec.choices is not None and value not in spec.choices:
        return f"{spec.name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        return f"{spec.name} must be in [{spec.range[0]:g}, {spec.range[1]:g}], got {value!r}"
    if spec.name == "backend_fallback":
        try:
            parse_backend_list(value)
        except ValueError as exc:
            return str(exc)
    return None


def markdown_table() -> str:
    """The parameter table of docs/node.md (``python -m depth_node.ros.params`` prints it)."""
    rows = ["| name | type | default | choices / range | run time | description |", "|---|---|---|---|---|---|"]
    for p in PARAMS:
        d = p.default
        default = ("true" if d else "false") if isinstance(d, bool) else repr(d) if isinstance(d, str) else str(d)
        allowed = ", ".join(p.choices) if p.choices else (f"[{p.range[0]:g}, {p.range[1]:g}]" if p.range else "")
        rows.append(f"| `{p.name}` | {type(d).__name__} | `{default}` | {allowed} | {'yes' if p.dynamic else 'no'} | {p.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
