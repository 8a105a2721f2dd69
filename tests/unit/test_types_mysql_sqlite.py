"""The MySQL/MariaDB and SQLite parts of the type contract: mappings, converters, reading types."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from liberate.errors import RecordError
from liberate.schema.reading import (
    ExactFloat,
    RawBit,
    RawDouble,
    RawJson,
    RawNumeric,
    RawSet,
    RawTime,
    reading_table,
)
from liberate.schema.types import (
    JSON_NAME,
    LENGTH_ATTRIBUTE,
    MICRO_TIME_NAME,
    VARIABLE_DECIMAL_NAME,
    avro_column,
    decimal_type,
    duration_text,
    from_avro_value,
    sql_type,
)

MICRO_TIME = {"type": "long", "connect.name": MICRO_TIME_NAME}


def mapped(type_: Any, dialect: str) -> Any:
    return avro_column(sa.Column("c", type_), where="t.c", dialect=dialect)


def convert(type_: Any, value: Any, dialect: str) -> Any:
    converter = mapped(type_, dialect).convert
    assert converter is not None
    return converter(value)


@pytest.mark.parametrize(
    ("column_type", "avro_type"),
    [
        (mysql.YEAR(), "int"),
        (mysql.BIT(1), "bytes"),
        (mysql.BIT(64), "bytes"),
        (mysql.TINYBLOB(), "bytes"),
        (mysql.MEDIUMBLOB(), "bytes"),
        (mysql.LONGBLOB(), "bytes"),
        (mysql.BINARY(16), "bytes"),
        (mysql.TIME(fsp=6), MICRO_TIME),
        (mysql.FLOAT(), "float"),
        (mysql.FLOAT(precision=7, scale=4), "float"),
        (mysql.DOUBLE(asdecimal=True), "double"),
        (mysql.VARCHAR(20), {"type": "string", LENGTH_ATTRIBUTE: 20}),
        (mysql.CHAR(36), {"type": "string", LENGTH_ATTRIBUTE: 36}),
        (mysql.TINYTEXT(), "string"),
        (mysql.SET("a", "b"), "string"),
        (mysql.ENUM("a", "b"), "string"),
        (mysql.TINYINT(display_width=1), "int"),
        (mysql.INTEGER(unsigned=True), "long"),
        (mysql.BIGINT(unsigned=True), decimal_type(20, 0)),
        (mysql.DECIMAL(65, 30), decimal_type(65, 30)),
        (mysql.LONGTEXT(collation="utf8mb4_bin"), "string"),  # MariaDB's JSON
    ],
    ids=repr,
)
def test_mysql_column_type_maps_to_its_avro_type(column_type: Any, avro_type: Any) -> None:
    assert mapped(column_type, "mysql").type == avro_type


def test_mysql_time_is_a_signed_duration_in_microseconds() -> None:
    time = mysql.TIME(fsp=6)
    assert convert(time, -dt.timedelta(hours=838, minutes=59, seconds=59), "mysql") == (
        -3_020_399_000_000
    )
    assert convert(time, dt.timedelta(days=1, microseconds=1), "mysql") == 86_400_000_001
    assert convert(time, dt.time(1, 2, 3, 4), "mysql") == 3_723_000_004
    with pytest.raises(RecordError, match="cannot read"):
        convert(time, "12:00", "mysql")


@pytest.mark.parametrize(
    ("micros", "text"),
    [(0, "00:00:00.000000"), (-1, "-00:00:00.000001"), (-1_500_000, "-00:00:01.500000"),
     (3_020_399_000_000, "838:59:59.000000"), (86_400_000_000, "24:00:00.000000")],
)
def test_mysql_time_values_go_back_as_durations_and_time_text(micros: int, text: str) -> None:
    assert duration_text(micros) == text
    assert from_avro_value(MICRO_TIME, micros) == dt.timedelta(microseconds=micros)


def test_mysql_time_columns_are_created_as_time_interval_or_text() -> None:
    created = sql_type(["null", MICRO_TIME])
    for url, ddl in (("mysql+pymysql://", "TIME(6)"), ("postgresql+psycopg://", "INTERVAL"),
                     ("sqlite://", "TEXT")):
        assert created.compile(dialect=sa.create_engine(url).dialect) == ddl


def test_bit_values_are_big_endian_bytes_of_the_column_width() -> None:
    assert convert(mysql.BIT(10), 513, "mysql") == b"\x02\x01"
    assert convert(mysql.BIT(10), b"\x02\x01", "mysql") == b"\x02\x01"


@pytest.mark.parametrize("zero", ["0000-00-00", "0000-00-00 00:00:00"])
def test_mysql_zero_dates_are_record_errors_not_wrong_dates(zero: str) -> None:
    for column_type in (sa.Date(), mysql.DATETIME(fsp=6), mysql.TIMESTAMP(fsp=6)):
        with pytest.raises(RecordError, match="zero date"):
            convert(column_type, zero, "mysql")
    assert convert(sa.Date(), dt.date(1000, 1, 1), "mysql") == dt.date(1000, 1, 1)


def test_mysql_tables_are_read_as_the_binlog_decodes_them() -> None:
    table = sa.Table(
        "t", sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True), sa.Column("f", mysql.FLOAT()),
        sa.Column("d", mysql.DOUBLE(asdecimal=True)), sa.Column("tm", mysql.TIME(fsp=3)),
        sa.Column("s", mysql.SET("a", "b")), sa.Column("b", mysql.BIT(3)),
        sa.Column("v", mysql.VARCHAR(5)),
    )
    read = reading_table(table, "mysql")
    kinds = [type(c.type) for c in read.columns]
    assert kinds[1:6] == [ExactFloat, RawDouble, RawTime, RawSet, RawBit]
    assert isinstance(read.c.v.type, mysql.VARCHAR) and read.c.id.primary_key
    assert reading_table(table, "postgresql") is table


@pytest.mark.parametrize(
    ("column_type", "avro_type"),
    [
        (sa.NUMERIC(), {"type": "string", "connect.name": VARIABLE_DECIMAL_NAME}),
        (sa.NUMERIC(10, 2), decimal_type(10, 2)),
        (sa.DECIMAL(10, 3), decimal_type(10, 3)),
        (sa.JSON(), {"type": "string", "connect.name": JSON_NAME}),
        (sa.VARCHAR(5), "string"),  # SQLite does not enforce the length
        (sa.FLOAT(), "double"),
        (sa.BIGINT(), "long"),
        (sa.BOOLEAN(), "boolean"),
        (sa.TIMESTAMP(), {"type": "long", "logicalType": "local-timestamp-micros"}),
    ],
    ids=repr,
)
def test_sqlite_declared_type_maps_to_its_avro_type(column_type: Any, avro_type: Any) -> None:
    assert mapped(column_type, "sqlite").type == avro_type


def test_sqlite_numeric_affinity_values_become_exact_decimals_or_record_errors() -> None:
    numeric: sa.NUMERIC[Decimal] = sa.NUMERIC()
    assert convert(numeric, 0.1, "sqlite") == "0.1"
    assert convert(numeric, 12345678901234567890, "sqlite") == "12345678901234567890"
    assert convert(numeric, " 1e3 ", "sqlite") == "1E+3"
    for bad in ("abc", "NaN", float("inf"), b"\x00"):
        with pytest.raises(RecordError, match="not a finite number"):
            convert(numeric, bad, "sqlite")


def test_sqlite_scaled_numerics_round_floats_and_refuse_extra_places_in_text() -> None:
    scaled: sa.NUMERIC[Decimal] = sa.NUMERIC(10, 2)
    assert convert(scaled, 123.45, "sqlite") == Decimal("123.45")
    assert convert(scaled, 0.1 + 0.2, "sqlite") == Decimal("0.30")
    assert convert(scaled, 5, "sqlite") == Decimal("5.00")
    with pytest.raises(RecordError, match="more than 2 decimal places"):
        convert(scaled, "1.234", "sqlite")


def test_sqlite_json_text_becomes_compact_json_and_a_string_document_stays_quoted() -> None:
    assert convert(sa.JSON(), ' {"a" : [1, "ü"]} ', "sqlite") == '{"a":[1,"ü"]}'
    assert convert(sa.JSON(), '"hello"', "sqlite") == '"hello"'
    with pytest.raises(RecordError, match="not JSON"):
        convert(sa.JSON(), "hello", "sqlite")


def test_sqlite_numerics_and_json_are_read_raw() -> None:
    table = sa.Table(
        "t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.NUMERIC(10, 2)), sa.Column("j", sa.JSON()), sa.Column("r", sa.REAL()),
    )
    read = reading_table(table, "sqlite")
    assert isinstance(read.c.n.type, RawNumeric) and read.c.n.type.scale == 2
    assert isinstance(read.c.j.type, RawJson) and type(read.c.r.type) is sa.REAL
