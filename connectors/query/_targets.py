"""What a query source reads: a reflected table or a custom query, with its Avro schemas.

A custom query is described by the database itself: the source creates a temporary view of it
(PostgreSQL, SQLite; inside a transaction that is rolled back) or an empty temporary table
(MySQL/MariaDB, which have no temporary views) and reflects that like any table, so custom
query columns get exactly the types table columns get. Nothing persists; it needs the right to
create temporary objects (PostgreSQL's TEMP privilege, MySQL's CREATE TEMPORARY TABLES).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, NoSuchTableError
from sqlalchemy.sql.elements import ColumnElement

from liberate.errors import PrerequisiteError, UnsupportedTypeError
from liberate.records import Primitive
from liberate.schema.postgres_types import name_unrecognised_types
from liberate.schema.reading import (
    MYSQL_DIALECTS,
    name_unrecognised_mysql_types,
    reading_table,
)
from liberate.schema.tables import TableSchema, build_table_schema

#: name of the temporary view/table that describes a custom query (our constant, quoted)
SHAPE_NAME = "liberate_query_shape"
#: alias of a custom query wrapped as a subquery
QUERY_ALIAS = "liberate_query"


@dataclass(frozen=True)
class Target:
    """One thing a query source reads, with where its records go."""

    label: str
    partition: Mapping[str, Primitive]
    topic: str
    db_schema: str | None
    db_table: str | None
    from_clause: sa.FromClause
    schema: TableSchema
    nullable: frozenset[str]

    @property
    def columns(self) -> list[ColumnElement[Any]]:
        """The selected columns, in ``schema.columns`` order."""
        return [self.from_clause.c[name] for name in self.schema.columns]

    def column(self, name: str, *, role: str) -> ColumnElement[Any]:
        """The column ``name``, or a PrerequisiteError naming what it was meant to be."""
        if name not in self.from_clause.c:
            known = ", ".join(self.schema.columns)
            raise PrerequisiteError(
                f"{role} {name} not found in {self.label}",
                hint=f"{role} must name one of its columns: {known}",
            )
        column: ColumnElement[Any] = self.from_clause.c[name]
        return column


def split_table_name(name: str) -> tuple[str | None, str]:
    """``"schema.table"`` -> ``("schema", "table")``; ``"table"`` -> ``(None, "table")``."""
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def reflect_table(
    conn: Connection,
    name: str,
    *,
    where: str,
) -> sa.Table:
    """The reflected table ``name`` (``[schema.]table``); PrerequisiteError when it is missing."""
    schema, table = split_table_name(name)
    try:
        reflected = sa.Table(table, sa.MetaData(), schema=schema, autoload_with=conn)
    except NoSuchTableError as exc:
        raise PrerequisiteError(
            f"table {name} not found in {where}",
            hint="check tables: (spelling, 'schema.table' for another schema) and that the "
            "user may read it",
        ) from exc
    if conn.dialect.name == "postgresql":
        # A type SQLAlchemy does not know is refused by its catalog name (point, xml...).
        name_unrecognised_types(conn, reflected)
    elif conn.dialect.name in MYSQL_DIALECTS:
        name_unrecognised_mysql_types(conn, reflected)
    return reflected


def table_target(
    table: sa.Table,
    *,
    label: str,
    topic: str,
    default_schema: str | None,
    key_columns: Sequence[str] | None,
    dialect: str,
) -> Target:
    """A target reading a reflected ``table`` (reflected from a ``dialect`` database)."""
    table = reading_table(table, dialect)
    schema = build_table_schema(
        table, namespace=topic, key_columns=key_columns, dialect=dialect
    )
    return Target(
        label=label,
        partition={"table": label},
        topic=topic,
        db_schema=table.schema or default_schema,
        db_table=table.name,
        from_clause=table,
        schema=schema,
        # Primary key columns never hold NULL, whatever the catalog says (SQLite reports its
        # INTEGER PRIMARY KEY as nullable).
        nullable=frozenset(c.name for c in table.columns if c.nullable and not c.primary_key),
    )


def query_target(
    conn: Connection,
    query: str,
    *,
    source: str,
    topic: str,
    key_columns: Sequence[str],
) -> Target:
    """A target reading the custom ``query``, wrapped as a subquery."""
    shape = describe_query(conn, query)
    untyped = [c.name for c in shape.columns if isinstance(c.type, sa.types.NullType)]
    if untyped:
        raise UnsupportedTypeError(
            f"the database reports no type for column(s) {', '.join(untyped)} of the custom query",
            hint="SQLite types only columns selected directly from tables: select table "
            "columns, or compute the value in a view with a declared type",
        )
    # Any column of a query may be NULL (an outer join makes NOT NULL columns nullable).
    columns = [sa.Column(c.name, c.type, nullable=True) for c in shape.columns]
    table = reading_table(sa.Table(source, sa.MetaData(), *columns), conn.dialect.name)
    schema = build_table_schema(
        table, namespace=topic, key_columns=key_columns, dialect=conn.dialect.name
    )
    typed = [sa.column(c.name, c.type) for c in table.columns]
    subquery = sa.text(escape_text(query)).columns(*typed).subquery(QUERY_ALIAS)
    return Target(
        label=f"custom query of {source}",
        partition={"query": source},
        topic=topic,
        db_schema=None,
        db_table=None,
        from_clause=subquery,
        schema=schema,
        nullable=frozenset(c.name for c in columns),
    )


def escape_text(sql: str) -> str:
    """``sql`` for ``sa.text`` with every colon literal (``::int`` casts, ``':x'`` strings)."""
    return sql.replace(":", "\\:")


def describe_query(conn: Connection, query: str) -> sa.Table:
    """The result columns of ``query`` with their types, as a reflected temporary relation."""
    body = escape_text(query)
    dialect = conn.dialect.name
    if conn.in_transaction():
        conn.rollback()
    try:
        if dialect in ("mysql", "mariadb"):
            # No temporary views in MySQL: an empty temporary table has the same column types.
            empty = "SELECT * FROM (" + body + ") AS q LIMIT 0"  # noqa: S608 - the user's SELECT
            return _reflect_shape(
                conn,
                create="CREATE TEMPORARY TABLE " + SHAPE_NAME + " AS " + empty,
                drop="DROP TEMPORARY TABLE " + SHAPE_NAME,
            )
        if dialect == "sqlite":
            # pysqlite runs DDL outside transactions: drop the view explicitly.
            return _reflect_shape(
                conn,
                create="CREATE TEMPORARY VIEW " + SHAPE_NAME + " AS " + body,
                drop="DROP VIEW temp." + SHAPE_NAME,
                schema="temp",
            )
        # Transactional DDL (PostgreSQL): the rollback below removes the view.
        return _reflect_shape(conn, create="CREATE TEMPORARY VIEW " + SHAPE_NAME + " AS " + body)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise PrerequisiteError(
            f"cannot describe the custom query: {reason}",
            hint="run the query by hand to check it; describing it creates a temporary "
            "view (temporary table on MySQL), which needs the TEMP / CREATE TEMPORARY TABLES "
            "privilege and a primary server, not a read-only standby",
        ) from exc
    finally:
        conn.rollback()


def _reflect_shape(
    conn: Connection, *, create: str, drop: str | None = None, schema: str | None = None
) -> sa.Table:
    # SHAPE_NAME is our own constant identifier; ``create`` embeds the user's own SELECT.
    conn.execute(sa.text(create))
    try:
        return sa.Table(SHAPE_NAME, sa.MetaData(), schema=schema, autoload_with=conn)
    finally:
        if drop is not None:
            conn.execute(sa.text(drop))
