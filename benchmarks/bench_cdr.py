#!/usr/bin/env python3
"""Message conversion on the node's hot path, old way vs new way, in one process (median of --repeats, ms).

receive   the bytes of a camera Image as the middleware delivers them → the RGB array the pipeline takes:
          old: rclpy deserializes them into a Python Image (what a non-raw subscription does), then ros.convert;
          new: ros.cdr.read_image over the bytes (pixels a view of them), then ros.convert.
publish   one frame's outputs (depth, camera_info, confidence, full-resolution xyz+rgb cloud, colorized) → the bytes
          handed to the middleware: old: ros.outputs.output_messages, then rclpy.serialization.serialize_message
          (what Publisher.publish does to a message); new: ros.outputs.output_cdr.

    .venv/bin/python benchmarks/bench_cdr.py [--sizes 640x480,1280x720] [--repeats 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))
from bench_models import median_ms  # noqa: E402  (this folder is on sys.path: the script's own)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="640x480,1280x720", help="camera sizes WxH (default 640x480,1280x720)")
    parser.add_argument("--repeats", type=int, default=50, help="timed repetitions (default 50)")
    args = parser.parse_args()

    from _models import conv_model
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from depth_node.core.camera import PinholeCamera
    from depth_node.core.parameters import PipelineConfig
    from depth_node.core.pipeline import DepthPipeline
    from depth_node.estimators import load_estimator
    from depth_node.ros import cdr, convert
    from depth_node.ros.outputs import output_cdr, output_messages

    print(f"{platform.machine()}, {os.cpu_count()} CPUs, median of {args.repeats}, ms")
    print("| size | receive old | receive new | ratio | publish all outputs old | publish new | ratio |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        pipeline = DepthPipeline(load_estimator(conv_model(Path(folder))), PipelineConfig())
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            header = Header(frame_id="camera_color_optical_frame")
            header.stamp.sec = 1_700_000_000
            rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
            wire = serialize_message(convert.array_to_image(rgb, "rgb8", header))
            receive_old = median_ms(lambda: convert.image_to_rgb(deserialize_message(wire, Image)), args.repeats, 1)
            receive_new = median_ms(lambda: convert.image_to_rgb(cdr.read_image(wire)), args.repeats, 1)
            camera = PinholeCamera(width, height, 0.8 * width, 0.8 * width, (width - 1) / 2, (height - 1) / 2)
            info = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
            info.k = [camera.fx, 0.0, camera.cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0]
            info.p = [camera.fx, 0.0, camera.cx, 0.0, 0.0, camera.fy, camera.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
            config = pipeline.config
            result = pipeline.process(rgb, camera, colorized=True)
            publish_old = median_ms(lambda: [serialize_message(m) for m in output_messages(result, header, info, camera, config).values()],
                                    args.repeats, 1)
            publish_new = median_ms(lambda: output_cdr(result, header, info, camera, config), args.repeats, 1)
            print(f"| {width}×{height} | {receive_old:.2f} | {receive_new:.2f} | {receive_old / receive_new:.1f}× | "
                  f"{publish_old:.2f} | {publish_new:.2f} | {publish_old / publish_new:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
