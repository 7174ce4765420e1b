#!/usr/bin/env python3
"""Ensembling speed: our alignment (depth_node.core.ensemble) against the plain Marigold reference, and the
pipeline cost of ensembling with the shipped default model.

align:    N members at SIZE×SIZE — the default model's real test-time-augmentation predictions of a real TUM frame
          (flip × input scales), resized to SIZE² — aligned and reduced by ours (median of --repeat runs) and by the
          reference (scipy BFGS, numerical gradients, Marigold repo settings: max_iter 50, tol 1e-6, then its median;
          one run, it is slow). Ours is timed like the reference (alignment + median, uncertainty=False) and with the
          MAD uncertainty the pipeline uses, interleaved. Prints the times, the ratios, and Marigold's objective of
          each normalized result.
pipeline: per-frame milliseconds of DepthPipeline.process (640×480 input, default model) at ensemble_size 1,
          confidence_tta, 4 and 6 members, and with temporal_smoothing; the 'ensemble' and 'temporal' stages alone
          are the alignment and smoothing overheads.
confidence: sparsification AUSE of each confidence source vs a random ordering, on synthetic rooms with exact
          depth, (--set real / real_new_scene) the real TUM validation frames of data/train or (--set rgbd_dev) the real indoor
          frames of rgbd_dev (default model, or --model CARD), scale+shift aligned and as published. The single-pass
          row is the model's own confidence head when its card has one, else the gradient heuristic.
temporal: scale flicker (mean |Δ ln s|, s = least-squares scale to the exact depth) and AbsRel with temporal
          smoothing off and on, on synthetic moving-camera rooms and corridors (default model).

    .venv/bin/python benchmarks/bench_ensemble.py align --members 10 --size 768
    python3 benchmarks/bench_ensemble.py align --members 10 --size 768 --device cuda     (on a GPU machine)
    .venv/bin/python benchmarks/bench_ensemble.py pipeline --frames 20
    .venv/bin/python benchmarks/bench_ensemble.py confidence --frames 6 --seed 555
    .venv/bin/python benchmarks/bench_ensemble.py confidence --set real
    .venv/bin/python benchmarks/bench_ensemble.py confidence --set rgbd_dev
    .venv/bin/python benchmarks/bench_ensemble.py confidence --set real_new_scene
    .venv/bin/python benchmarks/bench_ensemble.py confidence --set rgbd_dev --model out/ft/card.yaml   (another card)
    .venv/bin/python benchmarks/bench_ensemble.py temporal --frames 24 --seed 77
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))  # the reference implementation the tests hold us to
FRAME = REPO.parent / "shared" / "data" / "train" / "rgbd" / "tum_fr3_cabinet_keyframes" / "rgb" / "fr3_cabinet_kf0000.jpg"
SCALES = (1.0, 0.75, 1.25, 0.875, 1.125, 0.625, 1.375)


def real_members(count: int, size: int, frame: Path = FRAME) -> np.ndarray:
    from depth_node.core.members import member_plan, run_members
    from depth_node.estimators import load_estimator

    estimator = load_estimator(REPO / "models" / "default.yaml")
    rgb = cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB)
    members = run_members(estimator, rgb, member_plan(count, "tta", SCALES, False, True))
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) for m in members])


def normalized_objective(members: np.ndarray, param: np.ndarray) -> float:
    from _marigold_reference import align, lower_median, objective

    aligned = align(members.astype(np.float64), param, True)
    reduced = lower_median(aligned)
    return objective((aligned - reduced.min()) / (reduced.max() - reduced.min()))


def bench_align(args: argparse.Namespace) -> None:
    import torch

    from _marigold_reference import lower_median, reference_ensemble
    from depth_node.core.ensemble import ensemble
    from depth_node.core.spaces import Invariance

    torch.set_num_threads(args.threads)
    members = real_members(args.members, args.size, args.frame)
    print(f"{args.members} members of {args.size}x{args.size} (default model, TTA of {args.frame.name}); "
          f"{platform.processor() or platform.machine()}, torch threads {args.threads}")
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"ours on {torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda}); reference on the CPU")
    x = torch.from_numpy(members).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    ensemble(x, Invariance.AFFINE, "median", refine_iterations=args.refine_iterations)  # warm-up: lazy imports, CUDA kernels
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeat):  # with and without the uncertainty (MAD), interleaved: the machine's load drifts
        for uncertainty in (True, False):
            sync()
            start = time.perf_counter()
            ours = ensemble(x, Invariance.AFFINE, "median", refine_iterations=args.refine_iterations, uncertainty=uncertainty)
            sync()
            times[uncertainty].append(time.perf_counter() - start)
    ours_s, lean_s = statistics.median(times[True]), statistics.median(times[False])
    start = time.perf_counter()
    param = reference_ensemble(members, "median", True)
    aligned = members * param[:args.members, None, None] + param[args.members:, None, None]
    lower_median(aligned)  # the reference's own reduction (a median, no uncertainty), for a like-for-like total
    reference_s = time.perf_counter() - start
    ours_param = np.concatenate([ours.scale.cpu().numpy(), ours.shift.cpu().numpy()])
    for label, value, runs in (("ours, median (as the reference)", lean_s, times[False]),
                               ("ours, median + MAD uncertainty", ours_s, times[True])):
        print(f"{label:<32}{value * 1000:9.1f} ms (median of {args.repeat}; runs {', '.join(f'{t * 1000:.0f}' for t in runs)})")
    print(f"{'reference (median)':<32}{reference_s * 1000:9.1f} ms (one run)")
    print(f"speed ratio reference/ours: {reference_s / lean_s:.0f}x like for like, {reference_s / ours_s:.0f}x with our uncertainty")
    print(f"objective of the normalized members: ours {normalized_objective(members, ours_param):.6f}, "
          f"reference {normalized_objective(members, param):.6f}")


def bench_pipeline(args: argparse.Namespace) -> None:
    from depth_node.core.camera import PinholeCamera
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig
    from depth_node.estimators import load_estimator

    estimator = load_estimator(REPO / "models" / "default.yaml", num_threads=args.threads)
    rgb = cv2.resize(cv2.cvtColor(cv2.imread(str(FRAME)), cv2.COLOR_BGR2RGB), (640, 480))
    camera = PinholeCamera(640, 480, 525.0, 525.0, 319.5, 239.5)
    print(f"DepthPipeline.process, 640x480, default model, {args.frames} frames after 2 warm-up; medians in ms")
    print(f"{'setting':<22}{'total':>8}{'infer':>8}{'ensemble':>10}{'temporal':>10}{'confidence':>12}")
    for label, config in (("single pass", PipelineConfig()), ("confidence_tta", PipelineConfig(confidence_tta=True)),
                          ("ensemble_size 4", PipelineConfig(ensemble_size=4)), ("ensemble_size 6", PipelineConfig(ensemble_size=6)),
                          ("temporal_smoothing", PipelineConfig(temporal_smoothing=True))):
        pipeline = DepthPipeline(estimator, config)
        rows = []
        for i in range(args.frames + 2):
            start = time.perf_counter()
            result = pipeline.process(rgb, camera)
            if i >= 2:
                rows.append({"total": (time.perf_counter() - start) * 1000, **result.timings_ms})
        med = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in ("total", "infer", "ensemble", "temporal", "confidence")}
        print(f"{label:<22}{med['total']:8.1f}{med['infer']:8.1f}{med['ensemble']:10.1f}{med['temporal']:10.1f}{med['confidence']:12.1f}")


def bench_confidence(args: argparse.Namespace) -> None:
    from depth_node.core.camera import PinholeCamera
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig
    from depth_node.estimators import load_estimator
    from depth_node.eval.metrics import EvalRange, ause, random_order_ause, score_frame

    if args.set == "synthetic":  # rendered rooms and corridors at Kinect intrinsics × 0.4
        from depth_node.synth.writer import SynthSpec, generate

        camera = PinholeCamera(256, 192, 207.0, 207.0, 127.5, 95.5)
        spec = SynthSpec(scenes=("room", "corridor"), frames=max(1, args.frames // 2), width=256, height=192, seed=args.seed,
                         intrinsics=(207.0, 207.0, 127.5, 95.5))
        frames = [(f.rgb, np.where(f.depth_m < 80, f.depth_m, np.nan).astype(np.float32), camera) for f in generate(spec)]
        what = f"{len(frames)} synthetic frames, seed {args.seed}"
    elif args.set in ("real", "real_new_scene"):  # TUM frames of data/train held out from training, never rgbd_dev
        from depth_node.eval.datasets import read_depth_png, read_rgb
        from depth_node.train.data import VALIDATION_SOURCES, train_index

        train = REPO.parent / "shared" / "data" / "train"
        rows = [r for r in train_index(train) if r["split"] == "rgbd" and r["source"] in VALIDATION_SOURCES[args.set]]
        frames = []
        for row in rows:
            rgb = read_rgb(train / row["rgb"])
            frames.append((rgb, read_depth_png(train / row["depth"], float(row["depth_units_per_m"])),
                           PinholeCamera(rgb.shape[1], rgb.shape[0], *(float(row[k]) for k in ("fx", "fy", "cx", "cy")))))
        what = f"{len(frames)} real TUM frames of data/train ({', '.join(VALIDATION_SOURCES[args.set])})"
    else:  # measurement only: the real indoor frames of rgbd_dev at their own size and intrinsics, GT ≤ 10 m
        from depth_node.eval.datasets import rgbd_dev_frames

        rgbd_dev = REPO.parent / "shared" / "data" / "rgbd_dev"
        frames = [(f.rgb, f.depth_m, f.camera) for f in rgbd_dev_frames(rgbd_dev, include_synthetic=False, scene="indoor")]
        what = f"{len(frames)} real indoor frames of rgbd_dev (measurement set)"
    estimator = load_estimator(args.model)
    single = "learnt head (single pass)" if estimator.card.confidence_index is not None else "gradient heuristic"
    limit = 10.0 if args.set == "rgbd_dev" else 20.0
    print(f"AUSE of AbsRel (lower is better) vs a random ordering; {what}")
    print(f"{'confidence':<34}{'aligned':>9}{'random':>9}{'metric':>9}{'random':>9}")
    for label, config in ((single, PipelineConfig()), ("flip disagreement (confidence_tta)", PipelineConfig(confidence_tta=True)),
                          ("ensemble spread, 2 members (flip)", PipelineConfig(ensemble_size=2)),
                          ("ensemble spread, 4 members", PipelineConfig(ensemble_size=4)), ("ensemble spread, 6 members", PipelineConfig(ensemble_size=6))):
        cells = []
        for mode in ("affine", "metric"):
            pipeline = DepthPipeline(estimator, config)
            ours, random = [], []
            for rgb, depth, frame_camera in frames:
                result = pipeline.process(rgb, frame_camera, points=False)
                curves = score_frame(result.depth_m, depth, EvalRange(0.1, limit), modes=(mode,), confidence=result.confidence,
                                     sparsification_mode=mode).sparsification
                by_confidence, oracle = curves
                ours.append(ause(by_confidence, oracle))
                random.append(random_order_ause(by_confidence, oracle))
            cells += [np.mean(ours), np.mean(random)]
        print(f"{label:<34}" + "".join(f"{v:9.4f}" for v in cells))


def bench_temporal(args: argparse.Namespace) -> None:
    from depth_node.core.camera import PinholeCamera
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig
    from depth_node.estimators import load_estimator
    from depth_node.eval.metrics import EvalRange, fit_scale, score_frame
    from depth_node.synth.writer import SynthSpec, generate

    intrinsics = (259.0, 259.0, 159.5, 119.5)
    frames = list(generate(SynthSpec(scenes=("room", "corridor"), frames=args.frames, width=320, height=240, seed=args.seed,
                                     intrinsics=intrinsics)))
    estimator = load_estimator(REPO / "models" / "default.yaml")
    camera = PinholeCamera(320, 240, *intrinsics)
    print(f"synthetic room + corridor, {args.frames} frames each, seed {args.seed}, default model")
    configs = [("off", PipelineConfig())] + [(f"on (alpha {a:g})", PipelineConfig(temporal_smoothing=True, temporal_alpha=a))
                                             for a in args.alpha]
    for label, config in configs:
        pipeline = DepthPipeline(estimator, config)
        drift, abs_rel = [], []
        for scene in ("room", "corridor"):
            scales = []
            for frame in (f for f in frames if f.scene == scene):
                depth = pipeline.process(frame.rgb, camera, points=False, confidence=False).depth_m
                gt = np.where(np.isfinite(frame.depth_m) & (frame.depth_m < 20), frame.depth_m, np.nan).astype(np.float32)
                valid = np.isfinite(gt) & np.isfinite(depth)
                scales.append(fit_scale(depth[valid].astype(np.float64), gt[valid].astype(np.float64)))
                abs_rel.append(score_frame(depth, gt, EvalRange(0.1, 20.0), modes=("metric",)).metrics["metric"]["abs_rel"])
            drift.extend(np.abs(np.diff(np.log(scales))))
        print(f"temporal smoothing {label:<16} scale flicker {np.mean(drift):.4f}   AbsRel {np.mean(abs_rel):.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    sub = parser.add_subparsers(dest="part", required=True)
    align = sub.add_parser("align", help="our alignment vs the scipy BFGS reference")
    align.add_argument("--members", type=int, default=10)
    align.add_argument("--size", type=int, default=768)
    align.add_argument("--repeat", type=int, default=5)
    align.add_argument("--threads", type=int, default=2)
    align.add_argument("--refine-iterations", type=int, default=10, help="minimum BFGS refinement iterations after IRLS (0 = IRLS only)")
    align.add_argument("--frame", type=Path, default=FRAME, help=f"RGB image to predict (default: {FRAME.name} of data/train)")
    align.add_argument("--device", default="cpu", help="torch device of our alignment: cpu (default), cuda, cuda:1 …")
    pipe = sub.add_parser("pipeline", help="per-frame cost of ensembling in DepthPipeline")
    pipe.add_argument("--frames", type=int, default=20)
    pipe.add_argument("--threads", type=int, default=2)
    for part in ("confidence", "temporal"):
        extra = sub.add_parser(part, help=f"{part}: see the module docstring")
        extra.add_argument("--frames", type=int, default=6 if part == "confidence" else 24)
        extra.add_argument("--seed", type=int, default=555 if part == "confidence" else 77)
        if part == "temporal":
            extra.add_argument("--alpha", type=float, nargs="+", default=[0.5], help="temporal_alpha values to run (default 0.5)")
        if part == "confidence":
            extra.add_argument("--set", choices=("synthetic", "real", "real_new_scene", "rgbd_dev"), default="synthetic",
                               help="rendered rooms (exact depth), the real TUM validation frames of data/train (fr1 desk + "
                                    "misc, or fr3 cabinet), or the real indoor frames of rgbd_dev (measurement only)")
            extra.add_argument("--model", type=Path, default=REPO / "models" / "default.yaml",
                               help="model card (default: models/default.yaml; its single-pass confidence is its head if it has one)")
    args = parser.parse_args()
    {"align": bench_align, "pipeline": bench_pipeline, "confidence": bench_confidence, "temporal": bench_temporal}[args.part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
