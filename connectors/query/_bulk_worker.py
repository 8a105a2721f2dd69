"""A worker process of the parallel bulk reader: reads key ranges of one table, Avro-encodes them.

Runs in a process of its own (``multiprocessing`` forkserver or spawn: never a fork of a
process with live connections), started by ``_parallel_bulk.ParallelBulkReader``. It opens its
own engine from the source's config, reflects the one table it reads and refuses to go on if
the table's schemas are not the ones the source registered (a DDL change in between). Then it
takes ``ChunkTask`` after ``ChunkTask`` from the shared task queue and answers each with an
``EncodedChunk``: the Avro binary bodies of every row's key and value, concatenated, with their
end positions, and the keys the source's offsets store. The wire-format header (the schema id)
is added by the serializer in the source's process, which alone talks to the registry.

A chunk the worker cannot encode (a value that does not fit, no row writer for the schema, a
database error) comes back with ``failed`` set: the source then reads that range itself, so the
error the user sees is the one the single-process path gives.

The worker ends on a ``None`` task, or when the process that started it is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, CursorResult

from connectors.query._engine import open_engine
from connectors.query._readers import target_resolvers
from connectors.query.config import QuerySourceConfig
from liberate.database import database_url
from liberate.schema.rows import RowLayout

#: how often a waiting worker looks whether the process that started it still runs
_PARENT_CHECK_S = 1.0

log = logging.getLogger("liberate.query.bulk_worker")


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """The rows of one key range of table ``label``: after ``after`` (exclusive), up to
    ``upto`` (inclusive), or to the end of the table when ``upto`` is None.

    ``limit``: read at most this many rows; when there are that many, the last one is left out
    and the chunk says ``more`` (a tail that grew while the cycle ran).
    """

    plan: int
    seq: int
    label: str
    fingerprints: tuple[str, str]
    after: tuple[Any, ...] | None
    upto: tuple[Any, ...] | None
    limit: int | None


@dataclass(slots=True)
class EncodedChunk:
    """A key range read and encoded: ``keys[key_ends[i-1]:key_ends[i]]`` is row i's key."""

    plan: int
    seq: int
    count: int = 0
    keys: bytes = b""
    key_ends: array[int] = field(default_factory=lambda: array("Q"))
    values: bytes = b""
    value_ends: array[int] = field(default_factory=lambda: array("Q"))
    offset_keys: list[Any] = field(default_factory=list)
    last_key: tuple[Any, ...] | None = None
    #: the range had more than ``limit`` rows: the last one was left out
    more: bool = False
    #: why the worker could not read or encode the range (the source reads it itself)
    failed: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    """The worker cannot serve this table at all (and has ended)."""

    reason: str


def serve(
    config: QuerySourceConfig,
    tasks: multiprocessing.Queue[ChunkTask | None],
    results: multiprocessing.Queue[EncodedChunk | WorkerFailed],
) -> None:
    """Process target: serve chunks of the tables of ``config`` until a ``None`` task."""
    readers: dict[str, _RangeReader] = {}
    try:
        while True:
            task = _next_task(tasks)
            if task is None:
                if not _parent_alive():
                    # Nobody reads what is still queued: do not wait at exit to send it.
                    results.cancel_join_thread()
                return
            reader = readers.get(task.label)
            if reader is None:
                try:
                    reader = _RangeReader(config, task.label, task.fingerprints)
                except Exception as exc:  # anything: the source reads on without workers
                    results.put(WorkerFailed(f"{type(exc).__name__}: {exc}"))
                    return
                readers[task.label] = reader
            results.put(reader.chunk(task))
    finally:
        for reader in readers.values():
            reader.close()


def _next_task(tasks: multiprocessing.Queue[ChunkTask | None]) -> ChunkTask | None:
    while True:
        try:
            return tasks.get(timeout=_PARENT_CHECK_S)
        except queue.Empty:
            if not _parent_alive():
                return None


def _parent_alive() -> bool:
    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()


def _rows(result: CursorResult[Any]) -> Sequence[Sequence[Any]]:
    """The rows of ``result``: the driver's own tuples when SQLAlchemy would not change a value.

    SQLAlchemy's rows cost ~1 µs each on top of the driver's; with no result processor (the
    case of psycopg on the common types) they hold the driver's values unchanged.
    """
    processors = getattr(result._metadata, "_processors", None)
    try:
        if isinstance(processors, list) and not any(processors):
            rows: Sequence[Sequence[Any]] = result.cursor.fetchall()
            return rows
        return result.all()
    finally:
        result.close()


class _RangeReader:
    """Reads and encodes key ranges of one table on a connection of its own."""

    def __init__(self, config: QuerySourceConfig, label: str, fingerprints: tuple[str, str]):
        from connectors.query._cursors import BulkCursor

        self.engine = open_engine(config)
        url = database_url(config)
        self.conn: Connection | None = self.engine.connect()
        resolvers = dict(target_resolvers(self.conn, config, url))
        target = resolvers[label]()
        self.conn.rollback()
        schema = target.schema
        found = (schema.key_schema.fingerprint, schema.value_schema.fingerprint)
        if found != fingerprints:
            raise RuntimeError(f"the schemas of {label} changed since the source read them")
        self.cursor = BulkCursor(target, None)
        value_layout = schema.row_value(()).layout
        key_fields = [schema.fields[schema.columns.index(k)] for k in schema.key_columns]
        self.value_layout = value_layout
        self.key_layout = RowLayout(
            schema.key_schema,
            key_fields,
            [value_layout.plan_of(name) for name in key_fields],
            value_layout.row_length,
        )
        self.positions = self.cursor.keys.positions

    def chunk(self, task: ChunkTask) -> EncodedChunk:
        try:
            if self.conn is None:
                self.conn = self.engine.connect()
            statement = self.cursor.range_statement(task.after, task.upto, task.limit)
            rows = _rows(self.conn.execute(statement))
            self.conn.rollback()  # no snapshot held between chunks, as in the source
        except Exception as exc:
            self._drop_connection()
            return EncodedChunk(task.plan, task.seq, failed=f"{type(exc).__name__}: {exc}")
        more = task.limit is not None and len(rows) >= task.limit
        if more and task.limit is not None:
            rows = rows[: task.limit - 1]
        try:
            chunk = self._encode(task, rows)
            chunk.more = more
            return chunk
        except Exception as exc:
            return EncodedChunk(task.plan, task.seq, failed=f"{type(exc).__name__}: {exc}")

    def _encode(self, task: ChunkTask, rows: Sequence[Sequence[Any]]) -> EncodedChunk:
        keys, values = bytearray(), bytearray()
        key_ends, value_ends = array("Q"), array("Q")
        key_layout, value_layout = self.key_layout, self.value_layout
        end_key, end_value = key_ends.append, value_ends.append
        for row in rows[:1]:  # the first write compiles the layout's writer
            key_layout.write(keys, row)
            end_key(len(keys))
            value_layout.write(values, row)
            end_value(len(values))
        write_key, write_value = key_layout.write, value_layout.write
        for row in rows[1:]:
            write_key(keys, row)
            end_key(len(keys))
            write_value(values, row)
            end_value(len(values))
        last = tuple(rows[-1][i] for i in self.positions) if rows else None
        return EncodedChunk(
            task.plan,
            task.seq,
            len(rows),
            bytes(keys),
            key_ends,
            bytes(values),
            value_ends,
            self.cursor.offset_keys(rows),
            last,
        )

    def _drop_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # the connection is what failed
                log.debug("closing a failed connection", exc_info=True)

    def close(self) -> None:
        try:
            self._drop_connection()
        finally:
            self.engine.dispose()
