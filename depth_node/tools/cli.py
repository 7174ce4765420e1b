"""``depth-node``: the user command line. One verb per module; errors are one ``ERROR:`` line and exit 2."""

from __future__ import annotations

import argparse
import sys

from depth_node import __version__
from depth_node.errors import DepthNodeError
from depth_node.tools import (
    bench_cmd,
    dataset_cmd,
    demo_cmd,
    engine_cmd,
    eval_cmd,
    export_cmd,
    models_cmd,
    run_cmd,
    synth_cmd,
    train_cmd,
)

VERBS = (run_cmd, demo_cmd, eval_cmd, bench_cmd, dataset_cmd, synth_cmd, train_cmd, models_cmd, export_cmd, engine_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-node",
        description="Monocular depth for ROS 2: run the node, evaluate it on bags, make test data, manage models.",
        epilog="run 'depth-node VERB --help' for each verb's options and examples",
    )
    parser.add_argument("--version", action="version", version=f"depth_node {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        verb.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ros_args: list[str] = []
    if "--ros-args" in argv:  # everything from --ros-args on belongs to ROS, not to argparse
        cut = argv.index("--ros-args")
        argv, ros_args = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    if ros_args and args.verb != "run":
        print(f"ERROR: --ros-args only applies to 'run', not '{args.verb}'", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, ros_args) or 0)
    except (DepthNodeError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
