"""The captured tables of a MySQL source: reflected for the snapshot, rebuilt per TABLE_MAP.

``Catalog`` is what ``ChangeStream`` asks about tables. A TABLE_MAP's table is built once per
shape (columns, types, key): its schema through ``build_table_schema`` and its generated row
decoder. When a TABLE_MAP describes the table exactly as the catalog did at open, the stream
reuses the snapshot's schema objects, so both write one schema version.

Column defaults (the Avro field defaults, docs/schemas.md) are not in the binlog: a TABLE_MAP's
columns get the defaults the catalog reflected, and a shape with a column the catalog has not
seen (an ALTER TABLE ADD COLUMN mid-stream) has the table's defaults read again first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, NoSuchTableError

from connectors.mysql._ddl import Statement, StatementKind, TableName
from connectors.mysql._initial import SnapshotTable
from connectors.mysql._rowcodec import compile_row_codec
from connectors.mysql._schemas import binlog_table, reading_table, shape, table_schema
from connectors.mysql._stream import CapturedTable
from connectors.mysql._tablemap import TableMap
from connectors.mysql.config import MySqlSourceConfig
from liberate.envelope import envelope_schema, source_block, source_schema
from liberate.errors import ConfigError, FatalError, PrerequisiteError, RetriableError
from liberate.schema.reading import name_unrecognised_mysql_types
from liberate.schema.tables import TableSchema, column_default_text

log = logging.getLogger(__name__)

#: reads the column defaults of a table as the catalog has them now
DefaultsReader = Callable[[TableName], dict[str, str | None]]

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
                 encodings: Mapping[int, str],
                 defaults_reader: DefaultsReader | None = None) -> None:
        self.config = config
        self.names = set(names)
        self.ordered = names
        self._encodings = dict(encodings)
        self.snapshot_tables: dict[TableName, SnapshotTable] = {}
        self._by_shape: dict[tuple[Any, ...], CapturedTable] = {}
        # table -> column -> default SQL text (None: no default), as last reflected
        self._defaults: dict[TableName, dict[str, str | None]] = {}
        self._read_defaults = defaults_reader

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
        return self.describe(name_unrecognised_mysql_types(conn, reflected))

    def describe(self, reflected: sa.Table) -> SnapshotTable:
        """How the snapshot reads a reflected table (``schema`` is its database)."""
        database, table = reflected.schema or "", reflected.name
        self._defaults[(database, table)] = column_defaults(reflected)
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
        columns = _with_defaults(binlog_table(table_map), self._defaults_of(name, table_map))
        schema = table_schema(columns, namespace=topic)
        key_fields = _key_fields(schema)
        codec = compile_row_codec(
            table_map, schema.fields, encodings=self.encodings, key_fields=key_fields
        )
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
            key_fields=key_fields, key_schema=key_schema, value_schema=value_schema,
            source=self._source(*name),
        )

    def _defaults_of(self, name: TableName, table_map: TableMap) -> Mapping[str, str | None]:
        known = self._defaults.get(name)
        new = known is None or any(c.name not in known for c in table_map.columns)
        if new and self._read_defaults is not None:
            known = self._defaults[name] = self._read_defaults(name)
        return known or {}

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


def column_defaults(table: sa.Table) -> dict[str, str | None]:
    """The default SQL text of each column of a reflected table (None: no default)."""
    return {column.name: column_default_text(column) for column in table.columns}


def read_column_defaults(engine: Engine, name: TableName) -> dict[str, str | None]:
    """The column defaults of table ``name`` as the catalog has them now ({} once dropped)."""
    database, table = name
    try:
        with engine.connect() as conn:
            reflected = sa.Table(table, sa.MetaData(), schema=database, autoload_with=conn)
    except NoSuchTableError:
        return {}
    except DBAPIError as exc:
        raise RetriableError(
            f"cannot read the column defaults of {database}.{table}: {exc.orig}",
            hint="the server is unreachable or busy; retrying",
        ) from exc
    return column_defaults(reflected)


def _with_defaults(table: sa.Table, defaults: Mapping[str, str | None]) -> sa.Table:
    """``table`` (built from a TABLE_MAP, which has no defaults) with the catalog's defaults."""
    for column in table.columns:
        text = defaults.get(column.name)
        if text is not None:
            column.server_default = sa.DefaultClause(sa.text(text))
    return table


def _key_fields(schema: TableSchema) -> tuple[str, ...]:
    return tuple(schema.fields[schema.columns.index(k)] for k in schema.key_columns)


def _same(a: TableSchema, b: TableSchema) -> bool:
    return (
        a.value_schema.fingerprint == b.value_schema.fingerprint
        and a.key_schema.fingerprint == b.key_schema.fingerprint
    )
