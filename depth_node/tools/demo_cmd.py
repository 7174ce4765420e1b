"""``depth-node demo``: its arguments; the job is :mod:`depth_node.workflows.demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_node.workflows import demo
from depth_node.workflows.demo import REAL_BAG, run_demo

EPILOG = """examples:
  make demo                                     # = depth-node demo --out demo_out
  depth-node demo --model fastdepth             # the same with another model card
  depth-node demo --frames 30 --real-bag my_rgbd_bag/
then: open demo_out/demo.png and demo_out/*_eval/report.html; Foxglove opens demo_out/synthetic_eval/bag
      (ros2 bag play plays it on a ROS 2 install; pip has no ros2 bag)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the node on the default model against a synthetic and a real bag, and score it",
                       description=demo.__doc__.split(":", 1)[1].strip(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (replaced if an earlier demo made it)")
    p.add_argument("--model", default="default", help="model card (default: the embedded default model)")
    p.add_argument("--frames", type=int, default=12, help="synthetic frames to render (default 12)")
    p.add_argument("--real-bag", type=Path, default=REAL_BAG, help=f"a real RGB-D bag, used when present (default {REAL_BAG})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    return run_demo(args.out, args.model, args.frames, args.real_bag)
