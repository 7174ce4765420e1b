"""``depth-node eval`` as one library call: every bag × every configuration, scored, with reports.

A configuration is a parameters file plus ``-p`` overrides, read by :func:`depth_node.core.parameters.load` (the
check the node makes at start-up); it runs in this process (the node's pipeline) or, with ``live``, in a node
process over DDS (:mod:`depth_node.eval.live`). Output: one folder per bag (and per configuration with
``compare``) holding metrics.json, frames.csv, report.html, thumbs/ and bag/; with ``compare`` a side-by-side
report.html per bag.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from depth_node.core.parameters import load
from depth_node.core.pipeline import DepthPipeline
from depth_node.estimators.card import load_card
from depth_node.estimators.registry import load_model
from depth_node.eval.bag_input import BagError, BagFrames, choose_topics, open_reader
from depth_node.eval.bag_recover import RecoverError, recover
from depth_node.eval.live import LiveNode
from depth_node.eval.report import run_and_report, write_report
from depth_node.eval.runner import EvalOptions
from depth_node.paths import config_file, resolve_card
from depth_node.progress import ProgressBar


@dataclass(frozen=True)
class TopicNames:
    """Topics given by the user; None = found by message type."""

    image: str | None = None
    camera_info: str | None = None
    depth: str | None = None
    depth_info: str | None = None


@dataclass
class EvalRequest:
    """What to evaluate. ``params_files``: one file, or two with ``compare`` (None = the package's
    config/depth.yaml); ``assignments``: ``NAME:=VALUE`` overrides applied on top of each."""

    bags: list[Path]
    output: Path
    params_files: list[Path | None] = field(default_factory=lambda: [None])
    assignments: list[str] = field(default_factory=list)
    compare: bool = False
    live: bool = False
    live_timeout_s: float = 60.0
    topics: TopicNames = TopicNames()
    slop_s: float = 0.02
    max_frames: int = 0
    options: EvalOptions = EvalOptions()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def evaluate(request: EvalRequest, say: Callable[[str], None] = _stderr) -> int:
    """Run ``request``; returns the exit status: 0, 1 when a bag had no frame that could be scored, 130 when
    interrupted (the outputs then hold the frames done). Raises ConfigError / ModelLoadError / BagError with what to
    change before anything runs."""
    options = request.options
    if not 0.0 <= options.sparse_reference <= 1.0:
        raise ValueError(f"--sparse-reference is a share of pixels in [0, 1], got {options.sparse_reference}")
    if options.sparse_reference and request.live:
        raise ValueError("--sparse-reference feeds the in-process pipeline; with --live publish a reference_depth topic instead")
    configs = [_configuration(request, params, say) for params in request.params_files]
    status = 0
    for bag in request.bags:
        frames = _frames(request, bag, say)
        bag_out = request.output / _name(bag) if len(request.bags) > 1 else request.output
        evaluations, summaries = [], []
        for label, params, config, model in configs:
            out_dir = bag_out / _name(Path(label)) if request.compare else bag_out
            source, info = _source(request, label, params, config, model, frames, out_dir)
            evaluation, summary = run_and_report(source, config, frames, out_dir, options, label, info, f"{label} on {bag.name}",
                                                 ProgressBar(f"{label} on {bag.name}"))
            evaluations.append(evaluation)
            summaries.append(summary)
            say(_one_line(summary) + f"\n  wrote {out_dir}/report.html, metrics.json, frames.csv" +
                ("" if not options.write_bag else ", bag/"))
            failed = [r for r in evaluation.rows if r.error]
            if failed:
                say(f"WARNING: {len(failed)} frame(s) not scored; first, frame {failed[0].index}: {failed[0].error} "
                    "(every one is in frames.csv, column 'error')")
            counts = summary["frames"]
            if counts["unscored"]:
                say(f"WARNING: {counts['unscored']} frame(s) have ground truth but no valid prediction on it (NaN or "
                    "invalid depth, or ground truth of fewer than 2 pixels): counted in coverage, not in the metrics; "
                    "frames.csv column 'scored' is 0 for them")
            if not counts["scored"] and counts["images"] and not evaluation.interrupted:
                say(f"ERROR: no frame of {bag} could be scored ({counts['without_ground_truth']} without ground truth, "
                    f"{counts['unscored']} without a valid prediction on it, {counts['errors']} failed)")
                status = status or 1
            if evaluation.interrupted:
                status = 130
                break
        if request.compare and len(evaluations) == 2:
            path = write_report(bag_out / "report.html", evaluations, summaries, f"{' vs '.join(s['label'] for s in summaries)} on {bag.name}")
            say(f"  comparison: {path}")
        if status == 130:
            say("interrupted: the outputs above hold the frames done so far")
            return status
    return status


def _configuration(request: EvalRequest, params: Path | None, say: Callable[[str], None]) -> tuple[str, Path, Any, Any]:
    """(label, parameters file, PipelineConfig, the pipeline — or with ``live`` only the model card)."""
    params = params or config_file("depth.yaml")
    config = load(params, request.assignments)
    if request.live:  # the node loads the model; here only its card, for the output space
        card = load_card(resolve_card(config.model_card))
        return (Path(params).stem if request.compare else card.name), params, config, card
    estimator, failures, _ = load_model(config)
    for failure in failures:
        say(f"WARNING: {params}: fell back past {failure}")
    pipeline = DepthPipeline(estimator, config)
    return (Path(params).stem if request.compare else estimator.name), params, config, pipeline


def _readable(bag: Path, output: Path, say: Callable[[str], None]) -> Path:
    """``bag``, or where it cannot be opened as it is (cut short, no metadata.yaml) a complete copy of what it holds,
    written under ``output``/recovered (rosbag2 bags only; a ROS 1 bag or a non-bag keeps the open error)."""
    try:
        open_reader(bag).close()
        return bag
    except BagError as exc:
        rosbag2 = bag.exists() and bag.suffix in (".mcap", ".db3") or (bag.is_dir() and any(p.suffix in (".mcap", ".db3") for p in bag.iterdir()))
        if not rosbag2:
            raise
        reason = str(exc.__cause__ or exc).split("\n")[0]
    destination = output / "recovered" / _name(bag)
    if destination.exists():
        raise BagError(f"{bag} needs recovering ({reason}) but {destination} exists: choose a new --output folder")
    try:
        recovery = recover(bag, destination)
    except RecoverError as error:
        raise BagError(f"cannot open {bag} ({reason}), and nothing could be recovered from it: {error}") from None
    say(f"WARNING: {bag} cannot be opened as it is ({reason}): {recovery.describe()}; evaluating that")
    return destination


def _frames(request: EvalRequest, bag: Path, say: Callable[[str], None]) -> BagFrames:
    bag = _readable(bag, request.output, say)
    reader = open_reader(bag)
    try:
        t = request.topics
        topics = choose_topics(reader, t.image, t.camera_info, t.depth, t.depth_info)
    finally:
        reader.close()
    frames = BagFrames(bag, topics, request.slop_s, request.max_frames)
    say(f"{bag}: {len(frames)} images\n{topics.describe()}")
    for problem in frames.problems:
        say(f"WARNING: {bag}: {problem}; {len(frames)} image(s) read before it")
    if topics.depth and frames.unmatched_gt:
        say(f"note: {frames.unmatched_gt} image(s) have no ground truth within --slop {request.slop_s} s")
    return frames


def _source(request: EvalRequest, label: str, params: Path, config: Any, model: Any, frames: BagFrames,
            out_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The depth source (the pipeline, or a live node) and the facts metrics.json records about the run."""
    topics, options = frames.topics, request.options
    if request.live:
        source = LiveNode(params, request.assignments, topics, model.output, out_dir / "node.log", request.live_timeout_s,
                          points=options.write_bag and options.bag_points, diagnostics_period_s=config.diagnostics_period_s)
        model_name, backend, space = model.name, f"node {config.backend}/{config.device} (live)", model.output.describe()
    else:
        source, estimator = model, model.estimator
        model_name, space, backend = estimator.name, estimator.output.describe(), f"{estimator.backend}/{estimator.device}"
    eval_range = options.eval_range
    info = {"model": model_name, "backend": backend, "output_space": space, "params_file": str(params), "bag": str(frames.bag),
            "topics": {"image": topics.image, "camera_info": topics.camera_info, "depth": topics.depth, "depth_info": topics.depth_info},
            "eval_range": {"min_depth": eval_range.min_depth, "max_depth": eval_range.max_depth, "crop": list(eval_range.crop)},
            "parameters": config.parameters()}
    return source, info


def _name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem if path.suffix in (".bag", ".yaml", ".yml") else path.name) or "bag"


def _one_line(summary: dict[str, Any]) -> str:
    mode = summary["headline_mode"]
    m = summary["metrics"][mode]

    def f(v: float) -> str:
        return f"{v:.4f}" if math.isfinite(v) else "n/a"

    return (f"{summary['label']}: {summary['frames']['scored']}/{summary['frames']['images']} frames scored, "
            f"{mode}: AbsRel {f(m['abs_rel'])}, RMSE {f(m['rmse'])} m, δ1 {f(m['delta1'])}; "
            + (f"{summary['frames_per_s']:.1f} frames/s" if math.isfinite(summary["frames_per_s"]) else "n/a frames/s"))
