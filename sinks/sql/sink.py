"""The SQL sink: writes streams into PostgreSQL, MySQL/MariaDB and SQLite tables, exactly once.

Each ``write(batch)`` is one target transaction holding the rows and the sink's next offsets
(``_offsets``); a restart resumes from those offsets, and a replayed batch skips the records
the table already holds the effects of, so nothing is written twice and nothing is lost.

A batch is written in four steps: read every record as a change (``_events``), make sure the
target tables can take them (``_steps`` and ``_tables``: DDL in its own transaction), then in
the data transaction collapse the changes per key (``_plan``), run them per table and layout
(``_writes``), and store the offsets.

Records that cannot be written follow ``errors.tolerance`` (``_tolerance``): ``none`` stops
with the record named and nothing of the batch written; ``all`` dead-letters them, parks the
later records of their keys, and writes the rest.

On PostgreSQL most upsert batches skip all of that (``_fast``): the runtime hands over the
consumed bytes (``transcode``, ``write_transcoded``), staged with one COPY per table without
being decoded; a batch the fast path cannot take exactly alike goes the way above.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberate.connector import CheckResult, ConnectorStatus, Sink
from liberate.errors import FatalError
from liberate.records import ConsumedRecord, SinkRecord, TopicPartition
from liberate.schema.avro import AvroSchema
from sinks.sql._check import run_checks
from sinks.sql._dead_letters import SinkContext
from sinks.sql._engine import sink_engine
from sinks.sql._errors import wrap
from sinks.sql._events import EventReader
from sinks.sql._fast import Decode, FallBack, FastBatch, FastWriter, SchemaOf, Transcoders
from sinks.sql._offsets import OffsetStore
from sinks.sql._parking import ParkedStore
from sinks.sql._planning import plan_lines
from sinks.sql._shape import ShapeRules
from sinks.sql._steps import Steps
from sinks.sql._tables import TableCatalog
from sinks.sql._tolerance import BatchWriter
from sinks.sql._writes import SqlWriter, writer_for
from sinks.sql.config import SqlSinkConfig, table_name_for

TopicSchemas = tuple[AvroSchema | None, AvroSchema | None]

log = logging.getLogger(__name__)

#: the GIL switch interval with the PostgreSQL fast path (see ``SqlSink.switch_interval_s``)
FAST_SWITCH_INTERVAL_S = 0.0005


class SqlSink(Sink):
    """Writes entity events, Debezium change events and tombstones into SQL tables.

    Lifecycle and threading as ``liberate.connector.Sink``: ``write`` from one thread. The
    runtime may call ``attach_context`` before ``open`` (the sink then also accepts records
    flagged as undecodable, see ``_dead_letters``).
    """

    config_model = SqlSinkConfig
    #: the runtime may poll and decode the next batch while this one is written:
    #: ``committed_offsets`` reads committed rows on its own connection, safe meanwhile
    read_ahead = True

    def __init__(self, config: SqlSinkConfig) -> None:
        super().__init__(config)
        self.settings = config
        self._engine: Engine | None = None
        self._offsets: OffsetStore | None = None
        self._parking: ParkedStore | None = None
        self._writer: BatchWriter | None = None
        self._context: SinkContext | None = None
        # PostgreSQL fast path (``_fast``): set by ``open`` where it applies
        self._transcoders: Transcoders | None = None
        self._fast: FastWriter | None = None
        #: batches written by the fast path since this sink was made
        self.fast_batches = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        """Connectivity, the target tables of the configured topics, and the privileges."""
        engine = self._engine or self._new_engine()
        try:
            return run_checks(self.settings, engine)
        finally:
            if engine is not self._engine:
                engine.dispose()

    def attach_context(self, context: SinkContext) -> None:
        """Use the runtime's ``context`` for dead letters and schema ages (see
        ``_dead_letters``)."""
        self._context = context
        if self._writer is not None:
            self._writer.context = context

    def open(self) -> None:
        """Connect and create the offsets and parked tables if they are missing."""
        if self._engine is not None:
            return
        engine = self._new_engine()
        offsets, parking = self._stores(engine)
        try:
            _create_own_tables(engine, offsets, parking)
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise wrap(exc, f"creating the sink's tables {offsets.table.fullname}, "
                            f"{parking.table.fullname}") from exc
        self._engine, self._offsets, self._parking = engine, offsets, parking
        self._writer = self._batch_writer(engine, offsets, parking)
        self._fast_path(engine)

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
        """The stored next offset of every partition, as ``{topic: {partition: offset}}``,
        and the number of parked records when there are any."""
        engine = self._engine or self._new_engine()
        offsets, parking = self._stores(engine)
        try:
            with engine.connect() as conn:
                stored = offsets.read(conn) if offsets.exists(conn) else {}
                parked = parking.count(conn) if parking.exists(conn) else 0
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, "reading the sink offsets") from exc
        finally:
            if engine is not self._engine:
                engine.dispose()
        position: dict[str, Any] = {}
        for tp in sorted(stored, key=lambda tp: (tp.topic, tp.partition)):
            position.setdefault(tp.topic, {})[str(tp.partition)] = stored[tp]
        state = f"{parked} record(s) parked: see `liberate dlq list`" if parked else "idle"
        return ConnectorStatus(position=position, state=state)

    def reset_offsets(self, offsets: Mapping[TopicPartition, int] | None) -> None:
        """Replace the stored next offsets by ``offsets``, or remove them (``None``: read every
        topic from the beginning). For ``liberate offsets reset``, while the sink is stopped."""
        engine = self._engine or self._new_engine()
        store, parking = self._stores(engine)
        try:
            _create_own_tables(engine, store, parking)
            with engine.begin() as conn:
                store.delete(conn)
                store.store(conn, offsets or {})
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, "resetting the sink offsets") from exc
        finally:
            if engine is not self._engine:
                engine.dispose()

    def close(self) -> None:
        """Release the connections; idempotent."""
        engine, self._engine = self._engine, None
        self._writer = None
        fast, self._fast, self._transcoders = self._fast, None, None
        if fast is not None:
            fast.close()
        if engine is not None:
            engine.dispose()

    # -- writing -----------------------------------------------------------------------------

    def write(self, batch: Sequence[SinkRecord]) -> None:
        """Write ``batch`` and its offsets in one transaction (see the module docstring)."""
        if not batch:
            return
        self._opened()
        assert self._writer is not None
        self._writer.write(batch)

    @property
    def switch_interval_s(self) -> float | None:
        """The GIL switch interval the runtime sets while it reads ahead: 0.5 ms with the
        PostgreSQL fast path, whose writing thread mostly waits on the server and must not
        wait 5 ms for the GIL after each round trip (measured: docs/benchmarks.md)."""
        return FAST_SWITCH_INTERVAL_S if self._fast is not None else None

    def transcode(self, batch: Sequence[ConsumedRecord], schema_of: SchemaOf) -> object | None:
        """The consumed ``batch`` made ready for ``write_transcoded`` without decoding it
        (PostgreSQL, see ``_fast``), or None when it must be decoded and written with
        ``write``. The runtime may call it while a write is in flight."""
        transcoders = self._transcoders
        if transcoders is None or not batch:
            return None
        try:
            return transcoders.prepare(batch, schema_of)
        except Exception as exc:  # never fatal: the decoding path takes the batch
            log.debug("sink %s: batch not transcoded (%s)", self.name, exc)
            return None

    def write_transcoded(self, batch: object, decode: Decode) -> None:
        """Write a batch ``transcode`` made, as ``write`` would write its records decoded
        (``decode``): which it does when the fast path cannot take the batch."""
        assert isinstance(batch, FastBatch)
        self._opened()
        if self._fast is not None:
            try:
                self._fast.write(batch, decode)
                self.fast_batches += 1
                return
            except FallBack as exc:
                log.debug("sink %s: batch written by the decoding path (%s)", self.name, exc)
        self.write(decode(batch.records))

    # -- tools: plan, parked records, replay ---------------------------------------------------

    def plan(self, schemas: Mapping[str, TopicSchemas]) -> list[str]:
        """The DDL the sink would run for records of ``schemas`` (topic -> key and value
        schema), as SQL lines and ``--`` comments, without running anything."""
        engine = self._engine or self._new_engine()
        try:
            offsets, parking = self._stores(engine)
            return plan_lines(self.settings, engine, offsets, parking, schemas)
        finally:
            if engine is not self._engine:
                engine.dispose()

    def parked(self) -> list[dict[str, Any]]:
        """The dead-lettered and parked records, in stream order, as printable fields:
        ``origin``, ``table``, ``key``, ``behind`` (None: it failed itself), ``error``,
        ``error_class``, ``parked_at_ms``."""
        engine, _ = self._opened()
        assert self._parking is not None
        try:
            with engine.connect() as conn:
                records = self._parking.all(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, "reading the parked records") from exc
        return [
            {
                "origin": r.origin,
                "table": r.target,
                "key": r.key_text,
                "behind": r.behind,
                "error": r.error_message,
                "error_class": r.error_class,
                "parked_at_ms": r.parked_at_ms,
            }
            for r in records
        ]

    def replay(self, decode: Callable[[list[ConsumedRecord]], list[SinkRecord]]) -> int:
        """Apply every parked record to the target, in stream order, and release their keys,
        in one transaction; ``decode`` turns the stored bytes into records. Returns how many
        were applied. A record that still fails stops it with nothing applied."""
        self._opened()
        assert self._writer is not None
        return self._writer.replay(decode)

    def discard(self, origins: Sequence[str]) -> list[str]:
        """Drop the parked records of ``origins`` (``topic[partition]@offset``) without
        applying them; returns the ones found. The other records of their keys stay parked."""
        engine, _ = self._opened()
        assert self._parking is not None
        wanted = set(origins)
        try:
            with engine.begin() as conn:
                chosen = [r for r in self._parking.all(conn) if r.origin in wanted]
                self._parking.remove(conn, chosen)
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, "discarding parked records") from exc
        return [r.origin for r in chosen]

    # -- helpers -----------------------------------------------------------------------------

    def _batch_writer(
        self, engine: Engine, offsets: OffsetStore, parking: ParkedStore
    ) -> BatchWriter:
        settings = self.settings
        catalog = TableCatalog(
            engine,
            schema=settings.target_schema,
            auto_create=settings.auto_create,
            auto_evolve=settings.auto_evolve,
            unsafe=settings.evolution.unsafe,
        )
        bulk, single = writer_for(engine.dialect), SqlWriter(engine.dialect)
        steps = Steps(catalog, dialect=engine.dialect, rules=ShapeRules.of(settings),
                      mode=settings.mode, writers=(bulk, single))
        reader = EventReader(
            delete_enabled=settings.delete_enabled,
            truncate_enabled=settings.truncate_enabled,
            pk_mode=settings.pk_mode,
            pk_fields=settings.pk_fields or (),
        )
        writer = BatchWriter(
            settings, engine, catalog=catalog, offsets=offsets, parking=parking, steps=steps,
            reader=reader, bulk=bulk, single=single,
        )
        writer.context = self._context
        return writer

    def _fast_path(self, engine: Engine) -> None:
        """Enable the fast path where it applies: PostgreSQL with UTF-8 on both sides (the
        server checks the strings it is sent), upserts keyed by the record key."""
        settings = self.settings
        assert self._writer is not None and self._offsets is not None
        if engine.dialect.name != "postgresql" or settings.mode != "upsert" \
                or settings.pk_mode != "record_key":
            return
        try:
            with engine.connect() as conn:
                found = conn.exec_driver_sql(
                    "SELECT current_setting('server_encoding'), "
                    "current_setting('client_encoding')").one()
            encodings = set(found)
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, "reading the database encoding") from exc
        if encodings != {"UTF8"}:
            return
        template = settings.table
        self._transcoders = Transcoders(
            ShapeRules.of(settings), delete=settings.delete_enabled,
            table_of=lambda topic: table_name_for(template, topic),
        )
        writer = self._writer
        self._fast = FastWriter(
            engine, steps=writer.steps, reader=writer.reader, offsets=self._offsets,
            parking=self._parking if settings.errors.tolerance == "all" else None,
        )

    def _stores(self, engine: Engine) -> tuple[OffsetStore, ParkedStore]:
        settings = self.settings
        offsets = self._offsets or OffsetStore(
            table=settings.offsets_table,
            schema=settings.target_schema,
            sink=self.name,
            dialect=engine.dialect.name,
        )
        parking = self._parking or ParkedStore(
            table=settings.parked_table, schema=settings.target_schema, sink=self.name
        )
        return offsets, parking

    def _opened(self) -> tuple[Engine, OffsetStore]:
        if self._engine is None or self._offsets is None:
            raise FatalError(f"sink {self.name} is not open", hint="call open() first")
        return self._engine, self._offsets

    def _new_engine(self) -> Engine:
        return sink_engine(self.settings)



def _create_own_tables(engine: Engine, offsets: OffsetStore, parking: ParkedStore) -> None:
    """Create the offsets and parked tables unless they exist.

    Sinks of one run opening on one database race to create them, and ``IF NOT EXISTS`` can
    lose such a race on PostgreSQL (the catalog is checked before the other transaction
    commits): a second attempt then finds them.
    """
    for attempt in (1, 2):
        try:
            with engine.begin() as conn:
                offsets.create(conn)
                parking.create(conn)
            return
        except sa.exc.SQLAlchemyError:
            if attempt == 2:
                raise
