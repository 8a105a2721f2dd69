"""The run-file entry of the outbox relay (``connector: outbox``).

Names follow Debezium's outbox event router where it has one (in brackets below), so a team
moving from Debezium finds its settings:

- ``topic`` [``route.topic.replacement``]: ``outbox.event.{aggregate_type}``, the aggregate
  type column [``route.by.field``] filling ``{aggregate_type}``.
- ``columns`` [``table.field.event.*``]: the outbox column names, Debezium's by default, plus
  the ``seq`` ordering column, ``relayed_at`` and ``created_at`` of liberate's DDL.
- ``additional_fields`` [``table.fields.additional.placement``]: ``column:header|envelope
  [:alias]``; by default the type column goes into header ``eventType``.
- ``tombstone_on_empty_payload`` [``route.tombstone.on.empty.payload``].
- ``invalid_op_behavior`` [``table.op.invalid.behavior``]: what an UPDATE of an outbox row
  does in log mode; ``ignore`` is liberate's addition. Deletes are always dropped silently.

Modes: ``polling`` reads the table with queries (any SQLAlchemy database); ``log`` reads the
table's inserts from the WAL or binlog through the postgres / mysql connectors, whose settings
go in the ``log:`` block (``_log_settings``). ``retention``, ``batch_size`` and ``schedule`` are
polling's; ``message_prefix`` is log mode's on PostgreSQL.

Values: ``value_format: json`` puts the payload as JSON text into the value's ``payload`` field
(Debezium's default); ``avro`` makes the payload itself the value, with the schema of its event
type from ``schemas`` (``_payloads``). A payload that does not fit stops the relay, or goes to
``dead_letter_topic`` when one is set.

Defaults, and why: ``retention: 0s`` deletes a row as soon as its record is durable in the
stream (the table stays small, as Debezium recommends); ``batch_size: 1000`` rows per poll;
``schedule: 1s`` (an outbox is about latency, and the poll is one indexed query).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from connectors.outbox._log_settings import CdcConfig, LogSettings, cdc_config
from connectors.outbox._payloads import SchemaSource, load_schema
from liberate.config.base import DatabaseSettings, SourceConfig, StrictModel
from liberate.config.durations import Duration, ScheduleField, parse_schedule
from liberate.config.tables import check_table_name, split_table_name
from liberate.config.templates import template_over
from liberate.errors import FatalError
from liberate.schema.avro import AvroSchema
from liberate.streams.embedded import validate_topic_name
from outbox import DEFAULT_COLUMNS, DEFAULT_TABLE, MESSAGE_PREFIX

TOPIC_VARIABLES = ("aggregate_type", "source")
DEFAULT_TOPIC = "outbox.event.{aggregate_type}"
#: the field of the value record that holds the payload (Debezium's envelope name)
PAYLOAD_FIELD = "payload"
#: the header that carries the event id (Debezium's)
ID_HEADER = "id"

#: how often polling polls when the table had nothing new, unless ``schedule`` says otherwise
DEFAULT_SCHEDULE = "1s"
#: the settings only polling uses (refused in log mode, where they would do nothing)
POLLING_ONLY = ("retention", "batch_size", "schedule")

Placement = Literal["header", "envelope"]
InvalidOpBehavior = Literal["warn", "error", "fatal", "ignore"]


@dataclass(frozen=True, slots=True)
class AdditionalField:
    """One ``column:header|envelope[:alias]`` entry of ``additional_fields``."""

    column: str
    placement: Placement
    alias: str

    @classmethod
    def parse(cls, text: str) -> AdditionalField:
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
            raise ValueError(
                f"{text!r} is not column:header|envelope[:alias] (e.g. type:header:eventType)"
            )
        column, placement = parts[0].strip(), parts[1].strip()
        if placement not in ("header", "envelope"):
            raise ValueError(f"{text!r}: the placement is header or envelope, not {placement!r}")
        alias = parts[2].strip() if len(parts) == 3 else column
        return cls(column, "header" if placement == "header" else "envelope", alias)


class OutboxColumns(StrictModel):
    """Column names of the outbox table (Debezium's five, then liberate's bookkeeping)."""

    id: str = Field(default=DEFAULT_COLUMNS.id, min_length=1,
                    description="Event id (a UUID): header 'id', for consumer de-duplication")
    aggregate_type: str = Field(default=DEFAULT_COLUMNS.aggregate_type, min_length=1,
                                description="Routes the event: fills {aggregate_type}")
    aggregate_id: str = Field(default=DEFAULT_COLUMNS.aggregate_id, min_length=1,
                              description="The record key: events of one aggregate stay in order")
    type: str = Field(default=DEFAULT_COLUMNS.type, min_length=1,
                      description="Event type (header 'eventType' by default)")
    payload: str = Field(default=DEFAULT_COLUMNS.payload, min_length=1,
                         description="Event payload (JSON): the value's 'payload' field")
    headers: str | None = Field(
        default=DEFAULT_COLUMNS.headers,
        description="JSON object of extra record headers (null: the table has none)",
    )
    timestamp: str | None = Field(
        default="created_at",
        description="Record timestamp (null: the time the relay reads the event)",
    )
    seq: str = Field(
        default="seq", min_length=1,
        description="Increasing, never reused number (identity / AUTO_INCREMENT / AUTOINCREMENT)"
        " giving the relay its order",
    )
    relayed_at: str | None = Field(
        default="relayed_at",
        description="Nullable timestamp the relay sets on delivered rows it keeps for "
        "'retention' (null: the table has none; retention must then be 0s)",
    )

    @model_validator(mode="after")
    def _names_are_distinct(self) -> OutboxColumns:
        names = [v for v in self.model_dump().values() if v is not None]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"a column is named for two roles: {', '.join(twice)}")
        return self


class OutboxSourceConfig(SourceConfig, DatabaseSettings):
    """The outbox relay: routes the events of an outbox table like Debezium's event router."""

    connector: Literal["outbox"] = Field(description="Which source connector runs this entry")
    mode: Literal["polling", "log"] = Field(
        default="polling",
        description="log: read the table's inserts from the WAL / binlog (PostgreSQL, "
        "MySQL/MariaDB; recommended) | polling: read the table with queries (any SQLAlchemy "
        "database)",
    )
    log: LogSettings | None = Field(
        default=None,
        description="mode: log: settings of the postgres / mysql connector underneath (slot, "
        "publication, server_id, snapshot_mode, heartbeats, ...)",
    )
    message_prefix: str | None = Field(
        default=MESSAGE_PREFIX, min_length=1,
        description="mode: log on PostgreSQL: also relay pg_logical_emit_message events with "
        "this prefix (outbox.publish_message's); null: table inserts only",
    )
    table: Annotated[str, AfterValidator(check_table_name)] = Field(
        default=DEFAULT_TABLE, min_length=1,
        description="The outbox table, as 'table' or 'schema.table'",
    )
    columns: OutboxColumns = Field(default_factory=OutboxColumns,
                                   description="Column names of the outbox table")
    topic: Annotated[str, template_over(*TOPIC_VARIABLES)] = Field(
        default=DEFAULT_TOPIC,
        description="Topic name template over {aggregate_type} and {source}",
    )
    value_format: Literal["json", "avro"] = Field(
        default="json",
        description="json: the value record's 'payload' field holds the payload as JSON text | "
        "avro: the payload is the value, with the Avro schema of its event type (schemas)",
    )
    schemas: dict[str, SchemaSource] = Field(
        default_factory=dict,
        description="value_format: avro: event type -> Avro record schema, as the path of an "
        ".avsc file or inline",
    )
    dead_letter_topic: str | None = Field(
        default=None, min_length=1, max_length=249,
        description="value_format: avro: where an event whose payload does not fit its type's "
        "schema goes (its payload as JSON text, the error in headers); unset: the relay stops",
    )
    additional_fields: list[str] | None = Field(
        default=None,
        description="More columns in the record, as 'column:header|envelope[:alias]' "
        "(default: ['<type column>:header:eventType'])",
    )
    tombstone_on_empty_payload: bool = Field(
        default=False,
        description="A null payload becomes a tombstone (null value) instead of a null field",
    )
    invalid_op_behavior: InvalidOpBehavior = Field(
        default="warn",
        description="Log mode: an UPDATE of an outbox row is skipped with a warning (warn), "
        "skipped with an error log (error), stops the relay (fatal) or is skipped silently "
        "(ignore). Polling reads inserted rows only and never sees updates",
    )
    retention: Duration = Field(
        default=dt.timedelta(0),
        description="Keep relayed rows this long (marked in relayed_at) before deleting them;"
        " 0s deletes each row once its record is durable",
    )
    batch_size: int = Field(default=1000, ge=1, le=100_000,
                            description="Rows read per poll (one query)")
    schedule: ScheduleField | None = Field(
        default=None,
        description="Polling: how often to poll when the table had nothing new: an interval "
        f"(500ms, 1s) or a 5-field cron expression (default {DEFAULT_SCHEDULE})",
    )

    @model_validator(mode="before")
    @classmethod
    def _polling_has_a_schedule(cls, data: Any) -> Any:
        # Log mode waits on the WAL / binlog itself: a schedule would only add latency.
        if isinstance(data, dict) and data.get("mode", "polling") == "polling" and data.get(
            "schedule"
        ) is None:
            return {**data, "schedule": parse_schedule(DEFAULT_SCHEDULE)}
        return data

    @model_validator(mode="after")
    def _combinations_make_sense(self) -> OutboxSourceConfig:
        problems: list[str] = []
        if self.retention < dt.timedelta(0):
            problems.append("retention cannot be negative")
        if self.retention > dt.timedelta(0) and self.columns.relayed_at is None:
            problems.append(
                "a retention needs columns.relayed_at (the table column that marks relayed rows)"
            )
        try:
            fields = self.placements
        except ValueError as exc:
            problems.append(f"additional_fields: {exc}")
        else:
            problems.extend(_placement_problems(fields))
            if self.value_format == "avro" and any(f.placement == "envelope" for f in fields):
                problems.append("value_format: avro makes the payload the value: place "
                                "additional_fields in headers, not in the envelope")
        problems.extend(self._value_problems())
        problems.extend(self._mode_problems())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _value_problems(self) -> list[str]:
        problems: list[str] = []
        if self.value_format == "avro" and not self.schemas:
            problems.append("value_format: avro needs schemas: (event type -> Avro schema)")
        if self.value_format == "json":
            problems.extend(f"{key} is only used with value_format: avro"
                            for key in ("schemas", "dead_letter_topic")
                            if key in self.model_fields_set)
        for event_type, source in self.schemas.items():
            try:
                load_schema(source)
            except ValueError as exc:
                problems.append(f"schemas.{event_type}: {exc}")
        if self.dead_letter_topic is not None:
            try:
                validate_topic_name(self.dead_letter_topic)
            except FatalError as exc:
                problems.append(f"dead_letter_topic: {exc.message}")
        return problems

    def _mode_problems(self) -> list[str]:
        if self.mode == "polling":
            return [f"{key} is only used with mode: log"
                    for key in ("log", "message_prefix") if key in self.model_fields_set]
        problems = [f"{key} is only used with mode: polling (log mode reads the WAL / binlog "
                    "and never writes to the table)"
                    for key in POLLING_ONLY if key in self.model_fields_set]
        try:
            self.cdc_config()
        except ValidationError as exc:
            problems.extend(
                f"log.{'.'.join(str(p) for p in error['loc']) or '(block)'}: {error['msg']}"
                for error in exc.errors()
            )
        except ValueError as exc:
            problems.append(str(exc))
        return problems

    # -- derived values --------------------------------------------------------------------

    @property
    def placements(self) -> tuple[AdditionalField, ...]:
        """The parsed ``additional_fields`` (the default puts the type into ``eventType``)."""
        entries = self.additional_fields
        if entries is None:
            entries = [f"{self.columns.type}:header:eventType"]
        return tuple(AdditionalField.parse(text) for text in entries)

    def cdc_config(self) -> CdcConfig:
        """Log mode: the config of the postgres / mysql source that reads the outbox table."""
        return cdc_config(self.log, name=self.name, database=self.database,
                          password_file=self.password_file, table=self.table,
                          message_prefix=self.message_prefix)

    def value_schemas(self) -> dict[str, AvroSchema]:
        """value_format avro: the schema of each event type (files read now)."""
        return {event_type: load_schema(source) for event_type, source in self.schemas.items()}

    @property
    def table_name(self) -> tuple[str | None, str]:
        """(schema or None, table) of ``table``."""
        schema, table = split_table_name(self.table)
        return (schema or None), table


def _placement_problems(fields: tuple[AdditionalField, ...]) -> list[str]:
    problems: list[str] = []
    headers = [f.alias for f in fields if f.placement == "header"]
    envelope = [f.alias for f in fields if f.placement == "envelope"]
    if ID_HEADER in headers:
        problems.append(f"additional_fields: header {ID_HEADER!r} is the event id's")
    if PAYLOAD_FIELD in envelope:
        problems.append(f"additional_fields: envelope field {PAYLOAD_FIELD!r} is the payload's")
    for kind, aliases in (("header", headers), ("envelope field", envelope)):
        twice = sorted({a for a in aliases if aliases.count(a) > 1})
        if twice:
            problems.append(f"additional_fields: {kind} {', '.join(twice)} placed twice")
    return problems
