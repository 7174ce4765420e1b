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

import numpy as np
import pytest

from _ros import camera_info, jpeg_image, rgb_image
from depth_node.core.camera import PinholeCamera
from depth_node.ros.harness import NodeProcess
from depth_node.ros.outputs import OUTPUTS
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


def start_node(card: Path, *params: str, outputs: tuple[str, ...] = (), transport: str = "raw") -> NodeProcess:
    """``depth-node run`` (the installed console script) with the shipped parameters file; the harness leaves
    FASTDDS_DEFAULT_PROFILES_FILE to `depth-node run`, which must set the shipped profile itself."""
    exe = shutil.which("depth-node", path=str(Path(sys.executable).parent)) or "depth-node"
    return NodeProcess([f"model_card:={card}", *params], params_file=REPO / "config" / "depth.yaml", transport=transport,
                       outputs=outputs, raw=False, best_effort_outputs=True, executable=[exe])


def stop(node: NodeProcess, sig: int) -> tuple[int, str]:
    """Signal the node; (exit code, its output). Fails the test when it needs killing."""
    code = node.stop(sig, timeout_s=20.0)
    out = node.log()
    node.close()
    if code == -signal.SIGKILL:
        pytest.fail(f"node did not exit within 20 s of signal {sig}:\n{out}")
    return code, out


@pytest.mark.parametrize("transport, resolution", [("raw", "input"), ("compressed", "model")])
def test_frames_cross_processes_and_sigint_exits_cleanly(conv_card: Path, transport: str, resolution: str) -> None:
    # the harshest consumer: best effort, every output
    node = start_node(conv_card, f"output_resolution:={resolution}", outputs=tuple(OUTPUTS), transport=transport)
    sent = {}
    try:
        node.wait_ready(timeout_s=30, settle_s=0.5)
        i = 0
        end = time.monotonic() + 40
        while time.monotonic() < end and min(len(v) for v in node.received.values()) < 5:
            image = jpeg_image(i) if transport == "compressed" else rgb_image(i)
            sent[stamp_ns(image.header.stamp)] = image.header
            node.publish(image, camera_info(i))
            i += 1
            node.spin(0.1)
        received = {name: [msg for _, msg in queue] for name, queue in node.received.items()}
        counts = {name: len(v) for name, v in received.items()}
        assert min(counts.values()) >= 5, f"received {counts} of {i} frames"
        grid = (640, 480) if resolution == "input" else (96, 72)
        for name, messages in received.items():
            for msg in messages:
                assert sent[stamp_ns(msg.header.stamp)] == msg.header, name  # stamp and frame_id kept
        depth, info = received["depth"][-1], received["camera_info"][-1]
        assert (depth.width, depth.height, depth.encoding) == (*grid, "32FC1")
        assert (info.width, info.height) == grid
        small = PinholeCamera(640, 480, *camera_info(0).k[[0, 4, 2, 5]]).resized(*grid)
        assert list(info.k) == pytest.approx([small.fx, 0, small.cx, 0, small.fy, small.cy, 0, 0, 1])
        cloud = received["points"][-1]
        assert (cloud.width, cloud.height, cloud.point_step, cloud.is_dense) == (*grid, 16, False)
        assert len(cloud.data) == grid[0] * grid[1] * 16
        conf = received["confidence"][-1]
        assert (conf.width, conf.height, conf.encoding) == (*grid, "32FC1")
        assert received["colorized"][-1].encoding == "rgb8"
        own = segments_of(node.process.pid)
        assert own, "the node maps no shared-memory segment: the profile was not loaded"
    finally:
        rc, out = stop(node, signal.SIGINT)
    assert rc == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out
    assert not left_behind(own), "the node left its shared-memory segments behind"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_idle_exits_zero(conv_card: Path, sig: int) -> None:
    node = start_node(conv_card)
    time.sleep(3.0)
    assert node.process.poll() is None, node.log()
    own = segments_of(node.process.pid)
    rc, out = stop(node, sig)
    assert rc == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out
    assert own and not left_behind(own), "the node left its shared-memory segments behind"


def test_leak_check_sees_a_killed_process(conv_card: Path) -> None:
    # The check above must be able to fail: SIGKILL gives Fast DDS no chance to clean up.
    node = start_node(conv_card)
    time.sleep(3.0)
    own = segments_of(node.process.pid)
    node.stop(signal.SIGKILL)
    node.close()
    leaked = left_behind(own)
    for name in leaked:  # tidy up after ourselves
        for path in glob.glob(f"/dev/shm/{name}*"):
            os.unlink(path)
    assert leaked, "a SIGKILLed node should leave its segment behind"


@pytest.mark.parametrize("sig, delay_s", [(signal.SIGTERM, 0.0), (signal.SIGINT, 0.05), (signal.SIGTERM, 0.2)])
def test_signal_while_busy_exits_zero(model_dir: Path, sig: int, delay_s: float) -> None:
    """A slow model (~0.3 s a frame here) kept busy by a 10 Hz camera; the signal lands ``delay_s`` after an output
    was published, i.e. while the next frame is converted, inferred or published: exit 0, nothing left behind."""
    from _models import conv_model

    slow = model_dir / "slow_signal"
    slow.mkdir(exist_ok=True)
    card = conv_model(slow)
    card.write_text(card.read_text().replace("long_side: 96", "long_side: 1024"))
    node = start_node(card, outputs=("depth",))
    own: set[str] = set()
    try:
        node.wait_ready(timeout_s=30, settle_s=0.5)
        i, end = 0, time.monotonic() + 40
        while time.monotonic() < end and len(node.received["depth"]) < 2:
            node.publish(rgb_image(i), camera_info(i))
            i += 1
            node.spin(0.1)
        assert len(node.received["depth"]) >= 2, f"no output for {i} frames"
        node.publish(rgb_image(i), camera_info(i))          # keep the worker busy
        own = segments_of(node.process.pid)
        time.sleep(delay_s)
    finally:
        rc, out = stop(node, sig)
    assert rc == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out
    assert own and not left_behind(own), "the node left its shared-memory segments behind"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_forward_pass_of_minutes_shows_as_stalled_and_a_signal_still_exits_zero_at_once(tmp_path: Path, sig: int) -> None:
    """A forward pass of ~25 min (a diffusion model on a slow CPU, or a runtime that hangs): /diagnostics says WARN
    with the stage once it passes the stall limit (was: OK, "waiting for images"), and a signal ends the node within a
    few seconds with exit 0, no abort, no segment left (was: 30 s wait, "terminate called ...", rc -6)."""
    from _models import slow_model

    from depth_node.ros import node as node_module

    node = start_node(slow_model(tmp_path), outputs=("depth",))
    own: set[str] = set()
    try:
        node.wait_ready(timeout_s=30, settle_s=0.5)
        node.publish(rgb_image(0), camera_info(0))
        stalled = node.spin_until(lambda: node.diagnostics_level == 1 and "stage infer" in node.diagnostics_message,
                                  timeout_s=node_module.STALL_MIN_S + 10)
        assert stalled, (node.diagnostics_level, node.diagnostics_message)
        assert "no frame finished yet" in node.diagnostics_message and node.diagnostics["frames_processed"] == "0"
        own = segments_of(node.process.pid)
        started = time.monotonic()
    finally:
        rc, out = stop(node, sig)
    assert time.monotonic() - started < node_module.WORKER_JOIN_S + 5, out
    assert rc == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out
    assert "stopping without waiting for the frame being computed (stage infer" in out, out
    assert own and not left_behind(own), "the node left its shared-memory segments behind"


def test_huge_pngs_on_image_compressed_are_refused_by_output_bytes_and_memory_stays_flat(conv_card: Path) -> None:
    """Five 6600x6000 PNGs (~120 KB each, 40 Mpx decoded: under the input cap) with every output subscribed took the
    node from ~260 MB to 2.5 GB RSS (a 634 MB cloud per frame, two kept per reliable publisher). Now each frame is
    refused for the bytes its outputs would take, before they exist: RSS stays within what one decoded frame needs."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    from _ros import header

    png = cv2.imencode(".png", np.full((6000, 6600, 3), 90, np.uint8))[1].tobytes()
    node = start_node(conv_card, outputs=tuple(OUTPUTS), transport="compressed")
    try:
        node.wait_ready(timeout_s=30, settle_s=0.5)
        node.publish(jpeg_image(0), camera_info(0))
        assert node.spin_until(lambda: len(node.received["depth"]) >= 1, timeout_s=20), node.log_tail()
        _, before = node.sample()
        peak = before
        for i in range(1, 6):
            msg = CompressedImage(header=header(i), format="png")
            msg.data = png
            node.publish(msg, camera_info(i, 6600, 6000))
            end = time.monotonic() + 4
            while time.monotonic() < end:
                node.spin(0.1)
                peak = max(peak, node.sample()[1])
        assert node.spin_until(lambda: "output_resolution: model" in " ".join(node.diagnostics.values()), timeout_s=10), \
            node.diagnostics
        node.spin(2.0)
        _, after = node.sample()
        assert len(node.received["depth"]) == 1                              # no output for the huge frames
        assert peak - before < 600, (before, peak)                            # one decoded frame (119 MB) and its RGB copy
        assert after - before < 150, (before, after)
    finally:
        rc, out = stop(node, signal.SIGINT)
    assert rc == 0, out


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


@pytest.mark.parametrize("command", ["depth_node", "depth-node run"])
@pytest.mark.parametrize("sig, delay_s", [(signal.SIGINT, 0.3), (signal.SIGTERM, 0.3), (signal.SIGINT, 0.8), (signal.SIGTERM, 1.5)])
def test_a_signal_during_start_up_exits_zero(conv_card: Path, command: str, sig: int, delay_s: float) -> None:
    """SIGINT/SIGTERM while the process is still importing rclpy and the runtimes, or loading the model: exit 0,
    no KeyboardInterrupt traceback, not killed by SIGTERM (rc -15)."""
    exe = shutil.which(command.split()[0], path=str(Path(sys.executable).parent)) or command.split()[0]
    proc = subprocess.Popen([exe, *command.split()[1:], "--ros-args", "-p", f"model_card:={conv_card}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(delay_s)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out


def test_the_node_process_runs_the_harness_own_package_wherever_it_is_started(conv_card: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder named depth_node beside the command (a workspace, another checkout) is not what the node imports:
    `python -m` would put the working folder first; the harness starts the node with this process's package."""
    decoy = tmp_path / "depth_node"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy depth_node was imported')\n")
    monkeypatch.chdir(tmp_path)
    with NodeProcess([f"model_card:={conv_card}"], log_path=tmp_path / "node.log") as node:
        node.wait_ready(timeout_s=60, settle_s=0.0)
    assert "decoy" not in (tmp_path / "node.log").read_text()
