"""Fine-tuning data: real RGB-D frames with metric depth, held in memory at the network's input size.

Frames come from a folder in the ``../shared/data/train`` layout: ``index.csv`` with one row per frame (``split``
``rgbd`` rows have a depth PNG; metres = value / ``depth_units_per_m``, 0 = no measurement). Each frame is resized
whole to the network's input as its card's input rules say (area for RGB, nearest for depth, which is never
interpolated across edges) — the same geometry the node feeds it. ``../shared/data/rgbd_dev`` is never read here:
it exists to measure.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from depth_node.eval.datasets import read_depth_png, read_rgb

# held out from training, for monitoring: "real" is the training rooms' environment (TUM fr1) seen from other
# sequences; "real_new_scene" (TUM fr3 cabinet) is an environment the network is not fine-tuned on, which is what
# warns of a network that learns the training rooms and forgets the rest
VALIDATION_SOURCES = {"real": ("tum_fr1_desk_snippet", "tum_fr1_misc_lucassheng"),
                      "real_new_scene": ("tum_fr3_cabinet_keyframes",)}
HELD_OUT = frozenset(source for sources in VALIDATION_SOURCES.values() for source in sources)


@dataclass
class Samples:
    rgb: np.ndarray     # uint8 (N, H, W, 3)
    depth: np.ndarray   # float32 (N, H, W) metres, NaN = no label
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


def train_index(train_dir: Path) -> list[dict[str, str]]:
    index = Path(train_dir) / "index.csv"
    if not index.is_file():
        raise FileNotFoundError(f"no training index at {index} (expected the layout of ../shared/data/train: index.csv)")
    with index.open() as handle:
        return list(csv.DictReader(handle))


def real_rgbd(train_dir: Path, rules: Any, validation: str = "", limit: int = 0) -> Samples:
    """The ``rgbd`` split at the input size ``rules`` (a card's :class:`InputRules`) gives the first frame: the
    training sources, or with ``validation`` (a key of ``VALIDATION_SOURCES``) that held-out set."""
    rows = [r for r in train_index(train_dir) if r["split"] == "rgbd"
            and (r["source"] in VALIDATION_SOURCES[validation] if validation else r["source"] not in HELD_OUT)]
    rows = rows[:limit] if limit else rows
    rgb, depth, size = [], [], None
    for row in rows:
        image = read_rgb(Path(train_dir) / row["rgb"])
        size = size or rules.target_size(*image.shape[:2])[::-1]  # (width, height) for cv2
        rgb.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        metres = read_depth_png(Path(train_dir) / row["depth"], float(row["depth_units_per_m"]))
        depth.append(cv2.resize(metres, size, interpolation=cv2.INTER_NEAREST))
    if not rows:
        return Samples(np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0, 1, 1), np.float32), [])
    return Samples(np.stack(rgb), np.stack(depth).astype(np.float32), [f"{r['source']}/{r['frame_id']}" for r in rows])


def augment(rgb: np.ndarray, depth: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A batch (B, H, W, 3) uint8 + (B, H, W) metres → augmented copies: horizontal flip (p 0.5); a zoom-in crop
    (p 0.5, 60–100 % of the frame, resized back) — it magnifies like a longer lens, so the labels are multiplied by the
    crop fraction (depth at the network's focal length, keeping metres consistent with apparent size); brightness and
    contrast (p 0.5, ×0.7–1.3 each)."""
    rgb, depth = rgb.copy(), depth.copy()
    batch, height, width = depth.shape
    for i in range(batch):
        if rng.random() < 0.5:
            rgb[i], depth[i] = rgb[i, :, ::-1], depth[i, :, ::-1]
        if rng.random() < 0.5:
            fraction = rng.uniform(0.6, 1.0)
            ch, cw = int(round(height * fraction)), int(round(width * fraction))
            y0, x0 = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
            rgb[i] = cv2.resize(rgb[i, y0:y0 + ch, x0:x0 + cw], (width, height), interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(depth[i, y0:y0 + ch, x0:x0 + cw], (width, height), interpolation=cv2.INTER_NEAREST)
            depth[i] = label * np.float32(fraction)
        if rng.random() < 0.5:
            image = rgb[i].astype(np.float32)
            mean = image.mean()
            image = (image - mean) * rng.uniform(0.7, 1.3) + mean * rng.uniform(0.7, 1.3)
            rgb[i] = np.clip(image, 0, 255).astype(np.uint8)
    return rgb, depth
