"""The node as users start it (`depth-node run`, a separate process) with the shipped Fast DDS profile:
640×480 best-effort frames in, depth and an xyz+rgb cloud out; SIGINT/SIGTERM exit 0 without leftovers."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from _ros import SENSOR_QOS, camera_info, rgb_image

REPO = Path(__file__).resolve().parent.parent


def start_node(card: Path, *extra: str) -> subprocess.Popen:
    exe = shutil.which("depth-node", path=str(Path(sys.executable).parent)) or "depth-node"
    env = dict(os.environ)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # `depth-node run` must set the shipped profile itself
    return subprocess.Popen(
        [exe, "run", "--params-file", str(REPO / "config" / "depth.yaml"), "--ros-args", "-p", f"model_card:={card}", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"node did not exit within 20 s of signal {sig}:\n{out}")
    return proc.returncode, out


@pytest.fixture()
def ros():
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("cross_process_peer", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def test_frames_cross_processes_and_sigint_exits_cleanly(conv_card: Path, ros) -> None:  # noqa: ANN001
    ros, executor = ros
    proc = start_node(conv_card, "-p", "output_resolution:=input")
    depth, clouds = [], []
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)  # the harshest consumer: best effort
    ros.create_subscription(Image, "depth/image", depth.append, qos)
    ros.create_subscription(PointCloud2, "depth/points", clouds.append, qos)
    image_pub = ros.create_publisher(Image, "image", SENSOR_QOS)
    info_pub = ros.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and image_pub.get_subscription_count() == 0:
            executor.spin_once(timeout_sec=0.1)
        assert image_pub.get_subscription_count() > 0, "node did not come up"
        sent = 0
        end = time.monotonic() + 30
        while time.monotonic() < end and (len(depth) < 10 or len(clouds) < 10):
            info_pub.publish(camera_info(sent))
            image_pub.publish(rgb_image(sent))
            sent += 1
            t = time.monotonic() + 0.1
            while time.monotonic() < t:
                executor.spin_once(timeout_sec=0.02)
        assert len(depth) >= 10 and len(clouds) >= 10, f"received {len(depth)} depth / {len(clouds)} clouds of {sent} frames"
        assert (depth[-1].width, depth[-1].height, depth[-1].encoding) == (640, 480, "32FC1")
        cloud = clouds[-1]
        assert (cloud.width, cloud.height, cloud.point_step) == (640, 480, 16) and len(cloud.data) == 640 * 480 * 16
    finally:
        rc, out = stop(proc, signal.SIGINT)
    assert rc == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out
    assert not glob.glob(f"/dev/shm/*{proc.pid}*"), "the node left shared-memory files behind"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_idle_exits_zero(conv_card: Path, sig: int) -> None:
    proc = start_node(conv_card)
    time.sleep(3.0)
    assert proc.poll() is None, proc.communicate()[0]
    rc, out = stop(proc, sig)
    assert rc == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out


def test_invalid_parameter_file_value_is_a_one_line_error(conv_card: Path) -> None:
    proc = start_node(conv_card, "-p", "cloud_decimation:=0")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "ERROR: invalid parameter" in out and "cloud_decimation" in out, out

