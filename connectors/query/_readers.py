"""From a config to readers: resolve each table (or the custom query), resume its cursor.

A reader is a target (what is read, its schemas and topic), a cursor (where it stands in its
mode) and a record factory (how its rows become records).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from connectors.query._cursor_base import PollingCursor
from connectors.query._cursors import cursor_for
from connectors.query._records import RecordFactory
from connectors.query._targets import Target, query_target, reflect_table, table_target
from connectors.query.config import QuerySourceConfig
from connectors.query.offsets import PollingOffset
from liberate.database import mask_url
from liberate.errors import ConfigError, PrerequisiteError
from liberate.records import Primitive
from liberate.streams.base import partition_key

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

#: a deferred ``Target`` lookup: reflection happens when it is called
Resolver = Callable[[], Target]
StoredOffsets = Mapping[str, Mapping[str, Primitive]]


@dataclass
class Reader:
    """One target being read: what, where it stands, and how its rows become records."""

    target: Target
    cursor: PollingCursor
    records: RecordFactory


def target_resolvers(
    conn: Connection, config: QuerySourceConfig, url: URL
) -> list[tuple[str, Resolver]]:
    """``(label, resolve)`` for each table of ``config`` (or its custom query)."""
    if config.query is not None:
        query = config.query
        keys = config.key_columns_for(config.name) or []

        def resolve_query() -> Target:
            return query_target(
                conn, query, source=config.name, topic=config.topic_for("", ""), key_columns=keys
            )

        return [(f"custom query of {config.name}", resolve_query)]
    default_schema = sa.inspect(conn).default_schema_name
    where = mask_url(url)
    resolvers: list[tuple[str, Resolver]] = []
    for name in config.tables:

        def resolve_table(name: str = name) -> Target:
            table = reflect_table(conn, name, where=where)
            topic = config.topic_for(table.schema or default_schema or "", table.name)
            if not _TOPIC_NAME.match(topic):
                raise ConfigError(
                    f"table {name} would write topic {topic!r}, which is not a valid topic name",
                    hint="topic names use letters, digits, '.', '_' and '-': set a topic: template",
                )
            return table_target(
                table,
                label=name,
                topic=topic,
                default_schema=default_schema,
                key_columns=config.key_columns_for(name),
                dialect=conn.dialect.name,
            )

        resolvers.append((name, resolve_table))
    return resolvers


def build_readers(
    conn: Connection, config: QuerySourceConfig, url: URL, offsets: StoredOffsets
) -> list[Reader]:
    """A reader per target, each resumed from its stored offset."""
    db = _database_name(url)
    readers: list[Reader] = []
    topics: dict[str, str] = {}
    for label, resolve in target_resolvers(conn, config, url):
        target = resolve()
        if target.topic in topics:
            raise ConfigError(
                f"tables {topics[target.topic]} and {label} would both write topic "
                f"{target.topic!r}",
                hint="add {schema} to the topic template",
            )
        topics[target.topic] = label
        stored = stored_offset(offsets, target)
        cursor = cursor_for(target, config, stored, dialect=conn.dialect.name)
        factory = RecordFactory(target, envelope=config.envelope, source_name=config.name, db=db)
        readers.append(Reader(target, cursor, factory))
    return readers


def stored_offset(offsets: StoredOffsets, target: Target) -> PollingOffset | None:
    """The stored offset of ``target``, if any."""
    stored = offsets.get(partition_key(target.partition))
    if stored is None:
        return None
    try:
        return PollingOffset.from_map(stored)
    except ValueError as exc:
        raise PrerequisiteError(
            f"the stored offset of {target.label} cannot be read: {exc}",
            hint="reset this source's offsets to read the table again",
        ) from exc


def count_rows(conn: Connection, target: Target, condition: sa.ColumnElement[bool]) -> int:
    """How many rows of ``target`` match ``condition``."""
    query = sa.select(sa.func.count()).select_from(target.from_clause).where(condition)
    return int(conn.execute(query).scalar() or 0)


def _database_name(url: URL) -> str:
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database:
        return Path(database).stem
    return database
