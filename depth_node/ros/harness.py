"""The node as users run it, driven from this process: the one harness behind ``depth-node bench``,
``depth-node eval --live``, the benchmarks and the cross-process tests.

:class:`NodeProcess` starts ``depth-node run`` (its own process and session, a parameters file, the shipped Fast
DDS profile, its log in a file) under a private namespace. A player node in this process publishes the camera
(``image`` or ``image/compressed`` and ``camera_info`` with sensor-data QoS, ``/clock`` for ``use_sim_time``),
subscribes to the node's outputs (names of ``ros.outputs.OUTPUTS``) and to ``/diagnostics``, and stops the node by
signal, as Ctrl-C or a launch system would.
"""

from __future__ import annotations

import itertools
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

import depth_node
from depth_node.errors import DepthNodeError
from depth_node.paths import config_file
from depth_node.ros.outputs import OUTPUTS

_PACKAGE_ROOT = Path(depth_node.__file__).resolve().parent.parent  # the folder this depth_node is imported from

PROFILE = "fastdds_shm.xml"  # a 64 MB shared-memory transport: 640x480 images and clouds cross processes intact
STARTUP_TIMEOUT_S = 300.0    # a large model loads before the node subscribes
_instances = itertools.count()


class NodeProcessError(DepthNodeError):
    """The node process exited or did not come up; the message ends with its log's last lines."""


def apply_fastdds_profile(choice: str | None) -> str | None:
    """Point Fast DDS in this process at the profile unless the user already did or asked for none ('none');
    returns the file used. Call before rclpy creates a participant."""
    if choice == "none":
        return None
    if choice is None and os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]
    path = Path(choice) if choice else config_file(PROFILE)
    if not path.is_file():
        raise FileNotFoundError(f"Fast DDS profile not found: {path}")
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(path)
    return str(path)


def interrupt(process: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = 20.0) -> int:
    """Stop a node process by ``sig`` (SIGINT: as Ctrl-C would), killing it only if it has not exited after
    ``timeout_s``; returns its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def cdr_stamp_ns(data: bytes) -> int:
    """The header stamp of a serialized message that starts with a ``std_msgs/Header`` (every output), read from
    the CDR bytes without deserializing the rest (a 1 MB image costs nothing here)."""
    little = data[1] & 1  # encapsulation: 0x0001 CDR little endian, 0x0000 big endian
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


class NodeProcess:
    """``depth-node run`` in its own process plus the player that feeds it and listens to it.

    param_args: ``NAME:=VALUE`` node parameters (``-p``); params_file: default the package's config/depth.yaml.
    outputs: the outputs to subscribe to (the node computes only what somebody subscribes to).
    on_output: called as ``on_output(output, data, arrival_ns)`` for each message, data the CDR bytes (``raw``)
        or the message; without it they are kept in ``received[output]`` as ``(arrival_ns, data)``.
    sim_time: the node follows ``/clock``, which :meth:`publish` sets to the image's stamp.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, param_args: Sequence[str] = (), *, params_file: str | Path | None = None, transport: str = "raw",
                 outputs: Iterable[str] = ("depth",), on_output: Callable[[str, Any, int], None] | None = None,
                 raw: bool = True, best_effort_outputs: bool = False, sim_time: bool = False, log_path: Path | None = None,
                 executable: Sequence[str] | None = None) -> None:
        self.namespace = f"/depth_node_harness_{os.getpid()}_{next(_instances)}"
        self.outputs, self.transport, self.raw = tuple(outputs), transport, raw
        self.log_path = log_path or Path(f"/tmp/depth_node_{self.namespace.strip('/')}.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # -P: not the working folder first on sys.path (python -m puts it there), so the node imports this process's
        # depth_node, put first on PYTHONPATH, and not a depth_node folder the command happens to be run beside
        command = [*(executable or (sys.executable, "-P", "-m", "depth_node.tools.cli")), "run",
                   "--params-file", str(params_file or config_file("depth.yaml")),
                   "--ros-args", "-r", f"__ns:={self.namespace}", "-p", f"input_transport:={transport}"]
        if sim_time:
            command += ["-p", "use_sim_time:=true"]
        for item in param_args:
            command += ["-p", item]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
        if env.get("FASTDDS_DEFAULT_PROFILES_FILE") == str(config_file(PROFILE)):
            del env["FASTDDS_DEFAULT_PROFILES_FILE"]  # `depth-node run` sets the shipped profile itself
        self._log = self.log_path.open("w")
        # its own session: Ctrl-C in this terminal reaches this process only; stop() then signals the node
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._last_cpu: tuple[float, float] | None = None
        try:
            self._start_player(on_output, best_effort_outputs, sim_time)
        except BaseException:
            interrupt(self.process)
            self._log.close()
            raise

    def _start_player(self, on_output: Callable[[str, Any, int], None] | None, best_effort: bool, sim_time: bool) -> None:
        apply_fastdds_profile(None)  # this process publishes 640x480 images too: the same transport as the node
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)  # not sys.argv: a tool's -p NAME:=VALUE would read as remaps
        self.node = rclpy.create_node("depth_node_player", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        ns, compressed = self.namespace, self.transport == "compressed"
        self.image_topic = f"{ns}/image/compressed" if compressed else f"{ns}/image"
        self._pub_image = self.node.create_publisher(CompressedImage if compressed else Image, self.image_topic, qos_profile_sensor_data)
        self._pub_info = self.node.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
        self._pub_clock = self.node.create_publisher(Clock, "/clock", 10) if sim_time else None
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE)
        self.received: dict[str, list[tuple[int, Any]]] = {name: [] for name in self.outputs}
        for name in self.outputs:
            topic, msg_type = OUTPUTS[name]
            self.node.create_subscription(msg_type, f"{ns}/{topic}", self._listener(name, on_output), qos, raw=self.raw)
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_message = ""
        self.diagnostics_level = 0  # diagnostic_msgs levels: 0 OK, 1 WARN, 2 ERROR
        self.diagnostics_count = 0
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _listener(self, name: str, on_output: Callable[[str, Any, int], None] | None) -> Callable[[Any], None]:
        clock, queue = self.node.get_clock(), self.received[name]

        def listen(data: Any) -> None:
            if on_output is not None:
                on_output(name, data, clock.now().nanoseconds)
            else:
                queue.append((clock.now().nanoseconds, data))

        return listen

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(f"{self.namespace}/"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.diagnostics_message = status.message
                self.diagnostics_level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
                self.diagnostics_count += 1

    # ----------------------------------------------------------------------------------------- running
    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S, settle_s: float = 1.0) -> None:
        """Until the node subscribes to the camera and publishes every output listened to; then ``settle_s`` more
        (DDS matching is asymmetric: the node's subscriptions need a moment to see this publisher too)."""
        end = time.monotonic() + timeout_s
        while self._pub_image.get_subscription_count() == 0 or any(
                self.node.count_publishers(f"{self.namespace}/{OUTPUTS[name][0]}") == 0 for name in self.outputs):
            self.check_alive("before subscribing")
            if time.monotonic() > end:
                raise NodeProcessError(f"the node did not subscribe within {timeout_s:.0f} s:\n{self.log_tail()}")
            self.executor.spin_once(timeout_sec=0.1)
        self.spin(settle_s)

    def check_alive(self, when: str = "during the run") -> None:
        if self.process.poll() is not None:
            raise NodeProcessError(f"the node exited ({self.process.returncode}) {when}:\n{self.log_tail()}")

    def publish_clock(self, clock_ns: int) -> None:
        """``/clock`` at ``clock_ns`` (``sim_time``: the node's time)."""

        if self._pub_clock is None:
            raise ValueError("publish_clock needs NodeProcess(sim_time=True)")
        self._pub_clock.publish(Clock(clock=Time(sec=clock_ns // 1_000_000_000, nanosec=clock_ns % 1_000_000_000)))

    def publish(self, image: Any, camera_info: Any | None = None, clock_ns: int | None = None) -> None:
        """``/clock`` (sim time) at ``clock_ns``, then camera_info, then the image — a driver's order. Messages or
        their CDR bytes."""
        if clock_ns is not None:
            self.publish_clock(clock_ns)
        if camera_info is not None:
            self._pub_info.publish(camera_info)
        self._pub_image.publish(image)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=min(left, 0.05))

    def spin_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Spin until ``condition()`` holds (True) or ``timeout_s`` passes (False); raises if the node exits."""
        end = time.monotonic() + timeout_s
        while not condition():
            self.check_alive()
            if time.monotonic() > end:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def sample(self) -> tuple[float, float]:
        """(CPU % since the last sample — 100 = one core, RSS MB) of the node process, from /proc."""
        pid = self.process.pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        rss_mb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if line.startswith("VmRSS:")) / 1024
        now = time.monotonic()
        last, self._last_cpu = self._last_cpu, (now, cpu_s)
        return (100.0 * (cpu_s - last[1]) / (now - last[0]) if last else float("nan")), rss_mb

    def log(self) -> str:
        """The node's output so far (also after :meth:`close`)."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # ----------------------------------------------------------------------------------------- stopping
    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 20.0) -> int:
        """Signal the node (killing it after ``timeout_s``); its exit code. Idempotent."""
        return interrupt(self.process, sig, timeout_s)

    def close(self) -> int:
        """Stop the node (SIGINT) and this process's player; the node's exit code."""
        code = self.stop()
        if hasattr(self, "executor"):
            self.executor.shutdown()
            self.node.destroy_node()
            self.context.try_shutdown()
        self._log.close()
        return code

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
