"""``depth-node adapt``: a site's bag in, an adapted card out — the split by time, the provenance and the scores in the
card, the card running as any card does — and each refusal in one line. Smoke runs on small rendered bags (seconds);
what adaptation gains on real sites is measured in docs/adaptation.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from depth_node.core.camera import PinholeCamera
from depth_node.eval.bag_output import RGBD_TOPICS, BagWriter, rgbd_messages
from depth_node.synth.writer import SynthSpec, write
from depth_node.train.site import MIN_LABELLED, AdaptConfig, AdaptError, adapt, content_hash, read_site, split_by_time

REPO = Path(__file__).resolve().parent.parent
FASTDEPTH = REPO.parent / "shared" / "models" / "fastdepth" / "fast_depth_224.tflite"
needs_fastdepth = pytest.mark.skipif(not FASTDEPTH.is_file(), reason="../shared/models/fastdepth is absent")
CLI = [sys.executable, "-m", "depth_node.tools.cli"]


def rendered_bag(folder: Path, frames: int, seed: int = 0) -> Path:
    write(SynthSpec(scenes=("room",), frames=frames, width=160, height=120, seed=seed), folder, folder=False)
    return folder / "bag"


@pytest.fixture(scope="module")
def site_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rendered_bag(tmp_path_factory.mktemp("site") / "room", MIN_LABELLED + 5)


@needs_fastdepth
def test_frames_come_at_the_networks_input_with_their_ground_truth_and_the_latest_are_held_out(site_bag: Path) -> None:
    from depth_node.estimators.card import load_card
    from depth_node.paths import resolve_card

    site = read_site(site_bag, load_card(resolve_card("default")).input)
    assert len(site.samples) == MIN_LABELLED + 5 and site.skipped == 0
    assert site.samples.rgb.shape[1:] == (224, 224, 3) and site.samples.depth.shape[1:] == (224, 224)
    assert np.isfinite(site.samples.depth).mean() > 0.5 and np.nanmin(site.samples.depth) > 0
    train, held = split_by_time(site, 0.2)
    assert len(held) == 5 and len(train) == MIN_LABELLED and not set(train) & set(held)
    assert site.stamps_ns[held].min() > site.stamps_ns[train].max()  # the latest frames, not a random share


@needs_fastdepth
def test_adapt_writes_a_card_that_runs_like_any_other_and_says_what_made_it(tmp_path: Path, site_bag: Path) -> None:
    """End to end through the command: a few steps, the card's training block (base card, bag and hash, the split,
    the command, base and adapted scores on the held-out frames), and the card loaded by the estimator registry."""
    from depth_node.core.pipeline import DepthPipeline
    from depth_node.estimators import load_estimator

    out = tmp_path / "adapted"
    run = subprocess.run([*CLI, "adapt", str(site_bag), "-o", str(out), "--steps", "6", "--batch", "4", "--log-every", "3",
                          "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "held out 5" in run.stdout and "abs_rel" in run.stdout
    card = yaml.safe_load((out / "card.yaml").read_text())
    training = card["training"]
    assert training["base_card"] == "default" and training["command"].startswith("depth-node adapt ")
    assert training["bags"] == [{"path": str(site_bag.resolve()), "sha256": content_hash(site_bag), "labelled_frames": 25,
                                 "skipped_frames": 0, "train_frames": 20, "held_out_frames": 5}]
    assert "last 20%" in training["split"]["by_time"]
    for model in ("base", "adapted"):
        assert set(training["held_out"][model]) >= {"abs_rel", "delta1", "aligned_abs_rel", "aligned_delta1"}
        assert all(np.isfinite(v) for v in training["held_out"][model].values())
    assert card["network"]["weights"] == "model.safetensors" and card["output"] == {"space": "depth", "invariance": "metric"}
    pipeline = DepthPipeline(load_estimator(out / "card.yaml"))
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    result = pipeline.process(rgb, PinholeCamera.from_hfov(160, 120, 70.0), points=False)
    assert result.depth_m.shape == (120, 160) and np.isfinite(result.depth_m).mean() > 0.9


def test_refusals_say_what_is_wrong_in_one_line(tmp_path: Path, site_bag: Path) -> None:
    # a card the package cannot train: named, with the card to use instead (before any bag is read)
    with pytest.raises(AdaptError, match=r"cannot be fine-tuned.*--card default"):
        adapt(AdaptConfig([site_bag], tmp_path / "a", card="depth_anything_v2_small"))
    # a bag without ground truth
    camera = PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
    with BagWriter(tmp_path / "no_depth") as writer:
        for i in range(3):
            msgs = rgbd_messages(writer.typestore, i + 1, np.zeros((48, 64, 3), np.uint8), None, camera)
            for key in ("image", "camera_info"):
                writer.write(RGBD_TOPICS[key][0], RGBD_TOPICS[key][1], i + 1, msgs[key])
    from depth_node.estimators.card import load_card
    from depth_node.paths import resolve_card

    rules = load_card(resolve_card("default")).input
    with pytest.raises(AdaptError, match="no ground-truth depth topic.*--gt-topic"):
        read_site(tmp_path / "no_depth", rules)
    # ground truth of another shape and no camera_info for it: not registered, not stretched
    with BagWriter(tmp_path / "other_shape") as writer:
        msgs = rgbd_messages(writer.typestore, 1, np.zeros((48, 64, 3), np.uint8), np.full((40, 64), 2.0, np.float32), camera)
        for key in ("image", "camera_info", "depth"):
            writer.write(RGBD_TOPICS[key][0], RGBD_TOPICS[key][1], 1, msgs[key])
    with pytest.raises(AdaptError, match="not registered to the image.*--gt-info-topic"):
        read_site(tmp_path / "other_shape", rules)
    # options checked before anything is read
    with pytest.raises(AdaptError, match="--holdout-bag .* is not among the bags"):
        adapt(AdaptConfig([site_bag], tmp_path / "b", holdout_bags=[tmp_path / "elsewhere"]))


@needs_fastdepth
def test_too_few_labelled_frames_are_refused_with_the_minimum(tmp_path: Path) -> None:
    short = rendered_bag(tmp_path / "short", MIN_LABELLED - 5)
    run = subprocess.run([*CLI, "adapt", str(short), "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert f"15 labelled frames in all bags, at least {MIN_LABELLED} are needed" in run.stderr
    assert len(run.stderr.strip().splitlines()[-1]) < 300 and run.stderr.strip().splitlines()[-1].startswith("ERROR:")
    assert not (tmp_path / "out" / "card.yaml").exists()


def test_adapt_help() -> None:
    run = subprocess.run([*CLI, "adapt", "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "--holdout-bag" in run.stdout and "--gt-topic" in run.stdout


def test_a_lidar_cloud_is_ground_truth_for_adapt_on_the_networks_grid(tmp_path: Path) -> None:
    """--gt-cloud-topic: the rendered LiDAR projected straight onto the network's input grid (through the bag's
    /tf_static), sparse, and on the same depth as the depth image where both have one."""
    from depth_node.estimators.card import load_card
    from depth_node.paths import resolve_card
    from depth_node.synth.lidar import LidarSpec

    write(SynthSpec(scenes=("room",), frames=3, width=160, height=120, lidar=LidarSpec()), tmp_path / "drive", folder=False)
    rules = load_card(resolve_card("default")).input
    by_cloud = read_site(tmp_path / "drive" / "bag", rules, {"cloud": "/lidar/points"})
    by_image = read_site(tmp_path / "drive" / "bag", rules)
    assert len(by_cloud.samples) == len(by_image.samples) == 3
    sparse, dense = by_cloud.samples.depth, by_image.samples.depth
    assert sparse.shape == dense.shape == (3, 224, 224) and 0.02 < np.isfinite(sparse).mean() < 0.5 < np.isfinite(dense).mean()
    both = np.isfinite(sparse) & np.isfinite(dense)
    assert np.median(np.abs(sparse[both] - dense[both]) / dense[both]) < 0.02
