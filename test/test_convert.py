"""Message conversion (our cv_bridge): every encoding, padded rows, both endiannesses, and bad messages."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import backproject
from depth_node.errors import InputError
from depth_node.ros import convert

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)


def make_image(pixels: np.ndarray, encoding: str, padding: int = 0, big_endian: bool = False) -> Image:
    """An Image built by hand (independently of convert.array_to_image), with optional row padding."""
    h, w = pixels.shape[:2]
    wire = pixels.astype(pixels.dtype.newbyteorder(">" if big_endian else "<"))
    rows = wire.reshape(h, -1).view(np.uint8).reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, padding), 0xAB, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(big_endian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


EXPECTED_RGB = {
    "rgb8": (RGB, RGB),
    "bgr8": (RGB[..., ::-1], RGB),
    "rgba8": (np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)]), RGB),
    "bgra8": (np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)]), RGB),
    "mono8": (RGB[..., 0], np.repeat(RGB[..., :1], 3, axis=2)),
    "mono16": (RGB[..., 0].astype(np.uint16) * 257, np.repeat(RGB[..., :1], 3, axis=2)),
}


@pytest.mark.parametrize("encoding", sorted(EXPECTED_RGB))
@pytest.mark.parametrize("padding", [0, 5])
@pytest.mark.parametrize("big_endian", [False, True])
def test_colour_encodings_to_rgb(encoding: str, padding: int, big_endian: bool) -> None:
    pixels, expected = EXPECTED_RGB[encoding]
    rgb = convert.image_to_rgb(make_image(np.ascontiguousarray(pixels), encoding, padding, big_endian))
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 7, 3)
    np.testing.assert_array_equal(rgb, expected)


@pytest.mark.parametrize("encoding, dtype", [("32FC1", np.float32), ("16UC1", np.uint16), ("mono16", np.uint16), ("rgb8", np.uint8), ("bgra8", np.uint8)])
def test_array_round_trip(encoding: str, dtype: type) -> None:
    channels = {"rgb8": 3, "bgra8": 4}.get(encoding, 1)
    shape = (5, 9, channels) if channels > 1 else (5, 9)
    pixels = (RNG.random(shape) * 1000).astype(dtype)
    msg = convert.array_to_image(pixels, encoding, Header(frame_id="f"))
    assert msg.step == 9 * channels * np.dtype(dtype).itemsize and msg.is_bigendian == 0 and msg.header.frame_id == "f"
    np.testing.assert_array_equal(convert.image_to_array(msg), pixels)
    # a big-endian, padded copy of the same pixels reads back identically
    np.testing.assert_array_equal(convert.image_to_array(make_image(pixels, encoding, 3, True)), pixels)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: setattr(m, "encoding", "yuv422"), "unsupported image encoding 'yuv422'"),
        (lambda m: setattr(m, "step", 10), "step 10 is smaller than"),
        (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "expected step × height"),
        (lambda m: (setattr(m, "width", 0), setattr(m, "height", 0)), "zero-size image"),
        (lambda m: setattr(m, "encoding", "32FC1"), "for a camera image"),
    ],
)
def test_bad_images_raise_clear_errors(mutate, message: str) -> None:  # noqa: ANN001
    msg = make_image(RGB, "rgb8")
    mutate(msg)
    with pytest.raises(InputError, match=message):
        convert.image_to_rgb(msg)


@pytest.mark.parametrize("ext, fmt", [(".png", "png"), (".jpg", "rgb8; jpeg compressed bgr8")])
def test_compressed_images(ext: str, fmt: str) -> None:
    big = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_NEAREST)
    ok, data = cv2.imencode(ext, big[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    msg = CompressedImage(format=fmt)
    msg.data = data.tobytes()
    rgb = convert.compressed_to_rgb(msg)
    assert rgb.shape == (48, 64, 3)
    assert np.abs(rgb.astype(int) - big).mean() < (0.01 if ext == ".png" else 15)  # JPEG: chroma subsampling
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 250
    msg.data = cv2.imencode(ext, red[..., ::-1])[1].tobytes()
    decoded = convert.compressed_to_rgb(msg)[8, 8]
    assert decoded[0] > 240 and decoded[1] < 10 and decoded[2] < 10  # channel order is RGB


@pytest.mark.parametrize(
    "data, fmt, message",
    [
        (b"", "jpeg", "empty CompressedImage"),
        (b"hello world, not an image", "jpeg", "neither JPEG nor PNG"),
        (None, "jpeg", "truncated JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "png", "corrupt PNG"),
        (b"\xff\xd8", "compressedDepth png", "unsupported CompressedImage format"),
    ],
)
def test_bad_compressed_images(data: bytes | None, fmt: str, message: str) -> None:
    if data is None:  # a real JPEG cut in half
        data = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()[:300]
    msg = CompressedImage(format=fmt)
    msg.data = data
    with pytest.raises(InputError, match=message):
        convert.compressed_to_rgb(msg)


def _textured_jpeg(width: int = 640, height: int = 480) -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (height, width, 3)).astype(np.uint8)
    return cv2.imencode(".jpg", cv2.GaussianBlur(noise, (15, 15), 5))[1].tobytes()


def test_a_cut_jpeg_with_an_end_marker_appended_is_refused() -> None:
    """A JPEG cut at 60 % and closed with FF D9: OpenCV decodes it into a padded picture without an error; the node
    must refuse it (the decoder's "premature end of data segment" warning is an error here)."""
    cut = _textured_jpeg()
    cut = cut[: len(cut) * 6 // 10] + b"\xff\xd9"
    assert cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)  # what OpenCV gives
    msg = CompressedImage(format="jpeg")
    msg.data = cut
    with pytest.raises(InputError, match="corrupt JPEG .*premature end of data segment"):
        convert.compressed_to_rgb(msg)


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an APP1 Exif segment whose IFD0 holds only Orientation (tag 0x0112)."""
    tiff = b"II*\x00" + (8).to_bytes(4, "little") + (1).to_bytes(2, "little")
    tiff += (0x0112).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
    tiff += orientation.to_bytes(2, "little") + b"\x00\x00" + (0).to_bytes(4, "little")
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_exif_orientation_is_not_applied_as_image_transport_does_not() -> None:
    """The pixels are the sensor's, on camera_info's grid: an EXIF "rotate 90°" tag is ignored (OpenCV's default
    rotates the picture, and the node then refused it as not matching camera_info)."""
    plain = cv2.imencode(".jpg", RGB[..., ::-1])[1].tobytes()
    tagged = _with_exif_orientation(plain, 6)
    assert cv2.imdecode(np.frombuffer(tagged, np.uint8), cv2.IMREAD_COLOR).shape[:2] == RGB.shape[1::-1]  # OpenCV rotates
    msg = CompressedImage(format="jpeg")
    msg.data = plain
    expected = convert.compressed_to_rgb(msg)
    msg.data = tagged
    np.testing.assert_array_equal(convert.compressed_to_rgb(msg), expected)


def test_a_grey_jpeg_becomes_rgb() -> None:
    grey = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)
    msg = CompressedImage(format="jpeg")
    msg.data = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    rgb = convert.compressed_to_rgb(msg)
    assert rgb.shape == (*grey.shape, 3) and (rgb[..., 0] == rgb[..., 1]).all()
    assert np.abs(rgb[..., 0].astype(int) - grey).max() <= 3


def _with_roi(info: CameraInfo, x: int, y: int, width: int, height: int) -> CameraInfo:
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = x, y, width, height
    return info


def make_info(w: int = 640, h: int = 480, k: list[float] | None = None, p: list[float] | None = None) -> CameraInfo:
    info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
    info.k = k or [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    info.p = p or [500.0, 0.0, 320.0, -25.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.1, -0.2, 0.0, 0.0, 0.01]
    return info


def test_camera_info_binning_roi_and_rescaling() -> None:
    info = make_info()
    cam = convert.camera_from_info(info, 640, 480)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (500.0, 510.0, 320.0, 240.0)
    info.binning_x = info.binning_y = 2
    binned = convert.camera_from_info(info, 320, 240)
    assert binned == PinholeCamera(640, 480, 500, 510, 320, 240).resized(320, 240)
    info.binning_x = info.binning_y = 0
    info.roi = RegionOfInterest(x_offset=100, y_offset=50, width=200, height=100)
    roi = convert.camera_from_info(info, 200, 100)
    assert (roi.cx, roi.cy) == (220.0, 190.0)
    # published info for a half-size depth grid: K and P rescaled, Tx scaled with fx; D zero, R identity (rectified)
    out = convert.camera_info_for_grid(make_info(), cam, cam.resized(320, 240), Header(frame_id="cam"))
    assert (out.width, out.height, out.header.frame_id) == (320, 240, "cam")
    assert list(out.k) == pytest.approx([250.0, 0, 159.75, 0, 255.0, 119.75, 0, 0, 1])
    assert list(out.p) == pytest.approx([250.0, 0, 159.75, -12.5, 0, 255.0, 119.75, 0, 0, 0, 1, 0])
    assert list(out.d) == [0.0] * 5 and list(out.r) == [1, 0, 0, 0, 1, 0, 0, 0, 1] and out.binning_x == 0


def test_intrinsics_come_from_p_as_image_geometry_reads_them() -> None:
    """A rectified image's camera is P (K describes the raw image); K only when P is unset."""
    info = make_info(k=[480.0, 0.0, 310.0, 0.0, 490.0, 230.0, 0.0, 0.0, 1.0])
    cam = convert.camera_from_info(info, 640, 480)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (500.0, 510.0, 320.0, 240.0)
    info.p = [0.0] * 12
    cam = convert.camera_from_info(info, 640, 480)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (480.0, 490.0, 310.0, 230.0)


@pytest.mark.parametrize(
    "info, message",
    [
        (make_info(k=[0.0] * 9, p=[0.0] * 12), "uncalibrated"),
        (make_info(k=[np.nan] + [0.0] * 8, p=[0.0] * 12), "NaN/inf"),
        (make_info(320, 240), "camera_info is for a 320x240 image"),
        (_with_roi(make_info(), 200, 0, 640, 480), r"roi \(640x480 at x 200, y 0\) extends past the 640x480 sensor"),
    ],
)
def test_bad_camera_info(info: CameraInfo, message: str) -> None:
    with pytest.raises(InputError, match=message):
        convert.camera_from_info(info, 640, 480)


def test_point_cloud_message_layout_read_independently() -> None:
    cam = PinholeCamera.from_hfov(8, 6, 60)
    depth = np.full((6, 8), 2.0, np.float32)
    depth[1, 2] = np.nan
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 255
    msg = convert.points_to_cloud(backproject(depth, cam, rgb=rgb), Header(frame_id="cam"))
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (6, 8, 16, 128, False)
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7)]
    raw = bytes(msg.data)
    x, y, z, rgb_bits = struct.unpack_from("<fffI", raw, (1 * 8 + 3) * 16)
    assert z == 2.0 and x == pytest.approx(2.0 * (3 - cam.cx) / cam.fx) and y == pytest.approx(2.0 * (1 - cam.cy) / cam.fy)
    assert rgb_bits == 0x00FF0000
    assert all(np.isnan(struct.unpack_from("<fff", raw, (1 * 8 + 2) * 16)))


def test_huge_images_are_refused_before_any_allocation() -> None:
    """16k × 16k raw (1 GB of pixels a node would then triple), and JPEG / PNG files whose header claims a huge
    image (a decompression bomb): refused from the header alone."""
    msg = Image(width=16384, height=16384, encoding="rgb8", step=16384 * 3)
    msg.data = b"\x00" * 16  # the size check comes before the data is looked at
    with pytest.raises(InputError, match="16384x16384 = 268 Mpx, more than the 40 Mpx"):
        convert.image_to_rgb(msg)
    jpeg = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = next(i for i in range(2, len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC2))
    jpeg[sof + 5:sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    png = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    png[16:24] = (20000).to_bytes(4, "big") + (20000).to_bytes(4, "big")
    for data, size in ((jpeg, "60000x60000"), (png, "20000x20000")):
        compressed = CompressedImage(format="jpeg")
        compressed.data = bytes(data)
        assert convert.compressed_dimensions(bytes(data)) == tuple(int(v) for v in size.split("x"))
        with pytest.raises(InputError, match=f"{size} = .* Mpx, more than"):
            convert.compressed_to_rgb(compressed)


def test_negative_focal_length_is_refused() -> None:
    with pytest.raises(InputError, match="fx=-500"):
        convert.camera_from_info(make_info(k=[-500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0],
                                           p=[-500.0, 0.0, 320.0, 0.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]), 640, 480)
