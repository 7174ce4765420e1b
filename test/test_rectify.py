"""Camera geometry as image_pipeline has it: rectified images are projected with P; raw images with distortion
are remapped to P's grid first (core.rectify, convert.InputGeometry). Checked against OpenCV's forward model
(projectPoints with K, D) — the inverse of what the rectifier computes — and against the node's own cloud."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from depth_node.core.rectify import Calibration, Rectifier
from depth_node.errors import InputError
from depth_node.ros.convert import InputGeometry, calibration_of

K = np.array([[480.0, 0.0, 322.0], [0.0, 485.0, 236.0], [0.0, 0.0, 1.0]])
P = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
D = np.array([-0.28, 0.09, 0.001, -0.0015, -0.012])


def info(d: np.ndarray = D, model: str = "plumb_bob") -> CameraInfo:
    msg = CameraInfo(width=640, height=480, distortion_model=model)
    msg.k, msg.d = K.ravel().tolist(), d.tolist()
    msg.r = np.eye(3).ravel().tolist()
    msg.p = np.hstack([P, np.zeros((3, 1))]).ravel().tolist()
    return msg


def dots(points: np.ndarray, image_points: np.ndarray) -> np.ndarray:
    image = np.zeros((480, 640, 3), np.uint8)
    for u, v in image_points:
        cv2.circle(image, (int(round(u * 16)), int(round(v * 16))), 48, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    return image


def centroid(image: np.ndarray, near: np.ndarray) -> np.ndarray:
    u, v = np.round(near).astype(int)
    patch = image[v - 8 : v + 9, u - 8 : u + 9, 0].astype(float)
    ys, xs = np.mgrid[v - 8 : v + 9, u - 8 : u + 9]
    return np.array([(xs * patch).sum() / patch.sum(), (ys * patch).sum() / patch.sum()])


@pytest.mark.parametrize("model, d", [("plumb_bob", D), ("equidistant", np.array([0.05, -0.01, 0.002, -0.0005]))])
def test_a_raw_image_lands_where_p_projects(model: str, d: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-0.8, 0.8, 12), rng.uniform(-0.6, 0.6, 12), rng.uniform(2.0, 4.0, 12)])
    if model == "equidistant":
        raw_uv = cv2.fisheye.projectPoints(points[None], np.zeros(3), np.zeros(3), K, d)[0][0]
    else:
        raw_uv = cv2.projectPoints(points, np.zeros(3), np.zeros(3), K, d)[0][:, 0]
    rectified_uv = (P @ (points / points[:, 2:]).T).T[:, :2]           # the pinhole camera P, R = identity
    keep = (raw_uv[:, 0] > 20) & (raw_uv[:, 0] < 620) & (raw_uv[:, 1] > 20) & (raw_uv[:, 1] < 460)
    rectified, camera, ignored = InputGeometry()(dots(points, raw_uv[keep]), info(d, model), "raw")
    assert not ignored and (camera.fx, camera.fy, camera.cx, camera.cy) == (500.0, 500.0, 319.5, 239.5)
    for uv in rectified_uv[keep]:
        assert np.linalg.norm(centroid(rectified, uv) - uv) < 0.25, uv


def test_rectified_mode_reads_p_and_reports_the_distortion_it_does_not_apply() -> None:
    image = np.full((480, 640, 3), 7, np.uint8)
    out, camera, ignored = InputGeometry()(image, info(), "rectified")
    assert out is image and ignored and (camera.fx, camera.cx) == (500.0, 319.5)
    out, _, ignored = InputGeometry()(image, info(np.zeros(5)), "rectified")
    assert not ignored


def test_unsupported_calibrations_say_what_to_do() -> None:
    with pytest.raises(InputError, match="rectify the image upstream"):
        Rectifier(Calibration(tuple(K.ravel()), (0.1,) * 5, tuple(np.eye(3).ravel()), tuple(P.ravel()), "kannala", 640, 480))
    binned = info()
    binned.binning_x = 2
    with pytest.raises(InputError, match="binning or an ROI"):
        calibration_of(binned)
