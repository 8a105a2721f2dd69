"""The sink's parked records, kept in the target database beside its offsets.

``liberate_sink_parked`` holds every record the sink dead-lettered (it could not be written)
or parked (a later record of the same key, held back so that one key's changes are never
applied out of order), with its consumed bytes. Rows are added in the same transaction that
moves the sink's offsets past the records, so parking is exactly-once; a key stays parked
while any of its rows is here, and ``liberate dlq replay`` removes them in the transaction
that applies them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from liberate.records import Headers
from sinks.sql._evolution import MYSQL_CHARSET, MYSQL_COLLATION


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """One parked or dead-lettered record. ``behind`` is None for a record that failed
    itself, else the origin (``topic[partition]@offset``) of the record it waits behind."""

    topic: str
    partition: int
    offset: int
    target: str
    key_text: str | None
    key_hash: str | None
    behind: str | None
    error_class: str
    error_message: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int | None
    parked_at_ms: int

    @property
    def origin(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class ParkedStore:
    """Reads and writes one sink's rows of the parked table (on a caller's connection)."""

    def __init__(self, *, table: str, schema: str | None, sink: str) -> None:
        self.sink = sink
        metadata = sa.MetaData()
        self.table = sa.Table(
            table,
            metadata,
            sa.Column("sink", sa.String(200), primary_key=True),
            sa.Column("topic", sa.String(255), primary_key=True),
            sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("offset", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("target", sa.String(255), nullable=False),
            sa.Column("key_hash", sa.String(64), nullable=True),
            sa.Column("key_text", sa.Text, nullable=True),
            sa.Column("behind", sa.String(600), nullable=True),
            sa.Column("error_class", sa.String(200), nullable=False),
            sa.Column("error_message", sa.Text, nullable=False),
            sa.Column("record_key", sa.LargeBinary, nullable=True),
            sa.Column("record_value", sa.LargeBinary, nullable=True),
            sa.Column("headers", sa.Text, nullable=False),
            sa.Column("timestamp_ms", sa.BigInteger, nullable=True),
            sa.Column("parked_at_ms", sa.BigInteger, nullable=False),
            sa.Index(f"{table}_by_key", "sink", "target", "key_hash"),
            schema=schema,
            mysql_charset=MYSQL_CHARSET,
            mysql_collate=MYSQL_COLLATION,
        )

    def create(self, conn: Connection) -> None:
        """Create the table (and its index) unless it exists."""
        self.table.create(conn, checkfirst=True)

    def exists(self, conn: Connection) -> bool:
        return sa.inspect(conn).has_table(self.table.name, schema=self.table.schema)

    def blocked_keys(self, conn: Connection) -> dict[tuple[str, str], str]:
        """``(target table, key hash) -> origin`` of the record each parked key waits behind."""
        c = self.table.c
        rows = conn.execute(
            sa.select(c.target, c.key_hash, c.topic, c.partition, c.offset, c.behind)
            .where(c.sink == self.sink, c.key_hash.is_not(None))
            .order_by(c.topic, c.partition, c.offset)
        )
        blocked: dict[tuple[str, str], str] = {}
        for target, hashed, topic, partition, offset, behind in rows:
            blocked.setdefault((target, hashed), behind or f"{topic}[{partition}]@{offset}")
        return blocked

    def add(self, conn: Connection, records: Sequence[ParkedRecord]) -> None:
        """Insert ``records``."""
        if records:
            conn.execute(sa.insert(self.table), [self._row(r) for r in records])

    def all(self, conn: Connection) -> list[ParkedRecord]:
        """This sink's parked records in stream order (topic, partition, offset)."""
        c = self.table.c
        query = (
            sa.select(self.table).where(c.sink == self.sink).order_by(c.topic, c.partition,
                                                                       c.offset)
        )
        return [_parked(row._mapping) for row in conn.execute(query)]

    def count(self, conn: Connection) -> int:
        """How many records this sink has parked."""
        found = conn.execute(self.count_query()).scalar()
        return int(found or 0)

    def count_query(self) -> sa.Select[Any]:
        """The query of ``count``."""
        return sa.select(sa.func.count()).where(self.table.c.sink == self.sink)

    def remove(self, conn: Connection, records: Collection[ParkedRecord]) -> None:
        """Delete ``records`` (by their stream coordinates)."""
        c = self.table.c
        statement = sa.delete(self.table).where(
            c.sink == self.sink,
            c.topic == sa.bindparam("t"),
            c.partition == sa.bindparam("p"),
            c.offset == sa.bindparam("o"),
        )
        if records:
            conn.execute(
                statement, [{"t": r.topic, "p": r.partition, "o": r.offset} for r in records]
            )

    def _row(self, record: ParkedRecord) -> dict[str, object]:
        return {
            "sink": self.sink,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "target": record.target,
            "key_hash": record.key_hash,
            "key_text": record.key_text,
            "behind": record.behind,
            "error_class": record.error_class,
            "error_message": record.error_message,
            "record_key": record.key,
            "record_value": record.value,
            "headers": json.dumps(
                [[name, base64.b64encode(value).decode()] for name, value in record.headers]
            ),
            "timestamp_ms": record.timestamp_ms,
            "parked_at_ms": record.parked_at_ms,
        }


def _parked(row: Mapping[Any, Any]) -> ParkedRecord:
    get = row.__getitem__
    headers = tuple(
        (str(name), base64.b64decode(value)) for name, value in json.loads(get("headers"))
    )
    return ParkedRecord(
        topic=get("topic"),
        partition=int(get("partition")),
        offset=int(get("offset")),
        target=get("target"),
        key_text=get("key_text"),
        key_hash=get("key_hash"),
        behind=get("behind"),
        error_class=get("error_class"),
        error_message=get("error_message"),
        key=None if get("record_key") is None else bytes(get("record_key")),
        value=None if get("record_value") is None else bytes(get("record_value")),
        headers=headers,
        timestamp_ms=get("timestamp_ms"),
        parked_at_ms=int(get("parked_at_ms")),
    )
