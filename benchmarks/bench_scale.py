#!/usr/bin/env python3
"""Scale recovery and cloud cleaning: the figures of docs/benchmarks.md ("Metric scale and clouds").

ground:  ground_plane scale error (median |s / s_true − 1| over frames) on rendered rooms, corridors and streets
         with known camera height: a prediction made from the exact depth by an unknown factor (what the method
         can do), and the shipped default model (s_true = its median ratio to the exact depth: the scale an
         oracle would pick). Then KITTI frames of rgbd_dev (camera 1.65 m above the road) with the default model.
sparse:  1 % of the ground-truth pixels as the reference, Gaussian noise (3 cm + 1 %) and 20 % outliers; AbsRel
         of the default model after our fit vs an oracle least-squares alignment on every ground-truth pixel
         (in the model's output space), on rendered scenes and on the real frames of rgbd_dev (dense indoor, sparse
         LiDAR outdoor).
cloud:   milliseconds at 640×480 of each cloud stage (median of --repeat runs).
pipeline: the pipeline's 'scale' and 'cloud' stages per mode (default model, a rendered 640×480 room).

    .venv/bin/python benchmarks/bench_scale.py ground --frames 3
    .venv/bin/python benchmarks/bench_scale.py sparse --seed 7
    .venv/bin/python benchmarks/bench_scale.py cloud --repeat 50
    .venv/bin/python benchmarks/bench_scale.py pipeline --repeat 15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
RGBD_DEV = REPO.parent / "shared" / "data" / "rgbd_dev"
KITTI_CAMERA_HEIGHT_M = 1.65  # KITTI's colour cameras above the road (Geiger et al., the recording platform)


def scenes(frames: int, size: tuple[int, int] = (640, 480)):
    from depth_node.synth.writer import SynthSpec, generate

    for kind in ("room", "corridor", "street"):
        for seed in range(3):
            height, pitch = 0.3 + 0.4 * seed, 3.0 + 4.0 * seed
            spec = SynthSpec(scenes=(kind,), frames=frames, width=size[0], height=size[1], camera_height_m=height,
                             pitch_deg=pitch, seed=100 + seed, intrinsics=(518.0, 519.0, 325.5, 253.5))
            for frame in generate(spec):
                depth = np.where(np.isfinite(frame.depth_m) & (frame.depth_m < 80), frame.depth_m, np.nan).astype(np.float32)
                yield kind, frame.rgb, depth, frame.camera, height, pitch


def default_model():
    from depth_node.estimators import load_estimator

    return load_estimator(REPO / "models" / "default.yaml")


def predict(estimator, rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    values = estimator.predict(rgb).values
    return cv2.resize(values, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def bench_ground(args: argparse.Namespace) -> None:
    from depth_node.core.scale import fit_ground_plane
    from depth_node.core.spaces import Invariance, OutputSpace
    from depth_node.eval.datasets import rgbd_dev_frames

    estimator = default_model()
    exact, model, fails = [], [], 0
    for kind, rgb, depth, camera, height, pitch in scenes(args.frames):
        fit = fit_ground_plane(depth / 3.7, OutputSpace.DEPTH, Invariance.SCALE, camera, height)
        exact.append(abs(fit.scale / 3.7 - 1) if fit.ok else np.inf)
        pred = predict(estimator, rgb, depth.shape)
        valid = np.isfinite(depth) & np.isfinite(pred)
        oracle = float(np.median(depth[valid] / pred[valid]))
        fit = fit_ground_plane(pred, OutputSpace.DEPTH, Invariance.SCALE, camera, height)
        fails += not fit.ok
        model.append(abs(fit.scale / oracle - 1) if fit.ok else np.inf)
    print(f"rendered scenes ({len(exact)} frames, rooms/corridors/streets, camera 0.3-1.1 m):")
    print(f"  exact depth / 3.7:      median |scale error| {np.median(exact):.4f}")
    print(f"  default model:          median |scale error| {np.median(model):.4f} vs its oracle scale "
          f"(no fit on {fails} frames)")
    errors = []
    for frame in rgbd_dev_frames(RGBD_DEV, include_synthetic=False):
        if not frame.name.startswith("kitti"):
            continue
        pred = predict(estimator, frame.rgb, frame.depth_m.shape)
        valid = np.isfinite(frame.depth_m) & np.isfinite(pred)
        oracle = float(np.median(frame.depth_m[valid] / pred[valid]))
        fit = fit_ground_plane(pred, OutputSpace.DEPTH, Invariance.SCALE, frame.camera, KITTI_CAMERA_HEIGHT_M)
        errors.append(abs(fit.scale / oracle - 1) if fit.ok else np.inf)
        print(f"  {frame.name}: oracle scale {oracle:.3f}, ground_plane {fit.scale:.3f} (inliers {fit.quality:.2f})")
    if errors:
        print(f"rgbd_dev KITTI ({len(errors)} frames, camera {KITTI_CAMERA_HEIGHT_M} m): median |scale error| {np.median(errors):.4f}")


def sparse_reference(depth: np.ndarray, rng: np.random.Generator, fraction: float = 0.01) -> np.ndarray:
    valid = np.flatnonzero(np.isfinite(depth) & (depth > 0))
    picked = rng.choice(valid, max(8, int(valid.size * fraction)), replace=False)
    truth = depth.ravel()[picked]
    noisy = truth + rng.normal(0, 0.03 + 0.01 * truth)
    outliers = rng.random(picked.size) < 0.2
    noisy[outliers] = rng.uniform(0.2, 2 * float(np.nanmax(depth)), outliers.sum())
    reference = np.full(depth.shape, np.nan, np.float32)
    reference.ravel()[picked] = noisy
    return reference


def abs_rel(depth_m: np.ndarray, truth: np.ndarray) -> float:
    valid = np.isfinite(truth) & np.isfinite(depth_m)
    return float(np.mean(np.abs(depth_m[valid] - truth[valid]) / truth[valid]))


def oracle_depth(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    from depth_node.core.least_squares import fit_scale

    valid = np.isfinite(truth) & np.isfinite(pred)
    return (pred * fit_scale(pred[valid].astype(np.float64), truth[valid].astype(np.float64))).astype(np.float32)


def bench_sparse(args: argparse.Namespace) -> None:
    from depth_node.core.scale import fit_sparse
    from depth_node.core.spaces import Invariance, OutputSpace, to_metres
    from depth_node.eval.datasets import rgbd_dev_frames

    estimator = default_model()
    rng = np.random.default_rng(args.seed)
    groups: dict[str, list[tuple[float, float, float]]] = {}
    frames = [(kind, rgb, depth) for kind, rgb, depth, *_ in scenes(args.frames)]
    for scene, group in (("indoor", "rgbd_dev indoor (dense)"), ("outdoor", "rgbd_dev outdoor (LiDAR)")):
        frames += [(group, f.rgb, f.depth_m) for f in rgbd_dev_frames(RGBD_DEV, include_synthetic=False, scene=scene)]
    for group, rgb, depth in frames:
        pred = predict(estimator, rgb, depth.shape)
        fit = fit_sparse(pred, OutputSpace.DEPTH, Invariance.METRIC, sparse_reference(depth, rng))
        ours = abs_rel(to_metres(pred, OutputSpace.DEPTH, fit.scale, fit.shift), depth) if fit.ok else np.nan
        groups.setdefault(group, []).append((ours, abs_rel(oracle_depth(pred, depth), depth), abs_rel(pred, depth)))
    print("| frames | n | AbsRel as published | AbsRel sparse fit (ours) | AbsRel oracle LS | ours / oracle |")
    print("|---|---|---|---|---|---|")
    for group, rows in groups.items():
        ours, oracle, raw = (float(np.nanmean(c)) for c in zip(*rows))
        print(f"| {group} | {len(rows)} | {raw:.3f} | {ours:.3f} | {oracle:.3f} | {ours / oracle:.3f} |")


def bench_cloud(args: argparse.Namespace) -> None:
    from depth_node.core.camera import PinholeCamera
    from depth_node.core.cloud import backproject
    from depth_node.core.cloud_filter import block_camera, block_median, flying_pixels, sky_mask
    from depth_node.core.spaces import OutputSpace

    _, rgb, depth, camera, *_ = next(scenes(1))
    camera = PinholeCamera(640, 480, camera.fx, camera.fy, camera.cx, camera.cy)
    steps = {
        "backproject (xyz)": lambda: backproject(depth, camera),
        "backproject (xyz + rgb)": lambda: backproject(depth, camera, rgb=rgb),
        "flying pixels, ratio, radius 1": lambda: flying_pixels(depth, camera, "ratio", radius=1),
        "flying pixels, ratio, radius 2": lambda: flying_pixels(depth, camera, "ratio", radius=2),
        "flying pixels, normal, radius 2": lambda: flying_pixels(depth, camera, "normal", radius=2),
        "sky mask (disparity)": lambda: sky_mask(1.0 / depth, OutputSpace.DISPARITY, 0.02),
        "block median 2x2 + backproject": lambda: backproject(block_median(depth, 2), block_camera(camera, 2)),
        "block median 4x4 + backproject": lambda: backproject(block_median(depth, 4), block_camera(camera, 4)),
        "stride 4 backproject": lambda: backproject(depth, camera, 4),
    }
    print("| step at 640x480 | ms (median) |")
    print("|---|---|")
    for name, step in steps.items():
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1e3)
        print(f"| {name} | {statistics.median(times):.2f} |")


def bench_pipeline(args: argparse.Namespace) -> None:
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig

    _, rgb, depth, camera, height, _ = next(scenes(1))
    reference = np.where(np.random.default_rng(0).random(depth.shape) < 0.01, depth, np.nan)
    estimator = default_model()
    print("| scale.mode | stage scale ms | stage cloud ms | scale |")
    print("|---|---|---|---|")
    for name, config, extra in (("model", PipelineConfig(), {}),
                                ("ground_plane", PipelineConfig(scale_mode="ground_plane", scale_camera_height=height), {}),
                                ("sparse (1 % of pixels)", PipelineConfig(scale_mode="sparse"), {"reference_depth_m": reference})):
        pipeline = DepthPipeline(estimator, config)
        scale_ms, cloud_ms = [], []
        for _ in range(args.repeat):
            result = pipeline.process(rgb, camera, **extra)
            scale_ms.append(result.timings_ms["scale"])
            cloud_ms.append(result.timings_ms["cloud"])
        print(f"| {name} | {statistics.median(scale_ms):.2f} | {statistics.median(cloud_ms):.2f} | {result.scale.scale:.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    ground = sub.add_parser("ground", help="ground_plane scale error")
    ground.add_argument("--frames", type=int, default=3, help="frames per rendered scene (9 scenes)")
    sparse = sub.add_parser("sparse", help="sparse fit vs oracle alignment")
    sparse.add_argument("--frames", type=int, default=2, help="frames per rendered scene (9 scenes)")
    sparse.add_argument("--seed", type=int, default=7)
    cloud = sub.add_parser("cloud", help="cloud stage costs")
    cloud.add_argument("--repeat", type=int, default=50)
    stages = sub.add_parser("pipeline", help="scale and cloud stage costs in the pipeline")
    stages.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    {"ground": bench_ground, "sparse": bench_sparse, "cloud": bench_cloud, "pipeline": bench_pipeline}[args.part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
