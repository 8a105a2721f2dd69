"""Table schemas of a MySQL source, from the catalog (snapshot) and from TABLE_MAP events (stream).

Both paths go through ``liberate.schema.tables.build_table_schema``: the snapshot gives it the
reflected table, the stream a table rebuilt from the TABLE_MAP's column metadata. For the
same table definition the two produce the same Avro schemas, and the stream labels every row
with the columns it was written with, even when the catalog has changed since.

The snapshot selects columns with the reading types of ``liberate.schema.reading`` (FLOAT,
TIME, SET and BIT as the binlog decoder reads them), so a snapshot value equals the value
decoded from the binlog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from connectors.mysql import _tablemap as tm
from liberate.schema import reading
from liberate.schema.reading import ExactFloat, RawBit, RawSet, RawTime
from liberate.schema.tables import TableSchema, build_table_schema


def reading_table(table: sa.Table) -> sa.Table:
    """A copy of a reflected table whose columns are read as the binlog decoder reads them."""
    return reading.reading_table(table, "mysql")


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
        if column.is_binary:
            return mysql.VARBINARY(column.length)
        return mysql.VARCHAR(tm.char_length(column))
    if t == tm.T_STRING:
        if column.is_binary:
            return mysql.BINARY(column.length)
        return mysql.CHAR(tm.char_length(column))
    if t in (tm.T_BLOB, tm.T_TINY_BLOB, tm.T_MEDIUM_BLOB, tm.T_LONG_BLOB):
        return sa.LargeBinary() if column.is_binary else mysql.LONGTEXT()
    if t == tm.T_JSON:
        return mysql.JSON()
    if t == tm.T_ENUM:
        return mysql.ENUM(*column.values)
    if t == tm.T_SET:
        return RawSet(*column.values)
    if t == tm.T_BIT:
        return RawBit(column.bits)
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
