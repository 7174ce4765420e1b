"""Recovering rosbag2 recordings cut short or damaged: real bags written by rosbags, cut and damaged byte-wise, read
back by rosbags (independent of the recovery's own parser)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from depth_node.eval.bag_recover import RecoverError, recover

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
FRAMES = 24


def _bag(folder: Path, storage_compression: bool = False) -> Path:
    """FRAMES Image messages of 320 KB each (a chunk closes every ~4 of them) and a String every frame."""
    Image, String = TYPESTORE.types["sensor_msgs/msg/Image"], TYPESTORE.types["std_msgs/msg/String"]
    Header, Time = TYPESTORE.types["std_msgs/msg/Header"], TYPESTORE.types["builtin_interfaces/msg/Time"]
    writer = Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP)
    if storage_compression:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    rng = np.random.default_rng(0)
    with writer:
        image = writer.add_connection("/image", "sensor_msgs/msg/Image", typestore=TYPESTORE)
        text = writer.add_connection("/note", "std_msgs/msg/String", typestore=TYPESTORE)
        for i in range(FRAMES):
            header = Header(stamp=Time(sec=100 + i, nanosec=0), frame_id="camera")
            pixels = rng.integers(0, 256, 320 * 1000, dtype=np.uint8)
            msg = Image(header=header, height=1000, width=320, encoding="mono8", is_bigendian=0, step=320, data=pixels)
            writer.write(image, (100 + i) * 10**9, TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            writer.write(text, (100 + i) * 10**9, TYPESTORE.serialize_cdr(String(data=f"frame {i}"), "std_msgs/msg/String"))
    return folder


def _read(bag: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with AnyReader([bag], default_typestore=TYPESTORE) as reader:
        for connection, _, raw in reader.messages():
            out.setdefault(connection.topic, []).append(reader.deserialize(raw, connection.msgtype))
    return out


def _chunks(mcap: bytes) -> list[tuple[int, int]]:
    """(offset, length) of every top-level Chunk record."""
    found, pos = [], 8
    while pos + 9 <= len(mcap):
        opcode, length = mcap[pos], struct.unpack_from("<Q", mcap, pos + 1)[0]
        if opcode == 0x06:
            found.append((pos, length))
        if opcode == 0x0F:
            break
        pos += 9 + length
    return found


@pytest.mark.parametrize("compressed", [False, True])
def test_a_cut_mcap_gives_every_message_of_its_complete_chunks_in_order(tmp_path: Path, compressed: bool) -> None:
    whole = _bag(tmp_path / "whole", compressed)
    mcap = next(whole.glob("*.mcap"))
    data = mcap.read_bytes()
    chunks = _chunks(data)
    assert len(chunks) >= 4
    cut_at = chunks[3][0] + chunks[3][1] // 2                       # inside the fourth chunk
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / mcap.name).write_bytes(data[:cut_at])       # no metadata.yaml either: a killed recorder
    recovery = recover(tmp_path / "cut", tmp_path / "fixed")
    expected = _read(whole)
    got = _read(tmp_path / "fixed")
    kept = len(got["/image"])
    assert 0 < kept < FRAMES and recovery.messages == kept + len(got["/note"])
    assert [m.header.stamp.sec for m in got["/image"]] == [m.header.stamp.sec for m in expected["/image"][:kept]]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(got["/image"], expected["/image"]))
    assert [m.data for m in got["/note"]] == [m.data for m in expected["/note"][:len(got["/note"])]]
    assert "a record cut short" in recovery.describe()


def test_a_damaged_chunk_is_skipped_and_the_later_ones_kept(tmp_path: Path) -> None:
    whole = _bag(tmp_path / "whole", storage_compression=True)
    mcap = next(whole.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    offset, length = _chunks(bytes(data))[1]
    payload = offset + 9 + 28 + 4 + len("zstd") + 8                        # chunk header, then the zstd frame
    assert data[payload:payload + 4] == b"\x28\xb5\x2f\xfd"
    data[payload:payload + 8] = b"\x00" * 8                                # a bad sector over the frame's start
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / mcap.name).write_bytes(bytes(data))
    recovery = recover(tmp_path / "damaged" / mcap.name, tmp_path / "fixed")
    got = [m.header.stamp.sec - 100 for m in _read(tmp_path / "fixed")["/image"]]
    missing = sorted(set(range(FRAMES)) - set(got))
    assert missing and got[-1] == FRAMES - 1 and missing == list(range(missing[0], missing[-1] + 1))  # one run, later kept
    assert "a damaged chunk of messages logged" in recovery.describe()


def test_what_is_not_a_recording_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecoverError, match="no bag at"):
        recover(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "text.mcap").write_text("hello")
    with pytest.raises(RecoverError, match="not an MCAP file"):
        recover(tmp_path / "text.mcap", tmp_path / "out")
    assert not (tmp_path / "out").exists()
