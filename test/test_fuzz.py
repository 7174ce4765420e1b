"""Property-based fuzzing (hypothesis) of every message conversion and of the pipeline entry.

The property is always the same: for any input, a conversion either returns a well-formed result or raises
:class:`InputError` with a message — never another exception, never a crash. 150 cases per test by default
(CI); ``HYPOTHESIS_PROFILE=thorough`` runs 5,000 (conftest.py).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install hypothesis (requirements.txt)")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest  # noqa: E402

from depth_node.core.camera import PinholeCamera  # noqa: E402
from depth_node.core.depth_encoding import decode_depth, encode_depth  # noqa: E402
from depth_node.errors import InputError  # noqa: E402
from depth_node.ros import convert  # noqa: E402

ENCODINGS = [*convert.IMAGE_ENCODINGS, "yuv422", "bayer_rggb8", "8UC3", "", "RGB8", "rgb8\x00"]
uint32 = st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.floats(-1e4, 1e4, width=32))


@st.composite
def images(draw: st.DrawFn) -> Image:
    """Images that are mostly self-consistent (so the checks past the size test run too) and sometimes not."""
    msg = Image()
    msg.encoding = draw(st.sampled_from(ENCODINGS))
    msg.width, msg.height = draw(uint32), draw(uint32)
    dtype, channels = convert.IMAGE_ENCODINGS.get(msg.encoding, (np.dtype(np.uint8), 3))
    row = msg.width * channels * dtype.itemsize
    msg.step = draw(st.one_of(st.just(row), st.integers(row, row + 8), uint32)) % 2**32
    msg.is_bigendian = draw(st.integers(0, 1))
    consistent = msg.step * msg.height if msg.step * msg.height <= 200_000 else 0
    size = draw(st.one_of(st.just(consistent), st.integers(0, 4096)))
    msg.data = draw(st.binary(min_size=size, max_size=size)) if size <= 4096 else bytes(size)
    return msg


@given(images())
def test_image_conversion_returns_pixels_or_input_error(msg: Image) -> None:
    try:
        pixels = convert.image_to_array(msg)
    except InputError as error:
        assert str(error)
    else:
        assert pixels.shape[:2] == (msg.height, msg.width)
    try:
        rgb = convert.image_to_rgb(msg)
    except InputError as error:
        assert str(error)
    else:
        assert rgb.dtype == np.uint8 and rgb.shape == (msg.height, msg.width, 3)


def _real_compressed(ext: str, width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(ext, pixels)[1].tobytes()


@st.composite
def compressed(draw: st.DrawFn) -> CompressedImage:
    """Real JPEG/PNG files, cut, flipped or padded at random places, or arbitrary bytes."""
    msg = CompressedImage(format=draw(st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "", "tiff", "compressedDepth png"])))
    kind = draw(st.sampled_from(["real", "mutated", "random"]))
    if kind == "random":
        msg.data = draw(st.binary(max_size=512))
        return msg
    data = bytearray(_real_compressed(draw(st.sampled_from([".jpg", ".png"])), draw(st.integers(1, 40)), draw(st.integers(1, 40)),
                                      draw(st.integers(0, 3))))
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
        data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=16))
    msg.data = bytes(data)
    return msg


@given(compressed())
def test_compressed_conversion_returns_rgb_or_input_error(msg: CompressedImage) -> None:
    try:
        rgb = convert.compressed_to_rgb(msg)
    except InputError as error:
        assert str(error)
    else:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


@given(st.lists(floats, min_size=9, max_size=9), st.lists(floats, min_size=12, max_size=12), uint32, uint32,
       st.integers(0, 4), st.integers(0, 4), st.tuples(uint32, uint32, uint32, uint32), st.integers(1, 64), st.integers(1, 64))
def test_camera_info_conversion_returns_intrinsics_or_input_error(k, p, width, height, bx, by, roi, image_w, image_h) -> None:  # noqa: ANN001
    info = CameraInfo(width=width, height=height, binning_x=bx, binning_y=by, distortion_model="plumb_bob")
    info.k, info.p = k, p
    info.roi = RegionOfInterest(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3])
    try:
        camera = convert.camera_from_info(info, image_w, image_h)
    except InputError as error:
        assert str(error)
        return
    assert (camera.width, camera.height) == (image_w, image_h)
    assert all(math.isfinite(v) for v in (camera.fx, camera.fy, camera.cx, camera.cy)) and camera.fx > 0 and camera.fy > 0
    out = convert.camera_info_for_grid(info, camera, camera.resized(max(1, image_w // 2), max(1, image_h // 2)), info.header)
    assert out.width == max(1, image_w // 2) and len(out.p) == 12


depth_arrays = st.integers(1, 12).flatmap(lambda h: st.integers(1, 12).flatmap(
    lambda w: st.lists(floats, min_size=h * w, max_size=h * w).map(lambda v: np.array(v, np.float32).reshape(h, w))))


@given(depth_arrays, st.sampled_from(["32FC1", "16UC1"]))
def test_depth_encoding_round_trip_keeps_valid_metres_and_invalidates_the_rest(depth: np.ndarray, encoding: str) -> None:
    stored = encode_depth(depth, encoding)
    msg = convert.array_to_image(stored, encoding, Image().header)
    back = decode_depth(convert.image_to_array(msg), encoding)
    valid = np.isfinite(depth) & (depth > 0)
    if encoding == "16UC1":
        with np.errstate(over="ignore", invalid="ignore"):
            millimetres = np.rint(depth.astype(np.float64) * 1000.0)
        valid &= (millimetres > 0) & (millimetres <= 65535)
        np.testing.assert_allclose(back[valid], depth[valid], atol=5e-4 + 1e-6)
    else:
        valid &= ~np.isinf(depth)
        np.testing.assert_array_equal(back[valid], depth[valid])
    assert np.isnan(back[~valid]).all()


@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from([3, 4]), st.data())
def test_point_cloud_message_holds_every_point(h: int, w: int, fields: int, data: st.DataObject) -> None:
    values = data.draw(st.lists(floats, min_size=h * w * fields, max_size=h * w * fields))
    points = np.array(values, np.float32).reshape(h, w, fields)
    msg = convert.points_to_cloud(points, Image().header)
    assert (msg.height, msg.width, msg.point_step) == (h, w, 4 * fields)
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.float32).reshape(h, w, fields).view(np.uint32),
                                  points.view(np.uint32))


@pytest.fixture(scope="module")
def pipeline(conv_card):  # noqa: ANN001, ANN201
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig
    from depth_node.estimators import load_estimator

    return DepthPipeline(load_estimator(conv_card), PipelineConfig(cloud_decimation=2, max_range=50.0))


@given(st.integers(1, 48), st.integers(1, 48), st.sampled_from([np.uint8, np.uint16, np.float32]), st.sampled_from([1, 3, 4]),
       floats, floats, floats, floats, st.integers(0, 2), st.integers(0, 2))
def test_pipeline_entry_returns_a_result_or_input_error(pipeline, h, w, dtype, channels, fx, fy, cx, cy, dw, dh) -> None:  # noqa: ANN001
    rgb = np.random.default_rng(h * 100 + w).integers(0, 255, (h, w, channels)).astype(dtype)
    if channels == 1:
        rgb = rgb[..., 0]
    try:
        camera = PinholeCamera(w + dw, h + dh, fx, fy, cx, cy)
        result = pipeline.process(rgb, camera, colorized=True)
    except InputError as error:
        assert str(error)
        return
    assert result.depth_m.shape == (h, w) and result.depth_m.dtype == np.float32
    assert result.points.shape[:2] == (-(-h // 2), -(-w // 2)) and result.colorized.shape == (h, w, 3)
    assert ((result.confidence >= 0) & (result.confidence <= 1)).all()
