"""Ground truth for a frame on the camera's grid: its registered depth image, or its LiDAR cloud projected in.

A cloud (``--gt-cloud-topic``) is carried into the camera's optical frame by the extrinsic — ``--extrinsic`` when
given, else the bag's ``/tf_static`` (and ``/tf``) from the cloud's ``frame_id`` to the image's — then projected with
a z-buffer and the occlusion test of :mod:`depth_node.core.lidar`. The cloud paired with an image is the nearest in
stamp within ``--cloud-slop``; with ``--motion-frame`` (a frame fixed in the world, e.g. ``odom``, that ``/tf``
moves the robot in) the points are carried from where the robot was at the cloud's stamp to where the camera was at
the image's, so the time between them costs no error beyond the odometry's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.lidar import OCCLUSION_MARGIN, OCCLUSION_RADIUS_PX, Projection, project_points
from depth_node.core.transforms import RigidTransform, TransformError, TransformTree
from depth_node.errors import InputError
from depth_node.eval.bag_input import EvalFrame, stamp_of
from depth_node.eval.bag_tf import transforms_in_bag
from depth_node.eval.groundtruth import gt_camera, gt_metres, resample_to
from depth_node.ros.convert import cloud_to_points

MIN_DENSITY = 0.001  # of the image's pixels: below this (median over frames) a cloud's extrinsic is suspect


@dataclass
class CloudTruth:
    """How one bag's clouds become depth on its camera's grid."""

    tree: TransformTree
    extrinsic: RigidTransform | None = None   # camera optical frame ← cloud frame, as given (overrides the tree)
    motion_frame: str = ""                    # a world-fixed frame to carry points across the image ↔ cloud time
    occlusion_radius_px: int = OCCLUSION_RADIUS_PX
    occlusion_margin: float = OCCLUSION_MARGIN

    @classmethod
    def for_bag(cls, bag: Path, extrinsic: str = "", motion_frame: str = "",
                occlusion_radius_px: int = OCCLUSION_RADIUS_PX) -> CloudTruth:
        given = RigidTransform.parse(extrinsic) if extrinsic else None
        return cls(transforms_in_bag(bag), given, motion_frame, occlusion_radius_px)

    def camera_from_cloud(self, cloud: Any, camera_frame: str, image_stamp_ns: int) -> RigidTransform:
        if self.extrinsic is not None:
            return self.extrinsic
        cloud_frame = str(cloud.header.frame_id)
        try:
            if self.motion_frame:
                return self.tree.lookup_across_time(camera_frame, image_stamp_ns, cloud_frame, stamp_of(cloud), self.motion_frame)
            return self.tree.lookup(camera_frame, cloud_frame, stamp_of(cloud))
        except TransformError as error:
            raise InputError(f"no transform from the cloud's frame {cloud_frame!r} to the camera's {camera_frame!r} "
                             f"({error}): give it with --extrinsic x,y,z,qx,qy,qz,qw") from None

    def project(self, frame: EvalFrame, camera: PinholeCamera) -> Projection:
        """The frame's cloud as depth on ``camera``'s grid (the image's, as decoded)."""
        camera_frame = str(frame.image.header.frame_id) or (str(frame.camera_info.header.frame_id) if frame.camera_info else "")
        transform = self.camera_from_cloud(frame.cloud, camera_frame, frame.stamp_ns)
        return project_points(cloud_to_points(frame.cloud, "ground-truth cloud"), camera, transform,
                              self.occlusion_radius_px, self.occlusion_margin)


def frame_truth(frame: EvalFrame, camera: PinholeCamera, target: PinholeCamera,
                clouds: CloudTruth | None) -> np.ndarray | None:
    """The frame's ground truth in metres on ``target``'s grid (NaN = none), from its depth image or its cloud;
    None when it has neither. ``camera``: the decoded image's intrinsics (``target`` is a rescaling of it)."""
    if frame.cloud is not None and clouds is not None:
        return clouds.project(frame, target).depth_m  # straight onto the target grid: resampling would lose points
    if frame.depth is None:
        return None
    truth = gt_metres(frame.depth)
    return resample_to(truth, gt_camera(truth, frame.depth_info, camera), target)
