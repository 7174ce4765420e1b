#!/usr/bin/env python3
"""How `depth-node adapt` trains, chosen on two selection sites — never on the sites docs/adaptation.md reports.

Selection sites (each read by adapt's own `read_site` and split by time, the last 20 % held out):
  fr3      TUM fr3 cabinet from ../shared/data/train (58 keyframes: 46 to train, 12 held out), made into a bag
  corridor a rendered corridor (`depth-node synth --scenes corridor --frames 200 --size 320x240 --seed 7`: 160 / 40)

Variants, 300 steps of 8 each (adapt's defaults, seed 0), scored on the held-out frames as published (AbsRel, δ1):
  decoder       the decoder only, every training frame (`adapt --decoder-only`)
  all           every layer, every training frame (`adapt`'s default since this measurement)
  labelled      every layer, the first quarter of the training frames only (a short RGB-D recording)
  pseudo        `labelled`'s network as a teacher labels the other three quarters (camera-only frames); a student
                (every layer, from the base card) trains on both — Depth Anything's recipe (not offered: it lost)
  first N       every layer, the first N training frames only (--sizes: how few frames adapt needs)

Criteria, fixed before the runs: every layer replaces decoder-only as the default if its held-out AbsRel is lower on
both sites; pseudo-labels ship if they beat `labelled` on both.

    .venv/bin/python benchmarks/bench_adapt_choices.py --work /tmp/choices            # every variant, both sites
    .venv/bin/python benchmarks/bench_adapt_choices.py --work /tmp/choices --variants all --sizes 5,10,20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from accuracy_default import cli, tum_folder  # noqa: E402

from depth_node.estimators.card import load_card  # noqa: E402
from depth_node.paths import resolve_card  # noqa: E402
from depth_node.train.data import Samples  # noqa: E402
from depth_node.train.site import SITE, _joined, _subset, read_site, split_by_time  # noqa: E402
from depth_node.train.trainer import TrainConfig, to_tensor, train  # noqa: E402

VARIANTS = ("decoder", "all", "labelled", "pseudo")


def site_bag(work: Path, name: str) -> Path:
    if name == "fr3":
        bag = work / "tum_fr3"
        if not bag.exists():
            folder, intrinsics = tum_folder(work, "tum_fr3_cabinet_keyframes")
            cli("dataset-to-bag", str(folder), str(bag), "--intrinsics", intrinsics)
        return bag
    if not (work / "corridor" / "bag").exists():
        cli("synth", str(work / "corridor"), "--scenes", "corridor", "--frames", "200", "--size", "320x240", "--seed", "7",
            "--no-folder")
    return work / "corridor" / "bag"


def teacher_labels(card: Path, samples: Samples) -> Samples:
    """The teacher network's metres on each frame, as dense labels."""
    import torch

    from depth_node.train.network import load_depth_network

    model, _ = load_depth_network(str(card))
    model.eval()
    with torch.no_grad():
        depth = np.concatenate([model(to_tensor(samples.rgb[i:i + 8]))[:, 0].numpy() for i in range(0, len(samples), 8)])
    return Samples(samples.rgb, depth.astype(np.float32), [f"{n} (pseudo)" for n in samples.names])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the bags and the runs (kept)")
    parser.add_argument("--sites", default="fr3,corridor", help="comma-separated: fr3, corridor (default both)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated of {', '.join(VARIANTS)} (default all four)")
    parser.add_argument("--sizes", default="", help="comma-separated N: also every layer on the first N training frames")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()
    base = resolve_card("default")
    rules = load_card(base).input
    results: dict[str, dict[str, dict[str, float]]] = {}
    print("| site | variant | training frames | AbsRel base | AbsRel adapted | δ1 base | δ1 adapted |")
    print("|---|---|---|---|---|---|---|")
    for site_name in args.sites.split(","):
        site = read_site(site_bag(args.work, site_name), rules)
        train_picks, held_picks = split_by_time(site, 0.2)
        labelled, camera_only = train_picks[:len(train_picks) // 4], train_picks[len(train_picks) // 4:]
        held = {SITE: _subset(site.samples, held_picks)}
        runs = args.work / "runs" / site_name

        def run(name: str, frames: Samples, decoder_only: bool = False) -> None:
            result = train(TrainConfig(out=runs / name, train_dir=runs, init=str(base), freeze_encoder=decoder_only, steps=300,
                                       batch=8, log_every=300), say=lambda _: None, data=(frames, held))
            before, after = result.initial, result.log[-1]
            results.setdefault(site_name, {})[name] = {"frames": len(frames), **{f"base_{k}": v for k, v in before.items()},
                                                        **{f"adapted_{k}": v for k, v in after.items()}}
            print(f"| {site_name} | {name} | {len(frames)} | {before[SITE + '_abs_rel']:.4f} | {after[SITE + '_abs_rel']:.4f} | "
                  f"{before[SITE + '_delta1']:.4f} | {after[SITE + '_delta1']:.4f} |", flush=True)

        variants = args.variants.split(",")
        if "decoder" in variants:
            run("decoder", _subset(site.samples, train_picks), decoder_only=True)
        if "all" in variants:
            run("all", _subset(site.samples, train_picks))
        if "labelled" in variants or "pseudo" in variants:
            run("labelled", _subset(site.samples, labelled))
        if "pseudo" in variants:
            pseudo = teacher_labels(runs / "labelled" / "card.yaml", _subset(site.samples, camera_only))
            run("pseudo", _joined([_subset(site.samples, labelled), pseudo]))
        for size in [int(n) for n in args.sizes.split(",") if n]:
            run(f"first {size}", _subset(site.samples, train_picks[:size]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
