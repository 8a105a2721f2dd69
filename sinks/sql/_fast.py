"""PostgreSQL fast path: a batch of consumed bytes staged with one COPY per table, never decoded.

In upsert mode with the primary key from the record key, most batches are entity events of
one key schema and one value schema per topic. For those the runtime hands the sink the
consumed records (``SqlSink.transcode``, on the runtime's thread while the previous batch is
written): per topic, the records are reduced to the last one of each key (by the key's bytes,
in C), and the rest become binary COPY rows (``_transcode``). The writer
(``FastWriter.write``) then, in one transaction: checks the stored offsets, COPYs each
table's rows into a temporary table, upserts the written rows and deletes the deleted keys
with one statement each, and stores the offsets. What the decoding path does per key
(``_plan``: the last change of a key wins, deletes and writes touch disjoint keys) holds by
construction.

Any batch the fast path cannot take exactly as the decoding path would goes that path
instead, whole: records of another shape or schema (``_transcode``), several topics into one
table, a replay of records written already, parked keys, a refused row (the decoding path
then finds and names it), any error. Two keys whose bytes differ but whose values are equal
(another key schema version) stay two rows of the staging table and make the upsert fail,
so such a batch goes the decoding path too.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine

from liberate.records import ConsumedRecord, SinkRecord
from liberate.schema.avro import AvroSchema
from sinks.sql._events import Action, Change, EventReader
from sinks.sql._layouts import RowLayout
from sinks.sql._offsets import OffsetStore, Span
from sinks.sql._parking import ParkedStore
from sinks.sql._shape import ShapeRules
from sinks.sql._steps import Steps
from sinks.sql._transcode import COPY_HEADER, COPY_TRAILER, Transcoder, transcoder
from sinks.sql._values import needs_cast
from sinks.sql._writes import upsert_statement

log = logging.getLogger(__name__)

Decode = Callable[[Sequence[ConsumedRecord]], list[SinkRecord]]
SchemaOf = Callable[[int], AvroSchema]

_TOPIC = attrgetter("topic")
_KEY = attrgetter("key")
_VALUE = attrgetter("value")
_FLAG = "liberate_deleted"
_MAX_TRANSCODERS = 1024


@dataclass(frozen=True, slots=True)
class TableRows:
    """The staged rows of one table: the COPY payload and what it holds."""

    table: str
    transcoder: Transcoder
    payload: bytes
    rows: int
    deletes: int
    sample: ConsumedRecord  # a written record: its decoded form finds the table's layout


@dataclass(frozen=True, slots=True)
class FastBatch:
    """A batch ready for ``FastWriter.write``."""

    records: Sequence[ConsumedRecord]
    tables: list[TableRows]


class Transcoders:
    """Turns consumed batches into ``FastBatch``es (one thread: the runtime's)."""

    def __init__(self, rules: ShapeRules, *, delete: bool,
                 table_of: Callable[[str], str]) -> None:
        self._rules = rules
        self._delete = delete
        self._table_of = table_of
        self._cache: dict[tuple[bytes, bytes], Transcoder | None] = {}

    def prepare(self, batch: Sequence[ConsumedRecord], schema_of: SchemaOf) -> FastBatch | None:
        """The batch staged, or None when the decoding path must take it."""
        topics = set(map(_TOPIC, batch))
        if len(topics) == 1:
            groups: dict[str, Sequence[ConsumedRecord]] = {next(iter(topics)): batch}
        else:
            grouped: dict[str, list[ConsumedRecord]] = {t: [] for t in topics}
            for record in batch:
                grouped[record.topic].append(record)
            groups = dict(grouped)
        tables: list[TableRows] = []
        for topic, records in groups.items():
            rows = self._table_rows(topic, records, schema_of)
            if rows is None:
                return None
            tables.append(rows)
        if len({rows.table for rows in tables}) != len(tables):
            return None  # topics sharing a table: their keys reduce together, not here
        return FastBatch(batch, tables)

    def _table_rows(self, topic: str, records: Sequence[ConsumedRecord],
                    schema_of: SchemaOf) -> TableRows | None:
        keys: list[bytes] = list(map(_KEY, records))
        values: list[bytes | None] = list(map(_VALUE, records))
        if None in keys:
            return None
        if not self._delete and None in values:
            # Tombstones change nothing, not even the earlier records of their key.
            kept = [(k, v) for k, v in zip(keys, values, strict=True) if v is not None]
            keys, values = [k for k, _ in kept], [v for _, v in kept]
        last = dict(zip(keys, range(len(keys)), strict=True))
        if len(last) < len(keys):  # several records of a key: the last one wins
            chosen = sorted(last.values())
            keys = [keys[i] for i in chosen]
            values = [values[i] for i in chosen]
        sample_at = next((i for i, v in enumerate(values) if v is not None), None)
        if sample_at is None:
            return None  # nothing but deletes: the decoding path knows the key layout
        value = values[sample_at]
        assert value is not None
        found = self._transcoder(keys[sample_at][:5], value[:5], schema_of)
        if found is None:
            return None
        out = [COPY_HEADER]
        try:
            deletes = found.run(keys, values, out)
        except Exception:  # anything the decoding path treats differently: it takes the batch
            return None
        out.append(COPY_TRAILER)
        sample = next(r for r in records if r.key == keys[sample_at] and r.value is value)
        return TableRows(self._table_of(topic), found, b"".join(out), len(keys), deletes,
                         sample)

    def _transcoder(self, key_header: bytes, value_header: bytes,
                    schema_of: SchemaOf) -> Transcoder | None:
        cache_key = (key_header, value_header)
        if cache_key in self._cache:
            return self._cache[cache_key]
        found: Transcoder | None = None
        if len(key_header) == 5 and len(value_header) == 5 and key_header[0] == 0 \
                and value_header[0] == 0:
            try:
                key_schema = schema_of(int.from_bytes(key_header[1:], "big"))
                value_schema = schema_of(int.from_bytes(value_header[1:], "big"))
            except Exception:  # an unknown id: the decoding path reports it
                return None
            found = transcoder(key_schema, value_schema, self._rules, key_header=key_header,
                               value_header=value_header, delete=self._delete)
        if len(self._cache) >= _MAX_TRANSCODERS:
            self._cache.clear()
        self._cache[cache_key] = found
        return found


class FallBack(Exception):
    """The fast path cannot write this batch: the decoding path does."""


class FastWriter:
    """Writes ``FastBatch``es (the sink's writing thread)."""

    def __init__(self, engine: Engine, *, steps: Steps, reader: EventReader,
                 offsets: OffsetStore, parking: ParkedStore | None) -> None:
        self._engine = engine
        self._dialect: Dialect = engine.dialect
        self._steps = steps
        self._reader = reader
        self._offsets = offsets
        self._parking = parking  # set when errors.tolerance is all: parked keys block
        self._statements: dict[tuple[int, int], _Statements] = {}
        self._conn: Connection | None = None
        self._staged: set[str] = set()  # the CREATE of each staging table of the connection
        self._serials = itertools.count(1)  # staging table names are never reused
        self._store_sql, _ = self._compiled(offsets.upsert, list(offsets.table.c.keys()))
        self._parked_sql = None if parking is None else self._compiled(parking.count_query())

    def write(self, batch: FastBatch, decode: Decode) -> None:
        """Write ``batch`` and its offsets in one transaction; ``FallBack`` when it must take
        the decoding path (nothing was written then).

        Round trips are few (each one leaves the server idle until this thread is scheduled
        again): the writer keeps its own connection (no pool checkout and ping per batch) and
        its staging tables (created once per connection, emptied by each commit), and the
        statements that return nothing needed go in psycopg pipelines: the offsets read (with
        the parked-records count), then the COPYs, then the merges with the offsets and the
        commit.
        """
        layouts = self._layouts(batch, decode)
        span = Span.of(batch.records)
        prepared = [self._prepared(rows.transcoder, layout)
                    for rows, layout in zip(batch.tables, layouts, strict=True)]
        created: list[str] = []
        try:
            conn = self._connection()
            driver = conn.connection.driver_connection
            assert driver is not None
            with conn.begin():
                read_sql, read_params = self._compiled(self._offsets.query(span.topics(),
                                                                           lock=True))
                with driver.pipeline() as pipeline, driver.cursor() as read, \
                        driver.cursor() as parked:
                    read.execute(read_sql, read_params)
                    if self._parked_sql is not None:
                        parked.execute(*self._parked_sql)
                    for statements in prepared:
                        if statements.create not in self._staged:
                            driver.execute(statements.create)
                            created.append(statements.create)
                    pipeline.sync()
                    stored = self._offsets.stored(read.fetchall())
                    parked_count = parked.fetchone() if self._parked_sql is not None else None
                if not span.all_from(stored):
                    raise FallBack("a replay of records written already")
                if parked_count is not None and parked_count[0]:
                    raise FallBack("parked keys")
                for rows, statements in zip(batch.tables, prepared, strict=True):
                    with driver.cursor() as cursor, cursor.copy(statements.copy) as copy:
                        copy.write(rows.payload)
                with driver.pipeline(), driver.cursor() as cursor:
                    for rows, statements in zip(batch.tables, prepared, strict=True):
                        if rows.rows > rows.deletes:
                            cursor.execute(*statements.merge)
                        if rows.deletes:
                            cursor.execute(*statements.delete)
                    cursor.executemany(self._store_sql,
                                       self._offsets.store_rows(span.next_offsets()))
                    driver.commit()  # queued with them: one round trip for the lot
        except FallBack:
            raise
        except Exception as exc:  # a refused row, a lost connection...: the decoding path
            self.close()  # a fresh connection next time, whatever state this one is in
            log.debug("fast path of a batch failed (%s): the decoding path writes it", exc)
            raise FallBack(str(exc)) from exc
        self._staged.update(created)  # committed: they stay for the connection's life

    def close(self) -> None:
        """Release the writer's connection."""
        conn, self._conn = self._conn, None
        self._staged.clear()  # temporary tables: gone with their connection
        if conn is not None:
            try:
                conn.invalidate()
            finally:
                conn.close()

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn

    def _compiled(self, statement: sa.ClauseElement,
                  columns: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
        """The driver's SQL text of a SQLAlchemy statement, with its bound values."""
        compiled = statement.compile(dialect=self._dialect, column_keys=columns,
                                     compile_kwargs={"render_postcompile": True})
        return str(compiled), dict(compiled.params)

    def _layouts(self, batch: FastBatch, decode: Decode) -> list[RowLayout]:
        samples = decode([rows.sample for rows in batch.tables])
        changes: list[tuple[str, Change]] = []
        for rows, record in zip(batch.tables, samples, strict=True):
            try:
                change = self._reader.read(record)
            except Exception as exc:
                raise FallBack(str(exc)) from exc
            if change.action is not Action.WRITE or change.unchanged:
                raise FallBack("not a plain write")
            changes.append((rows.table, change))
        self._steps.prepare(changes)
        layouts = []
        for rows, (table, change) in zip(batch.tables, changes, strict=True):
            layout = self._steps.layout_of(table, change)
            if layout.columns != tuple(c.name for c in rows.transcoder.columns):
                raise FallBack("the layout differs from the staged columns")
            layouts.append(layout)
        return layouts

    def _prepared(self, found: Transcoder, layout: RowLayout) -> _Statements:
        # Keyed by identity, safe as each entry holds both (layouts are rebuilt after DDL).
        cache_key = (id(found), id(layout))
        statements = self._statements.get(cache_key)
        if statements is None:
            if len(self._statements) >= _MAX_TRANSCODERS:
                self._statements.clear()
            statements = self._statements[cache_key] = _statements(
                found, layout, self._dialect, next(self._serials), self._compiled)
        return statements


Compiled = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Statements:
    """One table's statements, as the driver runs them (the staging table, created once per
    connection, is emptied by each commit: ON COMMIT DELETE ROWS)."""

    create: str
    copy: Any  # psycopg.sql.Composed
    merge: Compiled
    delete: Compiled
    found: Transcoder  # held: the cache is keyed by its id
    layout: RowLayout


def _statements(found: Transcoder, layout: RowLayout, dialect: Dialect, serial: int,
                compiled: Callable[[sa.ClauseElement], Compiled]) -> _Statements:
    from psycopg import sql

    flag = _FLAG
    while flag in layout.columns:
        flag += "_"
    stage = sa.Table(
        f"liberate_fast_stage_{serial}",
        sa.MetaData(),
        sa.Column(flag, sa.Boolean()),  # first, as ``_transcode`` writes it
        *[sa.Column(c.name, c.type) for c in found.columns],
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DELETE ROWS",
    )

    def staged(name: str, scale: int | None) -> sa.ColumnElement[Any]:
        value: sa.ColumnElement[Any] = stage.c[name]
        staged_type = stage.c[name].type
        if scale is not None:
            value = sa.cast(value, sa.Numeric())
            if scale:
                value = value * sa.literal(Decimal(1).scaleb(-scale), sa.Numeric())
            staged_type = sa.Numeric()
        target_type = layout.target.c[name].type
        if needs_cast(staged_type, target_type):
            return sa.cast(value, target_type)
        return value

    scales = {c.name: c.scale for c in found.columns}
    target = layout.table
    merge = upsert_statement(dialect.name, target, layout.key_columns, layout.columns).from_select(
        list(layout.columns),
        sa.select(*[staged(c, scales[c]) for c in layout.columns]).where(
            sa.not_(stage.c[flag])),
    )
    keys = [target.c[c] for c in layout.key_columns]
    deleted = sa.select(*[staged(c, scales[c]) for c in layout.key_columns]).where(stage.c[flag])
    match = keys[0] if len(keys) == 1 else sa.tuple_(*keys)
    delete = sa.delete(target).where(match.in_(deleted))
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(stage.name), sql.SQL(", ").join(sql.Identifier(c.name) for c in stage.c))
    return _Statements(
        create=str(sa.schema.CreateTable(stage).compile(dialect=dialect)),
        copy=copy, merge=compiled(merge), delete=compiled(delete), found=found, layout=layout,
    )
