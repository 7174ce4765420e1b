"""``depth-node synth``: render procedural scenes with exact depth into a bag and a folder dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_node.progress import ProgressBar
from depth_node.synth.lidar import LidarSpec
from depth_node.synth.scene import SCENE_KINDS
from depth_node.synth.writer import SynthSpec, write

EPILOG = """examples:
  depth-node synth out/synth                                  # 10 frames of a room, mcap bag + folder
  depth-node synth out/mixed --scenes room,corridor,street --frames 30 --seed 7
  depth-node synth out/low --size 320x240 --height 0.3 --pitch 0 --storage sqlite3
  depth-node synth out/rs --intrinsics 518,519,325.5,253.5     # a calibrated 640x480 camera
  depth-node synth out/drive --scenes street --frames 100 --lidar        # + a 32-beam LiDAR (/lidar/points, /tf_static)
then: depth-node eval out/synth/bag, or ros2 bag play it on a ROS 2 install   (topics: /camera/color/image_raw, /camera/color/camera_info, ...)"""


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w <= 0 or h <= 0:
            raise ValueError
        return w, h
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from None


def _intrinsics(text: str) -> tuple[float, float, float, float]:
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(","))
        if fx <= 0 or fy <= 0:
            raise ValueError
        return fx, fy, cx, cy
    except ValueError:
        raise argparse.ArgumentTypeError(f"intrinsics must be fx,fy,cx,cy in pixels with fx, fy > 0, got {text!r}") from None


def _xyz(text: str) -> tuple[float, float, float]:
    try:
        x, y, z = (float(v) for v in text.split(","))
        return x, y, z
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z in metres, got {text!r}") from None


def _scenes(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in SCENE_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"unknown scene kind(s) {bad}; choose from {', '.join(SCENE_KINDS)}")
    return kinds


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="render synthetic RGB + exact depth scenes to a bag and a folder",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="output folder (created; must be empty)")
    p.add_argument("--scenes", type=_scenes, default=("room",), help=f"comma-separated kinds: {', '.join(SCENE_KINDS)} (default: room)")
    p.add_argument("--frames", type=int, default=10, help="frames per scene (default: 10)")
    p.add_argument("--size", type=_size, default=(640, 480), help="WIDTHxHEIGHT in pixels (default: 640x480)")
    p.add_argument("--hfov", type=float, default=70.0, help="horizontal field of view, degrees (default: 70)")
    p.add_argument("--intrinsics", type=_intrinsics, default=None, metavar="FX,FY,CX,CY",
                   help="pinhole intrinsics in pixels (overrides --hfov), e.g. 518,519,325.5,253.5")
    p.add_argument("--height", type=float, default=1.0, help="camera height above the floor, metres (default: 1.0)")
    p.add_argument("--pitch", type=float, default=5.0, help="camera pitch down, degrees (default: 5)")
    p.add_argument("--rate", type=float, default=10.0, help="frame rate for the stamps, Hz (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same scenes (default: 0)")
    p.add_argument("--storage", choices=("mcap", "sqlite3", "none"), default="mcap", help="bag storage (default: mcap)")
    p.add_argument("--no-folder", action="store_true", help="write only the bag")
    p.add_argument("--lidar", action="store_true", help="add a rotating LiDAR 25 cm above and 5 cm behind the camera: "
                   "/lidar/points (PointCloud2 in lidar_link) and /tf_static (camera_link → optical frame, → lidar_link)")
    p.add_argument("--lidar-rings", type=int, default=32, help="LiDAR beams, -25° to +15° (default 32)")
    p.add_argument("--lidar-mount", type=_xyz, default=(-0.05, 0.0, 0.25), metavar="X,Y,Z",
                   help="the LiDAR's position in camera_link (x forward, y left, z up), metres (default -0.05,0,0.25)")
    p.add_argument("--lidar-noise", type=float, default=0.02, help="range noise (Gaussian σ), metres (default 0.02)")
    p.add_argument("--lidar-offset", type=float, default=0.0, metavar="S",
                   help="each sweep this many seconds after its image, from the pose then (default 0; /tf has the odometry)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    if args.frames <= 0 or args.rate <= 0 or not 0 < args.hfov < 180:
        raise ValueError("--frames and --rate must be positive and --hfov in (0, 180)")
    storage = None if args.storage == "none" else args.storage
    if storage is None and args.no_folder:
        raise ValueError("--storage none with --no-folder writes nothing")
    if args.lidar and (args.lidar_rings < 2 or args.lidar_noise < 0 or storage is None or
                       not 0 <= args.lidar_offset < 1 / args.rate):
        raise ValueError("--lidar needs a bag (not --storage none), --lidar-rings ≥ 2, --lidar-noise ≥ 0 and --lidar-offset "
                         "from 0 to less than a frame (1 / --rate)")
    lidar = LidarSpec(rings=args.lidar_rings, mount_xyz=args.lidar_mount, range_noise_m=args.lidar_noise,
                      time_offset_s=args.lidar_offset) if args.lidar else None
    spec = SynthSpec(scenes=args.scenes, frames=args.frames, width=args.size[0], height=args.size[1], hfov_deg=args.hfov,
                     camera_height_m=args.height, pitch_deg=args.pitch, rate_hz=args.rate, seed=args.seed,
                     intrinsics=args.intrinsics, lidar=lidar)
    written = write(spec, args.out, bag_storage=storage, folder=not args.no_folder, progress=ProgressBar("rendering"))
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0
