"""Model cards: one YAML file per model in ``models/`` saying how to load it, feed it and read its output.

Example (every key; defaults in comments)::

    name: tiny-depth                 # required; shown in logs and /diagnostics
    family: onnx                     # required; a key of depth_node.estimators.registry.FAMILIES
    description: what it is          # optional
    license: Apache-2.0              # required: the weights' licence
    weights: tiny-depth.onnx         # required; relative to the card's folder, or absolute
    input:
      size: [240, 320]               # fixed [height, width]; omit to read it from a static model, or use:
      long_side: 518                 #   resize so the long side is about this (aspect kept) ...
      multiple_of: 14                #   ... and both sides are multiples of this (default 1)
      keep_aspect: true              #   false: stretch to long_side × long_side, for networks trained on squashed images
      channels: rgb                  # rgb | bgr
      scale: 0.00392156862745098     # uint8 value × scale before mean/std (default 1/255)
      mean: [0.485, 0.456, 0.406]    # default [0, 0, 0]
      std: [0.229, 0.224, 0.225]     # default [1, 1, 1]
      layout: nchw                   # nchw | nhwc
      dtype: float32                 # float32 | float16 | uint8 (uint8 skips scale/mean/std)
      interpolation: area            # area | linear | cubic (downscaling the camera image)
    output:
      space: depth                   # depth | disparity | sqrt_disparity
      invariance: metric             # metric | affine | scale
      unit_scale: 1.0                # raw output × this (e.g. metres per count of a quantized model)
      index: 0                       # which model output holds the prediction
      confidence_index: null         # which output is a [0, 1] confidence head, if any

Validation happens once, here; every error names the card file, the key and the bad value.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from depth_node.core.estimator import OutputSpec
from depth_node.core.spaces import Invariance, OutputSpace
from depth_node.errors import ModelLoadError
from depth_node.paths import is_card_name, models_dir

_INTERPOLATIONS = ("area", "linear", "cubic")


@dataclass(frozen=True)
class InputRules:
    """How a camera image becomes the model's input tensor."""

    size: tuple[int, int] | None = None  # (height, width)
    long_side: int | None = None
    multiple_of: int = 1
    channels: str = "rgb"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str = "nchw"
    dtype: str = "float32"
    interpolation: str = "area"
    keep_aspect: bool = True  # False: a square long_side × long_side input, whatever the camera's aspect

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the model input for a ``width`` × ``height`` image."""
        if self.size is not None:
            return self.size
        if self.long_side is None:
            return height, width
        m = self.multiple_of
        if not self.keep_aspect:
            side = max(m, round(self.long_side / m) * m)
            return side, side
        s = self.long_side / max(height, width)
        return max(m, round(height * s / m) * m), max(m, round(width * s / m) * m)


@dataclass(frozen=True)
class ModelCard:
    """A parsed, validated model card. ``weights`` is an absolute path."""

    name: str
    family: str
    license: str
    weights: Path
    input: InputRules
    output: OutputSpec
    output_index: int = 0
    confidence_index: int | None = None
    description: str = ""
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _fail(where: str, key: str, message: str) -> ModelLoadError:
    return ModelLoadError(f"model card {where}: '{key}' {message}")


def _choice(where: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(where, key, f"must be one of {', '.join(choices)} (got {value!r})")
    return str(value)


def _triple(where: str, key: str, value: Any, default: tuple[float, ...]) -> tuple[float, float, float]:
    if value is None:
        return default  # type: ignore[return-value]
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise _fail(where, key, f"must be a list of 3 numbers (got {value!r})")
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise _fail(where, key, f"must be a list of 3 numbers (got {value!r})") from None
    if not all(math.isfinite(v) for v in out):
        raise _fail(where, key, f"must be finite (got {value!r})")
    return out  # type: ignore[return-value]


def _positive_int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(where, key, f"must be a positive integer (got {value!r})")
    return value


def _parse_input(where: str, raw: Any) -> InputRules:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail(where, "input", f"must be a mapping (got {type(raw).__name__})")
    size = raw.get("size")
    if size is not None:
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise _fail(where, "input.size", f"must be [height, width] (got {size!r})")
        size = (_positive_int(where, "input.size", size[0]), _positive_int(where, "input.size", size[1]))
    long_side = raw.get("long_side")
    if long_side is not None:
        long_side = _positive_int(where, "input.long_side", long_side)
    if size is not None and long_side is not None:
        raise _fail(where, "input", "gives both 'size' and 'long_side': keep one")
    keep_aspect = raw.get("keep_aspect", True)
    if not isinstance(keep_aspect, bool):
        raise _fail(where, "input.keep_aspect", f"must be true or false (got {keep_aspect!r})")
    if not keep_aspect and long_side is None:
        raise _fail(where, "input.keep_aspect", "false stretches the image to long_side × long_side: give input.long_side too")
    std = _triple(where, "input.std", raw.get("std"), (1.0, 1.0, 1.0))
    if any(s == 0 for s in std):
        raise _fail(where, "input.std", f"must not contain 0 (got {list(std)})")
    scale = raw.get("scale", 1.0 / 255.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise _fail(where, "input.scale", f"must be a positive number (got {scale!r})")
    return InputRules(
        size=size,
        long_side=long_side,
        multiple_of=_positive_int(where, "input.multiple_of", raw.get("multiple_of", 1)),
        channels=_choice(where, "input.channels", raw.get("channels", "rgb"), ("rgb", "bgr")),
        scale=float(scale),
        mean=_triple(where, "input.mean", raw.get("mean"), (0.0, 0.0, 0.0)),
        std=std,
        layout=_choice(where, "input.layout", raw.get("layout", "nchw"), ("nchw", "nhwc")),
        dtype=_choice(where, "input.dtype", raw.get("dtype", "float32"), ("float32", "float16", "uint8")),
        interpolation=_choice(where, "input.interpolation", raw.get("interpolation", "area"), _INTERPOLATIONS),
        keep_aspect=keep_aspect,
    )


def _parse_output(where: str, raw: Any) -> tuple[OutputSpec, int, int | None]:
    if not isinstance(raw, dict):
        raise _fail(where, "output", "is required: a mapping with at least 'space' and 'invariance'")
    space = _choice(where, "output.space", raw.get("space"), tuple(s.value for s in OutputSpace))
    invariance = _choice(where, "output.invariance", raw.get("invariance"), tuple(i.value for i in Invariance))
    unit_scale = raw.get("unit_scale", 1.0)
    if isinstance(unit_scale, bool) or not isinstance(unit_scale, (int, float)) or not unit_scale > 0:
        raise _fail(where, "output.unit_scale", f"must be a positive number (got {unit_scale!r})")
    index = raw.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _fail(where, "output.index", f"must be a non-negative integer (got {index!r})")
    confidence_index = raw.get("confidence_index")
    if confidence_index is not None and (isinstance(confidence_index, bool) or not isinstance(confidence_index, int) or confidence_index < 0):
        raise _fail(where, "output.confidence_index", f"must be a non-negative integer or null (got {confidence_index!r})")
    spec = OutputSpec(OutputSpace(space), Invariance(invariance), float(unit_scale))
    return spec, index, confidence_index


def parse_card(data: Any, path: Path | None = None) -> ModelCard:
    """Validate a card's mapping; ``path`` (the card file) anchors a relative ``weights``."""
    where = str(path) if path else "<inline>"
    if not isinstance(data, dict):
        raise ModelLoadError(f"model card {where}: must be a YAML mapping (got {type(data).__name__})")
    for key in ("name", "family", "license", "weights"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise _fail(where, key, "is required and must be a non-empty string")
    known = {"name", "family", "license", "weights", "input", "output", "description"}  # hf_repo etc. go to extra
    weights = Path(data["weights"]).expanduser()
    if not weights.is_absolute() and path is not None:
        weights = Path(os.path.normpath(path.parent / weights))
    spec, index, confidence_index = _parse_output(where, data.get("output"))
    return ModelCard(
        name=data["name"],
        family=data["family"],
        license=data["license"],
        weights=weights,
        input=_parse_input(where, data.get("input")),
        output=spec,
        output_index=index,
        confidence_index=confidence_index,
        description=str(data.get("description", "")),
        path=path,
        extra={k: v for k, v in data.items() if k not in known},
    )


def card_names(folder: Path | None = None) -> list[str]:
    """What ``model_card`` accepts as a name: the card files of the package's models/ (or ``folder``), without .yaml."""
    return sorted(p.stem for p in (folder or models_dir()).glob("*.yaml") if p.stem != "README")


def load_card(path: str | Path) -> ModelCard:
    """Read and validate a card file."""
    path = Path(path)
    if not path.is_file():
        if is_card_name(str(path)):
            names = card_names()
            close = difflib.get_close_matches(path.stem, names, n=1)
            raise ModelLoadError(
                f"no model card named {path.stem!r} in {models_dir()}" + (f" — did you mean {close[0]!r}?" if close else ".")
                + f" model_card takes one of {', '.join(names)} (depth-node models lists them), or a path to a card YAML file"
            )
        raise ModelLoadError(
            f"model card not found: {path}. Set the 'model_card' parameter to a card YAML file, or to a name "
            "`depth-node models` lists (see models/README.md for the format)."
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"model card {path}: not valid YAML ({exc})") from None
    return parse_card(data, path.resolve())
