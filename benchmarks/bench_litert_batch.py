#!/usr/bin/env python3
"""LiteRT (tflite family) ensemble members: one invocation per member vs all members in one batched invocation.

    .venv/bin/python benchmarks/bench_litert_batch.py --members 2 4 6 --repeat 50

FastDepth (../shared/models/fastdepth) on a real TUM frame, flipped and unflipped members (a fixed-size model has
no scale members). Prints the median milliseconds of each way and their ratio; checks the outputs are identical.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
FRAME = REPO.parent / "shared" / "data" / "train" / "rgbd" / "tum_fr3_cabinet_keyframes" / "rgb" / "fr3_cabinet_kf0000.jpg"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, nargs="+", default=[2, 4, 6])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from depth_node.estimators import load_estimator

    estimator = load_estimator(REPO / "models" / "fastdepth.yaml", num_threads=args.threads)
    rgb = cv2.cvtColor(cv2.imread(str(FRAME)), cv2.COLOR_BGR2RGB)
    plain, flipped = estimator.preprocess(rgb), estimator.preprocess(np.ascontiguousarray(rgb[:, ::-1]))
    print(f"FastDepth (LiteRT, {args.threads} threads), {FRAME.name}; medians of {args.repeat // 10 * 10} in blocks of 10, ms")
    print(f"{'members':>8}{'one by one':>12}{'batched':>10}{'ratio':>8}")
    for n in args.members:
        inputs = [plain if k % 2 == 0 else flipped for k in range(n)]
        ways = {"single": lambda: [estimator.infer(x) for x in inputs], "batched": lambda: estimator.infer_many(inputs)}
        times: dict[str, list[float]] = {k: [] for k in ways}
        for _ in range(3):
            for way in ways.values():
                way()
        # blocks of 10 alternating between the ways, so load changes hit both alike, while within a block the
        # interpreter keeps its batch size as it does in a running node (switching size re-plans its buffers)
        for _ in range(max(1, args.repeat // 10)):
            for name, way in ways.items():
                way()
                for _ in range(10):
                    start = time.perf_counter()
                    way()
                    times[name].append((time.perf_counter() - start) * 1000)
        same = all(np.array_equal(a.values, b.values) for a, b in zip(ways["single"](), ways["batched"]()))
        one, many = statistics.median(times["single"]), statistics.median(times["batched"])
        print(f"{n:>8}{one:>12.1f}{many:>10.1f}{one / many:>7.2f}x" + ("" if same else "  OUTPUTS DIFFER"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
