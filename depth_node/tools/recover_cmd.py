"""``depth-node bag-recover``: a rosbag2 recording cut short → a complete MCAP bag of everything before the cut.

For a recorder killed before it closed its bag (no metadata.yaml, an MCAP file without its index or footer), a copy
that stopped half-way, or an SQLite file missing its last pages — what ``ros2 bag reindex`` / ``mcap recover`` do,
on a pip install. ``depth-node eval`` does it by itself for a bag it cannot open (into OUTPUT/recovered/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_node.eval.bag_recover import recover

EPILOG = """examples:
  depth-node bag-recover out/eval/bag out/eval/bag_recovered     # an eval killed with SIGKILL
  depth-node bag-recover rosbag2_2026_12_06/rosbag2_2026_12_06_0.mcap fixed_bag
then: depth-node eval fixed_bag; Foxglove opens it (ros2 bag play, on a ROS 2 install)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bag-recover", help="read a cut-short rosbag2 recording into a complete bag",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", type=Path, help="the damaged recording: a bag folder, or its .mcap / .db3 file")
    p.add_argument("out", type=Path, help="bag folder to write (must not exist)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    if args.out.exists():
        raise FileExistsError(f"{args.out} exists: give a new folder for the recovered bag")
    recovery = recover(args.bag, args.out)
    print(recovery.describe())
    return 0
