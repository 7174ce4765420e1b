"""Export a torch model card, or a TFLite card's network as float, → ONNX file + a card for it,
checked against torch.

Torch cards (Depth Anything V2) get a FIXED input size: the model input for a camera image of ``--size`` under the
card's resize rules (the TorchScript exporter bakes the ViT patch grid into the graph); the written card says so in
``input.size``. TFLite cards (FastDepth) are imported as a float network (``depth_node.train.tflite_import``) whose
ONNX graph takes any batch, height and width: the card keeps the source card's input geometry and gets a
``network:`` block, so ``depth-node train --init`` can fine-tune it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from depth_node.backends.onnx_export import export_onnx
from depth_node.backends.torch_backend import image_to_tensor
from depth_node.errors import DepthNodeError
from depth_node.estimators.card import load_card
from depth_node.estimators.registry import load_estimator
from depth_node.paths import resolve_card


@dataclass(frozen=True)
class ExportRequest:
    """card: a path or a name in models/; output: the ONNX file (None: beside the weights); size: the camera image
    (height, width) traced and verified; tolerance: max |onnx − torch| / max |torch|; card_out: the card to write
    (None: the ONNX path with .yaml); name: the written card's name (None: the source's + _onnx or _float)."""

    card: str
    output: Path | None = None
    size: tuple[int, int] = (480, 640)
    opset: int = 17
    tolerance: float = 1e-3
    card_out: Path | None = None
    name: str | None = None


def export_card(request: ExportRequest) -> int:
    """Export and verify; prints what was written. Returns 0."""
    card_path = resolve_card(request.card)
    if load_card(card_path).weights.suffix == ".tflite":
        return _export_tflite(request, card_path)
    return _export_torch(request, card_path)


def _export_torch(request: ExportRequest, card_path: Path) -> int:
    estimator = load_estimator(card_path, backend="torch")
    if not hasattr(estimator, "export_module"):
        raise DepthNodeError(f"{estimator.name} is not a torch model (family {estimator.card.family}); nothing to export")
    output = request.output or estimator.card.weights.parent / f"{estimator.name}.onnx"
    x = estimator.preprocess(np.random.default_rng(0).integers(0, 256, (*request.size, 3), dtype=np.uint8))
    error = export_onnx(estimator.export_module(), x, output, tolerance=request.tolerance, opset=request.opset)
    print(f"wrote {output}: max |onnx - torch| / max |torch| = {error:.2e} (tolerance {request.tolerance:g})")
    data = yaml.safe_load(Path(card_path).read_text())
    data["input"] = {k: v for k, v in data.get("input", {}).items() if k not in ("long_side", "multiple_of", "keep_aspect")}
    data["input"]["size"] = [int(x.shape[2]), int(x.shape[3])]  # the traced, fixed model input
    data["name"] = f"{data['name']}_onnx"
    card_out = _write_card(request, output, data)
    print(f"wrote {card_out} (fixed input {x.shape[3]}x{x.shape[2]}): use it with -p model_card:={card_out}")
    return 0


def _export_tflite(request: ExportRequest, card_path: Path) -> int:
    """The TFLite card's network in float (dynamic batch, height, width), verified on a batch of two images."""
    import torch

    from depth_node.train.network import (  # torch
        MEAN,
        STD,
        card_reference,
        import_tflite,
        input_block,
    )

    network, source = import_tflite(str(card_path))
    output = request.output or source.weights.parent / f"{source.name}_float.onnx"
    block = input_block(network.graph.stride, source.input)
    size = source.input.target_size(*request.size)
    images = np.random.default_rng(0).integers(0, 256, (2, *request.size, 3), dtype=np.uint8)
    x = torch.cat([image_to_tensor(image, size, MEAN, STD, 1 / 255, "cpu", torch.float32, "area") for image in images])
    error = export_onnx(network, x, output, dynamic=True, tolerance=request.tolerance, opset=request.opset, output_names=("depth",))
    print(f"wrote {output}: max |onnx - torch| / max |torch| = {error:.2e} (tolerance {request.tolerance:g}); any batch, height, width")
    card_out = Path(request.card_out or output.with_suffix(".yaml"))
    data = {
        "name": f"{source.name}_float",
        "family": "onnx",
        "description": f"{source.name} imported from its TFLite file ({source.weights.name}) to float32 by `depth-node export`. "
                       + (source.description or ""),
        "license": source.license,
        "input": block,
        "output": {"space": source.output.space.value, "invariance": source.output.invariance.value},
        "network": {"tflite": card_reference(card_path, card_out.parent)},
    }
    card_out = _write_card(request, output, data)
    print(f"wrote {card_out}: use it with -p model_card:={card_out}")
    return 0


def _write_card(request: ExportRequest, onnx: Path, data: dict) -> Path:
    """``data`` as the card for ``onnx`` (``--card``, else beside it), named ``--name`` when given."""
    card_out = Path(request.card_out or onnx.with_suffix(".yaml"))
    data.update(name=request.name or data["name"], weights=os.path.relpath(onnx.resolve(), card_out.resolve().parent))
    card_out.parent.mkdir(parents=True, exist_ok=True)
    card_out.write_text(yaml.safe_dump(data, sort_keys=False, width=110))
    return card_out
