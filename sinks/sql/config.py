"""Configuration of the SQL sink (``connector: sql``).

Defaults are chosen so the quickstart needs no set-up on the target: tables are created and
evolved from the record schemas (``auto_create``/``auto_evolve`` true), rows are upserted by
the record key, and deletes (tombstones, Debezium ``op: d``) remove rows by key.

The target table of a topic comes from the ``table`` template. Its placeholders are taken from
the dot-separated segments of the topic name:

- ``{topic}``: the whole topic name (``shop.public.orders``);
- ``{table}``: the last segment (``orders``); the default, so ``shop.orders`` lands in a table
  ``orders`` rather than in an awkward table named ``shop.orders``;
- ``{schema}``: the segment before the last when the topic has three or more (``public``),
  else empty;
- ``{source}``: the first segment when the topic has two or more (``shop``), else empty.

The rendered name is one identifier (a dot in it is part of the name, quoted); the target
schema (PostgreSQL schema, MySQL database) is set separately with ``schema``.
"""

from __future__ import annotations

import re
import string
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from liberate.config.base import DatabaseSettings, SinkConfig, StrictModel

TABLE_PLACEHOLDERS = ("topic", "table", "schema", "source")

Mode = Literal["insert", "upsert", "update"]
PkMode = Literal["record_key", "record_value", "none"]


class EvolutionSettings(StrictModel):
    """What the sink does when a record schema asks for a change it will not make."""

    unsafe: Literal["fail", "ignore"] = Field(
        default="fail",
        description="fail: stop, naming the table and column, when a schema change is unsafe "
        "(a narrowing, a type change, a primary-key change, a dropped column); ignore: keep "
        "the table as it is and go on",
    )


class ErrorSettings(StrictModel):
    """What the sink does with a record it cannot write (Kafka Connect's ``errors.*``)."""

    tolerance: Literal["none", "all"] = Field(
        default="none",
        description="none: stop at a record that cannot be written, naming it; all: send it "
        "to the dead-letter topic, park later records of its key behind it, and go on",
    )
    dead_letter_topic: str | None = Field(
        default=None,
        alias="deadletterqueue.topic.name",
        min_length=1,
        max_length=249,
        description="Topic of the dead-lettered and parked records; <sink name>.dlq when unset",
    )


class SqlSinkConfig(SinkConfig, DatabaseSettings):
    """One ``connector: sql`` entry of ``sinks:``."""

    connector: Literal["sql"] = Field(description="Which sink connector runs this entry")
    mode: Mode = Field(
        default="upsert",
        description="upsert: insert or update rows by the primary key (idempotent); insert: "
        "plain INSERT, a duplicate key is an error; update: UPDATE existing rows only",
    )
    pk_mode: PkMode = Field(
        default="record_key",
        description="Where the primary key comes from: record_key (the record key's fields), "
        "record_value (the value fields named in pk_fields), none (append-only: every record "
        "is a new row, with the stream coordinates __topic, __partition, __offset)",
    )
    pk_fields: list[str] | None = Field(
        default=None,
        min_length=1,
        description="With pk_mode record_value: the value fields (column names) of the key",
    )
    fields_include: list[str] | None = Field(
        default=None,
        description="Only these value fields (column names) become columns; key fields always do",
    )
    fields_exclude: list[str] = Field(
        default_factory=list,
        description="These value fields (column names) are not written; key fields always are",
    )
    table: str = Field(
        default="{table}",
        min_length=1,
        description="Target table name template over {topic}, {table} (last dot-separated "
        "segment of the topic), {schema} (segment before it) and {source} (first segment)",
    )
    target_schema: str | None = Field(
        default=None,
        alias="schema",
        min_length=1,
        description="Schema (PostgreSQL) or database (MySQL) of the target tables and the "
        "sink's own tables; the connection's default when unset",
    )
    auto_create: bool = Field(
        default=True, description="Create a missing target table from the record schemas"
    )
    auto_evolve: bool = Field(
        default=True,
        description="Add a nullable column when the record schema gains a field the table "
        "lacks, and widen a column where that is safe (int to bigint, varchar(n) to a larger "
        "n, decimal precision up with the same scale)",
    )
    evolution: EvolutionSettings = Field(
        default_factory=EvolutionSettings, description="Policy for unsafe schema changes"
    )
    delete_enabled: bool = Field(
        default=True,
        description="Tombstones (null values) and Debezium delete events delete the row by key",
    )
    truncate_enabled: bool = Field(
        default=False,
        description="Debezium truncate events (op t) delete every row of the target table",
    )
    errors: ErrorSettings = Field(
        default_factory=ErrorSettings, description="Dead-letter policy for unwritable records"
    )
    batch_size: int = Field(
        default=10_000,
        gt=0,
        le=1_000_000,
        description="Most records written in one transaction (one write call)",
    )
    offsets_table: str = Field(
        default="liberate_sink_offsets",
        min_length=1,
        max_length=63,
        description="Table in the target database where the sink keeps its consumed offsets",
    )
    parked_table: str = Field(
        default="liberate_sink_parked",
        min_length=1,
        max_length=63,
        description="Table in the target database where the sink keeps dead-lettered and "
        "parked records until `liberate dlq replay` applies them",
    )

    @model_validator(mode="before")
    @classmethod
    def _append_only_inserts(cls, raw: Any) -> Any:
        # pk_mode none only appends: make insert the mode unless one was chosen.
        if isinstance(raw, dict) and raw.get("pk_mode") == "none" and "mode" not in raw:
            return {**raw, "mode": "insert"}
        return raw

    @field_validator("table")
    @classmethod
    def _table_template_uses_known_placeholders(cls, value: str) -> str:
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"invalid table template {value!r}: {exc}") from exc
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if name not in TABLE_PLACEHOLDERS or spec or conversion:
                allowed = ", ".join("{" + p + "}" for p in TABLE_PLACEHOLDERS)
                raise ValueError(
                    f"unknown placeholder {{{name}}} in table template; use {allowed}"
                )
        return value

    @field_validator("topics_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SqlSinkConfig:
        if bool(self.topics) == bool(self.topics_regex):
            raise ValueError("set exactly one of topics (a list) or topics_regex")
        if self.pk_mode == "record_value" and not self.pk_fields:
            raise ValueError("pk_mode record_value needs pk_fields (the value fields of the key)")
        if self.pk_mode != "record_value" and self.pk_fields:
            raise ValueError("pk_fields is only used with pk_mode: record_value")
        if self.pk_mode == "none" and self.mode != "insert":
            raise ValueError(
                f"pk_mode none appends every record as a new row; mode {self.mode} needs a "
                "primary key (use mode: insert, or another pk_mode)"
            )
        dead_letters = self.dead_letter_topic
        if dead_letters in self.topics or (
            self.topics_regex and re.fullmatch(self.topics_regex, dead_letters)
        ):
            raise ValueError(
                f"the dead-letter topic {dead_letters} is one of the topics the sink consumes; "
                "set errors.deadletterqueue.topic.name to another topic"
            )
        both = set(self.fields_include or ()) & set(self.fields_exclude)
        if both:
            raise ValueError(f"fields both included and excluded: {', '.join(sorted(both))}")
        return self

    def table_for(self, topic: str) -> str:
        """The target table of ``topic`` (``liberate verify`` and ``topology`` ask)."""
        return table_name_for(self.table, topic)

    @property
    def dead_letter_topic(self) -> str:
        """The topic dead-lettered and parked records go to."""
        return self.errors.dead_letter_topic or f"{self.name}.dlq"


def table_name_for(template: str, topic: str) -> str:
    """The target table name of ``topic`` under the ``table`` template (see the module doc)."""
    parts = topic.split(".")
    return template.format(
        topic=topic,
        table=parts[-1],
        schema=parts[-2] if len(parts) >= 3 else "",
        source=parts[0] if len(parts) >= 2 else "",
    )
