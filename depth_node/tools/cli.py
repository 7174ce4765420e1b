"""``depth-node``: the user command line. One verb per module; errors are one ``ERROR:`` line and exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from depth_node import __version__
from depth_node import stop_signals
from depth_node.errors import DepthNodeError

# verb → its module in depth_node.tools. Only the verb asked for is imported: `depth-node run`, the node's own
# process, then loads the node and not eval, synth and train (14 MB of resident memory and 0.3 s of start-up).
VERBS = {"run": "run_cmd", "demo": "demo_cmd", "eval": "eval_cmd", "bench": "bench_cmd", "dataset-to-bag": "dataset_cmd",
         "synth": "synth_cmd", "train": "train_cmd", "adapt": "adapt_cmd", "models": "models_cmd", "export": "export_cmd", "build-engine": "engine_cmd",
         "bag-recover": "recover_cmd"}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or of the verb ``only``."""
    parser = argparse.ArgumentParser(
        prog="depth-node",
        description="Monocular depth for ROS 2: run the node, evaluate it on bags, make test data, manage models.",
        epilog="run 'depth-node VERB --help' for each verb's options and examples",
    )
    parser.add_argument("--version", action="version", version=f"depth_node {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, module in VERBS.items():
        if only is None or verb == only:
            importlib.import_module(f"depth_node.tools.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        stop_signals.catch()  # the node's process: SIGINT/SIGTERM end it with 0 from here on, imports included
    ros_args: list[str] = []
    if "--ros-args" in argv:  # everything from --ros-args on belongs to ROS, not to argparse
        cut = argv.index("--ros-args")
        argv, ros_args = argv[:cut], argv[cut + 1 :]
    args = build_parser(argv[0] if argv and argv[0] in VERBS else None).parse_args(argv)
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
    except BrokenPipeError:  # `depth-node models | head`: the reader left; no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
