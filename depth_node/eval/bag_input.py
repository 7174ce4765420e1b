"""Read an RGB-D bag as evaluation frames: camera image + its camera_info + ground-truth depth (+ its camera_info).

Any bag ``rosbags`` opens: rosbag2 (mcap, sqlite3) folders or files and ROS 1 ``.bag`` files. Topics are found by
message type when not given (a colour Image, else a CompressedImage; a 16UC1 / 32FC1 Image for ground truth; the
``camera_info`` beside each), and :class:`TopicChoice` says what was picked and why.

Pairing is by header stamp, as the node pairs: each image takes the ground-truth depth nearest in stamp within
``slop`` (none → the image is still processed but not scored) and the camera_info nearest in stamp (or the
latest before it, as the node's ``use_last_camera_info``). The bag is read twice: once for the stamps (cheap), once
for the data, holding only the messages a pending frame still needs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rosbags.convert.converter import migrate_message
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from depth_node.core.camera import PinholeCamera
from depth_node.errors import DepthNodeError
from depth_node.ros import convert

IMAGE, COMPRESSED, INFO = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo"
CLOUD = "sensor_msgs/msg/PointCloud2"
# a 16-bit mono image in an RGB-D bag is depth, not a camera image
DEPTH_ENCODINGS = ("16UC1", "32FC1", "mono16")
CAMERA_ENCODINGS = tuple(e for e in convert.COLOR_ENCODINGS if e not in DEPTH_ENCODINGS)


class BagError(DepthNodeError):
    """A bag that cannot be evaluated as asked (missing or ambiguous topics, unreadable file)."""


@dataclass(frozen=True)
class TopicChoice:
    image: str
    image_type: str        # IMAGE or COMPRESSED
    camera_info: str | None
    depth: str | None
    depth_info: str | None
    notes: tuple[str, ...] = ()
    prediction: str | None = None       # a depth image recorded in the bag, scored like the node's (--prediction-topic)
    prediction_info: str | None = None  # its camera_info (None: on the image's field of view)
    cloud: str | None = None            # ground truth as a PointCloud2 (a LiDAR), projected into the camera

    def describe(self) -> str:
        lines = [f"image:       {self.image} ({self.image_type.rsplit('/', 1)[-1]})",
                 f"camera_info: {self.camera_info or '(none: fallback_hfov_deg)'}"]
        if self.cloud:
            lines.append(f"gt cloud:    {self.cloud} (PointCloud2, projected into the camera)")
        else:
            lines += [f"gt depth:    {self.depth or '(none: latency only, nothing scored)'}",
                      f"gt info:     {self.depth_info or '(none: assumed registered to the image)'}"]
        if self.prediction:
            lines.append(f"recorded:    {self.prediction} (scored as a prediction; info: "
                         f"{self.prediction_info or 'none, assumed registered to the image'})")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


@dataclass
class EvalFrame:
    """One camera image and what belongs to it (messages as rosbags deserialized them)."""

    index: int
    stamp_ns: int
    image: Any
    camera_info: Any | None
    depth: Any | None
    depth_info: Any | None
    raw: dict[str, tuple[int, bytes]]  # topic → (bag timestamp, CDR bytes) of the messages used, for the output bag
    prediction: Any | None = None       # the recorded depth image of TopicChoice.prediction, and its camera_info
    prediction_info: Any | None = None
    cloud: Any | None = None            # the ground-truth PointCloud2 of TopicChoice.cloud


def frame_image(frame: EvalFrame, image_type: str, geometry: convert.InputGeometry, camera_model: str,
                fallback_hfov_deg: float) -> tuple[np.ndarray, PinholeCamera]:
    """A frame's camera image as uint8 RGB and its intrinsics, as the node gets them: through its camera_info
    (``geometry``: binning, ROI, rectification by ``camera_model``), else ``fallback_hfov_deg`` (0: refused)."""
    rgb = convert.compressed_to_rgb(frame.image) if image_type == COMPRESSED else convert.image_to_rgb(frame.image)
    if frame.camera_info is not None:
        rgb, camera, _ = geometry(rgb, frame.camera_info, camera_model)
        return rgb, camera
    if fallback_hfov_deg <= 0:
        raise DepthNodeError("the bag has no camera_info for the image and fallback_hfov_deg is 0: give --camera-info-topic")
    return rgb, PinholeCamera.from_hfov(rgb.shape[1], rgb.shape[0], fallback_hfov_deg)


def stamp_of(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def kilted_typestore():  # noqa: ANN201 - rosbags Typestore

    return get_typestore(Stores.ROS2_KILTED)


class MessageReader:
    """Deserialize a bag's raw records as ROS 2 (Kilted) messages with their CDR bytes, whatever the bag's ROS
    version: ROS 1 messages are migrated (header seq dropped, CameraInfo D/K/R/P → d/k/r/p)."""

    def __init__(self, reader: Any) -> None:
        self.reader, self.kilted, self._cache = reader, kilted_typestore(), {}

    def __call__(self, msgtype: str, raw: bytes | memoryview) -> tuple[Any, bytes]:
        if self.reader.is2:
            return self.reader.deserialize(raw, msgtype), bytes(raw)

        ros1 = self.reader.deserialize(raw, msgtype)
        msg = migrate_message(self.reader.typestore, self.kilted, msgtype, msgtype, self._cache, ros1)
        return msg, bytes(self.kilted.serialize_cdr(msg, msgtype))


def open_reader(bag: Path):  # noqa: ANN201 - rosbags AnyReader, open; the caller closes it

    bag = Path(bag)
    if not bag.exists():
        raise BagError(f"no bag at {bag}")
    if bag.is_file() and bag.suffix in (".mcap", ".db3"):
        bag = bag.parent  # rosbag2 is the folder with metadata.yaml
    try:
        reader = AnyReader([bag], default_typestore=kilted_typestore())
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for unreadable input
        raise BagError(f"cannot open {bag} as a ROS 1 or ROS 2 bag: {exc} (a cut-short rosbag2 recording? "
                       "`depth-node bag-recover BAG OUT` writes a complete copy of what it holds)") from exc
    return reader


def _sibling_info(topic: str, infos: list[str]) -> str | None:
    """The camera_info topic of an image topic: same namespace (…/image_raw[/compressed] → …/camera_info)."""
    parts = topic.rstrip("/").split("/")
    if parts[-1] == "compressed":
        parts = parts[:-1]
    for depth in range(len(parts) - 1, 0, -1):
        candidate = "/".join(parts[:depth] + ["camera_info"])
        if candidate in infos:
            return candidate
    return None


def readable_messages(reader: Any, connections: list[Any], problems: list[str]) -> Iterator[tuple[Any, int, bytes]]:
    """``reader.messages`` up to the first damage (a corrupt chunk, a cut file): what comes before it is yielded,
    the damage is described in ``problems`` instead of raised, so a damaged bag is still scored as far as it reads."""
    messages = reader.messages(connections=connections)
    count = 0
    while True:
        try:
            item = next(messages)
        except StopIteration:
            return
        except Exception as exc:  # rosbags raises ReaderError, struct, zstd and lz4 errors for damaged files
            problems.append(f"the bag is damaged after {count} readable messages ({type(exc).__name__}: {exc}); "
                            "the rest is skipped (`depth-node bag-recover` may rescue more: it skips a damaged chunk)")
            return
        count += 1
        yield item


def _first_encoding(reader: Any, connection: Any) -> str | None:
    for conn, _, raw in readable_messages(reader, [connection], []):
        return str(reader.deserialize(raw, conn.msgtype).encoding)
    return None


def choose_topics(reader: Any, image: str | None = None, camera_info: str | None = None, depth: str | None = None,
                  depth_info: str | None = None, prediction: str | None = None, cloud: str | None = None) -> TopicChoice:
    """Given topics as they are (checked to exist with the right type); the rest found by type, or BagError.
    ``prediction``: a recorded depth image to score (never taken as the ground truth). ``cloud``: a PointCloud2 as the
    ground truth instead of a depth image; found by type when the bag has no depth image and exactly one cloud."""
    by_topic = {c.topic: c for c in reader.connections}
    listing = ", ".join(f"{c.topic} [{c.msgtype}, {c.msgcount} messages]" for c in reader.connections)

    def check(topic: str, types: tuple[str, ...], what: str) -> None:
        if topic not in by_topic:
            raise BagError(f"{what} topic {topic} is not in the bag; it has: {listing}")
        if by_topic[topic].msgtype not in types:
            raise BagError(f"{what} topic {topic} is {by_topic[topic].msgtype}, expected {' or '.join(types)}")

    notes = []
    encodings = {c.topic: _first_encoding(reader, c) for c in reader.connections if c.msgtype == IMAGE and c.msgcount}
    colour = [t for t, e in encodings.items() if e in CAMERA_ENCODINGS]
    depths = [t for t, e in encodings.items() if e in DEPTH_ENCODINGS and t != prediction]
    compressed = [c.topic for c in reader.connections if c.msgtype == COMPRESSED and "compressedDepth" not in c.topic and c.msgcount]
    infos = [c.topic for c in reader.connections if c.msgtype == INFO]
    if image:
        check(image, (IMAGE, COMPRESSED), "image")
    else:
        pool = colour or compressed
        if not pool:
            silent = [c.topic for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED) and not c.msgcount]
            if silent and not encodings and not compressed:
                raise BagError(f"the bag holds no message on its image topics ({', '.join(silent)}: 0 messages): an empty "
                               f"recording, or one cut before its first frame; it has: {listing}")
            raise BagError(f"no colour camera image in the bag (Image rgb8/bgr8/mono8… or CompressedImage); it has: {listing}")
        if len(pool) > 1:
            raise BagError(f"several camera images ({', '.join(pool)}): pick one with --image-topic")
        image = pool[0]
        if colour and compressed:
            notes.append(f"raw {image} preferred over compressed {', '.join(compressed)}")
    clouds = [c.topic for c in reader.connections if c.msgtype == CLOUD and c.msgcount]
    if cloud:
        check(cloud, (CLOUD,), "ground-truth cloud")
        if depth:
            raise BagError(f"one ground truth at a time: --gt-topic {depth} or --gt-cloud-topic {cloud}")
        depths = []
    elif not depth and not depths and clouds:
        if len(clouds) > 1:
            raise BagError(f"several point clouds ({', '.join(clouds)}) and no depth image: pick the ground truth with "
                           "--gt-cloud-topic")
        cloud = clouds[0]
    elif clouds:
        notes.append(f"{', '.join(clouds)} (PointCloud2) not used: the depth image is the ground truth; "
                     "--gt-cloud-topic scores against a cloud instead")
    if depth:
        check(depth, (IMAGE,), "ground-truth depth")
    elif depths:
        if len(depths) > 1:
            raise BagError(f"several depth images ({', '.join(depths)}): pick the ground truth with --gt-topic")
        depth = depths[0]
    if camera_info:
        check(camera_info, (INFO,), "camera_info")
    else:
        camera_info = _sibling_info(image, infos)
    if depth_info:
        check(depth_info, (INFO,), "ground-truth camera_info")
    elif depth:
        depth_info = _sibling_info(depth, infos)
    prediction_info = None
    if prediction:
        check(prediction, (IMAGE,), "recorded prediction")
        if prediction == depth:
            raise BagError(f"{prediction} is the ground truth: --prediction-topic names another depth topic to score against it")
        prediction_info = _sibling_info(prediction, infos)
    return TopicChoice(image, by_topic[image].msgtype, camera_info, depth, depth_info, tuple(notes), prediction, prediction_info,
                       cloud)


def _nearest(stamps: np.ndarray, t: int, slop_ns: float) -> int | None:
    """Index of the stamp nearest ``t`` within ``slop_ns`` (``stamps`` sorted), else None."""
    if stamps.size == 0:
        return None
    i = int(np.searchsorted(stamps, t))
    best = min((j for j in (i - 1, i) if 0 <= j < stamps.size), key=lambda j: abs(int(stamps[j]) - t))
    return best if abs(int(stamps[best]) - t) <= slop_ns else None


def _latest_before(stamps: np.ndarray, t: int) -> int | None:
    i = int(np.searchsorted(stamps, t, side="right")) - 1
    return i if i >= 0 else (0 if stamps.size else None)


class BagFrames:
    """Iterate :class:`EvalFrame` over a bag; ``len()`` is the number of camera images."""

    def __init__(self, bag: Path, topics: TopicChoice, slop_s: float = 0.02, max_frames: int = 0,
                 cloud_slop_s: float = 0.05) -> None:
        for name, value in (("slop", slop_s), ("cloud slop", cloud_slop_s)):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value}")
        self.bag, self.topics, self.slop_ns, self.cloud_slop_ns = Path(bag), topics, slop_s * 1e9, cloud_slop_s * 1e9
        self.problems: list[str] = []  # damage found while indexing (the frames before it are still used)
        reader = open_reader(self.bag)
        try:
            stamps: dict[str, list[int]] = defaultdict(list)
            for conn, _, raw in readable_messages(reader, self._connections(reader), self.problems):
                stamps[conn.topic].append(stamp_of(reader.deserialize(raw, conn.msgtype)))
        finally:
            reader.close()
        self._stamps = {t: np.asarray(v, np.int64) for t, v in stamps.items()}
        image_stamps = self._stamps.get(topics.image, np.zeros(0, np.int64))
        if max_frames > 0:
            image_stamps = image_stamps[:max_frames]
        self.image_stamps = image_stamps
        self._plan = [self._parts_for(int(t)) for t in image_stamps]
        truth = topics.depth or topics.cloud
        self.unmatched_gt = sum(1 for p in self._plan if truth and p.get(truth) is None)

    def _connections(self, reader: Any) -> list[Any]:
        t = self.topics
        wanted = {x for x in (t.image, t.camera_info, t.depth, t.depth_info, t.prediction, t.prediction_info, t.cloud) if x}
        return [c for c in reader.connections if c.topic in wanted]

    def _sorted(self, topic: str | None) -> tuple[np.ndarray, np.ndarray]:
        stamps = self._stamps.get(topic, np.zeros(0, np.int64)) if topic else np.zeros(0, np.int64)
        order = np.argsort(stamps, kind="stable")
        return stamps[order], order

    def _parts_for(self, t: int) -> dict[str, int | None]:
        """topic → index (in bag order) of the message this image uses."""
        parts: dict[str, int | None] = {}
        chosen = self.topics
        for topic, exact in ((chosen.camera_info, False), (chosen.depth, True), (chosen.depth_info, False),
                             (chosen.prediction, True), (chosen.prediction_info, False), (chosen.cloud, True)):
            if not topic:
                continue
            stamps, order = self._sorted(topic)
            i = _nearest(stamps, t, self.cloud_slop_ns if topic == chosen.cloud else self.slop_ns)
            if i is None and not exact:
                i = _latest_before(stamps, t)
            parts[topic] = None if i is None else int(order[i])
        return parts

    def __len__(self) -> int:
        return len(self._plan)

    def __iter__(self) -> Iterator[EvalFrame]:
        topics = self.topics
        needed: dict[tuple[str, int], int] = defaultdict(int)  # (topic, index) → frames still waiting for it
        for parts in self._plan:
            for topic, index in parts.items():
                if index is not None:
                    needed[(topic, index)] += 1
        held: dict[tuple[str, int], tuple[int, bytes, Any]] = {}
        pending: list[tuple[int, int, bytes, Any]] = []  # images waiting for parts: (frame index, bag time, raw, msg)
        counters: dict[str, int] = defaultdict(int)
        next_frame = 0
        reader = open_reader(self.bag)
        read = MessageReader(reader)
        try:
            for conn, bag_time, raw in readable_messages(reader, self._connections(reader), []):
                index = counters[conn.topic]
                counters[conn.topic] += 1
                if conn.topic == topics.image:
                    if index >= len(self._plan):
                        continue
                    msg, cdr = read(conn.msgtype, raw)
                    pending.append((index, bag_time, cdr, msg))
                elif needed.get((conn.topic, index)):
                    msg, cdr = read(conn.msgtype, raw)
                    held[(conn.topic, index)] = (bag_time, cdr, msg)
                # emit, in image order, every frame whose parts have all arrived
                while pending and pending[0][0] == next_frame and all(
                    i is None or (t, i) in held for t, i in self._plan[next_frame].items()
                ):
                    yield self._assemble(pending.pop(0), held, needed)
                    next_frame += 1
        finally:
            reader.close()
        while pending:  # parts that never came (truncated bag): emit with what exists
            yield self._assemble(pending.pop(0), held, needed)

    def _assemble(self, image: tuple[int, int, bytes, Any], held: dict, needed: dict) -> EvalFrame:
        frame_index, bag_time, raw, msg = image
        topics = self.topics
        raw_parts = {topics.image: (bag_time, raw)}
        parts: dict[str, Any] = {}
        for topic, i in self._plan[frame_index].items():
            entry = held.get((topic, i)) if i is not None else None
            parts[topic] = entry[2] if entry else None
            if entry:
                raw_parts[topic] = (entry[0], entry[1])
                needed[(topic, i)] -= 1
                if needed[(topic, i)] == 0:
                    del held[(topic, i)]
        return EvalFrame(frame_index, stamp_of(msg), msg, parts.get(topics.camera_info), parts.get(topics.depth),
                         parts.get(topics.depth_info), raw_parts, parts.get(topics.prediction), parts.get(topics.prediction_info),
                         parts.get(topics.cloud) if topics.cloud else None)


class FrameRange:
    """Frames ``start``..``end`` − 1 of a bag's :class:`BagFrames`, preceded by ``warm_up`` frames a source runs to
    reach the state a serial run has there (a time shard of a longer bag). ``len()`` counts the frames scored."""

    def __init__(self, frames: BagFrames, start: int, end: int, warm_up: int = 0) -> None:
        if not 0 <= start <= end <= len(frames):
            raise ValueError(f"frame range {start}..{end} is outside the bag's {len(frames)} frames")
        self.frames, self.start, self.end, self.first = frames, start, end, max(0, start - warm_up)
        self.bag, self.topics = frames.bag, frames.topics

    def __len__(self) -> int:
        return self.end - self.start

    def __iter__(self) -> Iterator[EvalFrame]:
        frames = iter(self.frames)  # the bag is read from its start: frame indices count messages from there
        try:
            for frame in frames:
                if frame.index >= self.end:
                    return
                if frame.index >= self.first:
                    yield frame
        finally:
            frames.close()  # the bag reader now, not when the generator is collected

