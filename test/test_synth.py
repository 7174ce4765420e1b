"""Synthetic scenes: deterministic, exact depth, readable bags (mcap and sqlite3) and folders, the CLI verb."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_node.core.camera import PinholeCamera
from depth_node.ros.convert import camera_from_info, image_to_array, image_to_rgb
from depth_node.synth.scene import SCENE_KINDS
from depth_node.synth.writer import TOPICS, SynthSpec, generate, write

SPEC = SynthSpec(scenes=("room", "corridor", "street"), frames=2, width=96, height=72, seed=3)


def test_deterministic_under_a_seed_and_varied_across_seeds() -> None:
    a = list(generate(SPEC))
    b = list(generate(SPEC))
    c = list(generate(SynthSpec(**{**SPEC.__dict__, "seed": 4})))
    assert len(a) == 6
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.rgb, y.rgb)
        np.testing.assert_array_equal(x.depth_m, y.depth_m)
    assert any(not np.array_equal(x.rgb, z.rgb) for x, z in zip(a, c))


def test_scene_kinds_have_the_depth_they_claim() -> None:
    frames = {f.scene: f for f in generate(SPEC)}
    room, street = frames["room"], frames["street"]
    assert np.isfinite(room.depth_m).all() and room.depth_m.max() < 15  # closed room: no sky
    assert np.isinf(street.depth_m).any() and np.isfinite(street.depth_m).mean() > 0.5  # sky at infinity
    for frame in frames.values():
        assert frame.rgb.dtype == np.uint8 and frame.rgb.std() > 5  # textured, not flat


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_and_folder_round_trip(tmp_path: Path, storage: str) -> None:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    spec = SynthSpec(scenes=("room",), frames=3, width=64, height=48, seed=1)
    written = write(spec, tmp_path / "out", bag_storage=storage)
    frames = list(generate(spec))
    with AnyReader([written["bag"]], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert set(topics) == set(TOPICS.values())
        by_topic: dict[str, list] = {}
        for conn, _, raw in reader.messages():
            by_topic.setdefault(conn.topic, []).append(reader.deserialize(raw, conn.msgtype))
    assert all(len(v) == 3 for v in by_topic.values())
    for frame, image, depth, info in zip(frames, by_topic[TOPICS["image"]], by_topic[TOPICS["depth"]], by_topic[TOPICS["camera_info"]]):
        np.testing.assert_array_equal(image_to_rgb(image), frame.rgb)
        np.testing.assert_array_equal(image_to_array(depth), frame.depth_m)
        assert image.header.stamp.sec * 10**9 + image.header.stamp.nanosec == frame.stamp_ns
        assert camera_from_info(info, 64, 48) == frame.camera
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [r["id"] for r in index] == [f"synth_room_{i:05d}" for i in range(3)]
    record = index[1]
    rgb = cv2.imread(str(tmp_path / "out" / record["rgb"]))[..., ::-1]
    np.testing.assert_array_equal(rgb, frames[1].rgb)
    depth256 = cv2.imread(str(tmp_path / "out" / record["depth"]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(depth256 / 256.0, frames[1].depth_m, atol=1 / 512 + 1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / record["depth_exact"]), frames[1].depth_m)
    assert PinholeCamera(record["width"], record["height"], record["fx"], record["fy"], record["cx"], record["cy"]) == frames[1].camera


def test_synth_cli(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "depth_node.tools.cli", "synth"]
    help_text = subprocess.run([*cmd, "--help"], capture_output=True, text=True, check=True).stdout
    assert "--scenes" in help_text and "examples:" in help_text
    run = subprocess.run([*cmd, str(tmp_path / "s"), "--frames", "2", "--size", "48x32", "--scenes", "street"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "s" / "bag" / "metadata.yaml").is_file() and (tmp_path / "s" / "index.json").is_file()
    again = subprocess.run([*cmd, str(tmp_path / "s")], capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.startswith("ERROR: ") and "not empty" in again.stderr
    calibrated = subprocess.run([*cmd, str(tmp_path / "k"), "--frames", "1", "--size", "64x48", "--storage", "none",
                                 "--intrinsics", "60,61,30.5,20.5"], capture_output=True, text=True)
    assert calibrated.returncode == 0, calibrated.stderr
    record = json.loads((tmp_path / "k" / "index.json").read_text())[0]
    assert (record["fx"], record["fy"], record["cx"], record["cy"]) == (60.0, 61.0, 30.5, 20.5)
    bad = subprocess.run([*cmd, str(tmp_path / "t"), "--scenes", "moon"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown scene kind" in bad.stderr
    assert set(SCENE_KINDS) == {"room", "corridor", "street"}


def test_narrow_corridors_render_without_furniture_errors() -> None:
    from depth_node.synth.scene import indoor_room

    for seed in range(200):  # widths down to 1.8 m: furniture must fit beside the lane or be left out
        scene = indoor_room(np.random.default_rng(seed), corridor=True)
        assert scene.kind == "corridor"
