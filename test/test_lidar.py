"""LiDAR as depth: rigid transforms and their tree (tf2's lookups, from a bag's /tf and /tf_static), PointCloud2
decoding of any layout, projection into a camera with a z-buffer and the occlusion test — against exact synthetic
geometry and the rendered depth of the same scene."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from depth_node.core.camera import PinholeCamera
from depth_node.core.lidar import project_points
from depth_node.core.transforms import RigidTransform, TransformError, TransformTree, quaternion_from_rotation, rotation_from_quaternion
from depth_node.errors import InputError
from depth_node.eval.bag_output import lidar_cloud_message
from depth_node.ros.convert import cloud_to_points
from depth_node.synth.lidar import LINK_FROM_OPTICAL, LidarSpec, scan
from depth_node.synth.render import render, trajectory
from depth_node.synth.scene import SCENE_KINDS


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return rotation_from_quaternion(*q)


def test_quaternions_round_trip_and_match_the_axis_angle_formula() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        r = random_rotation(rng)
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
        assert np.allclose(rotation_from_quaternion(*quaternion_from_rotation(r)), r)
    # 90° about z (x, y, z, w) = (0, 0, sin 45°, cos 45°): x → y
    quarter = rotation_from_quaternion(0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4))
    assert np.allclose(quarter @ [1, 0, 0], [0, 1, 0])
    with pytest.raises(ValueError, match="no rotation"):
        rotation_from_quaternion(0, 0, 0, 0)


def test_transforms_compose_invert_parse_and_interpolate() -> None:
    rng = np.random.default_rng(1)
    a = RigidTransform(random_rotation(rng), rng.normal(size=3))
    b = RigidTransform(random_rotation(rng), rng.normal(size=3))
    p = rng.normal(size=(10, 3))
    assert np.allclose((a @ b).apply(p), a.apply(b.apply(p)))
    assert np.allclose(a.inverse().apply(a.apply(p)), p)
    parsed = RigidTransform.parse("0.1, -0.2, 0.3, 0, 0, 0.7071068, 0.7071068")
    assert np.allclose(parsed.apply([[1, 0, 0]]), [[0.1, 0.8, 0.3]])
    with pytest.raises(ValueError, match="x,y,z,qx,qy,qz,qw"):
        RigidTransform.parse("1,2,3")
    # halfway between identity and 90° about z with a 2 m move: 45° and 1 m
    quarter = RigidTransform(rotation_from_quaternion(0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)), np.array([2.0, 0, 0]))
    half = RigidTransform().interpolated(quarter, 0.5)
    assert np.allclose(half.apply([[1, 0, 0]]), [[1 + math.cos(math.pi / 4), math.sin(math.pi / 4), 0]])


def test_the_tree_chains_static_and_moving_edges_as_tf2_does() -> None:
    rng = np.random.default_rng(2)
    link_from_lidar = RigidTransform(random_rotation(rng), np.array([-0.05, 0.0, 0.25]))
    tree = TransformTree()
    tree.add("camera_link", "camera_color_optical_frame", LINK_FROM_OPTICAL)
    tree.add("/camera_link", "lidar_link", link_from_lidar)  # a leading slash (ROS 1 bags) names the same frame
    optical_from_lidar = tree.lookup("camera_color_optical_frame", "lidar_link")
    assert np.allclose(optical_from_lidar.rotation, (LINK_FROM_OPTICAL.inverse() @ link_from_lidar).rotation)
    assert np.allclose(tree.lookup("lidar_link", "camera_color_optical_frame").apply([[1, 2, 3]]),
                       optical_from_lidar.inverse().apply([[1, 2, 3]]))
    # a moving base: odom → camera_link sampled at 0 and 1 s, looked up between and across time
    tree.add("odom", "camera_link", RigidTransform(translation=np.array([0.0, 0, 0])), stamp_ns=0)
    tree.add("odom", "camera_link", RigidTransform(translation=np.array([1.0, 0, 0])), stamp_ns=1_000_000_000)
    assert tree.moves("odom", "lidar_link") and not tree.moves("camera_link", "lidar_link")
    assert np.allclose(tree.lookup("odom", "camera_link", 250_000_000).translation, [0.25, 0, 0])
    # a point seen by the LiDAR at 0.2 s, from where the camera was at 0.6 s: 0.4 m further back along x
    point_lidar = np.array([[3.0, 0.5, -0.2]])
    at_same = tree.lookup("camera_link", "lidar_link").apply(point_lidar)
    across = tree.lookup_across_time("camera_link", 600_000_000, "lidar_link", 200_000_000, "odom").apply(point_lidar)
    assert np.allclose(across, at_same - [0.4, 0, 0])
    with pytest.raises(TransformError, match="not at 2.000 s"):
        tree.lookup("odom", "camera_link", 2_000_000_000)
    with pytest.raises(TransformError, match="'base_link' is in no transform"):
        tree.lookup("base_link", "lidar_link")


def test_clouds_of_any_layout_decode_to_their_points() -> None:
    typestore = get_typestore(Stores.ROS2_KILTED)
    rng = np.random.default_rng(3)
    points = rng.normal(size=(100, 3)).astype(np.float32)
    msg = lidar_cloud_message(typestore, 5, points, np.arange(100, dtype=np.uint16), "lidar_link")  # 18-byte points
    assert np.array_equal(cloud_to_points(msg), points.astype(np.float64))
    # big-endian float64, organized 2 × 3, rows padded to 80 bytes (the last one not), one point NaN (dropped)
    T = typestore.types
    grid = rng.normal(size=(2, 3, 3))
    grid[1, 2] = np.nan
    data = np.zeros((2, 80), np.uint8)
    for row in range(2):
        data[row, :3 * 24] = np.frombuffer(grid[row].astype(">f8").tobytes(), np.uint8)
    fields = [T["sensor_msgs/msg/PointField"](name=n, offset=8 * i, datatype=8, count=1) for i, n in enumerate("xyz")]
    big = T["sensor_msgs/msg/PointCloud2"](header=msg.header, height=2, width=3, fields=fields, is_bigendian=True, point_step=24,
                                           row_step=80, data=data.reshape(-1)[:80 + 72], is_dense=False)
    assert np.allclose(cloud_to_points(big), grid.reshape(-1, 3)[:5])
    short = T["sensor_msgs/msg/PointCloud2"](header=msg.header, height=1, width=10, fields=fields, is_bigendian=False,
                                             point_step=24, row_step=240, data=np.zeros(100, np.uint8), is_dense=True)
    with pytest.raises(InputError, match="100 bytes of data for 1x10 points"):
        cloud_to_points(short)
    no_z = T["sensor_msgs/msg/PointCloud2"](header=msg.header, height=1, width=1, fields=fields[:2], is_bigendian=False,
                                            point_step=24, row_step=24, data=np.zeros(24, np.uint8), is_dense=True)
    with pytest.raises(InputError, match="no z field"):
        cloud_to_points(no_z)


def test_projection_puts_each_point_in_its_pixel_and_keeps_the_nearest() -> None:
    camera = PinholeCamera(8, 6, 4.0, 4.0, 3.5, 2.5)
    # points in the optical frame at known pixels: (u, v, z) → x = (u − cx) z / fx
    pixels = np.array([[0, 0, 2.0], [7, 5, 3.0], [3, 2, 4.0], [3, 2, 1.5], [10, 2, 2.0], [3, 2, -1.0]])
    xyz = np.stack([(pixels[:, 0] - 3.5) * pixels[:, 2] / 4, (pixels[:, 1] - 2.5) * pixels[:, 2] / 4, pixels[:, 2]], 1)
    projection = project_points(xyz, camera, occlusion_radius_px=0)
    expected = np.full((6, 8), np.nan, np.float32)
    expected[0, 0], expected[5, 7], expected[2, 3] = 2.0, 3.0, 1.5  # outside the image and behind the camera: dropped
    assert np.array_equal(projection.depth_m, expected, equal_nan=True)
    assert (projection.points, projection.in_view, projection.occluded) == (6, 4, 0)
    # the same points seen from a LiDAR 1 m to the camera's left (optical −x): the extrinsic carries them back
    lidar_from_optical = RigidTransform(translation=np.array([1.0, 0, 0]))
    moved = project_points(lidar_from_optical.apply(xyz), camera, lidar_from_optical.inverse(), occlusion_radius_px=0)
    assert np.allclose(moved.depth_m, expected, equal_nan=True)


def test_the_occlusion_test_drops_far_points_among_near_ones() -> None:
    camera = PinholeCamera(40, 30, 30.0, 30.0, 19.5, 14.5)
    v, u = np.mgrid[0:30:2, 0:40:2]  # a grid of points, every other pixel: a wall at 4 m
    z = np.full(u.shape, 4.0)
    z[:, 8:12] = 1.0   # a near post (columns 16..22), with wall points seen between its points (every other pixel)
    wall_between = np.zeros((30, 40), bool)
    near = np.stack([(u - 19.5) * z / 30, (v - 14.5) * z / 30, z], -1).reshape(-1, 3)
    seen_through = np.stack([(u[:, 8:11] + 1 - 19.5) * 4.0 / 30, (v[:, 8:11] - 14.5) * 4.0 / 30, np.full(v[:, 8:11].shape, 4.0)], -1)
    wall_between[v[:, 8:11], u[:, 8:11] + 1] = True
    points = np.concatenate([near, seen_through.reshape(-1, 3)])
    kept = project_points(points, camera, occlusion_radius_px=2)
    assert not np.isfinite(kept.depth_m[wall_between]).any()  # hidden behind the post from the camera: gone
    assert np.isfinite(kept.depth_m[v[:, 8:12], u[:, 8:12]]).all()  # the post itself stays
    assert np.isfinite(kept.depth_m[v[:, 0:5], u[:, 0:5]]).all()  # the wall away from the post stays
    assert kept.occluded >= wall_between.sum()
    assert np.isfinite(project_points(points, camera, occlusion_radius_px=0).depth_m[wall_between]).all()


@pytest.mark.parametrize("kind", ["room", "street"])
def test_a_rendered_lidar_projects_onto_the_rendered_depth(kind: str) -> None:
    """The synthetic LiDAR (mounted 25 cm above and 5 cm behind the camera, no range noise) projected through its
    extrinsic lands on the depth the camera renders: a pixel's depth is the point's, so the residual is the depth
    change within a pixel (slanted floors), plus the points the camera cannot see that the occlusion test leaves."""
    rng = np.random.default_rng(0)
    scene = SCENE_KINDS[kind](rng)
    camera = PinholeCamera.from_hfov(320, 240, 70.0)
    pose = trajectory(scene, 5, 1.0, 5.0, rng)[2]
    _, depth = render(scene, camera, pose)
    spec = LidarSpec(range_noise_m=0.0)
    points, rings = scan(scene, pose, spec, np.random.default_rng(1))
    assert points.dtype == np.float32 and rings.max() == spec.rings - 1
    projection = project_points(points, camera, spec.optical_from_lidar())
    landed = np.isfinite(projection.depth_m)
    assert 0.005 < projection.density < 0.2
    truth = depth[landed]  # +inf where the camera's pixel centre sees sky (a point on a silhouette's pixel): an error
    with np.errstate(invalid="ignore"):
        error = np.where(np.isfinite(truth), np.abs(projection.depth_m[landed] - truth) / truth, np.inf)
    assert np.median(error) < 0.005 and np.mean(error > 0.05) < 0.02


def test_a_synth_bag_with_a_lidar_carries_its_cloud_and_the_extrinsic_in_tf_static(tmp_path: Path) -> None:
    from depth_node.eval.bag_input import open_reader
    from depth_node.eval.bag_tf import transforms_in_bag
    from depth_node.synth.writer import SynthSpec, write

    spec = LidarSpec(rings=8, mount_xyz=(-0.1, 0.05, 0.3))
    write(SynthSpec(scenes=("street",), frames=2, width=80, height=60, lidar=spec), tmp_path / "drive", folder=False)
    tree = transforms_in_bag(tmp_path / "drive" / "bag")
    optical_from_lidar = tree.lookup("camera_color_optical_frame", "lidar_link")
    assert np.allclose(optical_from_lidar.rotation, spec.optical_from_lidar().rotation, atol=1e-9)
    assert np.allclose(optical_from_lidar.translation, spec.optical_from_lidar().translation, atol=1e-9)
    reader = open_reader(tmp_path / "drive" / "bag")
    try:
        clouds = [c for c in reader.connections if c.topic == "/lidar/points"]
        assert clouds and clouds[0].msgcount == 2 and clouds[0].msgtype == "sensor_msgs/msg/PointCloud2"
        raw = next(reader.messages(connections=clouds))[2]
        cloud = reader.deserialize(raw, clouds[0].msgtype)
        assert cloud.header.frame_id == "lidar_link" and len(cloud_to_points(cloud)) > 1000
    finally:
        reader.close()


# --- eval with a LiDAR as the ground truth -------------------------------------------------------------------------

CLI = [sys.executable, "-m", "depth_node.tools.cli"]


@pytest.fixture(scope="module")
def lidar_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A room and a street, 3 frames each at 160×120, with the exact depth image and a 32-beam LiDAR 25 cm above and
    5 cm behind the camera (2 cm range noise), placed by /tf_static."""
    from depth_node.synth.writer import SynthSpec, write

    folder = tmp_path_factory.mktemp("lidar") / "drive"
    write(SynthSpec(scenes=("room", "street"), frames=3, width=160, height=120, lidar=LidarSpec()), folder, folder=False)
    return folder / "bag"


def eval_cli(*args: str, bag: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "eval", *args, *([] if bag else ["--no-bag"])], capture_output=True, text=True, timeout=300)


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_eval_against_the_cloud_scores_the_exact_depth_as_nearly_perfect(tmp_path: Path, lidar_bag: Path) -> None:
    """The rendered depth image, scored as a recorded prediction against the projected LiDAR: what is left is the
    range noise, the depth change within a pixel and the hidden points the occlusion test leaves."""
    run = eval_cli(str(lidar_bag), "-o", str(tmp_path / "exact"), "--gt-cloud-topic", "/lidar/points",
                   "--prediction-topic", "/camera/aligned_depth_to_color/image_raw")
    assert run.returncode == 0, run.stderr
    assert "gt cloud:    /lidar/points" in run.stderr
    recorded = metrics(next((tmp_path / "exact").glob("*aligned_depth*")))
    assert recorded["frames"]["scored"] == 6
    assert recorded["metrics"]["metric"]["abs_rel"] < 0.02 and recorded["metrics"]["metric"]["delta1"] > 0.98
    assert 0.02 < recorded["gt_density"]["p50"] < 0.3
    assert recorded["topics"]["cloud"] == "/lidar/points" and "tf_static" in recorded["topics"]["extrinsic"]


def test_a_model_scores_the_same_against_the_cloud_as_against_the_depth_image(tmp_path: Path, lidar_bag: Path) -> None:
    image = eval_cli(str(lidar_bag), "-o", str(tmp_path / "image"))
    cloud = eval_cli(str(lidar_bag), "-o", str(tmp_path / "cloud"), "--gt-cloud-topic", "/lidar/points")
    assert image.returncode == 0 and cloud.returncode == 0, image.stderr + cloud.stderr
    assert "not used: the depth image is the ground truth" in image.stderr  # the default, said
    by_image, by_cloud = metrics(tmp_path / "image"), metrics(tmp_path / "cloud")
    # metres as published: within 10 % of each other (the LiDAR samples rows of the image, up to 100 m). Aligned
    # scores are not compared: a scale and shift fitted to the beams' rows is another fit than the whole image's.
    a, b = by_image["metrics"]["metric"]["abs_rel"], by_cloud["metrics"]["metric"]["abs_rel"]
    assert abs(a - b) < 0.1 * a, (a, b)
    rows = list(csv.DictReader((tmp_path / "cloud" / "frames.csv").open()))
    assert all(0.02 < float(r["gt_density"]) < 0.3 for r in rows)
    thumb = cv2.imread(str(tmp_path / "cloud" / "thumbs" / "000000.jpg"))
    assert thumb is not None and thumb.shape[1] > 3 * thumb.shape[0]
    placed = eval_cli(str(lidar_bag), "-o", str(tmp_path / "with_bag"), "--gt-cloud-topic", "/lidar/points", "--max-frames", "2",
                      bag=True)
    assert placed.returncode == 0, placed.stderr
    from depth_node.eval.bag_input import open_reader

    reader = open_reader(tmp_path / "with_bag" / "bag")  # the output bag places the cloud: /tf_static comes along
    try:
        counts = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
    finally:
        reader.close()
    assert counts["/tf_static"] == ("tf2_msgs/msg/TFMessage", 1)
    assert counts["/lidar/points"] == ("sensor_msgs/msg/PointCloud2", 2)


def test_a_wrong_extrinsic_is_caught_and_a_given_one_fixes_it(tmp_path: Path, lidar_bag: Path) -> None:
    """A /tf_static that forgets the optical frame's rotation (the LiDAR placed as if camera_link were the optical
    frame — the most common mistake) leaves no point in view: eval says so and names the fix; --extrinsic with the
    right transform scores as the right /tf_static does."""
    from rosbags.highlevel import AnyReader

    from depth_node.eval.bag_output import BagWriter, tf_message

    spec = LidarSpec()
    wrong = tmp_path / "wrong_tf"
    with AnyReader([lidar_bag]) as reader, BagWriter(wrong) as writer:
        for conn, timestamp, raw in reader.messages():
            if conn.topic == "/tf_static":
                raw = writer.typestore.serialize_cdr(tf_message(writer.typestore, timestamp, [
                    ("camera_link", "camera_color_optical_frame", RigidTransform()),
                    ("camera_link", "lidar_link", spec.link_from_lidar())]), conn.msgtype)
            writer.write_cdr(conn.topic, conn.msgtype, timestamp, raw)
    run = eval_cli(str(wrong), "-o", str(tmp_path / "wrong"), "--gt-cloud-topic", "/lidar/points")
    assert "WARNING: the ground-truth cloud covers 0.000% of the image" in run.stderr and "--extrinsic" in run.stderr
    x, y, z = spec.optical_from_lidar().translation
    qx, qy, qz, qw = spec.optical_from_lidar().quaternion()
    given = eval_cli(str(wrong), "-o", str(tmp_path / "given"), "--gt-cloud-topic", "/lidar/points",
                     "--extrinsic", ",".join(f"{v:.9f}" for v in (x, y, z, qx, qy, qz, qw)))
    right = eval_cli(str(lidar_bag), "-o", str(tmp_path / "right"), "--gt-cloud-topic", "/lidar/points")
    assert right.returncode == 0, right.stderr
    assert given.returncode == 0 and "WARNING: the ground-truth cloud" not in given.stderr, given.stderr
    assert metrics(tmp_path / "given")["metrics"]["metric"]["abs_rel"] == pytest.approx(
        metrics(tmp_path / "right")["metrics"]["metric"]["abs_rel"], rel=1e-6)
    # a cloud whose frame no transform reaches: each frame says what to give
    lost = eval_cli(str(lidar_bag), "-o", str(tmp_path / "lost"), "--gt-cloud-topic", "/lidar/points", "--motion-frame", "map")
    assert lost.returncode == 1 and "'map' is in no transform" in lost.stderr and "--extrinsic" in lost.stderr


def test_the_projected_cloud_is_the_sparse_scale_reference_in_eval(tmp_path: Path, lidar_bag: Path) -> None:
    """-p scale.mode:=sparse --sparse-reference 1 with a cloud: the whole projected LiDAR is each frame's reference,
    as the node's reference_points is; the fitted metres beat the model's own (FastDepth, trained indoors)."""
    own = eval_cli(str(lidar_bag), "-o", str(tmp_path / "own"), "--gt-cloud-topic", "/lidar/points")
    fitted = eval_cli(str(lidar_bag), "-o", str(tmp_path / "fitted"), "--gt-cloud-topic", "/lidar/points",
                      "-p", "scale.mode:=sparse", "--sparse-reference", "1")
    assert own.returncode == 0 and fitted.returncode == 0, own.stderr + fitted.stderr
    by_model, by_lidar = metrics(tmp_path / "own")["metrics"]["metric"], metrics(tmp_path / "fitted")["metrics"]["metric"]
    assert by_lidar["abs_rel"] < 0.8 * by_model["abs_rel"] and by_lidar["delta1"] > by_model["delta1"] + 0.1


def test_the_time_between_image_and_sweep_is_carried_through_the_odometry(tmp_path: Path) -> None:
    """Sweeps 40 ms after their images while the camera drives: paired within --cloud-slop they land where the
    robot had moved to, and score the exact depth worse; --motion-frame odom carries them back through /tf and the
    exact depth scores as with a triggered LiDAR. The scene's last frame (no sweep after it) is counted unpaired."""
    from depth_node.synth.writer import SynthSpec, write

    write(SynthSpec(scenes=("street",), frames=4, width=160, height=120, lidar=LidarSpec(time_offset_s=0.04)),
          tmp_path / "late", folder=False)
    bag, exact = str(tmp_path / "late" / "bag"), ("--prediction-topic", "/camera/aligned_depth_to_color/image_raw")
    plain = eval_cli(bag, "-o", str(tmp_path / "plain"), "--gt-cloud-topic", "/lidar/points", *exact)
    moved = eval_cli(bag, "-o", str(tmp_path / "moved"), "--gt-cloud-topic", "/lidar/points", *exact, "--motion-frame", "odom")
    assert plain.returncode == 0 and moved.returncode == 0, plain.stderr + moved.stderr
    assert "note: 1 image(s) have no cloud within --cloud-slop 0.05 s" in moved.stderr
    by_plain = metrics(next((tmp_path / "plain").glob("*aligned_depth*")))
    by_moved = metrics(next((tmp_path / "moved").glob("*aligned_depth*")))
    assert by_moved["frames"]["scored"] == 3 and by_moved["topics"]["motion_frame"] == "odom"
    assert by_moved["metrics"]["metric"]["abs_rel"] < 0.02 < by_plain["metrics"]["metric"]["abs_rel"]


def test_a_bags_one_cloud_is_the_ground_truth_when_it_has_no_depth_image(tmp_path: Path) -> None:
    from depth_node.eval.bag_input import BagError, choose_topics, open_reader
    from depth_node.eval.bag_output import RGBD_TOPICS, BagWriter, rgbd_messages

    camera = PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5)

    def bag(name: str, clouds: list[str]) -> Path:
        with BagWriter(tmp_path / name) as writer:
            msgs = rgbd_messages(writer.typestore, 1, np.zeros((48, 64, 3), np.uint8), None, camera)
            for key in ("image", "camera_info"):
                writer.write(RGBD_TOPICS[key][0], RGBD_TOPICS[key][1], 1, msgs[key])
            for topic in clouds:
                cloud = lidar_cloud_message(writer.typestore, 1, np.ones((3, 3), np.float32), np.zeros(3, np.uint16), "lidar")
                writer.write(topic, "sensor_msgs/msg/PointCloud2", 1, cloud)
        return tmp_path / name

    def choose(path: Path, **given: str):  # noqa: ANN202
        reader = open_reader(path)
        try:
            return choose_topics(reader, **given)
        finally:
            reader.close()

    assert choose(bag("one", ["/velodyne_points"])).cloud == "/velodyne_points"
    two = bag("two", ["/front/points", "/rear/points"])
    with pytest.raises(BagError, match="several point clouds.*--gt-cloud-topic"):
        choose(two)
    assert choose(two, cloud="/rear/points").cloud == "/rear/points"
    with pytest.raises(BagError, match="ground-truth cloud topic /camera/color/image_raw is sensor_msgs/msg/Image"):
        choose(two, cloud="/camera/color/image_raw")
