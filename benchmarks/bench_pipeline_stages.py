#!/usr/bin/env python3
"""Per-stage milliseconds of the ROS-free pipeline at 640x480 (no middleware), median over frames.

Model: the tests' analytic plane model through ONNX Runtime (320x240 output), so the stages around the forward pass
dominate; every output requested (confidence, xyz+rgb cloud, colorized).

    .venv/bin/python benchmarks/bench_pipeline_stages.py [--frames 50]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))  # the tests' model builders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()

    from _models import plane_model
    from depth_node.core.camera import PinholeCamera
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig
    from depth_node.estimators import load_estimator

    camera = PinholeCamera(640, 480, 500.0, 500.0, 319.5, 239.5)
    normal = np.array([0.0, -0.3, 1.0]) / np.linalg.norm([0.0, -0.3, 1.0])
    card = plane_model(Path(tempfile.mkdtemp()), camera.resized(320, 240), normal, 2.0)
    pipeline = DepthPipeline(load_estimator(card), PipelineConfig(max_range=100.0))
    rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    stages: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(args.frames):
        for name, ms in pipeline.process(rgb, camera, colorized=True).timings_ms.items():
            stages[name].append(ms)
    print(", ".join(f"{name} {np.median(v):.2f}" for name, v in stages.items()) + "  (median ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
