"""``depth-node eval``: replay a bag through the node's pipeline and score it against ground-truth depth.

The node's own parameters file configures it (model, backend, scale, confidence, …), so a result holds for the
node run with that file. Output folder: metrics.json, frames.csv, report.html, thumbs/, and bag/ (mcap: the input
topics plus /depth/image, /depth/camera_info, /depth/confidence, /depth/points, for ros2 bag play or Foxglove).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

from depth_node.errors import ConfigError

EPILOG = """examples:
  depth-node eval ../shared/data/bags/slambook_rgbd_ros2_mcap -o out/eval -p model_card:=fastdepth
  depth-node eval my.bag --params my_robot.yaml --max-depth 10 --crop 0,0.88,0,1     # ROS 1 bag, no hood rows
  depth-node eval bag/ --compare fast.yaml accurate.yaml -o out/compare              # two configurations side by side
  depth-node eval bag/ --gt-topic /lidar/depth_projected --slop 0.05 --max-frames 200
  depth-node eval bag/ --live -p model_card:=fastdepth                             # through a running node over DDS
then: open out/eval/report.html; ros2 bag play out/eval/bag"""


def _crop(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
        if len(values) != 4:
            raise ValueError
        return values  # type: ignore[return-value]
    except ValueError:
        raise argparse.ArgumentTypeError(f"crop must be TOP,BOTTOM,LEFT,RIGHT fractions, e.g. 0,0.88,0,1; got {text!r}") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['scale.mode:=fixed', 'num_threads:=2'] → {'scale.mode': 'fixed', 'num_threads': 2} (YAML-typed values)."""
    import yaml

    overrides = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ConfigError(f"-p takes NAME:=VALUE like ros2 run, got {item!r}")
        overrides[name.strip()] = yaml.safe_load(value) if value.strip() else ""
    return overrides


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score the node's depth on bags with ground truth (metrics, HTML report, output bag)",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bags", type=Path, nargs="+", help="ROS 2 bag folders (mcap or sqlite3) or ROS 1 .bag files")
    p.add_argument("-o", "--output", type=Path, default=Path("depth_eval"),
                   help="output folder (default: ./depth_eval; one subfolder per bag and per configuration)")
    p.add_argument("--params", type=Path, default=None, help="node parameters YAML (default: the package's config/depth.yaml)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE", help="override a node parameter (repeatable)")
    p.add_argument("--compare", type=Path, nargs=2, metavar=("A.yaml", "B.yaml"),
                   help="evaluate two parameters files on the same bags and report them side by side")
    p.add_argument("--live", action="store_true",
                   help="play the bag into a running node over DDS (depth-node run, sim time, /clock) and score what it publishes")
    p.add_argument("--live-timeout", type=float, default=60.0, help="--live: seconds to wait for the node's answer to an image (default 60)")
    topics = p.add_argument_group("topics (found by message type when not given)")
    topics.add_argument("--image-topic", help="camera image (sensor_msgs/Image or CompressedImage)")
    topics.add_argument("--camera-info-topic", help="its camera_info")
    topics.add_argument("--gt-topic", help="ground-truth depth image (16UC1 mm or 32FC1 m), registered to the camera")
    topics.add_argument("--gt-info-topic", help="ground truth's camera_info (when on another grid than the image)")
    topics.add_argument("--slop", type=float, default=0.02, help="seconds: largest image / ground-truth stamp difference (default 0.02)")
    scoring = p.add_argument_group("scoring")
    scoring.add_argument("--min-depth", type=float, default=1e-3, help="metres: GT below is not scored (default 0.001)")
    scoring.add_argument("--max-depth", type=float, default=80.0, help="metres: GT above is not scored (default 80)")
    scoring.add_argument("--crop", type=_crop, default=(0.0, 1.0, 0.0, 1.0), metavar="T,B,L,R",
                         help="score only this window, fractions of the image (default 0,1,0,1)")
    scoring.add_argument("--max-frames", type=int, default=0, help="stop after this many images (default: all)")
    scoring.add_argument("--sparse-reference", type=float, default=0.0, metavar="FRACTION",
                         help="with -p scale.mode:=sparse: give the pipeline this share of each frame's ground-truth pixels "
                              "(random, reproducible) as its reference depth, a stand-in for a LiDAR (e.g. 0.01; not with --live)")
    out = p.add_argument_group("outputs")
    out.add_argument("--no-bag", action="store_true", help="do not write the output bag")
    out.add_argument("--no-points", action="store_true", help="output bag without depth/points (much smaller)")
    out.add_argument("--no-thumbnails", action="store_true", help="no thumbnails (the report then has no pictures)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    from depth_node.core.pipeline import DepthPipeline
    from depth_node.eval.bag_input import BagFrames, choose_topics, open_reader
    from depth_node.eval.metrics import EvalRange
    from depth_node.eval.report import run_and_report, write_report
    from depth_node.estimators.card import load_card
    from depth_node.eval.live import LiveNode
    from depth_node.eval.runner import EvalOptions
    from depth_node.paths import config_file, resolve_card
    from depth_node.ros.params import load_model, load_params_file, pipeline_config
    from depth_node.tools.progress import ProgressBar

    try:
        eval_range = EvalRange(args.min_depth, args.max_depth, args.crop)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    overrides = parse_overrides(args.param)
    params_files = list(args.compare) if args.compare else [args.params or config_file("depth.yaml")]
    configs = []
    for params in params_files:
        values = load_params_file(params, overrides=overrides)
        if args.live:  # the node loads the model; here only its card, for the output space
            card = load_card(resolve_card(values["model_card"]))
            configs.append((Path(params).stem if args.compare else card.name, params, values, card))
            continue
        estimator, failures, _ = load_model(values)
        for failure in failures:
            print(f"WARNING: {params}: fell back past {failure}", file=sys.stderr)
        pipeline = DepthPipeline(estimator, pipeline_config(values))
        label = Path(params).stem if args.compare else estimator.name
        configs.append((label, params, values, pipeline))
    if not 0.0 <= args.sparse_reference <= 1.0:
        raise ValueError(f"--sparse-reference is a share of pixels in [0, 1], got {args.sparse_reference}")
    if args.sparse_reference and args.live:
        raise ValueError("--sparse-reference feeds the in-process pipeline; with --live publish a reference_depth topic instead")
    options = EvalOptions(eval_range, write_bag=not args.no_bag, bag_points=not args.no_points, thumbnails=not args.no_thumbnails,
                          sparse_reference=args.sparse_reference)
    status = 0
    for bag in args.bags:
        reader = open_reader(bag)
        try:
            topics = choose_topics(reader, args.image_topic, args.camera_info_topic, args.gt_topic, args.gt_info_topic)
        finally:
            reader.close()
        frames = BagFrames(bag, topics, args.slop, args.max_frames)
        print(f"{bag}: {len(frames)} images\n{topics.describe()}", file=sys.stderr)
        for problem in frames.problems:
            print(f"WARNING: {bag}: {problem}; {len(frames)} image(s) read before it", file=sys.stderr)
        if topics.depth and frames.unmatched_gt:
            print(f"note: {frames.unmatched_gt} image(s) have no ground truth within --slop {args.slop} s", file=sys.stderr)
        bag_out = args.output / _name(bag) if len(args.bags) > 1 else args.output
        evaluations, summaries = [], []
        for label, params, values, model in configs:
            out_dir = bag_out / _name(Path(label)) if args.compare else bag_out
            if args.live:
                source = LiveNode(params, args.param, topics, model.output, out_dir / "node.log", args.live_timeout,
                                  points=not (args.no_bag or args.no_points), diagnostics_period_s=values["diagnostics_period_s"])
                model_name, backend, space = model.name, f"node {values['backend']}/{values['device']} (live)", model.output.describe()
            else:
                source = model
                model_name, space = model.estimator.name, model.estimator.output.describe()
                backend = f"{model.estimator.backend}/{model.estimator.device}"
            info = {"model": model_name, "backend": backend, "output_space": space, "params_file": str(params), "bag": str(bag),
                    "topics": {"image": topics.image, "camera_info": topics.camera_info, "depth": topics.depth,
                               "depth_info": topics.depth_info},
                    "eval_range": {"min_depth": eval_range.min_depth, "max_depth": eval_range.max_depth, "crop": list(eval_range.crop)},
                    "parameters": values}
            evaluation, summary = run_and_report(source, values, frames, out_dir, options, label, info, f"{label} on {bag.name}",
                                                 ProgressBar(f"{label} on {bag.name}"))
            evaluations.append(evaluation)
            summaries.append(summary)
            print(_one_line(summary) + f"\n  wrote {out_dir}/report.html, metrics.json, frames.csv" +
                  ("" if args.no_bag else ", bag/"), file=sys.stderr)
            failed = [r for r in evaluation.rows if r.error]
            if failed:
                print(f"WARNING: {len(failed)} frame(s) not scored; first, frame {failed[0].index}: {failed[0].error} "
                      "(every one is in frames.csv, column 'error')", file=sys.stderr)
            if evaluation.interrupted:
                status = 130
                break
        if args.compare and len(evaluations) == 2:
            path = write_report(bag_out / "report.html", evaluations, summaries, f"{' vs '.join(s['label'] for s in summaries)} on {bag.name}")
            print(f"  comparison: {path}", file=sys.stderr)
        if status:
            print("interrupted: the outputs above hold the frames done so far", file=sys.stderr)
            return status
    return status


def _name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem if path.suffix in (".bag", ".yaml", ".yml") else path.name) or "bag"


def _one_line(summary: dict[str, Any]) -> str:
    mode = summary["headline_mode"]
    m = summary["metrics"][mode]

    def f(v: float) -> str:
        return f"{v:.4f}" if math.isfinite(v) else "n/a"

    return (f"{summary['label']}: {summary['frames']['scored']}/{summary['frames']['images']} frames scored, "
            f"{mode}: AbsRel {f(m['abs_rel'])}, RMSE {f(m['rmse'])} m, δ1 {f(m['delta1'])}; "
            f"{f(summary['frames_per_s'])} frames/s")
