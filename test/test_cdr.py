"""The node's own CDR writer against rclpy's serialization of the same messages (odd sizes, unicode, empty fields)."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_node.ros import cdr, convert
from std_msgs.msg import Header


def _header(frame_id: str, sec: int = 1_700_000_123, nanosec: int = 999_999_999) -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    return header


def _same_as_rclpy(ours: bytes, message: object) -> None:
    """Same length as rclpy's bytes, decoded by rclpy to the same message, and different only where ours holds a
    zero: alignment padding, which rclpy leaves uninitialized."""
    theirs = serialize_message(message)
    assert len(ours) == len(theirs)
    assert deserialize_message(ours, type(message)) == message
    a, b = np.frombuffer(ours, np.uint8), np.frombuffer(theirs, np.uint8)
    differ = np.flatnonzero(a != b)
    assert (a[differ] == 0).all() and len(differ) <= 3 * 8, differ  # a few pad bytes per message at most


FRAME_IDS = ["", "c", "camera_color_optical_frame", "kamera_ø_光学", "abc"]


@pytest.mark.parametrize("frame_id", FRAME_IDS)
@pytest.mark.parametrize("encoding, dtype, channels, size", [("32FC1", np.float32, 1, (3, 5)), ("16UC1", np.uint16, 1, (7, 1)),
                                                            ("rgb8", np.uint8, 3, (1, 3)), ("rgb8", np.uint8, 3, (0, 0)),
                                                            ("32FC1", np.float32, 1, (480, 640))])
def test_images_match_rclpy(frame_id: str, encoding: str, dtype: type, channels: int, size: tuple[int, int]) -> None:
    shape = (*size, channels) if channels > 1 else size
    pixels = (np.random.default_rng(0).random(shape) * 1000).astype(dtype)
    if dtype == np.float32 and pixels.size:
        pixels.flat[0], pixels.flat[-1] = np.nan, np.inf
    header = _header(frame_id)
    _same_as_rclpy(cdr.image(header, pixels, encoding), convert.array_to_image(pixels, encoding, header))


def test_a_big_endian_or_strided_array_is_written_little_endian_and_packed() -> None:
    pixels = np.arange(12, dtype=">f4").reshape(3, 4)
    header = _header("x")
    message = deserialize_message(cdr.image(header, pixels, "32FC1"), Image)
    assert message.is_bigendian == 0 and message.step == 16
    np.testing.assert_array_equal(convert.image_to_array(message), pixels.astype("<f4"))
    strided = np.arange(40, dtype=np.float32).reshape(5, 8)[:, ::2]
    np.testing.assert_array_equal(convert.image_to_array(deserialize_message(cdr.image(header, strided, "32FC1"), Image)), strided)


@pytest.mark.parametrize("frame_id", FRAME_IDS)
@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 4), (480, 640, 4), (2, 7, 3)])
def test_clouds_match_rclpy(frame_id: str, shape: tuple[int, int, int]) -> None:
    points = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    points[0, 0, :3] = np.nan
    header = _header(frame_id)
    _same_as_rclpy(cdr.point_cloud(header, points), convert.points_to_cloud(points, header))


@pytest.mark.parametrize("frame_id", FRAME_IDS)
@pytest.mark.parametrize("d", [[], [0.1, -0.2, 0.0, 0.001, 0.03], [0.5] * 8, [1.0] * 14])
def test_camera_infos_match_rclpy(frame_id: str, d: list[float]) -> None:
    info = CameraInfo(header=_header(frame_id), height=481, width=641, distortion_model="rational_polynomial")
    info.d = d
    info.k = [500.5, 0.0, 320.25, 0.0, 501.0, 240.0, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [500.5, 0.0, 320.25, -25.0, 0.0, 501.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.binning_x, info.binning_y = 2, 1
    info.roi.x_offset, info.roi.y_offset, info.roi.height, info.roi.width, info.roi.do_rectify = 3, 4, 100, 200, True
    _same_as_rclpy(cdr.camera_info(info), info)


def test_what_is_not_a_cloud_is_refused() -> None:
    with pytest.raises(ValueError, match="float32"):
        cdr.point_cloud(_header("x"), np.zeros((2, 2, 3), np.float64))
    with pytest.raises(ValueError, match="CameraInfo.k has 3 values"):
        info = CameraInfo()
        info.k = [1.0, 2.0, 3.0] + [0.0] * 6
        fake = type("Info", (), {k: getattr(info, k) for k in ("header", "height", "width", "distortion_model", "d", "r", "p",
                                                                "binning_x", "binning_y", "roi")} | {"k": [1.0, 2.0, 3.0]})
        cdr.camera_info(fake)
    assert deserialize_message(cdr.point_cloud(_header("x"), np.zeros((0, 0, 3), np.float32)), PointCloud2).width == 0


def test_the_node_outputs_as_bytes_decode_to_the_outputs_as_messages(tmp_path) -> None:  # noqa: ANN001
    """Every output of a real pipeline frame (a tiny ONNX model, every output, both depth encodings, a camera_info
    with K ≠ P): output_cdr's bytes, decoded by rclpy, equal output_messages' objects field by field."""
    from dataclasses import replace

    from _models import conv_model
    from depth_node.core.camera import PinholeCamera
    from depth_node.core.parameters import PipelineConfig
    from depth_node.core.pipeline import DepthPipeline
    from depth_node.estimators import load_estimator
    from depth_node.ros.outputs import OUTPUTS, output_cdr, output_messages

    camera = PinholeCamera(160, 120, 140.0, 141.0, 79.0, 60.5)
    info = CameraInfo(header=_header("cam"), height=120, width=160, distortion_model="plumb_bob")
    info.k = [140.0, 0.0, 79.0, 0.0, 141.0, 60.5, 0.0, 0.0, 1.0]
    info.p = [139.0, 0.0, 78.5, -7.0, 0.0, 140.0, 60.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    rgb = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for encoding in ("32FC1", "16UC1"):
        config = replace(PipelineConfig(), depth_encoding=encoding, max_range=3.0)
        result = DepthPipeline(load_estimator(conv_model(tmp_path)), config).process(rgb, camera, colorized=True)
        header = _header("camera_color_optical_frame")
        messages = output_messages(result, header, info, camera, config)
        serialized = output_cdr(result, header, info, camera, config)
        assert set(messages) == set(serialized) == set(OUTPUTS)
        for name, message in messages.items():
            assert deserialize_message(serialized[name], OUTPUTS[name][1]) == message, (encoding, name)
