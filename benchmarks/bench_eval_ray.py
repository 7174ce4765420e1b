#!/usr/bin/env python3
"""`depth-node eval` of many small bags: serially in one process, then on a local Ray cluster of N workers.

Renders one bag with `depth-node synth` (exact depth) and links it N times as separate bags (as a fleet of short
recordings on shared storage would be), then runs the same `depth-node eval` command twice — without and with
`--ray --workers W` — and prints wall time, frames per second over all bags and their ratio, and whether the two
runs' all-bags metrics agree. Both runs write no output bag (--no-bag): the comparison is of scoring work.

    .venv/bin/python benchmarks/bench_eval_ray.py [--bags 16] [--frames 10] [--size 320x240] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "depth_node.tools.cli"]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    run = subprocess.run([*CLI, *args], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"depth-node {' '.join(args[:3])} … failed:\n{run.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bags", type=int, default=16, help="bags (default 16)")
    parser.add_argument("--frames", type=int, default=10, help="frames per bag (default 10)")
    parser.add_argument("--size", default="320x240", help="image size (default 320x240)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
    parser.add_argument("--model", default="default", help="model_card (default: the embedded default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        timed(["synth", str(root / "one"), "--frames", str(args.frames), "--size", args.size, "--no-folder"])
        bags = []
        for n in range(args.bags):
            (root / f"bag{n:02d}").mkdir()
            for item in (root / "one" / "bag").iterdir():
                os.symlink(item, root / f"bag{n:02d}" / item.name)
            bags.append(str(root / f"bag{n:02d}"))
        common = [*bags, "--no-bag", "-p", f"model_card:={args.model}"]
        serial_s = timed(["eval", *common, "-o", str(root / "serial")])
        ray_s = timed(["eval", *common, "-o", str(root / "ray"), "--ray", "--workers", str(args.workers)])
        frames = args.bags * args.frames
        serial = json.loads((root / "serial" / "summary.json").read_text())["all_bags"]
        clustered = json.loads((root / "ray" / "summary.json").read_text())["all_bags"]
    same = {k: v["metrics"] for k, v in serial.items()} == {k: v["metrics"] for k, v in clustered.items()}
    print(f"{platform.machine()}, {os.cpu_count()} CPUs; {args.bags} bags x {args.frames} frames {args.size}, model {args.model}")
    print("| run | wall s | frames/s | ratio |")
    print("|---|---|---|---|")
    print(f"| serial | {serial_s:.1f} | {frames / serial_s:.1f} | 1.00 |")
    print(f"| --ray --workers {args.workers} | {ray_s:.1f} | {frames / ray_s:.1f} | {serial_s / ray_s:.2f} |")
    print(f"all-bags metrics equal: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
