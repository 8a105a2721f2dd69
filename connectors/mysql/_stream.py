"""Binlog events to change records: transactions, positions, DDL and the snapshot window.

``ChangeStream.feed`` takes raw events in binlog order and appends records; it does no I/O.
Positions follow the binlog exactly:

- the *boundary* is the position after the last complete transaction (after an XID, a
  ``COMMIT``/``ROLLBACK`` query, or a standalone statement such as DDL) with the GTID
  position that includes it; a stream can only (re)start at a boundary;
- a record's offset is the boundary its transaction started at plus ``skip``, the number of
  records of that transaction up to and including it; the last record of a transaction gets
  the boundary after the transaction instead. Restarting from any record's offset re-reads
  the transaction and drops the first ``skip`` records: nothing twice, nothing lost.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.mysql import _binlog as ev
from connectors.mysql._ddl import Statement, StatementKind, TableName, classify
from connectors.mysql._gtid import gtid_position
from connectors.mysql._rowcodec import Keyed, Pair, RowCodec, decode_rows_event
from connectors.mysql._tablemap import TableMap, table_map
from connectors.mysql._window import SnapshotWindow
from connectors.mysql.offsets import BinlogPosition
from liberate.envelope import change_value
from liberate.errors import FatalError
from liberate.records import Primitive, SourceRecord
from liberate.schema.avro import AvroSchema

log = logging.getLogger(__name__)

_HEADER = ev.HEADER.unpack_from
_TABLE_ID = struct.Struct("<IH").unpack_from
#: events that carry nothing a change stream needs (statement-based DML helpers included:
#: a statement-based change to a captured table is caught at its QUERY event)
_IGNORED_EVENTS = frozenset({
    ev.START_V3, ev.STOP, ev.INTVAR, ev.RAND, ev.USER_VAR, ev.IGNORABLE, ev.ROWS_QUERY,
    ev.MYSQL_ANONYMOUS_GTID, ev.MYSQL_PREVIOUS_GTIDS, ev.TRANSACTION_CONTEXT, ev.VIEW_CHANGE,
    ev.MARIADB_ANNOTATE_ROWS, ev.MARIADB_BINLOG_CHECKPOINT, ev.MARIADB_GTID_LIST,
})
_LOG_EVENT_IGNORABLE_F = 0x80
_ROWS_EVENTS = ev.ROWS_EVENTS
_UPDATES = frozenset({ev.UPDATE_ROWS, ev.UPDATE_ROWS_V1})
_INSERTS = frozenset({ev.WRITE_ROWS, ev.WRITE_ROWS_V1})


@dataclass(frozen=True, slots=True)
class CapturedTable:
    """How the rows of one TABLE_MAP become records."""

    name: TableName
    label: str
    topic: str
    codec: RowCodec | None  # None for a table known only from the catalog (TRUNCATE)
    key_fields: tuple[str, ...]
    key_schema: AvroSchema
    value_schema: AvroSchema
    source: Mapping[str, Any]


class TableCatalog(Protocol):
    """What the stream asks of the source about tables."""

    @property
    def encodings(self) -> Mapping[int, str]:
        """Collation id -> Python codec, for text columns."""

    def captured(self, name: TableName) -> bool:
        """Whether ``name`` is one of the configured tables."""

    def table(self, table_map: TableMap) -> CapturedTable:
        """The captured table of a TABLE_MAP of a captured table (cached by its shape)."""

    def current(self, name: TableName) -> CapturedTable:
        """The captured table as the catalog last described it (for TRUNCATE)."""

    def schema_changed(self, statement: Statement, tables: list[TableName], sql: str) -> None:
        """A DDL statement touched captured ``tables``."""


class ChangeStream:
    """The state of one pass over the binlog (see the module docstring).

    ``partition`` is shared by every record; ``heartbeat`` makes a record that carries a
    position (or None to never emit one).
    """

    def __init__(
        self,
        *,
        flavor: str,
        start: BinlogPosition,
        catalog: TableCatalog,
        partition: Mapping[str, Primitive],
        tombstones: bool = True,
        window: SnapshotWindow | None = None,
        heartbeat: Callable[[dict[str, Primitive]], SourceRecord] | None = None,
        heartbeat_interval_s: float = 10.0,
    ) -> None:
        self.flavor = flavor
        self.catalog = catalog
        self.partition = partition
        self.tombstones = tombstones
        # A window ends where the last snapshot epoch was read; a stream past it has none.
        self.window = window if window is None or start.coordinates < window.end else None
        self._heartbeat = heartbeat
        self.heartbeat_interval_s = heartbeat_interval_s
        self.file = start.file
        self.gtids = gtid_position(flavor, start.gtids)
        self._gtids_known = start.gtids is not None
        self.server_id = start.server_id
        self.boundary = start.at_boundary()
        self.skip = start.skip
        self.in_transaction = False
        self.transaction_gtid: str | None = None
        self._xa = False
        self._records = 0
        self._last: SourceRecord | None = None
        self._offset = self._offset_map(self.boundary)
        #: table id -> (TABLE_MAP after its header, the table or None when not captured)
        self._maps: dict[int, tuple[bytes, CapturedTable | None]] = {}
        self._last_map = b""
        #: table label -> its source block in the current transaction (see ``_rows``)
        self._sources: dict[str, dict[str, Any]] = {}
        self._emitted: Mapping[str, Primitive] = self._offset
        self._emitted_at = time.monotonic()
        self.table_id_size = 6

    # -- feeding ------------------------------------------------------------------------------

    def feed(self, events: Sequence[ev.Event], out: list[SourceRecord], now_ms: int) -> None:
        """Decode ``events`` (in order) and append their records to ``out``."""
        rows_events, table_map_event = _ROWS_EVENTS, ev.TABLE_MAP
        for event in events:
            kind = event[4]
            if kind in rows_events:
                self._rows(event, kind, out, now_ms)
            elif kind == table_map_event:
                self._table_map(event)
            elif kind == ev.XID:
                self._commit(_HEADER(event)[4], out)
            elif kind == ev.MARIADB_GTID:
                self._mariadb_gtid(event)
            elif kind == ev.QUERY:
                self._query(event, out, now_ms)
            elif kind == ev.MYSQL_GTID:
                self.transaction_gtid = ev.mysql_gtid(event).text
            elif kind == ev.ROTATE:
                self._rotate(event)
            elif kind in (ev.HEARTBEAT, ev.HEARTBEAT_V2):
                self._heartbeat_event(event)
            elif kind == ev.FORMAT_DESCRIPTION:
                self.table_id_size = ev.format_description(event).table_id_size
            elif kind == ev.XA_PREPARE:
                self._commit(_HEADER(event)[4], out)
            elif kind == ev.INCIDENT:
                raise FatalError(
                    "the server logged an INCIDENT event: changes may be missing from the binlog",
                    hint="take a new snapshot (delete this source's offsets) after checking the "
                    "server's error log",
                )
            elif kind in _IGNORED_EVENTS or event[18] & _LOG_EVENT_IGNORABLE_F:
                continue
            else:
                self._unsupported(event, kind)
        self.heartbeat_if_due(out)

    def heartbeat_if_due(self, out: list[SourceRecord]) -> None:
        """Append a heartbeat record when the boundary moved without records for a while."""
        if self._heartbeat is None or self.in_transaction:
            return
        now = time.monotonic()
        if out:
            self._emitted_at = now
            self._emitted = out[-1].offset
            return
        if self._offset == self._emitted or now - self._emitted_at < self.heartbeat_interval_s:
            return
        record = self._heartbeat(dict(self._offset))
        out.append(record)
        self._emitted = record.offset
        self._emitted_at = now

    # -- events ---------------------------------------------------------------------------

    def _table_id(self, event: ev.Event) -> int:
        if self.table_id_size == 6:
            low, high = _TABLE_ID(event, ev.HEADER_SIZE)
            return int(low | high << 32)
        return int.from_bytes(event[ev.HEADER_SIZE : ev.HEADER_SIZE + 4], "little")

    def _table_map(self, event: ev.Event) -> None:
        # Every statement logs its TABLE_MAP again: decode it only when it changed. The last
        # one is checked first, by its bytes after the header (table id included).
        body = bytes(event[ev.HEADER_SIZE :])
        if body == self._last_map:
            return
        table_id = self._table_id(event)
        cached = self._maps.get(table_id)
        if cached is not None and cached[0] == body:
            self._last_map = body
            return
        decoded = table_map(event, table_id_size=self.table_id_size,
                            mariadb=self.flavor == "mariadb", encodings=self.catalog.encodings)
        name = (decoded.database, decoded.table)
        entry = self.catalog.table(decoded) if self.catalog.captured(name) else None
        self._maps[table_id] = (body, entry)
        self._last_map = body

    def _rows(self, event: ev.Event, kind: int, out: list[SourceRecord], now_ms: int) -> None:
        if self.table_id_size == 6:
            low, high = _TABLE_ID(event, ev.HEADER_SIZE)
            table_id = low | high << 32
        else:
            table_id = self._table_id(event)
        mapped = self._maps.get(table_id)
        if mapped is None:
            raise ev.BinlogDecodeError(
                f"a rows event names table id {table_id} without a TABLE_MAP",
                hint="the stream did not start at a transaction boundary: report this",
            )
        entry = mapped[1]
        if entry is None:
            return
        if self._xa:
            raise FatalError(
                f"an XA transaction changed the captured table {entry.label}; "
                "XA transactions are not supported",
                hint="run changes to captured tables outside XA transactions",
            )
        codec = entry.codec
        assert codec is not None
        data = bytes(event)
        timestamp, _, server_id, event_size, log_pos, _ = _HEADER(data)
        self.server_id = server_id
        # The source block: the table's, with this transaction's file and GTID (made once per
        # table and transaction), then this event's time, position and server.
        gtid = self.transaction_gtid
        template = self._sources.get(entry.label)
        if template is None or template["gtid"] != gtid or template["file"] != self.file:
            template = {**entry.source, "ts_ms": 0, "file": self.file, "pos": 0, "row": 0,
                        "gtid": gtid, "server_id": 0}
            self._sources[entry.label] = template
        source = {**template}
        source["ts_ms"] = timestamp * 1000
        source["pos"] = log_pos - event_size
        source["server_id"] = server_id
        if kind in _UPDATES:
            pairs = decode_rows_event(data, codec, self.table_id_size, codec.pairs)
            self._updates(entry, pairs, source, out, now_ms)
        else:
            images = decode_rows_event(data, codec, self.table_id_size, codec.keyed)
            self._images(entry, images, kind in _INSERTS, source, out, now_ms)

    # The loops below build records inline (no call per record) on the paths every change
    # takes; ``_records`` and ``_last`` live in locals meanwhile and are written back before
    # a helper that uses them (``_delete``, ``_emit``) runs.

    def _images(self, entry: CapturedTable, images: list[Keyed], inserts: bool,
                source: dict[str, Any], out: list[SourceRecord], now_ms: int) -> None:
        window, boundary, label = self.window, self.boundary, entry.label
        for index, (row, key) in enumerate(images):
            if window is not None and window.drops(label, key, boundary):
                continue
            block = source if index == 0 else {**source, "row": index}
            if not inserts:
                self._delete(out, entry, key, row, block, now_ms)
                continue
            self._records = records = self._records + 1
            if records > self.skip:
                self._last = record = SourceRecord(
                    entry.topic, key,
                    {"before": None, "after": row, "source": block, "op": "c",
                     "ts_ms": now_ms, "transaction": None},
                    entry.key_schema, entry.value_schema, self.partition,
                    {**self._offset, "skip": records},
                )
                out.append(record)

    def _updates(self, entry: CapturedTable, pairs: list[Pair], source: dict[str, Any],
                 out: list[SourceRecord], now_ms: int) -> None:
        window, boundary, label = self.window, self.boundary, entry.label
        topic, key_schema, value_schema = entry.topic, entry.key_schema, entry.value_schema
        partition, offset, skip = self.partition, self._offset, self.skip
        append = out.append
        records, last = self._records, self._last
        for index, (before, after, key, old_key) in enumerate(pairs):
            block = source if index == 0 else {**source, "row": index}
            if old_key is None:
                if window is not None and window.drops(label, key, boundary):
                    continue
                records += 1
                if records > skip:
                    last = SourceRecord(
                        topic, key,
                        {"before": before, "after": after, "source": block, "op": "u",
                         "ts_ms": now_ms, "transaction": None},
                        key_schema, value_schema, partition, {**offset, "skip": records},
                    )
                    append(last)
                continue
            # A key change is a delete of the old key and a create of the new one (as
            # Debezium does), so keyed consumers and compaction forget the old key.
            self._records, self._last = records, last
            if window is None or not window.drops(label, old_key, boundary):
                self._delete(out, entry, old_key, before, block, now_ms)
            if window is None or not window.drops(label, key, boundary):
                self._emit(out, entry, key, change_value(
                    "c", before=None, after=after, source=block, ts_ms=now_ms))
            records, last = self._records, self._last
        self._records, self._last = records, last

    def _delete(self, out: list[SourceRecord], entry: CapturedTable, key: dict[str, Any],
                before: dict[str, Any], source: dict[str, Any], now_ms: int) -> None:
        self._emit(out, entry, key, change_value(
            "d", before=before, after=None, source=source, ts_ms=now_ms))
        if self.tombstones:
            self._emit(out, entry, key, None)

    def _emit(self, out: list[SourceRecord], entry: CapturedTable, key: dict[str, Any] | None,
              value: dict[str, Any] | None) -> None:
        self._records += 1
        if self._records <= self.skip:
            return
        record = SourceRecord(
            entry.topic, key, value, entry.key_schema, entry.value_schema, self.partition,
            {**self._offset, "skip": self._records},
        )
        out.append(record)
        self._last = record

    def _mariadb_gtid(self, event: ev.Event) -> None:
        gtid = ev.mariadb_gtid(event)
        self.transaction_gtid = gtid.text
        self.in_transaction = not gtid.standalone
        self._xa = bool(gtid.flags & ev.MARIADB_FL_PREPARED_XA)

    def _query(self, event: ev.Event, out: list[SourceRecord], now_ms: int) -> None:
        query = ev.query(event)
        statement = classify(query.sql, query.database)
        if statement.kind is StatementKind.TRANSACTION:
            word = query.sql.lstrip().split(None, 2)
            first = word[0].upper() if word else ""
            second = word[1].upper() if len(word) > 1 else ""
            if first == "BEGIN" or (first == "START" and second == "TRANSACTION"):
                self.in_transaction = True
            elif first == "XA" and second == "START":
                self.in_transaction = True
                self._xa = True
            elif first == "COMMIT" or (first == "ROLLBACK" and second != "TO") or (
                first == "XA" and second != "END"
            ):
                # ROLLBACK TO SAVEPOINT stays inside its transaction.
                self._commit(_HEADER(event)[4], out)
            return
        touched = self._touched(statement)
        if touched:
            self._captured_statement(statement, touched, query.sql, event, out, now_ms)
        if not self.in_transaction:
            self._commit(_HEADER(event)[4], out)

    def _touched(self, statement: Statement) -> list[TableName]:
        names = [name for name in statement.tables if self.catalog.captured(name)]
        for old, new in statement.renames:
            names += [n for n in (old, new) if self.catalog.captured(n) and n not in names]
        if statement.kind is StatementKind.DROP_DATABASE and statement.database:
            for _, entry in self._maps.values():
                if entry is not None and entry.name[0] == statement.database:
                    names.append(entry.name)
        return names

    def _captured_statement(self, statement: Statement, touched: list[TableName], sql: str,
                            event: ev.Event, out: list[SourceRecord], now_ms: int) -> None:
        where = ", ".join(f"{db}.{table}" for db, table in touched)
        if statement.kind is StatementKind.DML:
            raise FatalError(
                f"a statement-based change to captured table(s) {where} is in the binlog; its "
                f"rows are not: {_quote(sql)}",
                hint="set binlog_format=ROW for every session (SET GLOBAL binlog_format=ROW "
                "and in the server config), then take a new snapshot of the table",
            )
        if statement.kind is StatementKind.UNKNOWN:
            raise FatalError(
                f"a statement on captured table(s) {where} could not be understood, so the "
                f"connector stopped rather than guess: {_quote(sql)}",
                hint="if the statement does not change the table's columns, remove the table "
                "from tables: for the run that passes it, or report the statement",
            )
        if statement.kind is StatementKind.TRUNCATE:
            self._truncate(touched[0], event, out, now_ms)
        self.catalog.schema_changed(statement, touched, sql)
        # Table ids of changed tables are never reused for another definition, but the
        # TABLE_MAP cache is keyed by id: forget the touched tables to be safe.
        self._maps = {
            tid: mapped for tid, mapped in self._maps.items()
            if mapped[1] is None or mapped[1].name not in touched
        }
        self._last_map = b""

    def _truncate(self, name: TableName, event: ev.Event, out: list[SourceRecord],
                  now_ms: int) -> None:
        entry = next(
            (mapped[1] for mapped in self._maps.values()
             if mapped[1] is not None and mapped[1].name == name),
            None,
        )
        if entry is None:
            entry = self.catalog.current(name)
        timestamp, _, server_id, event_size, log_pos, _ = _HEADER(event)
        source = dict(entry.source)
        source.update(ts_ms=timestamp * 1000, file=self.file, pos=log_pos - event_size, row=0,
                      gtid=self.transaction_gtid, server_id=server_id)
        self._emit(out, entry, None, change_value(
            "t", before=None, after=None, source=source, ts_ms=now_ms))

    def _rotate(self, event: ev.Event) -> None:
        rotate = ev.rotate(event)
        artificial = _HEADER(event)[4] == 0 or event[17] & ev.LOG_EVENT_ARTIFICIAL_F
        self.file = rotate.file
        if not artificial and not self.in_transaction:
            self._move_boundary(rotate.file, rotate.position)

    def _heartbeat_event(self, event: ev.Event) -> None:
        beat = ev.heartbeat(event)
        if not beat.file:
            return
        self.file = beat.file
        if not self.in_transaction:
            self._move_boundary(beat.file, beat.position)

    def _move_boundary(self, file: str, pos: int) -> None:
        moved = BinlogPosition(file, pos, self.boundary.gtids, 0, self.server_id)
        if moved.coordinates > self.boundary.coordinates:
            self.boundary = moved
            self._offset = self._offset_map(moved)

    def _commit(self, log_pos: int, out: list[SourceRecord]) -> None:
        if self.transaction_gtid is not None:
            self.gtids.add(self.transaction_gtid)
            self._gtids_known = True
        self.boundary = BinlogPosition(
            self.file, log_pos, self.gtids.text if self._gtids_known else None, 0, self.server_id
        )
        window = self.window
        if window is not None and self.boundary.coordinates >= window.end:
            self.window = None
        self._offset = self._offset_map(self.boundary)
        last = self._last
        if last is not None and out and out[-1] is last:
            last.offset = dict(self._offset)
        self._last = None
        self._records = 0
        self.skip = 0
        self.in_transaction = False
        self.transaction_gtid = None
        self._xa = False

    def _offset_map(self, position: BinlogPosition) -> dict[str, Primitive]:
        offset = position.to_map()
        if self.window is not None:
            offset["snapshot"] = self.window.progress_text
        return offset

    def _unsupported(self, event: ev.Event, kind: int) -> None:
        what = ev.UNSUPPORTED_EVENTS.get(kind, f"an event of unknown type {kind}")
        if kind in ev.MARIADB_ROWS_COMPRESSED:
            table_id = int.from_bytes(
                event[ev.HEADER_SIZE : ev.HEADER_SIZE + self.table_id_size], "little"
            )
            mapped = self._maps.get(table_id)
            if mapped is None or mapped[1] is None:
                return
        raise FatalError(
            f"the binlog holds {what}, which the connector cannot decode",
            hint="turn the feature off on the server (see docs/mysql.md, 'Server settings')",
        )

    # -- state ----------------------------------------------------------------------------

    def caught_up_with(self, target: BinlogPosition | None, target_gtids: str | None) -> bool:
        """Whether the stream has passed ``target`` (a file/position or GTID position)."""
        if self.in_transaction:
            return False
        if target is not None and self.boundary.coordinates >= target.coordinates:
            return True
        if target_gtids is not None and self._gtids_known:
            return self.gtids.covers(gtid_position(self.flavor, target_gtids))
        return target is None and target_gtids is None

    @property
    def offset(self) -> dict[str, Primitive]:
        """The offset of the current boundary."""
        return dict(self._offset)


def _quote(sql: str, limit: int = 500) -> str:
    text = " ".join(sql.split())
    return repr(text if len(text) <= limit else text[:limit] + " ...")
