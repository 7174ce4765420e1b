#!/usr/bin/env python3
"""Node overhead at 640x480: every stage except the model's forward pass, median over frames.

The node runs as users run it (`depth-node run`, its own process, the shipped Fast DDS profile, a small ONNX
model, or any card with --card: then receive->publish is the node's end-to-end time for that model), through the
package's node-process harness (depth_node.ros.harness): this process plays the camera (640x480 rgb8 + camera_info,
sensor-data QoS) and a consumer subscribed to the chosen outputs, and reads the node's own figures from /diagnostics:
  overhead = convert_in + preprocess + metric + confidence + cloud + colorize + publish (per frame, median)

    .venv/bin/python benchmarks/bench_overhead.py [--frames 300] [--rate 15] [--outputs all|nav|depth] [--cloud-color true|false] [--cloud-decimation N]
    .venv/bin/python benchmarks/bench_overhead.py --card /tmp/cards/da_small.yaml --rate 1 --frames 20 --outputs nav -p scale.mode:=fixed
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))  # the tests' tiny-model builders: one source of truth
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "91")

OUTPUT_SETS = {  # outputs of depth_node.ros.outputs.OUTPUTS
    "all": ("depth", "camera_info", "points", "confidence", "colorized"),
    "nav": ("depth", "camera_info", "points"),
    "depth": ("depth", "camera_info"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--frames", type=int, default=300, help="frames to send (default 300)")
    parser.add_argument("--rate", type=float, default=15.0, help="camera rate, Hz (default 15)")
    parser.add_argument("--outputs", choices=sorted(OUTPUT_SETS), default="all", help="outputs the consumer subscribes to")
    parser.add_argument("--cloud-color", choices=("true", "false"), default="true")
    parser.add_argument("--cloud-decimation", type=int, default=1)
    parser.add_argument("--card", type=Path, help="model card for the node (default: the tests' tiny ONNX conv net)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE", help="more node parameters")
    args = parser.parse_args()

    from _models import conv_model
    from _ros import camera_info, rgb_image

    from depth_node.ros.harness import NodeProcess

    card = args.card or conv_model(Path(tempfile.mkdtemp()))
    params = [f"model_card:={card}", f"cloud_color:={args.cloud_color}", f"cloud_decimation:={args.cloud_decimation}",
              "diagnostics_period_s:=0.5", *args.param]
    exe = shutil.which("depth-node", path=str(Path(sys.executable).parent)) or "depth-node"
    with NodeProcess(params, outputs=OUTPUT_SETS[args.outputs], on_output=lambda *_: None, best_effort_outputs=True,
                     executable=[exe]) as node:
        node.wait_ready()
        frames = [rgb_image(i) for i in range(10)]
        next_t = time.monotonic()
        for i in range(args.frames):
            info = camera_info(i)
            image = frames[i % 10]
            image.header = info.header
            node.publish(image, info)
            next_t += 1.0 / args.rate
            node.spin(max(0.0, next_t - time.monotonic()))
        seen = node.diagnostics_count
        node.spin(max(2.0, 2.0 / args.rate))  # the last frame may still be in the model
        node.spin_until(lambda: node.diagnostics_count > seen, 2.0)
        values = node.diagnostics
    stages = {k[6:-3]: v for k, v in values.items() if k.startswith("stage_")}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"node: depth-node run, model {values['model']} ({values['backend']}), 640x480 rgb8 at {args.rate:g} Hz, cloud_color {args.cloud_color}, cloud_decimation {args.cloud_decimation}")
    print(f"outputs subscribed: {', '.join(OUTPUT_SETS[args.outputs])}")
    print(f"frames: received {values['frames_received']}, processed {values['frames_processed']}, dropped {values['frames_dropped']}")
    print(f"throughput: {int(values['frames_processed']) * args.rate / args.frames:.1f} frames/s processed of {args.rate:g} sent")
    print("median ms per stage (last 200 frames): " + ", ".join(f"{k} {v}" for k, v in sorted(stages.items())))
    print(f"NODE OVERHEAD (every stage but infer), median: {values['overhead_p50_ms']} ms")
    print(f"receive->publish, median: {values['processing_p50_ms']} ms (p95 {values['processing_p95_ms']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
