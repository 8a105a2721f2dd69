"""The initial snapshot: every captured table read in key order inside one consistent read.

``InitialSnapshot.poll`` reads one chunk (``connectors._snapshot``) and returns its rows as
``r`` events. The offset of the last record of a chunk records the chunk's last key, so an
interrupted snapshot resumes after the last chunk delivered; the other records of a chunk
carry the offset before the chunk (a restart there re-reads the chunk rather than skipping
it). A resumed snapshot runs in a new consistent read, a new *epoch*; ``_window`` explains
how the stream then avoids moving rows back to older states.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from connectors._snapshot import chunk_query, key_positions
from connectors.mysql._server import ServerInfo, start_consistent_snapshot
from connectors.mysql.offsets import (
    BinlogPosition,
    Key,
    SnapshotProgress,
    TableProgress,
    key_json,
)
from liberate.envelope import change_value
from liberate.progress import RowProgress, snapshot_progress
from liberate.records import Primitive, SourceRecord
from liberate.schema.avro import AvroSchema
from liberate.schema.tables import TableSchema

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SnapshotTable:
    """A captured table as the snapshot reads it."""

    label: str
    table: sa.Table
    schema: TableSchema
    topic: str
    key_schema: AvroSchema
    value_schema: AvroSchema
    source: Mapping[str, Any]
    #: the key holds text, which Python cannot order like the server's collation does
    text_key: bool


class InitialSnapshot:
    """One run of the initial snapshot (a new epoch of ``progress``, or its first)."""

    def __init__(
        self,
        engine: Engine,
        info: ServerInfo,
        tables: list[SnapshotTable],
        progress: SnapshotProgress | None,
        *,
        chunk_size: int,
        partition: Mapping[str, Primitive],
    ) -> None:
        self.engine = engine
        self.info = info
        self.tables = tables
        self.progress = progress
        self.chunk_size = chunk_size
        self.partition = partition
        self._conn: Connection | None = None
        self._bar: RowProgress | None = None

    def begin(self) -> SnapshotProgress:
        """Start the consistent read (a new epoch) and return the progress it continues."""
        conn = self.engine.connect()
        try:
            position = start_consistent_snapshot(conn, self.info)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        progress = self.progress
        if progress is None:
            progress = SnapshotProgress([position], {})
        else:
            progress.epochs.append(position)
        epoch = len(progress.epochs) - 1
        for table in self.tables:
            state = progress.tables.get(table.label)
            if state is None:
                progress.tables[table.label] = TableProgress([(epoch, None)])
            elif not state.done:
                if table.text_key and state.last is not None:
                    # Its rows cannot be placed in epochs by key in Python: read it again.
                    log.warning("snapshot of %s restarts from its first row (text key)",
                                table.label)
                    state.ranges, state.last = [(epoch, None)], None
                else:
                    state.ranges.append((epoch, state.last))
        self.progress = progress
        log.info("snapshot epoch %d at %s:%d", epoch, position.file, position.pos)
        return progress

    def poll(self, now_ms: int) -> list[SourceRecord]:
        """The next chunk's records; ``[]`` once every table is read (``progress.done``)."""
        progress = self.progress
        assert progress is not None and self._conn is not None
        if self._bar is None:
            self._bar = snapshot_progress(
                self._conn, str(self.partition.get("server", "mysql")),
                [t.table for t in self.tables if not progress.tables[t.label].done])
        for table in self.tables:
            state = progress.tables[table.label]
            if state.done:
                continue
            rows = self._chunk(table, state)
            if rows:
                self._bar.advance(len(rows))
                return self._records(table, state, rows, now_ms)
            state.done = True
            log.info("snapshot of %s complete", table.label)
        progress.done = True
        self._bar.close()
        return []

    def _chunk(self, table: SnapshotTable, state: TableProgress) -> list[sa.Row[Any]]:
        assert self._conn is not None
        query = chunk_query(
            table.table,
            table.schema.key_columns,
            after_key=state.last,
            limit=self.chunk_size,
            dialect=self._conn.dialect.name,
        )
        return list(self._conn.execute(query).all())

    def _records(self, table: SnapshotTable, state: TableProgress, rows: list[sa.Row[Any]],
                 now_ms: int) -> list[SourceRecord]:
        """The ``r`` events of a chunk; each one's offset resumes right after its row."""
        progress = self.progress
        assert progress is not None
        epoch = progress.epochs[-1]
        source = dict(table.source)
        source.update(
            ts_ms=now_ms, snapshot="true", file=epoch.file, pos=epoch.pos, row=0,
            gtid=None, server_id=epoch.server_id or 0,
        )
        positions = key_positions(table.table, table.schema.key_columns)
        # Every record but the chunk's last resumes after its own key: the progress text with
        # that key put in; the last may also complete the table, and the snapshot.
        offset_text = _KeyedProgress(progress, state)
        base = progress.epochs[0].to_map()
        schema = table.schema
        records = []
        for row in rows:
            key = tuple(row[i] for i in positions)
            value = schema.value_of(row)
            records.append(SourceRecord(
                table.topic, schema.key_of(value),
                change_value("r", before=None, after=value, source=source, ts_ms=now_ms),
                table.key_schema, table.value_schema, self.partition,
                {**base, "snapshot": offset_text.with_last(key)},
            ))
        state.last = tuple(rows[-1][i] for i in positions)
        if len(rows) < self.chunk_size:
            state.done = True
            log.info("snapshot of %s complete", table.label)
            progress.done = all(t.done for t in progress.tables.values())
        records[-1].offset = {**base, "snapshot": progress.to_text()}
        return records

    @property
    def stream_start(self) -> BinlogPosition:
        assert self.progress is not None
        return self.progress.epochs[0]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.rollback()
            finally:
                conn.close()


class _KeyedProgress:
    """The progress text of a chunk in flight, with the last key of one table left open.

    Rendering the whole progress as JSON per row would cost more than reading the row;
    the text around the key is rendered once per chunk.
    """

    _MARK = "\u0000last\u0000"

    def __init__(self, progress: SnapshotProgress, state: TableProgress) -> None:
        saved = state.last
        state.last = (self._MARK,)
        try:
            text = progress.to_text()
        finally:
            state.last = saved
        marker = json.dumps([self._MARK])
        self._before, self._after = text.split(marker)

    def with_last(self, key: Key) -> str:
        return self._before + json.dumps(key_json(key), separators=(",", ":")) + self._after
