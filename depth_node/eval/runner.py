"""Evaluate one configuration on one bag: the node's pipeline on every image, scored against ground truth.

Per frame: read (bag → messages) → decode (image → RGB, camera_info → intrinsics, as the node does) → the
node's :class:`DepthPipeline` → ground truth onto the depth grid → score (every alignment mode) → write the
output bag (the node's own message builders) and thumbnails. Rows go to ``frames.csv`` as they are made, so an
interrupted run (Ctrl-C) still leaves a readable partial result; ``finish`` writes ``metrics.json`` and the report.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from depth_node.core.camera import PinholeCamera
from depth_node.core.colorize import colorize_depth, display_range
from depth_node.core.estimator import OutputSpec
from depth_node.core.parameters import PipelineConfig
from depth_node.core.pipeline import DepthPipeline, DepthResult
from depth_node.core.spaces import Invariance, OutputSpace
from depth_node.errors import DepthNodeError
from depth_node.eval.bag_input import CLOUD, IMAGE, INFO, BagFrames, EvalFrame, frame_image
from depth_node.eval.bag_output import BagWriter
from depth_node.eval.bag_tf import static_transforms_cdr
from depth_node.eval.cloud_truth import CloudTruth, frame_truth
from depth_node.eval.groundtruth import gt_camera
from depth_node.eval.picture import colour_bar, label_panel
from depth_node.eval.provenance import provenance
from depth_node.eval.metrics import (
    METRICS,
    MODES,
    SPARSIFICATION_FRACTIONS,
    EvalRange,
    FrameScore,
    apply_fit,
    ause,
    random_order_ause,
    scale_flicker,
    score_frame,
)
from depth_node.ros import convert
from depth_node.ros.outputs import OUTPUTS, OutputMessages

BAG_OUTPUTS = ("depth", "camera_info", "confidence", "points")  # what the output bag holds (as the node publishes them)

EVAL_STAGES = ("read", "decode", "gt", "score", "write")  # the evaluation's own work besides the pipeline
STAGES = ("read", "decode", "preprocess", "infer", "ensemble", "temporal", "scale", "metric", "confidence", "cloud", "roundtrip", "gt", "score", "write")
THUMB_WIDTH = 240
DROPPED = "DroppedFrame"  # error prefix of images the live node did not answer (depth_node.eval.live)


def headline_mode(spec: OutputSpec) -> str:
    """The alignment a reader should look at first: as published for metric models (only they *mean* metres), else
    the protocol of the model's output space."""
    if spec.invariance is Invariance.METRIC:
        return "metric"
    if spec.invariance is Invariance.SCALE:
        return "scale"
    return "affine" if spec.space is OutputSpace.DEPTH else "affine_disparity"


@dataclass
class Outcome:
    """What a depth source made of one frame, on the grid ``camera`` describes."""

    depth_m: np.ndarray
    confidence: np.ndarray | None
    camera: PinholeCamera
    timings_ms: dict[str, float]
    messages: Callable[[], list[tuple[str, str, bytes | memoryview]]]  # (topic, msgtype, CDR) as published, made on demand


class PipelineSource:
    """The node's pipeline in this process (no DDS): fast and deterministic. The published messages are built as the
    node builds them (``depth_node.ros.outputs``: the cloud computed straight into its message, CDR buffers)."""

    def __init__(self, pipeline: DepthPipeline, config: PipelineConfig, points: bool = True, sparse_reference: float = 0.0,
                 clouds: CloudTruth | None = None) -> None:
        self.pipeline, self.config, self.points = pipeline, config, points
        self.spec = pipeline.estimator.output
        self.sparse_reference, self.clouds = sparse_reference, clouds

    def __call__(self, frame: EvalFrame, rgb: np.ndarray, camera: PinholeCamera) -> Outcome:
        reference = None
        truth = frame_truth(frame, camera, camera, self.clouds) if self.sparse_reference > 0 else None
        if truth is not None:
            # scale.mode sparse: a random, per-frame reproducible share of the ground truth (the depth image's, or
            # the projected LiDAR's: 1 gives all of it, as the node's reference_points would) is the reference
            # (those pixels are still scored: at 1 % of a depth image they hardly move the figures)
            keep = np.random.default_rng(frame.index).random(truth.shape) < self.sparse_reference
            reference = np.where(keep, truth, np.float32(np.nan))
        stamp = frame.image.header.stamp
        header = Header(stamp=Time(sec=int(stamp.sec), nanosec=int(stamp.nanosec)), frame_id=str(frame.image.header.frame_id))
        messages = OutputMessages(header, frame.camera_info, camera, self.config, BAG_OUTPUTS)  # computed into, as the node's
        result = self.pipeline.process(rgb, camera, confidence=True, points=self.points,
                                       reference_depth_m=reference, out=messages)
        return Outcome(result.depth_m, result.confidence, result.camera, result.timings_ms,
                       lambda: self._messages(result, messages))

    @staticmethod
    def _messages(result: DepthResult, messages: OutputMessages) -> list[tuple[str, str, memoryview]]:
        serialized = messages.serialized(result)
        return [(f"/{OUTPUTS[name][0]}", f"sensor_msgs/msg/{OUTPUTS[name][1].__name__}", memoryview(data))
                for name, data in serialized.items()]


class RecordedSource:
    """A depth image recorded in the bag — another node's output, an earlier run — as the prediction, scored with the
    same protocol and report as the node's: metres as they were published (32FC1 m or 16UC1 mm; NaN, 0 and ±Inf
    carry no depth), on their own camera_info's grid or, without one, the image's field of view."""

    spec = OutputSpec(OutputSpace.DEPTH, Invariance.METRIC)

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def __call__(self, frame: EvalFrame, rgb: np.ndarray, camera: PinholeCamera) -> Outcome:
        if frame.prediction is None:
            raise DepthNodeError(f"no message on {self.topic} within --slop of this image")
        recorded = convert.depth_image_to_metres(frame.prediction, self.topic)  # errors name the recorded topic
        depth = np.where(np.isfinite(recorded), recorded, np.float32(np.nan)).astype(np.float32, copy=False)
        source_camera = gt_camera(depth, frame.prediction_info, camera)
        return Outcome(depth, None, source_camera, {}, lambda: [])


@dataclass(frozen=True)
class EvalOptions:
    eval_range: EvalRange = EvalRange()
    write_bag: bool = True
    bag_points: bool = True
    thumbnails: bool = True
    sparse_reference: float = 0.0   # share of the GT pixels given to the pipeline as its reference depth (scale.mode sparse)
    extrinsic: str = ""             # ground-truth cloud → camera optical frame, x,y,z,qx,qy,qz,qw (default: the bag's TF)
    motion_frame: str = ""          # carry cloud points across the image ↔ cloud time through this world-fixed TF frame


@dataclass
class FrameRow:
    index: int
    stamp_ns: int
    score: FrameScore | None
    timings_ms: dict[str, float]
    error: str = ""
    gt_density: float = math.nan  # share of the prediction's pixels with ground truth (NaN: no ground truth)


@dataclass
class Evaluation:
    """The running result of one configuration on one bag."""

    out_dir: Path
    label: str
    headline: str
    info: dict[str, Any]
    rows: list[FrameRow] = field(default_factory=list)
    interrupted: bool = False
    wall_s: float = 0.0
    run: dict[str, Any] = field(default_factory=provenance)  # version, commit, date, command: what made this result

    def summary(self) -> dict[str, Any]:
        """Everything ``metrics.json`` holds: aggregates (mean over scored frames), latency, temporal, AUSE."""
        scored = [r for r in self.rows if r.score is not None and r.score.scored_pixels >= 2]
        with_gt = [r for r in self.rows if r.score is not None]  # ground truth paired (scored or not)
        metrics = {mode: {name: _mean([r.score.metrics[mode][name] for r in scored]) for name in METRICS} for mode in MODES}
        curves = [r.score.sparsification for r in scored if r.score.sparsification is not None]
        model_curve = np.nanmean([c[0] for c in curves], axis=0) if curves else None
        oracle_curve = np.nanmean([c[1] for c in curves], axis=0) if curves else None
        stages = sorted({k for r in self.rows for k in r.timings_ms})
        latency = {k: _percentiles([r.timings_ms[k] for r in self.rows if k in r.timings_ms]) for k in stages}
        pipeline_ms = [sum(v for k, v in r.timings_ms.items() if k not in EVAL_STAGES) for r in self.rows if not r.error]
        eval_ms = [sum(r.timings_ms.get(k, 0.0) for k in ("read", "decode", "gt", "score")) for r in self.rows if not r.error]
        infer_ms = [r.timings_ms["infer"] for r in self.rows if "infer" in r.timings_ms]
        return {
            "label": self.label,
            "interrupted": self.interrupted,
            "frames": {"images": len(self.rows), "scored": len(scored),
                       "errors": sum(1 for r in self.rows if r.error and not r.error.startswith(DROPPED)),
                       "dropped": sum(1 for r in self.rows if r.error.startswith(DROPPED)),
                       "without_ground_truth": sum(1 for r in self.rows if not r.error and r.score is None),
                       # ground truth there, but fewer than 2 pixels with both a valid prediction and valid ground truth
                       "unscored": len(with_gt) - len(scored)},
            "headline_mode": self.headline,
            "metrics": metrics,
            # of the ground-truth pixels of every frame with ground truth, the share with a valid prediction
            "coverage": _mean([r.score.coverage if r.score.gt_pixels else 0.0 for r in with_gt]),
            # of the pixels of every frame with ground truth, the share that has it (a LiDAR's: a few %)
            "gt_density": _percentiles([r.gt_density for r in with_gt]) if with_gt else {},
            "temporal": scale_flicker([r.score.fits["scale"][0] for r in scored]),
            "ause_abs_rel": ause(model_curve, oracle_curve) if model_curve is not None else math.nan,
            "ause_random_abs_rel": random_order_ause(model_curve, oracle_curve) if model_curve is not None else math.nan,
            "sparsification": {"fractions": SPARSIFICATION_FRACTIONS.tolist(),
                               "by_confidence": _list(model_curve), "oracle": _list(oracle_curve)},
            "latency_ms": latency,
            "pipeline_ms_p50": float(np.median(pipeline_ms)) if pipeline_ms else math.nan,
            # no pipeline work (a recorded prediction): no rate to state
            "frames_per_s": 1000.0 / float(np.median(pipeline_ms)) if pipeline_ms and np.median(pipeline_ms) > 0 else math.nan,
            "eval_overhead_ratio": float(np.median(eval_ms) / np.median(infer_ms)) if infer_ms and eval_ms else math.nan,
            "wall_s": self.wall_s,
            "run": self.run,
            **self.info,
        }


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)), "mean": float(np.mean(values))}


def _list(curve: np.ndarray | None) -> list[float] | None:
    return None if curve is None else [float(v) for v in curve]


def csv_header() -> list[str]:
    cols = ["frame", "stamp_ns", "scored", "coverage", "gt_pixels"]
    for mode in MODES:
        cols += [f"{mode}_{name}" for name in METRICS] + [f"{mode}_scale", f"{mode}_shift"]
    return cols + ["ause_abs_rel", "gt_density"] + [f"ms_{stage}" for stage in STAGES] + ["error"]


def csv_row(row: FrameRow) -> list[Any]:
    s = row.score
    values: list[Any] = [row.index, row.stamp_ns, int(s is not None and s.scored_pixels >= 2), s.coverage if s else "",
                         s.gt_pixels if s else ""]
    for mode in MODES:
        values += [s.metrics[mode][name] if s else "" for name in METRICS]
        values += list(s.fits[mode]) if s else ["", ""]
    curve_area = ause(*s.sparsification) if s and s.sparsification is not None else ""
    values += [curve_area, round(row.gt_density, 6) if math.isfinite(row.gt_density) else ""]
    values += [round(row.timings_ms[k], 3) if k in row.timings_ms else "" for k in STAGES]
    return values + [row.error]


class Evaluator:
    """Runs a depth source over ``frames`` into ``out_dir`` (created; must not hold an earlier run). The source is
    a :class:`DepthPipeline` (run here, as :class:`PipelineSource`) or any callable returning an :class:`Outcome`
    with a ``spec`` attribute (e.g. the live node of :mod:`depth_node.eval.live`)."""

    def __init__(self, source: DepthPipeline | Any, config: PipelineConfig, frames: BagFrames, out_dir: Path,
                 options: EvalOptions = EvalOptions(), label: str = "", info: dict[str, Any] | None = None,
                 score_from: int = 0, thumbs: Path | None = None) -> None:
        """``score_from``: frames with a lower index only warm the source up (temporal smoothing, scale tracking: a
        shard of a longer bag) and leave no row, bag message or thumbnail. ``thumbs``: the thumbnails' folder
        (default ``out_dir``/thumbs)."""
        self.clouds = (CloudTruth.for_bag(frames.bag, options.extrinsic, options.motion_frame)
                       if frames.topics.cloud else None)  # ground truth from a LiDAR
        if isinstance(source, DepthPipeline):
            label = label or source.estimator.name
            source = PipelineSource(source, config, points=options.write_bag and options.bag_points,
                                    sparse_reference=options.sparse_reference, clouds=self.clouds)
        self.source, self.config, self.frames, self.options = source, config, frames, options
        self.out_dir = Path(out_dir)
        if (self.out_dir / "frames.csv").exists():
            raise FileExistsError(f"{self.out_dir} already holds an evaluation: choose a new --output folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.result = Evaluation(self.out_dir, label or "depth_node", headline_mode(source.spec), info or {})
        self.thumbs = Path(thumbs) if thumbs is not None else self.out_dir / "thumbs"
        self.score_from = score_from
        self._geometry = convert.InputGeometry()

    def run(self, progress: Callable[[int, int], None] | None = None, handle_signals: bool = True,
            should_stop: Callable[[], bool] | None = None) -> Evaluation:
        """Every frame; returns the evaluation. Ctrl-C (SIGINT) or SIGTERM stops after the frame in progress, so the CSV,
        the output bag and the summary agree frame for frame; a second one stops at once. After a SIGKILL, the output
        bag has no index: ``depth-node bag-recover`` (or eval itself) reads every frame written before it."""
        writer = BagWriter(self.out_dir / "bag", "mcap") if self.options.write_bag else None
        if writer is not None and self.clouds is not None:  # the ground-truth cloud's frames, for a player and RViz
            for record in static_transforms_cdr(self.frames.bag):
                writer.write_cdr(*record)
        if self.options.thumbnails:
            self.thumbs.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        total = len(self.frames)
        stop = threading.Event()
        previous = _stop_on_signals(stop) if handle_signals else {}
        with (self.out_dir / "frames.csv").open("w", newline="") as handle:
            table = csv.writer(handle)
            table.writerow(csv_header())
            try:
                iterator = iter(self.frames)
                while not stop.is_set():
                    t0 = time.perf_counter()
                    frame = next(iterator, None)
                    if frame is None:
                        break
                    if frame.index < self.score_from:
                        self._warm_up(frame)
                        continue
                    row = self._frame(frame, writer, (time.perf_counter() - t0) * 1e3)
                    self.result.rows.append(row)
                    table.writerow(csv_row(row))
                    handle.flush()
                    if progress:
                        progress(len(self.result.rows), total)
                    if should_stop is not None and should_stop():  # asked from elsewhere (a Ray driver's Ctrl-C)
                        stop.set()
            except KeyboardInterrupt:
                self.result.interrupted = True
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                if writer is not None:
                    writer.close()
                self.result.wall_s = time.perf_counter() - start
        self.result.interrupted |= stop.is_set()
        return self.result

    def _frame(self, frame: EvalFrame, writer: BagWriter | None, read_ms: float) -> FrameRow:
        timings = {"read": read_ms}
        try:
            t = time.perf_counter()
            rgb, camera = self._decode(frame)
            timings["decode"] = (time.perf_counter() - t) * 1e3
            result = self.source(frame, rgb, camera)
            timings.update(result.timings_ms)
            score = None
            t = time.perf_counter()
            gt = frame_truth(frame, camera, result.camera, self.clouds)
            density = math.nan
            if gt is not None:
                density = float(np.isfinite(gt).mean())
                timings["gt"] = (time.perf_counter() - t) * 1e3
                t = time.perf_counter()
                score = score_frame(result.depth_m, gt, self.options.eval_range, confidence=result.confidence,
                                    sparsification_mode=self.result.headline)
                timings["score"] = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            if writer is not None:
                self._write(writer, frame, result)
            if self.options.thumbnails:
                self._thumbnails(frame.index, rgb, result, gt, score)
            timings["write"] = (time.perf_counter() - t) * 1e3
            return FrameRow(frame.index, frame.stamp_ns, score, timings, gt_density=density)
        except Exception as exc:  # noqa: BLE001 - a bad frame is reported and skipped, as the node does; the run goes on
            return FrameRow(frame.index, frame.stamp_ns, None, timings, f"{type(exc).__name__}: {exc}")

    def _warm_up(self, frame: EvalFrame) -> None:
        """The frame through the source only: its state moves on as in a serial run; nothing is scored or kept."""
        try:
            self.source(frame, *self._decode(frame))
        except Exception:  # noqa: BLE001, S110 - the serial run reports this frame's error; here it only warms up
            pass

    def _decode(self, frame: EvalFrame) -> tuple[np.ndarray, PinholeCamera]:
        return frame_image(frame, self.frames.topics.image_type, self._geometry, self.config.camera_model,
                           self.config.fallback_hfov_deg)

    def _write(self, writer: BagWriter, frame: EvalFrame, result: Outcome) -> None:
        """The input topics as recorded, and what the node published for this frame, at the image's bag time."""
        topics = self.frames.topics
        for topic, (timestamp, data) in frame.raw.items():
            msgtype = topics.image_type if topic == topics.image else CLOUD if topic == topics.cloud else (
                INFO if topic in (topics.camera_info, topics.depth_info, topics.prediction_info) else IMAGE)
            writer.write_cdr(topic, msgtype, timestamp, data)
        bag_time = frame.raw[topics.image][0]
        for topic, msgtype, data in result.messages():
            writer.write_cdr(topic, msgtype, bag_time, data)

    def _thumbnails(self, index: int, rgb: np.ndarray, result: Outcome, gt: np.ndarray | None, score: FrameScore | None) -> None:
        """Labelled strip (JPEG): RGB | prediction | ground truth | |error| / GT, a colour key under each: depth in
        metres on the GT's 2–98 % range (both depth panels alike), the error on 0–50 % after the headline alignment."""
        height = int(round(rgb.shape[0] * THUMB_WIDTH / rgb.shape[1]))

        def small(img: np.ndarray) -> np.ndarray:
            return cv2.resize(img, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA if img.shape[1] > THUMB_WIDTH else cv2.INTER_NEAREST)

        lo, hi = display_range(gt if gt is not None and np.isfinite(gt).any() else result.depth_m)
        depth_key = colour_bar(THUMB_WIDTH, lo, hi, "turbo", " m")
        blank = np.full_like(depth_key, 255)
        first = (label_panel(small(rgb), "RGB") if self.clouds is None or gt is None else
                 label_panel(overlay_points(small(rgb), gt, lo, hi), "LiDAR on RGB"))  # a wrong extrinsic shows at a glance
        panels = [(first, blank), (label_panel(small(colorize_depth(result.depth_m, lo, hi)), "prediction"), depth_key)]
        if gt is not None and score is not None:
            mode = self.result.headline
            aligned = apply_fit(result.depth_m, mode, score.fits[mode]) if math.isfinite(score.fits[mode][0]) else result.depth_m
            with np.errstate(invalid="ignore", divide="ignore"):
                error = np.abs(aligned - gt) / gt * 100.0
            gt_small = cv2.resize(gt, (THUMB_WIDTH, height), interpolation=cv2.INTER_NEAREST)
            err_small = cv2.resize(error.astype(np.float32), (THUMB_WIDTH, height), interpolation=cv2.INTER_NEAREST)
            panels += [(label_panel(colorize_depth(gt_small, lo, hi), "ground truth"), depth_key),
                       (label_panel(colorize_depth(err_small, 0.0, 50.0, "inferno"), "|error| / GT"),
                        colour_bar(THUMB_WIDTH, 0.0, 50.0, "inferno", " %"))]
        columns = [np.concatenate(pair, axis=0) for pair in panels]
        gap = np.full((columns[0].shape[0], 6, 3), 255, np.uint8)  # white between panels: keys and labels stay apart
        strip = np.concatenate([part for column in columns for part in (column, gap)][:-1], axis=1)
        cv2.imwrite(str(self.thumbs / f"{index:06d}.jpg"), strip[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])


def overlay_points(picture: np.ndarray, depth_m: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Sparse depth (any grid) drawn over ``picture`` as dots coloured like the depth panels: where the depth jumps,
    the colours should change at the picture's edges; shifted or rotated ones mean a wrong extrinsic."""
    out = picture.copy()
    v, u = np.nonzero(np.isfinite(depth_m))
    x = ((u + 0.5) * picture.shape[1] / depth_m.shape[1]).astype(int)
    y = ((v + 0.5) * picture.shape[0] / depth_m.shape[0]).astype(int)
    out[y, x] = colorize_depth(depth_m[v, u][None, :], lo, hi)[0]
    return out


def _stop_on_signals(stop: threading.Event) -> dict[int, Any]:
    """Route Ctrl-C (SIGINT) and SIGTERM (what ``timeout``, systemd and CI send) to ``stop``: the first one stops
    after the frame in progress, a second one raises KeyboardInterrupt at once. Returns the handlers to restore;
    a signal that is ignored or has somebody else's handler is left alone, as are all outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        sys.stderr.write(f"\n{name}: stopping after this frame (again to stop now)\n")

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler in (signal.default_int_handler, signal.SIG_DFL):
            previous[sig] = handler
            signal.signal(sig, on_signal)
    return previous


def save_summary(evaluation: Evaluation) -> dict[str, Any]:
    """Write ``metrics.json`` (NaN as null) and return the summary."""
    summary = evaluation.summary()
    (evaluation.out_dir / "metrics.json").write_text(json.dumps(json_safe(summary), indent=1))
    return summary


def json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
