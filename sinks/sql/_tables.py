"""Target tables: reflected once and cached, created and evolved from the record schemas.

Columns come from the row schema (an entity value or a Debezium ``after`` record) plus the
key schema, whose fields form the primary key. An Avro field carrying ``liberate.column``
names its column with that original name. DDL always goes through SQLAlchemy constructs
compiled for the dialect (``CreateTable``; ``AddColumn`` below, whose identifiers the
dialect's preparer quotes), and runs in its own transaction before the data transaction,
because MySQL commits implicitly at every DDL statement.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.ddl import ExecutableDDLElement

from liberate.errors import FatalError
from liberate.schema.avro import AvroSchema
from liberate.schema.types import COLUMN_ATTRIBUTE, sql_type, unwrap_nullable
from sinks.sql._errors import wrap

log = logging.getLogger(__name__)

#: MySQL tables are created in utf8mb4 with a binary collation, so that keys that differ only
#: in case or accents stay distinct rows, as they are in the source.
# Table and column name limits; SQLAlchemy's MySQL dialect reports 255 (its label limit).
_IDENTIFIER_LIMITS = {"mysql": 64, "mariadb": 64}

MYSQL_CHARSET = "utf8mb4"
MYSQL_COLLATION = "utf8mb4_bin"


@dataclass(frozen=True, slots=True)
class FieldColumn:
    """One Avro field as a target column."""

    column: str
    field: str
    type: Any
    nullable: bool
    key: bool
    from_key: bool  # only the key record has it (the row record lacks the field)


def column_name(field: dict[str, Any]) -> str:
    """The column of an Avro field: its original name when the Avro name had to differ."""
    original = field.get(COLUMN_ATTRIBUTE)
    return original if isinstance(original, str) and original else str(field["name"])


def field_columns(row_schema: AvroSchema, key_schema: AvroSchema | None) -> list[FieldColumn]:
    """The columns of rows of ``row_schema`` keyed by ``key_schema``, in table order.

    Key fields the row lacks come first, then the row's fields in order.
    """
    key_fields = {column_name(f): f for f in key_schema.fields} if key_schema else {}
    columns: list[FieldColumn] = []
    row_columns = {column_name(f) for f in row_schema.fields}
    for name, spec in key_fields.items():
        if name not in row_columns:
            columns.append(FieldColumn(name, spec["name"], spec["type"], False, True, True))
    for spec in row_schema.fields:
        name = column_name(spec)
        key_spec = key_fields.get(name)
        if key_spec is not None:
            columns.append(FieldColumn(name, spec["name"], key_spec["type"], False, True, False))
        else:
            _, nullable = unwrap_nullable(spec["type"])
            columns.append(FieldColumn(name, spec["name"], spec["type"], nullable, False, False))
    return columns


def column_type(field_type: Any, *, key: bool) -> sa.types.TypeEngine[Any]:
    """The type a created column gets: the contract's ``sql_type``, with sink-side variants.

    - SQLite has no exact decimal storage (NUMERIC affinity keeps 15 digits): decimals are
      stored as their exact text.
    - Text keys are bounded only where MySQL needs it to index them; PostgreSQL keeps TEXT.
    - Byte keys become VARBINARY on MySQL, which cannot index a BLOB.
    """
    created = sql_type(field_type, key=key)
    if isinstance(created, sa.Numeric) and not isinstance(created, sa.Float):
        return created.with_variant(sa.Text(), "sqlite")
    if key and isinstance(created, sa.String):
        return created.with_variant(sa.Text(), "postgresql")
    if key and isinstance(created, sa.LargeBinary):
        return sa.LargeBinary().with_variant(mysql.VARBINARY(255), "mysql", "mariadb")
    return created


class AddColumn(ExecutableDDLElement):
    """``ALTER TABLE <table> ADD COLUMN <column spec>``, quoted and typed by the dialect."""

    def __init__(self, column: sa.Column[Any]) -> None:
        self.column = column


@compiles(AddColumn)
def _compile_add_column(element: AddColumn, compiler: DDLCompiler, **kw: Any) -> str:
    table = compiler.preparer.format_table(element.column.table)
    return f"ALTER TABLE {table} ADD COLUMN {compiler.get_column_specification(element.column)}"


class TableCatalog:
    """The target tables of one sink: reflection cache, creation and evolution.

    Not thread-safe: used by the sink's one writing thread.
    """

    def __init__(
        self, engine: Engine, *, schema: str | None, auto_create: bool, auto_evolve: bool
    ) -> None:
        self._engine = engine
        self._schema = schema
        self._auto_create = auto_create
        self._auto_evolve = auto_evolve
        self._tables: dict[str, sa.Table | None] = {}
        self.generation = 0  # bumped whenever a cached table is dropped or replaced

    def where(self, name: str) -> str:
        """``schema.table`` as shown in messages."""
        return f"{self._schema}.{name}" if self._schema else name

    def find(self, name: str) -> sa.Table | None:
        """The reflected table ``name``, or None when it does not exist (cached)."""
        if name not in self._tables:
            self._tables[name] = self._reflect(name)
        return self._tables[name]

    def forget(self) -> None:
        """Drop every cached reflection (a table changed under us)."""
        self._tables.clear()
        self.generation += 1

    def ensure(
        self, name: str, row_schema: AvroSchema, key_schema: AvroSchema | None, *, upsert: bool
    ) -> sa.Table:
        """The table ``name`` with a column for every field, created or evolved as allowed."""
        self._check_identifier(name, "table")
        columns = field_columns(row_schema, key_schema)
        for column in columns:
            self._check_identifier(column.column, "column")
        table = self.find(name)
        if table is None:
            table = self._create(name, columns)
        missing = [c for c in columns if c.column not in table.c]
        if missing:
            table = self._refresh(name)  # another writer may have added them already
            assert table is not None
            missing = [c for c in columns if c.column not in table.c]
        if missing:
            table = self._evolve(table, missing, row_schema)
        if upsert:
            self._check_key(table, [c.column for c in columns if c.key])
        return table

    def _create(self, name: str, columns: Sequence[FieldColumn]) -> sa.Table:
        if not self._auto_create:
            raise FatalError(
                f"target table {self.where(name)} does not exist",
                hint="create the table, or set auto_create: true to let the sink create it",
            )
        created_columns: list[sa.schema.SchemaItem] = [
            sa.Column(
                c.column,
                column_type(c.type, key=c.key),
                primary_key=c.key,
                nullable=c.nullable,
                autoincrement=False,
            )
            for c in columns
        ]
        table = sa.Table(
            name,
            sa.MetaData(),
            *created_columns,
            schema=self._schema,
            mysql_charset=MYSQL_CHARSET,
            mysql_collate=MYSQL_COLLATION,
        )
        self._ddl(sa.schema.CreateTable(table, if_not_exists=True), f"create {self.where(name)}")
        log.info("created table %s", self.where(name))
        created = self._refresh(name)
        if created is None:
            raise FatalError(f"table {self.where(name)} was created but cannot be read back")
        return created

    def _evolve(
        self, table: sa.Table, missing: Sequence[FieldColumn], row_schema: AvroSchema
    ) -> sa.Table:
        names = ", ".join(c.column for c in missing)
        if not self._auto_evolve:
            raise FatalError(
                f"table {self.where(table.name)} lacks column(s) {names} of schema "
                f"{row_schema.name}",
                hint="add the column(s), or set auto_evolve: true to let the sink add them",
            )
        if any(c.key for c in missing):
            raise FatalError(
                f"table {self.where(table.name)} lacks key column(s) {names}",
                hint="the record key must match the table's primary key; fix the table",
            )
        for column in missing:
            # Added columns are nullable whatever the field says: existing rows have no value.
            added = sa.Column(column.column, column_type(column.type, key=False), nullable=True)
            sa.Table(table.name, sa.MetaData(), added, schema=self._schema)
            self._ddl(AddColumn(added), f"add column {column.column} to {self.where(table.name)}")
            log.info("added column %s to table %s", column.column, self.where(table.name))
        evolved = self._refresh(table.name)
        assert evolved is not None
        still_missing = [c.column for c in missing if c.column not in evolved.c]
        if still_missing:
            raise FatalError(f"columns {still_missing} were added but cannot be read back")
        return evolved

    def _check_key(self, table: sa.Table, key_columns: list[str]) -> None:
        wanted = set(key_columns)
        if not wanted:
            raise FatalError(
                f"records for table {self.where(table.name)} have no key fields",
                hint="upsert mode needs the primary key as the record key; use mode: insert",
            )
        if {c.name for c in table.primary_key.columns} == wanted:
            return
        inspector = sa.inspect(self._engine)
        try:
            uniques = [
                set(u["column_names"])
                for u in inspector.get_unique_constraints(table.name, schema=self._schema)
            ]
            uniques += [
                {str(c) for c in i["column_names"]}
                for i in inspector.get_indexes(table.name, schema=self._schema)
                if i.get("unique")
            ]
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, f"reading the keys of {self.where(table.name)}") from exc
        if wanted not in uniques:
            raise FatalError(
                f"table {self.where(table.name)} has no primary key or unique constraint on "
                f"the record key ({', '.join(key_columns)}), which upserts need",
                hint="make the key columns the primary key, or use mode: insert",
            )

    def _refresh(self, name: str) -> sa.Table | None:
        self._tables[name] = self._reflect(name)
        self.generation += 1
        return self._tables[name]

    def _reflect(self, name: str) -> sa.Table | None:
        try:
            with self._engine.connect() as conn:
                return _reflect(conn, name, self._schema)
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, f"reading table {self.where(name)}") from exc

    def _ddl(self, statement: ExecutableDDLElement, doing: str) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(statement)
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, doing) from exc

    def _check_identifier(self, name: str, what: str) -> None:
        dialect = self._engine.dialect
        limit = _IDENTIFIER_LIMITS.get(dialect.name, dialect.max_identifier_length)
        if not name or len(name) > limit:
            raise FatalError(
                f"{what} name {name!r} is empty or longer than the {limit} characters "
                f"{dialect.name} allows",
                hint="set the sink's table template to a shorter name"
                if what == "table"
                else "rename the field in the source (e.g. a column alias)",
            )


def _reflect(conn: Connection, name: str, schema: str | None) -> sa.Table | None:
    if not sa.inspect(conn).has_table(name, schema=schema):
        return None
    return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
