"""Every parameter of depth_node, declared once: name, type and default, unit, range or choices, whether it
changes at run time, and a one-line doc.

Everything else is derived from :data:`PARAMS`:

* :class:`PipelineConfig`, what the core, the node and every tool run with: one field per parameter (its name
  with '.' → '_'), the default from here;
* the checks of what users type (:func:`coerce` for one value, :func:`resolve` for layers of values from a
  parameters file and ``-p`` overrides, :func:`cross_field_problems` for the rules between parameters) — the node,
  ``depth-node run`` and ``depth-node eval`` all call :func:`resolve`, so they give the same answer;
* the node's ROS parameter descriptors (``ros.node``), ``config/depth.yaml`` (:func:`params_yaml`) and the table of
  docs/node.md (:func:`markdown_table`): ``python -m depth_node.core.parameters --write`` regenerates the two files.

An integer is a valid double (``max_range:=5`` is 5.0), as ROS users type it; nothing else is converted.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable

import yaml

from depth_node.core.cloud_filter import DECIMATION_MODES, EDGE_FILTERS
from depth_node.core.colorize import COLORMAPS
from depth_node.core.depth_encoding import DEPTH_ENCODINGS, NO_RETURN_VALUES
from depth_node.core.estimator import BACKENDS, COMPILE_MODES, DEVICES, PRECISIONS
from depth_node.core.members import MEMBER_KINDS
from depth_node.core.scale import SCALE_MODES, GroundRegion
from depth_node.errors import ConfigError

OUTPUT_RESOLUTIONS = ("input", "model")
INPUT_TRANSPORTS = ("raw", "compressed")
CAMERA_MODELS = ("rectified", "raw")
ENSEMBLE_REDUCTIONS = ("median", "mean")
REFERENCE_KINDS = ("depth", "points")
# Parameters rclpy itself declares or reads: accepted anywhere, never ours to check.
ROS_OWNED = ("use_sim_time", "start_type_description_service")


def parse_backend_list(text: str) -> list[tuple[str, str | None]]:
    """'onnxruntime:cpu, torch' → [('onnxruntime', 'cpu'), ('torch', None)] (None = keep the device parameter)."""
    entries = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        backend, _, device = item.partition(":")
        if backend not in BACKENDS or (device and device not in DEVICES):
            raise ValueError(f"entries backend[:device] with backend in {', '.join(BACKENDS)} and device in "
                             f"{', '.join(DEVICES)} (bad entry {item!r})")
        entries.append((backend, device or None))
    return entries


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter. ``range`` is inclusive and applies to each element of a list; ``length`` fixes a list's
    size; ``parse`` checks a string's syntax (raises ValueError saying what is allowed)."""

    name: str
    default: bool | int | float | str | tuple[float, ...]
    doc: str
    unit: str = ""
    dynamic: bool = True  # False: read at start-up (changing it needs a restart)
    choices: tuple[str, ...] | None = None
    range: tuple[float, float] | None = None
    length: int | None = None
    parse: Callable[[str], Any] | None = None

    @property
    def field(self) -> str:
        """The attribute of :class:`PipelineConfig` that holds it."""
        return self.name.replace(".", "_")

    @property
    def kind(self) -> str:
        """The ROS parameter type: bool, integer, double, string or double array."""
        d = self.default
        return ("bool" if isinstance(d, bool) else "integer" if isinstance(d, int) else "double" if isinstance(d, float)
                else "double array" if isinstance(d, tuple) else "string")

    def allowed(self) -> str:
        """What a value must be, in words: 'a double in [0.01, 1000] (m)'."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        text = {"bool": "true or false", "integer": "an integer", "double": "a number", "string": "a string",
                "double array": f"a list of {self.length or 'one or more'} numbers"}[self.kind]
        if self.range:
            text += f"{', each' if self.kind == 'double array' else ''} in [{self.range[0]:g}, {self.range[1]:g}]"
        return text + (f" ({self.unit})" if self.unit else "")


P = Param
PARAMS: tuple[Param, ...] = (
    # --- model (read at start-up) ---
    P("model_card", "default", "Model card: a YAML path, or the name of a card in the package's models/ folder.", dynamic=False),
    P("backend", "auto", "Inference runtime; auto picks the one the card's weights need (.onnx: onnxruntime, HF folder: torch, .tflite: tflite).", dynamic=False, choices=BACKENDS),
    P("device", "cpu", "Where the model runs (onnxruntime: cpu, cuda, tensorrt execution providers; torch: cpu, cuda).", dynamic=False, choices=DEVICES),
    P("backend_fallback", "", "Comma-separated backend[:device] entries tried in order when the model fails to load on backend/device, e.g. 'onnxruntime:cpu' (empty = none).", dynamic=False, parse=parse_backend_list),
    P("precision", "fp32", "Numeric precision of torch models (fp16/bf16 keep norm layers in fp32) and TensorRT engines (fp16); ONNX Runtime and LiteRT run the graph as exported (a WARN says so).", dynamic=False, choices=PRECISIONS),
    P("torch_compile", "off", "torch.compile mode for torch models (first frame compiles; reduce-overhead also captures CUDA graphs).", dynamic=False, choices=COMPILE_MODES),
    P("channels_last", False, "Channels-last memory format for torch models (faster convolutions on tensor-core GPUs).", dynamic=False),
    P("num_threads", 0, "CPU threads for the runtime (0 = runtime default).", dynamic=False, range=(0, 64)),
    # --- input ---
    P("input_transport", "raw", "raw: subscribe to 'image' (sensor_msgs/Image); compressed: to 'image/compressed'.", dynamic=False, choices=INPUT_TRANSPORTS),
    P("camera_model", "rectified", "What the image is: rectified (image_rect; intrinsics from camera_info P, as depth_image_proc projects) or raw (image_raw; undistorted and rectified here with K, D, R, P first). Outputs are in the rectified geometry (depth/camera_info: P rescaled, D zero).", choices=CAMERA_MODELS),
    P("sync_slop_s", 0.05, "The largest image/camera_info stamp difference accepted as a pair.", "s", range=(0.0, 1.0)),
    P("use_last_camera_info", True, "When no camera_info is within sync_slop_s, use the most recent one (bags, drivers with odd stamps)."),
    P("fallback_hfov_deg", 60.0, "Horizontal field of view assumed while no camera_info has ever arrived (0 = wait for camera_info).", "deg", range=(0.0, 179.0)),
    P("max_rate_hz", 0.0, "Process at most this many frames per second (0 = as fast as the model allows).", "Hz", range=(0.0, 1000.0)),
    # --- output ---
    P("output_resolution", "input", "Grid of the published depth: input (the camera image's) or model (the model's output grid, cheaper).", choices=OUTPUT_RESOLUTIONS),
    P("depth_encoding", "32FC1", "32FC1: metres, NaN invalid; 16UC1: millimetres, 0 invalid (REP 118).", choices=DEPTH_ENCODINGS),
    P("depth_no_return", "inf", "32FC1 depth/image pixels without a return in range: inf (REP 117: +Inf for sky and beyond max_range, -Inf closer than min_range, NaN only where there is no estimate) or nan (NaN for all of them). depth/points always uses NaN.", choices=NO_RETURN_VALUES),
    # --- metric scale (core.scale, docs/scale.md) ---
    P("scale.mode", "model", "How the prediction becomes metres: model (metric models), fixed (scale/shift below), ground_plane (floor at scale.camera_height) or sparse (fit to the reference topic: reference_depth, or reference_points with scale.reference points); see docs/scale.md.", choices=SCALE_MODES),
    P("scale.fixed_scale", 1.0, "Scale s in the model's output space for scale.mode fixed (depth = s*p + t; disparity: 1/(s*p + t)).", range=(1e-9, 1e9)),
    P("scale.fixed_shift", 0.0, "Shift t in the model's output space for scale.mode fixed.", range=(-1e9, 1e9)),
    P("scale.reference_focal_px", 0.0, "scale.mode model: focal length on the model's grid the model was trained at; depth is multiplied by f / f_ref (0 = off).", "px", range=(0.0, 1e6)),
    P("scale.camera_height", 0.0, "Height of the camera's optical centre above the floor (scale.mode ground_plane).", "m", range=(0.0, 100.0)),
    P("scale.camera_pitch_known", False, "ground_plane: the camera's pitch is scale.camera_pitch_deg (needed for affine models; checks the floor's tilt for others)."),
    P("scale.camera_pitch_deg", 0.0, "How far the optical axis points below the horizon (ground_plane, with scale.camera_pitch_known).", "deg", range=(-89.0, 89.0)),
    P("scale.ground_region", (0.2, 0.55, 0.8, 1.0), "ground_plane: image window searched for floor, [left, top, right, bottom] as fractions of width/height.", range=(0.0, 1.0), length=4),
    P("scale.ground_inlier_threshold", 0.02, "ground_plane: a pixel is on the floor plane within this fraction of its depth.", range=(0.001, 0.5)),
    P("scale.sparse_inlier_threshold", 0.1, "sparse: a reference pixel is an inlier when the fitted depth is within this fraction of it.", range=(0.001, 0.9)),
    P("scale.reference", "depth", "sparse: the reference topic: depth (reference_depth, sensor_msgs/Image registered to the camera) or points (reference_points, sensor_msgs/PointCloud2, e.g. a LiDAR, projected into the camera).", choices=REFERENCE_KINDS),
    P("scale.reference_extrinsic", (0.0,) * 7, "sparse with points: the cloud's frame in the camera's optical frame, [x, y, z, qx, qy, qz, qw] (m, quaternion; a point p → R p + t). All zeros: looked up with tf2_ros (needs a ROS distro) from the cloud's frame_id to the image's.", range=(-1000.0, 1000.0), length=7),
    P("scale.reference_slop_s", 0.1, "sparse: largest image / reference stamp difference accepted as a pair.", "s", range=(0.0, 10.0)),
    P("scale.smoothing", 0.3, "Weight of each new scale fit in the log-space running average (1 = no smoothing).", range=(0.01, 1.0)),
    P("scale.outlier_log", 0.2, "A fit whose |ln(new/tracked scale)| exceeds this is rejected as an outlier ...", range=(0.001, 10.0)),
    P("scale.accept_after", 3, "... unless this many consecutive fits agree on the jump (the scene or mount changed).", range=(1, 100)),
    P("scale.min_quality", 0.3, "Fits with a lower inlier ratio are ignored (the last good scale is held).", range=(0.0, 1.0)),
    # --- confidence and ensembling (core.confidence, core.ensemble, core.members) ---
    P("confidence_gradient_scale", 0.05, "Relative depth change per pixel at which the gradient-heuristic confidence (single pass of a model without a confidence head) is 0.5.", range=(1e-4, 10.0)),
    P("confidence_threshold", 0.0, "Pixels with confidence below this become invalid in depth and cloud (0 = keep all).", range=(0.0, 1.0)),
    P("ensemble_size", 1, "Passes per frame, aligned and reduced in the model's output space (1 = off); the spread becomes the confidence.", range=(1, 32)),
    P("ensemble_members", "auto", "Ensemble members: noise (seeds of a stochastic model), tta (flip, tta_scales), auto (noise for stochastic models, tta otherwise).", choices=MEMBER_KINDS),
    P("ensemble_reduction", "median", "median (uncertainty = median absolute deviation) or mean (uncertainty = standard deviation).", choices=ENSEMBLE_REDUCTIONS),
    P("tta_scales", (1.0, 0.75, 1.25), "Model input long-side factors for tta members, each plain and flipped (models with a long-side input rule).", range=(0.05, 4.0)),
    P("confidence_tta", False, "Single pass: confidence from the agreement with a horizontally flipped pass (one more forward pass per frame)."),
    P("confidence_uncertainty_scale", 0.05, "Relative depth uncertainty (ensemble spread or flip disagreement ÷ depth) at which confidence is 0.5.", range=(1e-4, 10.0)),
    P("denoising_steps", 0, "Multi-step models (Marigold): DDIM steps per pass (0 = the model card's diffusion.steps).", range=(0, 1000)),
    # --- temporal smoothing (core.temporal) ---
    P("temporal_smoothing", False, "Steady the frame-to-frame scale/shift flicker: align each prediction to the previous output, EMA of the correction, reset on scene cuts."),
    P("temporal_alpha", 0.25, "Weight of the new frame's own scale/shift in temporal smoothing (smaller = steadier, slower).", range=(0.01, 1.0)),
    P("temporal_reset_residual", 0.15, "Temporal smoothing restarts when the aligned frames still differ by this much (median relative residual).", range=(0.001, 10.0)),
    P("temporal_max_correction", 0.3, "Cap of the scale correction temporal smoothing applies (|ln s|): a larger change is followed faster instead of held back.", range=(0.001, 10.0)),
    # --- point cloud (core.cloud_filter, core.cloud) ---
    P("cloud_decimation", 1, "Keep every n-th pixel in both directions of the organized cloud.", range=(1, 16)),
    P("cloud_decimation_mode", "stride", "stride: every n-th pixel; median: one point per n x n block at the median of its valid depths (steadier, keeps surfaces over edges).", choices=DECIMATION_MODES),
    P("cloud_edge_filter", "ratio", "Flying pixels at depth edges become NaN in depth/points: ratio (depth jump to a neighbour), normal (surface along the viewing ray) or off.", choices=EDGE_FILTERS),
    P("cloud_edge_max_ratio", 0.05, "ratio filter: largest depth jump to a neighbour, as a fraction of the pixel's depth.", range=(0.001, 10.0)),
    P("cloud_edge_max_angle_deg", 80.0, "normal filter: largest angle between the surface normal and the viewing ray.", "deg", range=(1.0, 89.9)),
    P("cloud_edge_radius", 0, "Edge filters compare neighbours up to this many pixels away (0 = from the model-to-output resize factor).", "px", range=(0, 32)),
    P("cloud_min_confidence", 0.0, "depth/points: points with confidence below this become NaN (depth/image keeps them; 0 = keep all).", range=(0.0, 1.0)),
    P("sky_disparity_fraction", 0.02, "Disparity models: pixels below this fraction of the frame's near-field disparity are sky: +Inf in depth/image (see depth_no_return), NaN in depth/points (0 = off).", range=(0.0, 0.5)),
    P("cloud_color", True, "Add a packed rgb field to depth/points."),
    P("min_range", 0.0, "Closer than this: -Inf in depth/image (depth along the optical axis, see depth_no_return), NaN in depth/points (Euclidean).", "m", range=(0.0, 1000.0)),
    P("max_range", 20.0, "Farther than this: +Inf in depth/image (depth along the optical axis, see depth_no_return), NaN in depth/points (Euclidean).", "m", range=(0.01, 1000.0)),
    # --- pictures and diagnostics ---
    P("colormap", "turbo", "Colormap of depth/colorized.", choices=tuple(COLORMAPS)),
    P("colormap_min_m", 0.3, "Depth shown as the first colour of depth/colorized (fixed, not per frame).", "m", range=(0.0, 1000.0)),
    P("colormap_max_m", 10.0, "Depth shown as the last colour of depth/colorized.", "m", range=(0.01, 1000.0)),
    P("diagnostics_period_s", 1.0, "Time between /diagnostics messages.", "s", dynamic=False, range=(0.1, 60.0)),
)
del P
PARAMS_BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}


class ParameterError(ConfigError):
    """A parameter value, name or file that cannot be used; the message is one line naming where it came from."""


def show(value: Any) -> str:
    """A value as a user typed it in YAML: true, 5, 'text', [1.0, 2.0]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "array":
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def _number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float))


def coerce(param: Param, value: Any, origin: str = "") -> Any:
    """``value`` checked against ``param`` and in its canonical type (int → float for doubles, a list → tuple);
    raises :class:`ParameterError`: '<origin>: max_range must be a number in [0.01, 1000] (m), got true'."""
    kind, typed = param.kind, value  # typed: as the user gave it, for the message
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "integer":
        ok = _number(value, integer=True)
    elif kind == "double":
        ok = _number(value, integer=False) and math.isfinite(value)
        value = float(value) if ok else value
    elif kind == "double array":
        ok = (not isinstance(value, (str, bytes, Mapping)) and hasattr(value, "__len__") and len(value) > 0
              and all(_number(v, integer=False) and math.isfinite(v) for v in value)
              and (param.length is None or len(value) == param.length))
        value = tuple(float(v) for v in value) if ok else value
    else:
        ok = isinstance(value, str)
    if ok and param.choices is not None:
        ok = value in param.choices
    if ok and param.range is not None:
        ok = all(param.range[0] <= v <= param.range[1] for v in (value if kind == "double array" else (value,)))
    allowed = param.allowed()
    if ok and param.parse is not None:
        try:
            param.parse(value)
        except ValueError as error:
            ok, allowed = False, str(error)
    if not ok:
        raise ParameterError(f"{origin + ': ' if origin else ''}{param.name} must be {allowed}, got {show(typed)}")
    return value


def cross_field_problems(values: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """The rules between parameters: (the parameters involved, what is wrong and what to set) for each broken one."""
    problems = []
    if values["scale.mode"] == "ground_plane" and not values["scale.camera_height"] > 0:
        problems.append((("scale.mode", "scale.camera_height"), "scale.mode ground_plane needs scale.camera_height: the "
                         "optical centre's height above the floor in metres (got 0)"))
    try:
        GroundRegion(*values["scale.ground_region"])
    except (TypeError, ValueError) as error:
        problems.append((("scale.ground_region",), f"scale.ground_region [left, top, right, bottom]: {error}"))
    extrinsic = values["scale.reference_extrinsic"]
    if any(extrinsic) and not any(extrinsic[3:]):
        problems.append((("scale.reference_extrinsic",), "scale.reference_extrinsic [x, y, z, qx, qy, qz, qw] has a zero "
                         "quaternion: give the rotation (0, 0, 0, 1 for none), or all zeros to look it up with tf2_ros"))
    if not values["min_range"] < values["max_range"]:
        problems.append((("min_range", "max_range"), f"need min_range < max_range, got {values['min_range']:g} and "
                         f"{values['max_range']:g}"))
    if not values["colormap_min_m"] < values["colormap_max_m"]:
        problems.append((("colormap_min_m", "colormap_max_m"), "need colormap_min_m < colormap_max_m, got "
                         f"{values['colormap_min_m']:g} and {values['colormap_max_m']:g}"))
    return problems


def _validate(config: Any) -> None:
    """Raise :class:`ConfigError` naming the first bad field (types, ranges, choices, then the cross-field rules)."""
    values = config.parameters()
    for param in PARAMS:
        coerce(param, values[param.name])
    for _, problem in cross_field_problems(values):
        raise ParameterError(problem)


def _parameters(config: Any) -> dict[str, Any]:
    """{parameter name: value} (the ROS names, e.g. 'scale.mode'; lists as lists)."""
    return {p.name: (list(v) if isinstance(v, tuple) else v) for p in PARAMS for v in (getattr(config, p.field),)}


def _from_parameters(cls: type, values: Mapping[str, Any]) -> Any:
    """From {parameter name: value}; names not given keep their defaults (not checked: call ``validate``)."""
    return cls(**{PARAMS_BY_NAME[name].field: value for name, value in values.items() if name in PARAMS_BY_NAME})


def _annotation(param: Param) -> type:
    return tuple if isinstance(param.default, tuple) else type(param.default)


PipelineConfig = dataclasses.make_dataclass(
    "PipelineConfig",
    [(p.field, _annotation(p), dataclasses.field(default=p.default)) for p in PARAMS],
    frozen=True,
    namespace={"validate": _validate, "parameters": _parameters, "from_parameters": classmethod(_from_parameters)},
)
PipelineConfig.__module__ = __name__  # pickling and repr name this module (make_dataclass's module= needs 3.12)
PipelineConfig.__doc__ = ("Every parameter's value, one field per entry of :data:`PARAMS` (name with '.' → '_'), "
                          "defaults from there. Units: the table's; ``validate()`` checks types, ranges, choices and "
                          "the cross-field rules.")


def parameter_default(name: str) -> Any:
    """The default of parameter ``name``: for code that takes a parameter's value with a default (dataclass fields,
    keyword arguments), so the table stays the one place a default is written."""
    return PARAMS_BY_NAME[name].default


def defaults() -> dict[str, Any]:
    """Every parameter at its default, by name."""
    return PipelineConfig().parameters()


def did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, PARAMS_BY_NAME, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _at(origin: str, text: str) -> str:
    return f"{origin}: {text}" if origin else text


def resolve(layers: Iterable[tuple[str, Mapping[str, Any]]], base: Any = None) -> Any:
    """The :class:`PipelineConfig` of ``base`` (default: the defaults) overlaid with each (origin, {name: value})
    layer in order — a parameters file, then ``-p`` overrides, as ROS applies them; or a ``ros2 param set`` on the
    running node's config. Every value is checked where it comes from; an unknown name, a wrong type, a value out of
    range or a broken cross-field rule raises :class:`ParameterError` whose one line names the parameter, the value,
    what is allowed and the origin (when one is given)."""
    values = defaults() if base is None else base.parameters()
    origin_of: dict[str, str] = {}
    for origin, layer in layers:
        for name, value in layer.items():
            if name in ROS_OWNED or name.startswith("qos_overrides."):
                continue
            param = PARAMS_BY_NAME.get(name)
            if param is None:
                raise ParameterError(_at(origin, f"unknown parameter {name!r}{did_you_mean(name)}; "
                                                 "the parameters are listed in docs/node.md and config/depth.yaml"))
            values[name] = coerce(param, value, origin)
            origin_of[name] = origin
    for names, problem in cross_field_problems(values):
        changed = [n for n in names if n in origin_of and values[n] != PARAMS_BY_NAME[n].default]  # what the user moved
        where = sorted({origin_of[n] for n in changed or names if origin_of.get(n)})
        raise ParameterError(_at(" and ".join(where) or ("defaults" if base is None else ""), problem))
    return PipelineConfig.from_parameters(values)


def parse_assignment(text: str) -> tuple[str, Any]:
    """'max_range:=5' → ('max_range', 5): ``-p NAME:=VALUE`` as ``ros2 run`` reads it (the value is YAML)."""

    name, sep, value = text.partition(":=")
    if not sep or not name.strip():
        raise ParameterError(f"-p {text}: a parameter override is NAME:=VALUE, e.g. -p max_range:=5.0")
    try:
        return name.strip(), yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as error:
        raise ParameterError(f"-p {text}: the value is not valid YAML at {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    """A YAML error as one line: where, then what."""
    mark = getattr(error, "problem_mark", None)
    if mark is not None and getattr(error, "problem", None):
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return " ".join(str(error).split())


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_params_file(path: str | Path, node_name: str = "depth_node", require_section: bool = True) -> dict[str, Any]:
    """{name: value} a ROS 2 parameters YAML gives the node ``node_name``: its ``/**:``, ``<node>:`` and
    ``/ns/<node>:`` sections, ``ros__parameters`` keys nested or dotted. Raises :class:`ParameterError` for a file
    that cannot be read or is not a parameters file; values are checked by :func:`resolve`. ``require_section``:
    a file with no section for this node is an error (a tool's file) rather than nothing (a launch file's)."""

    path = Path(path)
    where = f"parameters file {path}"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParameterError(f"{where}: not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ParameterError(f"{where}: cannot be read ({error})") from None
    except yaml.YAMLError as error:
        raise ParameterError(f"{where}: not valid YAML at {_first_line(error)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ParameterError(f"{where}: must be a mapping of node names ('/**:' or '{node_name}:') to "
                             "'ros__parameters:' mappings")
    ours = [key for key in raw if key in ("/**", node_name, f"/{node_name}") or str(key).endswith(f"/{node_name}")]
    if require_section and not ours:
        raise ParameterError(f"{where}: no '/**:' or '{node_name}:' section (found {', '.join(map(str, raw))})")
    values: dict[str, Any] = {}
    for key in ours:
        section = raw[key]
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
            raise ParameterError(f"{where}: section {key!r} needs a 'ros__parameters:' mapping")
        values.update(_flatten(section["ros__parameters"]))
    return values


def load(params_file: str | Path | None, assignments: Iterable[str] = (), node_name: str = "depth_node") -> Any:
    """What the tools run with: the defaults, ``params_file`` (when given), then ``-p NAME:=VALUE`` overrides."""
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if params_file is not None:
        layers.append((f"parameters file {params_file}", read_params_file(params_file, node_name)))
    for text in assignments:
        name, value = parse_assignment(text)
        layers.append((f"-p {text}", {name: value}))
    return resolve(layers)


# ----------------------------------------------------------------------------- derived files
def _yaml_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(repr(v) for v in value) + "]"
    return show(value) if isinstance(value, bool) else json.dumps(value) if isinstance(value, str) else repr(value)


def _doc_line(param: Param) -> str:
    text = f"({'dynamic' if param.dynamic else 'restart'}) {param.doc}"
    if param.choices:
        text += f" One of: {', '.join(param.choices)}."
    elif param.range:
        text += f" Range [{param.range[0]:g}, {param.range[1]:g}]{' each' if param.kind == 'double array' else ''}."
    return text + (f" Unit: {param.unit}." if param.unit else "")


def params_yaml() -> str:
    """config/depth.yaml: every parameter at its default, each under its doc line."""
    lines = [
        "# depth_node parameters: every parameter the node declares, at its default. Generated from",
        "# depth_node/core/parameters.py (python -m depth_node.core.parameters --write); copy it to change values.",
        "# '/**' applies to the node under any name or namespace. (dynamic) = can change at run time with",
        "# `ros2 param set`; (restart) = read at start-up.",
        "/**:",
        "  ros__parameters:",
    ]
    group = ""
    for param in PARAMS:
        prefix, _, leaf = param.name.rpartition(".")
        if prefix != group:
            if prefix:
                lines.append(f"    {prefix}:")
            group = prefix
        indent = "      " if prefix else "    "
        lines += textwrap.wrap(_doc_line(param), 116 - len(indent), initial_indent=indent + "# ", subsequent_indent=indent + "# ")
        lines.append(f"{indent}{leaf}: {_yaml_value(param.default)}")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The parameter table of docs/node.md."""
    rows = ["| name | type | default | unit | choices / range | run time | description |", "|---|---|---|---|---|---|---|"]
    for p in PARAMS:
        allowed = ", ".join(p.choices) if p.choices else (f"[{p.range[0]:g}, {p.range[1]:g}]" if p.range else "")
        rows.append(f"| `{p.name}` | {p.kind} | `{_yaml_value(p.default)}` | {p.unit} | {allowed} | "
                    f"{'yes' if p.dynamic else 'no'} | {p.doc} |")
    return "\n".join(rows)


TABLE_BEGIN, TABLE_END = "<!-- parameters: begin (generated) -->", "<!-- parameters: end -->"


def write_derived(repo: Path) -> list[Path]:
    """Rewrite config/depth.yaml and the table between the markers of docs/node.md; returns the files changed."""
    changed = []
    config = repo / "config" / "depth.yaml"
    if config.read_text() != params_yaml():
        config.write_text(params_yaml())
        changed.append(config)
    doc = repo / "docs" / "node.md"
    text = doc.read_text()
    head, _, rest = text.partition(TABLE_BEGIN)
    _, _, tail = rest.partition(TABLE_END)
    new = f"{head}{TABLE_BEGIN}\n{markdown_table()}\n{TABLE_END}{tail}"
    if new != text:
        doc.write_text(new)
        changed.append(doc)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depth_node.core.parameters",
                                     description="Print the parameter table, or regenerate config/depth.yaml and the "
                                                 "table of docs/node.md from it.")
    parser.add_argument("--write", type=Path, metavar="REPO", nargs="?", const=Path("."),
                        help="rewrite REPO/config/depth.yaml and REPO/docs/node.md (default REPO: .)")
    parser.add_argument("--yaml", action="store_true", help="print config/depth.yaml instead of the markdown table")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_derived(args.write):
            print(f"wrote {path}")
        return 0
    print(params_yaml() if args.yaml else markdown_table(), end="\n" if not args.yaml else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
