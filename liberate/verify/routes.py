"""Where rows go, as the run file says: source table -> topic -> sink -> target table.

Read from the config models without importing a connector (DESIGN §1), through what the
table-reading connectors' configs have in common (:class:`TableSourceSettings`: ``tables`` and
``topic_for``) and what a table-writing sink's config offers (:class:`TableSinkSettings`:
``table_for``). A source or sink without these (the outbox relay, a custom query) has routes
nobody can name before the run: ``verify`` skips it with a note and ``topology`` shows its
topic template, or the topics the backend holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from liberate.config.base import DatabaseSettings, SinkConfig, SourceConfig
from liberate.config.models import RunConfig

#: what a topic name template's unknown parts render as before the catalog is read
UNKNOWN_SCHEMA = "{schema}"


@runtime_checkable
class TableSourceSettings(Protocol):
    """The config of a source that reads listed tables (query, postgres, mysql)."""

    name: str
    tables: list[str]

    def topic_for(self, schema: str, table: str) -> str:
        """The topic of ``schema.table``."""
        ...


@runtime_checkable
class TableSinkSettings(Protocol):
    """The config of a sink that writes each topic into one table (sql)."""

    name: str
    target_schema: str | None

    def table_for(self, topic: str) -> str:
        """The target table of ``topic``."""
        ...


@dataclass(frozen=True)
class SourceTable:
    """One table a source reads, and the topic its records go to."""

    source: SourceConfig
    schema: str | None
    table: str
    topic: str
    key_columns: tuple[str, ...] | None

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table


@dataclass(frozen=True)
class Route:
    """A source table and one sink table its topic ends up in."""

    origin: SourceTable
    sink: SinkConfig
    target_schema: str | None
    target_table: str

    @property
    def target_label(self) -> str:
        schema = self.target_schema
        return f"{schema}.{self.target_table}" if schema else self.target_table


def consumes(sink: SinkConfig, topic: str) -> bool:
    """Whether ``sink`` reads ``topic`` (its ``topics`` list, or ``topics_regex``)."""
    if topic in sink.topics:
        return True
    return sink.topics_regex is not None and re.fullmatch(sink.topics_regex, topic) is not None


def is_table_source(config: SourceConfig) -> bool:
    """Whether ``config`` reads listed tables whose topics the run file determines."""
    return (
        isinstance(config, TableSourceSettings)
        and isinstance(config, DatabaseSettings)
        and bool(config.tables)
        and getattr(config, "query", None) is None
    )


def planned_topics(config: SourceConfig, default_schema: str = UNKNOWN_SCHEMA) -> list[str]:
    """The topics ``config`` writes, from its templates: names where the run file fixes them.

    A table listed without its schema renders ``default_schema`` (by default the literal
    ``{schema}``, when the template uses it: the database decides). A source that is not a
    table source returns its ``topic`` template when it has one, else nothing.
    """
    if is_table_source(config):
        assert isinstance(config, TableSourceSettings)
        topics: list[str] = []
        for name in config.tables:
            schema, _, table = name.rpartition(".")
            topic = config.topic_for(schema or default_schema, table)
            if topic not in topics:
                topics.append(topic)
        return topics
    template = getattr(config, "topic", None)
    return [template] if isinstance(template, str) else []


def source_tables(config: SourceConfig, default_schema: str | None) -> list[SourceTable]:
    """The tables of a table source, with topics rendered for a database whose default schema
    is ``default_schema`` (``[]`` for other sources)."""
    if not is_table_source(config):
        return []
    assert isinstance(config, TableSourceSettings)
    tables: list[SourceTable] = []
    for name in config.tables:
        schema, _, table = name.rpartition(".")
        topic = config.topic_for(schema or default_schema or "", table)
        keys = _key_columns(getattr(config, "key_columns", None), name, schema, table)
        tables.append(SourceTable(config, schema or None, table, topic, keys))
    return tables


def routes_of(run: RunConfig, table: SourceTable) -> list[Route]:
    """Every sink table that ``table``'s topic ends up in."""
    routes: list[Route] = []
    for sink in run.sinks:
        if consumes(sink, table.topic) and isinstance(sink, TableSinkSettings):
            routes.append(Route(table, sink, sink.target_schema, sink.table_for(table.topic)))
    return routes


def _key_columns(
    configured: object, name: str, schema: str, table: str
) -> tuple[str, ...] | None:
    if isinstance(configured, Sequence) and not isinstance(configured, str):
        return tuple(str(c) for c in configured)
    if isinstance(configured, Mapping):
        for candidate in (name, f"{schema}.{table}" if schema else table, table):
            columns = configured.get(candidate)
            if columns:
                return tuple(str(c) for c in columns)
    return None
