"""The CDR bytes of the node's output messages, written from numpy arrays — what ``rclpy`` would serialize, without
building the Python message first — and its input image read from the received bytes, pixels as a view of them.

Writing: a message is laid out once into one uint8 numpy buffer (the serialized message): the header fields, then
the array's own bytes. An output need not exist before its message does: :func:`point_cloud_message` and
:func:`image_message` give the buffer with the data still to be written and a view where it goes, so the pipeline
computes the cloud, the confidence and the picture straight into their messages (``core.pipeline``'s ``out``,
``ros.outputs.OutputMessages``). The buffers are published as they are
(``ros.serialized_publisher``) or written into a bag.

Layout: XCDR1 little endian (encapsulation ``00 01 00 00``, what rmw_fastrtps writes), each primitive aligned to its
size from the start of the payload, strings as uint32 length (with the NUL) + bytes + NUL, sequences as uint32 count
+ elements. Alignment padding is written as zeros; rclpy leaves it uninitialized (measured: garbage bytes there), so
the two agree byte for byte everywhere but in the padding, and every reader decodes both alike (test_cdr.py).

Reading (:func:`read_image`, :func:`read_compressed_image`): a raw subscription hands over the CDR bytes; the header
and fields are unpacked and ``data`` is a memoryview of the bytes themselves, so the node's converters
(``ros.convert``) see an object with the message's field names and no copy of the pixels is made. Either
endianness; anything cut short or out of bounds is an :class:`~depth_node.errors.InputError` naming the field.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from depth_node.errors import InputError

ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR, little endian
_SMALL = 4096  # parts up to this size are joined as bytes first; larger ones are copied into the buffer directly


class _Payload:
    """Pieces of one message's payload, aligned as CDR wants them, copied once into one buffer at the end."""

    def __init__(self) -> None:
        self.parts: list[Any] = [ENCAPSULATION]  # bytes / memoryview, or an int: bytes reserved for the caller
        self.size = 0  # bytes after the encapsulation header: alignment counts from there

    def _align(self, n: int) -> None:
        pad = -self.size % n
        if pad:
            self.parts.append(b"\x00" * pad)
            self.size += pad

    def fixed(self, fmt: str, *values: Any) -> None:
        """Primitives of one size (``fmt``: a struct format of one letter repeated, e.g. ``"<II"``)."""
        self._align(struct.calcsize("<" + fmt[-1]))
        data = struct.pack(fmt, *values)
        self.parts.append(data)
        self.size += len(data)

    def string(self, text: str) -> None:
        data = text.encode() + b"\x00"
        self.fixed("<I", len(data))
        self.parts.append(data)
        self.size += len(data)

    def octets(self, data: Any) -> None:
        """A sequence<uint8>: its count, then the buffer itself (not copied until :meth:`buffer`)."""
        view = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8)) if isinstance(data, np.ndarray) else memoryview(data).cast("B")
        self.fixed("<I", view.nbytes)
        self.parts.append(view)
        self.size += view.nbytes

    def reserve(self, nbytes: int) -> int:
        """A sequence<uint8> of ``nbytes`` whose bytes the caller writes into the buffer; returns their offset in it."""
        self.fixed("<I", nbytes)
        self.parts.append(nbytes)
        self.size += nbytes
        return len(ENCAPSULATION) + self.size - nbytes

    def doubles(self, values: Sequence[float], bounded: bool = False) -> None:
        """float64[N] (``bounded``: a fixed-size array, no count) or sequence<float64>."""
        if not bounded:
            self.fixed("<I", len(values))
        if len(values):
            self.fixed(f"<{len(values)}d", *values)

    def buffer(self) -> np.ndarray:
        """The serialized message: uint8 (encapsulation header + payload); reserved bytes are left unwritten."""
        out = np.empty(len(ENCAPSULATION) + self.size, np.uint8)
        position, small = 0, []

        def put(data: Any) -> None:
            nonlocal position
            n = memoryview(data).nbytes
            out[position:position + n] = np.frombuffer(data, np.uint8)
            position += n

        for part in self.parts:
            if isinstance(part, int) or memoryview(part).nbytes > _SMALL:
                if small:
                    put(b"".join(small))
                    small = []
                if isinstance(part, int):
                    position += part
                else:
                    put(part)
            else:
                small.append(part)
        if small:
            put(b"".join(small))
        return out


def _header(out: _Payload, header: Any) -> None:
    out.fixed("<iI", int(header.stamp.sec), int(header.stamp.nanosec))
    out.string(str(header.frame_id))


def image(header: Any, pixels: np.ndarray, encoding: str) -> np.ndarray:
    """sensor_msgs/Image of an (H, W[, C]) array: little endian, no row padding (step = W × C × itemsize); one copy,
    into the message (strides and byte order are settled by that copy)."""
    pixels = np.asarray(pixels)
    serialized, data = image_message(header, encoding, pixels.shape, pixels.dtype)
    data[...] = pixels
    return serialized


def image_message(header: Any, encoding: str, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """A sensor_msgs/Image whose pixels are not written yet: (the serialized message, a C-contiguous ``shape``
    (H, W[, C]) array of ``dtype`` (little endian) that is a view of its ``data``, to compute the pixels into).
    No row padding (step = W × C × itemsize)."""
    dtype = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
    if len(shape) not in (2, 3):
        raise ValueError(f"an image is (H, W) or (H, W, C), got shape {shape}")
    height, width = shape[:2]
    nbytes = int(np.prod(shape)) * dtype.itemsize
    out = _Payload()
    _header(out, header)
    out.fixed("<II", height, width)
    out.string(encoding)
    out.fixed("<B", 0)  # is_bigendian
    out.fixed("<I", nbytes // height if height else 0)  # step
    offset = out.reserve(nbytes)  # a multiple of 4 from the buffer's start: float32/uint16 views are aligned
    serialized = out.buffer()
    return serialized, serialized[offset:offset + nbytes].view(dtype).reshape(shape)


def point_cloud_message(header: Any, height: int, width: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A sensor_msgs/PointCloud2 of an organized float32 (height, width, 3 | 4) cloud whose points are not written
    yet: (the serialized message, a float32 (height, width, channels) view of its ``data`` to write them into).
    Fields x, y, z[, rgb] (FLOAT32, as ``convert.points_to_cloud``), not dense (NaN marks no point)."""
    if channels not in (3, 4):
        raise ValueError(f"a cloud has 3 (x, y, z) or 4 (x, y, z, rgb) channels, got {channels}")
    out = _Payload()
    _header(out, header)
    out.fixed("<II", height, width)
    out.fixed("<I", channels)
    for n, name in enumerate(("x", "y", "z", "rgb")[:channels]):
        out.string(name)
        out.fixed("<I", 4 * n)
        out.fixed("<B", 7)  # PointField.FLOAT32
        out.fixed("<I", 1)
    out.fixed("<B", 0)  # is_bigendian
    out.fixed("<II", 4 * channels, 4 * channels * width)
    nbytes = 4 * channels * width * height
    offset = out.reserve(nbytes)  # a multiple of 4 from the buffer's start: the float32 view is aligned
    out.fixed("<B", 0)  # is_dense
    serialized = out.buffer()
    return serialized, serialized[offset:offset + nbytes].view(np.float32).reshape(height, width, channels)


def point_cloud(header: Any, points: np.ndarray) -> np.ndarray:
    """sensor_msgs/PointCloud2 of an organized float32 (h, w, 3 | 4) array (see :func:`point_cloud_message`)."""
    if points.dtype != np.float32 or points.ndim != 3 or points.shape[2] not in (3, 4):
        raise ValueError(f"points must be float32 (h, w, 3|4), got {points.dtype} {points.shape}")
    serialized, data = point_cloud_message(header, *points.shape)
    data[...] = points
    return serialized


def camera_info(message: Any) -> np.ndarray:
    """sensor_msgs/CameraInfo from any object with its fields (an rclpy message, ``convert.camera_info_for_grid``)."""
    out = _Payload()
    _header(out, message.header)
    out.fixed("<II", int(message.height), int(message.width))
    out.string(str(message.distortion_model))
    out.doubles([float(v) for v in message.d])
    for name, size in (("k", 9), ("r", 9), ("p", 12)):
        values = [float(v) for v in getattr(message, name)]
        if len(values) != size:
            raise ValueError(f"CameraInfo.{name} has {len(values)} values, not {size}")
        out.doubles(values, bounded=True)
    out.fixed("<II", int(message.binning_x), int(message.binning_y))
    roi = message.roi
    out.fixed("<IIII", int(roi.x_offset), int(roi.y_offset), int(roi.height), int(roi.width))
    out.fixed("<B", int(bool(roi.do_rectify)))
    return out.buffer()


# --------------------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Stamp:
    sec: int
    nanosec: int


@dataclass(frozen=True)
class HeaderView:
    stamp: Stamp
    frame_id: str


@dataclass(frozen=True)
class ImageView:
    """sensor_msgs/Image as received: the fields, ``data`` a view of the received bytes."""

    header: HeaderView
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


@dataclass(frozen=True)
class CompressedImageView:
    header: HeaderView
    format: str
    data: memoryview


class _Fields:
    """Unpacks a CDR payload front to back, aligned from the end of the encapsulation header."""

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self.data, self.what = memoryview(data).cast("B"), what
        if len(self.data) < 4 or self.data[0] != 0 or self.data[1] not in (0, 1):
            raise InputError(f"{what}: not a CDR message (encapsulation {bytes(self.data[:4]).hex() or 'missing'})")
        self.order = "<" if self.data[1] == 1 else ">"
        self.pos = 4

    def _take(self, size: int, align: int, field: str) -> int:
        self.pos += -(self.pos - 4) % align
        start, self.pos = self.pos, self.pos + size
        if self.pos > len(self.data):
            raise InputError(f"{self.what}: message cut short at {field} ({len(self.data)} bytes)")
        return start

    def fixed(self, fmt: str, field: str) -> tuple[Any, ...]:
        size = struct.calcsize("<" + fmt)
        return struct.unpack_from(self.order + fmt, self.data, self._take(size, struct.calcsize("<" + fmt[-1]), field))

    def octets(self, field: str) -> memoryview:
        (count,) = self.fixed("I", field)
        start = self._take(count, 1, field)
        return self.data[start:start + count]

    def string(self, field: str) -> str:
        raw = self.octets(field)
        return bytes(raw[:-1] if len(raw) and raw[-1] == 0 else raw).decode("utf-8", errors="replace")

    def header(self) -> HeaderView:
        sec, nanosec = self.fixed("iI", "header.stamp")
        return HeaderView(Stamp(sec, nanosec), self.string("header.frame_id"))


def read_image(data: bytes | memoryview) -> ImageView:
    """A received sensor_msgs/Image (CDR); ``data`` is a view of ``data``'s bytes (no copy)."""
    fields = _Fields(data, "Image")
    header = fields.header()
    height, width = fields.fixed("II", "height/width")
    encoding = fields.string("encoding")
    (is_bigendian,) = fields.fixed("B", "is_bigendian")
    (step,) = fields.fixed("I", "step")
    return ImageView(header, height, width, encoding, is_bigendian, step, fields.octets("data"))


def read_compressed_image(data: bytes | memoryview) -> CompressedImageView:
    """A received sensor_msgs/CompressedImage (CDR); ``data`` is a view of the bytes."""
    fields = _Fields(data, "CompressedImage")
    header = fields.header()
    return CompressedImageView(header, fields.string("format"), fields.octets("data"))

