"""``depth-node bench``: a synthetic camera played into the real node, and what it costs.

The node runs as users run it (``depth-node run``: its own process, config/depth.yaml, the shipped Fast DDS
profile) under a private namespace. This process is the camera: rendered frames (a synthetic room, exact
size and encoding, raw or JPEG) published at ``--rate`` with the current time as the header stamp, camera_info
beside them, sensor-data QoS. It records every depth image the node publishes and reports:

- end-to-end latency p50 / p95 / p99 (image stamp → depth image received here: the node's work plus one DDS hop),
- output rate, frames sent, published and dropped (the node's own counters from /diagnostics),
- per-stage milliseconds (from the node's /diagnostics),
- the node process's CPU % and resident memory (RSS) sampled every second, first and last minute compared.

With a model slower than the camera the node drops frames rather than queueing them: latency stays bounded by
about two frame times (one waiting for the worker, one processing; a frame time is the model plus the node's
overhead: conversion, metric depth, cloud, publishing). ``--check`` turns that into pass/fail: p99 ≤ 2 × frame
time (the node's p95) + 20 ms for the two DDS hops and this player's scheduling; output rate within 25 % of
1 / frame time (p50; or of the camera rate when the node is faster); RSS growth ≤ 30 MB after a warm-up (the
first 10 s, or third of a shorter run); exit code 0 on SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

EPILOG = """examples:
  depth-node bench                                    # default model, 640x480 rgb8 at 30 Hz for 20 s
  depth-node bench --rate 60 --duration 60 --check    # a flood: bounded latency, drops counted, flat memory
  depth-node bench --soak                             # 10 minutes
  depth-node bench --model fastdepth -p num_threads:=2 --transport compressed --out out/bench
micro-benchmarks of the hot kernels against naive baselines: benchmarks/bench_kernels.py"""
CHECK_TRANSPORT_MS = 20.0
SOAK_S = 600.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="play a synthetic camera into the real node and report latency, rate, drops, CPU, memory",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="model card (default: the embedded default model)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE", help="node parameter (repeatable)")
    p.add_argument("--rate", type=float, default=30.0, help="camera frames per second (default 30)")
    p.add_argument("--size", default="640x480", help="camera image WIDTHxHEIGHT (default 640x480)")
    p.add_argument("--encoding", choices=("rgb8", "bgr8", "mono8"), default="rgb8", help="raw image encoding (default rgb8)")
    p.add_argument("--transport", choices=("raw", "compressed"), default="raw", help="raw Image or JPEG CompressedImage")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of camera stream (default 20)")
    p.add_argument("--soak", action="store_true", help=f"a soak run: --duration {SOAK_S:.0f}")
    p.add_argument("--all-outputs", action="store_true",
                   help="also subscribe to depth/camera_info, depth/confidence and depth/points (the node computes only what "
                        "someone subscribes to; default: depth/image alone)")
    p.add_argument("--check", action="store_true", help="exit 1 unless latency, rate and memory stay within the bounds above")
    p.add_argument("--out", type=Path, default=None, help="write bench.json, bench.md (a table row) and rss.csv here")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------- the node process
class NodeProcess:
    """``depth-node run`` under a private namespace; CPU and RSS read from /proc."""

    def __init__(self, namespace: str, params: list[str], log: Path) -> None:
        from depth_node.paths import config_file

        command = [sys.executable, "-m", "depth_node.tools.cli", "run", "--params-file", str(config_file("depth.yaml")),
                   "--ros-args", "-r", f"__ns:={namespace}"]
        for item in params:
            command += ["-p", item]
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log
        self._log = log.open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self._last_cpu: tuple[float, float] | None = None

    def sample(self) -> tuple[float, float]:
        """(CPU % since the last sample — 100 = one core, RSS MB) of the node process."""
        pid = self.process.pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        rss_mb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if line.startswith("VmRSS:")) / 1024
        now = time.monotonic()
        last, self._last_cpu = self._last_cpu, (now, cpu_s)
        percent = 100.0 * (cpu_s - last[1]) / (now - last[0]) if last else float("nan")
        return percent, rss_mb

    def tail(self, lines: int = 20) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        from depth_node.tools.run_cmd import interrupt

        code = interrupt(self.process)
        self._log.close()
        return code


# ------------------------------------------------------------------------------------------- the camera
def camera_frames(width: int, height: int, encoding: str, transport: str, count: int = 8) -> tuple[list[Any], Any]:
    """Pre-built messages (the bench measures the node, not rendering) and a camera_info for them."""
    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    from depth_node.ros.convert import array_to_image, camera_info_for_grid
    from depth_node.tools.synth.writer import SynthSpec, generate

    spec = SynthSpec(scenes=("room",), frames=count, width=width, height=height, seed=11)
    messages = []
    for frame in generate(spec):
        if transport == "compressed":
            msg = CompressedImage(format="jpeg")
            msg.data = cv2.imencode(".jpg", frame.rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        elif encoding == "mono8":
            msg = array_to_image(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY), "mono8", Image().header)
        else:
            pixels = frame.rgb if encoding == "rgb8" else np.ascontiguousarray(frame.rgb[..., ::-1])
            msg = array_to_image(pixels, encoding, Image().header)
        messages.append(msg)
    camera = spec.camera()
    return messages, camera_info_for_grid(None, camera, camera, Image().header)  # a plumb_bob info with K = P


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    from depth_node.tools.progress import ProgressBar
    from depth_node.tools.run_cmd import apply_fastdds_profile

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x480, got {args.size!r}") from None
    if width <= 0 or height <= 0 or args.rate <= 0 or args.duration <= 0:
        raise ValueError("--size, --rate and --duration must be positive")
    duration = SOAK_S if args.soak else args.duration
    apply_fastdds_profile(None)  # the camera's images travel like a driver's: the shipped shared-memory profile
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    print(f"depth-node bench: {args.model}, {width}x{height} {args.transport if args.transport == 'compressed' else args.encoding} "
          f"at {args.rate:g} Hz for {duration:g} s")
    messages, info = camera_frames(width, height, args.encoding, args.transport)
    namespace = f"/depth_bench_{os.getpid()}"
    out = args.out or Path(f"/tmp/depth_node_bench_{os.getpid()}")
    params = [f"model_card:={args.model}", f"input_transport:={args.transport}", *args.param]
    node = NodeProcess(namespace, params, out / "node.log")
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    player = rclpy.create_node("depth_bench_camera", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(player)
    compressed = args.transport == "compressed"
    pub_image = player.create_publisher(CompressedImage if compressed else Image,
                                        f"{namespace}/image/compressed" if compressed else f"{namespace}/image", qos_profile_sensor_data)
    pub_info = player.create_publisher(CameraInfo, f"{namespace}/camera_info", qos_profile_sensor_data)
    latencies: list[float] = []
    diagnostics: dict[str, str] = {}
    status_message: list[str] = [""]

    def on_depth(msg: Any) -> None:
        now = player.get_clock().now().nanoseconds
        latencies.append((now - (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)) / 1e6)

    def on_diagnostics(msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(f"{namespace}/"):
                diagnostics.clear()
                diagnostics.update({kv.key: kv.value for kv in status.values})
                status_message[0] = status.message

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    player.create_subscription(Image, f"{namespace}/depth/image", on_depth, reliable)
    if args.all_outputs:
        from sensor_msgs.msg import PointCloud2

        for topic, msg_type in (("depth/camera_info", CameraInfo), ("depth/confidence", Image), ("depth/points", PointCloud2)):
            player.create_subscription(msg_type, f"{namespace}/{topic}", lambda msg: None, reliable, raw=True)
    player.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    samples: list[tuple[float, float, float]] = []  # (seconds, CPU %, RSS MB)
    sent = 0
    try:
        end = time.monotonic() + 300
        while pub_image.get_subscription_count() == 0 or player.count_publishers(f"{namespace}/depth/image") == 0:
            if node.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the node did not come up:\n{node.tail()}")
            executor.spin_once(timeout_sec=0.1)
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:
            executor.spin_once(timeout_sec=0.05)
        node.sample()
        progress = ProgressBar("streaming")
        start = next_frame = next_sample = time.monotonic()
        while (now := time.monotonic()) < start + duration:
            if node.process.poll() is not None:
                raise RuntimeError(f"the node exited ({node.process.returncode}) during the run:\n{node.tail()}")
            if now >= next_frame:
                stamp = player.get_clock().now().to_msg()
                info.header.stamp = stamp
                msg = messages[sent % len(messages)]
                msg.header.stamp = stamp
                msg.header.frame_id = info.header.frame_id = "camera_color_optical_frame"
                pub_info.publish(info)
                pub_image.publish(msg)
                sent += 1
                next_frame += 1.0 / args.rate
                if next_frame < now:  # this player fell behind (a loaded machine): skip, do not burst
                    next_frame = now + 1.0 / args.rate
            if now >= next_sample:
                cpu, rss = node.sample()
                samples.append((now - start, cpu, rss))
                next_sample += 1.0
                progress(int(now - start), int(duration))
            executor.spin_once(timeout_sec=max(0.0, min(next_frame, next_sample) - time.monotonic()))
        drain = time.monotonic() + 3.0  # the last outputs and a final /diagnostics
        seen = dict(diagnostics)
        while time.monotonic() < drain and diagnostics == seen:
            executor.spin_once(timeout_sec=0.05)
    finally:
        code = node.stop()
        executor.shutdown()
        player.destroy_node()
        context.try_shutdown()
    report = summarize(args, width, height, duration, sent, latencies, diagnostics, samples, code)
    if not latencies:
        print(f"the node published nothing; its /diagnostics said: {status_message[0] or '(nothing)'} (log: {node.log_path})")
    print_report(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    (out / "bench.md").write_text(TABLE_HEADER + "\n" + table_row(report) + "\n")
    (out / "rss.csv").write_text("seconds,cpu_percent,rss_mb\n" + "".join(f"{t:.1f},{c:.1f},{r:.1f}\n" for t, c, r in samples))
    print(f"wrote {out}/bench.json, bench.md, rss.csv, node.log")
    if args.check:
        failures = [f"{name}: {detail}" for name, (ok, detail) in report["checks"].items() if not ok]
        for line in failures:
            print(f"CHECK FAILED {line}")
        return 1 if failures else 0
    return 0


def _number(diagnostics: dict[str, str], key: str) -> float:
    try:
        return float(diagnostics[key])
    except (KeyError, ValueError):
        return float("nan")


def summarize(args: argparse.Namespace, width: int, height: int, duration: float, sent: int, latencies: list[float],
              diagnostics: dict[str, str], samples: list[tuple[float, float, float]], exit_code: int) -> dict[str, Any]:
    stages = {k.removeprefix("stage_").removesuffix("_ms"): _number(diagnostics, k) for k in diagnostics if k.startswith("stage_")}
    model_ms = stages.get("infer", float("nan")) + stages.get("preprocess", 0.0)
    overhead_ms = sum(v for k, v in stages.items() if k not in ("infer", "preprocess"))
    frame_ms, frame_p95_ms = _number(diagnostics, "frame_time_p50_ms"), _number(diagnostics, "frame_time_p95_ms")
    cpu = [c for _, c, _ in samples if c == c]
    warm_up = min(10.0, duration / 3)  # model loading and first-frame allocations are not growth
    rss_settled = [r for t, _, r in samples if t >= warm_up] or [r for _, _, r in samples]
    output_hz = len(latencies) / duration
    expected_hz = min(args.rate, 1000.0 / frame_ms) if frame_ms > 0 else args.rate
    bound_ms = 2 * frame_p95_ms + CHECK_TRANSPORT_MS
    p99 = percentile(latencies, 99)
    growth = (rss_settled[-1] - rss_settled[0]) if rss_settled else float("nan")
    return {
        "model": diagnostics.get("model", args.model), "backend": diagnostics.get("backend", "?"),
        "input": f"{width}x{height} {'jpeg' if args.transport == 'compressed' else args.encoding}", "rate_hz": args.rate,
        "duration_s": duration, "frames_sent": sent, "frames_received_by_node": int(_number(diagnostics, "frames_received") or 0),
        "frames_published": len(latencies), "frames_dropped_by_node": int(_number(diagnostics, "frames_dropped") or 0),
        "output_hz": output_hz, "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": p99},
        "model_ms": model_ms, "overhead_ms": overhead_ms, "frame_ms": {"p50": frame_ms, "p95": frame_p95_ms}, "stages_ms": stages,
        "cpu_percent_median": statistics.median(cpu) if cpu else float("nan"),
        "rss_mb": {"first": samples[0][2] if samples else float("nan"), "settled_start": rss_settled[0] if rss_settled else float("nan"),
                   "last": samples[-1][2] if samples else float("nan"), "growth_after_10s": growth},
        "node_exit_code": exit_code,
        "checks": {
            "latency": (bool(p99 <= bound_ms), f"p99 {p99:.1f} ms vs bound {bound_ms:.1f} ms (2 x frame time p95 {frame_p95_ms:.1f} "
                                              f"+ {CHECK_TRANSPORT_MS:g}; model {model_ms:.1f}, overhead {overhead_ms:.1f})"),
            "rate": (bool(abs(output_hz - expected_hz) <= 0.25 * expected_hz), f"{output_hz:.1f} Hz out vs {expected_hz:.1f} Hz expected"),
            "memory": (bool(growth <= 30.0), f"RSS grew {growth:.1f} MB after the first {warm_up:.0f} s"),
            "exit": (exit_code == 0, f"node exit code {exit_code} on SIGINT"),
        },
    }


TABLE_HEADER = ("| model | backend | input | camera Hz | s | sent | published | dropped | out Hz | latency p50 / p95 / p99 ms | "
                "model ms | overhead ms | CPU % | RSS MB (warm → end) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(r: dict[str, Any]) -> str:
    lat, rss = r["latency_ms"], r["rss_mb"]
    return (f"| {r['model']} | {r['backend']} | {r['input']} | {r['rate_hz']:g} | {r['duration_s']:g} | {r['frames_sent']} | "
            f"{r['frames_published']} | {r['frames_dropped_by_node']} | {r['output_hz']:.1f} | {lat['p50']:.1f} / {lat['p95']:.1f} / "
            f"{lat['p99']:.1f} | {r['model_ms']:.1f} | {r['overhead_ms']:.1f} | {r['cpu_percent_median']:.0f} | "
            f"{rss['settled_start']:.0f} → {rss['last']:.0f} |")


def print_report(r: dict[str, Any]) -> None:
    print(TABLE_HEADER)
    print(table_row(r))
    print("stages (node, p50 ms): " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_ms"].items()))
    for name, (ok, detail) in r["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}")
