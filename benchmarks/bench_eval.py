#!/usr/bin/env python3
"""Evaluation overhead at 640x480: reading, decoding and scoring as a fraction of model time (target ≤ 10 %).

Renders a 640x480 synthetic bag (`depth-node synth`, exact depth), then runs `depth-node eval`'s offline evaluator
on it with each model and reports, per frame (median): read (bag → messages), decode (image → RGB, camera_info →
intrinsics), gt (ground truth → metres on the depth grid), score (four alignments, eight metrics, sparsification)
against infer (the model's forward pass), and write (output bag + thumbnails, reported apart: optional).

    .venv/bin/python benchmarks/bench_eval.py [--frames 20] [--models fastdepth,da_s]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20, help="frames in the synthetic bag (default 20)")
    parser.add_argument("--models", default="fastdepth,da_s", help="fastdepth (real weights) and/or da_s (DA-V2 Small, random weights)")
    args = parser.parse_args()

    from bench_models import depth_anything

    from depth_node.core.pipeline import DepthPipeline, PipelineConfig
    from depth_node.estimators import load_estimator
    from depth_node.eval.bag_input import BagFrames, choose_topics, open_reader
    from depth_node.eval.runner import EvalOptions, Evaluator
    from depth_node.synth.writer import SynthSpec, write

    folder = Path(tempfile.mkdtemp())
    write(SynthSpec(scenes=("room",), frames=args.frames), folder / "synth", folder=False)
    bag = folder / "synth" / "bag"
    reader = open_reader(bag)
    topics = choose_topics(reader)
    reader.close()
    cards = {"fastdepth": REPO / "models" / "fastdepth.yaml"}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; bag: {args.frames} frames 640x480")
    print("| model | infer | read | decode | gt | score | read+decode+gt+score | ÷ infer | write (bag + thumbnails) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        card = cards.get(name) or depth_anything(folder, "small")
        estimator = load_estimator(card)
        relative = estimator.output.invariance.value != "metric"
        config = PipelineConfig(scale_mode="fixed") if relative else PipelineConfig()
        evaluation = Evaluator(DepthPipeline(estimator, config), config, BagFrames(bag, topics), folder / f"eval_{name}", EvalOptions()).run()
        rows = [r for r in evaluation.rows if not r.error][1:]  # the first frame warms caches up

        def median(stage: str) -> float:
            return float(np.median([r.timings_ms.get(stage, 0.0) for r in rows]))

        overhead = float(np.median([sum(r.timings_ms.get(k, 0.0) for k in ("read", "decode", "gt", "score")) for r in rows]))
        print(f"| {estimator.name} | {median('infer'):.1f} | {median('read'):.2f} | {median('decode'):.2f} | {median('gt'):.2f} | "
              f"{median('score'):.1f} | {overhead:.1f} | {100 * overhead / median('infer'):.0f} % | {median('write'):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
