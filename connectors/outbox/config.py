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

Defaults, and why: ``retention: 0s`` deletes a row as soon as its record is durable in the
stream (the table stays small, as Debezium recommends); ``batch_size: 1000`` rows per poll;
``schedule: 1s`` (an outbox is about latency, and the poll is one indexed query).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from string import Formatter
from typing import Literal

from pydantic import Field, field_validator, model_validator

from liberate.config.base import DatabaseSettings, SourceConfig, StrictModel
from liberate.config.durations import Duration, ScheduleField, parse_schedule
from outbox import DEFAULT_COLUMNS, DEFAULT_TABLE

TOPIC_VARIABLES = ("aggregate_type", "source")
DEFAULT_TOPIC = "outbox.event.{aggregate_type}"
#: the field of the value record that holds the payload (Debezium's envelope name)
PAYLOAD_FIELD = "payload"
#: the header that carries the event id (Debezium's)
ID_HEADER = "id"

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
    mode: Literal["polling"] = Field(
        default="polling",
        description="polling: read the table with queries (any SQLAlchemy database). The "
        "log-based mode (on the postgres/mysql connectors) is not available yet",
    )
    table: str = Field(
        default=DEFAULT_TABLE, min_length=1,
        description="The outbox table, as 'table' or 'schema.table'",
    )
    columns: OutboxColumns = Field(default_factory=OutboxColumns,
                                   description="Column names of the outbox table")
    topic: str = Field(
        default=DEFAULT_TOPIC,
        description="Topic name template over {aggregate_type} and {source}",
    )
    value_format: Literal["json"] = Field(
        default="json",
        description="json: the value record's 'payload' field holds the payload as JSON text "
        "(Avro with a schema per event type is planned)",
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
    schedule: ScheduleField = Field(
        default=parse_schedule("1s"),
        description="How often to poll when the table had nothing new: an interval (500ms, "
        "1s) or a 5-field cron expression",
    )

    @field_validator("topic")
    @classmethod
    def _topic_template_parses(cls, value: str) -> str:
        try:
            names = [name for _, name, _, _ in Formatter().parse(value) if name is not None]
        except ValueError as exc:
            raise ValueError(f"is not a valid template: {exc}") from exc
        unknown = sorted(set(names) - set(TOPIC_VARIABLES))
        if unknown:
            raise ValueError(
                f"unknown variable(s) {', '.join('{' + n + '}' for n in unknown)}; "
                "use {aggregate_type} and {source}"
            )
        return value

    @field_validator("table")
    @classmethod
    def _table_is_a_name(cls, value: str) -> str:
        schema, _, table = value.rpartition(".")
        if not table.strip() or (value.count(".") and not schema.strip()):
            raise ValueError(f"{value!r} is not a table name ('table' or 'schema.table')")
        return value

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
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived values --------------------------------------------------------------------

    @property
    def placements(self) -> tuple[AdditionalField, ...]:
        """The parsed ``additional_fields`` (the default puts the type into ``eventType``)."""
        entries = self.additional_fields
        if entries is None:
            entries = [f"{self.columns.type}:header:eventType"]
        return tuple(AdditionalField.parse(text) for text in entries)

    @property
    def table_name(self) -> tuple[str | None, str]:
        """(schema or None, table) of ``table``."""
        schema, _, table = self.table.rpartition(".")
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
