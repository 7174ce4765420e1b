"""Writing rosbag2 bags (mcap or sqlite3) that ``ros2 bag play`` and Foxglove open.

:class:`BagWriter` adds a connection per topic on first use and writes CDR bytes (e.g. rclpy's
``serialize_message``, byte-compatible with rosbags' CDR) or rosbags message objects.
:func:`rgbd_messages` is the RGB-D camera layout every bag this package writes uses (the layout of the bags in
``../shared/data/bags``): colour Image + JPEG CompressedImage + CameraInfo + registered 32FC1 depth + its info.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.convert.converter import LATCH
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from depth_node.core.camera import PinholeCamera

STORAGES = ("mcap", "sqlite3")
FRAME_ID = "camera_color_optical_frame"
RGBD_TOPICS = {
    "image": ("/camera/color/image_raw", "sensor_msgs/msg/Image"),
    "compressed": ("/camera/color/image_raw/compressed", "sensor_msgs/msg/CompressedImage"),
    "camera_info": ("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo"),
    "depth": ("/camera/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image"),
    "depth_info": ("/camera/aligned_depth_to_color/camera_info", "sensor_msgs/msg/CameraInfo"),
}


class BagWriter:
    """A rosbag2 bag being written; use as a context manager (closing it writes metadata.yaml)."""

    def __init__(self, path: Path, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise ValueError(f"bag storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists: rosbag2 writes a new folder; choose another path or delete it")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.typestore = get_typestore(Stores.ROS2_KILTED)
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.messages = 0

    def write_cdr(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            # /tf_static is latched (transient local), as tf2 publishes it: `ros2 bag play` then gives it to late joiners
            qos = LATCH if topic == TF_STATIC_TOPIC[0] else ()
            connection = self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore,
                                                                                offered_qos_profiles=qos)
        self._writer.write(connection, int(timestamp_ns), data)
        self.messages += 1

    def write(self, topic: str, msgtype: str, timestamp_ns: int, msg: Any) -> None:
        """A rosbags message object."""
        self.write_cdr(topic, msgtype, timestamp_ns, self.typestore.serialize_cdr(msg, msgtype))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _header(typestore: Any, stamp_ns: int, frame_id: str) -> Any:
    T = typestore.types
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000,
                                                                          nanosec=stamp_ns % 1_000_000_000), frame_id=frame_id)


def rgbd_messages(typestore: Any, stamp_ns: int, rgb: np.ndarray, depth_m: np.ndarray | None, camera: PinholeCamera,
                  frame_id: str = FRAME_ID, depth_camera: PinholeCamera | None = None) -> dict[str, Any]:
    """rosbags messages of one RGB-D frame, keyed like :data:`RGBD_TOPICS`. ``depth_m``: float32 metres, NaN or
    inf = no measurement (written as 32FC1 NaN), on ``depth_camera``'s grid (default: the colour camera's)."""
    T = typestore.types
    header = _header(typestore, stamp_ns, frame_id)
    Image = T["sensor_msgs/msg/Image"]

    def info(cam: PinholeCamera) -> Any:
        roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return T["sensor_msgs/msg/CameraInfo"](
            header=header, height=cam.height, width=cam.width, distortion_model="plumb_bob", d=np.zeros(5),
            k=cam.K.reshape(-1), r=np.eye(3).reshape(-1),
            p=np.array([cam.fx, 0, cam.cx, 0, 0, cam.fy, cam.cy, 0, 0, 0, 1, 0], float), binning_x=0, binning_y=0, roi=roi,
        )

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("JPEG encoding failed")
    messages = {
        "image": Image(header=header, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
                       data=rgb.reshape(-1)),
        "compressed": T["sensor_msgs/msg/CompressedImage"](header=header, format="rgb8; jpeg compressed bgr8", data=jpeg.reshape(-1)),
        "camera_info": info(camera),
    }
    if depth_m is not None:
        dcam = depth_camera or camera
        depth = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype("<f4")
        messages["depth"] = Image(header=header, height=depth.shape[0], width=depth.shape[1], encoding="32FC1",
                                  is_bigendian=0, step=depth.shape[1] * 4, data=depth.view(np.uint8).reshape(-1))
        messages["depth_info"] = info(dcam)
    return messages


def write_rgbd(writer: BagWriter, stamp_ns: int, messages: dict[str, Any]) -> None:
    """Write :func:`rgbd_messages` output at bag time ``stamp_ns``."""
    for key, msg in messages.items():
        topic, msgtype = RGBD_TOPICS[key]
        writer.write(topic, msgtype, stamp_ns, msg)


LIDAR_TOPIC = ("/lidar/points", "sensor_msgs/msg/PointCloud2")
TF_STATIC_TOPIC, TF_TOPIC = ("/tf_static", "tf2_msgs/msg/TFMessage"), ("/tf", "tf2_msgs/msg/TFMessage")


def lidar_cloud_message(typestore: Any, stamp_ns: int, points: np.ndarray, rings: np.ndarray, frame_id: str) -> Any:
    """An unorganized PointCloud2 as LiDAR drivers publish it: x, y, z (float32), intensity (float32, 0 here) and
    ring (uint16), 18 bytes a point, little-endian."""
    T = typestore.types
    layout = np.dtype({"names": ["x", "y", "z", "intensity", "ring"], "formats": ["<f4", "<f4", "<f4", "<f4", "<u2"],
                       "offsets": [0, 4, 8, 12, 16], "itemsize": 18})
    data = np.zeros(len(points), layout)
    for i, axis in enumerate("xyz"):
        data[axis] = points[:, i]
    data["ring"] = rings
    Field = T["sensor_msgs/msg/PointField"]
    fields = [Field(name=n, offset=o, datatype=7, count=1) for n, o in (("x", 0), ("y", 4), ("z", 8), ("intensity", 12))]
    fields.append(Field(name="ring", offset=16, datatype=4, count=1))
    return T["sensor_msgs/msg/PointCloud2"](header=_header(typestore, stamp_ns, frame_id), height=1, width=len(points),
                                            fields=fields, is_bigendian=False, point_step=18, row_step=18 * len(points),
                                            data=data.view(np.uint8).reshape(-1), is_dense=True)


def tf_message(typestore: Any, stamp_ns: int, transforms: list[tuple[str, str, Any]]) -> Any:
    """A TFMessage of ``(parent, child, parent_from_child)`` (a :class:`~depth_node.core.transforms.RigidTransform`)."""
    T = typestore.types
    stamped = []
    for parent, child, transform in transforms:
        x, y, z = (float(v) for v in transform.translation)
        qx, qy, qz, qw = (float(v) for v in transform.quaternion())
        stamped.append(T["geometry_msgs/msg/TransformStamped"](
            header=_header(typestore, stamp_ns, parent), child_frame_id=child,
            transform=T["geometry_msgs/msg/Transform"](translation=T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z),
                                                       rotation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))))
    return T["tf2_msgs/msg/TFMessage"](transforms=stamped)
