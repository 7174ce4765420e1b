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
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from _ros import OUTPUTS, SENSOR_QOS, camera_info, jpeg_image, rgb_image
from depth_node.core.camera import PinholeCamera
from depth_node.ros.sync import stamp_ns

REPO = Path(__file__).resolve().parent.parent


def segments_of(pid: int) -> set[str]:
    """The Fast DDS shared-memory segments process ``pid`` has mapped (the shared per-port files excluded)."""
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split()[-1] if line.split() else ""
        if path.startswith("/dev/shm/fastdds_") and not path.startswith("/dev/shm/fastdds_port"):
            names.add(path.removeprefix("/dev/shm/"))
    return names


def mapped_by_a_live_process(name: str) -> bool:
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            if f"/dev/shm/{name}" in Path(maps).read_text():
                return True
        except OSError:
            continue
    return False


def left_behind(names: set[str]) -> list[str]:
    """Segments the node had mapped that still exist after it exited with no live process using them: orphans.
    (The node also maps its peers' segments to read their messages; those live on with their owners.)"""
    return sorted(n for n in names if Path("/dev/shm", n).exists() and not mapped_by_a_live_process(n))


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


@pytest.mark.parametrize("transport, resolution", [("raw", "input"), ("compressed", "model")])
def test_frames_cross_processes_and_sigint_exits_cleanly(conv_card: Path, ros, transport: str, resolution: str) -> None:  # noqa: ANN001
    ros, executor = ros
    proc = start_node(conv_card, "-p", f"output_resolution:={resolution}", "-p", f"input_transport:={transport}")
    received: dict[str, list] = {topic: [] for topic in OUTPUTS}
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)  # the harshest consumer: best effort
    for topic, msg_type in OUTPUTS.items():
        ros.create_subscription(msg_type, topic, received[topic].append, qos)
    image_pub = ros.create_publisher(CompressedImage if transport == "compressed" else Image,
                                     "image/compressed" if transport == "compressed" else "image", SENSOR_QOS)
    info_pub = ros.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
    sent = {}
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and image_pub.get_subscription_count() == 0:
            executor.spin_once(timeout_sec=0.1)
        assert image_pub.get_subscription_count() > 0, "node did not come up"
        i = 0
        end = time.monotonic() + 40
        while time.monotonic() < end and min(len(v) for v in received.values()) < 5:
            image = jpeg_image(i) if transport == "compressed" else rgb_image(i)
            sent[stamp_ns(image.header.stamp)] = image.header
            info_pub.publish(camera_info(i))
            image_pub.publish(image)
            i += 1
            t = time.monotonic() + 0.1
            while time.monotonic() < t:
                executor.spin_once(timeout_sec=0.02)
        counts = {topic: len(v) for topic, v in received.items()}
        assert min(counts.values()) >= 5, f"received {counts} of {i} frames"
        grid = (640, 480) if resolution == "input" else (96, 72)
        for topic, messages in received.items():
            for msg in messages:
                assert sent[stamp_ns(msg.header.stamp)] == msg.header, topic  # stamp and frame_id kept
        depth, info = received["depth/image"][-1], received["depth/camera_info"][-1]
        assert (depth.width, depth.height, depth.encoding) == (*grid, "32FC1")
        assert (info.width, info.height) == grid
        small = PinholeCamera(640, 480, *camera_info(0).k[[0, 4, 2, 5]]).resized(*grid)
        assert list(info.k) == pytest.approx([small.fx, 0, small.cx, 0, small.fy, small.cy, 0, 0, 1])
        cloud = received["depth/points"][-1]
        assert (cloud.width, cloud.height, cloud.point_step, cloud.is_dense) == (*grid, 16, False)
        assert len(cloud.data) == grid[0] * grid[1] * 16
        conf = received["depth/confidence"][-1]
        assert (conf.width, conf.height, conf.encoding) == (*grid, "32FC1")
        assert received["depth/colorized"][-1].encoding == "rgb8"
        own = segments_of(proc.pid)
        assert own, "the node maps no shared-memory segment: the profile was not loaded"
    finally:
        rc, out = stop(proc, signal.SIGINT)
    assert rc == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out
    assert not left_behind(own), "the node left its shared-memory segments behind"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_idle_exits_zero(conv_card: Path, sig: int) -> None:
    proc = start_node(conv_card)
    time.sleep(3.0)
    assert proc.poll() is None, proc.communicate()[0]
    own = segments_of(proc.pid)
    rc, out = stop(proc, sig)
    assert rc == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out
    assert own and not left_behind(own), "the node left its shared-memory segments behind"


def test_leak_check_sees_a_killed_process(conv_card: Path) -> None:
    # The check above must be able to fail: SIGKILL gives Fast DDS no chance to clean up.
    proc = start_node(conv_card)
    time.sleep(3.0)
    own = segments_of(proc.pid)
    proc.kill()
    proc.communicate()
    leaked = left_behind(own)
    for name in leaked:  # tidy up after ourselves
        for path in glob.glob(f"/dev/shm/{name}*"):
            os.unlink(path)
    assert leaked, "a SIGKILLed node should leave its segment behind"


def test_invalid_parameter_file_value_is_a_one_line_error(conv_card: Path) -> None:
    proc = start_node(conv_card, "-p", "cloud_decimation:=0")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "ERROR: invalid parameter" in out and "cloud_decimation" in out, out



@pytest.mark.parametrize("sig, delay_s", [(signal.SIGTERM, 0.0), (signal.SIGINT, 0.05), (signal.SIGTERM, 0.2)])
def test_signal_while_busy_exits_zero(model_dir: Path, ros, sig: int, delay_s: float) -> None:  # noqa: ANN001
    """A slow model (~0.3 s a frame here) kept busy by a 10 Hz camera; the signal lands ``delay_s`` after an output
    was published, i.e. while the next frame is converted, inferred or published: exit 0, nothing left behind."""
    from _models import conv_model

    ros, executor = ros
    slow = model_dir / "slow_signal"
    slow.mkdir(exist_ok=True)
    card = conv_model(slow)
    card.write_text(card.read_text().replace("long_side: 96", "long_side: 1024"))
    proc = start_node(card)
    outputs: list = []
    ros.create_subscription(Image, "depth/image", outputs.append, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    image_pub = ros.create_publisher(Image, "image", SENSOR_QOS)
    info_pub = ros.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
    own: set[str] = set()
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and image_pub.get_subscription_count() == 0:
            executor.spin_once(timeout_sec=0.1)
        assert image_pub.get_subscription_count() > 0, "node did not come up"
        i, end = 0, time.monotonic() + 40
        while time.monotonic() < end and len(outputs) < 2:
            info_pub.publish(camera_info(i))
            image_pub.publish(rgb_image(i))
            i += 1
            t = time.monotonic() + 0.1
            while time.monotonic() < t:
                executor.spin_once(timeout_sec=0.02)
        assert len(outputs) >= 2, f"no output for {i} frames"
        info_pub.publish(camera_info(i))
        image_pub.publish(rgb_image(i))                     # keep the worker busy
        own = segments_of(proc.pid)
        time.sleep(delay_s)
    finally:
        rc, out = stop(proc, sig)
    assert rc == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out
    assert own and not left_behind(own), "the node left its shared-memory segments behind"


def test_bench_flood_with_a_slow_model_stays_bounded(model_dir: Path, tmp_path: Path) -> None:
    """`depth-node bench --check` for 60 s: a 30 Hz camera into a model several times slower. Latency p99 within
    2 × model time + overhead, output rate ≈ model rate, drops counted, RSS flat, exit 0 (the CI soak)."""
    import json

    from _models import conv_model

    slow = model_dir / "slow_bench"
    slow.mkdir(exist_ok=True)
    card = conv_model(slow)
    card.write_text(card.read_text().replace("long_side: 96", "long_side: 1536"))
    exe = shutil.which("depth-node", path=str(Path(sys.executable).parent)) or "depth-node"
    result = subprocess.run([exe, "bench", "--model", str(card), "--size", "320x240", "--rate", "30", "--duration", "60",
                             "--check", "--out", str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["model_ms"] > 2 * 1000 / 30                        # the model is slower than the camera
    assert report["frames_dropped_by_node"] > 0 and report["frames_published"] > 10
    assert report["frames_published"] + report["frames_dropped_by_node"] <= report["frames_sent"]
    assert (tmp_path / "bench.md").read_text().startswith("| model |")
