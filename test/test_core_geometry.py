"""Camera intrinsics, output spaces, depth encodings and point clouds against exact references."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from depth_node.core import parallel as bands
from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import backproject, unpack_rgb
from depth_node.core.cloud_filter import flying_pixels
from depth_node.core.colorize import _table as colour_table
from depth_node.core.colorize import colorize_depth
from depth_node.core.confidence import gradient_confidence
from depth_node.core.depth_encoding import decode_depth, encode_depth
from depth_node.core.spaces import OutputSpace, from_metres, to_metres
from depth_node.errors import InputError
from depth_node.synth.render import CameraPose, render
from depth_node.synth.scene import Ground, Material, Scene

CAM = PinholeCamera(640, 480, 520.0, 515.0, 321.3, 243.7)


@pytest.mark.parametrize("size", [(320, 240), (1280, 960), (160, 90), (517, 389)])
def test_resized_intrinsics_follow_cv2_resize(size: tuple[int, int]) -> None:
    # A linear function of the normalized ray coordinate, resized by cv2, must equal that function evaluated
    # with the resized intrinsics (away from the border, where cv2 clamps).
    w, h = size
    u = (np.arange(CAM.width) - CAM.cx) / CAM.fx
    image = np.repeat(u[None, :], CAM.height, 0).astype(np.float32)
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    small = CAM.resized(w, h)
    expected = (np.arange(w) - small.cx) / small.fx
    np.testing.assert_allclose(resized[h // 2, 3:-3], expected[3:-3], atol=1e-5)
    back = small.resized(CAM.width, CAM.height)
    assert (back.fx, back.fy, back.cx, back.cy) == pytest.approx((CAM.fx, CAM.fy, CAM.cx, CAM.cy))


def test_camera_validation_and_hfov() -> None:
    cam = PinholeCamera.from_hfov(640, 480, 90.0)
    assert cam.fx == pytest.approx(320.0) and cam.cx == pytest.approx(319.5)
    for bad in [dict(fx=0.0), dict(fy=-1.0), dict(cx=math.nan), dict(width=0)]:
        args = dict(width=640, height=480, fx=500.0, fy=500.0, cx=320.0, cy=240.0) | bad
        with pytest.raises(InputError):
            PinholeCamera(**args)
    with pytest.raises(InputError):
        PinholeCamera.from_hfov(640, 480, 180.0)


@pytest.mark.parametrize("space", list(OutputSpace))
def test_output_space_conversions_are_exact(space: OutputSpace) -> None:
    depth = np.array([[0.25, 1.0, 3.5, 80.0]], np.float32)
    np.testing.assert_allclose(to_metres(from_metres(depth, space), space), depth, rtol=1e-6)
    # scale and shift act in the model's own space
    p = np.array([[0.5, 2.0]], np.float32)
    expected = {OutputSpace.DEPTH: 3 * p + 1, OutputSpace.DISPARITY: 1 / (3 * p + 1), OutputSpace.SQRT_DISPARITY: 1 / (3 * p + 1) ** 2}
    np.testing.assert_allclose(to_metres(p, space, 3.0, 1.0), expected[space], rtol=1e-6)


def test_invalid_predictions_become_nan() -> None:
    values = np.array([[0.0, -1.0, np.nan, np.inf]], np.float32)
    assert np.isnan(to_metres(values, OutputSpace.DEPTH)[0, :3]).all()
    assert np.isnan(to_metres(values, OutputSpace.DISPARITY)).all()


def test_depth_encodings_round_trip() -> None:
    depth = np.array([[np.nan, 0.0, 0.0004, 1.2345, 65.535, 70.0]], np.float32)
    mm = encode_depth(depth, "16UC1")
    assert mm.dtype == np.uint16 and mm.tolist() == [[0, 0, 0, 1234, 65535, 0]]
    back = decode_depth(mm, "16UC1")
    assert np.isnan(back[0, [0, 1, 2, 5]]).all() and back[0, 3] == pytest.approx(1.234)
    f = encode_depth(depth, "32FC1")
    assert f.dtype == np.float32 and np.isnan(f[0, 0])
    assert np.isnan(decode_depth(np.array([[0.0, -1.0, np.inf]], np.float32), "32FC1")).all()


def _plane_scene() -> Scene:
    return Scene(kind="test", primitives=[Ground(Material("checker", (0.9, 0.9, 0.9), (0.1, 0.1, 0.1), 0.5))], sky=True)


def test_rendered_ground_depth_is_exact_and_cloud_lies_on_plane() -> None:
    height, pitch = 1.3, math.radians(20)
    pose = CameraPose(0.0, 0.0, height, yaw=0.0, pitch=pitch)
    rgb, depth = render(_plane_scene(), CAM, pose)
    # Analytic: a ray (x, y, 1) hits z_world = 0 at optical depth h / (y cos(pitch) + sin(pitch)).
    y = (np.arange(CAM.height) - CAM.cy) / CAM.fy
    denominator = y * math.cos(pitch) + math.sin(pitch)
    expected = np.where(denominator > 0, height / np.where(denominator > 0, denominator, 1), np.inf)
    np.testing.assert_allclose(depth[:, 100], expected, rtol=1e-5)  # float32 rays
    # Back-projected points lie on the ground plane within 1 mm (camera frame: n·X = -h with n = world up).
    up_in_camera = pose.rotation().T @ np.array([0.0, 0.0, 1.0])
    depth = np.where(np.isfinite(depth), depth, np.nan).astype(np.float32)
    points = backproject(depth, CAM, max_range=50.0)
    distance = points.reshape(-1, 3) @ up_in_camera + height
    assert np.isfinite(distance).sum() > 0.4 * distance.size
    assert np.nanmax(np.abs(distance)) < 1e-3


def test_cloud_ranges_decimation_and_colour() -> None:
    depth = np.full((CAM.height, CAM.width), 2.0, np.float32)
    depth[0, 0] = np.nan
    depth[100:110, :] = 30.0
    rgb = np.zeros((CAM.height, CAM.width, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 7
    points = backproject(depth, CAM, step=4, min_range=0.5, max_range=10.0, rgb=rgb)
    assert points.shape == (120, 160, 4)
    assert np.isnan(points[0, 0, :3]).all()
    assert np.isnan(points[25:28, :, :3]).all()  # rows 100..108 are beyond max_range
    np.testing.assert_allclose(points[60, 40, 2], 2.0)
    np.testing.assert_allclose(points[60, 40, 0], 2.0 * (160 - CAM.cx) / CAM.fx, rtol=1e-6)
    assert unpack_rgb(points[..., 3])[5, 5].tolist() == [200, 100, 7]
    dropped = np.zeros(depth.shape, bool)
    dropped[200:204, 40:44] = True
    into = np.full((120, 160, 4), 7.0, np.float32)
    kept = backproject(depth, CAM, step=4, min_range=0.5, max_range=10.0, rgb=rgb, drop=dropped, out=into)
    assert kept is into and np.isnan(into[50, 10, :3]).all()  # pixel (200, 40) is dropped
    np.testing.assert_array_equal(np.delete(into.reshape(-1, 4), 50 * 160 + 10, axis=0), np.delete(points.reshape(-1, 4), 50 * 160 + 10, axis=0))
    with pytest.raises(ValueError, match="out must be"):
        backproject(depth, CAM, step=4, rgb=rgb, out=np.zeros((120, 160, 3), np.float32))
    near = backproject(depth, CAM, min_range=2.5)  # the ray through the centre is 2.0 m long
    assert np.isnan(near[240, 321, 2])
    assert np.isfinite(near[240, 321 - 320, 2]) == (2.0 * math.sqrt(1 + ((1 - CAM.cx) / CAM.fx) ** 2 + ((240 - CAM.cy) / CAM.fy) ** 2) >= 2.5)


def test_confidence_is_low_at_discontinuities_and_zero_when_invalid() -> None:
    depth = np.full((50, 60), 2.0, np.float32)
    depth[:, 30:] = 6.0
    depth[0, 0] = np.nan
    conf = gradient_confidence(depth, 0.05)
    assert conf.dtype == np.float32 and conf.shape == depth.shape
    assert conf[25, 10] == pytest.approx(1.0) and conf[25, 29] < 0.05 and conf[25, 30] < 0.1
    assert conf[0, 0] == 0.0 and ((conf >= 0) & (conf <= 1)).all()


@pytest.mark.parametrize("step", [1, 3])
@pytest.mark.parametrize("mode", ["ratio", "normal"])
def test_a_cloud_computed_in_row_bands_is_the_cloud_computed_at_once(step: int, mode: str) -> None:
    """flying_pixels and backproject on row bands (what core.parallel hands to threads), for uneven splits, equal the
    whole-frame calls bit for bit: the filter reads its halo, rays and range limits come from the whole camera."""
    rng = np.random.default_rng(5)
    depth = cv2.resize(rng.uniform(0.5, 6.0, (9, 12)).astype(np.float32), (CAM.width, CAM.height))
    depth[rng.random(depth.shape) < 0.02] = np.nan
    rgb = rng.integers(0, 256, (CAM.height, CAM.width, 3), dtype=np.uint8)
    whole_removed = flying_pixels(depth, CAM, mode, radius=4)
    whole = backproject(depth, CAM, step, 0.3, 5.0, rgb, drop=whole_removed)
    rows = whole.shape[0]
    for edges in ([0, rows], [0, rows // 2, rows], [0, 1, 7, rows - 1, rows], [0, 37, 38, rows]):
        removed = np.empty(depth.shape, bool)
        out = np.full(whole.shape, 9.0, np.float32)
        for first, last in zip(edges[:-1], edges[1:]):
            top, bottom = first * step, min(CAM.height, last * step)
            removed[top:bottom] = flying_pixels(depth, CAM, mode, radius=4, rows=(top, bottom))
            band = backproject(depth, CAM, step, 0.3, 5.0, rgb, drop=removed, out=out, rows=(first, last))
            assert band.shape[0] == last - first and np.shares_memory(band, out)
        np.testing.assert_array_equal(removed, whole_removed)
        np.testing.assert_array_equal(out, whole)


def test_row_bands_cover_every_row_once() -> None:
    for rows, columns in ((480, 640), (7, 10**7), (1081, 1920)):
        edges = bands.band_edges(rows, columns)
        assert edges[0] == 0 and edges[-1] == rows and all(a < b for a, b in zip(edges, edges[1:]))
        assert len(edges) - 1 == min(bands.THREADS, rows)
    assert bands.band_edges(10, 10) == [0, 10] and bands.band_edges(0, 640) == [0, 0]  # small: one band


def test_together_runs_every_task_once_at_once_and_raises_the_first_error_after_all() -> None:
    import threading

    ran: list[int] = []
    bands.together([lambda n=n: ran.append(n) for n in range(9)])
    assert sorted(ran) == list(range(9))
    if bands.THREADS > 1:  # at once: two tasks that each wait for the other
        meet = threading.Barrier(2, timeout=10)
        bands.together([meet.wait, meet.wait])
    finished: list[int] = []

    def fail(n: int) -> None:
        finished.append(n)
        raise RuntimeError(f"task {n}")
    with pytest.raises(RuntimeError, match="task 1"):  # the first in the list's order, once every task is done
        bands.together([lambda: finished.append(0), lambda: fail(1), lambda: fail(2), lambda: finished.append(3)])
    assert sorted(finished) == [0, 1, 2, 3]
    nested: list[str] = []  # a task's own together() runs its tasks there, one after the other: no deadlock
    bands.together([lambda: bands.together([lambda: nested.append("a"), lambda: nested.append("b")]), lambda: nested.append("c")])
    assert sorted(nested) == ["a", "b", "c"]


def test_gradient_confidence_is_its_formula_pixel_by_pixel() -> None:
    """The OpenCV implementation against the module's formula in float64, pixel by pixel: g = max(|∂d/∂u|, |∂d/∂v|)
    by central differences (0 on the border), confidence = 1 / (1 + (g / (g₀ d))²), 0 where undefined."""
    rng = np.random.default_rng(11)
    depth = rng.uniform(0.3, 8.0, (17, 23)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.1] = np.nan
    depth[3, 4] = 0.0
    h, w = depth.shape
    for scale in (0.05, 0.3):
        expected = np.zeros((h, w))
        for y in range(h):
            for x in range(w):
                d = float(depth[y, x])
                gu = abs(float(depth[y, x + 1]) - float(depth[y, x - 1])) / 2 if 0 < x < w - 1 else 0.0
                gv = abs(float(depth[y + 1, x]) - float(depth[y - 1, x])) / 2 if 0 < y < h - 1 else 0.0
                with np.errstate(invalid="ignore", divide="ignore"):
                    value = 1.0 / (1.0 + (np.float64(max(gu, gv) if not (math.isnan(gu) or math.isnan(gv)) else math.nan) / (scale * d)) ** 2)
                expected[y, x] = value if math.isfinite(value) and math.isfinite(d) and d > 0 else 0.0
        np.testing.assert_allclose(gradient_confidence(depth, scale), expected, rtol=2e-6, atol=1e-7)
    assert gradient_confidence(np.zeros((0, 4), np.float32)).shape == (0, 4)


def test_colorize_uses_a_fixed_range() -> None:
    depth = np.array([[np.nan, 0.0, 1.0, 5.5, 10.0, 50.0]], np.float32)
    a = colorize_depth(depth, 1.0, 10.0, "gray")
    assert a[0, 0].tolist() == [0, 0, 0]  # invalid is black
    assert a[0, 1].tolist() == a[0, 2].tolist() and a[0, 4].tolist() == a[0, 5].tolist() == [255, 255, 255]
    assert 120 < a[0, 3, 0] < 135
    # the same depth gets the same colour whatever else is in the frame
    b = colorize_depth(np.array([[5.5, 9.0]], np.float32), 1.0, 10.0, "turbo")
    c = colorize_depth(np.array([[5.5, 1.0]], np.float32), 1.0, 10.0, "turbo")
    assert b[0, 0].tolist() == c[0, 0].tolist()
    # levels: min → 1, max → 255, linear between (rounded); ±Inf clip to the ends; NaN is level 0 (black)
    ramp = np.array([[1.0, 10.0, 1.0 + 9.0 * 100.4 / 254, np.inf, -np.inf, np.nan]], np.float32)
    levels = [1, 255, 101, 255, 1, 0]
    np.testing.assert_array_equal(colorize_depth(ramp, 1.0, 10.0, "turbo")[0], colour_table("turbo")[levels, 0])
    assert colorize_depth(np.zeros((0, 3), np.float32), 1.0, 10.0).shape == (0, 3, 3)


def test_to_metres_in_place_only_when_asked() -> None:
    p = np.array([[0.5, 2.0]], np.float32)
    out = to_metres(p, OutputSpace.DISPARITY)
    assert out is not p and p.tolist() == [[0.5, 2.0]]
    same = to_metres(p, OutputSpace.DISPARITY, in_place=True)
    assert same is p and same.tolist() == [[2.0, 0.5]]
