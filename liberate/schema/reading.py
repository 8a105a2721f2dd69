"""How sources read a reflected table so that its values are the type contract's (docs/types.md).

SQLAlchemy's result processors are made for applications, not for exact copies. Five MySQL /
MariaDB types are read differently, by every source that selects them (the query source and
the MySQL connector's snapshot), so a value read by SELECT equals the value decoded from the
binlog:

- FLOAT is selected as ``f + 0e0`` (a DOUBLE holding the exact 32-bit value): the text
  protocol prints a FLOAT with 6 significant digits, the binlog holds all of it;
- DOUBLE keeps PyMySQL's float (reflected DOUBLE is ``asdecimal``: SQLAlchemy would round it
  to a Decimal of 10 fractional digits);
- TIME keeps PyMySQL's ``timedelta`` (SQLAlchemy folds durations outside a day, and negative
  ones, into a time of day);
- SET keeps the server's ``a,c`` text (SQLAlchemy makes an unordered Python set of it);
- BIT keeps PyMySQL's big-endian bytes (SQLAlchemy makes an int of them).

Two SQLite types are read as sqlite3 returns them, and the type contract's converters check
them: NUMERIC/DECIMAL (a column of NUMERIC affinity holds an int, a float or any text;
SQLAlchemy rounds floats to 10 digits and fails on text) and JSON (SQLAlchemy parses it, and
a document that is a JSON string would come out as bare text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

MYSQL_DIALECTS = frozenset({"mysql", "mariadb"})


class _DriverValue:
    """Mixed into a type: its values are what the driver returns, unprocessed. (Each type
    still says ``cache_ok`` itself: SQLAlchemy reads it from the class's own namespace.)"""

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return None


class ExactFloat(_DriverValue, mysql.FLOAT):
    """MySQL FLOAT read as the DOUBLE of its exact 32-bit value."""

    cache_ok = True

    def column_expression(self, colexpr: Any) -> Any:
        return colexpr + sa.literal_column("0e0")


class RawDouble(_DriverValue, mysql.DOUBLE):
    """MySQL DOUBLE as PyMySQL returns it (a float, every digit)."""

    cache_ok = True


class RawTime(_DriverValue, mysql.TIME):
    """MySQL TIME as PyMySQL returns it (a ``timedelta``, -838:59:59..838:59:59)."""

    cache_ok = True


class RawSet(_DriverValue, mysql.SET):
    """MySQL SET as the server sends it: members in definition order, comma-separated."""

    cache_ok = True


class RawBit(_DriverValue, mysql.BIT):
    """MySQL BIT(n) as the server sends it: (n + 7) // 8 big-endian bytes."""

    cache_ok = True


class RawNumeric(_DriverValue, sa.Numeric[Any]):
    """SQLite NUMERIC/DECIMAL as sqlite3 returns it (int, float or str)."""

    cache_ok = True


class RawJson(_DriverValue, sa.JSON):
    """SQLite JSON as stored: its text."""

    cache_ok = True

    def _gen_dialect_impl(self, dialect: Any) -> Any:
        return self  # not SQLite's JSON implementation, which parses


def sqlite_reading_type(col_type: Any) -> Any:
    """The type a SQLite column of reflected ``col_type`` is selected with."""
    if isinstance(col_type, sa.Numeric) and not isinstance(col_type, sa.Float | RawNumeric):
        return RawNumeric(col_type.precision, col_type.scale)
    if isinstance(col_type, sa.JSON) and not isinstance(col_type, RawJson):
        return RawJson()
    return col_type


def reading_type(col_type: Any) -> Any:
    """The type a MySQL column of reflected ``col_type`` is selected with (see the module doc)."""
    if isinstance(col_type, mysql.FLOAT) and not isinstance(col_type, ExactFloat):
        return ExactFloat()
    if isinstance(col_type, mysql.DOUBLE) and not isinstance(col_type, RawDouble):
        return RawDouble()
    if isinstance(col_type, mysql.TIME) and not isinstance(col_type, RawTime):
        return RawTime(fsp=col_type.fsp)
    if isinstance(col_type, mysql.SET) and not isinstance(col_type, RawSet):
        return RawSet(*col_type.values)
    if isinstance(col_type, mysql.BIT) and not isinstance(col_type, RawBit):
        return RawBit(col_type.length)
    return col_type


def reading_table(table: sa.Table, dialect: str | None) -> sa.Table:
    """``table`` as a source selects it from a ``dialect`` database: a copy with the reading
    types of MySQL and SQLite columns; the table itself for other dialects."""
    if dialect in MYSQL_DIALECTS:
        read = reading_type
    elif dialect == "sqlite":
        read = sqlite_reading_type
    else:
        return table
    columns = []
    for column in table.columns:
        copy = column._copy()
        copy.type = read(column.type)
        copy.info.update(column.info)
        columns.append(copy)
    return sa.Table(table.name, sa.MetaData(), *columns, schema=table.schema)


def name_unrecognised_mysql_types(conn: sa.engine.Connection, table: sa.Table) -> sa.Table:
    """Record the catalog's type (``COLUMN_TYPE``: ``point``, ``inet6``, ``uuid``...) of each
    column SQLAlchemy did not recognise in its ``info``, for the unsupported-type error."""
    if not any(isinstance(c.type, sa.types.NullType) for c in table.columns):
        return table
    rows = conn.execute(
        sa.text(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS"
            " WHERE TABLE_NAME = :table AND TABLE_SCHEMA = COALESCE(:schema, DATABASE())"
        ),
        {"table": table.name, "schema": table.schema},
    ).all()
    return label_unrecognised_types(table, {str(r[0]): str(r[1]) for r in rows})


def label_unrecognised_types(table: sa.Table, catalog_types: Mapping[str, str]) -> sa.Table:
    """Put the catalog's type name (by column name) into the ``info`` of each column of
    ``table`` SQLAlchemy reflected as ``NullType``: the unsupported-type error shows it."""
    from liberate.schema.postgres_types import TYPE_NAME_INFO

    for column in table.columns:
        if isinstance(column.type, sa.types.NullType) and column.name in catalog_types:
            column.info[TYPE_NAME_INFO] = catalog_types[column.name]
    return table
