#!/usr/bin/env python3
"""Where a model's aligned error on the held-out rendered rooms is: per frame, near depth edges or inside surfaces,
and against the floor its input resolution sets.

Renders the held-out rooms + corridors of benchmarks/accuracy_default.py (seed 4242, 640×480, the slambook Kinect)
in memory, runs the card's model, scales and shifts each prediction to the ground truth (the evaluation's "aligned",
GT ≤ 80 m) and prints per frame: aligned AbsRel; the resolution floor (the GT itself taken down to the model's
input size and back up, aligned the same way: what a perfect network at that size would score); the share of pixels
within 2 px of a depth edge (|∇ ln GT| > 0.3) and each part's contribution to the AbsRel; and the share of the error
carried by the worst 10 % of pixels. With --picture, a PNG of RGB | GT | aligned prediction | signed error per row.

    .venv/bin/python benchmarks/rooms_errors.py models/default.yaml --picture /tmp/rooms_errors.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from depth_node.estimators.registry import load_estimator  # noqa: E402
from depth_node.eval.metrics import EvalRange, apply_fit, score_frame  # noqa: E402
from depth_node.tools.synth.writer import SynthSpec, generate  # noqa: E402

RANGE = EvalRange(1e-3, 80.0)
SPEC = SynthSpec(scenes=("room", "corridor"), frames=10, seed=4242, intrinsics=(518, 519, 325.5, 253.5))


def aligned(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, float]:
    score = score_frame(pred, gt, RANGE, modes=("affine",))
    return apply_fit(pred, "affine", score.fits["affine"]), score.metrics["affine"]["abs_rel"]


def edge_mask(gt: np.ndarray) -> np.ndarray:
    log_gt = np.log(np.nan_to_num(gt, nan=1.0))
    gradient = np.abs(cv2.Sobel(log_gt, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(log_gt, cv2.CV_32F, 0, 1))
    return cv2.dilate((gradient > 0.3).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def picture_row(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    low, high = np.nanpercentile(gt, 2), np.nanpercentile(gt, 98)

    def colour(depth: np.ndarray) -> np.ndarray:
        grey = np.clip((np.nan_to_num(depth, nan=high) - low) / (high - low), 0, 1)
        return cv2.applyColorMap((grey * 255).astype(np.uint8), cv2.COLORMAP_TURBO)

    signed = np.clip(np.nan_to_num((pred - gt) / gt) * 2 + 0.5, 0, 1)  # ±25 % full scale: cyan too near, magenta too far
    row = np.hstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), colour(gt), colour(pred),
                     cv2.applyColorMap((signed * 255).astype(np.uint8), cv2.COLORMAP_COOL)])
    return cv2.resize(row, (row.shape[1] // 2, row.shape[0] // 2), interpolation=cv2.INTER_AREA)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("card", type=Path, help="model card")
    parser.add_argument("--picture", type=Path, help="also write RGB | GT | aligned prediction | signed error rows here (PNG)")
    parser.add_argument("--threads", type=int, default=2, help="runtime CPU threads (default 2)")
    args = parser.parse_args()
    estimator = load_estimator(args.card, num_threads=args.threads)
    print(f"{'frame':<12}{'aligned':>8}{'floor':>7}{'edge px':>8}{'edges':>7}{'inside':>7}{'worst 10%':>10}")
    rows, tiles = [], []
    for frame in generate(SPEC):
        gt = np.where(np.isfinite(frame.depth_m) & (frame.depth_m < RANGE.max_depth), frame.depth_m, np.nan).astype(np.float32)
        prediction = estimator.predict(frame.rgb).values
        model_h, model_w = prediction.shape
        pred, abs_rel = aligned(cv2.resize(prediction, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR), gt)
        small = cv2.resize(np.nan_to_num(gt, nan=0.0), (model_w, model_h), interpolation=cv2.INTER_NEAREST)
        floor = cv2.resize(small, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
        _, floor_abs_rel = aligned(np.where(floor > 0, floor, np.nan), gt)
        valid = np.isfinite(gt) & np.isfinite(pred) & (pred > 0)
        error = np.abs(np.clip(pred[valid], RANGE.min_depth, RANGE.max_depth) - gt[valid]) / gt[valid]
        edges = edge_mask(gt)[valid]
        worst = np.sort(error)[-max(1, error.size // 10):].sum() / error.sum()
        rows.append((abs_rel, floor_abs_rel, edges.mean(), error[edges].sum() / error.size, error[~edges].sum() / error.size, worst))
        print(f"{frame.scene + ' ' + str(frame.index):<12}" + "".join(f"{v:>{w}.3f}" for v, w in zip(rows[-1], (8, 7, 8, 7, 7, 10))))
        if args.picture and frame.index % 10 in (0, 3, 6):
            tiles.append(picture_row(frame.rgb, gt, pred))
    print(f"{'mean':<12}" + "".join(f"{v:>{w}.3f}" for v, w in zip(np.mean(rows, axis=0), (8, 7, 8, 7, 7, 10))))
    if args.picture:
        cv2.imwrite(str(args.picture), np.vstack(tiles))
        print(f"wrote {args.picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
