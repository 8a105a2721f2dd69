"""The captured tables of a MySQL source: reflected for the snapshot, rebuilt per TABLE_MAP.

``Catalog`` is what ``ChangeStream`` asks about tables. A TABLE_MAP's table is built once per
shape (columns, types, key): its schema through ``build_table_schema`` and its generated row
decoder. When a TABLE_MAP describes the table exactly as the catalog did at open, the stream
reuses the snapshot's schema objects, so both write one schema version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError

from connectors.mysql._ddl import Statement, StatementKind, TableName
from connectors.mysql._initial import SnapshotTable
from connectors.mysql._rowcodec import compile_row_codec
from connectors.mysql._schemas import binlog_table, reading_table, shape, table_schema
from connectors.mysql._stream import CapturedTable
from connectors.mysql._tablemap import TableMap
from connectors.mysql.config import MySqlSourceConfig
from liberate.envelope import envelope_schema, source_block, source_schema
from liberate.errors import ConfigError, FatalError, PrerequisiteError
from liberate.schema.tables import TableSchema

log = logging.getLogger(__name__)

CONNECTOR = "mysql"

#: the position fields of the ``source`` block (Debezium's MySQL names)
SOURCE_SCHEMA = source_schema(
    CONNECTOR,
    [
        {"name": "file", "type": "string"},
        {"name": "pos", "type": "long"},
        {"name": "row", "type": "int"},
        {"name": "gtid", "type": ["null", "string"], "default": None},
        {"name": "server_id", "type": "long"},
    ],
)


def table_names(config: MySqlSourceConfig, default_database: str | None) -> list[TableName]:
    """The configured tables as ``(database, table)``; unqualified ones in the URL's database."""
    names: list[TableName] = []
    for entry in config.tables:
        database, _, table = entry.rpartition(".")
        if not database:
            if not default_database:
                raise ConfigError(
                    f"table {entry!r} has no database and the database URL names none",
                    hint="write it as database.table, or put the database in the URL",
                )
            database = default_database
        names.append((database, table))
    return names


class Catalog:
    """The captured tables (implements ``_stream.TableCatalog``)."""

    def __init__(self, config: MySqlSourceConfig, names: list[TableName],
                 encodings: Mapping[int, str]) -> None:
        self.config = config
        self.names = set(names)
        self.ordered = names
        self._encodings = dict(encodings)
        self.snapshot_tables: dict[TableName, SnapshotTable] = {}
        self._by_shape: dict[tuple[Any, ...], CapturedTable] = {}

    def reflect(self, conn: Connection) -> list[SnapshotTable]:
        """Reflect every captured table (missing tables, keys and types fail here)."""
        tables = [self.reflect_table(conn, name) for name in self.ordered]
        self.snapshot_tables = {(t.table.schema or "", t.table.name): t for t in tables}
        return tables

    def reflect_table(self, conn: Connection, name: TableName) -> SnapshotTable:
        """Reflect one table; raises PrerequisiteError or UnsupportedTypeError naming it."""
        database, table = name
        try:
            reflected = sa.Table(table, sa.MetaData(), schema=database, autoload_with=conn)
        except NoSuchTableError as exc:
            raise PrerequisiteError(
                f"table {database}.{table} does not exist",
                hint="check tables: (names are case-sensitive on most servers)",
            ) from exc
        return self.describe(reflected)

    def describe(self, reflected: sa.Table) -> SnapshotTable:
        """How the snapshot reads a reflected table (``schema`` is its database)."""
        database, table = reflected.schema or "", reflected.name
        reading = reading_table(reflected)
        topic = self.config.topic_for(database, table)
        schema = table_schema(reading, namespace=topic)
        text_key = any(
            isinstance(reading.c[k].type, sa.String) for k in schema.key_columns
        )
        return SnapshotTable(
            label=f"{database}.{table}",
            table=reading,
            schema=schema,
            topic=topic,
            key_schema=schema.key_schema,
            value_schema=envelope_schema(schema.value_schema, SOURCE_SCHEMA),
            source=self._source(database, table),
            text_key=text_key,
        )

    def _source(self, database: str, table: str) -> dict[str, Any]:
        return source_block(
            connector=CONNECTOR, name=self.config.name, ts_ms=0, db=database, schema=None,
            table=table,
        )

    # -- TableCatalog -----------------------------------------------------------------------

    @property
    def encodings(self) -> Mapping[int, str]:
        return self._encodings

    def captured(self, name: TableName) -> bool:
        return name in self.names

    def table(self, table_map: TableMap) -> CapturedTable:
        key = shape(table_map)
        entry = self._by_shape.get(key)
        if entry is None:
            entry = self._build(table_map)
            self._by_shape[key] = entry
        return entry

    def _build(self, table_map: TableMap) -> CapturedTable:
        name = (table_map.database, table_map.table)
        label = f"{name[0]}.{name[1]}"
        if not table_map.named:
            raise FatalError(
                f"the binlog has no column names for {label} (binlog_row_metadata is not FULL "
                "for this event)",
                hint="SET GLOBAL binlog_row_metadata=FULL (and in the server config); changes "
                "logged before that cannot be labelled",
            )
        topic = self.config.topic_for(*name)
        schema = table_schema(binlog_table(table_map), namespace=topic)
        codec = compile_row_codec(table_map, schema.fields, encodings=self.encodings)
        snapshot = self.snapshot_tables.get(name)
        if snapshot is not None and _same(snapshot.schema, schema):
            key_schema, value_schema = snapshot.key_schema, snapshot.value_schema
        else:
            if snapshot is not None:
                log.info("%s: rows now carry columns %s", label, ", ".join(schema.columns))
            key_schema = schema.key_schema
            value_schema = envelope_schema(schema.value_schema, SOURCE_SCHEMA)
        return CapturedTable(
            name=name, label=label, topic=topic, codec=codec,
            key_fields=_key_fields(schema), key_schema=key_schema, value_schema=value_schema,
            source=self._source(*name),
        )

    def current(self, name: TableName) -> CapturedTable:
        snapshot = self.snapshot_tables[name]
        return CapturedTable(
            name=name, label=snapshot.label, topic=snapshot.topic, codec=None,
            key_fields=_key_fields(snapshot.schema), key_schema=snapshot.key_schema,
            value_schema=snapshot.value_schema, source=snapshot.source,
        )

    def schema_changed(self, statement: Statement, tables: list[TableName], sql: str) -> None:
        where = ", ".join(f"{db}.{table}" for db, table in tables)
        text = " ".join(sql.split())[:300]
        if statement.kind in (StatementKind.DROP_TABLE, StatementKind.DROP_DATABASE):
            log.warning("captured table(s) %s dropped: %s", where, text)
        elif statement.kind is StatementKind.RENAME_TABLE or statement.renames:
            log.warning("captured table(s) %s renamed: %s (rows are captured by the "
                        "configured names)", where, text)
        else:
            log.info("schema change on %s: %s", where, text)


def _key_fields(schema: TableSchema) -> tuple[str, ...]:
    return tuple(schema.fields[schema.columns.index(k)] for k in schema.key_columns)


def _same(a: TableSchema, b: TableSchema) -> bool:
    return (
        a.value_schema.fingerprint == b.value_schema.fingerprint
        and a.key_schema.fingerprint == b.key_schema.fingerprint
    )
