"""Training data for the embedded default model, all held in memory at the training resolution.

Three sources, each sample tagged with how its label may be trusted:

``metric``   real RGB-D frames of ``../shared/data/train`` (split ``rgbd``: TUM RGB-D, Kinect depth, holes = 0) and
             synthetic scenes from ``depth_node.tools.synth`` (exact depth; sky = no label): metres are right.
``relative`` real unlabelled frames (split ``unlabeled``) labelled by the teacher (FastDepth, metric but NYU-only):
             the structure is useful, its scale is not trusted (scale-invariant loss).

``../shared/data/rgbd_dev`` is never read here: it exists to measure. Images are centre-cropped to the training
aspect ratio, then resized (area); depth is resized nearest-neighbour (never interpolated across edges).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from depth_node.eval.datasets import read_depth_png, read_rgb

METRIC, RELATIVE = 0, 1
# held out from training, for monitoring: "real" is the training rooms' environment (TUM fr1) seen from other
# sequences; "real_new_scene" (TUM fr3 cabinet) is an environment the student never sees, which is what warns of
# a student that learns the training rooms and forgets the rest
VALIDATION_SOURCES = {"real": ("tum_fr1_desk_snippet", "tum_fr1_misc_lucassheng"),
                      "real_new_scene": ("tum_fr3_cabinet_keyframes",)}
HELD_OUT = frozenset(source for sources in VALIDATION_SOURCES.values() for source in sources)


@dataclass
class Samples:
    rgb: np.ndarray     # uint8 (N, H, W, 3)
    depth: np.ndarray   # float32 (N, H, W) metres, NaN = no label
    kind: np.ndarray    # int8 (N,) METRIC | RELATIVE
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @staticmethod
    def empty(width: int, height: int) -> Samples:
        return Samples(np.zeros((0, height, width, 3), np.uint8), np.zeros((0, height, width), np.float32), np.zeros(0, np.int8), [])

    @staticmethod
    def concat(parts: list[Samples]) -> Samples:
        parts = [p for p in parts if len(p)]
        return Samples(np.concatenate([p.rgb for p in parts]), np.concatenate([p.depth for p in parts]),
                       np.concatenate([p.kind for p in parts]), [n for p in parts for n in p.names])


def crop_to_aspect(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The largest centred window of ``image`` with the aspect ratio width:height."""
    h, w = image.shape[:2]
    if w * height > h * width:   # too wide
        new_w = int(round(h * width / height))
        x0 = (w - new_w) // 2
        return image[:, x0:x0 + new_w]
    new_h = int(round(w * height / width))
    y0 = (h - new_h) // 2
    return image[y0:y0 + new_h]


def fit_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(crop_to_aspect(rgb, width, height), (width, height), interpolation=cv2.INTER_AREA)


def fit_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(crop_to_aspect(depth, width, height), (width, height), interpolation=cv2.INTER_NEAREST)


def train_index(train_dir: Path) -> list[dict[str, str]]:
    index = Path(train_dir) / "index.csv"
    if not index.is_file():
        raise FileNotFoundError(f"no training index at {index} (expected ../shared/data/train/index.csv)")
    with index.open() as handle:
        return list(csv.DictReader(handle))


def real_rgbd(train_dir: Path, width: int, height: int, validation: str = "", limit: int = 0) -> Samples:
    """The ``rgbd`` split (metric labels): the training sources, or with ``validation`` (a key of
    ``VALIDATION_SOURCES``) that held-out set."""
    rows = [r for r in train_index(train_dir) if r["split"] == "rgbd"
            and (r["source"] in VALIDATION_SOURCES[validation] if validation else r["source"] not in HELD_OUT)]
    rows = rows[:limit] if limit else rows
    rgb, depth = [], []
    for row in rows:
        rgb.append(fit_rgb(read_rgb(Path(train_dir) / row["rgb"]), width, height))
        depth.append(fit_depth(read_depth_png(Path(train_dir) / row["depth"], float(row["depth_units_per_m"])), width, height))
    return _stack(rgb, depth, METRIC, [f"{r['source']}/{r['frame_id']}" for r in rows], width, height)


def unlabeled(train_dir: Path, width: int, height: int, teacher: Callable[[np.ndarray], np.ndarray], limit: int = 0) -> Samples:
    """The ``unlabeled`` split, each frame labelled by ``teacher`` (uint8 RGB → metres on its own grid)."""
    rows = [r for r in train_index(train_dir) if r["split"] == "unlabeled"]
    rows = rows[:limit] if limit else rows
    rgb, depth = [], []
    for row in rows:
        image = crop_to_aspect(read_rgb(Path(train_dir) / row["rgb"]), width, height)
        label = teacher(np.ascontiguousarray(image))
        rgb.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
        depth.append(cv2.resize(label.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR))
    return _stack(rgb, depth, RELATIVE, [f"{r['source']}/{r['frame_id']}" for r in rows], width, height)


def synthetic(count: int, width: int, height: int, seed: int, progress: Callable[[int, int], None] | None = None) -> Samples:
    """``count`` frames from varied procedural scenes (2 per scene): rooms and corridors mostly, some streets;
    camera height 0.2–1.6 m, pitch −5…15°, focal length ±8 % around the TUM Kinect's (hfov ≈ 63°)."""
    from depth_node.tools.synth.writer import SynthSpec, generate

    rng = np.random.default_rng(seed)
    rgb, depth, names = [], [], []
    while len(names) < count:
        kind = rng.choice(["room", "corridor", "street"], p=[0.5, 0.3, 0.2])
        fx = 517.3 * width / 640 * rng.uniform(0.92, 1.08)
        spec = SynthSpec(scenes=(str(kind),), frames=2, width=width, height=height, camera_height_m=float(rng.uniform(0.2, 1.6)),
                         pitch_deg=float(rng.uniform(-5, 15)), seed=int(rng.integers(1 << 30)),
                         intrinsics=(fx, fx, (width - 1) / 2, (height - 1) / 2))
        for frame in generate(spec):
            if len(names) >= count:
                break
            rgb.append(frame.rgb)
            depth.append(np.where(np.isfinite(frame.depth_m) & (frame.depth_m < 80.0), frame.depth_m, np.nan).astype(np.float32))
            names.append(f"synth/{kind}/{spec.seed}/{frame.index}")
            if progress:
                progress(len(names), count)
    return _stack(rgb, depth, METRIC, names, width, height)


def _stack(rgb: list, depth: list, kind: int, names: list[str], width: int, height: int) -> Samples:
    if not names:
        return Samples.empty(width, height)
    return Samples(np.stack(rgb), np.stack(depth).astype(np.float32), np.full(len(names), kind, np.int8), names)


# ----------------------------------------------------------------------------------------- augmentation
def relight(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3) → the same scene under other light: a global exposure (×0.4–2, log-uniform) and one or two
    smooth light pools or shadows (Gaussian gain fields, ×0.4–4 log-uniform at their centre), applied to linear intensities
    (gamma 2.2) and clipped like a sensor. Lamps, windows and sunlit walls saturate at any depth in real rooms; a
    student that never sees that learns "bright means far" from skies and lit corridor ends."""
    height, width = rgb.shape[:2]
    ys, xs = np.mgrid[0:height:8, 0:width:8].astype(np.float32)   # the field is smooth: build it coarse, resize
    log_gain = np.full(ys.shape, rng.uniform(np.log(0.4), np.log(2.0)) if rng.random() < 0.5 else 0.0, np.float32)
    for _ in range(int(rng.integers(1, 3))):
        cy, cx, sigma = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.1, 0.4) * width
        log_gain += np.float32(rng.uniform(np.log(0.4), np.log(4.0))) * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma ** 2))
    gain = cv2.resize(np.exp(log_gain), (width, height), interpolation=cv2.INTER_LINEAR)
    linear = (rgb.astype(np.float32) / 255.0) ** 2.2 * gain[..., None]
    return (np.clip(linear, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def augment(rgb: np.ndarray, depth: np.ndarray, kind: np.ndarray, rng: np.random.Generator,
            strong: bool = True, relight_p: float = 0.0, geometric: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A batch (B, H, W, 3) uint8 + (B, H, W) → augmented copies. Every sample: horizontal flip (p 0.5) and, with
    ``strong``, a random zoom-in crop (p 0.5, 60–100 % of the frame, resized back): new views from few images. A crop
    magnifies the image like a longer lens, so metric labels are multiplied by the crop fraction (depth at the
    canonical focal length, as Metric3D's canonical camera), keeping metres consistent with apparent size.
    Strong also (Depth Anything's student recipe, applied to teacher-labelled samples, and to half of the others):
    colour jitter (brightness, contrast, saturation, per-channel gain), Gaussian blur (p 0.3), CutMix with another
    sample of the same kind (p 0.5; the label box moves with the pixels). With ``relight_p`` > 0, that share of every
    kind is also relit (``relight``: exposure, light pools and shadows; labels unchanged). ``geometric`` (same shape as
    ``rgb``), when given, receives the same views without any photometric change — flip, crop and CutMix only — for
    a teacher that should label what the student sees, but clean (Depth Anything's recipe); the random draws are the
    same with or without it."""
    source = rgb
    rgb = rgb.copy()
    depth = depth.copy()
    batch, height, width = depth.shape
    for i in range(batch):
        if rng.random() < 0.5:
            rgb[i] = rgb[i, :, ::-1]
            depth[i] = depth[i, :, ::-1]
        if strong and rng.random() < 0.5:
            fraction = rng.uniform(0.6, 1.0)
            ch, cw = int(round(height * fraction)), int(round(width * fraction))
            y0, x0 = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
            rgb[i] = cv2.resize(rgb[i, y0:y0 + ch, x0:x0 + cw], (width, height), interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(depth[i, y0:y0 + ch, x0:x0 + cw], (width, height), interpolation=cv2.INTER_NEAREST)
            depth[i] = label * np.float32(fraction) if kind[i] == METRIC else label
        if geometric is not None:
            geometric[i] = rgb[i]
        if relight_p and rng.random() < relight_p:
            rgb[i] = relight(rgb[i], rng)
        if not strong or (kind[i] == METRIC and rng.random() < 0.5):
            continue
        image = rgb[i].astype(np.float32)
        image = image * rng.uniform(0.6, 1.4) + rng.uniform(-25, 25)                      # brightness
        mean = image.mean()
        image = (image - mean) * rng.uniform(0.6, 1.4) + mean                              # contrast
        grey = image.mean(axis=2, keepdims=True)
        image = grey + (image - grey) * rng.uniform(0.5, 1.5)                               # saturation
        image *= rng.uniform(0.85, 1.15, size=3)                                            # white balance
        image = np.clip(image, 0, 255).astype(np.uint8)
        if rng.random() < 0.3:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 2.0))
        rgb[i] = image
        partners = np.flatnonzero(kind == kind[i])
        if rng.random() < 0.5 and partners.size > 1:
            j = int(rng.choice(partners[partners != i]))
            bh, bw = int(height * rng.uniform(0.25, 0.6)), int(width * rng.uniform(0.25, 0.6))
            y0, x0 = int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1))
            rgb[i, y0:y0 + bh, x0:x0 + bw] = rgb[j, y0:y0 + bh, x0:x0 + bw]
            depth[i, y0:y0 + bh, x0:x0 + bw] = depth[j, y0:y0 + bh, x0:x0 + bw]
            if geometric is not None:  # the partner's clean pixels: its clean view if done already, else its input
                geometric[i, y0:y0 + bh, x0:x0 + bw] = (geometric[j] if j < i else source[j])[y0:y0 + bh, x0:x0 + bw]
    return rgb, depth
