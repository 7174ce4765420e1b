"""Site adaptation (``depth-node adapt``): fine-tune a card's network on a recording of the robot's own site.

Data: each bag is read as ``depth-node eval`` reads it (:mod:`depth_node.eval.bag_input`: the camera image, its
camera_info and the ground truth — a depth image, or a LiDAR's PointCloud2 — found by type or named; ROS 2 mcap /
sqlite3 and ROS 1 bags); the image is resized to the network's input as the card says (area), the ground truth put on
that grid (:mod:`depth_node.eval.cloud_truth`: a depth image through its own camera_info by nearest neighbour, or the
image's field of view when it has the image's shape; a cloud projected there) — what the node will feed the network.
Frames whose ground truth covers less than :data:`MIN_VALID_FRACTION` of the image are not labelled frames.

Split by time: the last ``holdout`` (default 20 %) of each bag's labelled frames, by stamp, is held out — never
trained on, scored before and after; ``holdout_bags`` holds out whole bags instead. A random split would score
frames a fraction of a second from training frames: near copies.

Training: :func:`depth_node.train.trainer.train` (SILog + gradient loss, AdamW, warm-up then cosine decay) on the
rest, every layer (chosen on two selection sites, docs/adaptation.md); ``decoder_only`` keeps the encoder as it was,
which loses less elsewhere and gains less on the site. Frames without ground truth are not used: teacher pseudo-labels
for them were measured and lost to the labelled frames alone. Output in ``out``: the weights, ``model.onnx`` (checked
against torch), ``card.yaml`` whose ``training:`` says the base card, the bags (paths and SHA-256 of their files), the
split and the command, with AbsRel and δ1 on the held-out frames as published (the network's metres) and scale+shift
aligned, for the base and the adapted network; ``train_log.csv`` and ``loss.png``.
"""

from __future__ import annotations

import hashlib
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import yaml

from depth_node.core.parameters import PipelineConfig
from depth_node.errors import DepthNodeError, InputError
from depth_node.estimators.card import load_card
from depth_node.eval.bag_input import BagFrames, choose_topics, frame_image, open_reader
from depth_node.eval.cloud_truth import CloudTruth, frame_truth
from depth_node.paths import resolve_card
from depth_node.progress import ProgressBar
from depth_node.ros import convert
from depth_node.train.data import Samples
from depth_node.train.network import card_reference, tflite_card_of
from depth_node.train.trainer import TrainConfig, TrainResult, train

MIN_LABELLED = 20  # labelled frames over all bags: at 20 % held out, fewer leave < 4 frames to tell a gain from noise
MIN_VALID_FRACTION = 0.01  # of the image's pixels with ground truth, for a frame to count as labelled
SITE = "site"  # the held-out set's name in the training log and the card


class AdaptError(DepthNodeError):
    """Adaptation refused: what is wrong with the bags or the card, and what to do instead (one line)."""


@dataclass
class AdaptConfig:
    bags: list[Path]
    out: Path
    card: str = "default"
    holdout: float = 0.2              # the last fraction of each bag's labelled frames, by stamp
    holdout_bags: list[Path] = field(default_factory=list)  # instead: these whole bags held out
    decoder_only: bool = False       # keep the encoder (default: every layer is trained)
    steps: int = 300
    batch: int = 8
    lr: float = 3e-4
    seed: int = 0
    threads: int = 0
    log_every: int = 50
    topics: dict[str, str] = field(default_factory=dict)  # image / camera_info / depth / depth_info / cloud, as eval's flags
    slop_s: float = 0.02
    cloud_slop_s: float = 0.05
    extrinsic: str = ""        # a ground-truth cloud's frame in the camera's optical frame (default: the bag's TF)
    motion_frame: str = ""
    command: str = ""

    def check(self) -> None:
        if not self.bags:
            raise AdaptError("no bag given: depth-node adapt BAG [BAG …] -o OUT")
        if not self.holdout_bags and not 0.0 < self.holdout < 1.0:
            raise AdaptError(f"--holdout must be a fraction between 0 and 1, got {self.holdout}")
        unknown = [str(b) for b in self.holdout_bags if Path(b) not in [Path(x) for x in self.bags]]
        if unknown:
            raise AdaptError(f"--holdout-bag {', '.join(unknown)} is not among the bags given")
        if self.holdout_bags and len(self.holdout_bags) >= len(self.bags):
            raise AdaptError("every bag is held out: leave at least one to train on")


@dataclass
class SiteFrames:
    samples: Samples
    stamps_ns: np.ndarray  # int64, one per sample
    skipped: int = 0       # images without ground truth matched in time, or too little of it


def fine_tunable(card: str) -> Path:
    """The base card's path, or AdaptError when its network cannot be fine-tuned here (saying which card can)."""
    path = resolve_card(card)
    try:
        tflite_card_of(path)
    except ValueError:
        name = load_card(path).name
        raise AdaptError(f"{name} cannot be fine-tuned by depth-node adapt (its network is not one the package can "
                         "train: a TFLite card, the default, or a card from depth-node train/adapt): use --card default "
                         "(or --card fastdepth)") from None
    return path


def read_site(bag: Path, rules: Any, topics: dict[str, str] | None = None, slop_s: float = 0.02,
              progress: Callable[[int, int], None] | None = None, cloud_slop_s: float = 0.05, extrinsic: str = "",
              motion_frame: str = "") -> SiteFrames:
    """The labelled frames of one bag at the network's input size (see the module docstring)."""
    reader = open_reader(bag)
    try:
        chosen = choose_topics(reader, **(topics or {}))
    finally:
        reader.close()
    if chosen.depth is None and chosen.cloud is None:
        raise AdaptError(f"{bag}: no ground-truth depth topic (an RGB-D camera's registered depth as 16UC1 mm or 32FC1 m, "
                         "or a LiDAR's PointCloud2): name it with --gt-topic or --gt-cloud-topic, or record one")
    frames = BagFrames(bag, chosen, slop_s, cloud_slop_s=cloud_slop_s)
    clouds = CloudTruth.for_bag(bag, extrinsic, motion_frame) if chosen.cloud else None
    geometry, defaults = convert.InputGeometry(), PipelineConfig()  # the node's defaults: raw camera, its fallback FOV
    rgb_out, depth_out, stamps, names, skipped, size = [], [], [], [], 0, None
    for n, frame in enumerate(frames):
        if progress:
            progress(n + 1, len(frames))
        if frame.depth is None and frame.cloud is None:
            skipped += 1
            continue
        image, camera = frame_image(frame, chosen.image_type, geometry, defaults.camera_model, defaults.fallback_hfov_deg)
        size = size or rules.target_size(*image.shape[:2])[::-1]  # (width, height) for cv2
        try:  # straight onto the network's grid: a depth image by nearest neighbour, a cloud projected there
            truth = frame_truth(frame, camera, camera.resized(*size), clouds)
        except InputError as error:
            raise AdaptError(f"{bag}: the ground truth is not registered to the image: {error}") from None
        if np.isfinite(truth).mean() < MIN_VALID_FRACTION:
            skipped += 1
            continue
        rgb_out.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        depth_out.append(truth)
        stamps.append(frame.stamp_ns)
        names.append(f"{Path(bag).name}/{frame.index}")
    if not names:
        samples = Samples(np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0, 1, 1), np.float32), [])
    else:
        samples = Samples(np.stack(rgb_out), np.stack(depth_out).astype(np.float32), names)
    return SiteFrames(samples, np.asarray(stamps, np.int64), skipped)


def split_by_time(site: SiteFrames, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training frames and of the held-out ones: the last ``holdout`` of the frames by stamp
    (at least one each way when there are two or more frames)."""
    order = np.argsort(site.stamps_ns, kind="stable")
    held = min(len(order) - 1, max(1, math.ceil(len(order) * holdout))) if len(order) > 1 else 0
    return order[:len(order) - held], order[len(order) - held:]


def _subset(samples: Samples, picks: np.ndarray) -> Samples:
    return Samples(samples.rgb[picks], samples.depth[picks], [samples.names[i] for i in picks])


def _joined(parts: list[Samples]) -> Samples:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Samples(np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0, 1, 1), np.float32), [])
    return Samples(np.concatenate([p.rgb for p in parts]), np.concatenate([p.depth for p in parts]),
                   [n for p in parts for n in p.names])


def content_hash(bag: Path) -> str:
    """SHA-256 over a bag's files (a ROS 2 bag folder's, sorted by name; or the one file), with their names."""
    bag = Path(bag)
    files = sorted(p for p in bag.rglob("*") if p.is_file()) if bag.is_dir() else [bag]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(bag if bag.is_dir() else bag.parent).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class AdaptResult:
    out: Path
    train_frames: int
    held_out_frames: int
    before: dict[str, float]
    after: dict[str, float]


def adapt(cfg: AdaptConfig, say: Callable[[str], None] = print) -> AdaptResult:
    """Read the bags, split them, fine-tune ``cfg.card``'s network, write the adapted card into ``cfg.out``."""
    cfg.check()
    base = fine_tunable(cfg.card)  # before reading anything
    rules = load_card(base).input
    held_bags = {Path(b) for b in cfg.holdout_bags}
    train_parts, held_parts, bags = [], [], []
    for bag in cfg.bags:
        site = read_site(Path(bag), rules, cfg.topics, cfg.slop_s, ProgressBar(f"reading {Path(bag).name}"), cfg.cloud_slop_s,
                         cfg.extrinsic, cfg.motion_frame)
        if Path(bag) in held_bags:
            train_picks, held_picks = np.zeros(0, int), np.arange(len(site.samples))
        else:
            train_picks, held_picks = split_by_time(site, cfg.holdout)
        train_parts.append(_subset(site.samples, train_picks))
        held_parts.append(_subset(site.samples, held_picks))
        bags.append({"path": str(Path(bag).resolve()), "sha256": content_hash(Path(bag)), "labelled_frames": len(site.samples),
                     "skipped_frames": site.skipped, "train_frames": len(train_picks), "held_out_frames": len(held_picks)})
        say(f"{bag}: {len(site.samples)} labelled frames ({site.skipped} skipped), {len(train_picks)} to train, "
            f"{len(held_picks)} held out")
    labelled = sum(b["labelled_frames"] for b in bags)
    if labelled < MIN_LABELLED:
        raise AdaptError(f"{labelled} labelled frames in all bags, at least {MIN_LABELLED} are needed (frames with ground "
                         "truth matched in time over ≥ 1 % of the image): record longer, or check the depth topic")
    frames, held = _joined(train_parts), _joined(held_parts)
    if not len(frames) or not len(held):
        raise AdaptError(f"{len(frames)} frames to train on and {len(held)} held out: both are needed")
    if frames.rgb.shape[1:] != held.rgb.shape[1:]:
        raise AdaptError("the bags' cameras give the network different input sizes: adapt on bags of one camera")
    train_cfg = TrainConfig(out=cfg.out, train_dir=Path(cfg.bags[0]), init=str(base), freeze_encoder=cfg.decoder_only,
                            steps=cfg.steps, batch=cfg.batch, lr=cfg.lr, seed=cfg.seed, threads=cfg.threads,
                            log_every=cfg.log_every)
    result = train(train_cfg, say=say, data=(frames, {SITE: held}))
    before = {k[len(SITE) + 1:]: v for k, v in result.initial.items()}
    after = {k[len(SITE) + 1:]: v for k, v in (result.log[-1] if result.log else {}).items() if k.startswith(SITE + "_")}
    _write_card(cfg, base, bags, before, after, result)
    return AdaptResult(Path(cfg.out), len(frames), len(held), before, after)


def _write_card(cfg: AdaptConfig, base: Path, bags: list[dict[str, Any]], before: dict[str, float], after: dict[str, float],
                result: TrainResult) -> None:
    """The card train wrote, with adapt's description and ``training:`` (provenance, split, before/after)."""
    path = Path(cfg.out) / "card.yaml"
    card = yaml.safe_load(path.read_text())
    base_card = load_card(base)
    card["description"] = (f"{base_card.name} adapted to a site by `depth-node adapt` on {len(bags)} bag(s) with ground-truth "
                           f"depth ({'decoder only' if cfg.decoder_only else 'every layer'}, {cfg.steps} steps). "
                           "Metric depth; scores on the held-out frames in training.")
    card["license"] = f"{base_card.license}; adaptation data: the bags in training.bags"
    card["training"] = {
        "command": cfg.command or "depth-node adapt (called from Python)",
        "base_card": card_reference(base, Path(cfg.out)),  # a models/ name, or a path relative to the card
        "bags": bags,
        "split": ({"held_out_bags": [str(Path(b).resolve()) for b in cfg.holdout_bags]} if cfg.holdout_bags else
                  {"by_time": f"the last {cfg.holdout:.0%} of each bag's labelled frames, by stamp"}),
        "recipe": {"decoder_only": cfg.decoder_only, "steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr, "seed": cfg.seed},
        "seconds": round(result.seconds, 1),
        "held_out": {"base": {k: round(v, 4) for k, v in before.items()}, "adapted": {k: round(v, 4) for k, v in after.items()},
                     "meaning": "AbsRel and δ1 of the network's metres (as published) and after a per-frame scale and "
                                "shift (aligned), on the held-out frames at the network's input size"},
    }
    path.write_text(yaml.safe_dump(card, sort_keys=False, width=110, allow_unicode=True))


def command_line() -> str:
    return "depth-node " + " ".join(shlex.quote(a) for a in sys.argv[1:])
