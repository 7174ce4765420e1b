"""``depth-node export``: a torch model card, or a TFLite card's network as float, → ONNX file + a card for it,
checked against torch.

Torch cards (Depth Anything V2) get a FIXED input size: the model input for a camera image of ``--size`` under the
card's resize rules (the TorchScript exporter bakes the ViT patch grid into the graph); the written card says so in
``input.size``. TFLite cards (FastDepth) are imported as a float network (``depth_node.train.tflite_import``) whose
ONNX graph takes any batch, height and width: the card keeps the source card's input geometry and gets a
``network:`` block, so ``depth-node train --init`` can fine-tune it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import yaml

from depth_node.backends.onnx_export import export_onnx
from depth_node.backends.torch_backend import image_to_tensor
from depth_node.errors import DepthNodeError
from depth_node.estimators.card import load_card
from depth_node.estimators.registry import load_estimator
from depth_node.paths import resolve_card

EPILOG = """examples:
  depth-node export depth_anything_v2_small               # models/weights/depth_anything_v2_small.onnx + .yaml
  depth-node export my_card.yaml -o /tmp/da.onnx --size 480x640 --tolerance 1e-4
  depth-node export fastdepth -o models/fastdepth_float.onnx --card models/default.yaml --name fastdepth_float   # the default
then: depth-node run --ros-args -p model_card:=/tmp/da.yaml"""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        return h, w
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH of the camera image, e.g. 480x640, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a torch or TFLite model card to ONNX (verified against torch)",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("card", help="model card path or name")
    p.add_argument("-o", "--output", type=Path, default=None, help="ONNX file to write (default: beside the weights, <name>.onnx)")
    p.add_argument("--size", type=_size, default=(480, 640), help="camera image HEIGHTxWIDTH used to trace and verify (default 480x640)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="max |onnx − torch| / max |torch| accepted (default 1e-3)")
    p.add_argument("--card", type=Path, dest="card_out", help="card to write (default: the ONNX file's path with .yaml)")
    p.add_argument("--name", help="name in the written card (default: the source card's name + _onnx or _float)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:

    card_path = resolve_card(args.card)
    if load_card(card_path).weights.suffix == ".tflite":
        return _export_tflite(args, card_path)
    return _export_torch(args, card_path)


def _export_torch(args: argparse.Namespace, card_path: Path) -> int:

    estimator = load_estimator(card_path, backend="torch")
    if not hasattr(estimator, "export_module"):
        raise DepthNodeError(f"{estimator.name} is not a torch model (family {estimator.card.family}); nothing to export")
    output = args.output or estimator.card.weights.parent / f"{estimator.name}.onnx"
    x = estimator.preprocess(np.random.default_rng(0).integers(0, 256, (*args.size, 3), dtype=np.uint8))
    error = export_onnx(estimator.export_module(), x, output, tolerance=args.tolerance, opset=args.opset)
    print(f"wrote {output}: max |onnx - torch| / max |torch| = {error:.2e} (tolerance {args.tolerance:g})")
    data = yaml.safe_load(Path(card_path).read_text())
    data["input"] = {k: v for k, v in data.get("input", {}).items() if k not in ("long_side", "multiple_of", "keep_aspect")}
    data["input"]["size"] = [int(x.shape[2]), int(x.shape[3])]  # the traced, fixed model input
    data["name"] = f"{data['name']}_onnx"
    card_out = _write_card(args, output, data)
    print(f"wrote {card_out} (fixed input {x.shape[3]}x{x.shape[2]}): use it with -p model_card:={card_out}")
    return 0


def _export_tflite(args: argparse.Namespace, card_path: Path) -> int:
    """The TFLite card's network in float (dynamic batch, height, width), verified on a batch of two images."""
    import torch

    from depth_node.train.network import MEAN, STD, card_reference, import_tflite, input_block  # torch

    network, source = import_tflite(str(card_path))
    output = args.output or source.weights.parent / f"{source.name}_float.onnx"
    block = input_block(network.graph.stride, source.input)
    size = source.input.target_size(*args.size)
    images = np.random.default_rng(0).integers(0, 256, (2, *args.size, 3), dtype=np.uint8)
    x = torch.cat([image_to_tensor(image, size, MEAN, STD, 1 / 255, "cpu", torch.float32, "area") for image in images])
    error = export_onnx(network, x, output, dynamic=True, tolerance=args.tolerance, opset=args.opset, output_names=("depth",))
    print(f"wrote {output}: max |onnx - torch| / max |torch| = {error:.2e} (tolerance {args.tolerance:g}); any batch, height, width")
    card_out = Path(args.card_out or output.with_suffix(".yaml"))
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
    card_out = _write_card(args, output, data)
    print(f"wrote {card_out}: use it with -p model_card:={card_out}")
    return 0


def _write_card(args: argparse.Namespace, onnx: Path, data: dict) -> Path:
    """``data`` as the card for ``onnx`` (``--card``, else beside it), named ``--name`` when given."""
    card_out = Path(args.card_out or onnx.with_suffix(".yaml"))
    data.update(name=args.name or data["name"], weights=os.path.relpath(onnx.resolve(), card_out.resolve().parent))
    card_out.parent.mkdir(parents=True, exist_ok=True)
    card_out.write_text(yaml.safe_dump(data, sort_keys=False, width=110))
    return card_out
