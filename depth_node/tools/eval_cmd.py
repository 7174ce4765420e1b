"""``depth-node eval``: replay a bag through the node's pipeline and score it against ground-truth depth.

The node's own parameters file configures it (model, backend, scale, confidence, …), so a result holds for the
node run with that file. Output folder: metrics.json, frames.csv, report.html, thumbs/, and bag/ (mcap: the input
topics plus /depth/image, /depth/camera_info, /depth/confidence, /depth/points, for ros2 bag play or Foxglove).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_node.errors import ConfigError
from depth_node.eval.metrics import EvalRange
from depth_node.eval.runner import EvalOptions
from depth_node.eval.session import EvalRequest, TopicNames, evaluate

EPILOG = """examples:
  depth-node eval ../shared/data/bags/slambook_rgbd_ros2_mcap -o out/eval -p model_card:=fastdepth
  depth-node eval my.bag --params my_robot.yaml --max-depth 10 --crop 0,0.88,0,1     # ROS 1 bag, no hood rows
  depth-node eval bag/ --compare fast.yaml accurate.yaml -o out/compare              # two configurations side by side
  depth-node eval bag/ --gt-topic /lidar/depth_projected --slop 0.05 --max-frames 200
  depth-node eval bag/ --live -p model_card:=fastdepth                             # through a running node over DDS
  depth-node eval bag/ --prediction-topic /camera/depth/image_rect -o out/vs          # against the depth you run today
  depth-node eval /data/bags/*.mcap --ray --workers 8 -o out/fleet                  # a local Ray cluster
  depth-node eval /shared/bags/* --ray auto -o /shared/out/fleet                    # the cluster of `ray start`
then: open out/eval/report.html; out/eval/bag opens in Foxglove (ros2 bag play, on a ROS 2 install)"""


def _crop(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
        if len(values) != 4:
            raise ValueError
        return values  # type: ignore[return-value]
    except ValueError:
        raise argparse.ArgumentTypeError(f"crop must be TOP,BOTTOM,LEFT,RIGHT fractions, e.g. 0,0.88,0,1; got {text!r}") from None


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
    cluster = p.add_argument_group("Ray (pip install depth_node[ray]): bags and time shards of bags as tasks on a cluster")
    cluster.add_argument("--ray", nargs="?", const="", default=None, metavar="auto|ADDRESS",
                         help="run on Ray: alone, a local cluster on this machine; 'auto' the cluster this machine joined "
                              "(ray start); or a cluster's ADDRESS (host:6379, ray://host:10001)")
    cluster.add_argument("--workers", type=int, default=0,
                         help="--ray: worker actors, each loading the model once (default: one per CPU of the cluster)")
    cluster.add_argument("--shard-frames", type=int, default=200, help="--ray: frames per task (default 200)")
    cluster.add_argument("--shard-overlap", type=int, default=None,
                         help="--ray: frames run before a shard to rebuild temporal smoothing and scale tracking (default: "
                              "30 when either is on, else 0)")
    topics = p.add_argument_group("topics (found by message type when not given)")
    topics.add_argument("--image-topic", help="camera image (sensor_msgs/Image or CompressedImage)")
    topics.add_argument("--camera-info-topic", help="its camera_info")
    topics.add_argument("--gt-topic", help="ground-truth depth image (16UC1 mm or 32FC1 m), registered to the camera")
    topics.add_argument("--gt-info-topic", help="ground truth's camera_info (when on another grid than the image)")
    topics.add_argument("--prediction-topic", metavar="TOPIC",
                        help="a depth image recorded in the bag (another node's output, an earlier run): scored with the same "
                             "protocol and reported beside depth_node's configuration(s)")
    topics.add_argument("--slop", type=float, default=0.02, help="seconds: largest image / ground-truth stamp difference (default 0.02)")
    lidar = p.add_argument_group("LiDAR ground truth (a PointCloud2 projected into the camera)")
    lidar.add_argument("--gt-cloud-topic", metavar="TOPIC",
                       help="the ground-truth cloud (default: the bag's one PointCloud2 when it has no depth image)")
    lidar.add_argument("--extrinsic", metavar="X,Y,Z,QX,QY,QZ,QW", default="",
                       help="the LiDAR's pose in the camera's optical frame (a point p → R p + t; metres, quaternion); default: "
                            "from the bag's /tf_static (and /tf), cloud frame_id → image frame_id")
    lidar.add_argument("--cloud-slop", type=float, default=0.05,
                       help="seconds: largest image / cloud stamp difference (default 0.05; unpaired images are counted)")
    lidar.add_argument("--motion-frame", metavar="FRAME", default="",
                       help="a world-fixed TF frame (e.g. odom): carry the points from the cloud's stamp to the image's "
                            "through the bag's /tf (the robot's motion between them)")
    scoring = p.add_argument_group("scoring")
    scoring.add_argument("--min-depth", type=float, default=1e-3, help="metres: GT below is not scored (default 0.001)")
    scoring.add_argument("--max-depth", type=float, default=80.0, help="metres: GT above is not scored (default 80)")
    scoring.add_argument("--crop", type=_crop, default=(0.0, 1.0, 0.0, 1.0), metavar="T,B,L,R",
                         help="score only this window, fractions of the image (default 0,1,0,1)")
    scoring.add_argument("--max-frames", type=int, default=0, help="stop after this many images (default: all)")
    scoring.add_argument("--sparse-reference", type=float, default=0.0, metavar="FRACTION",
                         help="with -p scale.mode:=sparse: give the pipeline this share of each frame's ground-truth pixels "
                              "(random, reproducible) as its reference depth: of a depth image, a stand-in for a LiDAR (e.g. "
                              "0.01); with --gt-cloud-topic, 1 gives the whole projected cloud, as the node's reference_points "
                              "(not with --live)")
    out = p.add_argument_group("outputs")
    out.add_argument("--no-bag", action="store_true", help="do not write the output bag")
    out.add_argument("--no-points", action="store_true", help="output bag without depth/points (much smaller)")
    out.add_argument("--no-thumbnails", action="store_true", help="no thumbnails (the report then has no pictures)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    if args.ray and Path(args.ray).exists():
        raise ConfigError(f"--ray took {args.ray} as a cluster address, but it is a file or folder: put --ray after the bags, "
                          "or write --ray=auto / --ray=HOST:PORT")
    try:
        eval_range = EvalRange(args.min_depth, args.max_depth, args.crop)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return evaluate(EvalRequest(
        bags=list(args.bags), output=args.output, params_files=list(args.compare) if args.compare else [args.params],
        assignments=list(args.param), compare=bool(args.compare), live=args.live, live_timeout_s=args.live_timeout,
        topics=TopicNames(args.image_topic, args.camera_info_topic, args.gt_topic, args.gt_info_topic, args.prediction_topic,
                          args.gt_cloud_topic),
        slop_s=args.slop, cloud_slop_s=args.cloud_slop,
        max_frames=args.max_frames, options=EvalOptions(eval_range, write_bag=not args.no_bag, bag_points=not args.no_points,
                                                         thumbnails=not args.no_thumbnails, sparse_reference=args.sparse_reference,
                                                         extrinsic=args.extrinsic, motion_frame=args.motion_frame),
        ray=args.ray, workers=args.workers, shard_frames=args.shard_frames, shard_overlap=args.shard_overlap))
