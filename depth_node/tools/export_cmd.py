"""``depth-node export``: its arguments; the job is :mod:`depth_node.workflows.export`."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_node.workflows import export
from depth_node.workflows.export import ExportRequest, export_card

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
                       description=export.__doc__.strip(), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("card", help="model card path or name")
    p.add_argument("-o", "--output", type=Path, default=None, help="ONNX file to write (default: beside the weights, <name>.onnx)")
    p.add_argument("--size", type=_size, default=(480, 640), help="camera image HEIGHTxWIDTH used to trace and verify (default 480x640)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="max |onnx − torch| / max |torch| accepted (default 1e-3)")
    p.add_argument("--card", type=Path, dest="card_out", help="card to write (default: the ONNX file's path with .yaml)")
    p.add_argument("--name", help="name in the written card (default: the source card's name + _onnx or _float)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    return export_card(ExportRequest(args.card, args.output, args.size, args.opset, args.tolerance, args.card_out, args.name))
