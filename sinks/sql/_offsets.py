"""The sink's offsets table in the target database: the next offset of every partition.

``liberate_sink_offsets(sink, topic, partition, next_offset)``, primary key
``(sink, topic, partition)``. Rows are written in the same transaction as the data they
account for, which is what makes the sink exactly-once: a restart resumes from here, and a
crash before commit leaves neither rows nor offsets. ``Span`` and ``not_yet_written`` find the
records of a batch written already (a retry after an ambiguous commit), which are skipped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from liberate.records import ConsumedRecord, SinkRecord, TopicPartition
from sinks.sql._evolution import MYSQL_CHARSET, MYSQL_COLLATION
from sinks.sql._writes import upsert_statement

T = TypeVar("T", bound=tuple[Any, Any])

_TOPIC = attrgetter("topic")
_PARTITION = attrgetter("partition")
_OFFSET = attrgetter("offset")

KEY_COLUMNS = ("sink", "topic", "partition")
COLUMNS = (*KEY_COLUMNS, "next_offset")


class OffsetStore:
    """Reads and writes one sink's rows of the offsets table (on a caller's connection)."""

    def __init__(self, *, table: str, schema: str | None, sink: str, dialect: str) -> None:
        self.sink = sink
        self.table = sa.Table(
            table,
            sa.MetaData(),
            # VARCHARs, not TEXT: MySQL cannot index TEXT in a primary key.
            sa.Column("sink", sa.String(200), primary_key=True),
            sa.Column("topic", sa.String(255), primary_key=True),
            sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("next_offset", sa.BigInteger, nullable=False),
            schema=schema,
            mysql_charset=MYSQL_CHARSET,
            mysql_collate=MYSQL_COLLATION,
        )
        self._upsert = upsert_statement(dialect, self.table, KEY_COLUMNS, COLUMNS)

    def create(self, conn: Connection) -> None:
        """Create the table unless it exists."""
        # Look first: PostgreSQL refuses even CREATE TABLE IF NOT EXISTS of an existing table
        # to a user without CREATE on the schema, and a sink may run with DML privileges only.
        if not self.exists(conn):
            conn.execute(sa.schema.CreateTable(self.table, if_not_exists=True))

    def exists(self, conn: Connection) -> bool:
        return sa.inspect(conn).has_table(self.table.name, schema=self.table.schema)

    def read(
        self, conn: Connection, topics: Collection[str] | None = None, *, lock: bool = False
    ) -> dict[TopicPartition, int]:
        """The stored next offsets of this sink, of ``topics`` only when given.

        ``lock`` holds the rows until the transaction ends (``FOR UPDATE``; SQLite locks the
        whole file on write anyway), so two writers of one sink serialize on them.
        """
        return self.stored(conn.execute(self.query(topics, lock=lock)))

    def query(self, topics: Collection[str] | None = None, *, lock: bool = False) -> sa.Select[
            Any]:
        """The SELECT of ``read`` (whose rows ``stored`` reads)."""
        c = self.table.c
        query = sa.select(c.topic, c.partition, c.next_offset).where(c.sink == self.sink)
        if topics is not None:
            query = query.where(c.topic.in_(sorted(topics)))
        if lock:
            query = query.with_for_update()
        return query

    @staticmethod
    def stored(rows: Iterable[Sequence[Any]]) -> dict[TopicPartition, int]:
        """The next offsets in rows of ``query``."""
        return {
            TopicPartition(topic, int(partition)): int(next_offset)
            for topic, partition, next_offset in rows
        }

    @property
    def upsert(self) -> sa.Insert:
        """The upsert ``store`` runs with the rows of ``store_rows``."""
        return self._upsert

    def store_rows(self, offsets: Mapping[TopicPartition, int]) -> list[dict[str, Any]]:
        return [
            {"sink": self.sink, "topic": tp.topic, "partition": tp.partition,
             "next_offset": offset}
            for tp, offset in offsets.items()
        ]

    def delete(self, conn: Connection) -> None:
        """Remove every row of this sink (it then reads its topics from the beginning)."""
        conn.execute(sa.delete(self.table).where(self.table.c.sink == self.sink))

    def store(self, conn: Connection, offsets: Mapping[TopicPartition, int]) -> None:
        """Upsert the next offset of each partition."""
        if offsets:
            conn.execute(self._upsert, self.store_rows(offsets))


@dataclass(frozen=True, slots=True)
class Span:
    """The first and last offset of each partition in a batch (records of a partition come in
    offset order), to tell in one comparison per partition that none was written yet."""

    first: dict[tuple[str, int], int]
    last: dict[tuple[str, int], int]

    @classmethod
    def of(cls, batch: Sequence[SinkRecord | ConsumedRecord]) -> Span:
        # The last pair of each partition wins in a dict: built in C, without a Python loop
        # per record (forwards for the last offsets, backwards for the first).
        at = list(zip(map(_TOPIC, batch), map(_PARTITION, batch), strict=True))
        offsets = list(map(_OFFSET, batch))
        last = dict(zip(at, offsets, strict=True))
        first = dict(zip(reversed(at), reversed(offsets), strict=True))
        return cls(first, last)

    def topics(self) -> set[str]:
        return {topic for topic, _ in self.first}

    def all_from(self, stored: dict[TopicPartition, int]) -> bool:
        """Whether every record is at or past the stored offset of its partition."""
        return all(
            offset >= stored.get(TopicPartition(topic, partition), 0)
            for (topic, partition), offset in self.first.items()
        )

    def next_offsets(self) -> dict[TopicPartition, int]:
        return {TopicPartition(t, p): offset + 1 for (t, p), offset in self.last.items()}


def not_yet_written(changes: Sequence[T], stored: dict[TopicPartition, int]) -> list[T]:
    """The changes whose records are at or past the stored offsets (a replay skips the rest).

    ``changes`` are ``(anything, change)`` pairs whose change has a ``record``.
    """
    if not stored:
        return list(changes)
    floor = {(tp.topic, tp.partition): offset for tp, offset in stored.items()}
    return [
        pair
        for pair in changes
        if pair[1].record.offset >= floor.get((pair[1].record.topic, pair[1].record.partition), 0)
    ]


def next_offsets_of(changes: Sequence[T]) -> dict[TopicPartition, int]:
    """The next offset of each partition after the records of ``changes``."""
    last: dict[tuple[str, int], int] = {}
    for _, change in changes:
        record = change.record
        at = (record.topic, record.partition)
        if record.offset >= last.get(at, -1):
            last[at] = record.offset
    return {TopicPartition(topic, part): offset + 1 for (topic, part), offset in last.items()}
