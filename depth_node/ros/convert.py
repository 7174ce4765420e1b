"""sensor_msgs ↔ numpy, written here because no cv_bridge wheel exists.

Reading is zero-copy where the layout allows (``np.frombuffer`` over the message buffer, honouring ``step``
row padding and ``is_bigendian``); writing is one memcpy into an ``array.array`` (assigning an ndarray to
``msg.data`` is 40–280 ms slower in rclpy). Every malformed message raises :class:`InputError` with the reason.
Works on rclpy messages and on rosbags' deserialized messages alike (same field names).
"""

from __future__ import annotations

import array
from typing import Any

import cv2
import numpy as np

try:  # libjpeg-turbo with its warnings as errors: OpenCV decodes a cut JPEG into a padded picture without a word
    import simplejpeg
except ImportError:  # pragma: no cover - a requirement; a ROS workspace installs it with pip (README)
    simplejpeg = None
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from depth_node.core.camera import PinholeCamera
from depth_node.core.depth_encoding import decode_depth
from depth_node.core.rectify import Calibration, Rectifier
from depth_node.core.transforms import RigidTransform
from depth_node.errors import InputError

# encoding → (dtype, channels). The depth encodings are here so ground-truth depth reads the same way.
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
# Larger than any camera (8K is 33 Mpx); a bigger frame is garbage or an attack, and its depth, confidence and
# cloud at input resolution would take gigabytes.
MAX_PIXELS = 40_000_000
# The longest distortion vector of any camera model (OpenCV's rational + thin prism + tilted: 14). A camera_info with
# more is garbage or an attack: 2 000 000 coefficients are 16 MB per message, in the sync cache 32 times over.
MAX_DISTORTION_COEFFICIENTS = 14
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB}


def image_to_array(msg: Any) -> np.ndarray:
    """An Image → (H, W) or (H, W, C) array in native byte order; a view of the message buffer when possible."""
    encoding = msg.encoding
    if encoding not in IMAGE_ENCODINGS:
        raise InputError(f"unsupported image encoding {encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise InputError(f"zero-size image ({width}x{height})")
    _check_size(width, height)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise InputError(f"step {step} is smaller than width × pixel size = {row_bytes} bytes ({encoding}, width {width})")
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size != step * height:
        raise InputError(f"image data has {buf.size} bytes, expected step × height = {step} × {height} = {step * height}")
    rows = buf.reshape(height, step)[:, :row_bytes]
    if dtype.itemsize == 1:
        pixels = rows
    else:
        wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
        pixels = rows.view(wire)
        if wire != dtype.newbyteorder("="):
            pixels = pixels.astype(dtype)
    return pixels.reshape((height, width, channels) if channels > 1 else (height, width))


def image_to_rgb(msg: Any) -> np.ndarray:
    """A colour or mono Image → uint8 (H, W, 3) RGB. mono16 maps 0..65535 to 0..255."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise InputError(
            f"unsupported image encoding {msg.encoding!r} for a camera image; supported: {', '.join(COLOR_ENCODINGS)}"
        )
    pixels = image_to_array(msg)
    if msg.encoding == "rgb8":
        return pixels
    if msg.encoding == "mono16":
        pixels = (pixels >> 8).astype(np.uint8)
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(np.ascontiguousarray(pixels), _TO_RGB[msg.encoding])


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A CompressedImage (jpeg or png, as image_transport's compressed plugin writes) → uint8 (H, W, 3) RGB."""
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt or ("jpeg" not in fmt and "jpg" not in fmt and "png" not in fmt and fmt.strip()):
        raise InputError(f"unsupported CompressedImage format {msg.format!r}; supported: jpeg, png")
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        raise InputError("empty CompressedImage data")
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    is_png = data[:8].tobytes() == b"\x89PNG\r\n\x1a\n"
    if not (is_jpeg or is_png):
        raise InputError(f"CompressedImage data ({data.size} bytes) is neither JPEG nor PNG (bad magic bytes)")
    # libjpeg decodes a truncated stream into a padded picture instead of failing: demand the EOI marker here, and
    # (below) treat the decoder's warnings as errors, which also catches a cut stream with an EOI appended.
    if is_jpeg and b"\xff\xd9" not in data[-16:].tobytes():
        raise InputError(f"corrupt or truncated JPEG ({data.size} bytes, no end-of-image marker)")
    size = compressed_dimensions(data.tobytes())
    if size is None:
        raise InputError(f"corrupt {'JPEG' if is_jpeg else 'PNG'} ({data.size} bytes): no image size in its header")
    _check_size(*size)  # before decoding: a small file can claim a huge image
    if is_jpeg:
        return _decode_jpeg(data)
    # EXIF orientation is not applied (image_transport does not apply it either: the pixels are the sensor's)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.size == 0:
        raise InputError(f"corrupt PNG ({data.size} bytes): the decoder rejected it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _decode_jpeg(data: np.ndarray) -> np.ndarray:
    """JPEG bytes → uint8 (H, W, 3) RGB as the camera wrote them (no EXIF rotation, as image_transport); any decoder
    warning (corrupt or cut entropy data) is an :class:`InputError`."""
    if simplejpeg is None:
        raise InputError("JPEG input needs the simplejpeg package: pip install simplejpeg")
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as exc:
        raise InputError(f"corrupt JPEG ({data.size} bytes): {exc}") from None


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise InputError(f"image is {width}x{height} = {width * height / 1e6:.0f} Mpx, more than the {MAX_PIXELS / 1e6:.0f} Mpx "
                         "depth_node accepts: resize it first (image_proc's resize)")


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame header, without decoding; None if absent."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        if length < 2:
            return None
        i += 2 + length
    return None


def depth_image_to_metres(msg: Any, what: str = "depth") -> np.ndarray:
    """A depth Image (16UC1 / mono16 millimetres, 32FC1 metres) → float32 metres, NaN where there is no
    measurement (0, negative, NaN, inf). ``what`` names the image in the error for any other encoding."""
    encoding = "16UC1" if msg.encoding == "mono16" else msg.encoding
    if encoding not in ("16UC1", "32FC1"):
        raise InputError(f"{what} must be 16UC1 (mm) or 32FC1 (m), got {msg.encoding!r}")
    return decode_depth(image_to_array(msg), encoding)


def _bytes_of(array_: np.ndarray) -> array.array:
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(array_).reshape(-1).view(np.uint8))
    return out


def array_to_image(pixels: np.ndarray, encoding: str, header: Any, msg_type: Any = None) -> Any:
    """(H, W[, C]) array → Image with ``header`` (little-endian, no padding)."""
    msg_type = msg_type or Image
    dtype, channels = IMAGE_ENCODINGS[encoding]
    if pixels.dtype != dtype or (pixels.shape[2] if pixels.ndim == 3 else 1) != channels:
        raise ValueError(f"{encoding} needs {dtype} with {channels} channel(s), got {pixels.dtype} {pixels.shape}")
    msg = msg_type()
    msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = _bytes_of(pixels.astype(dtype.newbyteorder("<"), copy=False))
    return msg


def _grid_of_info(info: Any) -> tuple[float, float, float, float, int, int]:
    """(x_offset, y_offset, binning_x, binning_y, width, height) of the image a CameraInfo describes."""
    bx, by = max(1, int(info.binning_x)), max(1, int(info.binning_y))
    roi = info.roi
    if roi.width > 0 and roi.height > 0:
        x0, y0, w, h = roi.x_offset, roi.y_offset, roi.width, roi.height
        if info.width > 0 and info.height > 0 and (x0 + w > info.width or y0 + h > info.height):
            raise InputError(f"camera_info roi ({w}x{h} at x {x0}, y {y0}) extends past the {info.width}x{info.height} sensor: "
                             "the intrinsics would be shifted; fix the camera driver's ROI")
    else:
        x0, y0, w, h = 0, 0, int(info.width), int(info.height)
    return float(x0), float(y0), float(bx), float(by), w // bx, h // by


def _projection(info: Any) -> np.ndarray:
    """The 3×3 of P (the rectified camera) when P is set, else K (cameras publishing no P); checked."""
    p = np.asarray(info.p, np.float64)
    if p.shape == (12,) and np.all(np.isfinite(p)) and p[0] > 0 and p[5] > 0:
        return p.reshape(3, 4)[:, :3]
    k = np.asarray(info.k, np.float64)
    if k.shape != (9,) or not np.all(np.isfinite(k)):
        raise InputError("camera_info K has NaN/inf entries: fix the camera's calibration file")
    if k[0] <= 0 or k[4] <= 0:
        raise InputError(
            f"camera_info K has fx={k[0]:g}, fy={k[4]:g} (uncalibrated camera?): calibrate it, or stop publishing "
            "camera_info and set fallback_hfov_deg"
        )
    return k.reshape(3, 3)


def check_camera_info(info: Any) -> Any:
    """``info`` when its arrays have the sizes of a camera_info (checked on arrival, before it is kept); else
    :class:`InputError`."""
    if len(info.d) > MAX_DISTORTION_COEFFICIENTS:
        raise InputError(f"camera_info D has {len(info.d)} coefficients; no camera model has more than "
                         f"{MAX_DISTORTION_COEFFICIENTS} (distortion_model {str(info.distortion_model)[:40]!r}): fix the calibration")
    return info


def camera_from_info(info: Any, width: int, height: int) -> PinholeCamera:
    """Intrinsics of a ``width`` × ``height`` rectified image from its CameraInfo: P (as image_geometry and
    depth_image_proc project), K when P is unset; ROI and binning applied.

    Raises :class:`InputError` for an unusable P and K or a camera_info made for another image size.
    """
    m = _projection(info)
    x0, y0, bx, by, w, h = _grid_of_info(info)
    if (w, h) != (width, height):
        raise InputError(
            f"camera_info is for a {w}x{h} image (width {info.width}, height {info.height}, binning "
            f"{int(bx)}x{int(by)}) but the image is {width}x{height}: remap camera_info to this camera's own topic"
        )
    return PinholeCamera(
        width, height, m[0, 0] / bx, m[1, 1] / by, (m[0, 2] - x0 + 0.5) / bx - 0.5, (m[1, 2] - y0 + 0.5) / by - 0.5
    )


def calibration_of(info: Any) -> Calibration:
    """K, D, R and P's 3×3 of a full-resolution camera_info (no binning, no ROI), for :class:`Rectifier`."""
    _, _, bx, by, w, h = _grid_of_info(info)
    if bx != 1 or by != 1 or (w, h) != (int(info.width), int(info.height)):
        raise InputError("camera_model raw with binning or an ROI in camera_info: rectify upstream (image_proc) and set "
                         "camera_model: rectified")
    return Calibration(tuple(float(v) for v in info.k), tuple(float(v) for v in info.d), tuple(float(v) for v in info.r),
                       tuple(float(v) for v in _projection(info).ravel()), str(info.distortion_model), w, h)


class InputGeometry:
    """An image and its camera_info → the rectified image and its camera, per ``camera_model`` (rectified: the image
    is rectified already, P is read; raw: the image is remapped with K, D, R, P first). The node and eval share it."""

    def __init__(self) -> None:
        self._rectifiers: dict[Calibration, Rectifier] = {}

    def __call__(self, rgb: np.ndarray, info: Any, camera_model: str) -> tuple[np.ndarray, PinholeCamera, bool]:
        """(image, camera, distortion ignored: rectified mode with D ≠ 0 — fine for image_rect, wrong for image_raw)."""
        height, width = rgb.shape[:2]
        camera = camera_from_info(check_camera_info(info), width, height)
        distorted = any(float(v) != 0.0 for v in info.d)
        if camera_model != "raw":
            return rgb, camera, distorted
        calibration = calibration_of(info)
        if calibration.unchanged_by_rectifying:
            return rgb, camera, False
        rectifier = self._rectifiers.get(calibration)
        if rectifier is None:
            if len(self._rectifiers) > 4:
                self._rectifiers.clear()
            rectifier = self._rectifiers[calibration] = Rectifier(calibration)
        return rectifier.rectify(rgb), camera, False


def camera_info_for_grid(
    source: Any | None, camera: PinholeCamera, depth_camera: PinholeCamera, header: Any, msg_type: Any = None
) -> Any:
    """CameraInfo for the depth grid ``depth_camera``, derived from the image's ``source`` info (or None).

    K and P describe the depth grid directly (binning 1, no ROI); P's projection is transformed exactly like
    K (a rectified camera's P is rescaled, its Tx/Ty baselines scale with fx/fy); D is zero and R identity: the depth
    image is rectified. Header is ``header`` (the input image's), as depth_image_proc expects.
    """
    out = (msg_type or CameraInfo)()
    out.header = header
    out.width, out.height = depth_camera.width, depth_camera.height
    kd = depth_camera
    out.k = [kd.fx, 0.0, kd.cx, 0.0, kd.fy, kd.cy, 0.0, 0.0, 1.0]
    p = np.array([kd.fx, 0.0, kd.cx, 0.0, 0.0, kd.fy, kd.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
    if source is not None:
        src_p = np.asarray(source.p, np.float64)
        if src_p.shape == (12,) and np.all(np.isfinite(src_p)) and src_p[0] > 0 and src_p[5] > 0:
            x0, y0, bx, by, _, _ = _grid_of_info(source)
            ax = depth_camera.width / camera.width / bx
            ay = depth_camera.height / camera.height / by
            p = src_p.copy()
            p[0], p[1], p[3] = src_p[0] * ax, src_p[1] * ax, src_p[3] * ax
            p[2] = (src_p[2] - x0 + 0.5) * ax - 0.5
            p[5], p[7] = src_p[5] * ay, src_p[7] * ay
            p[6] = (src_p[6] - y0 + 0.5) * ay - 0.5
    # the depth image is rectified: no distortion, no rectification rotation left (image_rect's convention)
    out.distortion_model = "plumb_bob"
    out.d = [0.0] * 5
    out.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    out.p = [float(v) for v in p]
    return out


def points_to_cloud(points: np.ndarray, header: Any, msg_type: Any = None, field_type: Any = None) -> Any:
    """Interleaved float32 (h, w, 3 | 4) from :func:`depth_node.core.cloud.interleave` → organized PointCloud2
    (fields x, y, z[, rgb], ``is_dense`` false, NaN for invalid)."""
    if msg_type is None:
        msg_type, field_type = PointCloud2, PointField
    if points.dtype != np.float32 or points.ndim != 3 or points.shape[2] not in (3, 4):
        raise ValueError(f"points must be float32 (h, w, 3|4), got {points.dtype} {points.shape}")
    names = ("x", "y", "z", "rgb")[: points.shape[2]]
    msg = msg_type()
    msg.header = header
    msg.height, msg.width = int(points.shape[0]), int(points.shape[1])
    msg.fields = [field_type(name=n, offset=4 * i, datatype=field_type.FLOAT32, count=1) for i, n in enumerate(names)]
    msg.is_bigendian = False
    msg.point_step = 4 * len(names)
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = False
    msg.data = _bytes_of(points)
    return msg


# PointField datatype → numpy type (sensor_msgs/PointField constants 1..8)
_POINT_FIELD_TYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32, 6: np.uint32, 7: np.float32, 8: np.float64}
MAX_CLOUD_POINTS = 20_000_000  # more than any LiDAR's frame (a 128-beam sensor gives ~260 k); garbage or an attack


def cloud_to_points(msg: Any, what: str = "point cloud") -> np.ndarray:
    """A PointCloud2 (any point layout, organized or not, either byte order) → float64 (N, 3) of its finite x, y, z
    in the message's frame. Missing x/y/z fields, a data buffer shorter than its declared size and absurd sizes
    raise :class:`InputError`."""
    fields = {f.name: f for f in msg.fields}
    missing = [n for n in ("x", "y", "z") if n not in fields]
    if missing:
        raise InputError(f"{what} has no {'/'.join(missing)} field (fields: {', '.join(fields) or 'none'})")
    height, width, step, row_step = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    if height * width > MAX_CLOUD_POINTS:
        raise InputError(f"{what} declares {height}x{width} points, more than {MAX_CLOUD_POINTS}")
    order = ">" if msg.is_bigendian else "<"
    layout = {"names": [], "formats": [], "offsets": [], "itemsize": step}
    for name in ("x", "y", "z"):
        field = fields[name]
        kind = _POINT_FIELD_TYPES.get(int(field.datatype))
        if kind is None:
            raise InputError(f"{what}: field {name} has unknown datatype {field.datatype}")
        size = np.dtype(kind).itemsize
        if int(field.offset) + size > step:
            raise InputError(f"{what}: field {name} at offset {field.offset} does not fit a point of {step} bytes")
        layout["names"].append(name)
        layout["formats"].append(np.dtype(kind).newbyteorder(order))
        layout["offsets"].append(int(field.offset))
    data = np.frombuffer(memoryview(msg.data).cast("B"), np.uint8)
    if width and height and (row_step < width * step or data.size < (height - 1) * row_step + width * step):
        raise InputError(f"{what}: {data.size} bytes of data for {height}x{width} points of {step} bytes "
                         f"(row_step {row_step})")
    if not (width and height):
        return np.zeros((0, 3))
    rows = np.lib.stride_tricks.as_strided(data, (height, width * step), (row_step, 1))  # row padding skipped
    structured = np.ascontiguousarray(rows).view(np.dtype(layout)).reshape(-1)
    xyz = np.stack([structured[n].astype(np.float64) for n in ("x", "y", "z")], axis=1)
    return xyz[np.isfinite(xyz).all(axis=1)]


def transform_of(stamped: Any) -> RigidTransform:
    """A geometry_msgs/TransformStamped → its ``parent_from_child`` (header.frame_id ← child_frame_id)."""
    t, q = stamped.transform.translation, stamped.transform.rotation
    try:
        return RigidTransform.from_xyz_quaternion(t.x, t.y, t.z, q.x, q.y, q.z, q.w)
    except ValueError as error:
        raise InputError(f"transform {stamped.header.frame_id} → {stamped.child_frame_id}: {error}") from None
