"""``depth-node build-engine``: build (or verify the cache of) a TensorRT engine for an ONNX model card."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from depth_node.estimators.card import load_card
from depth_node.estimators.tensorrt_runner import TensorrtEstimator
from depth_node.paths import resolve_card

EPILOG = """examples:
  depth-node export depth_anything_v2_small && depth-node build-engine models/weights/depth_anything_v2_small.yaml
  depth-node build-engine my_model.yaml --precision fp32 --cache /data/engines
The node uses the same cache (backend: tensorrt); DEPTH_NODE_ENGINE_CACHE moves its default."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-engine", help="build and cache a TensorRT engine for an ONNX model card",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("card", help="model card path or name (its weights must be an .onnx file with a fixed input.size)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="engine precision (default fp16)")
    p.add_argument("--cache", type=Path, default=None, help="engine cache folder (default ~/.cache/depth_node/engines)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    start = time.monotonic()
    estimator = TensorrtEstimator(load_card(resolve_card(args.card)), precision=args.precision, cache_dir=args.cache)
    print(f"{estimator.name}: {estimator.load_info} in {time.monotonic() - start:.1f} s")
    return 0
