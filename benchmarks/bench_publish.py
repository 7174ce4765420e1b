#!/usr/bin/env python3
"""What one publish call costs the publishing thread: a serialized message through rclpy's bytes path vs from its
buffer (ros/serialized_publisher.py), median ms, to a subscriber in another process (raw, so it only counts).

bytes    the message as ``bytes`` (the CDR writer's buffer copied once, as before issue 31), then
         ``Publisher.publish(bytes)`` (rclpy copies it into a std::string, then the middleware copies it);
buffer   ``SerializedPublisher.publish(buffer)``: rcl_publish_serialized_message on the buffer itself.

Both under the node's publication mode (RMW_FASTRTPS_PUBLICATION_MODE=ASYNCHRONOUS unless set), the shipped Fast DDS
profile, sensor-data QoS, at --rate Hz, alternating the two ways --rounds times.

    .venv/bin/python benchmarks/bench_publish.py [--size 640x480] [--messages 60] [--rate 15] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "93")
os.environ.setdefault("RMW_FASTRTPS_PUBLICATION_MODE", "ASYNCHRONOUS")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))

SUBSCRIBER = """
import sys, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
rclpy.init()
node = rclpy.create_node("bench_publish_subscriber")
count = [0]
node.create_subscription(PointCloud2, "bench_points", lambda raw: count.__setitem__(0, count[0] + 1), qos_profile_sensor_data, raw=True)
try:
    while rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.1)
except BaseException:
    pass
print(count[0], flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480", help="cloud size WxH, xyz+rgb (default 640x480: 4.9 MB)")
    parser.add_argument("--messages", type=int, default=60, help="messages per way and round (default 60)")
    parser.add_argument("--rate", type=float, default=15.0, help="messages per second (default 15)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each way once per round (default 2)")
    args = parser.parse_args()

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from depth_node.ros import cdr
    from depth_node.ros.serialized_publisher import SerializedPublisher

    width, height = (int(v) for v in args.size.split("x"))
    header = Header(frame_id="camera_color_optical_frame")
    serialized, points = cdr.point_cloud_message(header, height, width, 4)
    points[...] = np.random.default_rng(0).normal(size=points.shape)
    subscriber = subprocess.Popen([sys.executable, "-c", SUBSCRIBER], stdout=subprocess.PIPE, text=True)
    rclpy.init()
    node = rclpy.create_node("bench_publish")
    publisher = node.create_publisher(PointCloud2, "bench_points", qos_profile_sensor_data)
    try:
        end = time.monotonic() + 30
        while publisher.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.5)
        ways = {"bytes": (SerializedPublisher(publisher, zero_copy=False), lambda: serialized.tobytes()),
                "buffer": (SerializedPublisher(publisher), lambda: serialized)}
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, (sender, message) in ways.items():
                for _ in range(args.messages):
                    start = time.perf_counter()
                    sender.publish(message())
                    times[name].append((time.perf_counter() - start) * 1e3)
                    time.sleep(1.0 / args.rate)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        subscriber.terminate()
        received = subscriber.communicate(timeout=10)[0].strip()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, {width}x{height} xyz+rgb cloud ({serialized.nbytes / 1e6:.1f} MB), "
          f"{args.rounds} x {args.messages} messages per way at {args.rate:g} Hz; the subscriber received {received}")
    for name, values in times.items():
        print(f"{name:>6}: median {np.median(values):.2f} ms, p90 {np.percentile(values, 90):.2f} ms")
    print(f"ratio bytes / buffer (medians): {np.median(times['bytes']) / np.median(times['buffer']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
