"""Render a sequence and write it as a rosbag2 bag (mcap or sqlite3) and/or a folder dataset.

Bag topics (frame_id ``camera_color_optical_frame``, like the RGB-D bags in ../shared/data/bags):
  /camera/color/image_raw                       sensor_msgs/Image rgb8
  /camera/color/image_raw/compressed            sensor_msgs/CompressedImage jpeg
  /camera/color/camera_info                     sensor_msgs/CameraInfo
  /camera/aligned_depth_to_color/image_raw      sensor_msgs/Image 32FC1, exact metres, NaN = sky
  /camera/aligned_depth_to_color/camera_info    sensor_msgs/CameraInfo
With a LiDAR (``SynthSpec.lidar``, :mod:`depth_node.synth.lidar`), also:
  /lidar/points                                 sensor_msgs/PointCloud2 (x, y, z, intensity, ring), frame lidar_link,
                                                stamped LidarSpec.time_offset_s after its image (default 0)
  /tf_static                                    camera_link → camera_color_optical_frame and → lidar_link (once)
  /tf                                           odom → camera_link at each image's stamp (the camera's pose)

Folder layout = ../shared/data/rgbd_dev's: ``index.json`` (a list of records with id, rgb, depth, width, height,
fx, fy, cx, cy, scene, sensor, synthetic, valid_frac, ...) and ``frames/<id>.png``, ``frames/<id>_depth.png``
(uint16, metres = value / 256, 0 = invalid), plus ``frames/<id>_depth.npy`` (exact float32 metres, NaN = sky).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.eval.bag_output import (LIDAR_TOPIC, RGBD_TOPICS, TF_STATIC_TOPIC, TF_TOPIC, BagWriter, lidar_cloud_message,
                                        rgbd_messages, tf_message, write_rgbd)
from depth_node.synth.lidar import (CAMERA_LINK, LIDAR_FRAME, LINK_FROM_OPTICAL, ODOM_FRAME, OPTICAL_FRAME, LidarSpec, scan,
                                    world_from_optical)
from depth_node.synth.render import CameraPose, render, trajectory
from depth_node.synth.scene import SCENE_KINDS

TOPICS = {key: topic for key, (topic, _) in RGBD_TOPICS.items()}
START_NS = 1_700_000_000_000_000_000


@dataclass(frozen=True)
class SynthSpec:
    """What to render. ``scenes`` are kinds from SCENE_KINDS, cycled; ``frames`` per scene."""

    scenes: tuple[str, ...] = ("room",)
    frames: int = 10
    width: int = 640
    height: int = 480
    hfov_deg: float = 70.0
    camera_height_m: float = 1.0
    pitch_deg: float = 5.0
    rate_hz: float = 10.0
    seed: int = 0
    intrinsics: tuple[float, float, float, float] | None = None  # fx, fy, cx, cy; overrides hfov_deg
    lidar: LidarSpec | None = None  # a LiDAR beside the camera: its cloud and /tf_static in the bag

    def camera(self) -> PinholeCamera:
        if self.intrinsics is not None:
            return PinholeCamera(self.width, self.height, *self.intrinsics)
        return PinholeCamera.from_hfov(self.width, self.height, self.hfov_deg)


@dataclass
class SynthFrame:
    index: int
    scene: str
    stamp_ns: int
    rgb: np.ndarray
    depth_m: np.ndarray  # float32, +inf = sky
    camera: PinholeCamera
    pose: CameraPose
    lidar_points: np.ndarray | None = None  # float32 (N, 3) in lidar_link, with their ring numbers
    lidar_rings: np.ndarray | None = None
    lidar_stamp_ns: int = 0


def generate(spec: SynthSpec) -> Iterator[SynthFrame]:
    """Frames in order; deterministic in ``spec`` (seed included)."""
    camera = spec.camera()
    index = 0
    for scene_number, kind in enumerate(spec.scenes):
        if kind not in SCENE_KINDS:
            raise ValueError(f"unknown scene kind {kind!r}; choose from {', '.join(SCENE_KINDS)}")
        rng = np.random.default_rng([spec.seed, scene_number])
        scene = SCENE_KINDS[kind](rng)
        poses = trajectory(scene, spec.frames, spec.camera_height_m, spec.pitch_deg, rng)
        for number, pose in enumerate(poses):
            rgb, depth = render(scene, camera, pose, seed=spec.seed + scene_number)
            frame = SynthFrame(index, kind, START_NS + int(round(index * 1e9 / spec.rate_hz)), rgb, depth, camera, pose)
            if spec.lidar is not None:
                # the sweep time_offset_s after the image, from where the camera was then (between two frames' poses,
                # as /tf interpolates them); the scene's last frame has none when that is after it
                share = spec.lidar.time_offset_s * spec.rate_hz
                if share == 0 or number + 1 < len(poses):
                    frame.lidar_stamp_ns = frame.stamp_ns + int(round(spec.lidar.time_offset_s * 1e9))
                    frame.lidar_points, frame.lidar_rings = scan(
                        scene, pose.interpolated(poses[number + 1], share) if share else pose, spec.lidar,
                        np.random.default_rng([spec.seed, scene_number, index]))
            yield frame
            index += 1


def write(
    spec: SynthSpec,
    out_dir: Path,
    bag_storage: str | None = "mcap",
    folder: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Render ``spec`` into ``out_dir`` (must not exist or be empty): ``bag/`` and/or ``frames/`` + ``index.json``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty: choose a new output folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    total = len(spec.scenes) * spec.frames
    writer = BagWriter(out_dir / "bag", bag_storage) if bag_storage else None
    if writer is not None:
        written["bag"] = out_dir / "bag"
    records = []
    if folder:
        (out_dir / "frames").mkdir()
    try:
        for frame in generate(spec):
            if writer is not None:
                write_rgbd(writer, frame.stamp_ns, rgbd_messages(writer.typestore, frame.stamp_ns, frame.rgb, frame.depth_m, frame.camera))
                if spec.lidar is not None:
                    write_lidar(writer, frame, spec.lidar)
            if folder:
                records.append(_write_frame_files(out_dir, frame, spec))
            if progress:
                progress(frame.index + 1, total)
    finally:
        if writer is not None:
            writer.close()
    if folder:
        (out_dir / "index.json").write_text(json.dumps(records, indent=1))
        written["folder"] = out_dir
    return written


def write_lidar(writer: BagWriter, frame: SynthFrame, lidar: LidarSpec) -> None:
    """The frame's LiDAR cloud; before the first one the ``/tf_static`` that places the sensors; and the odometry
    (``/tf`` odom → camera_link: the camera's pose in the scene) at the image's stamp."""
    if frame.index == 0:
        writer.write(*TF_STATIC_TOPIC, frame.stamp_ns, tf_message(writer.typestore, frame.stamp_ns, [
            (CAMERA_LINK, OPTICAL_FRAME, LINK_FROM_OPTICAL), (CAMERA_LINK, LIDAR_FRAME, lidar.link_from_lidar())]))
    writer.write(*TF_TOPIC, frame.stamp_ns, tf_message(writer.typestore, frame.stamp_ns, [
        (ODOM_FRAME, CAMERA_LINK, world_from_optical(frame.pose) @ LINK_FROM_OPTICAL.inverse())]))
    if frame.lidar_points is not None:
        writer.write(*LIDAR_TOPIC, frame.lidar_stamp_ns, lidar_cloud_message(
            writer.typestore, frame.lidar_stamp_ns, frame.lidar_points, frame.lidar_rings, LIDAR_FRAME))


def _write_frame_files(out_dir: Path, frame: SynthFrame, spec: SynthSpec) -> dict[str, object]:
    frame_id = f"synth_{frame.scene}_{frame.index:05d}"
    rgb_path, depth_path = f"frames/{frame_id}.png", f"frames/{frame_id}_depth.png"
    cv2.imwrite(str(out_dir / rgb_path), frame.rgb[..., ::-1])
    finite = np.isfinite(frame.depth_m)
    depth256 = np.where(finite, np.clip(np.rint(frame.depth_m * 256), 0, 65535), 0).astype(np.uint16)
    cv2.imwrite(str(out_dir / depth_path), depth256)
    np.save(out_dir / f"frames/{frame_id}_depth.npy", np.where(finite, frame.depth_m, np.nan).astype(np.float32))
    cam = frame.camera
    return {
        "id": frame_id,
        "rgb": rgb_path,
        "depth": depth_path,
        "depth_exact": f"frames/{frame_id}_depth.npy",
        "depth_encoding": "uint16 PNG, meters = value/256, 0 = invalid",
        "width": cam.width,
        "height": cam.height,
        "fx": cam.fx,
        "fy": cam.fy,
        "cx": cam.cx,
        "cy": cam.cy,
        "valid_frac": round(float((depth256 > 0).mean()), 4),
        "scene": "outdoor" if frame.scene == "street" else "indoor",
        "scene_kind": frame.scene,
        "sensor": "SYNTHETIC: depth_node synth ray-caster (exact depth)",
        "synthetic": True,
        "stamp_ns": frame.stamp_ns,
        "pose": asdict(frame.pose),
        "seed": spec.seed,
    }
