"""``depth-node export``: a torch model card → ONNX file + a card for it, checked against torch.

The ONNX graph has a FIXED input size: the model input for a camera image of ``--size`` under the card's
resize rules (the TorchScript exporter bakes the ViT patch grid into the graph). The written card says so in
``input.size``; export again for a camera with another aspect ratio."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import yaml

from depth_node.errors import DepthNodeError

EPILOG = """examples:
  depth-node export depth_anything_v2_small               # models/weights/depth_anything_v2_small.onnx + .yaml
  depth-node export my_card.yaml -o /tmp/da.onnx --size 480x640 --tolerance 1e-4
then: depth-node run --ros-args -p model_card:=/tmp/da.yaml"""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        return h, w
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH of the camera image, e.g. 480x640, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a torch model card to ONNX (verified against torch)",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("card", help="model card path or name")
    p.add_argument("-o", "--output", type=Path, default=None, help="ONNX file to write (default: beside the weights, <name>.onnx)")
    p.add_argument("--size", type=_size, default=(480, 640), help="camera image HEIGHTxWIDTH used to trace and verify (default 480x640)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="max |onnx − torch| / max |torch| accepted (default 1e-3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    import torch

    from depth_node.estimators.registry import load_estimator
    from depth_node.paths import resolve_card

    card_path = resolve_card(args.card)
    estimator = load_estimator(card_path, backend="torch")
    if not hasattr(estimator, "export_module"):
        raise DepthNodeError(f"{estimator.name} is not a torch model (family {estimator.card.family}); nothing to export")
    wrapper = estimator.export_module()
    output = args.output or estimator.card.weights.parent / f"{estimator.name}.onnx"
    output.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = estimator.preprocess(rng.integers(0, 256, (*args.size, 3), dtype=np.uint8))

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(wrapper, x, str(output), dynamo=False, opset_version=args.opset, input_names=["image"],
                          output_names=["prediction"])
        reference = wrapper(x).float().numpy()
    error = verify(output, x.float().numpy(), reference)
    print(f"wrote {output}: max |onnx - torch| / max |torch| = {error:.2e} (tolerance {args.tolerance:g})")
    if not error <= args.tolerance:
        raise DepthNodeError(f"ONNX Runtime disagrees with torch ({error:.2e} > {args.tolerance:g}): the export is not trustworthy")
    card_out = output.with_suffix(".yaml")
    data = yaml.safe_load(Path(card_path).read_text())
    data.update(name=f"{data['name']}_onnx", weights=output.name)
    data["input"] = {k: v for k, v in data.get("input", {}).items() if k not in ("long_side", "multiple_of")}
    data["input"]["size"] = [int(x.shape[2]), int(x.shape[3])]  # the traced, fixed model input
    card_out.write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {card_out} (fixed input {x.shape[3]}x{x.shape[2]}): use it with -p model_card:={card_out}")
    return 0


def verify(onnx_path: Path, x: np.ndarray, reference: np.ndarray) -> float:
    """Relative max error of ONNX Runtime (CPU) against the torch reference on the same input."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    if got.shape != reference.shape:
        raise DepthNodeError(f"ONNX output shape {got.shape} differs from torch's {reference.shape}")
    return float(np.abs(got - reference).max() / max(float(np.abs(reference).max()), 1e-12))
