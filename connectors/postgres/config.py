"""The run-file entry of a PostgreSQL WAL source (``connector: postgres``)."""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from liberate.config.capture import CaptureSourceConfig
from liberate.config.durations import Duration
from liberate.config.tables import (
    KeyColumns,
    key_column_problems,
    split_table_name,
    table_list,
    topic_collisions,
)
from liberate.config.templates import template_over

TEMPLATE_VARIABLES = ("source", "schema", "table")
#: PostgreSQL identifiers are at most 63 bytes (NAMEDATALEN - 1)
MAX_IDENTIFIER = 63
#: prefix of the logical decoding messages liberate writes for itself (heartbeats, markers)
OWN_MESSAGE_PREFIX = "liberate."


def split_name(name: str) -> tuple[str, str]:
    """``"schema.table"`` -> ``("schema", "table")``; ``"table"`` -> ``("public", "table")``."""
    schema, table = split_table_name(name)
    return (schema or "public"), table


def qualified_name(name: str) -> str:
    """``schema.table`` with the default schema filled in."""
    schema, table = split_name(name)
    return f"{schema}.{table}"


class SnapshotMode(StrEnum):
    """When the source reads the tables as they are (``r`` events) before streaming changes."""

    INITIAL = "initial"
    NEVER = "never"
    WHEN_NEEDED = "when_needed"
    INITIAL_ONLY = "initial_only"


class PostgresSourceConfig(CaptureSourceConfig):
    """A source that streams the committed changes of PostgreSQL tables from the WAL (pgoutput)."""

    connector: Literal["postgres"] = Field(description="Which source connector runs this entry")
    tables: Annotated[list[str], table_list(qualified_name)] = Field(
        min_length=1,
        description="Tables to capture, as 'table' (schema public) or 'schema.table'",
    )
    key_columns: KeyColumns = Field(
        default=None,
        description="Columns that identify a row (the record key) instead of the primary key; "
        "a list for every table, or a map table -> list. Deletes need them in the replica "
        "identity (REPLICA IDENTITY FULL)",
    )
    topic: Annotated[str, template_over(*TEMPLATE_VARIABLES)] | None = Field(
        default=None,
        description="Topic name template with {source}, {schema}, {table}; "
        "default '{source}.{schema}.{table}'",
    )
    slot: str | None = Field(
        default=None,
        description="Logical replication slot; created when missing (default: "
        "liberate_<source name>)",
    )
    publication: str | None = Field(
        default=None,
        description="Publication of the tables; created FOR TABLE the tables when missing "
        "(default: liberate_<source name>)",
    )
    snapshot_mode: SnapshotMode = Field(
        default=SnapshotMode.INITIAL,
        description="initial: read the tables once, then stream | never: stream only | "
        "when_needed: like initial, and read them again when the slot is lost | "
        "initial_only: read the tables once and stop",
    )
    max_batch: int = Field(
        default=10_000, ge=1, le=1_000_000,
        description="At most this many events per poll; a larger transaction is returned in "
        "several polls and resumes inside itself after a crash",
    )
    heartbeat_interval: Duration = Field(
        default=dt.timedelta(seconds=10),
        description="How often an idle stream confirms its position (and writes a heartbeat "
        "message) so the slot does not pin WAL while other databases write; 0 turns it off",
    )
    messages: bool = Field(
        default=False,
        description="Emit logical decoding messages (pg_logical_emit_message) as 'm' events "
        "to the topic <source>.message",
    )
    message_prefixes: list[str] = Field(
        default_factory=list,
        description="With messages on: only messages whose prefix is listed (default: all)",
    )
    streaming: bool = Field(
        default=True,
        description="Let the server stream large in-progress transactions (pgoutput protocol "
        "2, PostgreSQL 14+); liberate keeps them in a temporary file until they commit, so "
        "they are decoded while they run instead of after",
    )

    @field_validator("slot", "publication")
    @classmethod
    def _identifier_fits(cls, value: str | None) -> str | None:
        if value is not None and not 0 < len(value.encode()) <= MAX_IDENTIFIER:
            raise ValueError(f"must be 1 to {MAX_IDENTIFIER} bytes long")
        if value is not None and not re.fullmatch(r"[a-z0-9_]+", value):
            # Replication slot names may only hold lower-case letters, digits and '_'.
            raise ValueError("may only contain lower-case letters, digits and underscores")
        return value

    @model_validator(mode="after")
    def _combinations_make_sense(self) -> PostgresSourceConfig:
        problems = key_column_problems(self.key_columns, self.tables, qualified_name)
        if self.message_prefixes and not self.messages:
            problems.append("message_prefixes is only used with messages: true")
        if self.heartbeat_interval < dt.timedelta(0):
            problems.append("heartbeat_interval cannot be negative")
        problems.extend(topic_collisions(
            ((name, self.topic_for(*split_name(name))) for name in self.tables),
            "add {schema} and {table} to the topic template",
        ))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived values ------------------------------------------------------------------------

    @property
    def slot_name(self) -> str:
        """The replication slot (configured, or derived from the source name)."""
        return self.slot or derived_identifier(self.name)

    @property
    def publication_name(self) -> str:
        """The publication (configured, or derived from the source name)."""
        return self.publication or derived_identifier(self.name)

    @property
    def message_topic(self) -> str:
        """Where ``m`` events go (Debezium's ``<prefix>.message``)."""
        return f"{self.name}.message"

    def key_columns_for(self, schema: str, table: str) -> list[str] | None:
        """The configured key of ``schema.table``; None: the primary key."""
        if isinstance(self.key_columns, dict):
            for name, columns in self.key_columns.items():
                if split_name(name) == (schema, table):
                    return columns
            return None
        return self.key_columns

    def topic_for(self, schema: str, table: str) -> str:
        """The topic of ``schema.table``."""
        template = self.topic or "{source}.{schema}.{table}"
        return template.format(source=self.name, schema=schema, table=table)

    def wants_message(self, prefix: str) -> bool:
        """Whether a logical decoding message with ``prefix`` becomes an ``m`` event."""
        if not self.messages or prefix.startswith(OWN_MESSAGE_PREFIX):
            return False
        return not self.message_prefixes or prefix in self.message_prefixes


def derived_identifier(source_name: str) -> str:
    """``liberate_<source name>`` made a valid slot name (lower case, ``[a-z0-9_]``, 63 bytes)."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", source_name.lower())
    return f"liberate_{cleaned}"[:MAX_IDENTIFIER]
