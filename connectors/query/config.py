"""The run-file entry of a query-based source (``connector: query``).

One model, validated before anything connects. Impossible combinations (a mode without the
column it needs, ``query`` and ``tables`` together, ...) are reported with the fix.

Defaults, and why:

- ``mode``: follows the columns given (both -> ``timestamp+incrementing``, a timestamp column ->
  ``timestamp``, an incrementing column -> ``incrementing``), ``bulk`` when none is given:
  naming the columns is what a user does anyway, and bulk never misses a row.
- ``timestamp_delay: 5s``: a row stamped by a transaction that commits after a poll already went
  past its timestamp would be skipped forever (PostgreSQL's ``now()`` is the transaction's start).
  The delay leaves such transactions 5 seconds to commit, for 5 seconds of extra latency.
  Kafka Connect's default is 0.
- ``batch_size: 10000``: rows per query and per poll; large enough to amortize a round trip,
  small enough to bound memory.
- ``schedule: 5s``: Kafka Connect's ``poll.interval.ms``.
- ``envelope: entity``: the row as it is now, the Kafka Connect JDBC shape (DESIGN §3).
- ``parallelism: auto``: a bulk read of a large table uses every core (one process per core,
  up to 4, the source's own included): reading and Avro-encoding rows is CPU-bound Python,
  ~10 µs a row on one core.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from liberate.config.base import DatabaseSettings, SourceConfig
from liberate.config.durations import Duration, ScheduleField, parse_schedule
from liberate.config.tables import (
    KeyColumns,
    key_column_problems,
    split_table_name,
    table_list,
    topic_collisions,
)
from liberate.config.templates import template_over

# ---------------------------------------------------------------------------------------------
# The model


class QueryMode(StrEnum):
    """How a query source finds new and changed rows (the kafka-connect-jdbc modes)."""

    BULK = "bulk"
    INCREMENTING = "incrementing"
    TIMESTAMP = "timestamp"
    TIMESTAMP_INCREMENTING = "timestamp+incrementing"


TEMPLATE_VARIABLES = ("source", "schema", "table")
#: ``parallelism: auto`` uses one process per core, at most this many
AUTO_PARALLELISM = 4
MAX_PARALLELISM = 32


class QuerySourceConfig(SourceConfig, DatabaseSettings):
    """A source that liberates tables of any SQLAlchemy database by polling them."""

    connector: Literal["query"] = Field(description="Which source connector runs this entry")
    tables: Annotated[list[str], table_list()] = Field(
        default_factory=list,
        description="Tables to read, as 'table' or 'schema.table' (exclusive with query)",
    )
    query: str | None = Field(
        default=None,
        description="A custom SELECT to read instead of tables (exclusive with tables); "
        "it is wrapped as a subquery so the mode's WHERE and ORDER BY can be added; "
        "needs key_columns; its topic defaults to the source name",
    )
    mode: QueryMode = Field(
        default=QueryMode.BULK,
        description="bulk (whole table every cycle) | incrementing | timestamp | "
        "timestamp+incrementing. When omitted it follows the columns given: both columns -> "
        "timestamp+incrementing, timestamp_column -> timestamp, incrementing_column -> "
        "incrementing, none -> bulk",
    )
    incrementing_column: str | None = Field(
        default=None,
        description="Strictly increasing integer column (e.g. an auto-increment id) for the "
        "incrementing modes",
    )
    timestamp_column: str | list[str] | None = Field(
        default=None,
        description="Last-modified timestamp column for the timestamp modes; a list is "
        "combined with COALESCE (first non-null wins)",
    )
    timestamp_delay: Duration = Field(
        default=dt.timedelta(seconds=5),
        description="Rows are read only once their timestamp is this much older than the "
        "database clock, so a transaction that commits within the delay is not skipped",
    )
    timestamp_initial: dt.datetime | None = Field(
        default=None,
        description="Start from rows whose timestamp is at or after this ISO date-time "
        "(without an offset: UTC for time-zone-aware columns, as written for naive ones); "
        "used only when no offset is stored",
    )
    key_columns: KeyColumns = Field(
        default=None,
        description="Columns that identify a row (the record key), instead of the primary key; "
        "a list for every table, or a map table -> list",
    )
    topic: Annotated[str, template_over(*TEMPLATE_VARIABLES)] | None = Field(
        default=None,
        description="Topic name template with {source}, {schema}, {table}; default "
        "'{source}.{table}', or '{source}' for a custom query",
    )
    envelope: Literal["entity", "debezium"] = Field(
        default="entity",
        description="entity: the value is the row as it is now; debezium: the Debezium "
        "change-event envelope with op 'r'",
    )
    batch_size: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Rows read per query and per poll"
    )
    parallelism: int | Literal["auto"] = Field(
        default="auto",
        description="Processes that read and encode a bulk table at once, the source's own "
        "and parallelism - 1 workers (key ranges, delivered in key order): 'auto' is one per "
        "CPU core, up to 4; 1 reads in the source's own process only. Used by bulk mode on "
        "tables of servers (not SQLite, not a custom query, not the debezium envelope) with at "
        "least 4 batches to read",
    )
    schedule: ScheduleField = Field(
        default=parse_schedule("5s"),
        description="How often a polling cycle starts: an interval (500ms, 5s, 1m, 1h) or a "
        "5-field cron expression ('*/5 * * * *')",
    )

    @model_validator(mode="before")
    @classmethod
    def _mode_follows_the_columns(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mode") is None:
            inc = data.get("incrementing_column")
            ts = data.get("timestamp_column")
            mode = (
                QueryMode.TIMESTAMP_INCREMENTING
                if inc and ts
                else QueryMode.TIMESTAMP
                if ts
                else QueryMode.INCREMENTING
                if inc
                else QueryMode.BULK
            )
            data = {**data, "mode": mode.value}
        return data

    @field_validator("parallelism")
    @classmethod
    def _parallelism_in_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= MAX_PARALLELISM:
            raise ValueError(f"parallelism must be 'auto' or 1..{MAX_PARALLELISM}, not {value}")
        return value

    def bulk_processes(self) -> int:
        """How many processes read a bulk table at once (``parallelism`` resolved)."""
        if self.parallelism == "auto":
            return max(1, min(os.cpu_count() or 1, AUTO_PARALLELISM))
        return int(self.parallelism)

    @field_validator("query")
    @classmethod
    def _query_is_one_select(cls, query: str | None) -> str | None:
        if query is None:
            return None
        # A trailing semicolon would end the subquery the source wraps around the query.
        text = query.strip().rstrip(";").strip()
        if not text:
            raise ValueError("must be a SELECT statement")
        return text

    @field_validator("timestamp_column")
    @classmethod
    def _timestamp_columns_given(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one column")
        return value

    @model_validator(mode="after")
    def _combinations_make_sense(self) -> QuerySourceConfig:
        problems: list[str] = []
        if self.query is None and not self.tables:
            problems.append("give either tables: [...] or query: (a SELECT)")
        if self.query is not None and self.tables:
            problems.append("tables and query are exclusive: give one of them")
        needs_inc = self.mode in (QueryMode.INCREMENTING, QueryMode.TIMESTAMP_INCREMENTING)
        needs_ts = self.mode in (QueryMode.TIMESTAMP, QueryMode.TIMESTAMP_INCREMENTING)
        if needs_inc and not self.incrementing_column:
            problems.append(f"mode {self.mode.value} needs incrementing_column")
        if needs_ts and not self.timestamp_column:
            problems.append(f"mode {self.mode.value} needs timestamp_column")
        if not needs_inc and self.incrementing_column:
            problems.append(
                f"incrementing_column is not used by mode {self.mode.value}: "
                "remove it or choose an incrementing mode"
            )
        if not needs_ts:
            for key in ("timestamp_column", "timestamp_initial", "timestamp_delay"):
                if key in self.model_fields_set and getattr(self, key) is not None:
                    problems.append(
                        f"{key} is not used by mode {self.mode.value}: "
                        "remove it or choose a timestamp mode"
                    )
        if self.timestamp_delay < dt.timedelta(0):
            problems.append("timestamp_delay cannot be negative")
        if self.query is not None:
            if self.key_columns is None:
                problems.append(
                    "a custom query needs key_columns: [...] (the columns that identify a row)"
                )
            elif isinstance(self.key_columns, dict):
                problems.append("with a custom query, key_columns is a list of columns")
            if self.topic and ({"{table}", "{schema}"} & set(re.findall(r"\{\w+\}", self.topic))):
                problems.append("with a custom query, the topic template can only use {source}")
        problems.extend(key_column_problems(self.key_columns, self.tables))
        problems.extend(self._topic_collisions())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _topic_collisions(self) -> list[str]:
        if self.query is not None:
            return []
        return topic_collisions(
            ((name, self.topic_for(*split_table_name(name))) for name in self.tables),
            "add {schema} to the topic template",
        )

    # -----------------------------------------------------------------------------------------
    # Derived values the source uses

    @property
    def timestamp_columns(self) -> tuple[str, ...]:
        """The timestamp columns, in COALESCE order (empty when not a timestamp mode)."""
        value = self.timestamp_column
        if value is None:
            return ()
        return (value,) if isinstance(value, str) else tuple(value)

    def key_columns_for(self, table: str) -> list[str] | None:
        """The configured key of ``table`` (as listed in ``tables``); None: the primary key."""
        if isinstance(self.key_columns, dict):
            return self.key_columns.get(table)
        return self.key_columns

    def topic_for(self, schema: str, table: str) -> str:
        """The topic of ``schema.table`` (for a custom query: of the query)."""
        if self.topic is None:
            template = "{source}" if self.query is not None else "{source}.{table}"
        else:
            template = self.topic
        return template.format(source=self.name, schema=schema, table=table)
