"""``depth-node bench``: its arguments; the job is :mod:`depth_node.workflows.bench`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from depth_node.core.parameters import INPUT_TRANSPORTS
from depth_node.workflows import bench
from depth_node.workflows.bench import SOAK_S, BenchOptions, run_bench

EPILOG = """examples:
  depth-node bench                                    # default model, 640x480 rgb8 at 30 Hz for 20 s
  depth-node bench --rate 60 --duration 60 --check    # a flood: bounded latency, drops counted, flat memory
  depth-node bench --soak                             # 10 minutes
  depth-node bench --model fastdepth -p num_threads:=2 --transport compressed --out out/bench
micro-benchmarks of the hot kernels against naive baselines: benchmarks/bench_kernels.py"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="play a synthetic camera into the real node and report latency, rate, drops, CPU, memory",
                       description=bench.__doc__.split(":", 1)[1].strip(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="model card (default: the embedded default model)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE", help="node parameter (repeatable)")
    p.add_argument("--rate", type=float, default=30.0, help="camera frames per second (default 30)")
    p.add_argument("--size", default="640x480", help="camera image WIDTHxHEIGHT (default 640x480)")
    p.add_argument("--encoding", choices=("rgb8", "bgr8", "mono8"), default="rgb8", help="raw image encoding (default rgb8)")
    p.add_argument("--transport", choices=INPUT_TRANSPORTS, default="raw", help="raw Image or JPEG CompressedImage")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of camera stream (default 20)")
    p.add_argument("--soak", action="store_true", help=f"a soak run: --duration {SOAK_S:.0f}")
    p.add_argument("--all-outputs", action="store_true",
                   help="also subscribe to depth/camera_info, depth/confidence and depth/points (the node computes only what "
                        "someone subscribes to; default: depth/image alone)")
    p.add_argument("--check", action="store_true", help="exit 1 unless latency, rate and memory stay within the bounds above")
    p.add_argument("--out", type=Path, default=None, help="write bench.json, bench.md (a table row) and rss.csv here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x480, got {args.size!r}") from None
    options = BenchOptions(args.model, tuple(args.param), args.rate, width, height, args.encoding, args.transport,
                           SOAK_S if args.soak else args.duration, args.all_outputs)
    report = run_bench(options, args.out or Path(f"/tmp/depth_node_bench_{os.getpid()}"))
    if args.check:
        failures = [f"{name}: {detail}" for name, (ok, detail) in report["checks"].items() if not ok]
        for line in failures:
            print(f"CHECK FAILED {line}")
        return 1 if failures else 0
    return 0
