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

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from depth_node.progress import ProgressBar
from depth_node.ros.convert import array_to_image, camera_info_for_grid
from depth_node.ros.harness import NodeProcess, cdr_stamp_ns
from depth_node.synth.writer import SynthSpec, generate

CHECK_TRANSPORT_MS = 20.0
SOAK_S = 600.0


def camera_frames(width: int, height: int, encoding: str, transport: str, count: int = 8) -> tuple[list[Any], Any]:
    """Pre-built messages (the bench measures the node, not rendering) and a camera_info for them."""
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


@dataclass(frozen=True)
class BenchOptions:
    """The camera played into the node: model card, extra ``NAME:=VALUE`` node parameters, rate (Hz), image size
    and encoding, raw or compressed transport, seconds of stream, and whether every output is subscribed to."""

    model: str = "default"
    param: tuple[str, ...] = ()
    rate: float = 30.0
    width: int = 640
    height: int = 480
    encoding: str = "rgb8"
    transport: str = "raw"
    duration: float = 20.0
    all_outputs: bool = False


def run_bench(options: BenchOptions, out: Path) -> dict[str, Any]:
    """Play the camera into ``depth-node run``; print the report and write bench.json, bench.md (a table row),
    rss.csv and node.log into ``out``. Returns the report (``report["checks"]``: name → (ok, detail))."""
    if options.width <= 0 or options.height <= 0 or options.rate <= 0 or options.duration <= 0:
        raise ValueError("--size, --rate and --duration must be positive")
    print(f"depth-node bench: {options.model}, {options.width}x{options.height} "
          f"{options.transport if options.transport == 'compressed' else options.encoding} at {options.rate:g} Hz for {options.duration:g} s")
    messages, info = camera_frames(options.width, options.height, options.encoding, options.transport)
    streamed = stream(options, messages, info, out / "node.log")
    report = summarize(options, streamed)
    if not report["frames_published"]:
        print(f"the node published nothing; its /diagnostics said: {streamed.status or '(nothing)'} (log: {streamed.log_path})")
    print_report(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    (out / "bench.md").write_text(TABLE_HEADER + "\n" + table_row(report) + "\n")
    (out / "rss.csv").write_text("seconds,cpu_percent,rss_mb\n" + "".join(f"{t:.1f},{c:.1f},{r:.1f}\n" for t, c, r in streamed.samples))
    print(f"wrote {out}/bench.json, bench.md, rss.csv, node.log")
    return report


@dataclass
class Streamed:
    """What one bench run saw: frames sent, latency of each depth image received (ms), the node's last /diagnostics
    and status message, (seconds, CPU %, RSS MB) samples, the node's exit code on SIGINT, its log."""

    sent: int
    latencies_ms: list[float]
    diagnostics: dict[str, str]
    status: str
    samples: list[tuple[float, float, float]]
    exit_code: int
    log_path: Path


def stream(options: BenchOptions, messages: list[Any], info: Any, log_path: Path) -> Streamed:
    """The camera at ``options.rate`` into the node (:class:`NodeProcess`) for ``options.duration`` seconds."""
    duration = options.duration
    latencies: list[float] = []

    def on_output(name: str, data: bytes, arrival_ns: int) -> None:
        if name == "depth":
            latencies.append((arrival_ns - cdr_stamp_ns(data)) / 1e6)

    params = [f"model_card:={options.model}", *options.param]
    outputs = ("depth", "camera_info", "confidence", "points") if options.all_outputs else ("depth",)
    node = NodeProcess(params, transport=options.transport, outputs=outputs, on_output=on_output, log_path=log_path)
    samples: list[tuple[float, float, float]] = []  # (seconds, CPU %, RSS MB)
    sent = 0
    try:
        node.wait_ready()
        node.sample()
        progress = ProgressBar("streaming")
        clock = node.node.get_clock()
        start = next_frame = next_sample = time.monotonic()
        while (now := time.monotonic()) < start + duration:
            node.check_alive()
            if now >= next_frame:
                stamp = clock.now().to_msg()
                msg = messages[sent % len(messages)]
                msg.header.stamp = info.header.stamp = stamp
                msg.header.frame_id = info.header.frame_id = "camera_color_optical_frame"
                node.publish(msg, info)
                sent += 1
                next_frame += 1.0 / options.rate
                if next_frame < now:  # this player fell behind (a loaded machine): skip, do not burst
                    next_frame = now + 1.0 / options.rate
            if now >= next_sample:
                cpu, rss = node.sample()
                samples.append((now - start, cpu, rss))
                next_sample += 1.0
                progress(int(now - start), int(duration))
            node.executor.spin_once(timeout_sec=max(0.0, min(next_frame, next_sample) - time.monotonic()))
        seen = node.diagnostics_count  # the last outputs and a final /diagnostics
        node.spin_until(lambda: node.diagnostics_count > seen, 3.0)
    finally:
        code = node.close()
    return Streamed(sent, latencies, dict(node.diagnostics), node.diagnostics_message, samples, code, node.log_path)


def _number(diagnostics: dict[str, str], key: str) -> float:
    try:
        return float(diagnostics[key])
    except (KeyError, ValueError):
        return float("nan")


def summarize(options: BenchOptions, streamed: Streamed) -> dict[str, Any]:
    """The report: latency percentiles, rates, the node's stage times, CPU and memory, and the --check verdicts."""
    sent, latencies, diagnostics = streamed.sent, streamed.latencies_ms, streamed.diagnostics
    samples, exit_code = streamed.samples, streamed.exit_code
    width, height, duration = options.width, options.height, options.duration
    stages = {k.removeprefix("stage_").removesuffix("_ms"): _number(diagnostics, k) for k in diagnostics if k.startswith("stage_")}
    model_ms = stages.get("infer", float("nan")) + stages.get("preprocess", 0.0)
    overhead_ms = sum(v for k, v in stages.items() if k not in ("infer", "preprocess"))
    frame_ms, frame_p95_ms = _number(diagnostics, "frame_time_p50_ms"), _number(diagnostics, "frame_time_p95_ms")
    cpu = [c for _, c, _ in samples if c == c]
    warm_up = min(10.0, duration / 3)  # model loading and first-frame allocations are not growth
    rss_settled = [r for t, _, r in samples if t >= warm_up] or [r for _, _, r in samples]
    output_hz = len(latencies) / duration
    expected_hz = min(options.rate, 1000.0 / frame_ms) if frame_ms > 0 else options.rate
    bound_ms = 2 * frame_p95_ms + CHECK_TRANSPORT_MS
    p99 = percentile(latencies, 99)
    growth = (rss_settled[-1] - rss_settled[0]) if rss_settled else float("nan")
    return {
        "model": diagnostics.get("model", options.model), "backend": diagnostics.get("backend", "?"),
        "input": f"{width}x{height} {'jpeg' if options.transport == 'compressed' else options.encoding}", "rate_hz": options.rate,
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
