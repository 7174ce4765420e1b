#!/usr/bin/env python3
"""How exact is LiDAR ground truth? The rendered LiDAR of `depth-node synth --lidar` projected into the camera by
`depth_node.core.lidar.project_points` (what `depth-node eval --gt-cloud-topic` and the node's reference_points do),
compared pixel by pixel with the depth the camera renders from the same pose (exact, analytic).

For each scene kind (room, corridor, street), each LiDAR mount and each occlusion radius: the share of the image that
gets a depth (density), the median relative error of those depths, and the share of them more than 5 % off the
camera's depth — points the camera cannot see (parallax: the LiDAR looks over and around what is in front of the
camera) that the z-buffer and the occlusion test let through, points on a silhouette's pixel, and range noise. Frames:
5 poses along each scene's path, `--seed` scenes (default 1: not the seed the tests and the defaults were made on).

    .venv/bin/python benchmarks/bench_lidar_truth.py                 # 640×480, 32 beams, noise 2 cm
    .venv/bin/python benchmarks/bench_lidar_truth.py --seed 2 --json /tmp/lidar_truth.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from depth_node.core.camera import PinholeCamera  # noqa: E402
from depth_node.core.lidar import project_points  # noqa: E402
from depth_node.synth.lidar import LidarSpec, scan  # noqa: E402
from depth_node.synth.render import render, trajectory  # noqa: E402
from depth_node.synth.scene import SCENE_KINDS  # noqa: E402

MOUNTS = {"25 cm above, 5 cm behind (synth's default)": (-0.05, 0.0, 0.25), "60 cm above, 30 cm behind, 20 cm left": (-0.3, 0.2, 0.6)}
RADII = (0, 3, 6)


def measure(kind: str, seed: int, mount: tuple[float, float, float], radius: int, camera: PinholeCamera) -> dict[str, float]:
    rng = np.random.default_rng([seed, 0])
    scene = SCENE_KINDS[kind](rng)
    spec = LidarSpec(mount_xyz=mount)
    density, errors = [], []
    for n, pose in enumerate(trajectory(scene, 5, 1.0, 5.0, rng)):
        _, exact = render(scene, camera, pose, seed=seed)
        points, _ = scan(scene, pose, spec, np.random.default_rng([seed, n]))
        projection = project_points(points, camera, spec.optical_from_lidar(), occlusion_radius_px=radius)
        landed = np.isfinite(projection.depth_m)
        truth = exact[landed]
        with np.errstate(invalid="ignore"):  # +inf: the camera sees sky there
            errors.append(np.where(np.isfinite(truth), np.abs(projection.depth_m[landed] - truth) / truth, np.inf))
        density.append(projection.density)
    error = np.concatenate(errors)
    return {"density": float(np.mean(density)), "median_rel_error": float(np.median(error)),
            "share_over_5pct": float(np.mean(error > 0.05))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="scene seed (default 1)")
    parser.add_argument("--size", default="640x480", help="camera WIDTHxHEIGHT, 70° horizontal field of view (default 640x480)")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    camera = PinholeCamera.from_hfov(width, height, 70.0)
    rows = []
    print("| scene | LiDAR mount | occlusion radius (px) | density | median |error| | share > 5 % off |")
    print("|---|---|---|---|---|---|")
    for kind in ("room", "corridor", "street"):
        for mount_name, mount in MOUNTS.items():
            for radius in RADII:
                row = {"scene": kind, "mount": mount_name, "radius_px": radius, **measure(kind, args.seed, mount, radius, camera)}
                rows.append(row)
                print(f"| {kind} | {mount_name} | {radius} | {row['density']:.2%} | {row['median_rel_error']:.2%} | "
                      f"{row['share_over_5pct']:.2%} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
