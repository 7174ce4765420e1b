"""``depth-node models``: the model cards depth_node ships, where each expects its weights, and downloads."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_node.errors import DepthNodeError
from depth_node.estimators.catalog import describe, download, find
from depth_node.paths import models_dir

EPILOG = """examples:
  depth-node models                                         # list cards, their output space and weights
  depth-node models download depth_anything_v2_small        # fetch the weights (needs internet)
  depth-node run --ros-args -p model_card:=depth_anything_v2_metric_indoor_small"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model cards and download their weights", description=__doc__.split(":", 1)[1].strip(),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", choices=("list", "download"), default="list", help="list (default) or download")
    p.add_argument("name", nargs="?", help="card name (for download)")
    p.add_argument("--revision", default=None, help="Hugging Face revision (branch, tag or commit) to download")
    p.add_argument("--folder", type=Path, default=None, help="card folder (default: the package's models/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    folder = args.folder or models_dir()
    if args.action == "list":
        print("\n".join(describe(folder)))
        return 0
    if not args.name:
        raise DepthNodeError("download needs a card name: depth-node models download NAME (see: depth-node models)")
    return download(find(folder, args.name), args.revision)
