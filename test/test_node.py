"""The node in-process over real rclpy: outputs, headers, camera_info, diagnostics, parameters, bad input."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter

from _models import conv_model, fixed_output_model, plane_disparity, plane_model, write_card
from _ros import Harness, camera_info, header, jpeg_image, rgb_image
from depth_node.core.camera import PinholeCamera
from depth_node.errors import ModelLoadError
from depth_node.ros.convert import image_to_array

REPO = Path(__file__).resolve().parent.parent
CAM = PinholeCamera(640, 480, 500.0, 500.0, 319.5, 239.5)
NORMAL = np.array([0.0, -0.3, 1.0]) / np.linalg.norm([0.0, -0.3, 1.0])


@pytest.fixture(scope="module")
def plane_card(model_dir: Path) -> str:
    return str(plane_model(model_dir, CAM.resized(320, 240), NORMAL, 2.0))


def cloud_xyz(msg) -> np.ndarray:  # noqa: ANN001
    """Read x, y, z of an organized PointCloud2 from its fields (independent of the node's packing)."""
    offsets = {f.name: f.offset for f in msg.fields}
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, msg.point_step)
    return np.stack([raw[..., offsets[a] : offsets[a] + 4].copy().view(np.float32)[..., 0] for a in "xyz"], axis=-1)


def test_every_output_with_header_encoding_and_geometry(plane_card: str) -> None:
    with Harness({"model_card": plane_card, "max_range": 3.0}) as h:
        h.send(rgb_image(1), camera_info(1))
        assert h.wait_for(lambda: all(h.count(t) for t in ("depth/image", "depth/camera_info", "depth/confidence", "depth/points", "depth/colorized")))
        expected_header = header(1)
        for topic in ("depth/image", "depth/camera_info", "depth/confidence", "depth/points", "depth/colorized"):
            msg = h.last(topic)
            assert msg.header == expected_header, topic
        depth = image_to_array(h.last("depth/image"))
        assert h.last("depth/image").encoding == "32FC1" and depth.shape == (480, 640)
        np.testing.assert_allclose(1 / depth[2:-2, 2:-2], plane_disparity(CAM, NORMAL, 2.0)[2:-2, 2:-2], rtol=1e-5)  # z < 2.44 m
        info = h.last("depth/camera_info")
        assert (info.width, info.height) == (640, 480) and list(info.k) == pytest.approx(list(camera_info(1).k))
        confidence = image_to_array(h.last("depth/confidence"))
        assert confidence.shape == (480, 640) and ((confidence >= 0) & (confidence <= 1)).all()
        cloud = h.last("depth/points")
        assert (cloud.height, cloud.width, cloud.is_dense) == (480, 640, False)
        xyz = cloud_xyz(cloud)
        on_plane = np.abs(xyz.reshape(-1, 3) @ NORMAL - 2.0)
        assert np.nanmax(on_plane) < 1e-3
        ranges = np.linalg.norm(xyz, axis=-1)
        assert np.isnan(xyz[..., 2]).any() and not (ranges > 3.0 + 1e-4).any()  # max_range 3 m → NaN, not dropped
        assert h.last("depth/colorized").encoding == "rgb8"


@pytest.mark.parametrize("fault", ["all NaN depth", "some Inf depth, NaN confidence"])
def test_a_model_returning_nan_is_a_fault_on_diagnostics_and_nan_confidence_is_published_as_0(tmp_path: Path, fault: str) -> None:
    """A model's NaN/Inf is published as NaN depth and shown on /diagnostics (ERROR when every pixel is, WARN when
    some are), never "publishing" at level OK; its NaN confidence is published as 0, so confidence_threshold holds."""
    depth = np.full((48, 64), 2.0, np.float32)
    confidence = None
    if fault == "all NaN depth":
        depth[:] = np.nan
    else:
        depth[:10] = np.inf
        confidence = np.full((48, 64), 0.9, np.float32)
        confidence[20:30] = np.nan
    card = fixed_output_model(tmp_path, depth, confidence)
    with Harness({"model_card": str(card), "output_resolution": "model", "confidence_threshold": 0.5}) as h:
        h.send(rgb_image(1), camera_info(1))
        assert h.wait_for(lambda: h.count("depth/image") and h.count("depth/confidence"))
        published = image_to_array(h.last("depth/image"))
        conf = image_to_array(h.last("depth/confidence"))
        assert not np.isnan(conf).any() and ((conf >= 0) & (conf <= 1)).all()
        status = h.diagnostics()
        faults = " ".join(v for k, v in status.items() if k.startswith(("error_", "warning_")))
        if fault == "all NaN depth":
            assert np.isnan(published).all()
            assert status["level"] == 2 and "NaN/Inf on every pixel" in status["message"], status
        else:
            assert np.isnan(published[:10]).all() and np.isnan(published[20:30]).all()  # below confidence_threshold
            assert np.isfinite(published[30:]).all() and (conf[20:30] == 0).all()
            assert status["level"] == 1, status
            assert "NaN/Inf on 20.8 % of the pixels" in faults and "confidence NaN on 26.3 % of the valid depth pixels" in faults


def test_a_camera_info_with_millions_of_distortion_coefficients_is_dropped_on_arrival(plane_card: str) -> None:
    """A camera_info with 2 000 000 D entries (16 MB) was kept in the sync cache and read every frame: it is now
    refused when it arrives (bad_input, named), the node runs on as without camera_info, and a good one is used."""
    with Harness({"model_card": plane_card}, outputs=("depth/image", "depth/camera_info")) as h:
        huge = camera_info(1)
        huge.d = np.zeros(2_000_000)
        h.send(rgb_image(1), huge)
        time.sleep(1.5)                                                      # STARTUP_GRACE_S: then fallback_hfov_deg
        h.send(rgb_image(2))
        assert h.wait_for(lambda: h.count("depth/image"))
        status = h.diagnostics()
        assert "camera_info D has 2000000 coefficients" in " ".join(str(v) for v in status.values()), status
        assert int(status["frames_bad_input"]) >= 1 and status["camera_info_source"] == "fallback_hfov"
        assert len(h.node._cache._infos) == 0
        h.send(rgb_image(3), camera_info(3))
        assert h.wait_for(lambda: h.diagnostics()["camera_info_source"] == "matched")


def test_a_frame_whose_outputs_exceed_the_budget_is_refused_with_what_to_change() -> None:
    """Output bytes, not just input pixels, are bounded: a 6000x5000 frame (30 Mpx, under the 40 Mpx input cap) with
    every output at input resolution would take ~800 MB; refused before any is allocated. At model resolution the
    same frame is fine."""
    from depth_node.core.pipeline import MAX_OUTPUT_BYTES, DepthPipeline, output_bytes
    from depth_node.core.parameters import PipelineConfig
    from depth_node.errors import InputError
    from depth_node.estimators import load_estimator

    assert sum(output_bytes(3840, 2160, True, True, True, 1, True).values()) <= MAX_OUTPUT_BYTES  # 4K, all outputs
    big = PinholeCamera(6000, 5000, 5000.0, 5000.0, 2999.5, 2499.5)
    rgb = np.zeros((5000, 6000, 3), np.uint8)
    estimator = load_estimator(REPO / "models" / "default.yaml")
    with pytest.raises(InputError, match=r"a 6000x5000 frame's outputs at output_resolution input would take 810 MB "
                                         r"\(depth 120 MB, confidence 120 MB, points 480 MB, colorized 90 MB\).*output_resolution: model"):
        DepthPipeline(estimator, PipelineConfig(output_resolution="input")).process(rgb, big, colorized=True)
    small = DepthPipeline(estimator, PipelineConfig(output_resolution="model")).process(rgb, big, colorized=True)
    assert small.depth_m.shape == (224, 224) and small.points.shape[:2] == (224, 224)


@pytest.mark.parametrize("no_return", ["inf", "nan"])
def test_rep117_out_of_range_depth(plane_card: str, no_return: str) -> None:
    """REP 117 in depth/image: -Inf closer than min_range, +Inf beyond max_range, finite between; with
    depth_no_return nan all of them are NaN. depth/points has NaN for both, whatever the setting."""
    params = {"model_card": plane_card, "min_range": 1.9, "max_range": 2.3, "depth_no_return": no_return}  # z: 1.83 .. 2.44 m
    with Harness(params, outputs=("depth/image", "depth/points")) as h:
        h.send(rgb_image(1), camera_info(1))
        assert h.wait_for(lambda: h.count("depth/image") and h.count("depth/points"))
        depth = image_to_array(h.last("depth/image"))[2:-2, 2:-2]
        truth = (1 / plane_disparity(CAM, NORMAL, 2.0))[2:-2, 2:-2]
        inside = (truth > 1.9 + 1e-3) & (truth < 2.3 - 1e-3)
        far, close = truth > 2.3 + 1e-3, truth < 1.9 - 1e-3
        assert inside.any() and far.any() and close.any()
        np.testing.assert_allclose(depth[inside], truth[inside], rtol=1e-5)
        if no_return == "inf":
            assert np.isposinf(depth[far]).all() and np.isneginf(depth[close]).all()
        else:
            assert np.isnan(depth[far]).all() and np.isnan(depth[close]).all()
        assert not np.isinf(cloud_xyz(h.last("depth/points"))).any()


def test_sky_is_positive_infinity_and_no_scale_is_nan() -> None:
    """A disparity model's sky is +Inf in the published depth (a costmap clears through it), NaN in the cloud; a
    frame without a metric scale yet is NaN everywhere but the sky (no estimate, not 'nothing there')."""
    from depth_node.core.parameters import PipelineConfig
    from depth_node.core.pipeline import DepthResult
    from depth_node.ros.outputs import published_depth

    depth = np.full((4, 5), 2.0, np.float32)
    depth[0] = np.nan                                      # the pipeline's sky: NaN in depth_m and the cloud
    depth[1, 0] = np.nan                                   # an invalid pixel
    sky = np.zeros((4, 5), bool)
    sky[0] = True
    result = DepthResult(depth, None, CAM.resized(5, 4), None, None, None, {}, no_return=sky)
    out = published_depth(result, PipelineConfig())
    assert np.isposinf(out[0]).all() and np.isnan(out[1, 0]) and (out[2:] == 2.0).all()
    assert np.isnan(published_depth(result, PipelineConfig(depth_no_return="nan"))[0]).all()
    mm = published_depth(result, PipelineConfig(depth_encoding="16UC1"))
    assert mm.dtype == np.uint16 and (mm[0] == 0).all() and (mm[2:] == 2000).all()   # REP 118: 0 = no value


def test_the_reference_is_subscribed_only_in_sparse_mode_and_qos_overrides_apply(conv_card: Path) -> None:
    from rclpy.qos import ReliabilityPolicy

    def topics(node) -> set[str]:  # noqa: ANN001
        return {sub.topic_name for sub in node.subscriptions}

    params = {"model_card": str(conv_card), "qos_overrides./image.subscription.reliability": "reliable",
              "qos_overrides./depth/image.publisher.depth": 7}
    with Harness(params, outputs=("depth/image",)) as h:
        assert "/reference_depth" not in topics(h.node) and "/image" in topics(h.node)
        assert h.node.sub_image.qos_profile.reliability == ReliabilityPolicy.RELIABLE        # overridden
        assert h.node.sub_info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT      # sensor data
        assert h.node.publishers_by_output["depth"].qos_profile.depth == 7
        assert h.node.set_parameters([Parameter("scale.mode", value="sparse")])[0].successful
        assert "/reference_depth" in topics(h.node)
        assert h.node.set_parameters([Parameter("scale.reference", value="points")])[0].successful  # the LiDAR's cloud
        assert "/reference_points" in topics(h.node) and "/reference_depth" not in topics(h.node)
        assert h.node.set_parameters([Parameter("scale.mode", value="model")])[0].successful
        assert not {"/reference_depth", "/reference_points"} & topics(h.node)
    from depth_node.ros.node import INPUT_QOS, OUTPUT_QOS

    assert INPUT_QOS.reliability == ReliabilityPolicy.BEST_EFFORT and OUTPUT_QOS.depth == 2  # overrides stay per node


def _calibrated_info(i: int, distortion: list[float]):  # noqa: ANN202
    """A camera_info whose rectified camera P is CAM (what the plane model sees) and whose raw camera K is not."""
    info = camera_info(i, k=[480.0, 0.0, 322.0, 0.0, 485.0, 236.0, 0.0, 0.0, 1.0])
    info.p = [CAM.fx, 0.0, CAM.cx, 0.0, 0.0, CAM.fy, CAM.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = distortion
    return info


@pytest.mark.parametrize("camera_model", ["rectified", "raw"])
def test_camera_geometry_is_p_and_matches_depth_image_proc(plane_card: str, camera_model: str) -> None:
    """K ≠ P and D ≠ 0: the cloud is the plane only if P is used; a cloud built from depth/image + depth/camera_info
    the way depth_image_proc does (P's fx, fy, cx, cy) is our depth/points; raw mode also remaps the image (a dot
    drawn where the distorted camera sees a point lands, in the cloud's colours, where P projects it)."""
    import cv2

    d = [-0.25, 0.07, 0.001, -0.001, -0.01]
    raw_k = np.array([[480.0, 0.0, 322.0], [0.0, 485.0, 236.0], [0.0, 0.0, 1.0]])
    point = np.array([[0.9, -0.6, 2.0]])          # far from the centre: distorted and rectified places differ by ~20 px
    raw_uv = cv2.projectPoints(point, np.zeros(3), np.zeros(3), raw_k, np.array(d))[0][0, 0]
    image = np.zeros((480, 640, 3), np.uint8)
    cv2.circle(image, (int(round(raw_uv[0])), int(round(raw_uv[1]))), 6, (255, 255, 255), -1)
    from depth_node.ros.convert import array_to_image

    params = {"model_card": plane_card, "camera_model": camera_model, "max_range": 100.0, "cloud_edge_filter": "off"}
    with Harness(params, outputs=("depth/image", "depth/camera_info", "depth/points")) as h:
        h.send(array_to_image(image, "rgb8", header(3)), _calibrated_info(3, d))
        assert h.wait_for(lambda: h.count("depth/image") and h.count("depth/camera_info") and h.count("depth/points"))
        info, depth = h.last("depth/camera_info"), image_to_array(h.last("depth/image"))
        assert list(info.d) == [0.0] * 5 and list(info.k) == pytest.approx([CAM.fx, 0, CAM.cx, 0, CAM.fy, CAM.cy, 0, 0, 1])
        xyz = cloud_xyz(h.last("depth/points"))
        assert np.nanmax(np.abs(xyz[2:-2, 2:-2].reshape(-1, 3) @ NORMAL - 2.0)) < 1e-3          # on the plane: P was used
        fx, cx, fy, cy = info.p[0], info.p[2], info.p[5], info.p[6]                             # depth_image_proc
        v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]]
        theirs = np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], axis=-1)
        np.testing.assert_allclose(theirs, xyz, rtol=1e-5, atol=1e-6)
        raw = np.frombuffer(bytes(h.last("depth/points").data), np.uint8).reshape(480, 640, 16)
        u_p, v_p = (CAM.K @ (point[0] / point[0, 2]))[:2]
        colour_at = raw[int(round(v_p)), int(round(u_p)), 12]                                  # blue byte of rgb
        if camera_model == "raw":
            assert colour_at > 200                                                             # the dot, where P sees it
        else:
            assert colour_at < 50                                                              # not remapped: elsewhere


def test_model_grid_output_rescales_camera_info_and_16uc1(plane_card: str) -> None:
    params = {"model_card": plane_card, "output_resolution": "model", "depth_encoding": "16UC1", "cloud_decimation": 2}
    with Harness(params, outputs=("depth/image", "depth/camera_info", "depth/points")) as h:
        h.send(rgb_image(2), camera_info(2))
        assert h.wait_for(lambda: h.count("depth/image") and h.count("depth/camera_info") and h.count("depth/points"))
        depth = h.last("depth/image")
        assert (depth.encoding, depth.width, depth.height) == ("16UC1", 320, 240)
        info = h.last("depth/camera_info")
        small = CAM.resized(320, 240)
        assert (info.width, info.height) == (320, 240) and info.header == depth.header
        assert list(info.k) == pytest.approx([small.fx, 0, small.cx, 0, small.fy, small.cy, 0, 0, 1])
        mm = image_to_array(depth)
        expected = np.rint(1000 / plane_disparity(small, NORMAL, 2.0))
        assert np.abs(mm[2:-2, 2:-2].astype(float) - expected[2:-2, 2:-2]).max() <= 1
        assert (h.last("depth/points").height, h.last("depth/points").width) == (120, 160)


def test_compressed_input_and_diagnostics(conv_card: Path) -> None:
    with Harness({"model_card": str(conv_card), "input_transport": "compressed"}, outputs=("depth/image",)) as h:
        for i in range(3):
            h.send(jpeg_image(i), camera_info(i))
            assert h.wait_for(lambda i=i: h.count("depth/image") > i)
        assert h.last("depth/image").header == header(2)
        diag = h.diagnostics()
        assert diag["level"] == 0 and diag["model"] == "test-model" and diag["backend"] == "onnxruntime/cpu"
        assert diag["input_topic"] == "/image/compressed" and diag["camera_info_source"] == "matched"
        assert int(diag["frames_processed"]) == 3 and int(diag["frames_received"]) == 3
        for key in ("input_rate_hz", "output_rate_hz", "latency_p50_ms", "latency_p95_ms", "stage_infer_ms", "stage_publish_ms", "frames_dropped"):
            assert key in diag
        assert math.isfinite(float(diag["stage_infer_ms"]))


def test_parameters_validated_and_applied_at_run_time(conv_card: Path) -> None:
    with Harness({"model_card": str(conv_card)}, outputs=("depth/points",)) as h:
        node = h.node
        refused = {
            "cloud_decimation": 0,
            "confidence_threshold": 1.5,
            "colormap": "rainbow",
            "depth_encoding": "8UC1",
            "model_card": "other.yaml",
            "input_transport": "compressed",
            "backend_fallback": "tensorrt:gpu",
        }
        for name, value in refused.items():
            result = node.set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and result.reason, name
        result = node.set_parameters([Parameter("min_range", value=30.0)])[0]
        assert not result.successful and "min_range < max_range" in result.reason
        result = node.set_parameters([Parameter("scale.mode", value="fixed"), Parameter("cloud_decimation", value=4)])
        assert all(r.successful for r in result)
        h.send(rgb_image(3), camera_info(3))
        assert h.wait_for(lambda: h.count("depth/points"))
        assert (h.last("depth/points").height, h.last("depth/points").width) == (120, 160)
        assert node.get_parameter("cloud_decimation").value == 4


def test_ensemble_parameters_at_run_time(conv_card: Path) -> None:
    """tta_scales is a double array; an impossible ensemble is refused with the reason; a valid one publishes."""
    with Harness({"model_card": str(conv_card), "output_resolution": "model"}, outputs=("depth/image", "depth/confidence")) as h:
        node = h.node
        refused = node.set_parameters([Parameter("ensemble_size", value=8)])[0]
        assert not refused.successful and "distinct test-time augmentations" in refused.reason
        refused = node.set_parameters_atomically([Parameter("ensemble_members", value="noise"), Parameter("ensemble_size", value=3)])
        assert not refused.successful and "deterministic" in refused.reason
        result = node.set_parameters([Parameter("tta_scales", value=[1.0, 0.5]), Parameter("ensemble_size", value=4)])
        assert all(r.successful for r in result), [r.reason for r in result]
        h.send(rgb_image(5), camera_info(5))
        assert h.wait_for(lambda: h.count("depth/confidence"))
        confidence = image_to_array(h.last("depth/confidence"))
        assert 0.0 <= float(np.nanmin(confidence)) < float(np.nanmax(confidence)) <= 1.0  # the spread, not a constant
        assert list(node.get_parameter("tta_scales").value) == [1.0, 0.5]


BAD_FRAMES = {
    "unsupported encoding": lambda i: _mutated(i, encoding="yuv422"),
    "step mismatch": lambda i: _mutated(i, step=100),
    "truncated data": lambda i: _mutated(i, truncate=True),
    "zero-size image": lambda i: _mutated(i, width=0, height=0, step=0, data=b""),
}


def _mutated(i: int, truncate: bool = False, **fields) -> object:  # noqa: ANN003
    msg = rgb_image(i, 64, 48)
    for k, v in fields.items():
        setattr(msg, k, v)
    if truncate:
        msg.data = bytes(msg.data)[: len(msg.data) // 2]
    return msg


@pytest.mark.parametrize("case", [*BAD_FRAMES, "corrupt jpeg", "camera_info zeros", "camera_info nan", "camera_info other size"])
def test_bad_input_is_skipped_with_a_warning_and_the_node_keeps_going(conv_card: Path, case: str) -> None:
    transport = "compressed" if case == "corrupt jpeg" else "raw"
    with Harness({"model_card": str(conv_card), "input_transport": transport, "use_last_camera_info": False}, outputs=("depth/image",)) as h:
        good_info = camera_info(0, 64, 48, [50.0, 0, 31.5, 0, 50.0, 23.5, 0, 0, 1])
        if case in BAD_FRAMES:
            h.send(BAD_FRAMES[case](0), good_info)
        elif case == "corrupt jpeg":
            bad = jpeg_image(0, 64, 48)
            bad.data = bytes(bad.data)[:200]
            h.send(bad, good_info)
        else:
            info = {"camera_info zeros": camera_info(0, 64, 48, [0.0] * 9),
                    "camera_info nan": camera_info(0, 64, 48, [math.nan] * 9),
                    "camera_info other size": camera_info(0, 320, 240)}[case]
            h.send(rgb_image(0, 64, 48), info)
        assert h.wait_for(lambda: h.node.stats.counts["bad_input"] == 1), case
        diag = h.diagnostics()
        assert diag["level"] == 1 and "bad_input" in diag.get("warning_0", ""), diag
        assert h.count("depth/image") == 0
        # the next good frame goes through
        good = jpeg_image(1, 64, 48) if transport == "compressed" else rgb_image(1, 64, 48)
        good_info.header = header(1)
        h.send(good, good_info)
        assert h.wait_for(lambda: h.count("depth/image") == 1)


@pytest.mark.parametrize("problem, message", [("missing", "weights file not found"), ("corrupt", "could not load")])
def test_a_model_that_cannot_load_stops_the_node_and_fails_configure(tmp_path: Path, problem: str, message: str) -> None:
    """The plain node refuses to start (main exits 1: respawn and supervisors see it); the managed node's
    configure fails with the reason and it stays unconfigured, ready for a configure with a good card."""
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn

    from depth_node.ros.node import DepthLifecycleNode, DepthNode

    if problem == "corrupt":
        (tmp_path / "gone.onnx").write_bytes(b"not an onnx file")
    card = write_card(tmp_path / "gone.yaml", "gone.onnx", {"space": "depth", "invariance": "metric"})
    context = Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ModelLoadError, match=message):
            DepthNode(context=context, parameter_overrides=[Parameter("model_card", value=str(card))])
        managed = DepthLifecycleNode(context=context, parameter_overrides=[Parameter("model_card", value=str(card))])
        try:
            assert managed.on_configure(None) == TransitionCallbackReturn.FAILURE
            assert managed.estimator is None and not managed.publishers_by_output
        finally:
            managed.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    run = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "run", "--ros-args", "-p", f"model_card:={card}"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "ERROR: cannot load the model" in run.stderr and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("fallback", ["", "onnxruntime:cpu"])
def test_backend_fallback_is_used_and_reported(conv_card: Path, fallback: str) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider: the primary backend would not fail")
    if not fallback:
        with pytest.raises(ModelLoadError, match="CUDAExecutionProvider is not available"):
            Harness({"model_card": str(conv_card), "device": "cuda"}, outputs=("depth/image",))
        return
    with Harness({"model_card": str(conv_card), "device": "cuda", "backend_fallback": fallback}, outputs=("depth/image",)) as h:
        diag = h.diagnostics()
        assert diag["level"] == 1 and "running on fallback onnxruntime:cpu" in diag["message"], diag
        assert diag["backend"] == "onnxruntime/cpu"
        h.send(rgb_image(0, 64, 48), camera_info(0, 64, 48, [50.0, 0, 31.5, 0, 50.0, 23.5, 0, 0, 1]))
        assert h.wait_for(lambda: h.count("depth/image") == 1)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_precision_the_runtime_ignores_is_reported(conv_card: Path, precision: str) -> None:
    with Harness({"model_card": str(conv_card), "precision": precision}, outputs=("depth/image",)) as h:
        diag = h.diagnostics()
        if precision == "fp32":
            assert diag["level"] == 0, diag
            return
        assert diag["level"] == 1 and "precision fp16 is not what onnxruntime runs" in diag["message"], diag
        h.send(rgb_image(0, 64, 48), camera_info(0, 64, 48, [50.0, 0, 31.5, 0, 50.0, 23.5, 0, 0, 1]))
        assert h.wait_for(lambda: h.count("depth/image") == 1)  # still runs, in fp32


def test_relative_model_waits_for_a_scale_and_recovers_at_run_time(model_dir: Path) -> None:
    folder = model_dir / "affine"
    folder.mkdir(exist_ok=True)
    card = conv_model(folder, invariance="affine")
    with Harness({"model_card": str(card)}, outputs=("depth/image",)) as h:
        diag = h.diagnostics()
        assert diag["level"] == 2 and "not metres: set scale.mode to" in diag["message"], diag
        assert diag["model"] == "test-model"  # loaded, just not usable as metres
        result = h.node.set_parameters([Parameter("scale.mode", value="fixed"), Parameter("scale.fixed_scale", value=2.0)])
        assert all(r.successful for r in result)
        h.send(rgb_image(0, 64, 48), camera_info(0, 64, 48, [50.0, 0, 31.5, 0, 50.0, 23.5, 0, 0, 1]))
        assert h.wait_for(lambda: h.count("depth/image") == 1)
        assert h.diagnostics()["level"] == 0


def test_fallback_hfov_when_no_camera_info(conv_card: Path) -> None:
    with Harness({"model_card": str(conv_card), "fallback_hfov_deg": 90.0}, outputs=("depth/image", "depth/camera_info")) as h:
        i = 0
        while not h.count("depth/camera_info") and i < 40:  # frames during the start-up grace are skipped
            h.send(rgb_image(i, 64, 48))
            h.wait_for(lambda: h.count("depth/camera_info") > 0, 0.1)
            i += 1
        info = h.last("depth/camera_info")
        assert info.k[0] == pytest.approx(32.0) and info.k[2] == pytest.approx(31.5)
        diag = h.diagnostics()
        assert diag["level"] == 1 and "fallback_hfov_deg=90.0" in diag["message"]


def test_busy_worker_drops_frames_and_counts_them(model_dir: Path) -> None:
    slow = model_dir / "slow"
    slow.mkdir(exist_ok=True)
    card = conv_model(slow)
    text = card.read_text().replace("long_side: 96", "long_side: 1536")
    card.write_text(text)
    with Harness({"model_card": str(card), "output_resolution": "model"}, outputs=("depth/image",)) as h:
        for i in range(30):
            h.send(rgb_image(i, 320, 240), camera_info(i, 320, 240))
            h.wait_for(lambda: False, 0.01)
        assert h.wait_for(lambda: h.node.stats.counts["received"] == 30)
        counts = h.node.stats.counts
        assert h.wait_for(lambda: counts["processed"] + counts["dropped"] == 30, 20.0), counts
        assert counts["dropped"] > 0 and counts["processed"] >= 1


def test_max_rate_hz_throttles(conv_card: Path) -> None:
    import time

    with Harness({"model_card": str(conv_card), "max_rate_hz": 2.0}, outputs=("depth/image",)) as h:
        start = time.monotonic()
        for i in range(20):  # 20 Hz for about a second
            h.send(rgb_image(i, 64, 48), camera_info(i, 64, 48, [50.0, 0, 31.5, 0, 50.0, 23.5, 0, 0, 1]))
            h.wait_for(lambda: False, max(0.0, start + (i + 1) * 0.05 - time.monotonic()))
        elapsed = time.monotonic() - start
        counts = h.node.stats.counts
        assert h.wait_for(lambda: counts["processed"] + counts["throttled"] + counts["dropped"] == 20, 5.0), counts
        # at most one frame per 0.5 s of sending (+1 for the first), every other frame throttled or dropped
        assert 1 <= counts["processed"] <= 2.0 * elapsed + 1, (counts, elapsed)
        assert counts["throttled"] >= 20 - counts["processed"] - counts["dropped"] and counts["throttled"] > 0, counts


def test_allocator_tuning_applies_on_glibc() -> None:
    import platform

    from depth_node.ros.allocator import keep_frame_buffers_mapped

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_frame_buffers_mapped() is True


def test_sparse_scale_from_a_reference_depth_topic(model_dir: Path) -> None:
    """scale.mode sparse: an affine disparity model aligned to a 16UC1 reference at half resolution with 2 % of
    its pixels valid; the published depth is the reference's metres, dense (holes filled), and /diagnostics
    says where the scale came from."""
    from sensor_msgs.msg import Image

    from _ros import SENSOR_QOS
    from depth_node.ros.convert import array_to_image

    folder = model_dir / "sparse"
    folder.mkdir(exist_ok=True)
    plane_model(folder, CAM.resized(320, 240), NORMAL, 2.0)
    card = write_card(folder / "affine.yaml", "plane.onnx", {"space": "disparity", "invariance": "affine"})
    truth = 1.0 / (0.5 * plane_disparity(CAM.resized(320, 240), NORMAL, 2.0) + 0.1)   # s = 0.5, t = 0.1
    sparse = np.where(np.random.default_rng(0).random(truth.shape) < 0.02, np.rint(truth * 1000), 0).astype(np.uint16)
    with Harness({"model_card": str(card), "scale.mode": "sparse", "scale.smoothing": 1.0}, outputs=("depth/image",)) as h:
        reference_pub = h.peer.create_publisher(Image, "reference_depth", SENSOR_QOS)
        assert h.wait_for(lambda: reference_pub.get_subscription_count() > 0, 5.0)
        h.send(rgb_image(0), camera_info(0))                  # no reference yet: NaN, and a WARN that says why
        assert h.wait_for(lambda: h.count("depth/image") == 1)
        assert np.isnan(image_to_array(h.last("depth/image"))).all()
        diag = h.diagnostics()
        assert diag["level"] == 1 and diag["scale_ok"] == "false"
        assert "no message yet on /reference_depth" in diag["message"] and any("no metric scale yet" in str(v) for v in diag.values())
        for i in (1, 2):
            reference_pub.publish(array_to_image(sparse, "16UC1", header(i)))
            assert h.wait_for(lambda: h.node._reference.received == i, 5.0)
            h.send(rgb_image(i), camera_info(i))
            assert h.wait_for(lambda i=i: h.count("depth/image") == i + 1)
        depth = image_to_array(h.last("depth/image"))
        assert np.isfinite(depth[2:-2, 2:-2]).all()
        expected = 1.0 / (0.5 * plane_disparity(CAM, NORMAL, 2.0) + 0.1)
        np.testing.assert_allclose(depth[2:-2, 2:-2], expected[2:-2, 2:-2], rtol=2e-3)   # mm rounding of the reference
        diag = h.diagnostics()
        assert diag["scale_source"] == "sparse" and diag["scale_ok"] == "true" and float(diag["scale_fit_quality"]) > 0.99
        assert float(diag["scale"]) == pytest.approx(0.5, rel=2e-3) and float(diag["scale_shift"]) == pytest.approx(0.1, abs=1e-3)


def test_sparse_scale_from_a_reference_cloud_reaches_the_reference_depths_scale(model_dir: Path) -> None:
    """scale.reference points: the same scene as the reference_depth test, as a LiDAR would give it — 3-D points of
    2 % of the pixels, in a sensor frame 30 cm above and 10 cm beside the camera, rotated, placed by
    scale.reference_extrinsic — projected into the camera: the same scale and shift, the same metres published."""
    from sensor_msgs.msg import PointCloud2

    from _ros import SENSOR_QOS
    from depth_node.core.transforms import RigidTransform, rotation_from_quaternion
    from depth_node.ros.convert import points_to_cloud

    folder = model_dir / "sparse"
    folder.mkdir(exist_ok=True)
    plane_model(folder, CAM.resized(320, 240), NORMAL, 2.0)
    card = write_card(folder / "affine.yaml", "plane.onnx", {"space": "disparity", "invariance": "affine"})
    grid = CAM.resized(320, 240)
    truth = (1.0 / (0.5 * plane_disparity(grid, NORMAL, 2.0) + 0.1)).astype(np.float32)
    keep = np.random.default_rng(0).random(truth.shape) < 0.02
    v, u = np.nonzero(keep)
    z = truth[v, u].astype(np.float64)
    optical = np.stack([(u - grid.cx) * z / grid.fx, (v - grid.cy) * z / grid.fy, z], axis=1)  # pixel centres, back-projected
    camera_from_lidar = RigidTransform(rotation_from_quaternion(0.1, -0.2, 0.05, 1.0), np.array([0.1, -0.3, -0.1]))
    in_lidar = camera_from_lidar.inverse().apply(optical).astype(np.float32)
    extrinsic = [*camera_from_lidar.translation, *camera_from_lidar.quaternion()]
    params = {"model_card": str(card), "scale.mode": "sparse", "scale.smoothing": 1.0, "scale.reference": "points",
              "scale.reference_extrinsic": [float(v) for v in extrinsic]}
    with Harness(params, outputs=("depth/image",)) as h:
        cloud_pub = h.peer.create_publisher(PointCloud2, "reference_points", SENSOR_QOS)
        assert h.wait_for(lambda: cloud_pub.get_subscription_count() > 0, 5.0)
        assert "/reference_depth" not in {sub.topic_name for sub in h.node.subscriptions}
        for i in (1, 2):
            cloud_pub.publish(points_to_cloud(in_lidar[None], header(i)))
            assert h.wait_for(lambda: h.node._reference.received == i, 5.0)
            h.send(rgb_image(i), camera_info(i))
            assert h.wait_for(lambda i=i: h.count("depth/image") == i)
        depth = image_to_array(h.last("depth/image"))
        expected = 1.0 / (0.5 * plane_disparity(CAM, NORMAL, 2.0) + 0.1)
        np.testing.assert_allclose(depth[2:-2, 2:-2], expected[2:-2, 2:-2], rtol=2e-3)
        diag = h.diagnostics()
        assert diag["scale_source"] == "sparse" and diag["scale_ok"] == "true" and float(diag["scale_fit_quality"]) > 0.99
        assert float(diag["scale"]) == pytest.approx(0.5, rel=2e-3) and float(diag["scale_shift"]) == pytest.approx(0.1, abs=1e-3)
        # without an extrinsic (and no tf2_ros here) the frame is published with the scale held, and /diagnostics says why
        assert h.node.set_parameters([Parameter("scale.reference_extrinsic", value=[0.0] * 7)])[0].successful
        cloud_pub.publish(points_to_cloud(in_lidar[None], header(3)))
        assert h.wait_for(lambda: h.node._reference.received == 3, 5.0)
        h.send(rgb_image(3), camera_info(3))
        assert h.wait_for(lambda: h.count("depth/image") == 3)
        assert "set scale.reference_extrinsic" in h.diagnostics()["message"]


def _break(estimator, failures: list[int]) -> None:  # noqa: ANN001
    """Fault injection: the estimator's forward pass raises (as a lost GPU would) while ``failures`` is non-empty."""
    infer = estimator.infer

    def failing(model_input):  # noqa: ANN001, ANN202
        if failures:
            failures.pop()
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        return infer(model_input)

    estimator.infer = failing


@pytest.mark.parametrize("fallback", ["", "onnxruntime:cpu"])
def test_a_backend_failing_mid_run_falls_back_or_reports_and_recovers(conv_card: Path, fallback: str) -> None:
    """Frames fail mid-run: with a backend_fallback entry the node loads it after 3 failures in a row and goes on;
    without one it stays up, reports ERROR, and clears it with the first frame that succeeds again."""
    info = lambda i: camera_info(i, 64, 48, [50.0, 0, 31.5, 0, 50.0, 23.5, 0, 0, 1])  # noqa: E731
    with Harness({"model_card": str(conv_card), "backend_fallback": fallback}, outputs=("depth/image",)) as h:
        h.send(rgb_image(0, 64, 48), info(0))
        assert h.wait_for(lambda: h.count("depth/image") == 1)
        first = h.node.estimator
        _break(first, [1] * (3 if fallback else 4))
        for i in range(1, 4):
            h.send(rgb_image(i, 64, 48), info(i))
            assert h.wait_for(lambda i=i: h.node.stats.counts["failed"] == i), h.node.stats.counts
        diag = h.diagnostics()
        if fallback:
            assert h.node.estimator is not first and h.node._attempt == 1
            assert diag["level"] == 1 and "running on fallback onnxruntime:cpu" in diag["message"] and "injected" in diag["message"], diag
        else:
            assert h.node.estimator is first
            assert diag["level"] == 2 and "3 frame(s) failed in a row" in diag["message"], diag
            h.send(rgb_image(4, 64, 48), info(4))              # still failing: still up
            assert h.wait_for(lambda: h.node.stats.counts["failed"] == 4)
        h.send(rgb_image(5, 64, 48), info(5))                  # the fault has cleared
        assert h.wait_for(lambda: h.count("depth/image") == 2)
        diag = h.diagnostics()
        assert diag["level"] == (1 if fallback else 0) and not any("failed in a row" in str(v) for v in diag.values()), diag


def test_stamps_going_backwards_are_processed_and_reported(conv_card: Path) -> None:
    info = lambda i: camera_info(i, 64, 48, [50.0, 0, 31.5, 0, 50.0, 23.5, 0, 0, 1])  # noqa: E731
    with Harness({"model_card": str(conv_card), "temporal_smoothing": True}, outputs=("depth/image",)) as h:
        for n, i in enumerate((5, 6, 2)):                    # the bag restarted
            h.send(rgb_image(i, 64, 48), info(i))
            assert h.wait_for(lambda n=n: h.count("depth/image") == n + 1)
        assert h.last("depth/image").header == header(2)
        assert h.node.pipeline.temporal.state.reset             # restarted from this frame, not aligned to stamp 6
        diag = h.diagnostics()
        assert diag["level"] == 1 and "stamps went backwards by 0.400 s" in diag["message"], diag


def test_the_node_does_not_overwrite_rclpy_node_attributes(conv_card: Path) -> None:
    """The node subclasses rclpy's Node and LifecycleNode: an attribute of ours with one of their names (e.g.
    ``_subscriptions``, the executor's list) silently breaks rclpy — here use_sim_time's /clock subscription."""
    from rclpy.context import Context

    from depth_node.ros.node import DepthNode

    context = Context()
    rclpy.init(context=context)
    try:
        node = DepthNode(context=context, parameter_overrides=[Parameter("model_card", value=str(conv_card)),
                                                              Parameter("use_sim_time", value=True)])
        try:
            topics = {s.topic_name for s in node.subscriptions}
            assert {"/clock", "/image", "/camera_info"} <= topics                   # rclpy's own, and ours
            assert {"depth/image", "/diagnostics"} <= {p.topic_name.lstrip("/") for p in node.publishers} | {"/diagnostics"}
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
