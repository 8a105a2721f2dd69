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
from typing import Literal

from pydantic import Field, field_validator, model_validator

from liberate.config.base import DatabaseSettings, SinkConfig

TABLE_PLACEHOLDERS = ("topic", "table", "schema", "source")


class SqlSinkConfig(SinkConfig, DatabaseSettings):
    """One ``connector: sql`` entry of ``sinks:``."""

    connector: Literal["sql"] = Field(description="Which sink connector runs this entry")
    mode: Literal["insert", "upsert"] = Field(
        default="upsert",
        description="upsert: insert or update rows by the record key (idempotent); insert: "
        "plain INSERT, a duplicate key is an error",
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
        "offsets table; the connection's default when unset",
    )
    auto_create: bool = Field(
        default=True, description="Create a missing target table from the record schemas"
    )
    auto_evolve: bool = Field(
        default=True,
        description="Add a nullable column when the record schema gains a field the table lacks",
    )
    delete_enabled: bool = Field(
        default=True,
        description="Tombstones (null values) and Debezium delete events delete the row by key",
    )
    batch_size: int = Field(
        default=5000,
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
    def _topics_or_regex(self) -> SqlSinkConfig:
        if bool(self.topics) == bool(self.topics_regex):
            raise ValueError("set exactly one of topics (a list) or topics_regex")
        return self


def table_name_for(template: str, topic: str) -> str:
    """The target table name of ``topic`` under the ``table`` template (see the module doc)."""
    parts = topic.split(".")
    return template.format(
        topic=topic,
        table=parts[-1],
        schema=parts[-2] if len(parts) >= 3 else "",
        source=parts[0] if len(parts) >= 2 else "",
    )
