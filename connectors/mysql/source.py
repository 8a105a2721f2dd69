"""``MySqlSource``: the tables of a MySQL or MariaDB server as Debezium change events.

Phases: an initial snapshot (``_initial``) unless told otherwise, then the binlog stream
(``_stream`` over ``_replica``), resumed from the stored offset (``offsets``). ``poll`` returns
one snapshot chunk, or the binlog events that arrived, up to ``batch_size`` records.

Connection loss while streaming is retried here, from the offset of the last record
``poll`` returned (durable by the time ``poll`` runs again, DESIGN §2), never from where the
run started; after ``RECONNECT_ATTEMPTS`` failures the error goes to the runtime, which
reopens the source from the stored offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from functools import partial
from typing import ClassVar

import pymysql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from connectors.mysql._catalog import Catalog, read_column_defaults, table_names
from connectors.mysql._checks import run_checks, source_status
from connectors.mysql._initial import InitialSnapshot
from connectors.mysql._replica import (
    BinlogConnection,
    DumpRequest,
    PurgedPositionError,
    connect_kwargs,
)
from connectors.mysql._server import (
    ServerInfo,
    binlog_end,
    collation_encodings,
    require_settings,
    server_info,
)
from connectors.mysql._stream import ChangeStream
from connectors.mysql._window import SnapshotWindow
from connectors.mysql.config import MySqlSourceConfig
from connectors.mysql.offsets import BinlogPosition, SnapshotProgress
from liberate.config.base import SourceConfig
from liberate.connector import CheckResult, ConnectorStatus, Source
from liberate.database import create_engine, database_url, mask_url
from liberate.errors import FatalError, LiberateError, PrerequisiteError, RetriableError
from liberate.records import Primitive, SourceRecord
from liberate.schema.avro import AvroSchema
from liberate.schema.tables import TopicSchemas
from liberate.streams.base import partition_key

log = logging.getLogger(__name__)

RECONNECT_ATTEMPTS = 5
#: how long an empty poll waits for binlog data (stop() is honoured within this)
IDLE_READ_S = 0.2
#: once a poll holds records, how long it waits for more before returning them
BUSY_READ_S = 0.01
#: a poll returns what it has after this long, even below batch_size
POLL_MAX_S = 0.5

HEARTBEAT_KEY = AvroSchema({
    "type": "record", "name": "ServerNameKey", "namespace": "io.debezium.connector.common",
    "fields": [{"name": "serverName", "type": "string"}],
})
HEARTBEAT_VALUE = AvroSchema({
    "type": "record", "name": "Heartbeat", "namespace": "io.debezium.connector.common",
    "fields": [{"name": "ts_ms", "type": "long"}],
})


class MySqlSource(Source):
    """Binlog change data capture (``connector: mysql``).

    Threading: ``poll`` from one thread; ``stop`` from any thread makes ``poll`` return within
    ``IDLE_READ_S``.
    """

    config_model: ClassVar[type[SourceConfig]] = MySqlSourceConfig

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, MySqlSourceConfig):
            raise TypeError(f"MySqlSource needs a MySqlSourceConfig, not {type(config).__name__}")
        super().__init__(config)
        self.settings: MySqlSourceConfig = config
        self.partition: dict[str, Primitive] = {"server": config.name}
        self._stop = threading.Event()
        self._engine: Engine | None = None
        self._info: ServerInfo | None = None
        self._catalog: Catalog | None = None
        self._snapshot: InitialSnapshot | None = None
        self._stream: ChangeStream | None = None
        self._binlog: BinlogConnection | None = None
        self._returned: BinlogPosition | None = None
        self._window: SnapshotWindow | None = None
        self._target: BinlogPosition | None = None
        self._finished = False

    # -- lifecycle --------------------------------------------------------------------------

    def open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        self._stop.clear()
        self._engine = create_engine(self.settings)
        url = database_url(self.settings)
        try:
            with self._engine.connect() as conn:
                info = server_info(conn)
                require_settings(info)
                if self.settings.position_mode == "gtid" and not info.gtid_enabled:
                    raise PrerequisiteError(
                        "position_mode: gtid needs gtid_mode=ON on MySQL",
                        hint="turn GTIDs on (gtid_mode=ON, enforce_gtid_consistency=ON), or set "
                        "position_mode: file",
                    )
                catalog = Catalog(
                    self.settings, table_names(self.settings, url.database),
                    collation_encodings(conn),
                    defaults_reader=partial(read_column_defaults, self._engine),
                )
                catalog.reflect(conn)
                self._target = binlog_end(conn, info)
        except DBAPIError as exc:
            raise _database_error(exc, f"opening {mask_url(url)}") from exc
        self._info, self._catalog = info, catalog
        self._begin(offsets.get(partition_key(self.partition)))

    def _begin(self, stored: Mapping[str, Primitive] | None) -> None:
        mode = self.settings.snapshot_mode
        if stored is None:
            if mode == "never":
                assert self._target is not None
                self._start_stream(self._target, None)
            else:
                self._start_snapshot(None)
            return
        try:
            position = BinlogPosition.from_map(stored)
            text = stored.get("snapshot")
            progress = SnapshotProgress.from_text(text) if isinstance(text, str) else None
        except (ValueError, KeyError, TypeError) as exc:
            raise PrerequisiteError(
                f"the stored offset of source {self.name} cannot be read: {exc}",
                hint="delete this source's offsets to start again with a snapshot",
            ) from exc
        if progress is not None and not progress.done:
            self._start_snapshot(progress)
        elif mode == "initial_only":
            self._finished = True
        else:
            self._start_stream(position, progress)

    def _start_snapshot(self, progress: SnapshotProgress | None) -> None:
        assert self._engine is not None and self._info is not None and self._catalog is not None
        snapshot = InitialSnapshot(
            self._engine, self._info, list(self._catalog.snapshot_tables.values()), progress,
            chunk_size=self.settings.snapshot_chunk_size, partition=self.partition,
        )
        try:
            snapshot.begin()
        except DBAPIError as exc:
            snapshot.close()
            raise _database_error(exc, "starting the snapshot") from exc
        self._snapshot = snapshot

    def _start_stream(self, position: BinlogPosition, progress: SnapshotProgress | None) -> None:
        assert self._catalog is not None
        window = None
        if progress is not None and progress.resumed:
            keys = {
                t.label: tuple(t.schema.fields[t.schema.columns.index(k)]
                               for k in t.schema.key_columns)
                for t in self._catalog.snapshot_tables.values()
            }
            window = SnapshotWindow(progress, keys)
            if position.coordinates >= window.end:
                window = None
        self._window = window
        self._returned = position
        self._connect(position)

    def _connect(self, position: BinlogPosition) -> None:
        """(Re)start the binlog stream at ``position``, retrying a lost connection."""
        assert self._catalog is not None and self._info is not None
        self._close_binlog()
        heartbeat_topic = self.settings.heartbeat_topic_name
        self._stream = ChangeStream(
            flavor=self._info.flavor,
            start=position,
            catalog=self._catalog,
            partition=self.partition,
            tombstones=self.settings.tombstones_on_delete,
            window=self._window,
            heartbeat=self._heartbeat_record if heartbeat_topic else None,
            heartbeat_interval_s=self.settings.heartbeat_interval.total_seconds(),
        )
        use_gtid = self.settings.position_mode == "gtid" and position.gtids is not None
        request = DumpRequest(
            server_id=self.settings.replica_server_id,
            file=position.file,
            pos=position.pos,
            gtids=position.gtids if use_gtid else None,
            report_host=f"liberate:{self.name}",
            heartbeat_s=min(self.settings.heartbeat_interval.total_seconds(), 30.0),
        )
        kwargs = connect_kwargs(database_url(self.settings))
        for attempt in range(RECONNECT_ATTEMPTS):
            try:
                self._binlog = BinlogConnection.open(lambda: pymysql.connect(**kwargs), request)
                return
            except RetriableError as exc:
                if attempt + 1 == RECONNECT_ATTEMPTS or self._stop.is_set():
                    raise
                log.warning("source %s: %s; retrying", self.name, exc)
                self._stop.wait(0.5 * 2**attempt)

    def poll(self) -> list[SourceRecord]:
        if self._stop.is_set() or self._finished:
            return []
        if self._snapshot is not None:
            return self._poll_snapshot()
        if self._stream is None or self._binlog is None:
            raise FatalError(f"source {self.name} polled before open")
        try:
            return self._poll_stream()
        except PurgedPositionError:
            if self.settings.snapshot_mode != "when_needed":
                raise
            log.warning("source %s: stored binlog position purged; taking a new snapshot "
                        "(snapshot_mode: when_needed)", self.name)
            self._close_binlog()
            self._stream = None
            self._start_snapshot(None)
            return []

    def _poll_snapshot(self) -> list[SourceRecord]:
        snapshot = self._snapshot
        assert snapshot is not None
        try:
            records = snapshot.poll(time.time_ns() // 1_000_000)
        except DBAPIError as exc:
            raise _database_error(exc, "reading the snapshot") from exc
        if records:
            return records
        progress = snapshot.progress
        assert progress is not None
        snapshot.close()
        self._snapshot = None
        if self.settings.snapshot_mode == "initial_only":
            self._finished = True
            return []
        self._start_stream(progress.epochs[0], progress)
        return []

    def _poll_stream(self) -> list[SourceRecord]:
        stream, binlog = self._stream, self._binlog
        assert stream is not None and binlog is not None
        out: list[SourceRecord] = []
        now_ms = time.time_ns() // 1_000_000
        deadline = time.monotonic() + POLL_MAX_S
        batch = self.settings.batch_size
        while not self._stop.is_set():
            try:
                events = binlog.events(BUSY_READ_S if out else IDLE_READ_S)
            except RetriableError as exc:
                if self._stop.is_set():
                    return []
                assert self._returned is not None
                log.warning("source %s: %s; reconnecting from %s:%d", self.name, exc,
                            self._returned.file, self._returned.pos)
                self._connect(self._returned)
                return []
            if not events:
                stream.heartbeat_if_due(out)
                break
            stream.feed(events, out, now_ms)
            if len(out) >= batch or time.monotonic() > deadline:
                break
        if out:
            self._returned = BinlogPosition.from_map(out[-1].offset)
        return out

    def _heartbeat_record(self, offset: dict[str, Primitive]) -> SourceRecord:
        topic = self.settings.heartbeat_topic_name
        assert topic is not None
        return SourceRecord(
            topic, {"serverName": self.name}, {"ts_ms": time.time_ns() // 1_000_000},
            HEARTBEAT_KEY, HEARTBEAT_VALUE, self.partition, offset,
        )

    @property
    def position(self) -> dict[str, Primitive] | None:
        """The offset after the last record ``poll`` returned, or where the binlog stream
        started; None before streaming. A wrapping source (the outbox relay) stores it so that
        a restart does not begin again at a newer binlog end."""
        return None if self._returned is None else self._returned.to_map()

    def caught_up(self) -> bool:
        if self._finished:
            return True
        if self._snapshot is not None or self._stream is None:
            return False
        target = self._target
        return self._stream.caught_up_with(target, target.gtids if target else None)

    def stop(self) -> None:
        self._stop.set()

    def compacts(self, topic: str) -> bool:
        return topic == self.settings.heartbeat_topic_name

    def close(self) -> None:
        self._close_binlog()
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is not None:
            snapshot.close()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()
        self._stream = None

    def _close_binlog(self) -> None:
        binlog, self._binlog = self._binlog, None
        if binlog is not None:
            binlog.close()

    # -- check and status -----------------------------------------------------------------

    def current_schemas(self) -> list[TopicSchemas]:
        """The schemas each table would be written with now (``liberate schema check``)."""
        engine = create_engine(self.settings)
        url = database_url(self.settings)
        try:
            with engine.connect() as conn:
                catalog = Catalog(
                    self.settings, table_names(self.settings, url.database),
                    collation_encodings(conn),
                )
                return [
                    TopicSchemas(t.label, t.topic, t.key_schema, t.value_schema)
                    for t in catalog.reflect(conn)
                ]
        except DBAPIError as exc:
            raise _database_error(exc, f"reading the tables of {mask_url(url)}") from exc
        finally:
            engine.dispose()

    def check(self) -> list[CheckResult]:
        return run_checks(self.settings)

    def status(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> ConnectorStatus:
        return source_status(self.settings, offsets.get(partition_key(self.partition)))


def _database_error(exc: DBAPIError, doing: str) -> LiberateError:
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    message = f"{doing} failed: {exc.orig}"
    if code in (1044, 1045, 1142, 1227):
        return PrerequisiteError(
            message, hint="GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO the user"
        )
    if isinstance(exc.orig, pymysql.err.OperationalError):
        return RetriableError(message)
    return FatalError(message, hint="see the database's error above")
