"""Folder RGB-D datasets read as frames (RGB + metric depth + intrinsics), to be written as bags.

Layouts (``detect_layout`` tells them apart):

``rgbd_dev``  ``index.json``: a list of records ``{id, rgb, depth, width, height, fx, fy, cx, cy, ...}``; depth PNG
              uint16, metres = value / 256, 0 = invalid (``../shared/data/rgbd_dev``, ``depth-node synth``).
              Optional per record: ``stamp_ns``, ``synthetic``, ``scene``.
``tum``       TUM RGB-D: ``rgb.txt`` and ``depth.txt`` (``timestamp path`` lines, ``#`` comments); depth PNG uint16,
              metres = value / 5000; each RGB frame takes the depth nearest in time within 0.02 s. Intrinsics: the
              published calibration of freiburg1/2/3 when the folder name says which, else ``--intrinsics``.
``kitti``     KITTI depth completion, ``val_selection_cropped`` layout: ``image/``, ``groundtruth_depth/``,
              ``intrinsics/`` (one ``.txt`` of the 9 numbers of K per image); depth PNG uint16, metres = value / 256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.eval.bag_output import BagWriter, rgbd_messages, write_rgbd
from depth_node.progress import ProgressBar

LAYOUTS = ("rgbd_dev", "tum", "kitti")
TUM_INTRINSICS = {  # fx, fy, cx, cy of the RGB cameras (vision.in.tum.de/data/datasets/rgbd-dataset/file_formats)
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}
TUM_DEPTH_SCALE = 5000.0
TUM_MAX_DT_S = 0.02
DEFAULT_RATE_HZ = 10.0
START_NS = 1_700_000_000_000_000_000


@dataclass
class DatasetFrame:
    name: str
    stamp_ns: int
    rgb: np.ndarray          # uint8 (H, W, 3)
    depth_m: np.ndarray      # float32 (H, W), NaN = no measurement
    camera: PinholeCamera


class DatasetError(ValueError):
    """A folder that is not one of the layouts, or a frame that cannot be read."""


def detect_layout(folder: Path) -> str:
    folder = Path(folder)
    if (folder / "index.json").is_file():
        return "rgbd_dev"
    if (folder / "rgb.txt").is_file() and (folder / "depth.txt").is_file():
        return "tum"
    if all((folder / sub).is_dir() for sub in ("image", "groundtruth_depth", "intrinsics")):
        return "kitti"
    raise DatasetError(f"{folder} is none of the layouts {', '.join(LAYOUTS)}: expected index.json (rgbd_dev), "
                       "rgb.txt + depth.txt (TUM RGB-D) or image/ groundtruth_depth/ intrinsics/ (KITTI depth completion)")


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)  # the sensor's pixels, as in a bag
    if bgr is None:
        raise DatasetError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_depth_png(path: Path, units_per_m: float) -> np.ndarray:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
        raise DatasetError(f"{path} is not a single-channel 16-bit depth PNG")
    depth = raw.astype(np.float32) / np.float32(units_per_m)
    depth[raw == 0] = np.nan
    return depth


def rgbd_dev_records(folder: Path, include_synthetic: bool = True, scene: str | None = None) -> list[dict]:
    """The index records kept by the filters."""
    return [r for r in json.loads((folder / "index.json").read_text())
            if (include_synthetic or not r.get("synthetic")) and (not scene or str(r.get("scene", "")).startswith(scene))]


def rgbd_dev_frames(folder: Path, rate_hz: float = DEFAULT_RATE_HZ, include_synthetic: bool = True,
                    scene: str | None = None) -> Iterator[DatasetFrame]:
    for n, record in enumerate(rgbd_dev_records(folder, include_synthetic, scene)):
        rgb = read_rgb(folder / record["rgb"])
        depth = read_depth_png(folder / record["depth"], 256.0)
        if rgb.shape[:2] != depth.shape:
            raise DatasetError(f"{record['id']}: RGB {rgb.shape[1]}x{rgb.shape[0]} and depth {depth.shape[1]}x{depth.shape[0]} differ")
        camera = PinholeCamera(rgb.shape[1], rgb.shape[0], float(record["fx"]), float(record["fy"]), float(record["cx"]), float(record["cy"]))
        stamp = int(record.get("stamp_ns") or START_NS + round(n * 1e9 / rate_hz))
        yield DatasetFrame(str(record["id"]), stamp, rgb, depth, camera)


def _tum_list(path: Path) -> list[tuple[float, str]]:
    entries = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            stamp, name = line.split()[:2]
            entries.append((float(stamp), name))
    return entries


def tum_pairs(folder: Path) -> list[tuple[float, str, str]]:
    """(time, rgb file, depth file): each RGB entry with the depth entry nearest in time within 0.02 s."""
    depths = _tum_list(folder / "depth.txt")
    depth_stamps = np.array([s for s, _ in depths])
    pairs = []
    for stamp, name in _tum_list(folder / "rgb.txt") if depth_stamps.size else []:
        j = int(np.argmin(np.abs(depth_stamps - stamp)))
        if abs(depth_stamps[j] - stamp) <= TUM_MAX_DT_S:
            pairs.append((stamp, name, depths[j][1]))
    return pairs


def tum_frames(folder: Path, intrinsics: tuple[float, float, float, float] | None = None) -> Iterator[DatasetFrame]:
    if intrinsics is None:
        found = [k for k in TUM_INTRINSICS if k in folder.resolve().name]
        if not found:
            raise DatasetError(f"{folder.name}: say which TUM camera with --intrinsics FX,FY,CX,CY "
                               f"(the folder name names none of {', '.join(TUM_INTRINSICS)})")
        intrinsics = TUM_INTRINSICS[found[0]]
    for stamp, name, depth_name in tum_pairs(folder):
        rgb = read_rgb(folder / name)
        depth = read_depth_png(folder / depth_name, TUM_DEPTH_SCALE)
        yield DatasetFrame(Path(name).stem, int(round(stamp * 1e9)), rgb, depth, PinholeCamera(rgb.shape[1], rgb.shape[0], *intrinsics))


def kitti_frames(folder: Path, rate_hz: float = DEFAULT_RATE_HZ) -> Iterator[DatasetFrame]:
    images = sorted((folder / "image").glob("*.png"))
    for n, image in enumerate(images):
        gt = folder / "groundtruth_depth" / image.name.replace("_image_", "_groundtruth_depth_", 1)
        k_file = folder / "intrinsics" / f"{image.stem}.txt"
        if not gt.is_file() or not k_file.is_file():
            raise DatasetError(f"{image.name}: expected {gt.relative_to(folder)} and {k_file.relative_to(folder)}")
        k = np.array(k_file.read_text().split(), float)
        if k.size != 9:
            raise DatasetError(f"{k_file} must hold the 9 numbers of K, has {k.size}")
        rgb = read_rgb(image)
        depth = read_depth_png(gt, 256.0)
        yield DatasetFrame(image.stem, START_NS + round(n * 1e9 / rate_hz), rgb, depth,
                           PinholeCamera(rgb.shape[1], rgb.shape[0], k[0], k[4], k[2], k[5]))


def count_frames(folder: Path, layout: str, include_synthetic: bool = True, scene: str | None = None) -> int:
    """How many frames the layout's ``*_frames`` will yield (for a progress bar)."""
    if layout == "rgbd_dev":
        return len(rgbd_dev_records(folder, include_synthetic, scene))
    if layout == "tum":
        return len(tum_pairs(folder))
    return len(list((folder / "image").glob("*.png")))


def dataset_to_bag(dataset: Path, out: Path, layout: str | None = None, storage: str = "mcap",
                   intrinsics: tuple[float, float, float, float] | None = None, rate_hz: float = DEFAULT_RATE_HZ,
                   include_synthetic: bool = True, scene: str | None = None) -> tuple[int, str]:
    """Write a folder dataset as an RGB-D bag (the topics of ``eval.bag_output.rgbd_messages``) with a progress bar;
    returns (frames written, the layout read). ``layout`` None: detected from the files."""
    if not dataset.is_dir():
        raise FileNotFoundError(f"no dataset folder at {dataset}")
    if rate_hz <= 0:
        raise ValueError("--rate must be positive")
    layout = layout or detect_layout(dataset)
    frames = {
        "rgbd_dev": lambda: rgbd_dev_frames(dataset, rate_hz, include_synthetic, scene),
        "tum": lambda: tum_frames(dataset, intrinsics),
        "kitti": lambda: kitti_frames(dataset, rate_hz),
    }[layout]()
    total = count_frames(dataset, layout, include_synthetic, scene)
    progress = ProgressBar(f"{layout} → bag")
    written = 0
    with BagWriter(out, storage) as writer:
        for frame in frames:
            write_rgbd(writer, frame.stamp_ns, rgbd_messages(writer.typestore, frame.stamp_ns, frame.rgb, frame.depth_m, frame.camera))
            written += 1
            progress(written, total)
    return written, layout
