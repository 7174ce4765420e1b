"""LiDAR points → a sparse depth image on a camera's grid: ground truth, or the node's metric reference.

Points arrive in the LiDAR's frame; ``camera_from_lidar`` carries them into the camera's optical frame (x right, y down,
z forward). Each point lands in the pixel its ray from the camera crosses (the pinhole model of the image the depth
is published on); points at or behind ``min_depth_m`` and outside the image are dropped, and where several land in
one pixel the nearest is kept (a z-buffer).

Parallax: the LiDAR sits elsewhere than the camera, so it measures surfaces the camera cannot see — behind the edge
of a nearer object, from the camera's viewpoint. In the image those points land among the nearer object's points.
The neighbourhood test drops a point when another point within ``occlusion_radius_px`` pixels is nearer by more than
``occlusion_margin`` of the point's depth: a far point among near ones is taken as seen through them. Its cost: far
points right beside a near edge go too (a band of ``occlusion_radius_px`` pixels). ``occlusion_radius_px = 0`` turns
the test off (the z-buffer alone then keeps hidden points wherever no nearer point fell in the same pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.transforms import RigidTransform

OCCLUSION_RADIUS_PX = 6  # chosen on bench_lidar_truth.py --seed 1 (best of 0, 3, 6 in every scene and mount)
OCCLUSION_MARGIN = 0.1


@dataclass
class Projection:
    """A cloud projected into a camera: the sparse depth image and how many points went where."""

    depth_m: np.ndarray   # float32 (H, W) metres along the optical axis, NaN where no point landed
    points: int           # finite points given
    in_view: int          # of them, in front of the camera and inside the image
    occluded: int         # pixels whose depth the neighbourhood test dropped (hidden from the camera)

    @property
    def density(self) -> float:
        """Share of the image's pixels that have a depth."""
        return float(np.isfinite(self.depth_m).mean())


def project_points(points: np.ndarray, camera: PinholeCamera, camera_from_lidar: RigidTransform | None = None,
                   occlusion_radius_px: int = OCCLUSION_RADIUS_PX, occlusion_margin: float = OCCLUSION_MARGIN,
                   min_depth_m: float = 0.05) -> Projection:
    """(N, 3) points (LiDAR frame, or the camera's optical frame when ``camera_from_lidar`` is None) → a depth
    image on ``camera``'s grid (see the module docstring). Non-finite points are ignored."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    xyz = camera_from_lidar.apply(points) if camera_from_lidar is not None else points
    z = xyz[:, 2]
    front = z > min_depth_m
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.floor(camera.fx * xyz[:, 0] / z + camera.cx + 0.5)  # pixel centres at integer coordinates
        v = np.floor(camera.fy * xyz[:, 1] / z + camera.cy + 0.5)
    inside = front & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    flat = (v[inside] * camera.width + u[inside]).astype(np.int64)
    nearest = np.full(camera.height * camera.width, np.inf)
    np.minimum.at(nearest, flat, z[inside])
    nearest = nearest.reshape(camera.height, camera.width).astype(np.float32)
    landed = np.isfinite(nearest)
    occluded = 0
    if occlusion_radius_px > 0 and landed.any():
        size = 2 * occlusion_radius_px + 1
        neighbourhood_min = cv2.erode(nearest, np.ones((size, size), np.uint8), borderType=cv2.BORDER_CONSTANT,
                                      borderValue=float("inf"))
        hidden = landed & (neighbourhood_min < nearest * np.float32(1.0 - occlusion_margin))
        occluded = int(hidden.sum())
        nearest[hidden] = np.inf
    depth = np.where(np.isfinite(nearest), nearest, np.float32(np.nan)).astype(np.float32)
    return Projection(depth, int(points.shape[0]), int(inside.sum()), occluded)
