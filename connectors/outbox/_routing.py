"""The outbox event router: one outbox row -> one record, exactly as Debezium's EventRouter.

Pure (no I/O, no clock; the same row always gives the same record), so the polling relay and
the log-based relay route alike: polling hands it the rows it selects, a log-based relay the
``after`` image of a captured insert (``route_change``) or the content of a
``pg_logical_emit_message`` (``message_row``).

- topic: the ``topic`` template over the aggregate type (``outbox.event.{aggregate_type}``);
- key: a record of the aggregate id (``{"aggregateid": "42"}``), so events of one aggregate
  share a key, hence a partition, and keep their order;
- value: a record whose ``payload`` field is the payload as JSON text (Debezium's
  ``io.debezium.data.Json`` string), plus any envelope-placed columns; with
  ``value_format: avro`` the payload itself, under the schema of its event type
  (``_payloads``); a null payload is a tombstone when ``tombstone_on_empty_payload`` is set;
- headers: ``id`` (the event id) first, then the header-placed columns (``eventType``), then
  the entries of the headers column;
- timestamp: the timestamp column, when one is configured.

An Avro payload that does not fit its schema is a ``RecordError``; with a dead-letter topic it
becomes a record there instead (the payload as JSON text, the error in Kafka Connect's
``__connect.errors.*`` headers), and the relay goes on.

Values of additional and timestamp columns arrive Avro-ready (what ``liberate.schema.types``
converters return, or the values of a CDC row record), with their Avro types given once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.outbox._payloads import PayloadSchemas
from connectors.outbox.config import (
    ID_HEADER,
    PAYLOAD_FIELD,
    AdditionalField,
    InvalidOpBehavior,
    OutboxSourceConfig,
)
from liberate.errors import FatalError, RecordError
from liberate.records import Headers, Primitive, SourceRecord
from liberate.schema.avro import AvroSchema
from liberate.schema.types import JSON_NAME, avro_name, unwrap_nullable
from liberate.streams.embedded import validate_topic_name

log = logging.getLogger(__name__)

_JSON_STRING = {"type": "string", "connect.name": JSON_NAME}
#: dead-letter headers, Kafka Connect's names (as the SQL sink's dead letters)
ERROR_CLASS_HEADER = "__connect.errors.exception.class.name"
ERROR_MESSAGE_HEADER = "__connect.errors.exception.message"
CONNECTOR_HEADER = "__connect.errors.connector.name"


@dataclass(frozen=True, slots=True)
class Routing:
    """What the router needs of the configuration (a log-based relay builds the same)."""

    source: str
    topic: str
    id_column: str
    aggregate_type_column: str
    aggregate_id_column: str
    type_column: str
    payload_column: str
    headers_column: str | None
    timestamp_column: str | None
    placements: tuple[AdditionalField, ...]
    tombstone_on_empty_payload: bool
    invalid_op_behavior: InvalidOpBehavior
    dead_letter_topic: str | None = None

    @classmethod
    def of(cls, config: OutboxSourceConfig) -> Routing:
        c = config.columns
        return cls(
            source=config.name,
            topic=config.topic,
            id_column=c.id,
            aggregate_type_column=c.aggregate_type,
            aggregate_id_column=c.aggregate_id,
            type_column=c.type,
            payload_column=c.payload,
            headers_column=c.headers,
            timestamp_column=c.timestamp,
            placements=config.placements,
            tombstone_on_empty_payload=config.tombstone_on_empty_payload,
            invalid_op_behavior=config.invalid_op_behavior,
            dead_letter_topic=config.dead_letter_topic,
        )

    @property
    def columns(self) -> list[str]:
        """Every column the router reads, each once, in a stable order."""
        names = [self.id_column, self.aggregate_type_column, self.aggregate_id_column,
                 self.type_column, self.payload_column, self.headers_column, self.timestamp_column,
                 *(p.column for p in self.placements)]
        return list(dict.fromkeys(n for n in names if n is not None))

    @property
    def typed_columns(self) -> list[str]:
        """Columns whose Avro type the router needs: envelope-placed ones and the timestamp."""
        names = [p.column for p in self.placements if p.placement == "envelope"]
        if self.timestamp_column is not None:
            names.append(self.timestamp_column)
        return list(dict.fromkeys(names))


class EventRouter:
    """Routes outbox rows to records. ``field_types`` maps each of ``routing.typed_columns``
    to its Avro type (nullable or not); schemas are made once per topic. ``payloads``: the
    schemas of ``value_format: avro`` (None: JSON values)."""

    def __init__(
        self, routing: Routing, field_types: Mapping[str, Any],
        payloads: PayloadSchemas | None = None,
    ) -> None:
        missing = [c for c in routing.typed_columns if c not in field_types]
        if missing:
            raise FatalError(
                f"the outbox router has no type for column(s) {', '.join(missing)}",
                hint="this is a bug in the relay: report it with the table DDL",
            )
        self.routing = routing
        self.payloads = payloads
        self._types = {c: unwrap_nullable(field_types[c])[0] for c in routing.typed_columns}
        self._envelope = [p for p in routing.placements if p.placement == "envelope"]
        self._header_fields = [p for p in routing.placements if p.placement == "header"]
        self._key_field = avro_name(routing.aggregate_id_column)
        self._schemas: dict[str, tuple[AvroSchema, AvroSchema]] = {}
        self._topics: dict[str, str] = {}

    def route(
        self,
        row: Mapping[str, Any],
        *,
        partition: Mapping[str, Primitive],
        offset: Mapping[str, Primitive],
    ) -> SourceRecord:
        """The record of one inserted outbox row (column name -> value)."""
        r = self.routing
        event_id = _required_text(row, r.id_column, "the event id", None)
        topic = self._topic(_required_text(row, r.aggregate_type_column, "the aggregate type",
                                           event_id), event_id)
        payload = _json_text(row.get(r.payload_column), event_id, r.payload_column)
        aggregate_id = _required_text(row, r.aggregate_id_column, "the aggregate id", event_id)
        headers = self._headers(row, event_id)
        value: dict[str, Any] | None
        if payload is None and r.tombstone_on_empty_payload:
            value = None
            value_schema = self._schemas_of(topic)[1]
        elif self.payloads is not None:
            event_type = _text(row.get(r.type_column))
            try:
                value, value_schema = self.payloads.value_of(event_id, event_type, payload)
            except RecordError as exc:
                if r.dead_letter_topic is None:
                    raise
                log.warning("%s; sent to %s", exc.message, r.dead_letter_topic)
                topic, value = r.dead_letter_topic, self._json_value(row, payload)
                value_schema = self._schemas_of(topic)[1]
                headers = (*headers, *_error_headers(exc, r.source))
        else:
            value, value_schema = self._json_value(row, payload), self._schemas_of(topic)[1]
        return SourceRecord(
            topic=topic,
            key={self._key_field: aggregate_id},
            value=value,
            key_schema=self._schemas_of(topic)[0],
            value_schema=value_schema,
            partition=partition,
            offset=offset,
            headers=headers,
            timestamp_ms=self._timestamp_ms(row, event_id),
        )

    def _json_value(self, row: Mapping[str, Any], payload: str | None) -> dict[str, Any]:
        value: dict[str, Any] = {PAYLOAD_FIELD: payload}
        for placed in self._envelope:
            value[avro_name(placed.alias)] = row.get(placed.column)
        return value

    def route_change(
        self,
        op: str,
        row: Mapping[str, Any] | None,
        *,
        partition: Mapping[str, Primitive],
        offset: Mapping[str, Primitive],
    ) -> SourceRecord | None:
        """A captured change of the outbox table as Debezium treats it (log mode).

        Inserts (``c``) and snapshot reads (``r``) are routed; deletes (``d``) are dropped
        silently (``delete_after_insert`` makes one per event); updates (``u``) follow
        ``invalid_op_behavior``; truncates and other ops are dropped.
        """
        if op in ("c", "r") and row is not None:
            return self.route(row, partition=partition, offset=offset)
        if op == "u":
            self._invalid_update(row)
        return None

    def _invalid_update(self, row: Mapping[str, Any] | None) -> None:
        behavior = self.routing.invalid_op_behavior
        event_id = row.get(self.routing.id_column) if row is not None else None
        message = (
            f"an UPDATE of outbox event {event_id} was skipped: the outbox table is a queue, "
            "only inserts are events"
        )
        if behavior == "warn":
            log.warning(message)
        elif behavior == "error":
            log.error(message)
        elif behavior == "fatal":
            raise FatalError(
                message.replace("was skipped", "stops the relay"),
                hint="never update outbox rows (publish a new event instead), or set "
                "invalid_op_behavior: warn",
            )

    # -- parts -----------------------------------------------------------------------------

    def _topic(self, aggregate_type: str, event_id: str) -> str:
        topic = self._topics.get(aggregate_type)
        if topic is None:
            topic = self.routing.topic.format(aggregate_type=aggregate_type,
                                              source=self.routing.source)
            try:
                validate_topic_name(topic)
            except FatalError as exc:
                raise RecordError(
                    f"outbox event {event_id} routes to {topic!r}, which is not a valid topic "
                    f"name",
                    origin=f"outbox event {event_id}",
                    hint="aggregate types become topic names: use letters, digits, '.', '_' "
                    "and '-'; fix or delete the row (the relay stops here to keep the order)",
                ) from exc
            self._topics[aggregate_type] = topic
        return topic

    def _schemas_of(self, topic: str) -> tuple[AvroSchema, AvroSchema]:
        cached = self._schemas.get(topic)
        if cached is None:
            namespace = ".".join(avro_name(part) for part in topic.split("."))
            key = AvroSchema({
                "type": "record", "name": "Key", "namespace": namespace,
                "fields": [{"name": self._key_field, "type": "string"}],
            })
            fields: list[dict[str, Any]] = [
                {"name": PAYLOAD_FIELD, "type": ["null", dict(_JSON_STRING)], "default": None}
            ]
            for placed in self._envelope:
                fields.append({"name": avro_name(placed.alias),
                               "type": ["null", self._types[placed.column]], "default": None})
            value = AvroSchema(
                {"type": "record", "name": "Value", "namespace": namespace, "fields": fields}
            )
            cached = self._schemas[topic] = (key, value)
        return cached

    def _headers(self, row: Mapping[str, Any], event_id: str) -> Headers:
        headers: list[tuple[str, bytes]] = [(ID_HEADER, event_id.encode())]
        for placed in self._header_fields:
            value = row.get(placed.column)
            if value is not None:
                headers.append((placed.alias, header_text(value).encode()))
        column = self.routing.headers_column
        if column is not None:
            headers.extend(_custom_headers(row.get(column), event_id, column))
        return tuple(headers)

    def _timestamp_ms(self, row: Mapping[str, Any], event_id: str) -> int | None:
        column = self.routing.timestamp_column
        if column is None:
            return None
        value = row.get(column)
        if value is None:
            return None
        column_type = self._types[column]
        logical = column_type.get("logicalType") if isinstance(column_type, dict) else None
        try:
            return timestamp_ms(value, logical)
        except (TypeError, ValueError) as exc:
            raise RecordError(
                f"outbox event {event_id}: column {column} holds {value!r}, not a timestamp",
                origin=f"outbox event {event_id}",
                hint="set columns.timestamp to a timestamp column, or to null",
            ) from exc


# -- pure helpers, shared with the log-based relay ----------------------------------------------


def payload_schemas(config: OutboxSourceConfig) -> PayloadSchemas | None:
    """The per-type value schemas of ``config`` (None with ``value_format: json``)."""
    if config.value_format != "avro":
        return None
    try:
        return PayloadSchemas(config.value_schemas())
    except ValueError as exc:  # a schema file changed since the run file was validated
        raise FatalError(f"cannot load the Avro schemas of the outbox relay: {exc}",
                         hint="fix the file named in schemas:") from exc


def timestamp_ms(value: Any, logical_type: str | None) -> int:
    """Epoch milliseconds of a timestamp column value (Avro-ready or as a driver returns it).

    Naive values are UTC (the type contract's rule for instants read from a UTC session).
    """
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, str):
        return timestamp_ms(dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00")),
                            None)
    if isinstance(value, int) and not isinstance(value, bool):
        if logical_type in ("timestamp-micros", "local-timestamp-micros"):
            return value // 1000
        return value
    raise TypeError(f"{type(value).__name__} is not a timestamp")


def header_text(value: Any) -> str:
    """The text of a header-placed column value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    if isinstance(value, int | float | Decimal):
        return str(value)
    return str(value)


def message_row(content: str | bytes, columns: Sequence[str]) -> dict[str, Any]:
    """The row of a ``pg_logical_emit_message`` outbox message (``outbox.message_content``).

    ``columns`` are the payload and headers column names, whose JSON values become JSON text
    as a table column would hold them. ``RecordError`` when the content is not a JSON object.
    """
    try:
        parsed = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"an outbox message is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise RecordError("an outbox message is not a JSON object")
    row = dict(parsed)
    for name in columns:
        value = row.get(name)
        if value is not None and not isinstance(value, str):
            row[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return row


def _error_headers(exc: RecordError, source: str) -> tuple[tuple[str, bytes], ...]:
    return (
        (CONNECTOR_HEADER, source.encode()),
        (ERROR_CLASS_HEADER, b"liberate.errors.RecordError"),
        (ERROR_MESSAGE_HEADER, exc.message.encode()),
    )


def _required_text(row: Mapping[str, Any], column: str, what: str, event_id: str | None) -> str:
    value = row.get(column)
    text = _text(value)
    if not text:
        origin = f"outbox event {event_id}" if event_id else "an outbox row"
        raise RecordError(
            f"{origin} has no {what} (column {column} is {value!r})",
            origin=origin,
            hint="every outbox row needs id, aggregate type and aggregate id; fix or delete "
            "the row (the relay stops here to keep the order)",
        )
    return text


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _json_text(value: Any, event_id: str, column: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    raise RecordError(
        f"outbox event {event_id}: column {column} holds a {type(value).__name__}, not JSON",
        origin=f"outbox event {event_id}",
        hint="the payload column holds JSON (jsonb, JSON or text)",
    )


def _custom_headers(value: Any, event_id: str, column: str) -> list[tuple[str, bytes]]:
    if value is None:
        return []
    parsed = value
    if isinstance(value, str | bytes):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise RecordError(
                f"outbox event {event_id}: column {column} is not JSON: {exc}",
                origin=f"outbox event {event_id}",
                hint="the headers column holds a JSON object of strings, or null",
            ) from exc
    if not isinstance(parsed, Mapping):
        raise RecordError(
            f"outbox event {event_id}: column {column} is not a JSON object",
            origin=f"outbox event {event_id}",
            hint="the headers column holds a JSON object of strings, or null",
        )
    return [(str(k), header_text(v).encode()) for k, v in parsed.items() if v is not None]
