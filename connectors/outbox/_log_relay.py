"""``LogRelay``: the log-based outbox relay (``connector: outbox``, ``mode: log``).

It is a PostgreSQL or MySQL/MariaDB CDC source of one table, the outbox, whose change events
go through the ``EventRouter`` instead of out: an insert becomes the routed event (so a row
deleted in its own transaction, ``delete_after_insert``, is relayed from its insert), an update
follows ``invalid_op_behavior``, a delete is dropped. On PostgreSQL the ``m`` events of
``pg_logical_emit_message`` with the relay's prefix are routed too (``publish_message``).

Positions are the CDC source's own, so resuming, exactly-once on the embedded backend and WAL /
binlog safety are too. A change that makes no record gives its offset to the record before it
in the same poll (that record is then stored as "after the dropped change"); a poll that keeps
nothing hands its last offset on as a heartbeat record, so a run of deletes or updates still
lets the slot move on. Heartbeats of the CDC source pass through unchanged.

On MySQL a first start (no stored offset) stores its binlog start position at once, as a
heartbeat: a relay restarted before it relayed anything must not begin again at a newer binlog
end and miss the events written meanwhile (on PostgreSQL the slot keeps that position).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from connectors.mysql import MySqlSource, MySqlSourceConfig
from connectors.outbox._routing import (
    EventRouter,
    Routing,
    header_text,
    message_row,
    payload_schemas,
)
from connectors.outbox.config import OutboxSourceConfig
from connectors.postgres import PostgresSource
from connectors.postgres._messages import heartbeat_record
from liberate.config.base import SourceConfig
from liberate.connector import CheckResult, ConnectorStatus, Source
from liberate.database import source_engine
from liberate.errors import FatalError, LiberateError
from liberate.records import Primitive, SourceRecord
from liberate.schema.avro import AvroSchema
from liberate.schema.types import avro_name, unwrap_nullable
from liberate.streams.base import SourceOffset, partition_key

log = logging.getLogger(__name__)

#: the Avro type of a message's timestamp column (messages carry none: the commit time is used)
_MESSAGE_TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}


class LogRelay(Source):
    """The outbox relay over the postgres / mysql CDC source of the outbox table.

    Threading: as the CDC source's: ``poll`` and ``commit`` from the runtime thread, ``stop``
    from any thread.
    """

    config_model: ClassVar[type[SourceConfig]] = OutboxSourceConfig

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, OutboxSourceConfig) or config.mode != "log":
            raise TypeError("LogRelay needs an OutboxSourceConfig with mode: log")
        super().__init__(config)
        self.settings: OutboxSourceConfig = config
        self.cdc_settings = config.cdc_config()
        self.cdc: PostgresSource | MySqlSource = (
            MySqlSource(self.cdc_settings) if isinstance(self.cdc_settings, MySqlSourceConfig)
            else PostgresSource(self.cdc_settings)
        )
        self.routing = Routing.of(config)
        self._payloads = payload_schemas(config)
        self._heartbeat_topic = self.cdc_settings.heartbeat_topic_name
        # value schema of the table's change events -> its router (a new schema after DDL)
        self._routers: dict[int, tuple[AvroSchema, EventRouter]] = {}
        self._message_router: EventRouter | None = None
        self._store_start = False

    # -- lifecycle: the CDC source's ---------------------------------------------------------

    def open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        self._routers.clear()
        self._store_start = partition_key(self.cdc.partition) not in offsets
        self.cdc.open(offsets)

    def poll(self) -> list[SourceRecord]:
        changes = self.cdc.poll()
        records: list[SourceRecord] = []
        for change in changes:
            routed = self._route(change)
            if routed is not None:
                records.append(routed)
            elif records:
                # Nothing of this change goes out: once the record before it is durable, so is
                # the position after it.
                records[-1].offset = change.offset
        topic = self._heartbeat_topic
        if records or topic is None:
            self._store_start = self._store_start and not records
            return records
        if changes:
            self._store_start = False
            return [heartbeat_record(topic, self.name, self.cdc.partition, changes[-1].offset)]
        if self._store_start and isinstance(self.cdc, MySqlSource):
            position = self.cdc.position
            if position is not None:
                self._store_start = False
                return [heartbeat_record(topic, self.name, self.cdc.partition, position)]
        return []

    def caught_up(self) -> bool:
        return self.cdc.caught_up()

    def commit(self, offsets: Sequence[SourceOffset]) -> None:
        self.cdc.commit(offsets)

    def stop(self) -> None:
        self.cdc.stop()

    def compacts(self, topic: str) -> bool:
        return self.cdc.compacts(topic)

    def close(self) -> None:
        self.cdc.close()
        self._routers.clear()

    def check(self) -> list[CheckResult]:
        """The CDC connector's prerequisites (wal_level, binlog format, privileges, slot,
        the table), then the outbox columns."""
        results = self.cdc.check()
        if all(result.ok for result in results):
            results.append(self._check_columns())
        return results

    def status(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> ConnectorStatus:
        return self.cdc.status(offsets)

    # -- routing -------------------------------------------------------------------------------

    def _route(self, change: SourceRecord) -> SourceRecord | None:
        if change.topic == self._heartbeat_topic:
            return change
        value = change.value
        if value is None:
            return None  # a tombstone
        op = value.get("op")
        if op == "m":
            return self._route_message(change, value)
        if not isinstance(op, str) or change.value_schema is None:
            return None
        router, columns = self._router_for(change.value_schema)
        image = value.get("before") if op == "d" else value.get("after")
        row = None if image is None else {column: image.get(field)
                                          for column, field in columns.items()}
        routed = router.route_change(op, row, partition=change.partition, offset=change.offset)
        if routed is not None and routed.timestamp_ms is None:
            routed.timestamp_ms = change.timestamp_ms
        return routed

    def _route_message(
        self, change: SourceRecord, value: Mapping[str, Any]
    ) -> SourceRecord | None:
        message = value.get("message")
        if not isinstance(message, Mapping):
            return None
        r = self.routing
        row = message_row(message.get("content") or b"",
                          [c for c in (r.payload_column, r.headers_column) if c is not None])
        for placed in r.placements:
            if placed.placement == "envelope" and row.get(placed.column) is not None:
                row[placed.column] = header_text(row[placed.column])
        routed = self._messages().route(row, partition=change.partition, offset=change.offset)
        if routed.timestamp_ms is None:
            routed.timestamp_ms = change.timestamp_ms
        return routed

    def _messages(self) -> EventRouter:
        # Messages carry JSON, not typed columns: envelope-placed values are their text.
        if self._message_router is None:
            types: dict[str, Any] = {c: "string" for c in self.routing.typed_columns}
            if self.routing.timestamp_column is not None:
                types[self.routing.timestamp_column] = _MESSAGE_TIMESTAMP
            self._message_router = EventRouter(self.routing, types, self._payloads)
        return self._message_router

    def _router_for(self, value_schema: AvroSchema) -> tuple[EventRouter, dict[str, str]]:
        cached = self._routers.get(id(value_schema))
        if cached is not None and cached[0] is value_schema:
            router = cached[1]
        else:
            router = EventRouter(self.routing, self._field_types(value_schema), self._payloads)
            self._routers[id(value_schema)] = (value_schema, router)
        return router, {c: avro_name(c) for c in self.routing.columns}

    def _field_types(self, value_schema: AvroSchema) -> dict[str, Any]:
        row_type: Any = None
        for field in value_schema.fields:
            # Debezium's envelope defines the row record at "before"; "after" names it.
            candidate = unwrap_nullable(field["type"])[0]
            if field["name"] in ("before", "after") and isinstance(candidate, dict):
                row_type = candidate
        fields = row_type.get("fields", []) if isinstance(row_type, dict) else []
        types = {f["name"]: f["type"] for f in fields}
        missing = [c for c in self.routing.columns if avro_name(c) not in types]
        if missing:
            raise FatalError(
                f"the outbox table {self.settings.table} has no column(s) {', '.join(missing)}",
                hint="name the table's columns under columns: (headers: null and timestamp: "
                "null for a table without them)",
            )
        return {c: types[avro_name(c)] for c in self.routing.typed_columns}

    def _check_columns(self) -> CheckResult:
        name = f"outbox columns of {self.settings.table}"
        schema, table = self.settings.table_name
        try:
            engine = source_engine(self.settings)
        except LiberateError as exc:
            return CheckResult(name, False, exc.message, exc.hint)
        try:
            with engine.connect() as conn:
                present = {c["name"] for c in sa.inspect(conn).get_columns(table, schema)}
        except (DBAPIError, sa.exc.NoSuchTableError) as exc:
            return CheckResult(name, False, f"cannot read the table's columns: {exc}")
        finally:
            engine.dispose()
        missing = [c for c in self.routing.columns if c not in present]
        if missing:
            return CheckResult(
                name, False, f"no column(s) {', '.join(missing)}",
                "name the table's columns under columns: (headers: null and timestamp: null "
                "for a table without them)",
            )
        return CheckResult(name, True, f"columns {', '.join(self.routing.columns)}")
