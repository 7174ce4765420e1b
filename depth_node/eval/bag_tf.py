"""A bag's ``/tf_static`` and ``/tf`` as a :class:`~depth_node.core.transforms.TransformTree` (no tf2 needed: rosbags
decodes ``tf2_msgs/TFMessage`` from the bag's own type definitions). Static transforms are edges for all time; ``/tf``
samples are interpolated between their stamps."""

from __future__ import annotations

from pathlib import Path

from depth_node.core.transforms import TransformTree
from depth_node.eval.bag_input import MessageReader, open_reader, readable_messages, stamp_of
from depth_node.ros.convert import transform_of

TF_TYPE = "tf2_msgs/msg/TFMessage"
STATIC_TOPICS, MOVING_TOPICS = ("/tf_static", "tf_static"), ("/tf", "tf")


def transforms_in_bag(bag: Path, max_extrapolation_ns: int = 0) -> TransformTree:
    """Every transform on the bag's ``/tf_static`` and ``/tf`` topics (an empty tree when it has none)."""
    tree = TransformTree(max_extrapolation_ns)
    reader = open_reader(Path(bag))
    try:
        connections = [c for c in reader.connections if c.msgtype == TF_TYPE and c.topic in STATIC_TOPICS + MOVING_TOPICS]
        for conn, _, raw in readable_messages(reader, connections, []):
            static = conn.topic in STATIC_TOPICS
            for stamped in reader.deserialize(raw, conn.msgtype).transforms:
                tree.add(str(stamped.header.frame_id), str(stamped.child_frame_id), transform_of(stamped),
                         None if static else stamp_of(stamped))
    finally:
        reader.close()
    return tree


def static_transforms_cdr(bag: Path) -> list[tuple[str, str, int, bytes]]:
    """The bag's ``/tf_static`` records as (topic, type, bag time, ROS 2 CDR): for an output bag whose clouds must be
    placed (``ros2 bag play`` + RViz)."""
    reader = open_reader(Path(bag))
    try:
        read = MessageReader(reader)
        connections = [c for c in reader.connections if c.msgtype == TF_TYPE and c.topic in STATIC_TOPICS]
        return [("/tf_static", TF_TYPE, timestamp, read(conn.msgtype, raw)[1])
                for conn, timestamp, raw in readable_messages(reader, connections, [])]
    finally:
        reader.close()
