"""``depth-node eval`` as one library call: every bag × every configuration, scored, with reports.

A configuration is a parameters file plus ``-p`` overrides, read by :func:`depth_node.core.parameters.load` (the
check the node makes at start-up); it runs in this process (the node's pipeline) or, with ``live``, in a node
process over DDS (:mod:`depth_node.eval.live`). Output: one folder per bag (and per configuration with
``compare``) holding metrics.json, frames.csv, report.html, thumbs/ and bag/; with ``compare`` a side-by-side
report.html per bag.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from depth_node.core.parameters import load
from depth_node.core.pipeline import DepthPipeline
from depth_node.estimators.card import load_card
from depth_node.estimators.registry import load_model
from depth_node.eval.bag_input import BagError, BagFrames, choose_topics, open_reader
from depth_node.eval.bag_recover import RecoverError, recover
from depth_node.eval.cloud_truth import MIN_DENSITY
from depth_node.eval.live import LiveNode
from depth_node.eval.report import run_and_report, write_report
from depth_node.errors import DepthNodeError
from depth_node.eval.runner import EvalOptions, Evaluation, RecordedSource, headline_mode, json_safe, save_summary
from depth_node.paths import config_file, resolve_card
from depth_node.progress import ProgressBar


@dataclass(frozen=True)
class TopicNames:
    """Topics given by the user; None = found by message type."""

    image: str | None = None
    camera_info: str | None = None
    depth: str | None = None
    depth_info: str | None = None
    prediction: str | None = None  # a recorded depth topic scored beside depth_node's configurations
    cloud: str | None = None       # ground truth as a PointCloud2 (a LiDAR) instead of a depth image


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
    cloud_slop_s: float = 0.05        # largest image ↔ ground-truth cloud stamp difference
    max_frames: int = 0
    options: EvalOptions = EvalOptions()
    ray: str | None = None            # None: this process; "": a local Ray cluster; "auto" or an address: that cluster
    workers: int = 0                  # Ray workers (actors); 0: one per CPU of the cluster
    shard_frames: int = 200           # frames per Ray task
    shard_overlap: int | None = None  # warm-up frames before a shard (None: 30 when state carries across frames, else 0)


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
    if request.ray is not None:
        return _evaluate_on_ray(request, say)
    configs = [_configuration(request, params, say) for params in request.params_files]
    if request.topics.prediction:
        if request.live:
            raise ValueError("--prediction-topic scores a topic recorded in the bag; --live scores a running node: use one of them")
        configs.append(_recorded(request, configs[0][2]))
    status, done = 0, []
    for bag in request.bags:
        frames = _frames(request, bag, say)
        bag_out = _bag_out(request, bag)
        evaluations, summaries = [], []
        for label, params, config, model in configs:
            out_dir = _config_out(bag_out, label, len(configs))
            source, info = _source(request, label, params, config, model, frames, out_dir)
            evaluation, summary = run_and_report(source, config, frames, out_dir, options, label, info, f"{label} on {bag.name}",
                                                 ProgressBar(f"{label} on {bag.name}"))
            evaluations.append(evaluation)
            summaries.append(summary)
            done.append((bag, evaluation, summary))
            status = max(status, _say_result(evaluation, summary, bag, out_dir, options, say))
            if evaluation.interrupted:
                break
        _compare_report(bag, bag_out, evaluations, summaries, say)
        if status == 130:
            break
    _fleet_summary(request, done, [], say)
    if status == 130:
        say("interrupted: the outputs above hold the frames done so far")
    return status


def _say_result(evaluation: Evaluation, summary: dict[str, Any], bag: Path, out_dir: Path, options: EvalOptions,
                say: Callable[[str], None]) -> int:
    """The console lines of one configuration on one bag; returns its status (0, 1: nothing scored, 130: interrupted)."""
    say(_one_line(summary) + f"\n  wrote {out_dir}/report.html, metrics.json, frames.csv" +
        ("" if not options.write_bag else (", shards/*/bag/" if "output_bags" in summary else ", bag/")))
    failed = [r for r in evaluation.rows if r.error]
    if failed:
        say(f"WARNING: {len(failed)} frame(s) not scored; first, frame {failed[0].index}: {failed[0].error} "
            "(every one is in frames.csv, column 'error')")
    counts = summary["frames"]
    if counts["unscored"]:
        say(f"WARNING: {counts['unscored']} frame(s) have ground truth but no valid prediction on it (NaN or "
            "invalid depth, or ground truth of fewer than 2 pixels): counted in coverage, not in the metrics; "
            "frames.csv column 'scored' is 0 for them")
    density = summary.get("gt_density", {}).get("p50", math.nan)
    if summary.get("topics", {}).get("cloud") and density < MIN_DENSITY:  # NaN (no cloud paired at all): said above
        say(f"WARNING: the ground-truth cloud covers {density:.3%} of the image (median over frames), under "
            f"{MIN_DENSITY:.1%}: is the extrinsic right ({summary['topics']['extrinsic']})? thumbs/ draw the points over "
            "the image; fix /tf_static or give --extrinsic")
    if evaluation.interrupted:
        return 130
    if not counts["scored"] and counts["images"]:
        say(f"ERROR: no frame of {bag} could be scored ({counts['without_ground_truth']} without ground truth, "
            f"{counts['unscored']} without a valid prediction on it, {counts['errors']} failed)")
        return 1
    return 0


def _compare_report(bag: Path, bag_out: Path, evaluations: list[Evaluation], summaries: list[dict[str, Any]],
                    say: Callable[[str], None]) -> None:
    """The configurations of one bag side by side (--compare, --prediction-topic) in bag_out/report.html."""
    if len(evaluations) > 1:
        path = write_report(bag_out / "report.html", evaluations, summaries, f"{' vs '.join(s['label'] for s in summaries)} on {bag.name}")
        say(f"  comparison: {path}")


def _fleet_summary(request: EvalRequest, done: list[tuple[Path, Evaluation, dict[str, Any]]], failed: list[tuple[Path, str]],
                   say: Callable[[str], None]) -> None:
    """With several bags (or a bag that failed): summary.json in the output folder — a row per bag and configuration,
    every configuration over all bags together (the mean over all their scored frames), the bags that failed and
    why — and the same as a table on the console."""
    if len(request.bags) < 2 and not failed:
        return
    rows, labels = [], []
    for bag, evaluation, summary in done:
        mode = summary["headline_mode"]
        rows.append({"bag": str(bag), "label": summary["label"], "frames": summary["frames"], "headline_mode": mode,
                     "metrics": summary["metrics"][mode], "interrupted": summary["interrupted"]})
        if summary["label"] not in labels:
            labels.append(summary["label"])
    pooled = {}
    for label in labels:
        runs = [(e, s) for _, e, s in done if s["label"] == label]
        everything = Evaluation(request.output, label, runs[0][0].headline, {}, [r for e, _ in runs for r in e.rows])
        summary = everything.summary()
        pooled[label] = {"bags": len(runs), "frames": summary["frames"], "headline_mode": summary["headline_mode"],
                         "metrics": summary["metrics"], "coverage": summary["coverage"]}
    request.output.mkdir(parents=True, exist_ok=True)
    document = {"bags": rows, "all_bags": pooled, "failed_bags": [{"bag": str(b), "reason": why} for b, why in failed]}
    (request.output / "summary.json").write_text(json.dumps(json_safe(document), indent=1))
    say(f"{'bag':<40} {'configuration':<22} {'scored':>7} {'AbsRel':>8} {'δ1':>7}")
    for row in rows:
        m = row["metrics"]
        say(f"{_bag_out(request, Path(row['bag'])).name[:40]:<40} {row['label'][:22]:<22} {row['frames']['scored']:>7} {m['abs_rel']:>8.4f} {m['delta1']:>7.4f}")
    for label, entry in pooled.items():
        m = entry["metrics"][entry["headline_mode"]]
        say(f"{'ALL ' + str(entry['bags']) + ' bags':<40} {label[:22]:<22} {entry['frames']['scored']:>7} {m['abs_rel']:>8.4f} {m['delta1']:>7.4f}")
    for bag, why in failed:
        say(f"FAILED {bag}: {why}")
    say(f"  wrote {request.output / 'summary.json'}")


def _evaluate_on_ray(request: EvalRequest, say: Callable[[str], None]) -> int:
    """:func:`evaluate` with (configuration, bag, shard) tasks on a Ray cluster (:mod:`depth_node.eval.distributed`)."""
    import depth_node.eval.distributed as distributed  # imports Ray: only for --ray

    if request.live:
        raise ValueError("--ray runs the node's pipeline in its workers; --live scores a node of its own: use one of them")
    options = request.options
    configurations = []  # (Configuration, PipelineConfig, output spec, model name)
    for params in request.params_files:
        params = Path(params or config_file("depth.yaml"))
        config = load(params, request.assignments)  # checked here, before a worker starts
        card = load_card(resolve_card(config.model_card))
        label = params.stem if request.compare else card.name
        configurations.append((distributed.Configuration(label, params, tuple(request.assignments)), config, card.output, card.name))
    if request.topics.prediction:
        first, config = configurations[0][0], configurations[0][1]
        label, _, _, recorded = _recorded(request, config)
        configurations.append((distributed.Configuration(label, first.params, first.assignments, recorded.topic), config,
                               recorded.spec, recorded.topic))
    actors = distributed.start(request.ray or None, request.workers)
    started = time.perf_counter()
    shards, bags, failed = [], [], []
    try:
        for bag in request.bags:
            try:
                frames = _frames(request, bag, say)
            except DepthNodeError as exc:  # this bag cannot be read: say why, the others go on
                failed.append((bag, str(exc)))
                say(f"WARNING: {bag}: {exc}; the other bags go on")
                continue
            bag_out = _bag_out(request, bag)
            bags.append((bag, frames, bag_out))
            for number, (configuration, config, _, _) in enumerate(configurations):
                out_dir = _config_out(bag_out, configuration.label, len(configurations))
                if (out_dir / "frames.csv").exists():
                    raise FileExistsError(f"{out_dir} already holds an evaluation: choose a new --output folder")
                warm_up = request.shard_overlap if request.shard_overlap is not None else distributed.default_warm_up(config)
                for n, (start, end, warm) in enumerate(distributed.plan(len(frames), request.shard_frames, warm_up)):
                    shards.append(distributed.Shard(number, frames.bag, frames.topics, request.slop_s, start, end, warm,
                                                    out_dir / "shards" / f"{n:04d}", out_dir / "thumbs", request.cloud_slop_s))
        label = " vs ".join(c.label for c, _, _, _ in configurations)
        run = distributed.run_shards(shards, [c for c, _, _, _ in configurations], options, actors, label, say)
    finally:
        distributed.ray.shutdown()
    wall_s = time.perf_counter() - started
    status, done = 0, []
    for bag, frames, bag_out in bags:
        evaluations, summaries = [], []
        for number, (configuration, config, spec, model_name) in enumerate(configurations):
            out_dir = _config_out(bag_out, configuration.label, len(configurations))
            out_dir.mkdir(parents=True, exist_ok=True)
            mine = [r for r in run.results if r.shard.configuration == number and r.shard.bag == frames.bag]
            lost = [(s, why) for s, why in run.failed if s.configuration == number and s.bag == frames.bag]
            rows = sorted((row for result in mine for row in result.rows), key=lambda row: row.index)  # frame order
            distributed.write_rows(out_dir, rows)
            info = {**_run_facts(model_name, mine[0].backend if mine else "n/a", spec.describe(), configuration.params, frames,
                                 options, config),
                    "ray": {"workers": run.workers, "shard_frames": request.shard_frames, "shards_done": len(mine),
                            "failed_shards": [{"frames": [s.start, s.end - 1], "reason": why} for s, why in lost],
                            "workers_used": sorted({r.worker for r in mine})},
                    "output_bags": sorted(str((r.shard.out_dir / "bag").relative_to(out_dir)) for r in mine) if options.write_bag else []}
            evaluation = Evaluation(out_dir, configuration.label, headline_mode(spec), info, rows, run.interrupted, wall_s)
            summary = save_summary(evaluation)
            write_report(out_dir / "report.html", [evaluation], [summary], f"{configuration.label} on {bag.name}")
            evaluations.append(evaluation)
            summaries.append(summary)
            done.append((bag, evaluation, summary))
            status = max(status, _say_result(evaluation, summary, bag, out_dir, options, say))
            for shard, why in lost:
                say(f"ERROR: {bag.name} frames {shard.start}-{shard.end - 1} were not evaluated: {why}")
                status = max(status, 1)
        _compare_report(bag, bag_out, evaluations, summaries, say)
    status = max(status, 1 if failed else 0)
    _fleet_summary(request, done, failed, say)
    if run.interrupted:
        say("interrupted: the outputs above hold the frames done so far")
        return 130
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


def _recorded(request: EvalRequest, config: Any) -> tuple[str, None, Any, RecordedSource]:
    """The recorded depth topic as one more configuration: label, no parameters file, the first configuration's
    camera handling (camera_model, fallback_hfov_deg), the source."""
    topic = request.topics.prediction
    return f"recorded {topic}", None, config, RecordedSource(topic)


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
        topics = choose_topics(reader, t.image, t.camera_info, t.depth, t.depth_info, t.prediction, t.cloud)
    finally:
        reader.close()
    frames = BagFrames(bag, topics, request.slop_s, request.max_frames, request.cloud_slop_s)
    say(f"{bag}: {len(frames)} images\n{topics.describe()}")
    for problem in frames.problems:
        say(f"WARNING: {bag}: {problem}; {len(frames)} image(s) read before it")
    if topics.depth and frames.unmatched_gt:
        say(f"note: {frames.unmatched_gt} image(s) have no ground truth within --slop {request.slop_s} s")
    if topics.cloud and frames.unmatched_gt:
        say(f"note: {frames.unmatched_gt} image(s) have no cloud within --cloud-slop {request.cloud_slop_s} s (not scored; "
            "with odometry in /tf, --motion-frame odom and a larger --cloud-slop use them)")
    return frames


def _source(request: EvalRequest, label: str, params: Path, config: Any, model: Any, frames: BagFrames,
            out_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The depth source (the pipeline, or a live node) and the facts metrics.json records about the run."""
    topics, options = frames.topics, request.options
    if isinstance(model, RecordedSource):
        source, model_name, backend, space = model, model.topic, "recorded in the bag", f"{model.spec.describe()} (as recorded)"
    elif request.live:
        source = LiveNode(params, request.assignments, topics, model.output, out_dir / "node.log", request.live_timeout_s,
                          points=options.write_bag and options.bag_points, diagnostics_period_s=config.diagnostics_period_s)
        model_name, backend, space = model.name, f"node {config.backend}/{config.device} (live)", model.output.describe()
    else:
        source, estimator = model, model.estimator
        model_name, space, backend = estimator.name, estimator.output.describe(), f"{estimator.backend}/{estimator.device}"
    return source, _run_facts(model_name, backend, space, params, frames, options, config)


def _run_facts(model: str, backend: str, space: str, params: Path | None, frames: BagFrames, options: EvalOptions,
               config: Any) -> dict[str, Any]:
    """What metrics.json records about a configuration's run on a bag (serial and Ray alike)."""
    topics, eval_range = frames.topics, options.eval_range
    return {"model": model, "backend": backend, "output_space": space, "params_file": str(params), "bag": str(frames.bag),
            "topics": {"image": topics.image, "camera_info": topics.camera_info, "depth": topics.depth, "depth_info": topics.depth_info,
                       **({"cloud": topics.cloud, "extrinsic": options.extrinsic or "the bag's /tf_static and /tf",
                           "motion_frame": options.motion_frame or None} if topics.cloud else {})},
            "eval_range": {"min_depth": eval_range.min_depth, "max_depth": eval_range.max_depth, "crop": list(eval_range.crop)},
            "parameters": config.parameters()}


def _bag_out(request: EvalRequest, bag: Path) -> Path:
    """The bag's output folder: the output itself for one bag, else a subfolder named after the bag — with as many of
    its parent folders as make the names unique (two recordings both called ``bag/`` in different folders)."""
    if len(request.bags) < 2:
        return request.output
    parts = len(Path(bag).resolve().parts)
    for depth in range(1, parts + 1):
        names = [_name(Path("__".join(Path(b).resolve().parts[-depth:]))) for b in request.bags]
        if len(set(names)) == len(names):
            return request.output / names[request.bags.index(bag)]
    return request.output / f"{request.bags.index(bag):03d}_{_name(bag)}"


def _config_out(bag_out: Path, label: str, configurations: int) -> Path:
    """A configuration's output folder: the bag's own with one configuration, else a subfolder named after it."""
    return bag_out / _folder(label) if configurations > 1 else bag_out


def _folder(label: str) -> str:
    """A configuration's output folder: its label with anything but letters, digits, _ . - as _ ("recorded
    /camera/depth" → recorded_camera_depth)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "configuration"


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
