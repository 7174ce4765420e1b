#!/usr/bin/env python3
"""Site adaptation measured (docs/adaptation.md): `depth-node adapt` on the early frames of one real sequence, then the
base and the adapted card scored by `depth-node eval` (the node's pipeline, metres as published, to 10 m) on the
sequence's later frames — held out by adapt's own split, never trained on — and on other places: what is gained on
the site and what is lost elsewhere.

  site (--site tum)    TUM fr1 rpy from ../shared/data/train (349 frames at 10 Hz), made into a bag with dataset-to-bag;
                       adapt holds out the last 20 % by stamp (70 frames), the "site, later frames" bag is exactly those
  site (--site street) a rendered street (depth-node synth --lidar, 200 frames at 320×240) whose bag's only ground truth
                       is its 32-beam LiDAR (PointCloud2 + /tf_static; adapt gets --gt-cloud-topic); the later frames
                       are scored against the dense rendered depth (to 80 m)
  other sequence       TUM fr3 cabinet from ../shared/data/train (58 frames; another room and camera)
  slambook bag         ../shared/data/bags/slambook_rgbd_ros2_mcap (5 frames)
  rgbd_dev indoor      ../shared/data/rgbd_dev real indoor frames (6; measurement only)

    .venv/bin/python benchmarks/bench_adapt.py --work /tmp/sites                  # adapt with its defaults
    .venv/bin/python benchmarks/bench_adapt.py --work /tmp/sites --name decoder -- --decoder-only
    .venv/bin/python benchmarks/bench_adapt.py --work /tmp/sites --site street --name street
Arguments after -- go to depth-node adapt. Prints a markdown table; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_default import MAX_DEPTH_M, SHARED, cli, score, tum_folder  # noqa: E402 - the gate's bag builders and scorer

SITE_SOURCE = "tum_fr1_rpy"
HOLDOUT = 0.2  # adapt's default
STREET_FRAMES, LIDAR_RANGE_M = 200, 80.0


def street_bags(work: Path) -> tuple[Path, Path]:
    """The rendered street whose only ground truth is its LiDAR (a PointCloud2 and /tf_static, no depth image), and
    its later frames with the dense rendered depth."""
    from depth_node.eval.bag_output import BagWriter, rgbd_messages, write_rgbd
    from depth_node.synth.lidar import LidarSpec
    from depth_node.synth.writer import SynthSpec, generate, write_lidar

    site, late = work / "street_lidar_cloud", work / "street_lidar_cloud_late"
    if site.exists() and late.exists():
        return site, late
    shutil.rmtree(site, ignore_errors=True)
    shutil.rmtree(late, ignore_errors=True)
    held_from = STREET_FRAMES - math.ceil(STREET_FRAMES * HOLDOUT)
    lidar = LidarSpec()
    spec = SynthSpec(scenes=("street",), frames=STREET_FRAMES, width=320, height=240, lidar=lidar)
    with BagWriter(site) as camera_and_lidar, BagWriter(late) as dense:
        for frame in generate(spec):
            write_rgbd(camera_and_lidar, frame.stamp_ns, rgbd_messages(camera_and_lidar.typestore, frame.stamp_ns, frame.rgb,
                                                                       None, frame.camera))
            write_lidar(camera_and_lidar, frame, lidar)
            if frame.index >= held_from:
                truth = np.where(frame.depth_m <= LIDAR_RANGE_M, frame.depth_m, np.nan).astype(np.float32)
                write_rgbd(dense, frame.stamp_ns, rgbd_messages(dense.typestore, frame.stamp_ns, frame.rgb, truth, frame.camera))
    return site, late


def site_bags(work: Path, site: str) -> dict[str, Path]:
    """The site bag, its later frames as a bag of their own, and the other places."""
    bags = {"site": work / SITE_SOURCE, "site, later frames (held out)": work / f"{SITE_SOURCE}_late",
            "TUM fr3 cabinet (other room)": work / "tum_fr3", "slambook bag": SHARED / "bags" / "slambook_rgbd_ros2_mcap",
            "rgbd_dev indoor": work / "rgbd_dev_indoor"}
    if site == "street":
        bags["site"], bags["site, later frames (held out)"] = street_bags(work)
    folder, intrinsics = tum_folder(work, SITE_SOURCE)
    if not bags["site"].exists():
        cli("dataset-to-bag", str(folder), str(bags["site"]), "--intrinsics", intrinsics)
    if not bags["site, later frames (held out)"].exists():
        lines = {name: (folder / name).read_text().splitlines() for name in ("rgb.txt", "depth.txt")}
        held = math.ceil(len(lines["rgb.txt"]) * HOLDOUT)
        late = work / f"{SITE_SOURCE}_late_folder"
        shutil.rmtree(late, ignore_errors=True)
        late.mkdir()
        for sub in ("rgb", "depth"):
            (late / sub).symlink_to((folder / sub).resolve())
        for name, rows in lines.items():
            (late / name).write_text("\n".join(rows[-held:]) + "\n")
        cli("dataset-to-bag", str(late), str(bags["site, later frames (held out)"]), "--intrinsics", intrinsics)
    if not bags["TUM fr3 cabinet (other room)"].exists():
        folder3, intrinsics3 = tum_folder(work, "tum_fr3")
        cli("dataset-to-bag", str(folder3), str(bags["TUM fr3 cabinet (other room)"]), "--intrinsics", intrinsics3)
    if not bags["rgbd_dev indoor"].exists():
        cli("dataset-to-bag", str(SHARED / "rgbd_dev"), str(bags["rgbd_dev indoor"]), "--real-only", "--scene", "indoor")
    return bags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/depth_node_sites"), help="bags and results (reused)")
    parser.add_argument("--base", default="default", help="the base card (default: default)")
    parser.add_argument("--name", default="defaults", help="this run's name (its folder under --work)")
    parser.add_argument("--site", choices=("tum", "street"), default="tum", help="the site adapted to (default tum)")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args, adapt_args = parser.parse_known_args()
    adapt_args = [a for a in adapt_args if a != "--"]
    args.work.mkdir(parents=True, exist_ok=True)
    bags = site_bags(args.work, args.site)
    out = args.work / f"adapt_{args.name}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    if args.site == "street":
        adapt_args = ["--gt-cloud-topic", "/lidar/points", *adapt_args]
    cli("adapt", str(bags["site"]), "-o", str(out), "--card", args.base, *adapt_args)
    seconds = time.perf_counter() - started
    base = Path(args.base) if Path(args.base).is_file() else Path(__file__).resolve().parent.parent / "models" / f"{args.base}.yaml"
    rows = {}
    for place, bag in bags.items():
        if place == "site":
            continue
        max_depth = LIDAR_RANGE_M if args.site == "street" and place.startswith("site") else MAX_DEPTH_M
        rows[place] = {"base": score(base, bag, args.work, max_depth), "adapted": score(out / "card.yaml", bag, args.work, max_depth)}
    card = yaml.safe_load((out / "card.yaml").read_text())
    print(f"depth-node adapt {bags['site']} --card {args.base} {' '.join(adapt_args)}: {seconds / 60:.1f} min "
          f"({card['training']['bags'][0]['labelled_frames']} labelled frames)")
    print("| scored on | model | AbsRel as published | δ1 as published | AbsRel aligned | δ1 aligned |")
    print("|---|---|---|---|---|---|")
    for place, models in rows.items():
        for model, m in models.items():
            print(f"| {place} | {model} | {m['abs_rel']:.4f} | {m['delta1']:.4f} | {m['aligned_abs_rel']:.4f} | {m['aligned_delta1']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"adapt_args": adapt_args, "seconds": seconds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
