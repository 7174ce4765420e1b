#!/usr/bin/env python3
"""Single-pass confidence of one model card under three error definitions, on five frame sets.

For each frame: the pipeline's depth and confidence (a card with ``output.confidence_index`` publishes its head, any
other the gradient heuristic), the AbsRel per pixel of the depth as published (metric, no clipping), after a
per-image median scale in log (scale) and after the evaluation's least-squares scale and shift (affine), and the
sparsification AUSE of the confidence ranking and of a random order. Mean over frames; "ok" = below random.
Sets: rendered rooms of seeds 555 and 4242 (--frames each), the TUM validation frames and the held-out cabinet
scene of data/train, and the real indoor frames of rgbd_dev (measurement only, GT ≤ 10 m). Last column: the median
error b the confidence stands for (b = 0.05·√(1/c − 1), the head's mapping inverted) against the set's mean aligned
AbsRel — calibration, meaningful for a head only.

    .venv/bin/python benchmarks/bench_confidence_head.py models/default.yaml
    .venv/bin/python benchmarks/bench_confidence_head.py out/conf/card.yaml --frames 24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("card", type=Path, help="model card")
    parser.add_argument("--frames", type=int, default=24, help="rendered frames per seed (default 24)")
    args = parser.parse_args()

    from depth_node.core.camera import PinholeCamera
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig
    from depth_node.estimators import load_estimator
    from depth_node.eval.datasets import rgbd_dev_frames
    from depth_node.eval.metrics import EvalRange, apply_fit, evaluation_mask, fit
    from depth_node.train.confidence_head import REFERENCE_ERROR, ranking_ause
    from depth_node.train.data import real_rgbd, synthetic

    camera = PinholeCamera(256, 192, 207.0, 207.0, 127.5, 95.5)  # rendered at Kinect intrinsics × 0.4, as TUM is
    sets: dict[str, list] = {}
    for seed in (555, 4242):
        rendered = synthetic(args.frames, 256, 192, seed=seed)
        sets[f"rooms {seed}"] = [(rgb, depth, camera, 20.0) for rgb, depth in zip(rendered.rgb, rendered.depth)]
    for name, validation in (("TUM validation", "real"), ("cabinet (held out)", "real_new_scene")):
        real = real_rgbd(SHARED / "train", 256, 192, validation=validation)
        sets[name] = [(rgb, depth, camera, 20.0) for rgb, depth in zip(real.rgb, real.depth)]
    sets["rgbd_dev indoor"] = [(f.rgb, f.depth_m, f.camera, 10.0)
                               for f in rgbd_dev_frames(SHARED / "rgbd_dev", include_synthetic=False, scene="indoor")]
    pipeline = DepthPipeline(load_estimator(args.card), PipelineConfig())
    kinds = ("metric", "scale", "affine")
    print(f"AUSE of AbsRel, confidence / random; {args.card}")
    print(f"{'set':<20}" + "".join(f"{k:>20}" for k in kinds) + f"{'median b / AbsRel':>20}")
    for name, frames in sets.items():
        ours: dict[str, list[float]] = {k: [] for k in kinds}
        random: dict[str, list[float]] = {k: [] for k in kinds}
        implied_b: list[np.ndarray] = []
        aligned_abs_rel: list[float] = []
        for rgb, gt, frame_camera, limit in frames:
            result = pipeline.process(rgb, frame_camera, points=False)
            mask = evaluation_mask(gt, EvalRange(0.1, limit)) & np.isfinite(result.depth_m) & (result.depth_m > 0)
            if mask.sum() < 100:
                continue
            p, g = result.depth_m[mask].astype(np.float64), gt[mask].astype(np.float64)
            log_ratio = np.log(p / g)
            errors = {"metric": np.abs(p - g) / g, "scale": np.abs(np.expm1(log_ratio - np.median(log_ratio))),
                      "affine": np.abs(apply_fit(p, "affine", fit(p, g, "affine")) - g) / g}
            for kind, error in errors.items():
                ause_ours, ause_random = ranking_ause(error, result.confidence[mask])
                ours[kind].append(ause_ours)
                random[kind].append(ause_random)
            aligned_abs_rel.append(float(errors["affine"].mean()))
            confidence = np.clip(result.confidence[mask].astype(np.float64), 1e-6, 1.0)
            implied_b.append(REFERENCE_ERROR * np.sqrt(1.0 / confidence - 1.0))
        print(f"{name:<20}" + "".join(f"{np.mean(ours[k]):9.3f} /{np.mean(random[k]):6.3f}{' ok' if np.mean(ours[k]) < np.mean(random[k]) else ' --'}"
                                      for k in kinds)
              + f"{np.median(np.concatenate(implied_b)):11.3f} /{np.mean(aligned_abs_rel):6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
