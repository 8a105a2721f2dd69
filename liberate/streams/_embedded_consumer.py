"""The consumer of the embedded backend: reads record batches of its partitions in offset order.

Each consumer has its own SQLite connection (readers never block the writer under WAL). It
learns about new data cheaply: ``PRAGMA data_version`` changes whenever another connection
(the writer of this or another process) commits, so an idle poll costs one pragma per step.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from liberate.errors import FatalError
from liberate.records import ConsumedRecord, TopicPartition
from liberate.streams._embedded_codec import decode_batch
from liberate.streams._embedded_store import wrap
from liberate.streams.base import AssignCallback, StreamConsumer

POLL_INTERVAL_S = 0.05
# Batches read per query: a few thousand records, decoded only as far as a poll needs.
_BATCHES_PER_QUERY = 4

# Start at the batch holding ``from_offset`` (the last batch starting at or before it).
_SELECT_BATCHES = (
    "SELECT base_offset, payload FROM stream_batches"
    " WHERE topic_id = ?1 AND partition_id = ?2 AND base_offset >= coalesce("
    "  (SELECT base_offset FROM stream_batches"
    "    WHERE topic_id = ?1 AND partition_id = ?2 AND base_offset <= ?3"
    "    ORDER BY base_offset DESC LIMIT 1), 0)"
    " ORDER BY base_offset LIMIT ?4"
)

CommitOffsets = Callable[[str, Mapping[TopicPartition, int]], None]


class _Partition:
    """Read state of one assigned partition: records before ``fetched`` are buffered."""

    __slots__ = ("buffer", "end", "fetched", "position", "topic_id", "tp")

    def __init__(self, tp: TopicPartition, topic_id: int, position: int) -> None:
        self.tp = tp
        self.topic_id = topic_id
        self.position = position  # next offset poll() returns
        self.fetched = position  # next offset to read from the file
        self.end = 0  # end offset as last seen
        self.buffer: list[ConsumedRecord] = []


class EmbeddedConsumer(StreamConsumer):
    """Reads ``topics`` (or every topic matching ``pattern``) of the embedded store.

    Partitions are assigned when the consumer is created and whenever a matching topic
    appears; ``on_assign`` is called with the new partitions then. A partition starts at the
    offset ``on_assign`` returns, else the group's committed offset, else the beginning (or
    the end with ``from_beginning=False``).
    """

    def __init__(
        self,
        commit_offsets: CommitOffsets,
        conn: sqlite3.Connection,
        group: str,
        *,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        on_assign: AssignCallback | None = None,
        from_beginning: bool = True,
    ) -> None:
        if not topics and pattern is None:
            conn.close()
            raise FatalError(
                f"consumer of group {group!r} names no topics",
                hint="give topics or a topics pattern",
            )
        self.group = group
        self._commit_offsets = commit_offsets
        self._conn: sqlite3.Connection | None = conn
        self._topics = frozenset(topics)
        self._pattern = re.compile(pattern) if pattern is not None else None
        self._on_assign = on_assign
        self._from_beginning = from_beginning
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._order: list[_Partition] = []
        self._turn = 0
        self._seen_version: int | None = None
        self._lock = threading.Lock()
        with self._lock:
            self._refresh_if_changed(self._open_conn())

    # -- StreamConsumer ----------------------------------------------------------------------

    def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            with self._lock:
                conn = self._open_conn()
                records = self._take(max_records)
                if records:
                    return records
                self._refresh_if_changed(conn)
                if self._fetch(conn, max_records):
                    return self._take(max_records)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(POLL_INTERVAL_S, remaining))

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._commit_offsets(self.group, offsets)

    def positions(self) -> dict[TopicPartition, int]:
        return {part.tp: part.position for part in self._order}

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._partitions, key=lambda tp: (tp.topic, tp.partition))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- internals -------------------------------------------------------------------------

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise FatalError(
                f"consumer of group {self.group!r} is closed",
                hint="create a new consumer (a bug in the caller)",
            )
        return self._conn

    def _wants(self, topic: str) -> bool:
        if topic in self._topics:
            return True
        return self._pattern is not None and self._pattern.fullmatch(topic) is not None

    def _refresh_if_changed(self, conn: sqlite3.Connection) -> None:
        """Pick up new topics, new partitions and new end offsets if anything was committed."""
        try:
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            if version == self._seen_version:
                return
            self._seen_version = version
            ends = {
                (int(t), int(p)): int(o)
                for t, p, o in conn.execute(
                    "SELECT topic_id, partition_id, next_offset FROM stream_partitions"
                )
            }
            new: dict[TopicPartition, int] = {}
            for topic_id, name, partitions in conn.execute(
                "SELECT topic_id, name, partitions FROM stream_topics ORDER BY name"
            ):
                if not self._wants(str(name)):
                    continue
                for p in range(int(partitions)):
                    tp = TopicPartition(str(name), p)
                    if tp not in self._partitions:
                        new[tp] = int(topic_id)
            if new:
                self._assign(conn, new, ends)
            for part in self._order:
                part.end = ends.get((part.topic_id, part.tp.partition), part.end)
        except sqlite3.Error as exc:
            raise wrap(exc, f"read the topics of group {self.group!r}") from exc

    def _assign(
        self,
        conn: sqlite3.Connection,
        new: Mapping[TopicPartition, int],
        ends: Mapping[tuple[int, int], int],
    ) -> None:
        chosen: Mapping[TopicPartition, int] = {}
        if self._on_assign is not None:
            chosen = self._on_assign(list(new))
        committed = {
            TopicPartition(str(t), int(p)): int(o)
            for t, p, o in conn.execute(
                "SELECT topic, partition_id, next_offset FROM stream_group_offsets"
                " WHERE group_name = ?",
                (self.group,),
            )
        }
        for tp, topic_id in new.items():
            end = ends.get((topic_id, tp.partition), 0)
            if tp in chosen:
                start = chosen[tp]
            elif tp in committed:
                start = committed[tp]
            else:
                start = 0 if self._from_beginning else end
            part = _Partition(tp, topic_id, max(0, int(start)))
            part.end = end
            self._partitions[tp] = part
            self._order.append(part)

    def _fetch(self, conn: sqlite3.Connection, max_records: int) -> bool:
        """Read batches of lagging partitions into their buffers; True if any record came."""
        got = False
        for part in self._order:
            if part.fetched >= part.end or len(part.buffer) >= max_records:
                continue
            try:
                rows = conn.execute(
                    _SELECT_BATCHES,
                    (part.topic_id, part.tp.partition, part.fetched, _BATCHES_PER_QUERY),
                ).fetchall()
            except sqlite3.Error as exc:
                raise wrap(exc, f"read {part.tp.topic}[{part.tp.partition}]") from exc
            for base_offset, payload in rows:
                records = decode_batch(
                    payload,
                    topic=part.tp.topic,
                    partition=part.tp.partition,
                    base_offset=int(base_offset),
                    from_offset=part.fetched,
                )
                if records:
                    part.buffer.extend(records)
                    part.fetched = records[-1].offset + 1
                    got = True
        return got

    def _take(self, max_records: int) -> list[ConsumedRecord]:
        """Up to ``max_records`` buffered records, taking turns between partitions."""
        out: list[ConsumedRecord] = []
        count = len(self._order)
        for i in range(count):
            if len(out) >= max_records:
                break
            part = self._order[(self._turn + i) % count]
            if not part.buffer:
                continue
            room = max_records - len(out)
            taken = part.buffer[:room]
            del part.buffer[:room]
            out.extend(taken)
            part.position = taken[-1].offset + 1
        if count:
            self._turn = (self._turn + 1) % count
        return out
