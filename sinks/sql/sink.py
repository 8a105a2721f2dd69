"""The SQL sink: writes streams into PostgreSQL, MySQL/MariaDB and SQLite tables, exactly once.

Each ``write(batch)`` is one target transaction holding the rows and the sink's next offsets
(``_offsets``); a restart resumes from those offsets, and a replayed batch skips the records
the table already holds the effects of, so nothing is written twice and nothing is lost.

A batch is written in four steps: read every record as a change (``_events``), make sure the
target tables have the columns (``_tables``, DDL in its own transaction), then in the data
transaction collapse the changes per key (``_plan``) and run them per table and schema
(``_writes``), and store the offsets.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberate.connector import CheckResult, ConnectorStatus, Sink
from liberate.errors import FatalError, LiberateError, RecordError, RetriableError
from liberate.records import SinkRecord, TopicPartition
from sinks.sql._check import run_checks
from sinks.sql._engine import sink_engine
from sinks.sql._errors import Failure, failure_of, message_of, wrap
from sinks.sql._events import Action, Change, EventReader, origin
from sinks.sql._layouts import KeyLayout, RowLayout, key_layout, row_layout
from sinks.sql._offsets import OffsetStore
from sinks.sql._plan import plan_batch
from sinks.sql._tables import TableCatalog
from sinks.sql._writes import SqlWriter, writer_for
from sinks.sql.config import SqlSinkConfig, table_name_for

# Layouts are found by table and schema *identity*: the event reader hands out one canonical
# object per distinct schema, and identity hashing is far cheaper than hashing schema text.
_RowLayoutKey = tuple[str, int, int]
_KeyLayoutKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class _Step:
    """Changes of one action on one table that share a layout: one statement (or COPY)."""

    action: Action
    table: str
    layout: RowLayout | KeyLayout
    changes: list[Change]


class SqlSink(Sink):
    """Writes entity events, Debezium change events and tombstones into SQL tables.

    Lifecycle and threading as ``liberate.connector.Sink``: ``write`` from one thread.
    """

    config_model = SqlSinkConfig

    def __init__(self, config: SqlSinkConfig) -> None:
        super().__init__(config)
        self.settings = config
        self._engine: Engine | None = None
        self._catalog: TableCatalog | None = None
        self._offsets: OffsetStore | None = None
        self._writer: SqlWriter | None = None
        self._row_writer: SqlWriter | None = None
        self._reader = EventReader(delete_enabled=config.delete_enabled)
        self._table_names: dict[str, str] = {}
        self._row_layouts: dict[_RowLayoutKey, RowLayout] = {}
        self._key_layouts: dict[_KeyLayoutKey, KeyLayout | None] = {}
        self._layouts_generation = 0
        self._db_errors: tuple[type[BaseException], ...] = (sa.exc.SQLAlchemyError,)

    # -- lifecycle ---------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        """Connectivity, the target tables of the configured topics, and the privileges."""
        engine = self._engine or self._new_engine()
        try:
            return run_checks(self.settings, engine)
        finally:
            if engine is not self._engine:
                engine.dispose()

    def open(self) -> None:
        """Connect and create the offsets table if it is missing."""
        if self._engine is not None:
            return
        engine = self._new_engine()
        dialect = engine.dialect.name
        offsets = OffsetStore(
            table=self.settings.offsets_table,
            schema=self.settings.target_schema,
            sink=self.name,
            dialect=dialect,
        )
        try:
            with engine.begin() as conn:
                offsets.create(conn)
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise wrap(exc, f"creating the offsets table {offsets.table.fullname}") from exc
        self._engine = engine
        self._offsets = offsets
        self._writer = writer_for(dialect)
        self._row_writer = SqlWriter(dialect)
        self._catalog = TableCatalog(
            engine,
            schema=self.settings.target_schema,
            auto_create=self.settings.auto_create,
            auto_evolve=self.settings.auto_evolve,
        )
        self._db_errors = (sa.exc.SQLAlchemyError, engine.dialect.loaded_dbapi.Error)
        self._row_layouts.clear()  # a reopened sink reflects its tables again
        self._key_layouts.clear()
        self._layouts_generation = 0

    def committed_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offsets stored in the offsets table, for the partitions asked."""
        wanted = list(partitions)
        if not wanted:
            return {}
        engine, offsets = self._opened()
        try:
            with engine.connect() as conn:
                stored = offsets.read(conn, {tp.topic for tp in wanted})
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, "reading the sink offsets") from exc
        return {tp: stored[tp] for tp in wanted if tp in stored}

    def status(self) -> ConnectorStatus:
        """The stored next offset of every partition, as ``{topic: {partition: offset}}``."""
        engine = self._engine or self._new_engine()
        offsets = self._offsets or OffsetStore(
            table=self.settings.offsets_table,
            schema=self.settings.target_schema,
            sink=self.name,
            dialect=engine.dialect.name,
        )
        try:
            with engine.connect() as conn:
                stored = offsets.read(conn) if offsets.exists(conn) else {}
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, "reading the sink offsets") from exc
        finally:
            if engine is not self._engine:
                engine.dispose()
        position: dict[str, dict[str, int]] = {}
        for tp in sorted(stored, key=lambda tp: (tp.topic, tp.partition)):
            position.setdefault(tp.topic, {})[str(tp.partition)] = stored[tp]
        return ConnectorStatus(position=position)

    def close(self) -> None:
        """Release the connections; idempotent."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    # -- writing -----------------------------------------------------------------------------

    def write(self, batch: Sequence[SinkRecord]) -> None:
        """Write ``batch`` and its offsets in one transaction (see the module docstring)."""
        if not batch:
            return
        engine, offsets = self._opened()
        changes = self._read(batch)
        self._prepare(changes)
        steps: list[_Step] = []
        try:
            with engine.begin() as conn:
                stored = offsets.read(conn, {r.topic for r in batch}, lock=True)
                fresh = _not_yet_written(changes, stored)
                if not fresh:
                    return
                steps = self._steps(fresh)
                assert self._writer is not None
                upsert = self.settings.mode == "upsert"
                for step in steps:
                    if isinstance(step.layout, RowLayout):
                        self._writer.write(conn, step.layout, step.changes, upsert=upsert)
                    else:
                        self._writer.delete(conn, step.layout, step.changes)
                offsets.store(conn, _next_offsets(fresh))
        except LiberateError:
            raise
        except self._db_errors as exc:
            raise self._write_failure(exc, steps) from exc

    def _read(self, batch: Sequence[SinkRecord]) -> list[tuple[str, Change]]:
        upsert = self.settings.mode == "upsert"
        names = self._table_names
        read = self._reader.read
        changes: list[tuple[str, Change]] = []
        for record in batch:
            table = names.get(record.topic)
            if table is None:
                table = names[record.topic] = table_name_for(self.settings.table, record.topic)
            change = read(record)
            if upsert and change.action is Action.WRITE and change.key_schema is None:
                raise RecordError(
                    f"record {origin(record)} has no key (or no key schema); upserts need the "
                    "primary key as the record key",
                    origin=origin(record),
                    hint="produce keyed records, or set mode: insert",
                )
            changes.append((table, change))
        return changes

    def _prepare(self, changes: Sequence[tuple[str, Change]]) -> None:
        """Layouts for every change, after any DDL they need (outside the data transaction)."""
        catalog = self._catalog
        assert catalog is not None and self._engine is not None
        dialect = self._engine.dialect.name
        upsert = self.settings.mode == "upsert"
        for _ in range(3):  # a DDL invalidates the layouts built before it: go round again
            if self._layouts_generation != catalog.generation:
                self._row_layouts.clear()
                self._key_layouts.clear()
                for writer in (self._writer, self._row_writer):
                    if writer is not None:
                        writer.reset()
                self._layouts_generation = catalog.generation
            for table, change in changes:
                if change.action is Action.WRITE:
                    assert change.row_schema is not None
                    row_key = (table, id(change.row_schema), id(change.key_schema))
                    if row_key not in self._row_layouts:
                        target = catalog.ensure(
                            table, change.row_schema, change.key_schema, upsert=upsert
                        )
                        self._row_layouts[row_key] = row_layout(
                            target, change.row_schema, change.key_schema, dialect
                        )
                elif change.action is Action.DELETE:
                    assert change.key_schema is not None
                    key_key = (table, id(change.key_schema))
                    if key_key not in self._key_layouts:
                        self._key_layouts[key_key] = self._delete_layout(table, change)
            if self._layouts_generation == catalog.generation:
                return
        raise RetriableError("target tables kept changing while the batch was prepared")

    def _delete_layout(self, table: str, change: Change) -> KeyLayout | None:
        assert self._catalog is not None and self._engine is not None
        assert change.key_schema is not None
        target = self._catalog.find(table)
        if target is None:
            return None  # no table, no row to delete
        layout = key_layout(target, change.key_schema, self._engine.dialect.name)
        if layout is None:
            raise FatalError(
                f"table {self._catalog.where(table)} lacks the key column(s) of "
                f"{origin(change.record)}'s key to delete by",
                hint="the record key must match the table's primary key",
            )
        return layout

    def _steps(self, changes: Sequence[tuple[str, Change]]) -> list[_Step]:
        steps: list[_Step] = []
        for plan in plan_batch(changes, reduce=self.settings.mode == "upsert"):
            for run in plan.runs:
                groups: dict[Hashable, _Step] = {}
                for change in run.changes:
                    layout = self._layout_of(plan.table, change)
                    if layout is None:
                        continue
                    step = groups.get(id(layout))
                    if step is None:
                        step = groups[id(layout)] = _Step(run.action, plan.table, layout, [])
                    step.changes.append(change)
                steps.extend(groups.values())
        return steps

    def _layout_of(self, table: str, change: Change) -> RowLayout | KeyLayout | None:
        if change.action is Action.WRITE:
            assert change.row_schema is not None
            return self._row_layouts[(table, id(change.row_schema), id(change.key_schema))]
        return self._key_layouts[(table, id(change.key_schema))]

    # -- failures ----------------------------------------------------------------------------

    def _write_failure(self, exc: BaseException, steps: Sequence[_Step]) -> LiberateError:
        failure = failure_of(exc)
        if failure is Failure.MISSING and self._catalog is not None:
            self._catalog.forget()
            return RetriableError(
                f"a target table or column disappeared during the write: {message_of(exc)}",
                hint="the sink reflects the tables again and retries",
            )
        if failure is Failure.RECORD and steps:
            return self._locate_bad_record(exc, steps)
        return wrap(exc, "writing the batch")

    def _locate_bad_record(self, exc: BaseException, steps: Sequence[_Step]) -> LiberateError:
        """Replay the batch row by row in a transaction that is rolled back, to name the
        first record the database refuses."""
        engine, _ = self._opened()
        writer = self._row_writer
        assert writer is not None
        upsert = self.settings.mode == "upsert"
        try:
            with engine.connect() as conn:
                transaction = conn.begin()
                try:
                    for step in steps:
                        for change in step.changes:
                            try:
                                if isinstance(step.layout, RowLayout):
                                    writer.write(conn, step.layout, [change], upsert=upsert)
                                else:
                                    writer.delete(conn, step.layout, [change])
                            except self._db_errors as row_exc:
                                if failure_of(row_exc) is not Failure.RECORD:
                                    return wrap(row_exc, "writing the batch")
                                return self._record_error(step, change, row_exc)
                finally:
                    transaction.rollback()
        except self._db_errors as replay_exc:
            return wrap(replay_exc, "finding the record the database refused")
        return FatalError(
            f"the database refused the batch but no single record of it: {message_of(exc)}",
            hint="check the target table's constraints and triggers",
        )

    def _record_error(self, step: _Step, change: Change, exc: BaseException) -> RecordError:
        record = change.record
        key = _short(record.key)
        assert self._catalog is not None
        return RecordError(
            f"cannot write record {origin(record)} (key {key}) to table "
            f"{self._catalog.where(step.table)}: {message_of(exc)}",
            origin=origin(record),
            hint="fix the record or the table; nothing of the batch was written",
        )

    # -- helpers -----------------------------------------------------------------------------

    def _opened(self) -> tuple[Engine, OffsetStore]:
        if self._engine is None or self._offsets is None:
            raise FatalError(f"sink {self.name} is not open", hint="call open() first")
        return self._engine, self._offsets

    def _new_engine(self) -> Engine:
        return sink_engine(self.settings)


def _not_yet_written(
    changes: Sequence[tuple[str, Change]], stored: dict[TopicPartition, int]
) -> list[tuple[str, Change]]:
    """The changes whose records are at or past the stored offsets (a replay skips the rest)."""
    if not stored:
        return list(changes)
    floor = {(tp.topic, tp.partition): offset for tp, offset in stored.items()}
    return [
        (table, change)
        for table, change in changes
        if change.record.offset >= floor.get((change.record.topic, change.record.partition), 0)
    ]


def _next_offsets(changes: Sequence[tuple[str, Change]]) -> dict[TopicPartition, int]:
    last: dict[tuple[str, int], int] = {}
    for _, change in changes:
        record = change.record
        at = (record.topic, record.partition)
        if record.offset >= last.get(at, -1):
            last[at] = record.offset
    return {TopicPartition(topic, part): offset + 1 for (topic, part), offset in last.items()}


def _short(value: Any, limit: int = 200) -> str:
    text = repr(dict(value)) if isinstance(value, dict) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
