"""`depth-node eval` and `dataset-to-bag` end to end: real bags, real runtimes, outputs read back independently."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from _models import fastdepth_reference, plane_disparity, plane_model
from depth_node.core.camera import PinholeCamera
from depth_node.core.pipeline import DepthPipeline, PipelineConfig
from depth_node.estimators import load_estimator
from depth_node.eval.bag_input import BagError, BagFrames, choose_topics, open_reader
from depth_node.eval.bag_output import RGBD_TOPICS, BagWriter, rgbd_messages, write_rgbd
from depth_node.eval.metrics import EvalRange
from depth_node.eval.runner import EvalOptions, Evaluator, save_summary

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
BAGS = SHARED / "data" / "bags"
RGBD_DEV = SHARED / "data" / "rgbd_dev"
FASTDEPTH = SHARED / "models" / "fastdepth" / "fast_depth_224.tflite"
needs_shared = pytest.mark.skipif(not (BAGS.is_dir() and FASTDEPTH.is_file()), reason=f"{SHARED} (bags, FastDepth) is not present")
CLI = [sys.executable, "-m", "depth_node.tools.cli"]
NORMAL = np.array([0.0, -0.3, 1.0]) / np.linalg.norm([0.0, -0.3, 1.0])


def topics_of(bag: Path, **given: str):  # noqa: ANN201
    reader = open_reader(bag)
    try:
        return choose_topics(reader, **given)
    finally:
        reader.close()


def read_bag(bag: Path) -> dict[str, list]:
    """topic → deserialized messages, by rosbags (independent of the writer)."""
    reader = open_reader(bag)
    out: dict[str, list] = {}
    try:
        for conn, _, raw in reader.messages():
            out.setdefault(conn.topic, []).append(reader.deserialize(raw, conn.msgtype))
    finally:
        reader.close()
    return out


def fastdepth_pipeline() -> DepthPipeline:
    return DepthPipeline(load_estimator(REPO / "models" / "fastdepth.yaml"), PipelineConfig())


def node_values(**overrides: object) -> PipelineConfig:
    from depth_node.core.parameters import resolve

    return resolve([("test", overrides)])


# ------------------------------------------------------------------------------------------ GT fed back = perfect
def plane_bag(folder: Path, camera: PinholeCamera, frames: int = 3, gt_camera: PinholeCamera | None = None) -> Path:
    """Random RGB, and as GT the exact depth of the plane n·X = 2 m (optionally on another grid)."""
    rng = np.random.default_rng(0)
    gt_camera = gt_camera or camera
    with BagWriter(folder / "plane_bag") as writer:
        for i in range(frames):
            stamp = 1_700_000_000_000_000_000 + i * 100_000_000
            rgb = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
            depth = 1.0 / plane_disparity(gt_camera, NORMAL, 2.0)
            write_rgbd(writer, stamp, rgbd_messages(writer.typestore, stamp, rgb, depth, camera, depth_camera=gt_camera))
    return folder / "plane_bag"


@pytest.mark.parametrize("gt_grid", ["same", "half"])
def test_ground_truth_fed_back_as_the_prediction_scores_perfect(tmp_path: Path, gt_grid: str) -> None:
    camera = PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
    gt_camera = camera if gt_grid == "same" else camera.resized(32, 24)
    bag = plane_bag(tmp_path, camera, gt_camera=gt_camera)
    pipeline = DepthPipeline(load_estimator(plane_model(tmp_path, camera, NORMAL, 2.0)))  # predicts the plane exactly
    frames = BagFrames(bag, topics_of(bag))
    evaluation = Evaluator(pipeline, node_values(), frames, tmp_path / "out", EvalOptions(EvalRange(0.1, 80.0))).run()
    summary = save_summary(evaluation)
    assert summary["frames"] == {"images": 3, "scored": 3, "errors": 0, "dropped": 0, "without_ground_truth": 0, "unscored": 0}
    for mode, metrics in summary["metrics"].items():
        if gt_grid == "same":
            assert metrics["abs_rel"] == pytest.approx(0, abs=1e-6) and metrics["delta1"] == 1.0, mode
            assert metrics["rmse"] == pytest.approx(0, abs=1e-5), mode
        else:  # nearest-neighbour GT of a half-resolution grid: each pixel off by at most half a GT pixel's depth change
            assert metrics["abs_rel"] < 0.02 and metrics["delta1"] == 1.0, mode
    assert summary["coverage"] == 1.0


def test_sparse_scale_mode_evaluates_with_a_share_of_the_ground_truth_as_reference(tmp_path: Path) -> None:
    """An affine disparity model (twice the plane's true disparity: s = 0.5 recovers it) under scale.mode sparse: without a
    reference nothing is published; with 2 % of the GT pixels as the reference the metres come out exact."""
    from _models import write_card

    camera = PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
    bag = plane_bag(tmp_path, camera)
    plane_model(tmp_path, camera, NORMAL * 2.0, 2.0)        # disparity twice the true one ...
    card = write_card(tmp_path / "affine.yaml", "plane.onnx", {"space": "disparity", "invariance": "affine"})
    values = node_values(**{"scale.mode": "sparse"})
    frames = BagFrames(bag, topics_of(bag))
    for share, expected in ((0.0, None), (0.02, 0.0)):
        pipeline = DepthPipeline(load_estimator(card), PipelineConfig(scale_mode="sparse"))
        options = EvalOptions(EvalRange(0.1, 80.0), write_bag=False, thumbnails=False, sparse_reference=share)
        summary = save_summary(Evaluator(pipeline, values, frames, tmp_path / f"out{share}", options).run())
        if expected is None:
            assert summary["coverage"] == 0.0                  # NaN depth everywhere, never a guess ...
            assert summary["frames"]["unscored"] == summary["frames"]["images"] > 0   # ... and every frame counted
        else:
            assert summary["coverage"] == 1.0 and summary["metrics"]["metric"]["abs_rel"] == pytest.approx(0, abs=1e-4)


# ------------------------------------------------------------------------------------------ real bags
@needs_shared
def test_topics_are_found_by_type_and_reported() -> None:
    topics = topics_of(BAGS / "slambook_rgbd_ros2_mcap")
    assert (topics.image, topics.camera_info) == ("/camera/color/image_raw", "/camera/color/camera_info")
    assert (topics.depth, topics.depth_info) == ("/camera/aligned_depth_to_color/image_raw", "/camera/aligned_depth_to_color/camera_info")
    assert "raw /camera/color/image_raw preferred over compressed" in topics.describe()
    compressed = topics_of(BAGS / "slambook_rgbd_ros2_mcap", image="/camera/color/image_raw/compressed")
    assert compressed.image_type == "sensor_msgs/msg/CompressedImage" and compressed.camera_info == "/camera/color/camera_info"
    with pytest.raises(BagError, match="is not in the bag; it has: /camera/color/image_raw"):
        topics_of(BAGS / "slambook_rgbd_ros2_mcap", image="/nope")
    with pytest.raises(BagError, match="is sensor_msgs/msg/CameraInfo, expected sensor_msgs/msg/Image"):
        topics_of(BAGS / "slambook_rgbd_ros2_mcap", depth="/camera/color/camera_info")


def test_ambiguous_or_missing_topics_say_which_flag_to_use(tmp_path: Path) -> None:
    camera = PinholeCamera(32, 24, 30.0, 30.0, 15.5, 11.5)
    with BagWriter(tmp_path / "two") as writer:
        msgs = rgbd_messages(writer.typestore, 1, np.zeros((24, 32, 3), np.uint8), np.ones((24, 32), np.float32), camera)
        writer.write("/a/image_raw", "sensor_msgs/msg/Image", 1, msgs["image"])
        writer.write("/b/image_raw", "sensor_msgs/msg/Image", 1, msgs["image"])
    with pytest.raises(BagError, match="several camera images .*--image-topic"):
        topics_of(tmp_path / "two")
    with BagWriter(tmp_path / "none") as writer:
        writer.write("/depth", "sensor_msgs/msg/Image", 1, msgs["depth"])
    with pytest.raises(BagError, match="no colour camera image"):
        topics_of(tmp_path / "none")
    with pytest.raises(BagError, match="no bag at"):
        open_reader(tmp_path / "missing")
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(tmp_path / "empty", version=9, storage_plugin=StoragePlugin.MCAP) as empty:  # topics, no message
        for topic, msgtype in (("/camera/color/image_raw", "sensor_msgs/msg/Image"), ("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo")):
            empty.add_connection(topic, msgtype, typestore=writer.typestore)
    with pytest.raises(BagError, match=r"no message on its image topics \(/camera/color/image_raw: 0 messages\): an empty recording"):
        topics_of(tmp_path / "empty")


def test_ground_truth_of_another_shape_without_its_camera_info_is_refused_not_stretched(tmp_path: Path) -> None:
    """GT 64x40 for a 64x48 image and no GT camera_info: which 40 rows of the view it covers is unknown; it was
    stretched onto the image and scored. Now each frame says to give --gt-info-topic; the same GT at half size (a
    uniform rescale) is still taken as covering the image's view."""
    camera = PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
    for name, gt_size in (("other_shape", (64, 40)), ("half", (32, 24))):
        with BagWriter(tmp_path / name) as writer:
            msgs = rgbd_messages(writer.typestore, 1, np.zeros((48, 64, 3), np.uint8), np.full(gt_size[::-1], 2.0, np.float32), camera)
            for key in ("image", "camera_info", "depth"):                   # no depth camera_info
                topic, msgtype = RGBD_TOPICS[key]
                writer.write(topic, msgtype, 1, msgs[key])
        pipeline = DepthPipeline(load_estimator(plane_model(tmp_path, camera, NORMAL, 2.0)))
        frames = BagFrames(tmp_path / name, topics_of(tmp_path / name))
        rows = Evaluator(pipeline, node_values(), frames, tmp_path / f"out_{name}", EvalOptions(EvalRange(0.1, 80.0))).run().rows
        if name == "half":
            assert not rows[0].error and rows[0].score is not None
        else:
            assert rows[0].score is None and "ground truth is 64x40 but the image 64x48" in rows[0].error
            assert "--gt-info-topic" in rows[0].error


@needs_shared
def test_all_three_bag_formats_evaluate_and_agree(tmp_path: Path) -> None:
    summaries = {}
    for name in ("slambook_rgbd_ros2_mcap", "slambook_rgbd_ros2_sqlite3", "slambook_rgbd_ros1.bag"):
        run = subprocess.run([*CLI, "eval", str(BAGS / name), "-o", str(tmp_path / name), "-p", "model_card:=fastdepth",
                              "--no-points"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert "gt depth:    /camera/aligned_depth_to_color/image_raw" in run.stderr
        summaries[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    reference = summaries["slambook_rgbd_ros2_mcap"]
    assert reference["frames"]["scored"] == 5
    for name, summary in summaries.items():
        assert summary["metrics"] == reference["metrics"], name  # same pixels in, same numbers out
        assert summary["coverage"] == reference["coverage"]


@needs_shared
def test_output_bag_holds_the_inputs_and_what_the_node_publishes(tmp_path: Path) -> None:
    bag = BAGS / "slambook_rgbd_ros1.bag"                       # ROS 1 in, ROS 2 (mcap, CDR) out
    values = node_values(model_card="fastdepth", depth_encoding="16UC1")
    frames = BagFrames(bag, topics_of(bag))
    Evaluator(fastdepth_pipeline(), values, frames, tmp_path / "out").run()
    assert (tmp_path / "out" / "bag" / "metadata.yaml").is_file()
    out = read_bag(tmp_path / "out" / "bag")
    for topic in ("/camera/color/image_raw", "/camera/color/camera_info", "/camera/aligned_depth_to_color/image_raw",
                  "/depth/image", "/depth/camera_info", "/depth/confidence", "/depth/points"):
        assert len(out[topic]) == 5, topic
    source = read_bag(bag)
    for published, info, image in zip(out["/depth/image"], out["/depth/camera_info"], source["/camera/color/image_raw"]):
        assert published.header.stamp.sec == image.header.stamp.sec and published.header.stamp.nanosec == image.header.stamp.nanosec
        assert published.header.frame_id == image.header.frame_id == info.header.frame_id
        assert (published.encoding, published.width, published.height) == ("16UC1", 640, 480)
        assert list(info.k) == pytest.approx([518.0, 0, 325.5, 0, 519.0, 253.5, 0, 0, 1])
    # the recorded depth is the pipeline's, in millimetres (REP 118), for the same input image
    rgb = np.frombuffer(source["/camera/color/image_raw"][0].data, np.uint8).reshape(480, 640, 3)
    info = source["/camera/color/camera_info"][0]
    expected = fastdepth_pipeline().process(rgb, PinholeCamera(640, 480, info.K[0], info.K[4], info.K[2], info.K[5])).depth_m
    mm = np.frombuffer(out["/depth/image"][0].data, np.uint16).reshape(480, 640)
    np.testing.assert_array_equal(mm, np.where(np.isfinite(expected), np.rint(expected * 1000), 0).astype(np.uint16))
    cloud = out["/depth/points"][0]
    assert (cloud.height, cloud.width, [f.name for f in cloud.fields]) == (480, 640, ["x", "y", "z", "rgb"])


@needs_shared
def test_interrupted_run_leaves_a_readable_partial_result(tmp_path: Path) -> None:
    from depth_node.eval.report import write_report

    bag = BAGS / "slambook_rgbd_ros2_mcap"
    frames = BagFrames(bag, topics_of(bag))

    def ctrl_c_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    evaluation = Evaluator(fastdepth_pipeline(), node_values(), frames, tmp_path / "out").run(ctrl_c_after_two)
    summary = save_summary(evaluation)
    write_report(tmp_path / "out" / "report.html", [evaluation], [summary], "partial")
    assert evaluation.interrupted and summary["interrupted"] and summary["frames"]["images"] == 2
    with (tmp_path / "out" / "frames.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2
    assert len(read_bag(tmp_path / "out" / "bag")["/depth/image"]) == 2   # the bag was closed properly
    assert "interrupted — partial result over 2 frames" in (tmp_path / "out" / "report.html").read_text()


def test_a_bad_frame_is_reported_and_the_rest_scored(tmp_path: Path) -> None:
    camera = PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
    with BagWriter(tmp_path / "bag") as writer:
        for i in range(3):
            msgs = rgbd_messages(writer.typestore, i, np.zeros((48, 64, 3), np.uint8), np.full((48, 64), 2.0, np.float32), camera)
            if i == 1:
                msgs["image"].step = 10                                   # corrupt: step smaller than a row
            write_rgbd(writer, i, msgs)
    frames = BagFrames(tmp_path / "bag", topics_of(tmp_path / "bag"))
    pipeline = DepthPipeline(load_estimator(plane_model(tmp_path, camera, NORMAL, 2.0)))
    summary = save_summary(Evaluator(pipeline, node_values(), frames, tmp_path / "out").run())
    assert summary["frames"] == {"images": 3, "scored": 2, "errors": 1, "dropped": 0, "without_ground_truth": 0, "unscored": 0}
    rows = list(csv.DictReader((tmp_path / "out" / "frames.csv").open()))
    assert "InputError: step 10 is smaller than width" in rows[1]["error"] and rows[0]["error"] == ""


# ------------------------------------------------------------------------------------------ independent check
@needs_shared
def test_metrics_agree_with_an_independent_computation_on_rgbd_dev(tmp_path: Path) -> None:
    converted = subprocess.run([*CLI, "dataset-to-bag", str(RGBD_DEV), str(tmp_path / "bag"), "--real-only", "--scene", "indoor"],
                               capture_output=True, text=True, timeout=120)
    assert converted.returncode == 0, converted.stderr
    run = subprocess.run([*CLI, "eval", str(tmp_path / "bag"), "-o", str(tmp_path / "eval"), "-p", "model_card:=fastdepth",
                          "--max-depth", "10", "--no-bag"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader((tmp_path / "eval" / "frames.csv").open()))
    records = [r for r in json.loads((RGBD_DEV / "index.json").read_text()) if not r.get("synthetic") and r["scene"] == "indoor"]
    assert len(rows) == len(records) >= 6
    reference = {"metric": [], "affine": []}
    for row, record in zip(rows, records):
        rgb = cv2.imread(str(RGBD_DEV / record["rgb"]), cv2.IMREAD_COLOR)[..., ::-1].copy()
        raw = cv2.imread(str(RGBD_DEV / record["depth"]), cv2.IMREAD_UNCHANGED).astype(np.float64)
        gt = raw / 256.0
        pred = cv2.resize(fastdepth_reference(FASTDEPTH, rgb), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
        pred = pred.astype(np.float64)
        valid = (raw > 0) & (gt >= 1e-3) & (gt <= 10.0) & (pred > 0)
        p, g = pred[valid], gt[valid]
        s, t = np.polyfit(p, g, 1)                                           # least squares, another implementation
        for mode, d in (("metric", np.clip(p, 1e-3, 10.0)), ("affine", np.clip(s * p + t, 1e-3, 10.0))):
            ratio = np.maximum(d / g, g / d)
            expected = {"abs_rel": np.mean(np.abs(d - g) / g), "rmse": np.sqrt(np.mean((d - g) ** 2)),
                        "silog": 100 * np.std(np.log(d) - np.log(g)), "delta1": np.mean(ratio < 1.25)}
            for name, value in expected.items():
                assert float(row[f"{mode}_{name}"]) == pytest.approx(value, rel=2e-4, abs=1e-6), (record["id"], mode, name)
            reference[mode].append(expected["abs_rel"])
        assert float(row["affine_scale"]) == pytest.approx(s, rel=1e-6)
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for mode, values in reference.items():
        assert summary["metrics"][mode]["abs_rel"] == pytest.approx(np.mean(values), rel=2e-4)


# ------------------------------------------------------------------------------------------ folder datasets → bags
def synthetic_rgbd(n: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), rng.integers(0, 20000, (24, 32)).astype(np.uint16)) for _ in range(n)]


def write_tum(folder: Path, frames: list) -> None:
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    rgb_lines, depth_lines = ["# color images"], ["# depth maps"]
    for i, (rgb, depth) in enumerate(frames):
        t = 1305031102.0 + i * 0.1
        cv2.imwrite(str(folder / f"rgb/{t:.6f}.png"), rgb[..., ::-1])
        cv2.imwrite(str(folder / f"depth/{t + 0.004:.6f}.png"), depth)
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        depth_lines.append(f"{t + 0.004:.6f} depth/{t + 0.004:.6f}.png")
    (folder / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (folder / "depth.txt").write_text("\n".join(depth_lines) + "\n")


def write_kitti(folder: Path, frames: list) -> None:
    for sub in ("image", "groundtruth_depth", "intrinsics"):
        (folder / sub).mkdir(parents=True)
    for i, (rgb, depth) in enumerate(frames):
        stem = f"2011_09_26_drive_0002_sync_image_{i:010d}_image_02"
        cv2.imwrite(str(folder / "image" / f"{stem}.png"), rgb[..., ::-1])
        cv2.imwrite(str(folder / "groundtruth_depth" / f"{stem.replace('_image_', '_groundtruth_depth_', 1)}.png"), depth)
        (folder / "intrinsics" / f"{stem}.txt").write_text("721.5 0 16.5 0 721.5 12.5 0 0 1")


@pytest.mark.parametrize("layout", ["tum", "kitti", "rgbd_dev"])
def test_dataset_to_bag_round_trips_every_layout(tmp_path: Path, layout: str) -> None:
    frames = synthetic_rgbd()
    dataset = tmp_path / "rgbd_dataset_freiburg1_desk"
    scale = 5000.0 if layout == "tum" else 256.0
    if layout == "tum":
        write_tum(dataset, frames)
    elif layout == "kitti":
        write_kitti(dataset, frames)
    else:
        (dataset / "frames").mkdir(parents=True)
        records = []
        for i, (rgb, depth) in enumerate(frames):
            cv2.imwrite(str(dataset / f"frames/{i}.png"), rgb[..., ::-1])
            cv2.imwrite(str(dataset / f"frames/{i}_depth.png"), depth)
            records.append({"id": str(i), "rgb": f"frames/{i}.png", "depth": f"frames/{i}_depth.png", "width": 32, "height": 24,
                            "fx": 30.0, "fy": 31.0, "cx": 15.5, "cy": 11.5, "synthetic": i == 2})
        (dataset / "index.json").write_text(json.dumps(records))
    run = subprocess.run([*CLI, "dataset-to-bag", str(dataset), str(tmp_path / "bag")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"wrote 3 frames ({layout})" in run.stdout
    out = read_bag(tmp_path / "bag")
    expected_k = {"tum": [517.3, 0, 318.6, 0, 516.5, 255.3, 0, 0, 1], "kitti": [721.5, 0, 16.5, 0, 721.5, 12.5, 0, 0, 1],
                  "rgbd_dev": [30.0, 0, 15.5, 0, 31.0, 11.5, 0, 0, 1]}[layout]
    for (rgb, depth), image, gt, info in zip(frames, out["/camera/color/image_raw"], out["/camera/aligned_depth_to_color/image_raw"],
                                             out["/camera/color/camera_info"]):
        np.testing.assert_array_equal(np.frombuffer(image.data, np.uint8).reshape(24, 32, 3), rgb)
        metres = np.frombuffer(gt.data, np.float32).reshape(24, 32)
        np.testing.assert_array_equal(np.isnan(metres), depth == 0)
        np.testing.assert_allclose(metres[depth > 0], depth[depth > 0] / scale, rtol=1e-7)
        assert list(info.k) == pytest.approx(expected_k)
    if layout == "tum":
        assert out["/camera/color/image_raw"][1].header.stamp.sec == 1305031102   # the dataset's own times
    if layout == "rgbd_dev":
        filtered = subprocess.run([*CLI, "dataset-to-bag", str(dataset), str(tmp_path / "real"), "--real-only"],
                                  capture_output=True, text=True, timeout=120)
        assert "wrote 2 frames" in filtered.stdout


def test_dataset_to_bag_says_what_is_wrong(tmp_path: Path) -> None:
    run = subprocess.run([*CLI, "dataset-to-bag", str(tmp_path), str(tmp_path / "bag")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "none of the layouts rgbd_dev, tum, kitti" in run.stderr
    write_tum(tmp_path / "plain_name", synthetic_rgbd(1))
    run = subprocess.run([*CLI, "dataset-to-bag", str(tmp_path / "plain_name"), str(tmp_path / "bag")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--intrinsics FX,FY,CX,CY" in run.stderr


# ------------------------------------------------------------------------------------------ CLI, compare, report
@needs_shared
def test_compare_reports_two_configurations_side_by_side(tmp_path: Path) -> None:
    import yaml

    base = yaml.safe_load((REPO / "config" / "depth.yaml").read_text())
    for name, resolution in (("full", "input"), ("coarse", "model")):
        config = json.loads(json.dumps(base))
        config["/**"]["ros__parameters"].update(model_card="fastdepth", output_resolution=resolution)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run([*CLI, "eval", str(BAGS / "slambook_rgbd_ros2_sqlite3"), "--compare", str(tmp_path / "full.yaml"),
                          str(tmp_path / "coarse.yaml"), "-o", str(tmp_path / "cmp"), "--no-bag"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    full = json.loads((tmp_path / "cmp" / "full" / "metrics.json").read_text())
    coarse = json.loads((tmp_path / "cmp" / "coarse" / "metrics.json").read_text())
    assert full["metrics"] != coarse["metrics"]                     # scored on different grids
    report = (tmp_path / "cmp" / "report.html").read_text()
    assert "full vs coarse" in report and report.count("data:image/png;base64") >= 4 and "data:image/jpeg;base64" in report
    assert f"{full['metrics']['metric']['abs_rel']:.4g}" in report and f"{coarse['metrics']['metric']['abs_rel']:.4g}" in report


def test_eval_help_and_bad_arguments() -> None:
    help_text = subprocess.run([*CLI, "eval", "--help"], capture_output=True, text=True, timeout=60).stdout
    for flag in ("--compare", "--gt-topic", "--slop", "--crop", "--max-depth", "--no-bag", "examples:"):
        assert flag in help_text
    bad = subprocess.run([*CLI, "eval", "/nonexistent/bag", "-p", "model_card:=fastdepth"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no bag at /nonexistent/bag" in bad.stderr
    typo = subprocess.run([*CLI, "eval", "/x", "-p", "scale.mod:=fixed"], capture_output=True, text=True, timeout=60)
    assert typo.returncode == 2 and "unknown parameter 'scale.mod' (did you mean 'scale.mode'?)" in typo.stderr


def _compared_report(tmp_path: Path) -> tuple[Path, list[dict]]:
    """A two-configuration report on one bag (the exact plane, and a model 10 % too far), as --compare writes it."""
    from depth_node.eval.report import write_report

    camera = PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
    bag = plane_bag(tmp_path, camera, frames=6)
    evaluations, summaries = [], []
    for name, offset in (("exact", 2.0), ("far", 2.2)):
        folder = tmp_path / name
        folder.mkdir()
        pipeline = DepthPipeline(load_estimator(plane_model(folder, camera, NORMAL, offset)))
        evaluation = Evaluator(pipeline, node_values(), BagFrames(bag, topics_of(bag)), tmp_path / f"out_{name}", label=name).run()
        evaluations.append(evaluation)
        summaries.append(save_summary(evaluation))
    return write_report(tmp_path / "report.html", evaluations, summaries, "exact vs far"), summaries


def test_the_report_says_what_made_it_and_what_each_number_means(tmp_path: Path) -> None:
    report, summaries = _compared_report(tmp_path)
    run = summaries[0]["run"]
    assert set(run) == {"depth_node_version", "commit", "date_utc", "command"} and run["date_utc"].endswith("+00:00")
    assert json.loads((tmp_path / "out_exact" / "metrics.json").read_text())["run"]["depth_node_version"] == run["depth_node_version"]
    text = report.read_text()
    assert f"depth_node {run['depth_node_version']}" in text and run["date_utc"] in text
    assert "what it means" in text and "share of valid ground-truth pixels" in text and "divided by the model's own time" in text
    assert text.count("data:image/png;base64,") >= 3                    # error, δ1 and latency plots (matplotlib)
    assert "<svg" not in text


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (make browser, as root)")
def test_report_renders_in_a_real_browser_with_one_colour_per_configuration(tmp_path: Path) -> None:
    """Headless Chromium opens the compared report: the page draws, its images decode, and both configurations'
    colours (matplotlib's C0 blue and C1 orange) are on screen — in the hand-drawn SVG two of five series shared one."""
    report, _ = _compared_report(tmp_path)
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1250,3200", report.as_uri()],
                   capture_output=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[:2] == (3200, 1250)
    assert (picture < 128).any(axis=2).mean() > 0.01                 # text, plots and thumbnails drew something

    def shows(rgb: tuple[int, int, int]) -> bool:
        return bool((np.abs(picture[..., ::-1].astype(int) - rgb).max(axis=2) <= 12).sum() > 50)

    assert shows((31, 119, 180)) and shows((255, 127, 14)), "both configurations' line colours"


# ------------------------------------------------------------------------------------------ --live: through a node over DDS
@pytest.fixture(scope="module")
def synth_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "room"
    run = subprocess.run([*CLI, "synth", str(out), "--frames", "4", "--size", "160x120", "--no-folder"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return out / "bag"


def test_live_scores_what_the_node_publishes_and_matches_offline(tmp_path: Path, synth_bag: Path, conv_card: Path) -> None:
    results = {}
    for mode in ("offline", "live"):
        extra = ["--live"] if mode == "live" else []
        run = subprocess.run([*CLI, "eval", str(synth_bag), "-o", str(tmp_path / mode), "-p", f"model_card:={conv_card}",
                              "--max-depth", "20", *extra], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr + (tmp_path / mode / "node.log").read_text() if mode == "live" else run.stderr
        results[mode] = json.loads((tmp_path / mode / "metrics.json").read_text())
    live, offline = results["live"], results["offline"]
    assert live["frames"] == {"images": 4, "scored": 4, "errors": 0, "dropped": 0, "without_ground_truth": 0, "unscored": 0}
    for mode in offline["metrics"]:
        for name, value in offline["metrics"][mode].items():
            assert live["metrics"][mode][name] == pytest.approx(value, rel=1e-4, abs=1e-6), (mode, name)
    assert "roundtrip" in live["latency_ms"] and "infer" not in live["latency_ms"]  # timed at the DDS boundary
    published = read_bag(tmp_path / "live" / "bag")                    # what the node published, recorded
    assert len(published["/depth/image"]) == len(published["/depth/camera_info"]) == len(published["/depth/points"]) == 4
    assert "subscribed to /depth_node_harness_" in (tmp_path / "live" / "node.log").read_text()


def test_frames_without_a_valid_prediction_are_counted_and_none_scored_exits_1(tmp_path: Path, synth_bag: Path,
                                                                              model_dir: Path) -> None:
    """A model with no metric scale (sparse mode, no reference) publishes NaN everywhere: eval says so, counts the
    frames as unscored with coverage 0, and exits 1 instead of reporting coverage 1 over nothing."""
    from _models import conv_model

    folder = model_dir / "affine_eval"
    folder.mkdir(exist_ok=True)
    card = conv_model(folder, invariance="affine")
    run = subprocess.run([*CLI, "eval", str(synth_bag), "-o", str(tmp_path / "out"), "-p", f"model_card:={card}",
                          "-p", "scale.mode:=sparse", "--no-bag"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert "frame(s) have ground truth but no valid prediction" in run.stderr and "ERROR: no frame of" in run.stderr
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["frames"]["unscored"] == summary["frames"]["images"] == 4 and summary["coverage"] == 0.0
    assert "nothing to score" in (tmp_path / "out" / "report.html").read_text()


def test_live_counts_images_the_node_does_not_answer_in_time(tmp_path: Path, synth_bag: Path, conv_card: Path) -> None:
    run = subprocess.run([*CLI, "eval", str(synth_bag), "-o", str(tmp_path / "out"), "-p", f"model_card:={conv_card}", "--live",
                          "--live-timeout", "0.0001", "--no-bag"], capture_output=True, text=True, timeout=300)
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert run.returncode == (0 if summary["frames"]["scored"] else 1), run.stderr       # 1: nothing could be scored
    assert summary["frames"]["dropped"] + summary["frames"]["scored"] == 4 and summary["frames"]["dropped"] >= 1
    rows = list(csv.DictReader((tmp_path / "out" / "frames.csv").open()))
    assert any(r["error"].startswith("DroppedFrame: no /depth/image") for r in rows)


def _eval_in_its_own_process(tmp_path: Path, card: Path, frames: int = 150) -> tuple[subprocess.Popen, Path]:
    """`depth-node eval` of a rendered bag of ``frames`` frames, started and left running once 3 frames are done."""
    import time

    bag = tmp_path / "synth"
    subprocess.run([*CLI, "synth", str(bag), "--frames", str(frames), "--size", "320x240", "--no-folder"], check=True,
                   capture_output=True, timeout=300)
    out = tmp_path / "out"
    process = subprocess.Popen([*CLI, "eval", str(bag / "bag"), "-o", str(out), "-p", f"model_card:={card}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while time.monotonic() < end and (not (out / "frames.csv").is_file() or len((out / "frames.csv").read_text().splitlines()) < 4):
        time.sleep(0.05)
    return process, out


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_on_the_command_leaves_a_readable_partial_report_and_bag(tmp_path: Path, conv_card: Path,
                                                                                   sig: str) -> None:
    """SIGINT is what Ctrl-C sends; SIGTERM what `timeout`, systemd and CI send (it lost everything before)."""
    import signal

    process, out = _eval_in_its_own_process(tmp_path, conv_card)
    process.send_signal(getattr(signal, sig))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted: the outputs above hold the frames done so far" in stderr
    assert ("Ctrl-C" if sig == "SIGINT" else "SIGTERM") + ": stopping after this frame" in stderr
    summary = json.loads((out / "metrics.json").read_text())
    done = summary["frames"]["images"]
    assert summary["interrupted"] and 3 <= done < 150
    assert len(read_bag(out / "bag")["/depth/image"]) == done          # the bag was closed and indexed
    assert "interrupted — partial result" in (out / "report.html").read_text()


def test_the_output_bag_of_an_eval_killed_with_sigkill_is_recovered(tmp_path: Path, conv_card: Path) -> None:
    """SIGKILL leaves the output mcap without index or footer and no metadata.yaml (rosbags cannot open it):
    `depth-node bag-recover` writes a complete bag of every frame written before the kill, and `depth-node eval` of
    the killed bag recovers it by itself, saying so."""
    import signal

    process, out = _eval_in_its_own_process(tmp_path, conv_card)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    done = len((out / "frames.csv").read_text().splitlines()) - 1
    assert not (out / "bag" / "metadata.yaml").exists()
    with pytest.raises(BagError):
        read_bag(out / "bag")
    recovered = tmp_path / "recovered"
    result = subprocess.run([*CLI, "bag-recover", str(out / "bag"), str(recovered)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "recovered into" in result.stdout, result.stderr
    messages = read_bag(recovered)
    depth = messages["/depth/image"]
    assert done - 2 <= len(depth) <= done + 1, (done, len(depth))      # at most the chunk being written is lost
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in depth]
    assert stamps == sorted(stamps) and len(messages["/camera/color/image_raw"]) >= len(depth)
    again = subprocess.run([*CLI, "eval", str(out / "bag"), "-o", str(tmp_path / "again"), "--no-bag", "-p",
                            f"model_card:={conv_card}", "--gt-topic", "/camera/aligned_depth_to_color/image_raw"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "cannot be opened as it is" in again.stderr and "recovered into" in again.stderr
    summary = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert summary["frames"]["images"] == len(messages["/camera/color/image_raw"])


def _damage_first_chunk(mcap: Path) -> None:
    """Overwrite the start of the first chunk's records (the framing of its first messages), as a bad disk sector
    would; the chunk's CRC, when the writer stored one, no longer matches either."""
    import struct

    data = bytearray(mcap.read_bytes())
    pos = 8  # after the magic
    while pos < len(data):
        opcode, length = data[pos], struct.unpack("<Q", data[pos + 1:pos + 9])[0]
        if opcode == 0x06:  # Chunk: start, end, uncompressed size, crc, compression (string), records length, records
            body = pos + 9
            compression = struct.unpack("<I", data[body + 28:body + 32])[0]
            records = body + 32 + compression + 8
            data[records:records + 64] = b"\xff" * 64
            mcap.write_bytes(bytes(data))
            return
        pos += 9 + length
    raise AssertionError("no chunk in the bag")


def test_damaged_and_cut_bags_are_reported_not_crashed(tmp_path: Path) -> None:
    camera = PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)
    bag = plane_bag(tmp_path / "damaged", camera)
    mcap = next(bag.glob("*.mcap"))
    topics = topics_of(bag)
    _damage_first_chunk(mcap)
    frames = BagFrames(bag, topics)
    assert frames.problems and "the bag is damaged after" in frames.problems[0], frames.problems
    assert len(list(frames)) <= 3                                   # what reads before the damage, and no exception
    cut = plane_bag(tmp_path / "cut", camera)
    mcap = next(cut.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(BagError, match="a cut-short rosbag2 recording"):
        BagFrames(cut, topics)
    result = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "eval", str(bag), "-o", str(tmp_path / "out"),
                             "--no-bag"], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr and "the bag is damaged" in result.stderr, result.stderr


@pytest.mark.parametrize("storage, kept", [("mcap", 0.9), ("sqlite3", 0.5)])
def test_a_bag_cut_short_is_scored_as_far_as_it_reads(tmp_path: Path, storage: str, kept: float) -> None:
    """An mcap cut at 90 % or an SQLite bag cut at 50 % (a copy that stopped): eval scored nothing before; now it
    recovers what the file holds, scores those frames, and says what was lost."""
    camera = PinholeCamera(160, 120, 125.0, 125.0, 79.5, 59.5)
    rng = np.random.default_rng(0)
    whole = tmp_path / "whole"
    with BagWriter(whole, storage) as writer:
        for i in range(12):
            stamp = 1_700_000_000_000_000_000 + i * 100_000_000
            rgb = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
            write_rgbd(writer, stamp, rgbd_messages(writer.typestore, stamp, rgb, 1.0 / plane_disparity(camera, NORMAL, 2.0), camera))
    cut = tmp_path / "cut"
    cut.mkdir()
    for path in whole.iterdir():
        data = path.read_bytes()
        (cut / path.name).write_bytes(data if path.name == "metadata.yaml" else data[: int(len(data) * kept)])
    result = subprocess.run([*CLI, "eval", str(cut), "-o", str(tmp_path / "out"), "--no-bag"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "cannot be opened as it is" in result.stderr and "lost:" in result.stderr, result.stderr
    frames = json.loads((tmp_path / "out" / "metrics.json").read_text())["frames"]
    readable = read_bag(tmp_path / "out" / "recovered" / "cut")                  # what eval said it recovered
    assert 0 < len(readable["/camera/color/image_raw"]) < 12
    assert frames["images"] == len(readable["/camera/color/image_raw"]), frames
    assert frames["scored"] == len(readable["/camera/aligned_depth_to_color/image_raw"]), frames  # each with its image


def test_a_recorded_depth_topic_is_scored_beside_the_node(tmp_path: Path, synth_bag: Path, conv_card: Path) -> None:
    """--prediction-topic scores a depth image already in the bag (here: the /depth/image an earlier eval recorded)
    with the same protocol, in its own folder, and beside the node's configuration in one report. The earlier run's
    published metres, scored from the bag, give that run's metrics."""
    first = subprocess.run([*CLI, "eval", str(synth_bag), "-o", str(tmp_path / "first"), "-p", f"model_card:={conv_card}",
                            "--no-points", "--max-depth", "20"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    run = subprocess.run([*CLI, "eval", str(tmp_path / "first" / "bag"), "-o", str(tmp_path / "vs"), "-p", f"model_card:={conv_card}",
                          "--prediction-topic", "/depth/image", "--gt-topic", "/camera/aligned_depth_to_color/image_raw",
                          "--max-depth", "20", "--no-bag"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "recorded:    /depth/image" in run.stderr
    earlier = json.loads((tmp_path / "first" / "metrics.json").read_text())
    recorded = json.loads((tmp_path / "vs" / "recorded_depth_image" / "metrics.json").read_text())
    again = json.loads((tmp_path / "vs" / "test-model" / "metrics.json").read_text())
    assert recorded["frames"] == earlier["frames"] and recorded["backend"] == "recorded in the bag"
    for name, value in earlier["metrics"]["metric"].items():
        assert recorded["metrics"]["metric"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
        assert again["metrics"]["metric"][name] == value, name
    report = (tmp_path / "vs" / "report.html").read_text()
    assert "test-model vs recorded /depth/image" in report
