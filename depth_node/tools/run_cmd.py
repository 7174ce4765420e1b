"""``depth-node run``: start the node as the launch file would, without launch_ros (which has no wheel)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_node.paths import config_file
from depth_node.ros.harness import PROFILE, apply_fastdds_profile
from depth_node.ros.node import main

DESCRIPTION = """Start the depth node with a parameters file and the shipped Fast DDS profile
(a 64 MB shared-memory transport, so 640x480 images and clouds cross processes intact).
Everything after --ros-args goes to the node unchanged."""

EPILOG = """examples:
  depth-node run
  depth-node run --params-file config/depth.yaml --ros-args -p model_card:=my_model.yaml
  depth-node run --ros-args -r image:=/camera/color/image_raw -r camera_info:=/camera/color/camera_info
  depth-node run --ros-args -r __ns:=/front -p input_transport:=compressed"""

def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the depth node (what depth.launch.py does)", description=DESCRIPTION,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params-file", type=Path, default=None, help="node parameters YAML (default: the package's config/depth.yaml)")
    p.add_argument("--lifecycle", action="store_true",
                   help="run the managed (lifecycle) node: unconfigured until configured, e.g. by "
                        "'ros2 lifecycle set /depth_node configure' or a Nav2 lifecycle manager")
    p.add_argument("--fastdds-profile", default=None,
                   help=f"Fast DDS XML profile, or 'none' to keep the middleware defaults (default: config/{PROFILE}; "
                   "an already set FASTDDS_DEFAULT_PROFILES_FILE wins)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    params = args.params_file or config_file("depth.yaml")
    if not Path(params).is_file():
        raise FileNotFoundError(f"parameters file not found: {params}")
    apply_fastdds_profile(args.fastdds_profile)  # before rclpy creates the DDS participant
    return main(["depth-node", *(["--lifecycle"] if args.lifecycle else []), "--ros-args", "--params-file", str(params), *ros_args])
