#!/usr/bin/env python3
"""Two ONNX files of the same input, timed interleaved on ONNX Runtime's CPU provider: per-run milliseconds, medians
over blocks, and the median paired difference (the machine's load drifts; pairs taken back to back cancel most of it).

    git show b5ab402:models/depth_node_small.onnx > /tmp/before.onnx    # the default before its confidence head
    .venv/bin/python benchmarks/bench_onnx_pair.py /tmp/before.onnx models/depth_node_small.onnx --size 192x256
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("a", type=Path, help="first ONNX file (e.g. before)")
    parser.add_argument("b", type=Path, help="second ONNX file (e.g. after)")
    parser.add_argument("--size", default="192x256", help="input HEIGHTxWIDTH (default 192x256)")
    parser.add_argument("--blocks", type=int, default=15, help="interleaved blocks (default 15)")
    parser.add_argument("--runs", type=int, default=30, help="runs per block (default 30)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    args = parser.parse_args()

    import numpy as np
    import onnxruntime

    height, width = (int(v) for v in args.size.lower().split("x"))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {name: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for name, path in (("a", args.a), ("b", args.b))}
    feeds = {name: {s.get_inputs()[0].name: np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)}
             for name, s in sessions.items()}
    for name, session in sessions.items():  # warm-up: allocations, thread pool
        for _ in range(10):
            session.run(None, feeds[name])
    times: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(args.blocks):
        for name, session in sessions.items():
            start = time.perf_counter()
            for _ in range(args.runs):
                session.run(None, feeds[name])
            times[name].append((time.perf_counter() - start) / args.runs * 1000)
    for name, path in (("a", args.a), ("b", args.b)):
        print(f"{name}: {path}: median {statistics.median(times[name]):.2f} ms, min {min(times[name]):.2f} ms per run")
    paired = [b - a for a, b in zip(times["a"], times["b"])]
    print(f"b − a: median paired difference {statistics.median(paired):+.2f} ms ({args.blocks} blocks of {args.runs} runs, {height}x{width})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
