"""A rotating multi-beam LiDAR beside the synthetic camera: what a Velodyne or Ouster on the robot would record.

Frames (REP 103 / 105): ``camera_link`` (x forward, y left, z up) at the camera's optical centre; the optical frame
``camera_color_optical_frame`` (x right, y down, z forward) rotated from it as every ROS camera driver does; the
LiDAR's ``lidar_link`` (x forward, y left, z up) at ``mount_xyz`` in ``camera_link`` — above and behind the camera,
as on most robots, so it sees over and around what the camera sees (parallax). A bag carries both as ``/tf_static``.

The scan: ``rings`` beams evenly from ``lowest_deg`` to ``highest_deg`` of elevation, fired every ``azimuth_step_deg``
all around, ray-cast against the scene (:func:`depth_node.synth.render.cast`) at the camera frame's pose (one instant:
no motion during the sweep), ``time_offset_s`` after the image (from the pose between two frames'); returns to
``max_range_m``, each range with Gaussian noise of ``range_noise_m``. The scene's frame is ``odom`` (the bag's ``/tf``
gives the camera's pose in it at each image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depth_node.core.transforms import RigidTransform
from depth_node.synth.render import CameraPose, cast
from depth_node.synth.scene import Scene

CAMERA_LINK, OPTICAL_FRAME, LIDAR_FRAME, ODOM_FRAME = "camera_link", "camera_color_optical_frame", "lidar_link", "odom"
# camera_link_from_optical: its columns are the optical axes (right, down, forward) in camera_link (forward, left, up)
LINK_FROM_OPTICAL = RigidTransform(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), np.zeros(3))


@dataclass(frozen=True)
class LidarSpec:
    rings: int = 32
    lowest_deg: float = -25.0
    highest_deg: float = 15.0
    azimuth_step_deg: float = 0.2
    max_range_m: float = 100.0
    range_noise_m: float = 0.02
    mount_xyz: tuple[float, float, float] = (-0.05, 0.0, 0.25)  # lidar_link's origin in camera_link, metres
    mount_yaw_deg: float = 0.0
    time_offset_s: float = 0.0  # the sweep's stamp after its image's (a LiDAR not triggered with the camera)

    def link_from_lidar(self) -> RigidTransform:
        yaw = math.radians(self.mount_yaw_deg)
        rotation = np.array([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        return RigidTransform(rotation, np.asarray(self.mount_xyz, np.float64))

    def optical_from_lidar(self) -> RigidTransform:
        """The extrinsic eval and the node need: LiDAR points → the camera's optical frame."""
        return LINK_FROM_OPTICAL.inverse() @ self.link_from_lidar()

    def beam_directions(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit directions (N, 3) in lidar_link and each beam's ring number (uint16), ring-major."""
        elevation = np.radians(np.linspace(self.lowest_deg, self.highest_deg, self.rings))
        azimuth = np.radians(np.arange(0.0, 360.0, self.azimuth_step_deg))
        el, az = np.meshgrid(elevation, azimuth, indexing="ij")
        directions = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)
        rings = np.repeat(np.arange(self.rings, dtype=np.uint16), azimuth.size)
        return directions, rings


def world_from_optical(pose: CameraPose) -> RigidTransform:
    return RigidTransform(pose.rotation(), np.array([pose.x, pose.y, pose.z]))


def scan(scene: Scene, pose: CameraPose, spec: LidarSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One sweep from the LiDAR on the camera at ``pose``: float32 (N, 3) points in ``lidar_link`` and their rings
    (returns within range only; sky and beyond ``max_range_m`` give none)."""
    world_from_lidar = world_from_optical(pose) @ LINK_FROM_OPTICAL.inverse() @ spec.link_from_lidar()
    directions, rings = spec.beam_directions()
    ranges, _, _ = cast(scene, world_from_lidar.translation, directions @ world_from_lidar.rotation.T)
    hit = ranges <= spec.max_range_m
    measured = ranges[hit] + rng.normal(0.0, spec.range_noise_m, int(hit.sum())) if spec.range_noise_m > 0 else ranges[hit]
    return (directions[hit] * measured[:, None]).astype(np.float32), rings[hit]
