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


def _same_as_rclpy(serialized: np.ndarray, message: object) -> None:
    """Same length as rclpy's bytes, decoded by rclpy to the same message, and different only where ours holds a
    zero: alignment padding, which rclpy leaves uninitialized."""
    assert serialized.dtype == np.uint8 and serialized.ndim == 1 and serialized.flags.c_contiguous
    ours, theirs = serialized.tobytes(), serialize_message(message)
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
    message = deserialize_message(cdr.image(header, pixels, "32FC1").tobytes(), Image)
    assert message.is_bigendian == 0 and message.step == 16
    np.testing.assert_array_equal(convert.image_to_array(message), pixels.astype("<f4"))
    strided = np.arange(40, dtype=np.float32).reshape(5, 8)[:, ::2]
    np.testing.assert_array_equal(convert.image_to_array(deserialize_message(cdr.image(header, strided, "32FC1").tobytes(), Image)), strided)


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


@pytest.mark.parametrize("frame_id", ["", "odd", "kamera_ø_光学"])
@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 7, 3), (0, 0, 3)])
def test_a_cloud_written_into_its_message_is_the_message_of_the_cloud(frame_id: str, shape: tuple[int, int, int]) -> None:
    """point_cloud_message: the points view is aligned float32 inside the message buffer, and what is written there
    is what rclpy decodes (the pipeline computes its cloud straight into it)."""
    points = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    serialized, view = cdr.point_cloud_message(_header(frame_id), *shape)
    assert view.shape == shape and view.dtype == np.float32 and view.flags.c_contiguous
    assert view.size == 0 or (np.shares_memory(view, serialized) and view.ctypes.data % 4 == 0)
    view[...] = points
    _same_as_rclpy(serialized, convert.points_to_cloud(points, _header(frame_id)))
    with pytest.raises(ValueError, match="3 .* or 4"):
        cdr.point_cloud_message(_header(frame_id), 2, 2, 5)


def test_what_is_not_a_cloud_is_refused() -> None:
    with pytest.raises(ValueError, match="float32"):
        cdr.point_cloud(_header("x"), np.zeros((2, 2, 3), np.float64))
    with pytest.raises(ValueError, match="CameraInfo.k has 3 values"):
        info = CameraInfo()
        info.k = [1.0, 2.0, 3.0] + [0.0] * 6
        fake = type("Info", (), {k: getattr(info, k) for k in ("header", "height", "width", "distortion_model", "d", "r", "p",
                                                                "binning_x", "binning_y", "roi")} | {"k": [1.0, 2.0, 3.0]})
        cdr.camera_info(fake)
    assert deserialize_message(cdr.point_cloud(_header("x"), np.zeros((0, 0, 3), np.float32)).tobytes(), PointCloud2).width == 0


def test_the_node_outputs_as_bytes_decode_to_the_outputs_as_messages(tmp_path) -> None:  # noqa: ANN001
    """Every output of a real pipeline frame (a tiny ONNX model, every output, both depth encodings, a camera_info
    with K ≠ P): output_cdr's bytes, decoded by rclpy, equal output_messages' objects field by field."""
    from dataclasses import replace

    from _models import conv_model
    from depth_node.core.camera import PinholeCamera
    from depth_node.core.parameters import PipelineConfig
    from depth_node.core.pipeline import DepthPipeline
    from depth_node.estimators import load_estimator
    from depth_node.ros.outputs import OUTPUTS, OutputMessages, output_cdr, output_messages

    camera = PinholeCamera(160, 120, 140.0, 141.0, 79.0, 60.5)
    info = CameraInfo(header=_header("cam"), height=120, width=160, distortion_model="plumb_bob")
    info.k = [140.0, 0.0, 79.0, 0.0, 141.0, 60.5, 0.0, 0.0, 1.0]
    info.p = [139.0, 0.0, 78.5, -7.0, 0.0, 140.0, 60.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    rgb = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for encoding, decimation, mode in (("32FC1", 1, "stride"), ("16UC1", 3, "stride"), ("32FC1", 4, "median")):
        config = replace(PipelineConfig(), depth_encoding=encoding, max_range=3.0, cloud_decimation=decimation,
                         cloud_decimation_mode=mode)
        pipeline = DepthPipeline(load_estimator(conv_model(tmp_path)), config)
        result = pipeline.process(rgb, camera, colorized=True)
        header = _header("camera_color_optical_frame")
        messages = output_messages(result, header, info, camera, config)
        serialized = output_cdr(result, header, info, camera, config)
        assert set(messages) == set(serialized) == set(OUTPUTS)
        for name, message in messages.items():
            assert deserialize_message(serialized[name].tobytes(), OUTPUTS[name][1]) == message, (encoding, name)
        # the node's way: confidence, cloud and picture computed straight into their messages, which are then
        # published as they are
        written = OutputMessages(header, info, camera, config)
        in_place = pipeline.process(rgb, camera, colorized=True, out=written)
        node_way = written.serialized(in_place)
        assert list(node_way) == list(OUTPUTS)
        for name, array in (("confidence", in_place.confidence), ("points", in_place.points), ("colorized", in_place.colorized)):
            assert np.shares_memory(array, node_way[name]), name
        for name, message in messages.items():
            assert deserialize_message(node_way[name].tobytes(), OUTPUTS[name][1]) == message, (encoding, name)
    with pytest.raises(ValueError, match="depth"):  # depth/image is encoded (REP 117/118) from the result, not computed into
        written("depth", (120, 160), np.float32)
    with pytest.raises(ValueError, match="float32"):
        written("points", (40, 54, 4), np.float64)


@pytest.mark.parametrize("encoding, dtype, big_endian, padding", [("rgb8", np.uint8, False, 0), ("16UC1", np.uint16, True, 6),
                                                                 ("32FC1", np.float32, False, 4), ("bgra8", np.uint8, False, 3)])
@pytest.mark.parametrize("frame_id", ["", "kamera_ø_光学", "odd"])
def test_a_received_image_reads_as_the_message_with_its_pixels_a_view_of_the_bytes(encoding: str, dtype: type, big_endian: bool,
                                                                                   padding: int, frame_id: str) -> None:
    """rclpy's bytes of an Image (odd width, row padding, a big-endian payload, unicode frame_id) → read_image → the
    node's converter gives the same array as from the message; the pixels are not copied."""
    channels = convert.IMAGE_ENCODINGS[encoding][1]
    pixels = (np.random.default_rng(2).random((5, 7, channels)) * 200).astype(dtype)[..., 0 if channels == 1 else slice(None)]
    message = Image(header=_header(frame_id), height=5, width=7, encoding=encoding, is_bigendian=int(big_endian))
    row = pixels.astype(np.dtype(dtype).newbyteorder(">" if big_endian else "<")).reshape(5, -1).view(np.uint8)
    message.step = row.shape[1] + padding
    message.data = np.concatenate([row, np.full((5, padding), 0xAB, np.uint8)], axis=1).tobytes()
    raw = serialize_message(message)
    view = cdr.read_image(raw)
    assert (view.header.frame_id, view.header.stamp.sec, view.header.stamp.nanosec) == (frame_id, 1_700_000_123, 999_999_999)
    assert (view.height, view.width, view.encoding, view.is_bigendian, view.step) == (5, 7, encoding, int(big_endian), message.step)
    np.testing.assert_array_equal(convert.image_to_array(view), convert.image_to_array(message))
    assert np.shares_memory(np.frombuffer(view.data, np.uint8), np.frombuffer(raw, np.uint8))


def test_a_big_endian_cdr_payload_is_read() -> None:
    """Encapsulation 00 00 (CDR big endian, what a big-endian host's middleware may send)."""
    body = struct_pack_be_image("cam", 4, 1, "mono8", bytes([9, 8, 7, 6]))
    view = cdr.read_image(body)
    assert (view.header.frame_id, view.width, view.height, bytes(view.data)) == ("cam", 4, 1, bytes([9, 8, 7, 6]))


def struct_pack_be_image(frame_id: str, width: int, height: int, encoding: str, data: bytes) -> bytes:
    import struct

    out = bytearray(b"\x00\x00\x00\x00")

    def align(n: int) -> None:
        out.extend(b"\x00" * (-(len(out) - 4) % n))

    def u32(v: int) -> None:
        align(4)
        out.extend(struct.pack(">I", v))

    def string(text: str) -> None:
        raw = text.encode() + b"\x00"
        u32(len(raw))
        out.extend(raw)

    u32(5)
    u32(6)
    string(frame_id)
    u32(height)
    u32(width)
    string(encoding)
    out.append(0)
    u32(width)
    u32(len(data))
    out.extend(data)
    return bytes(out)


def test_received_bytes_cut_anywhere_or_not_cdr_are_an_input_error() -> None:
    from depth_node.errors import InputError
    from sensor_msgs.msg import CompressedImage

    raw = serialize_message(convert.array_to_image(np.zeros((3, 4, 3), np.uint8), "rgb8", _header("camera")))
    assert cdr.read_image(raw).width == 4
    for cut in range(len(raw) - 1):
        with pytest.raises(InputError, match="Image"):
            cdr.read_image(raw[:cut])
    with pytest.raises(InputError, match="not a CDR message"):
        cdr.read_image(b"\x07\x07\x00\x00" + raw[4:])
    compressed = CompressedImage(header=_header("c"), format="jpeg")
    compressed.data = b"\xff\xd8 not really"
    view = cdr.read_compressed_image(serialize_message(compressed))
    assert (view.format, bytes(view.data), view.header.frame_id) == ("jpeg", b"\xff\xd8 not really", "c")


def test_any_received_bytes_read_as_an_image_or_raise_input_error() -> None:
    """What a hostile peer could publish on image: random bytes, and real messages with bytes flipped, never raise
    anything but InputError, through the reader and the node's converter."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from depth_node.errors import InputError

    good = serialize_message(convert.array_to_image(np.zeros((2, 3, 3), np.uint8), "rgb8", _header("camera")))

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.one_of(st.binary(max_size=200), st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)).map(
        lambda flip: good[:flip[0]] + bytes([flip[1]]) + good[flip[0] + 1:])))
    def check(raw: bytes) -> None:
        try:
            convert.image_to_rgb(cdr.read_image(raw))
        except InputError:
            pass

    check()
