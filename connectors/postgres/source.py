"""``PostgresSource``: committed changes of PostgreSQL tables from the WAL (pgoutput), after a
consistent, resumable snapshot.

``open`` validates the server, the tables, the publication and the slot, then decides (see
``_plan``) whether to snapshot, resume a snapshot or stream. ``poll`` returns the snapshot's
``r`` events (``_snapshotting``), then the stream's change events (``_changes``).
docs/postgres.md tells the whole story, including how a resumed snapshot and the stream meet
without a gap or an overlap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import ClassVar, TypeVar

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from connectors.postgres import _catalog as catalog
from connectors.postgres._changes import ChangeStream, RelationState
from connectors.postgres._check import run_checks, slot_status
from connectors.postgres._engine import guarded, open_engine, reason
from connectors.postgres._pgoutput import Relation, lsn_text
from connectors.postgres._plan import Plan, Step, plan_start
from connectors.postgres._snapshot_start import (
    SnapshotContext,
    exported_snapshot,
    plain_snapshot,
    resumed_snapshot,
)
from connectors.postgres._snapshotting import SnapshotReader
from connectors.postgres._stream import ReplicationConnection, replication_conninfo
from connectors.postgres._tableset import TableSet
from connectors.postgres.config import (
    OWN_MESSAGE_PREFIX,
    PostgresSourceConfig,
    SnapshotMode,
    split_name,
)
from connectors.postgres.offsets import WalOffset
from liberate.config.base import SourceConfig
from liberate.connector import CheckResult, ConnectorStatus, Source
from liberate.database import database_url, mask_url
from liberate.errors import FatalError, PrerequisiteError, RetriableError
from liberate.records import Primitive, SourceRecord
from liberate.schema.tables import TopicSchemas
from liberate.streams.base import SourceOffset, partition_key

log = logging.getLogger(__name__)
T = TypeVar("T")

#: PostgreSQL 10 brought pgoutput; 14 the ``messages`` option (heartbeats, the start marker)
#: and protocol 2 (streaming of in-progress transactions)
MIN_VERSION = 100000
MESSAGES_VERSION = 140000
STREAMING_VERSION = 140000
SLOT_RELEASE_WAIT_S = 10.0  # how long open() waits for a slot a closing reader still holds


class PostgresSource(Source):
    """A log-based source over PostgreSQL logical replication (``connector: postgres``).

    Threading: ``poll`` and ``commit`` from the runtime thread; ``stop`` from any thread makes
    a waiting ``poll`` return at once.
    """

    config_model: ClassVar[type[SourceConfig]] = PostgresSourceConfig

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, PostgresSourceConfig):
            raise TypeError(
                f"PostgresSource needs a PostgresSourceConfig, not {type(config).__name__}"
            )
        super().__init__(config)
        self.settings: PostgresSourceConfig = config
        self.partition: dict[str, Primitive] = {"server": config.name}
        self._stop = threading.Event()
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._engine: Engine | None = None
        self._control: Connection | None = None
        self._tables: TableSet | None = None
        self._snapshot_conn: Connection | None = None
        self._snapshot: SnapshotReader | None = None
        self._replication: ReplicationConnection | None = None
        self._stream: ChangeStream | None = None
        self._stream_start: WalOffset | None = None
        self._caught_up_lsn = 0
        self._done = False
        self._version = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        self.close()
        self._stop.clear()
        self._wake_r, self._wake_w = os.pipe()
        try:
            self._open(offsets)
        except BaseException:
            self.close()
            raise

    def _open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        self._engine = open_engine(self.settings)
        control = self._control = self._connect()
        facts = self._guard("reading server settings", partial(catalog.server_facts, control))
        self._require_server(facts)
        self._version = facts.version
        self._tables = self._guard(
            "reading the tables", partial(TableSet.load, control, self.settings, facts.database)
        )
        mode = self.settings.snapshot_mode
        if mode is not SnapshotMode.INITIAL_ONLY:
            self._guard("checking the publication", partial(self._ensure_publication, control))
        stored_map = offsets.get(partition_key(self.partition))
        stored = WalOffset.from_map(stored_map) if stored_map else None
        slot = self._read_slot(control, wait_for_release=mode is not SnapshotMode.INITIAL_ONLY)
        if slot is not None and mode is not SnapshotMode.INITIAL_ONLY:
            self._validate_slot(slot, facts.database)
        plan = plan_start(mode, stored, slot, self.settings.slot_name)
        if plan.note:
            log.info("source %s: %s", self.name, plan.note)
        if plan.drop_lost_slot:
            log.warning("source %s: dropping lost replication slot %s (snapshot_mode: "
                        "when_needed)", self.name, self.settings.slot_name)
            self._guard("dropping the lost slot",
                        partial(catalog.drop_slot, control, self.settings.slot_name))
        self._begin(plan)

    def _begin(self, plan: Plan) -> None:
        if plan.step is Step.DONE:
            self._done = True
            return
        context = self._snapshot_context()
        if plan.step is Step.SNAPSHOT_ONLY:
            self._snapshot, self._snapshot_conn = plain_snapshot(context, plan.progress)
            return
        if plan.step is Step.SNAPSHOT:
            self._snapshot, self._snapshot_conn = exported_snapshot(context)
        elif plan.step is Step.RESUME_SNAPSHOT:
            assert plan.start is not None
            self._snapshot, self._snapshot_conn = resumed_snapshot(
                context, plan.start, plan.progress
            )
        else:
            start = plan.start
            if plan.create_slot:
                lsn = self._guard("creating the replication slot", partial(
                    catalog.create_slot_sql, self._require_control(), self.settings.slot_name))
                log.info("source %s: created replication slot %s at %s", self.name,
                         self.settings.slot_name, lsn_text(lsn))
                start = WalOffset(lsn)
            assert start is not None
            self._stream_start = start
        self._caught_up_lsn = self._mark_start()
        if self._snapshot is None:
            self._start_stream()

    def poll(self) -> list[SourceRecord]:
        if self._stop.is_set() or self._done:
            return []
        if self._snapshot is not None:
            return self._guard("reading the snapshot", self._read_snapshot)
        if self._stream is None:
            return []
        return self._guard("streaming changes", self._stream.poll)

    def _read_snapshot(self) -> list[SourceRecord]:
        snapshot = self._snapshot
        assert snapshot is not None
        records = snapshot.poll(self.settings.max_batch)
        if snapshot.done:
            self._stream_start = snapshot.end_offset()
            self._snapshot = None
            self._close_snapshot_conn()
            log.info("source %s: snapshot complete", self.name)
            if self.settings.snapshot_mode is SnapshotMode.INITIAL_ONLY:
                self._done = True
            else:
                self._start_stream()
        return records

    def caught_up(self) -> bool:
        if self._done:
            return True
        if self._snapshot is not None or self._stream is None:
            return False
        return self._stream.caught_up

    def commit(self, offsets: Sequence[SourceOffset]) -> None:
        stream = self._stream
        if stream is None:
            # Snapshotting: the slot must stay where the snapshot was taken.
            return
        mine = partition_key(self.partition)
        for offset in offsets:
            if offset.partition_key == mine:
                position = WalOffset.from_map(offset.offset)
                if not position.snapshotting:
                    self._guard("confirming positions", partial(stream.commit, position))

    def stop(self) -> None:
        self._stop.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):  # closed by a close() racing with us
                os.write(self._wake_w, b"x")

    def compacts(self, topic: str) -> bool:
        # Change events are a log; heartbeats only matter by their latest value.
        return topic == self.settings.heartbeat_topic_name

    def close(self) -> None:
        if self._replication is not None:
            self._replication.close()
            self._replication = None
        if self._stream is not None:
            self._stream.close()
        self._stream = None
        self._snapshot = None
        self._close_snapshot_conn()
        if self._control is not None:
            with contextlib.suppress(DBAPIError):
                self._control.close()
            self._control = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None
        self._done = False

    def check(self) -> list[CheckResult]:
        return run_checks(self.settings)

    def status(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> ConnectorStatus:
        return slot_status(self.settings, offsets)

    def current_schemas(self) -> list[TopicSchemas]:
        """The schemas each table would be written with now (``liberate schema check``)."""
        engine = open_engine(self.settings)

        def read() -> list[TopicSchemas]:
            with engine.connect() as conn:
                facts = catalog.server_facts(conn)
                tables = TableSet.load(conn, self.settings, facts.database)
                found: list[TopicSchemas] = []
                for name in tables.names:
                    table = tables.captured(catalog.reflect_table(conn, *split_name(name)))
                    found.append(
                        TopicSchemas(name, table.topic, table.key_schema, table.value_schema)
                    )
                return found

        try:
            return self._guard("reading the tables", read)
        finally:
            engine.dispose()

    # -- the pieces of open --------------------------------------------------------------------

    @property
    def _url(self) -> URL:
        return database_url(self.settings)

    def _guard(self, doing: str, action: Callable[[], T]) -> T:
        return guarded(doing, self._url, action)

    def _connect(self) -> Connection:
        engine = self._engine
        assert engine is not None
        try:
            return engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except DBAPIError as exc:
            raise RetriableError(
                f"cannot connect to {mask_url(self._url)}: {reason(exc)}",
                hint="check that the server runs and the URL, user and password are right",
            ) from exc

    def _require_control(self) -> Connection:
        if self._control is None:
            raise FatalError("the source is not open")
        return self._control

    def _require_server(self, facts: catalog.ServerFacts) -> None:
        if facts.version < MIN_VERSION:
            raise PrerequisiteError(
                f"PostgreSQL {facts.version // 10000} has no pgoutput logical decoding",
                hint="logical replication with pgoutput needs PostgreSQL 10 or later",
            )
        if self.settings.snapshot_mode is SnapshotMode.INITIAL_ONLY:
            return
        if facts.wal_level != "logical":
            raise PrerequisiteError(
                f"wal_level is {facts.wal_level}, logical decoding needs wal_level = logical",
                hint="ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
            )
        if not (facts.superuser or facts.replication):
            raise PrerequisiteError(
                f"role {facts.user} may not use replication",
                hint=f"ALTER ROLE {facts.user} REPLICATION (and allow it in pg_hba.conf)",
            )

    def _ensure_publication(self, control: Connection) -> None:
        name = self.settings.publication_name
        assert self._tables is not None
        wanted = [split_name(n) for n in self.settings.tables]
        info = catalog.publication_info(control, name)
        if info is None:
            catalog.create_publication(control, name, wanted)
            log.info("source %s: created publication %s for %s", self.name, name,
                     ", ".join(self._tables.names))
            return
        missing = [f"{s}.{t}" for s, t in wanted
                   if not info.all_tables and (s, t) not in info.tables]
        if missing:
            raise PrerequisiteError(
                f"publication {name} does not publish {', '.join(missing)}",
                hint=f"ALTER PUBLICATION {name} ADD TABLE {', '.join(missing)} (a table added "
                "later is not snapshotted: give it a source of its own to read it whole)",
            )
        absent = {"insert", "update", "delete", "truncate"} - info.operations
        if absent:
            raise PrerequisiteError(
                f"publication {name} does not publish {', '.join(sorted(absent))}",
                hint=f"ALTER PUBLICATION {name} SET (publish = 'insert, update, delete, "
                "truncate')",
            )

    def _read_slot(self, control: Connection, *, wait_for_release: bool) -> catalog.SlotInfo | None:
        """The slot, waiting a bounded time for a walsender that is still letting it go.

        The server releases a slot when the walsender process of the last reader exits, a
        moment after that reader closed its connection (a restart, or a run shutting down).
        """
        read = partial(catalog.slot_info, control, self.settings.slot_name)
        slot = self._guard("reading the slot", read)
        deadline = time.monotonic() + SLOT_RELEASE_WAIT_S
        while (wait_for_release and slot is not None and slot.active
               and time.monotonic() < deadline and not self._stop.is_set()):
            self._stop.wait(0.2)
            slot = self._guard("reading the slot", read)
        return slot

    def _validate_slot(self, slot: catalog.SlotInfo, database: str) -> None:
        name = slot.name
        if slot.slot_type != "logical" or slot.plugin != "pgoutput":
            raise PrerequisiteError(
                f"replication slot {name} is a {slot.slot_type} slot for {slot.plugin}, "
                "not a logical pgoutput slot",
                hint="give this source a slot of its own (slot:)",
            )
        if slot.database != database:
            raise PrerequisiteError(
                f"replication slot {name} belongs to database {slot.database}, not {database}",
                hint="give this source a slot of its own (slot:)",
            )
        if slot.active:
            raise RetriableError(
                f"replication slot {name} is in use by process {slot.active_pid} "
                f"(still after {SLOT_RELEASE_WAIT_S:g} s)",
                hint="another consumer (or a run still shutting down) uses it; stop it, or "
                "give this source a slot of its own (slot:)",
            )
        if slot.wal_status == "unreserved":
            log.warning("source %s: replication slot %s is about to lose WAL it needs "
                        "(wal_status unreserved)", self.name, name)

    def _snapshot_context(self) -> SnapshotContext:
        assert self._engine is not None and self._tables is not None
        return SnapshotContext(self.settings, self._engine, self._url, self._tables,
                               self.partition, self._replication_connection)

    def _close_snapshot_conn(self) -> None:
        conn, self._snapshot_conn = self._snapshot_conn, None
        if conn is not None:
            with contextlib.suppress(DBAPIError):
                conn.rollback()
                conn.close()

    # -- streaming -----------------------------------------------------------------------------

    def _replication_connection(self) -> ReplicationConnection:
        url = self._url
        return self._guard("opening a replication connection", lambda: ReplicationConnection(
            replication_conninfo(url), where=mask_url(url)))

    @property
    def _messages_supported(self) -> bool:
        return self._version >= MESSAGES_VERSION

    def _mark_start(self) -> int:
        """Where ``caught_up`` is reached: a start marker message (or the current WAL end)."""
        control = self._require_control()
        if self._messages_supported:
            try:
                return catalog.emit_message(
                    control, OWN_MESSAGE_PREFIX + "start", self.settings.slot_name,
                    transactional=False,
                )
            except DBAPIError as exc:
                log.warning("source %s: cannot write logical decoding messages (%s); "
                            "heartbeats are off", self.name, reason(exc))
                self._version = min(self._version, MESSAGES_VERSION - 1)
        return self._guard("reading the WAL position", partial(catalog.current_wal_lsn, control))

    def _heartbeat(self) -> bool:
        control = self._require_control()
        try:
            catalog.emit_message(control, OWN_MESSAGE_PREFIX + "heartbeat",
                                 self.settings.slot_name, transactional=False)
            return True
        except DBAPIError as exc:
            if isinstance(exc.orig, psycopg.errors.InsufficientPrivilege):
                log.warning("source %s: cannot write heartbeat messages: %s", self.name,
                            reason(exc))
                return False
            raise RetriableError(f"writing a heartbeat: {reason(exc)}") from exc

    def _start_stream(self) -> None:
        start = self._stream_start
        assert start is not None and self._wake_r is not None and self._tables is not None
        replication = self._replication = self._replication_connection()
        options = {
            "proto_version": "1",
            "publication_names": sql.Identifier(self.settings.publication_name).as_string(None),
        }
        if self._messages_supported:
            options["messages"] = "true"
        if self.settings.streaming and self._version >= STREAMING_VERSION:
            options["proto_version"] = "2"
            options["streaming"] = "on"
        self._guard("starting replication",
                    partial(replication.start, self.settings.slot_name, start.lsn, options))
        log.info("source %s: streaming from %s", self.name, lsn_text(start.lsn))
        control = self._require_control()
        watermarks = None
        if start.watermarks:
            watermarks = self._tables.watermark_filter(control, start.watermarks)
        heartbeat = self._heartbeat if (
            self._messages_supported and self.settings.heartbeat_interval.total_seconds() > 0
        ) else None
        self._stream = ChangeStream(
            self.settings,
            replication,
            start=start,
            relation_builder=self._relation_state,
            watermarks=watermarks,
            heartbeat=heartbeat,
            caught_up_lsn=self._caught_up_lsn,
            database=self._tables.database,
            stop=self._stop,
            wake_fd=self._wake_r,
        )

    def _relation_state(self, relation: Relation) -> RelationState:
        tables = self._tables
        assert tables is not None
        name = f"{relation.namespace}.{relation.name}"
        state = self._guard(f"reading the definition of {name}",
                            partial(tables.relation_state, self._require_control(), relation))
        if state.table is not None:
            log.info("source %s: table %s has %d columns (topic %s)", self.name, name,
                     len(relation.columns), state.table.topic)
        return state
