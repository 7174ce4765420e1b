"""``depth-node adapt``: learn a site from the robot's own bag with ground-truth depth (an RGB-D camera, or LiDAR
projected into the camera): fine-tune a model card's network on the early frames, score the held-out later ones
before and after, and write an adapted model card (ONNX) that runs wherever a card runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depth_node.tools.train_cmd import add_recipe_arguments
from depth_node.train.site import AdaptConfig, adapt, command_line

EPILOG = """examples:
  depth-node adapt site.bag -o out/site                         # the default's network; the last 20 % of the bag held out
  depth-node adapt day1/ day2/ -o out/site --holdout-bag day2/  # hold out a whole recording instead
  depth-node adapt lab.mcap -o out/lab --card fastdepth --steps 600 --decoder-only
  depth-node adapt drive.mcap -o out/drive --gt-cloud-topic /lidar/points     # a LiDAR as the ground truth (its /tf_static)
then: ros2 launch depth_node depth.launch.py model_card:=out/site/card.yaml   (or depth-node eval BAG -p model_card:=…)
The bag needs the camera image, its camera_info and ground truth: a depth image (16UC1 mm or 32FC1 m) registered to the
camera, or a LiDAR's PointCloud2 with /tf_static (or --extrinsic); topics are found by type as depth-node eval finds
them, or named with the flags below.
Cards that can be adapted: TFLite cards (imported as float), the default, and cards written by depth-node train/adapt.
The held-out frames' scores (as published and aligned, base vs adapted) are in OUT/card.yaml under training.held_out."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adapt", help="fine-tune a model on the robot's own RGB-D bag (site adaptation; CPU is fine)",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bags", nargs="+", type=Path, metavar="BAG", help="bags with ground-truth depth (ROS 2 folder, .mcap, .db3, ROS 1 .bag)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder for the adapted card and its files")
    p.add_argument("--card", default="default", help="the card whose network is adapted: a path or a name in models/ (default: default)")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction of each bag's labelled frames held out, the latest by stamp (default 0.2)")
    p.add_argument("--holdout-bag", type=Path, action="append", default=[], metavar="BAG",
                   help="hold out this whole bag instead (repeatable; it must be one of the bags)")
    p.add_argument("--decoder-only", action="store_true", help="keep the encoder as it is: less gained on the site, less lost "
                   "elsewhere (default: every layer is trained)")
    add_recipe_arguments(p, steps=300, log_every=50)
    p.add_argument("--image-topic", help="camera image topic (default: found by type)")
    p.add_argument("--camera-info-topic", help="its camera_info (default: the sibling camera_info)")
    p.add_argument("--gt-topic", help="ground-truth depth image topic (default: found by type)")
    p.add_argument("--gt-info-topic", help="the ground truth's camera_info, when its grid is not the image's")
    p.add_argument("--slop", type=float, default=0.02, help="largest image ↔ ground-truth stamp difference, s (default 0.02)")
    p.add_argument("--gt-cloud-topic", help="a LiDAR's PointCloud2 as the ground truth, projected into the camera (default: "
                   "the bag's one cloud when it has no depth image)")
    p.add_argument("--extrinsic", default="", metavar="X,Y,Z,QX,QY,QZ,QW",
                   help="the cloud's frame in the camera's optical frame (default: the bag's /tf_static and /tf)")
    p.add_argument("--cloud-slop", type=float, default=0.05, help="largest image ↔ cloud stamp difference, s (default 0.05)")
    p.add_argument("--motion-frame", default="", metavar="FRAME",
                   help="a world-fixed TF frame (odom): carry the points across the image ↔ cloud time through /tf")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    topics = {key: value for key, value in (("image", args.image_topic), ("camera_info", args.camera_info_topic),
                                            ("depth", args.gt_topic), ("depth_info", args.gt_info_topic),
                                            ("cloud", args.gt_cloud_topic)) if value}
    cfg = AdaptConfig(bags=args.bags, out=args.out, card=args.card, holdout=args.holdout, holdout_bags=args.holdout_bag,
                      decoder_only=args.decoder_only, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                      threads=args.threads, log_every=args.log_every, topics=topics, slop_s=args.slop, cloud_slop_s=args.cloud_slop, extrinsic=args.extrinsic,
                      motion_frame=args.motion_frame, command=command_line())
    result = adapt(cfg, say=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"adapted on {result.train_frames} frames; held out {result.held_out_frames}:")
    for what in ("abs_rel", "delta1", "aligned_abs_rel", "aligned_delta1"):
        print(f"  {what:16s} base {result.before.get(what, float('nan')):.4f} → adapted {result.after.get(what, float('nan')):.4f}")
    print(f"wrote {args.out}/card.yaml, model.onnx, model.safetensors, train_log.csv, loss.png")
    return 0
