"""The snapshot phase: every captured table read under one snapshot, as ``r`` events.

Tables are read in configuration order, each in key order in chunks (``connectors._snapshot``),
all in one REPEATABLE READ transaction set to a snapshot exported by a replication slot, so the
rows are exactly the state at the slot's consistent LSN. Every record's offset says how far the
snapshot got (table, last key, the table's relfilenode, the snapshot's LSN) so a crash resumes
after the last durable row (see ``source`` and docs/postgres.md for how a resumed snapshot and
the stream still meet without a gap or an overlap).

The last record of the whole snapshot has ``source.snapshot = "last"`` and an offset without
snapshot progress: from it on, the source streams.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors._snapshot import iter_chunks, key_positions
from connectors.postgres._messages import heartbeat_record
from connectors.postgres._tables import CapturedTable
from connectors.postgres._values import KeyText
from connectors.postgres.offsets import SnapshotProgress, WalOffset, Watermark
from liberate.progress import RowProgress, snapshot_progress
from liberate.records import Primitive, SourceRecord


@dataclass(frozen=True, slots=True)
class SnapshotTable:
    """One table as the snapshot reads it."""

    captured: CapturedTable
    table: sa.Table
    relfilenode: int
    key_text: KeyText
    key_positions: tuple[int, ...]  # of the key columns in a row of ``captured.schema.columns``


def snapshot_table(
    captured: CapturedTable, table: sa.Table, relfilenode: int, key_text: KeyText
) -> SnapshotTable:
    """A table as the snapshot reads it."""
    schema = captured.schema
    return SnapshotTable(
        captured, table, relfilenode, key_text,
        key_positions(table, schema.key_columns, schema.columns),
    )


@dataclass(frozen=True, slots=True)
class SnapshotStart:
    """Where a snapshot starts: ``tables[index]`` after key ``after`` (Python values)."""

    index: int
    after: tuple[Any, ...] | None
    truncate_first: bool = False


class SnapshotReader:
    """Returns the ``r`` events of a snapshot, a bounded batch per ``poll``."""

    def __init__(
        self,
        conn: Connection,
        tables: Sequence[SnapshotTable],
        start: SnapshotStart,
        *,
        stream_lsn: int,
        snapshot_lsn: int,
        watermarks: Sequence[Watermark],
        chunk_size: int,
        partition: Mapping[str, Primitive],
        source_name: str,
        heartbeat_topic: str | None,
    ) -> None:
        self.conn = conn
        self.tables = list(tables)
        self.stream_lsn = stream_lsn
        self.snapshot_lsn = snapshot_lsn
        self.watermarks = tuple(watermarks)
        self.chunk_size = chunk_size
        self.partition = partition
        self.source_name = source_name
        self.heartbeat_topic = heartbeat_topic
        self._emitted = False
        self.ts_ms = time.time_ns() // 1_000_000
        self.done = False
        self._rows = self._all_rows(start)
        self._ahead: tuple[int, Any] | None = None
        self._started = start
        self._exhausted = False
        self._bar: RowProgress | None = None

    def restart(self, start: SnapshotStart) -> None:
        """Read from ``start`` instead (before the first ``poll``)."""
        self._started = start
        self._rows = self._all_rows(start)
        self._ahead = None
        self._exhausted = False

    def end_offset(self) -> WalOffset:
        """The position once the snapshot is complete: stream from ``stream_lsn``."""
        return WalOffset(self.stream_lsn, watermarks=self.watermarks).pruned()

    def poll(self, max_records: int) -> list[SourceRecord]:
        """Up to ``max_records`` events; sets ``done`` with the batch holding the last one."""
        out: list[SourceRecord] = []
        if self.done:
            return out
        if self._bar is None:
            self._bar = snapshot_progress(self.conn, self.source_name,
                                          [t.table for t in self.tables[self._started.index:]])
        if self._started.truncate_first:
            out.append(self._truncate_event(self._started.index))
            self._started = SnapshotStart(self._started.index, None)
        while len(out) < max_records:
            current = self._next()
            if current is None:
                break
            upcoming = self._peek()
            out.append(self._record(current[0], current[1], last=upcoming is None))
        if self._peek() is None:
            self.done = True
            if not out and not self._emitted and self.heartbeat_topic:
                # Nothing read: a heartbeat carries the end of the snapshot, so the next run
                # streams instead of taking the snapshot again.
                out.append(heartbeat_record(self.heartbeat_topic, self.source_name,
                                            self.partition, self.end_offset().to_map()))
        self._emitted = self._emitted or bool(out)
        self._bar.advance(len(out))
        if self.done:
            self._bar.close()
        return out

    # -- rows ------------------------------------------------------------------------------

    def _all_rows(self, start: SnapshotStart) -> Iterator[tuple[int, Any]]:
        for index in range(start.index, len(self.tables)):
            entry = self.tables[index]
            after = start.after if index == start.index else None
            for chunk in iter_chunks(
                self.conn,
                entry.table,
                entry.captured.schema.key_columns,
                after_key=after,
                chunk_size=self.chunk_size,
                columns=entry.captured.schema.columns,
            ):
                for row in chunk:
                    yield index, row

    def _next(self) -> tuple[int, Any] | None:
        if self._ahead is not None:
            current, self._ahead = self._ahead, None
            return current
        return next(self._rows, None)

    def _peek(self) -> tuple[int, Any] | None:
        if self._ahead is None and not self._exhausted:
            self._ahead = next(self._rows, None)
            self._exhausted = self._ahead is None
        return self._ahead

    # -- records ---------------------------------------------------------------------------

    def _record(self, index: int, row: Any, *, last: bool) -> SourceRecord:
        entry = self.tables[index]
        table = entry.captured
        after = table.schema.value_of(row)
        key = table.schema.key_of(after)
        if last:
            offset = self.end_offset()
        else:
            positions = entry.key_positions
            progress = SnapshotProgress(
                table=table.name,
                after=entry.key_text.dump([row[i] for i in positions]),
                relfilenode=entry.relfilenode,
                lsn=self.snapshot_lsn,
            )
            offset = WalOffset(self.stream_lsn, snapshot=progress,
                               watermarks=self.watermarks).pruned()
        value = {
            "before": None,
            "after": after,
            "source": table.source(
                ts_ms=self.ts_ms, snapshot="last" if last else "true", tx_id=None,
                lsn=self.snapshot_lsn,
            ),
            "op": "r",
            "ts_ms": time.time_ns() // 1_000_000,
            "transaction": None,
            "unchanged": None,
        }
        return SourceRecord(
            table.topic, key, value, table.key_schema, table.value_schema, self.partition,
            offset.to_map(), (), None,
        )

    def _truncate_event(self, index: int) -> SourceRecord:
        """A ``t`` event for a table that is read again from its start (it was rewritten)."""
        entry = self.tables[index]
        table = entry.captured
        progress = SnapshotProgress(table.name, None, entry.relfilenode, self.snapshot_lsn)
        offset = WalOffset(self.stream_lsn, snapshot=progress, watermarks=self.watermarks)
        value = {
            "before": None,
            "after": None,
            "source": table.source(
                ts_ms=self.ts_ms, snapshot="true", tx_id=None, lsn=self.snapshot_lsn
            ),
            "op": "t",
            "ts_ms": time.time_ns() // 1_000_000,
            "transaction": None,
            "unchanged": None,
        }
        return SourceRecord(
            table.topic, None, value, None, table.value_schema, self.partition,
            offset.pruned().to_map(), (), None,
        )
