"""The ROS user's commands, each a real process: ``ros2 launch depth_node depth.launch.py`` (plain and managed),
``ros2 param``, ``ros2 topic hz``, ``ros2 lifecycle`` and the ``change_state`` service a Nav2 lifecycle manager
calls, against depth_node built by colcon as a ROS workspace builds it.

The ROS 2 CLI and launch have no wheels: ``make ros2`` (a dependency of ``make test``) builds them from
``../shared/vendor/ros2`` into .venv and build/ros2 once. Without those sources these tests skip, saying so.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from _models import write_card
from _ros import camera_info, rgb_image

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO.parent / "shared" / "vendor" / "ros2"
BUILD = REPO / "build" / "ros2"

pytestmark = [
    pytest.mark.skipif(not (VENDOR / "launch").is_dir(), reason="no ROS 2 CLI sources at ../shared/vendor/ros2"),
    pytest.mark.skipif((VENDOR / "launch").is_dir() and not (BUILD / ".built").exists(),
                       reason="the ROS 2 CLI is not built: run `make ros2` (make test does)"),
]


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a shell that sourced build/ros2/setup.bash and a colcon workspace holding depth_node."""
    ws = tmp_path_factory.mktemp("ws")
    shell = f". {BUILD / 'setup.bash'} && "
    build = subprocess.run(["bash", "-c", shell + f"colcon --log-base {ws / 'log'} build --base-paths {REPO} --build-base "
                            f"{ws / 'build'} --install-base {ws / 'install'} --packages-select depth_node"],
                           capture_output=True, text=True, cwd=ws, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    dump = subprocess.run(["bash", "-c", shell + f". {ws / 'install' / 'setup.bash'} && env -0"], capture_output=True,
                          text=True, check=True)
    env = dict(line.split("=", 1) for line in dump.stdout.split("\0") if "=" in line)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # the launch file sets the package's profile
    return env


def ros2(env: dict[str, str], *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(["ros2", *args], env=env, capture_output=True, text=True, timeout=timeout)


def ros2_until(env: dict[str, str], pattern: str, *args: str, tries: int = 5) -> str:
    """Run a ros2 command until its output matches (discovery takes a moment); the last output."""
    for _ in range(tries):
        result = ros2(env, *args)
        out = result.stdout + result.stderr
        if re.search(pattern, out):
            return out
        time.sleep(1.0)
    raise AssertionError(f"ros2 {' '.join(args)} never printed {pattern!r}; last: {out}")


class Launch:
    """``ros2 launch depth_node depth.launch.py ARGS`` in its own session, its output in a file; a peer node here."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        self._out = log.open("w")
        self.process = subprocess.Popen(["ros2", "launch", "depth_node", "depth.launch.py", *args], env=env,
                                        stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        self.context = Context()
        rclpy.init(context=self.context)
        self.peer = rclpy.create_node("ros2_cli_test_peer", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.peer)

    def text(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def spin_until(self, condition, timeout: float) -> bool:  # noqa: ANN001
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def stream(self, image_topic: str, info_topic: str, depth_topic: str, frames: int, rate_hz: float = 10.0,
               subscribed: bool = True) -> list:
        """Publish ``frames`` 640x480 frames at ``rate_hz``; the depth images received meanwhile (and 2 s after).
        ``subscribed``: wait for the node's subscription first (else check it has none: an inactive node)."""
        received: list = []
        sub = self.peer.create_subscription(Image, depth_topic, received.append, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        image_pub = self.peer.create_publisher(Image, image_topic, qos_profile_sensor_data)
        info_pub = self.peer.create_publisher(CameraInfo, info_topic, qos_profile_sensor_data)
        if subscribed:
            assert self.spin_until(lambda: image_pub.get_subscription_count() > 0, 60.0), self.text()
        self.spin_until(lambda: False, 1.0)
        assert (image_pub.get_subscription_count() > 0) == subscribed
        for i in range(frames):
            info_pub.publish(camera_info(i))
            image_pub.publish(rgb_image(i))
            self.spin_until(lambda: False, 1.0 / rate_hz)
        self.spin_until(lambda: False, 2.0)
        for entity in (sub, image_pub, info_pub):
            self.peer.destroy_subscription(entity) if entity is sub else self.peer.destroy_publisher(entity)
        return received

    def interrupt(self, timeout: float = 30.0) -> int:
        """SIGINT to the launch process, as Ctrl-C would; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def close(self) -> None:
        self.interrupt()
        self.executor.shutdown()
        self.peer.destroy_node()
        rclpy.shutdown(context=self.context)
        self._out.close()


def test_show_args_lists_the_launch_arguments(ros_env: dict[str, str]) -> None:
    result = ros2(ros_env, "launch", "depth_node", "depth.launch.py", "--show-args")
    assert result.returncode == 0, result.stderr
    for name in ("namespace", "params_file", "image", "camera_info", "model_card", "lifecycle", "autostart"):
        assert f"'{name}':" in result.stdout, name
    assert ros2(ros_env, "pkg", "prefix", "depth_node").stdout.strip().endswith("install/depth_node")


def test_launch_runs_the_node_as_configured_and_ros2_tools_talk_to_it(ros_env: dict[str, str], conv_card: Path, tmp_path: Path) -> None:
    """namespace, remapped topics, a params_file and a model_card override; a frame in, outputs out;
    ``ros2 param set`` accepted and refused as documented; ``ros2 topic hz``; SIGINT → exit 0, node finished cleanly."""
    ns = f"cli_{os.getpid()}"
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    output_resolution: model\n    max_range: 7\n")
    launch = Launch(ros_env, tmp_path / "launch.log", f"namespace:={ns}", f"image:=/{ns}/color/image_raw",
                    f"camera_info:=/{ns}/color/camera_info", f"params_file:={params}", f"model_card:={conv_card}")
    node = f"/{ns}/depth_node"
    try:
        assert launch.spin_until(lambda: "subscribed to" in launch.text(), 60.0), launch.text()
        assert f"subscribed to /{ns}/color/image_raw (raw) and /{ns}/color/camera_info; model: test-model" in launch.text()
        received = launch.stream(f"/{ns}/color/image_raw", f"/{ns}/color/camera_info", f"/{ns}/depth/image", frames=3)
        assert received and (received[-1].width, received[-1].height) == (96, 72)  # output_resolution from the file
        assert "Double value is: 7.0" in ros2_until(ros_env, "Double value", "param", "get", "--no-daemon", "--spin-time", "2", node, "max_range")
        assert "Set parameter successful" in ros2_until(ros_env, "Set parameter", "param", "set", "--no-daemon", "--spin-time", "2", node, "max_range", "5")
        assert "Double value is: 5.0" in ros2_until(ros_env, "Double value", "param", "get", "--no-daemon", "--spin-time", "2", node, "max_range")
        refused = ros2_until(ros_env, "Setting parameter failed", "param", "set", "--no-daemon", "--spin-time", "2", node, "model_card", "other")
        assert "read-only" in refused
        refused = ros2_until(ros_env, "Setting parameter failed", "param", "set", "--no-daemon", "--spin-time", "2", node, "min_range", "50.0")
        assert "need min_range < max_range" in refused
        hz = subprocess.Popen(["ros2", "topic", "hz", f"/{ns}/depth/image"], env=ros_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            launch.stream(f"/{ns}/color/image_raw", f"/{ns}/color/camera_info", f"/{ns}/depth/image", frames=40, rate_hz=10.0)
        finally:
            hz.send_signal(signal.SIGINT)
            out = hz.communicate(timeout=20)[0]
        rates = [float(r) for r in re.findall(r"average rate: ([0-9.]+)", out)]
        assert rates and 5.0 < rates[-1] < 15.0, out
    finally:
        code = launch.interrupt()
        text = launch.text()
        launch.close()
    assert code == 0, text
    assert "process has finished cleanly" in text and "Traceback" not in text, text


def test_managed_node_follows_ros2_lifecycle_and_the_change_state_service(ros_env: dict[str, str], conv_card: Path,
                                                                           tmp_path: Path) -> None:
    """lifecycle:=true autostart:=false: unconfigured, publishing nothing; `ros2 lifecycle set … configure`, then
    the /<node>/change_state service (Nav2's lifecycle manager) activates it: frames flow; deactivate: they stop."""
    ns = f"managed_{os.getpid()}"
    launch = Launch(ros_env, tmp_path / "launch.log", f"namespace:={ns}", "lifecycle:=true", "autostart:=false",
                    f"model_card:={conv_card}")
    node = f"/{ns}/depth_node"
    topics = (f"/{ns}/image", f"/{ns}/camera_info", f"/{ns}/depth/image")
    try:
        assert "unconfigured [1]" in ros2_until(ros_env, r"\[\d\]", "lifecycle", "get", node)
        assert not launch.stream(*topics, frames=3, subscribed=False)  # unconfigured: not even subscribed
        assert "Transitioning successful" in ros2(ros_env, "lifecycle", "set", node, "configure").stdout
        assert "inactive [2]" in ros2(ros_env, "lifecycle", "get", node).stdout
        change = launch.peer.create_client(ChangeState, f"{node}/change_state")
        get = launch.peer.create_client(GetState, f"{node}/get_state")
        assert change.wait_for_service(timeout_sec=10.0)

        def call(client, request):  # noqa: ANN001, ANN202
            future = client.call_async(request)
            assert launch.spin_until(future.done, 20.0)
            return future.result()

        assert call(change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE))).success
        assert call(get, GetState.Request()).current_state.label == "active"
        assert launch.stream(*topics, frames=3)
        assert call(change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))).success
        assert not launch.stream(*topics, frames=3, subscribed=False)
        assert call(change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CLEANUP))).success
        assert call(get, GetState.Request()).current_state.label == "unconfigured"
    finally:
        code = launch.interrupt()
        text = launch.text()
        launch.close()
    assert code == 0, text
    assert "Traceback" not in text, text


def test_managed_node_autostarts_and_a_bad_card_fails_configure(ros_env: dict[str, str], conv_card: Path, tmp_path: Path) -> None:
    ns = f"auto_{os.getpid()}"
    launch = Launch(ros_env, tmp_path / "auto.log", f"namespace:={ns}", "lifecycle:=true", f"model_card:={conv_card}")
    try:
        assert "active [3]" in ros2_until(ros_env, r"active \[3\]", "lifecycle", "get", f"/{ns}/depth_node", tries=20)
        assert launch.stream(f"/{ns}/image", f"/{ns}/camera_info", f"/{ns}/depth/image", frames=3)
    finally:
        assert launch.interrupt() == 0, launch.text()
        launch.close()
    bad = write_card(tmp_path / "bad.yaml", "missing.onnx", {"space": "depth", "invariance": "metric"})
    ns = f"bad_{os.getpid()}"
    launch = Launch(ros_env, tmp_path / "bad.log", f"namespace:={ns}", "lifecycle:=true", "autostart:=false", f"model_card:={bad}")
    try:
        node = f"/{ns}/depth_node"
        ros2_until(ros_env, r"\[\d\]", "lifecycle", "get", node)
        result = ros2(ros_env, "lifecycle", "set", node, "configure")
        assert "Transitioning failed" in result.stdout + result.stderr
        assert "unconfigured [1]" in ros2(ros_env, "lifecycle", "get", node).stdout
        assert launch.spin_until(lambda: "configure failed: cannot load the model" in launch.text(), 10.0), launch.text()
        assert "missing.onnx" in launch.text()
    finally:
        launch.close()


def test_plain_node_with_a_bad_card_exits_non_zero_under_launch(ros_env: dict[str, str], tmp_path: Path) -> None:
    bad = write_card(tmp_path / "bad.yaml", "missing.onnx", {"space": "depth", "invariance": "metric"})
    result = ros2(ros_env, "launch", "depth_node", "depth.launch.py", f"namespace:=plainbad_{os.getpid()}", f"model_card:={bad}",
                  timeout=60)
    assert "process has died" in result.stdout and "exit code 1" in result.stdout, result.stdout
    assert "ERROR: cannot load the model" in result.stdout and "missing.onnx" in result.stdout


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
