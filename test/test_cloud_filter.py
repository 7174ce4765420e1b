"""Cloud cleaning (core.cloud_filter) against exact synthetic ground truth: flying pixels, sky, block median."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.spatial import cKDTree

from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import backproject
from depth_node.core.cloud_filter import block_camera, block_colour, block_median, edge_radius, flying_pixels, sky_mask
from depth_node.core.spaces import OutputSpace
from depth_node.synth.writer import SynthSpec, generate

COSTMAP_RANGE_M = 5.0


@pytest.fixture(scope="module")
def rooms():
    """Rendered rooms and corridors (occlusion edges everywhere: furniture, door frames, corners)."""
    out = []
    for kind in ("room", "corridor"):
        for seed in range(3):
            spec = SynthSpec(scenes=(kind,), frames=2, width=320, height=240, camera_height_m=0.5 + 0.3 * seed, pitch_deg=5, seed=seed)
            out += [(np.where(np.isfinite(f.depth_m), f.depth_m, np.nan).astype(np.float32), f.camera) for f in generate(spec)]
    return out


def as_predicted(depth: np.ndarray, factor: float) -> np.ndarray:
    """What the pipeline publishes from a model with a ``factor`` times coarser grid: depth averaged over the
    model's pixels, then resized up bilinearly — an edge becomes a ramp of flying pixels."""
    h, w = depth.shape
    small = cv2.resize(np.nan_to_num(depth, nan=0.0), (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    up[~(up > 0)] = np.nan
    return up


@pytest.mark.parametrize("mode,factor", [("ratio", 2.5), ("ratio", 4.0), ("normal", 2.5)])
def test_flying_pixel_filter_removes_90_percent_of_off_surface_points_and_keeps_95_percent_of_the_rest(rooms, mode, factor):
    """The issue's proof: points farther than 5 cm from the true surface (nearest ground-truth point) drop by
    ≥ 90 % with filtering on, while ≥ 95 % of the points on the surface survive (points within costmap range)."""
    bad_before = bad_after = good_before = good_after = 0
    for depth, camera in rooms:
        truth = backproject(depth, camera).reshape(-1, 3)
        tree = cKDTree(truth[np.isfinite(truth[:, 2])])
        predicted = as_predicted(depth, factor)
        points = backproject(predicted, camera, max_range=COSTMAP_RANGE_M).reshape(-1, 3)
        valid = np.isfinite(points[:, 2])
        distance = np.full(len(points), np.nan)
        distance[valid] = tree.query(points[valid])[0]
        bad, good = valid & (distance > 0.05), valid & (distance <= 0.05)
        removed = flying_pixels(predicted, camera, mode, radius=edge_radius(factor)).ravel()
        bad_before += bad.sum()
        bad_after += (bad & ~removed).sum()
        good_before += good.sum()
        good_after += (good & ~removed).sum()
    assert bad_before > 1000  # the edges do produce flying pixels
    assert 1 - bad_after / bad_before >= 0.90, (bad_before, bad_after)
    assert good_after / good_before >= 0.95, (good_before, good_after)


def test_a_ramp_between_two_surfaces_is_removed_and_the_surfaces_are_kept():
    camera = PinholeCamera(40, 10, 40.0, 40.0, 19.5, 4.5)
    depth = np.full((10, 40), 2.0, np.float32)
    depth[:, 20:] = 4.0
    depth[:, 18:22] = np.linspace(2.0, 4.0, 6)[1:-1]     # the blend a resize makes
    removed = flying_pixels(depth, camera, "ratio", radius=1)
    assert removed[:, 18:22].all()
    assert not removed[:, :16].any() and not removed[:, 24:].any()
    assert not flying_pixels(depth, camera, "off").any()
    with pytest.raises(ValueError, match="edge filter"):
        flying_pixels(depth, camera, "median")


def _flying_by_definition(depth: np.ndarray, max_ratio: float, radius: int) -> np.ndarray:
    """The ratio test pixel by pixel, as the module docstring states it: a finite pixel whose depth differs from a
    finite neighbour within ``radius`` by more than ``max_ratio`` of its own depth."""
    h, w = depth.shape
    flying = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            d = float(depth[y, x])
            if not math.isfinite(d):
                continue
            window = depth[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].astype(np.float64)
            window = window[np.isfinite(window)]
            flying[y, x] = bool((np.abs(window - d) > max_ratio * d).any())
    return flying


@pytest.mark.parametrize("seed", range(6))
def test_the_ratio_test_is_its_definition_with_holes_infinities_and_zeros(seed: int):
    """The OpenCV implementation (dilate/erode of patched copies) against a per-pixel loop, on frames with NaN, ±Inf,
    0 and negative depths, and on a frame with none (the path that patches nothing)."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 6.0, (23, 31)).astype(np.float32)
    if seed:
        for value, share in ((np.nan, 0.08), (np.inf, 0.03), (-np.inf, 0.03), (0.0, 0.03), (-1.0, 0.02)):
            depth[rng.random(depth.shape) < share] = value
    camera = PinholeCamera(31, 23, 30.0, 30.0, 15.0, 11.0)
    for radius in (1, 2, 4):
        for ratio in (0.05, 0.3):
            expected = _flying_by_definition(depth, ratio, radius)
            np.testing.assert_array_equal(flying_pixels(depth, camera, "ratio", ratio, radius=radius), expected)
    assert flying_pixels(np.zeros((0, 31), np.float32), camera).shape == (0, 31)


def test_a_tilted_plane_is_not_an_edge():
    """A floor seen at 45°: smooth, every pixel survives both tests."""
    camera = PinholeCamera(64, 48, 60.0, 60.0, 31.5, 23.5)
    v = (np.arange(48, dtype=np.float32)[:, None] - camera.cy) / camera.fy
    depth = np.repeat(1.5 / (np.cos(math.radians(45)) * v + np.sin(math.radians(45))), 64, axis=1).astype(np.float32)
    for mode in ("ratio", "normal"):
        assert not flying_pixels(depth, camera, mode, radius=1).any(), mode


def test_block_median_matches_numpy_on_ragged_blocks_with_holes():
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.5, 5.0, (37, 53)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.3] = np.nan
    depth[:4, :4] = np.nan                                  # a block with nothing valid
    block = 4
    got = block_median(depth, block)
    assert got.shape == (9, 13)                              # the partial blocks at the edges are left out
    for i in range(9):
        for j in range(13):
            cell = depth[i * block:(i + 1) * block, j * block:(j + 1) * block]
            expected = np.nanmedian(cell) if np.isfinite(cell).any() else np.nan
            np.testing.assert_allclose(got[i, j], expected, rtol=1e-6, equal_nan=True)


def test_block_grid_points_stay_on_the_true_plane():
    """Block centres back-projected with block_camera land on the plane the full-resolution depth describes."""
    camera = PinholeCamera(64, 48, 50.0, 52.0, 30.2, 25.7)
    normal = np.array([0.2, -0.3, 1.0]) / np.linalg.norm([0.2, -0.3, 1.0])
    u = (np.arange(64) - camera.cx) / camera.fx
    v = (np.arange(48) - camera.cy) / camera.fy
    depth = (3.0 / (normal[0] * u[None, :] + normal[1] * v[:, None] + normal[2])).astype(np.float32)
    for block in (2, 3, 5):
        points = backproject(block_median(depth, block), block_camera(camera, block)).reshape(-1, 3)
        points = points[np.isfinite(points[:, 2])]
        # the median of a plane's depths over a block is its centre's depth up to the curvature of 1/z
        assert np.max(np.abs(points @ normal - 3.0)) < 5e-3, block
    rgb = np.arange(64 * 48 * 3, dtype=np.uint8).reshape(48, 64, 3)
    assert block_colour(rgb, 3).shape == (16, 21, 3) and (block_colour(rgb, 3)[1, 1] == rgb[4, 4]).all()


def test_sky_is_found_in_disparity_only():
    disparity = np.full((10, 10), 0.5, np.float32)
    disparity[:3] = 0.001                                  # 500 times farther than the rest: sky
    mask = sky_mask(disparity, OutputSpace.DISPARITY, 0.02)
    assert mask[:3].all() and not mask[3:].any()
    assert sky_mask(disparity, OutputSpace.DISPARITY, 0.0) is None
    assert sky_mask(1.0 / disparity, OutputSpace.DEPTH, 0.02) is None
    assert sky_mask(np.sqrt(disparity), OutputSpace.SQRT_DISPARITY, 0.02)[:3].all()
