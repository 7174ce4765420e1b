"""A rosbag2 recording cut short → a complete bag of everything before the cut.

A recorder that is killed (SIGKILL, power loss, a full disk) or a copy that stops half-way leaves an MCAP file
without its summary and footer, a bag folder without ``metadata.yaml``, or an SQLite file missing its last pages.
rosbags (and ``ros2 bag play``) refuse all three; ``ros2 bag reindex`` and ``mcap recover`` are not on a pip
install. :func:`recover` reads such a recording as far as it goes — MCAP record by record (chunks are
self-contained: the writer puts each schema and channel in the chunk that first uses it), SQLite row by row — and
writes what it read as a new, complete MCAP bag. :class:`Recovery` says what was kept and what was lost.
``depth-node eval`` does this by itself for a bag it cannot open; ``depth-node bag-recover`` does it on request.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import DECOMPRESSORS  # the reader's own: "", lz4 and zstd, as rosbags installs them
from rosbags.typesys import Stores, get_typestore, get_types_from_msg

from depth_node.errors import DepthNodeError

MCAP_MAGIC = b"\x89MCAP0\r\n"
_SCHEMA, _CHANNEL, _MESSAGE, _CHUNK, _DATA_END, _FOOTER = 0x03, 0x04, 0x05, 0x06, 0x0F, 0x02


class RecoverError(DepthNodeError):
    """Nothing could be read: not a bag, or damaged before its first message."""


@dataclass
class Recovery:
    """What :func:`recover` wrote: ``messages`` on ``topics`` into ``bag``, and what it could not read (``lost``)."""

    bag: Path
    messages: int = 0
    topics: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)

    def describe(self) -> str:
        kept = f"{self.messages} message(s) on {len(self.topics)} topic(s) recovered into {self.bag}"
        return kept + (f"; lost: {'; '.join(self.lost)}" if self.lost else "; nothing lost")


@dataclass(frozen=True)
class _Connection:
    topic: str
    msgtype: str
    msgdef: str
    serialization: str


def recover(source: Path, destination: Path) -> Recovery:
    """Read ``source`` (an .mcap or .db3 file, or a bag folder holding them, with or without metadata.yaml) up to its
    damage and write what was read as a complete MCAP bag folder ``destination`` (which must not exist)."""
    source = Path(source)
    if not source.exists():
        raise RecoverError(f"no bag at {source}")
    files = _storage_files(source)
    recovery = Recovery(Path(destination))
    typestore = get_typestore(Stores.ROS2_KILTED)
    writer = Writer(destination, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    connections: dict[_Connection, object] = {}
    try:
        for path in files:
            read = _mcap_messages(path, recovery.lost) if path.suffix == ".mcap" else _sqlite_messages(path, recovery.lost)
            for connection, timestamp, data in read:
                written = connections.get(connection)
                if written is None:
                    written = connections[connection] = _add_connection(writer, typestore, connection)
                writer.write(written, timestamp, data)
                recovery.messages += 1
                recovery.topics[connection.topic] = recovery.topics.get(connection.topic, 0) + 1
    except BaseException:
        writer.close()
        shutil.rmtree(destination, ignore_errors=True)
        raise
    writer.close()
    if not recovery.messages:
        shutil.rmtree(destination, ignore_errors=True)
        raise RecoverError(f"nothing readable in {source}: {'; '.join(recovery.lost) or 'no message in it'}")
    return recovery


def _storage_files(source: Path) -> list[Path]:
    if source.is_file():
        if source.suffix not in (".mcap", ".db3"):
            raise RecoverError(f"{source} is neither an .mcap nor a .db3 file")
        return [source]
    files = sorted(source.glob("*.mcap")) + sorted(source.glob("*.db3"))
    if not files:
        raise RecoverError(f"no .mcap or .db3 file in {source}")
    return sorted(files, key=lambda p: (len(p.stem), p.stem))  # bag_2 before bag_10, as rosbag2 splits them


def _add_connection(writer: Writer, typestore: object, connection: _Connection) -> object:
    """The connection in the new bag, with the recording's own message definition (its type need not be known here)."""
    msgtype = connection.msgtype
    if msgtype not in typestore.fielddefs:  # a type the Kilted store lacks: learn it from the recording's definition
        try:
            typestore.register(get_types_from_msg(connection.msgdef, msgtype))
        except Exception as exc:  # noqa: BLE001 - any parse failure: the definition is kept, the hash cannot be made
            raise RecoverError(f"{connection.topic}: cannot read the definition of {msgtype} ({exc})") from None
    return writer.add_connection(connection.topic, msgtype, msgdef=connection.msgdef or None,
                                 rihs01=typestore.hash_rihs01(msgtype) if connection.msgdef else None,
                                 typestore=typestore, serialization_format=connection.serialization)


# ----------------------------------------------------------------------------------------------------------- MCAP
def _string(body: bytes, pos: int) -> tuple[str, int]:
    (size,) = struct.unpack_from("<I", body, pos)
    return body[pos + 4:pos + 4 + size].decode(), pos + 4 + size


def _mcap_messages(path: Path, lost: list[str]) -> Iterator[tuple[_Connection, int, bytes]]:
    """(connection, log time, CDR) of every complete message record, top level or in a chunk that decodes; the
    first record that runs past the end of the file ends the reading (its bytes are ``lost``)."""
    data = path.read_bytes()
    if not data.startswith(MCAP_MAGIC):
        raise RecoverError(f"{path} is not an MCAP file (bad magic bytes)")
    schemas: dict[int, tuple[str, str]] = {}
    channels: dict[int, _Connection] = {}
    pos = len(MCAP_MAGIC)
    while pos < len(data):
        if pos + 9 > len(data) or pos + 9 + struct.unpack_from("<Q", data, pos + 1)[0] > len(data):
            lost.append(f"{path.name}: the last {len(data) - pos} bytes (a record cut short at byte {pos}: the recording "
                        "was stopped before it was closed)")
            return
        opcode, (length,) = data[pos], struct.unpack_from("<Q", data, pos + 1)
        body = data[pos + 9:pos + 9 + length]
        pos += 9 + length
        if opcode in (_DATA_END, _FOOTER):
            return
        if pos == len(data):
            lost.append(f"{path.name}: nothing after byte {pos}, but the file has no index or footer: the recording was "
                        "stopped before it was closed (messages it still held in memory are not in the file)")
        if opcode == _CHUNK:
            records = _chunk_records(body, path, lost)
            if records is not None:
                yield from _records(records, schemas, channels, path)
        else:
            yield from _records(data[pos - 9 - length:pos], schemas, channels, path)


def _chunk_records(body: bytes, path: Path, lost: list[str]) -> bytes | None:
    """A chunk's records, decompressed and checked; None (and a ``lost`` line) when it does not decode."""
    start, end, size, crc = struct.unpack_from("<QQQI", body, 0)
    compression, pos = _string(body, 28)
    (compressed_size,) = struct.unpack_from("<Q", body, pos)
    payload = body[pos + 8:pos + 8 + compressed_size]
    try:
        if compression not in DECOMPRESSORS:
            raise ValueError(f"unknown compression {compression!r}")
        records = DECOMPRESSORS[compression](payload, size)
        if len(records) != size or (crc and zlib.crc32(records) != crc):
            raise ValueError("size or checksum mismatch")
    except Exception as exc:  # noqa: BLE001 - zstd, lz4 and our own errors alike: the chunk is skipped
        lost.append(f"{path.name}: a damaged chunk of messages logged {start / 1e9:.3f}–{end / 1e9:.3f} s ({exc})")
        return None
    return records


def _records(records: bytes, schemas: dict[int, tuple[str, str]], channels: dict[int, _Connection],
             path: Path) -> Iterator[tuple[_Connection, int, bytes]]:
    pos = 0
    while pos + 9 <= len(records):
        opcode, (length,) = records[pos], struct.unpack_from("<Q", records, pos + 1)
        body = records[pos + 9:pos + 9 + length]
        pos += 9 + length
        if opcode == _SCHEMA:
            (schema_id,) = struct.unpack_from("<H", body, 0)
            name, at = _string(body, 2)
            _, at = _string(body, at)  # encoding: ros2msg or ros2idl, which the definition's text says too
            definition, _ = _string(body, at)
            schemas[schema_id] = (name, definition)
        elif opcode == _CHANNEL:
            channel_id, schema_id = struct.unpack_from("<HH", body, 0)
            topic, at = _string(body, 4)
            encoding, _ = _string(body, at)
            name, definition = schemas.get(schema_id, ("", ""))
            if name:
                channels[channel_id] = _Connection(topic, name, definition, encoding)
        elif opcode == _MESSAGE:
            channel_id, _, log_time = struct.unpack_from("<HIQ", body, 0)
            connection = channels.get(channel_id)
            if connection is not None:
                yield connection, log_time, body[22:]


# --------------------------------------------------------------------------------------------------------- SQLite
def _sqlite_messages(path: Path, lost: list[str]) -> Iterator[tuple[_Connection, int, bytes]]:
    """Rows of ``messages`` in insertion order until the first unreadable page (read from a copy whose header
    states the pages the file really has: SQLite believes the header, and refuses even the table list otherwise)."""
    with tempfile.TemporaryDirectory() as folder:
        yield from _sqlite_rows(_whole_pages(path, Path(folder) / path.name), path, lost)


def _whole_pages(path: Path, copy: Path) -> Path:
    data = bytearray(path.read_bytes())
    if not data.startswith(b"SQLite format 3\x00") or len(data) < 100:
        raise RecoverError(f"{path} is not an SQLite file (bad magic bytes)")
    (page_size,) = struct.unpack_from(">H", data, 16)
    page_size = 65536 if page_size == 1 else page_size
    pages = len(data) // page_size
    struct.pack_into(">I", data, 28, pages)  # the in-header database size
    copy.write_bytes(bytes(data[:pages * page_size]))
    return copy


def _sqlite_rows(copy: Path, path: Path, lost: list[str]) -> Iterator[tuple[_Connection, int, bytes]]:
    try:
        database = sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True)
        topics = database.execute("SELECT id, name, type, serialization_format FROM topics").fetchall()
        definitions = dict(database.execute("SELECT topic_type, encoded_message_definition FROM message_definitions")
                           .fetchall()) if _has_table(database, "message_definitions") else {}
    except sqlite3.DatabaseError as exc:
        raise RecoverError(f"{path}: not a readable rosbag2 SQLite file ({exc})") from None
    connections = {row[0]: _Connection(row[1], row[2], definitions.get(row[2], ""), row[3]) for row in topics}
    count = 0
    try:
        for topic_id, timestamp, data in database.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
            connection = connections.get(topic_id)
            if connection is not None:
                count += 1
                yield connection, int(timestamp), bytes(data)
    except sqlite3.DatabaseError as exc:
        lost.append(f"{path.name}: every message after the first {count} ({exc}: the file is cut short or damaged)")
    finally:
        database.close()


def _has_table(database: sqlite3.Connection, name: str) -> bool:
    return database.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None
