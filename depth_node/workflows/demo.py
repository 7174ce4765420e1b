"""``depth-node demo``: the whole product on the embedded default model, in under two minutes.

Renders a synthetic RGB-D scene bag (exact depth), then plays it — and the real RGB-D bag of
../shared/data/bags when present — into the real node (``depth-node run``, a separate process, Fast DDS), scores
what the node publishes against the bags' ground truth, and prints frames in/out, latency and accuracy, where the
published outputs were recorded, and a picture RGB | depth | confidence | point cloud.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from depth_node.core.depth_encoding import decode_depth
from depth_node.core.parameters import load
from depth_node.estimators.card import load_card
from depth_node.eval.bag_input import BagFrames, choose_topics, open_reader
from depth_node.eval.live import LiveNode
from depth_node.eval.metrics import EvalRange
from depth_node.eval.picture import four_panel
from depth_node.eval.report import run_and_report
from depth_node.eval.runner import EvalOptions
from depth_node.paths import config_file, resolve_card
from depth_node.progress import ProgressBar
from depth_node.ros.convert import compressed_to_rgb, image_to_array, image_to_rgb
from depth_node.synth.writer import SynthSpec, write

MARKER = ".depth_node_demo"
REAL_BAG = Path("../shared/data/bags/slambook_rgbd_ros2_mcap")
KINECT = (518.0, 519.0, 325.5, 253.5)  # the real bag's camera: the synthetic scene uses the same intrinsics

def run_demo(out: Path, model: str = "default", frames: int = 12, real_bag: Path = REAL_BAG) -> int:
    """The demo into ``out`` (replaced when an earlier demo made it); prints the summary, returns 0."""
    if out.exists():
        if not (out / MARKER).is_file():
            raise FileExistsError(f"{out} exists and was not made by depth-node demo: choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).touch()
    card = load_card(resolve_card(model))
    params = config_file("depth.yaml")
    config = load(params, [f"model_card:={model}"])
    say = print
    say(f"depth_node demo — model {card.name} ({card.output.describe()}), run by the node in its own process")
    write(SynthSpec(scenes=("room", "corridor"), frames=max(1, frames // 2), intrinsics=KINECT, seed=7),
          out / "synthetic", folder=False, progress=ProgressBar("rendering a synthetic scene"))
    bags = [("synthetic", "synthetic scene (exact depth)", out / "synthetic" / "bag")]
    if real_bag.exists():
        bags.append(("real", f"real RGB-D bag {real_bag.name}", real_bag))
    else:
        say(f"(no real bag at {real_bag}: only the synthetic scene)")
    lines, picture_source = [], None
    for name, title, bag in bags:
        reader = open_reader(bag)
        topics = choose_topics(reader)
        reader.close()
        bag_frames = BagFrames(bag, topics)
        target = out / f"{name}_eval"
        node = LiveNode(params, [f"model_card:={model}"], topics, card.output, target / "node.log", timeout_s=60.0,
                        points=True, diagnostics_period_s=config.diagnostics_period_s)
        evaluation, summary = run_and_report(node, config, bag_frames, target, EvalOptions(EvalRange(1e-3, 20.0)), card.name,
                                             {"bag": str(bag), "model": card.name}, f"demo: {card.name} on {title}",
                                             ProgressBar(f"{name}: node"))
        lines.append(_summary_lines(title, summary, target))
        if picture_source is None or name == "real":
            picture_source = (evaluation, target / "bag", topics.image)
    picture = out / "demo.png"
    _picture(*picture_source, picture)
    say("")
    for block in lines:
        say(block)
    say(f"picture: {picture}  (RGB | depth | confidence | point cloud, the median frame of the last bag)")
    return 0


def _summary_lines(title: str, s: dict[str, Any], folder: Path) -> str:
    node = s.get("node_diagnostics") or {}
    m, a = s["metrics"]["metric"], s["metrics"]["affine"]

    def f(v: float, digits: int = 3) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) and math.isfinite(v) else "n/a"

    return "\n".join([
        f"{title}:",
        f"  frames    in {node.get('frames_received', '?')}, out {node.get('frames_processed', '?')}, dropped "
        f"{node.get('frames_dropped', '?')} (the node's count); {s['frames']['scored']} of {s['frames']['images']} scored",
        f"  latency   receive→publish {node.get('processing_p50_ms', '?')} ms p50, {node.get('processing_p95_ms', '?')} ms p95 "
        f"(the node's /diagnostics); round trip over DDS {f(s['latency_ms'].get('roundtrip', {}).get('p50', math.nan), 1)} ms",
        f"  accuracy  AbsRel {f(m['abs_rel'])} as published (metres), {f(a['abs_rel'])} scale+shift aligned; "
        f"δ1 {f(m['delta1'])} / {f(a['delta1'])}; RMSE {f(m['rmse'])} m",
        f"  recorded  {folder / 'bag'} (open it in Foxglove; on a ROS 2 install: ros2 bag play), report {folder / 'report.html'}",
    ])


def _picture(evaluation: Any, bag: Path, image_topic: str, path: Path) -> None:
    """The four-panel picture of the median frame (by headline AbsRel), from what the node published."""
    mode = evaluation.headline
    scored = [r for r in evaluation.rows if r.score is not None and math.isfinite(r.score.metrics[mode]["abs_rel"])]
    rows = sorted(scored, key=lambda r: r.score.metrics[mode]["abs_rel"]) or evaluation.rows
    stamp = rows[len(rows) // 2].stamp_ns
    found: dict[str, Any] = {}
    reader = open_reader(bag)
    try:
        for conn, _, raw in reader.messages():
            if conn.topic in (image_topic, "/depth/image", "/depth/confidence", "/depth/points"):
                msg = reader.deserialize(raw, conn.msgtype)
                if msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == stamp:
                    found[conn.topic] = msg
    finally:
        reader.close()
    image = found[image_topic]
    rgb = compressed_to_rgb(image) if hasattr(image, "format") else image_to_rgb(image)
    depth_msg = found["/depth/image"]
    depth = decode_depth(image_to_array(depth_msg), depth_msg.encoding)
    confidence = image_to_array(found["/depth/confidence"]) if "/depth/confidence" in found else None
    points = None
    if "/depth/points" in found:
        cloud = found["/depth/points"]
        points = np.frombuffer(cloud.data, np.float32).reshape(cloud.height, cloud.width, cloud.point_step // 4)
    strip = four_panel(rgb, depth, confidence, points)
    cv2.imwrite(str(path), strip[..., ::-1])

