"""Table schemas of a MySQL source, from the catalog (snapshot) and from TABLE_MAP events (stream).

Both paths go through ``liberate.schema.tables.build_table_schema``: the snapshot gives it the
reflected table, the stream a table rebuilt from the TABLE_MAP's column metadata. For the
same table definition the two produce the same Avro schemas, and the stream labels every row
with the columns it was written with, even when the catalog has changed since.

Three reflected MySQL types are read differently from SQLAlchemy's defaults, so a snapshot
value equals the value decoded from the binlog:

- FLOAT is selected as ``f + 0e0`` (a DOUBLE holding the exact 32-bit value): the text
  protocol prints a FLOAT with 6 significant digits, the binlog holds all of it;
- TIME keeps PyMySQL's ``timedelta`` (SQLAlchemy folds durations outside a day into one);
- SET keeps the server's ``a,c`` text (SQLAlchemy makes an unordered Python set of it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from connectors.mysql import _tablemap as tm
from liberate.schema.tables import TableSchema, build_table_schema


class ExactFloat(mysql.FLOAT):
    """FLOAT read as the DOUBLE of its exact 32-bit value."""

    cache_ok = True

    def column_expression(self, colexpr: Any) -> Any:
        return colexpr + sa.literal_column("0e0")

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return None


class RawTime(mysql.TIME):
    """TIME as PyMySQL returns it (a ``timedelta``)."""

    cache_ok = True

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return None


class RawSet(mysql.SET):
    """SET as the server sends it: members in definition order, comma-separated."""

    cache_ok = True

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return None


def reading_table(table: sa.Table) -> sa.Table:
    """A copy of a reflected table whose columns are read as the binlog decoder reads them."""
    columns = [
        sa.Column(
            c.name, _reading_type(c.type), nullable=c.nullable, primary_key=c.primary_key,
            key=c.key,
        )
        for c in table.columns
    ]
    return sa.Table(table.name, sa.MetaData(), *columns, schema=table.schema)


def _reading_type(col_type: Any) -> Any:
    if isinstance(col_type, mysql.FLOAT):
        return ExactFloat()
    if isinstance(col_type, mysql.TIME):
        return RawTime(fsp=col_type.fsp)
    if isinstance(col_type, mysql.SET):
        return RawSet(*col_type.values)
    return col_type


def binlog_table(table_map: tm.TableMap) -> sa.Table:
    """The table a TABLE_MAP describes, with the SQL types its columns are stored as."""
    pk = set(table_map.primary_key)
    columns = [
        sa.Column(c.name, _binlog_type(c), nullable=c.nullable, primary_key=c.index in pk)
        for c in table_map.columns
    ]
    return sa.Table(table_map.table, sa.MetaData(), *columns, schema=table_map.database)


def _binlog_type(column: tm.BinlogColumn) -> Any:
    t = column.type
    unsigned = column.unsigned
    if t == tm.T_TINY:
        return mysql.TINYINT(unsigned=unsigned)
    if t == tm.T_SHORT:
        return mysql.SMALLINT(unsigned=unsigned)
    if t == tm.T_INT24:
        return mysql.MEDIUMINT(unsigned=unsigned)
    if t == tm.T_LONG:
        return mysql.INTEGER(unsigned=unsigned)
    if t == tm.T_LONGLONG:
        return mysql.BIGINT(unsigned=unsigned)
    if t == tm.T_FLOAT:
        return ExactFloat()
    if t == tm.T_DOUBLE:
        return mysql.DOUBLE()
    if t == tm.T_NEWDECIMAL:
        return mysql.DECIMAL(precision=column.precision, scale=column.scale)
    if t in (tm.T_DATE, tm.T_NEWDATE):
        return mysql.DATE()
    if t in (tm.T_DATETIME2, tm.T_DATETIME):
        return mysql.DATETIME(fsp=column.fsp)
    if t in (tm.T_TIMESTAMP2, tm.T_TIMESTAMP):
        return mysql.TIMESTAMP(fsp=column.fsp)
    if t in (tm.T_TIME2, tm.T_TIME):
        return RawTime(fsp=column.fsp)
    if t == tm.T_YEAR:
        return mysql.YEAR()
    if t in (tm.T_VARCHAR, tm.T_VAR_STRING):
        return mysql.VARBINARY(column.length) if column.is_binary else mysql.VARCHAR(column.length)
    if t == tm.T_STRING:
        return mysql.BINARY(column.length) if column.is_binary else mysql.CHAR(column.length)
    if t in (tm.T_BLOB, tm.T_TINY_BLOB, tm.T_MEDIUM_BLOB, tm.T_LONG_BLOB):
        return sa.LargeBinary() if column.is_binary else mysql.LONGTEXT()
    if t == tm.T_JSON:
        return mysql.JSON()
    if t == tm.T_ENUM:
        return mysql.ENUM(*column.values)
    if t == tm.T_SET:
        return RawSet(*column.values)
    if t == tm.T_BIT:
        return mysql.BIT(column.bits)
    return sa.types.NullType()


def table_schema(table: sa.Table, *, namespace: str, key_columns: Sequence[str] | None = None
                 ) -> TableSchema:
    """``build_table_schema`` as every schema of this connector is built."""
    return build_table_schema(table, namespace=namespace, key_columns=key_columns, dialect="mysql")


def shape(table_map: tm.TableMap) -> tuple[Any, ...]:
    """What of a TABLE_MAP decides its schema (everything but the table id)."""
    return (
        table_map.database,
        table_map.table,
        table_map.primary_key,
        tuple(
            (c.name, c.type, c.nullable, c.unsigned, c.length, c.precision, c.scale, c.fsp,
             c.bits, c.is_binary, c.values)
            for c in table_map.columns
        ),
    )
