"""``depth-node dataset-to-bag``: a folder RGB-D dataset → a rosbag2 bag that ``depth-node eval`` and ``ros2 bag play`` read.

Layouts: rgbd_dev (index.json, as ../shared/data/rgbd_dev and depth-node synth write), TUM RGB-D (rgb.txt / depth.txt,
depth / 5000) and KITTI depth completion (val_selection_cropped: image/, groundtruth_depth/, intrinsics/). Topics as
the RGB-D bags in ../shared/data/bags: /camera/color/image_raw (rgb8), …/compressed (jpeg), /camera/color/camera_info,
/camera/aligned_depth_to_color/image_raw (32FC1 metres, NaN = no measurement) and its camera_info.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depth_node.eval.bag_output import STORAGES
from depth_node.eval.datasets import LAYOUTS, dataset_to_bag
from depth_node.tools.synth_cmd import _intrinsics

EPILOG = """examples:
  depth-node dataset-to-bag ../shared/data/rgbd_dev out/rgbd_dev_bag --real-only --scene indoor
  depth-node dataset-to-bag rgbd_dataset_freiburg1_desk out/fr1_desk            # TUM: intrinsics from the name
  depth-node dataset-to-bag val_selection_cropped out/kitti --storage sqlite3
then: depth-node eval out/rgbd_dev_bag -p model_card:=fastdepth"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset-to-bag", help="convert an RGB-D folder dataset (rgbd_dev, TUM, KITTI) to a bag",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="dataset folder")
    p.add_argument("out", type=Path, help="bag folder to write (must not exist)")
    p.add_argument("--layout", choices=LAYOUTS, help="dataset layout (default: detected from the files)")
    p.add_argument("--storage", choices=STORAGES, default="mcap", help="bag storage (default: mcap)")
    p.add_argument("--intrinsics", type=_intrinsics, metavar="FX,FY,CX,CY", help="TUM: camera intrinsics when the folder name does not say")
    p.add_argument("--rate", type=float, default=10.0, help="Hz of the stamps for layouts without times (default 10)")
    p.add_argument("--real-only", action="store_true", help="rgbd_dev: leave out records marked synthetic")
    p.add_argument("--scene", help="rgbd_dev: only records whose scene starts with this (indoor, outdoor)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    written, layout = dataset_to_bag(args.dataset, args.out, args.layout, args.storage, args.intrinsics, args.rate,
                                     not args.real_only, args.scene)
    if written == 0:
        print(f"ERROR: no frames matched in {args.dataset} ({layout}); nothing but an empty bag at {args.out}", file=sys.stderr)
        return 2
    print(f"wrote {written} frames ({layout}) to {args.out}")
    return 0
