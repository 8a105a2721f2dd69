"""The embedded stream backend: topics, consumer groups and source offsets in one SQLite file.

The default backend (DESIGN §5): no servers, exactly-once on the source side because records
and source offsets are committed in one SQLite transaction. Records are stored in batches
(see ``_embedded_codec``): an append costs 1-2 µs per ~160-byte record on a 2-core machine,
a third of it encoding, the rest SQLite writing (benchmarks/embedded_append.py).

One writer at a time: every write takes ``BEGIN IMMEDIATE``. The writer keeps each
partition's next offset in memory and reloads it only when ``PRAGMA data_version`` says
another connection (another process, the registry) committed since, so an append does no
per-record reads. Readers (consumers, other processes) run concurrently thanks to WAL.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from liberate.errors import FatalError
from liberate.records import Primitive, StreamRecord, TopicPartition
from liberate.streams._embedded_codec import encode_batch, partition_for_key
from liberate.streams._embedded_consumer import EmbeddedConsumer
from liberate.streams._embedded_store import (
    INSERT_BATCH,
    UPDATE_PARTITION,
    UPSERT_GROUP_OFFSET,
    UPSERT_SOURCE_OFFSET,
    Synchronous,
    connect,
    initialize,
    transaction,
    wrap,
)
from liberate.streams.base import (
    AssignCallback,
    SourceOffset,
    StreamBackend,
    TopicInfo,
)

if TYPE_CHECKING:
    from liberate.schema.embedded_registry import EmbeddedRegistry

# A batch row holds at most this many records / about this many bytes: big enough to spread
# SQLite's per-row cost, small enough that a consumer decodes little it does not return.
MAX_BATCH_RECORDS = 1000
MAX_BATCH_BYTES = 4 * 1024 * 1024

# Kafka's rule, so topic names move unchanged between the embedded and the Kafka backend.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


@dataclass(frozen=True, slots=True)
class _Topic:
    topic_id: int
    partitions: int


def validate_topic_name(topic: str) -> None:
    """Raise ``FatalError`` unless ``topic`` is a legal (Kafka-compatible) topic name."""
    if not _TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
        raise FatalError(
            f"invalid topic name {topic!r}",
            hint="topic names use only ASCII letters, digits, '.', '_' and '-' (at most 249);"
            " fix the topic template of the source",
        )


class EmbeddedBackend(StreamBackend):
    """Streams in one SQLite file at ``path`` (created on ``open`` if missing).

    ``synchronous`` is SQLite's setting: ``FULL`` (default) survives an OS crash too, at the
    cost of an fsync per append (not measurable with batched appends); ``NORMAL`` survives a
    killed process only (see ``_embedded_store``). FULL is the default because CDC sources
    confirm positions upstream after ``append``: a lost append would then be a lost change.
    Every consumer reads every partition of its topics: the embedded backend runs on one
    machine and does not balance partitions between consumers of a group.
    """

    guarantee = "exactly-once"

    def __init__(self, path: Path, *, synchronous: Synchronous = "FULL") -> None:
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._topics: dict[str, _Topic] = {}
        self._next_offsets: dict[tuple[int, int], int] = {}
        self._round_robin: dict[int, int] = {}
        self._seen_version: int | None = None
        self._consumers: weakref.WeakSet[EmbeddedConsumer] = weakref.WeakSet()
        self._registry: EmbeddedRegistry | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._conn is not None:
                return
            conn = connect(self.path, self.synchronous)
            try:
                initialize(conn, self.path)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._seen_version = None

    def close(self) -> None:
        with self._lock:
            for consumer in list(self._consumers):
                consumer.close()
            if self._registry is not None:
                self._registry.close()
                self._registry = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._topics.clear()
            self._next_offsets.clear()

    def _writer(self) -> sqlite3.Connection:
        if self._conn is None:
            raise FatalError(
                f"the stream store {self.path} is not open",
                hint="call open() before using the backend (a bug in the caller)",
            )
        return self._conn

    # -- writer cache ----------------------------------------------------------------------

    def _refresh_if_changed(self, conn: sqlite3.Connection) -> None:
        """Reload topics and next offsets if another connection committed since we looked.

        Called inside the write transaction, so nobody can commit between this and our write.
        """
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._seen_version:
            return
        self._topics = {
            str(name): _Topic(int(topic_id), int(partitions))
            for topic_id, name, partitions in conn.execute(
                "SELECT topic_id, name, partitions FROM stream_topics"
            )
        }
        self._next_offsets = {
            (int(topic_id), int(partition)): int(next_offset)
            for topic_id, partition, next_offset in conn.execute(
                "SELECT topic_id, partition_id, next_offset FROM stream_partitions"
            )
        }
        self._seen_version = version

    def _forget_cache(self) -> None:
        self._seen_version = None

    def _create_topic(
        self, conn: sqlite3.Connection, topic: str, partitions: int, compacted: bool
    ) -> _Topic:
        validate_topic_name(topic)
        if partitions < 1:
            raise FatalError(
                f"topic {topic!r} needs at least one partition, not {partitions}",
                hint="set partitions to 1 or more",
            )
        cursor = conn.execute(
            "INSERT INTO stream_topics (name, partitions, compacted, created_ms)"
            " VALUES (?, ?, ?, ?)",
            (topic, partitions, int(compacted), int(time.time() * 1000)),
        )
        topic_id = cast(int, cursor.lastrowid)
        conn.executemany(
            "INSERT INTO stream_partitions (topic_id, partition_id, next_offset) VALUES (?, ?, 0)",
            [(topic_id, p) for p in range(partitions)],
        )
        created = _Topic(topic_id, partitions)
        self._topics[topic] = created
        for p in range(partitions):
            self._next_offsets[(topic_id, p)] = 0
        return created

    # -- writes ----------------------------------------------------------------------------

    def ensure_topic(self, topic: str, *, compacted: bool = False, partitions: int = 1) -> None:
        with self._lock:
            conn = self._writer()
            try:
                with transaction(conn):
                    self._refresh_if_changed(conn)
                    if topic not in self._topics:
                        self._create_topic(conn, topic, partitions, compacted)
            except sqlite3.Error as exc:
                self._forget_cache()
                raise wrap(exc, f"create topic {topic!r}") from exc
            except BaseException:
                self._forget_cache()
                raise

    def append(self, records: Sequence[StreamRecord], offsets: Sequence[SourceOffset]) -> None:
        if not records and not offsets:
            return
        now_ms = int(time.time() * 1000)
        with self._lock:
            conn = self._writer()
            try:
                with transaction(conn):
                    self._refresh_if_changed(conn)
                    groups = self._group_by_partition(conn, records)
                    rows, ends = self._batch_rows(groups, now_ms)
                    conn.executemany(INSERT_BATCH, rows)
                    conn.executemany(
                        UPDATE_PARTITION, [(end, tid, p) for (tid, p), end in ends.items()]
                    )
                    conn.executemany(UPSERT_SOURCE_OFFSET, _offset_rows(offsets))
            except sqlite3.Error as exc:
                self._forget_cache()
                raise wrap(exc, "append records") from exc
            except BaseException:
                # Topics created and offsets reserved in the rolled-back transaction are void.
                self._forget_cache()
                raise
            self._next_offsets.update(ends)

    def _topic(self, conn: sqlite3.Connection, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._create_topic(conn, name, 1, False)
        return topic

    def _group_by_partition(
        self, conn: sqlite3.Connection, records: Sequence[StreamRecord]
    ) -> dict[tuple[int, int], list[StreamRecord]]:
        if not records:
            return {}
        first = records[0].topic
        if all(r.topic == first for r in records):
            topic = self._topic(conn, first)
            if topic.partitions == 1:  # the common case: no per-record work at all
                return {(topic.topic_id, 0): list(records)}
        groups: dict[tuple[int, int], list[StreamRecord]] = {}
        for record in records:
            topic = self._topic(conn, record.topic)
            key = (topic.topic_id, self._partition(topic, record.key))
            bucket = groups.get(key)
            if bucket is None:
                groups[key] = [record]
            else:
                bucket.append(record)
        return groups

    def _partition(self, topic: _Topic, key: bytes | None) -> int:
        if topic.partitions == 1:
            return 0
        if key is None:  # no key, no order to keep: spread the records
            turn = self._round_robin.get(topic.topic_id, 0)
            self._round_robin[topic.topic_id] = turn + 1
            return turn % topic.partitions
        return partition_for_key(key, topic.partitions)

    def _batch_rows(
        self, groups: Mapping[tuple[int, int], list[StreamRecord]], now_ms: int
    ) -> tuple[list[tuple[int, int, int, int, bytes]], dict[tuple[int, int], int]]:
        rows: list[tuple[int, int, int, int, bytes]] = []
        ends: dict[tuple[int, int], int] = {}
        for (topic_id, partition), records in groups.items():
            offset = self._next_offsets[(topic_id, partition)]
            for start in range(0, len(records), MAX_BATCH_RECORDS):
                for count, payload in _encode(records[start : start + MAX_BATCH_RECORDS], now_ms):
                    rows.append((topic_id, partition, offset, count, payload))
                    offset += count
            ends[(topic_id, partition)] = offset
        return rows, ends

    def commit_group_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Store ``group``'s next offsets (what ``EmbeddedConsumer.commit`` calls)."""
        if not offsets:
            return
        rows = [(group, tp.topic, tp.partition, int(offset)) for tp, offset in offsets.items()]
        with self._lock:
            conn = self._writer()
            try:
                with transaction(conn):
                    conn.executemany(UPSERT_GROUP_OFFSET, rows)
            except sqlite3.Error as exc:
                raise wrap(exc, f"commit offsets of group {group!r}") from exc

    def reset_source_offsets(
        self, source: str, offsets: Mapping[str, Mapping[str, Primitive]] | None
    ) -> None:
        rows = [
            (source, partition, json.dumps(dict(offset), sort_keys=True, separators=(",", ":")))
            for partition, offset in (offsets or {}).items()
        ]
        with self._lock:
            conn = self._writer()
            try:
                with transaction(conn):
                    conn.execute("DELETE FROM stream_source_offsets WHERE source = ?", (source,))
                    conn.executemany(UPSERT_SOURCE_OFFSET, rows)
            except sqlite3.Error as exc:
                raise wrap(exc, f"reset the offsets of source {source!r}") from exc

    # -- reads -----------------------------------------------------------------------------

    def source_offsets(self, source: str) -> dict[str, Mapping[str, Primitive]]:
        rows = self._read(
            "SELECT partition_key, offset_json FROM stream_source_offsets WHERE source = ?",
            (source,),
        )
        return {str(key): json.loads(offset) for key, offset in rows}

    def topics(self) -> list[TopicInfo]:
        rows = self._read(
            "SELECT t.name, t.partitions, t.compacted, p.partition_id, p.next_offset,"
            " (SELECT b.base_offset FROM stream_batches b"
            "   WHERE b.topic_id = p.topic_id AND b.partition_id = p.partition_id"
            "   ORDER BY b.base_offset LIMIT 1)"
            " FROM stream_topics t JOIN stream_partitions p ON p.topic_id = t.topic_id"
            " ORDER BY t.name, p.partition_id",
            (),
        )
        # length() reads a blob's size from its record header, not its (overflow) pages.
        sizes = dict(self._read(
            "SELECT t.name, coalesce(sum(length(b.payload)), 0) FROM stream_topics t"
            " LEFT JOIN stream_batches b ON b.topic_id = t.topic_id GROUP BY t.name",
            (),
        ))
        infos: dict[str, TopicInfo] = {}
        for name, partitions, compacted, partition, end, first in rows:
            info = infos.get(name) or TopicInfo(name, int(partitions), 0, {}, bool(compacted))
            start = end if first is None else first
            infos[name] = TopicInfo(
                info.name,
                info.partitions,
                info.records + int(end) - int(start),
                {**info.end_offsets, int(partition): int(end)},
                info.compacted,
                int(sizes.get(name) or 0),
            )
        return list(infos.values())

    def group_offsets(self, group: str) -> dict[TopicPartition, int]:
        rows = self._read(
            "SELECT topic, partition_id, next_offset FROM stream_group_offsets"
            " WHERE group_name = ?",
            (group,),
        )
        return {TopicPartition(str(t), int(p)): int(o) for t, p, o in rows}

    def groups(self) -> list[str]:
        rows = self._read(
            "SELECT DISTINCT group_name FROM stream_group_offsets ORDER BY group_name", ()
        )
        return [str(row[0]) for row in rows]

    def _read(self, query: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._writer()
            try:
                return [tuple(row) for row in conn.execute(query, params)]
            except sqlite3.Error as exc:
                raise wrap(exc, "read") from exc

    # -- consumers and registry ------------------------------------------------------------

    def consumer(
        self,
        group: str,
        *,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        on_assign: AssignCallback | None = None,
        from_beginning: bool = True,
    ) -> EmbeddedConsumer:
        self._writer()  # fail clearly when not open
        consumer = EmbeddedConsumer(
            self.commit_group_offsets,
            connect(self.path, self.synchronous),
            group,
            topics=topics,
            pattern=pattern,
            on_assign=on_assign,
            from_beginning=from_beginning,
        )
        with self._lock:
            self._consumers.add(consumer)
        return consumer

    def registry(self) -> EmbeddedRegistry:
        """The embedded schema registry, kept in the same file (with its own connection)."""
        from liberate.schema.embedded_registry import EmbeddedRegistry  # only when asked for

        with self._lock:
            if self._registry is None:
                self._registry = EmbeddedRegistry(self.path)
            return self._registry


def _offset_rows(offsets: Sequence[SourceOffset]) -> list[tuple[str, str, str]]:
    return [
        (
            o.source,
            o.partition_key,
            json.dumps(dict(o.offset), sort_keys=True, separators=(",", ":")),
        )
        for o in offsets
    ]


def _encode(records: list[StreamRecord], now_ms: int) -> list[tuple[int, bytes]]:
    payload = encode_batch(records, now_ms)
    if len(payload) <= MAX_BATCH_BYTES or len(records) == 1:
        return [(len(records), payload)]
    # Rare (large values): halve until a batch fits; a single record always goes alone.
    middle = len(records) // 2
    return _encode(records[:middle], now_ms) + _encode(records[middle:], now_ms)
