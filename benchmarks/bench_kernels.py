#!/usr/bin/env python3
"""Micro-benchmarks of the hot kernels against the naive code people write, with the ratio (median of --repeat).

conversion in:  sensor_msgs/Image rgb8 640×480 (row padding 0) → numpy RGB. Ours: a zero-copy view over the
                message buffer. Naive: ``np.array(list(msg.data))`` reshaped (what a first cv_bridge-less node does).
conversion out: float32 depth 640×480 → sensor_msgs/Image. Ours: one memcpy into an ``array.array``. Naive:
                ``msg.data = depth.view(np.uint8).ravel()`` (an ndarray: rclpy's setter walks it element by element);
                also ``msg.data = depth.tobytes()``, which is as fast as ours.
cloud:          depth 640×480 → organized xyz. Ours: cached rays, float32, written in place. Naive: meshgrid of
                pixel coordinates in float64 every frame, then stack.
model input:    the camera image resized to FastDepth's 224×224 (area). Ours: row bands on the cores, equal bit for
                bit (estimators/preprocess.py). Naive: one cv2.resize.
alignment:      N members at S×S, Marigold's affine ensemble. Ours: core.ensemble (IRLS in torch + BFGS refinement, core.refine). Naive:
                the plain numpy/scipy Marigold reference (test/_marigold_reference.py, BFGS, numerical gradients).

    .venv/bin/python benchmarks/bench_kernels.py --repeat 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))


def median_ms(step: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20, help="runs per kernel (the naive alignment runs 3 times)")
    parser.add_argument("--members", type=int, default=5, help="ensemble members for the alignment kernel")
    parser.add_argument("--size", type=int, default=256, help="member side for the alignment kernel")
    args = parser.parse_args()

    import torch
    from sensor_msgs.msg import Image

    from _marigold_reference import reference_ensemble
    from depth_node.core.camera import PinholeCamera
    from depth_node.core.cloud import backproject
    from depth_node.core.ensemble import ensemble
    from depth_node.core.spaces import Invariance
    from depth_node.estimators.preprocess import resize_image
    from depth_node.ros.convert import array_to_image, image_to_rgb

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 8.0, (480, 640)).astype(np.float32)
    camera = PinholeCamera(640, 480, 525.0, 525.0, 319.5, 239.5)
    message = array_to_image(rgb, "rgb8", Image().header)

    def naive_in() -> np.ndarray:
        return np.array(list(message.data), np.uint8).reshape(message.height, message.step)[:, :message.width * 3].reshape(480, 640, 3)

    def naive_out() -> Image:
        msg = Image(height=480, width=640, encoding="32FC1", step=640 * 4)
        msg.data = depth.view(np.uint8).ravel()
        return msg

    def bytes_out() -> Image:
        msg = Image(height=480, width=640, encoding="32FC1", step=640 * 4)
        msg.data = depth.tobytes()
        return msg

    def naive_cloud() -> np.ndarray:
        u, v = np.meshgrid(np.arange(640, dtype=np.float64), np.arange(480, dtype=np.float64))
        z = depth.astype(np.float64)
        return np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z], axis=-1).astype(np.float32)

    hd = np.random.default_rng(1).integers(0, 255, (720, 1280, 3), dtype=np.uint8)  # rng stays as the other rows had it
    for image in (rgb, hd):
        np.testing.assert_array_equal(resize_image(image, 224, 224), cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(naive_in(), image_to_rgb(message))
    np.testing.assert_allclose(naive_cloud(), backproject(depth, camera), rtol=1e-6)
    base = rng.uniform(0.2, 1.0, (args.size, args.size))
    members = np.stack([base * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1) + rng.normal(0, 0.01, base.shape)
                        for _ in range(args.members)]).astype(np.float32)
    rows = [
        ("conversion in (Image rgb8 → RGB)", lambda: image_to_rgb(message), naive_in, args.repeat),
        ("conversion out (32FC1 → Image), naive = ndarray", lambda: array_to_image(depth, "32FC1", Image().header), naive_out, args.repeat),
        ("conversion out (32FC1 → Image), naive = bytes", lambda: array_to_image(depth, "32FC1", Image().header), bytes_out, args.repeat),
        ("cloud (depth → organized xyz)", lambda: backproject(depth, camera), naive_cloud, args.repeat),
        ("model input (RGB → 224×224, area)", lambda: resize_image(rgb, 224, 224),
         lambda: cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA), args.repeat),
        ("model input from 1280×720 (→ 224×224, area)", lambda: resize_image(hd, 224, 224),
         lambda: cv2.resize(hd, (224, 224), interpolation=cv2.INTER_AREA), args.repeat),
        (f"alignment ({args.members} members at {args.size}²)",
         lambda: ensemble(torch.from_numpy(members), Invariance.AFFINE, "median"),
         lambda: reference_ensemble(members.astype(np.float64), "median", True), 3),
    ]
    print("| kernel at 640×480 | ours ms | naive ms | naive / ours |")
    print("|---|---|---|---|")
    for name, ours, naive, repeat in rows:
        ours_ms = median_ms(ours, max(3, repeat))
        naive_ms = median_ms(naive, repeat)
        ratio = naive_ms / ours_ms
        print(f"| {name} | {ours_ms:.3f} | {naive_ms:.2f} | {ratio:.0f}× |" if ratio >= 10 else
              f"| {name} | {ours_ms:.3f} | {naive_ms:.2f} | {ratio:.1f}× |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
