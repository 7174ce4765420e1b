#!/usr/bin/env python3
"""The embedded default's shipping gate: a card against `model_card:=fastdepth`, as published, on real frames.

Each set is scored by `depth-node eval` (the node's own pipeline and parameters) to 10 m:
  rgbd_dev real indoor   `depth-node dataset-to-bag ../shared/data/rgbd_dev … --real-only --scene indoor` (6 frames;
                         measurement only: never trained, tuned or selected on)
  slambook bag           ../shared/data/bags/slambook_rgbd_ros2_mcap (5 frames, the real RGB-D bag)
  TUM fr1 / TUM fr3      the rgbd split of ../shared/data/train (358 + 58 frames; the set the default's input geometry
                         was chosen on, so informational here, not part of the gate)
and the node's speed by `depth-node bench` (640×480 camera at 60 Hz, 20 s, depth/image subscribed).

Gate (exit 0 only when all hold): on rgbd_dev and on the slambook bag the card's AbsRel as published is not above
fastdepth's and its δ1 as published is not below; the node publishes ≥ 20 frames/s. Prints one table; --json writes it.

    .venv/bin/python benchmarks/accuracy_default.py                      # models/default.yaml against fastdepth
    .venv/bin/python benchmarks/accuracy_default.py out/ft/card.yaml --work /tmp/sets --json /tmp/gate.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
MAX_DEPTH_M = 10.0
GATE_SETS = ("rgbd_dev real indoor", "slambook bag")
MIN_FRAMES_PER_S = 20.0


def cli(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", *args], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"depth-node {' '.join(args)} failed:\n{run.stderr[-3000:]}")
    return run.stdout


def tum_folder(work: Path, prefix: str) -> tuple[Path, str]:
    """The data/train rgbd frames of the TUM sources starting with ``prefix``, as a TUM RGB-D folder (links + rgb.txt /
    depth.txt at 10 Hz: not every source has stamps), and their intrinsics FX,FY,CX,CY (one camera per prefix)."""
    from depth_node.train.data import train_index

    train = SHARED / "train"
    rows = [r for r in train_index(train) if r["split"] == "rgbd" and r["source"].startswith(prefix)]
    folder = work / f"{prefix}_folder"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    rgb_lines, depth_lines = [], []
    for n, row in enumerate(rows):
        stamp = f"{1000 + n / 10:.6f}"
        rgb, depth = Path("rgb") / f"{n:04d}{Path(row['rgb']).suffix}", Path("depth") / f"{n:04d}.png"
        os.symlink(train / row["rgb"], folder / rgb)
        os.symlink(train / row["depth"], folder / depth)
        rgb_lines.append(f"{stamp} {rgb}")
        depth_lines.append(f"{stamp} {depth}")
    (folder / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (folder / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    cameras = {(r["fx"], r["fy"], r["cx"], r["cy"]) for r in rows}
    if len(cameras) != 1:
        sys.exit(f"{prefix}: expected one camera in data/train, found {cameras}")
    return folder, ",".join(cameras.pop())


def ensure_sets(work: Path) -> dict[str, Path]:
    """name → bag, built under ``work`` on first use."""
    sets = {"rgbd_dev real indoor": work / "rgbd_dev_indoor", "slambook bag": SHARED / "bags" / "slambook_rgbd_ros2_mcap",
            "TUM fr1 (data/train)": work / "tum_fr1", "TUM fr3 (data/train)": work / "tum_fr3"}
    if not sets["rgbd_dev real indoor"].exists():
        cli("dataset-to-bag", str(SHARED / "rgbd_dev"), str(sets["rgbd_dev real indoor"]), "--real-only", "--scene", "indoor")
    for prefix in ("tum_fr1", "tum_fr3"):
        bag = work / prefix
        if not bag.exists():
            folder, intrinsics = tum_folder(work, prefix)
            cli("dataset-to-bag", str(folder), str(bag), "--intrinsics", intrinsics)
    return sets


def score(card: Path, bag: Path, work: Path, max_depth: float = MAX_DEPTH_M) -> dict[str, float]:
    out = work / f"eval_{card.parent.name}_{card.stem}_{bag.name}"
    shutil.rmtree(out, ignore_errors=True)  # this script's own result folder: eval will not overwrite one
    cli("eval", str(bag), "-o", str(out), "-p", f"model_card:={card}", "--max-depth", str(max_depth), "--no-bag")
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    return {"abs_rel": metrics["metric"]["abs_rel"], "delta1": metrics["metric"]["delta1"],
            "aligned_abs_rel": metrics["affine"]["abs_rel"], "aligned_delta1": metrics["affine"]["delta1"]}


def node_rate(card: Path, work: Path) -> float:
    out = work / f"bench_{card.parent.name}_{card.stem}"
    shutil.rmtree(out, ignore_errors=True)
    cli("bench", "--model", str(card), "--rate", "60", "--duration", "20", "--out", str(out))
    return float(json.loads((out / "bench.json").read_text())["output_hz"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("card", type=Path, nargs="?", default=REPO / "models" / "default.yaml", help="model card (default: models/default.yaml)")
    parser.add_argument("--baseline", type=Path, default=REPO / "models" / "fastdepth.yaml", help="card to beat (default: fastdepth)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/depth_node_accuracy"), help="where the sets are built and results go")
    parser.add_argument("--json", type=Path, help="write the table and the verdict here")
    parser.add_argument("--no-bench", action="store_true", help="accuracy only (no node speed)")
    args = parser.parse_args()
    card, baseline = args.card.resolve(), args.baseline.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    sets = ensure_sets(args.work)
    rows, checks = {}, []
    print(f"{'set':<24}{'model':<18}{'AbsRel':>8}{'δ1':>8}{'aligned AbsRel':>16}{'aligned δ1':>12}   (as published, ≤ {MAX_DEPTH_M:g} m)")
    for name, bag in sets.items():
        rows[name] = {"card": score(card, bag, args.work), "baseline": score(baseline, bag, args.work)}
        for who, path in (("card", card), ("baseline", baseline)):
            m = rows[name][who]
            print(f"{name:<24}{path.stem[:17]:<18}{m['abs_rel']:>8.4f}{m['delta1']:>8.4f}{m['aligned_abs_rel']:>16.4f}{m['aligned_delta1']:>12.4f}")
        if name in GATE_SETS:
            ours, theirs = rows[name]["card"], rows[name]["baseline"]
            checks.append((f"{name}: AbsRel {ours['abs_rel']:.4f} ≤ {theirs['abs_rel']:.4f}", ours["abs_rel"] <= theirs["abs_rel"]))
            checks.append((f"{name}: δ1 {ours['delta1']:.4f} ≥ {theirs['delta1']:.4f}", ours["delta1"] >= theirs["delta1"]))
    if not args.no_bench:
        rate = node_rate(card, args.work)
        rows["node frames/s"] = rate
        checks.append((f"node: {rate:.1f} frames/s ≥ {MIN_FRAMES_PER_S:g} (640×480 at 60 Hz)", rate >= MIN_FRAMES_PER_S))
    for text, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {text}")
    passed = all(ok for _, ok in checks)
    if args.json:
        args.json.write_text(json.dumps({"card": str(card), "baseline": str(baseline), "sets": rows,
                                         "checks": [{"check": t, "ok": ok} for t, ok in checks], "passed": passed}, indent=2) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
