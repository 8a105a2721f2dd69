"""The type contract (liberate.schema.types) and table schemas (liberate.schema.tables)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from liberate.errors import PrerequisiteError, RecordError, UnsupportedTypeError
from liberate.schema.avro import decode, encode
from liberate.schema.tables import build_table_schema
from liberate.schema.types import (
    COLUMN_ATTRIBUTE,
    JSON_NAME,
    VARIABLE_DECIMAL_NAME,
    avro_column,
    avro_name,
    decimal_type,
    from_avro_value,
    sql_type,
    unwrap_nullable,
)

UTC = dt.UTC
TIMESTAMP = {"type": "long", "logicalType": "timestamp-micros"}
LOCAL_TIMESTAMP = {"type": "long", "logicalType": "local-timestamp-micros"}
JSON_STRING = {"type": "string", "connect.name": JSON_NAME}
VARIABLE_DECIMAL = {"type": "string", "connect.name": VARIABLE_DECIMAL_NAME}


def mapped(type_: Any, dialect: str | None = None) -> Any:
    return avro_column(sa.Column("c", type_), where="t.c", dialect=dialect).type


@pytest.mark.parametrize(
    ("column_type", "avro_type"),
    [
        (sa.Boolean(), "boolean"),
        (sa.SmallInteger(), "int"),
        (sa.Integer(), "int"),
        (sa.BigInteger(), "long"),
        (mysql.TINYINT(), "int"),
        (mysql.MEDIUMINT(), "int"),
        (mysql.SMALLINT(unsigned=True), "int"),
        (mysql.INTEGER(unsigned=True), "long"),
        (mysql.BIGINT(unsigned=True), decimal_type(20, 0)),
        (sa.Numeric(10, 2), decimal_type(10, 2)),
        (sa.Numeric(7), decimal_type(7, 0)),
        (postgresql.NUMERIC(), VARIABLE_DECIMAL),
        (sa.REAL(), "float"),
        (mysql.FLOAT(), "float"),
        (sa.Float(), "double"),
        (sa.Double(), "double"),
        (postgresql.DOUBLE_PRECISION(), "double"),
        (mysql.DOUBLE(), "double"),
        (sa.String(20), "string"),
        (sa.Text(), "string"),
        (sa.Unicode(5), "string"),
        (sa.Enum("a", "b", name="e"), "string"),
        (postgresql.ENUM("x", name="pe"), {"type": "string", "connect.name":
                                           "io.debezium.data.Enum",
                                           "connect.parameters": {"allowed": "x"}}),
        (postgresql.CITEXT(), "string"),
        (sa.DateTime(), LOCAL_TIMESTAMP),
        (mysql.DATETIME(fsp=6), LOCAL_TIMESTAMP),
        (sa.DateTime(timezone=True), TIMESTAMP),
        (postgresql.TIMESTAMP(timezone=True), TIMESTAMP),
        (mysql.TIMESTAMP(), TIMESTAMP),
        (sa.Date(), {"type": "int", "logicalType": "date"}),
        (sa.Time(), {"type": "long", "logicalType": "time-micros"}),
        (sa.JSON(), JSON_STRING),
        (postgresql.JSONB(), JSON_STRING),
        (mysql.JSON(), JSON_STRING),
        (sa.Uuid(), {"type": "string", "logicalType": "uuid"}),
        (postgresql.UUID(), {"type": "string", "logicalType": "uuid"}),
        (sa.LargeBinary(), "bytes"),
        (postgresql.BYTEA(), "bytes"),
        (mysql.BLOB(), "bytes"),
        (mysql.VARBINARY(16), "bytes"),
        (sa.BINARY(16), "bytes"),
    ],
    ids=repr,
)
def test_column_type_maps_to_its_avro_type(column_type: Any, avro_type: Any) -> None:
    assert mapped(column_type) == avro_type


@pytest.mark.parametrize(
    "column_type",
    [postgresql.TSRANGE(), sa.ARRAY(sa.JSON()), postgresql.OID(), sa.types.NullType()],
    ids=repr,
)
def test_type_without_mapping_is_refused_naming_the_column(column_type: Any) -> None:
    with pytest.raises(UnsupportedTypeError, match=r"column t\.c has type .* no Avro mapping"):
        mapped(column_type)


@pytest.mark.parametrize(
    ("column_type", "avro_type"),
    [
        (sa.INTEGER(), "long"),
        (sa.SmallInteger(), "long"),
        (sa.REAL(), "double"),
        (sa.Boolean(), "boolean"),
        (sa.Date(), {"type": "int", "logicalType": "date"}),
        (sa.Numeric(10, 2), decimal_type(10, 2)),
    ],
    ids=repr,
)
def test_sqlite_storage_widens_int_and_float(column_type: Any, avro_type: Any) -> None:
    assert mapped(column_type, dialect="sqlite") == avro_type


@pytest.mark.parametrize("dialect", [None, "postgresql", "mysql"])
def test_other_dialects_keep_32_bit_ints_and_floats(dialect: str | None) -> None:
    assert mapped(sa.INTEGER(), dialect) == "int"
    assert mapped(sa.REAL(), dialect) == "float"


def convert(type_: Any, value: Any) -> Any:
    converter = avro_column(sa.Column("c", type_), where="t.c").convert
    assert converter is not None
    return converter(value)


def test_decimal_columns_convert_driver_numbers_exactly() -> None:
    assert convert(sa.Numeric(10, 2), 12.34) == Decimal("12.34")
    assert convert(mysql.BIGINT(unsigned=True), 2**64 - 1) == Decimal(2**64 - 1)
    assert convert(postgresql.NUMERIC(), Decimal("1.10000000000000000001")) == (
        "1.10000000000000000001"
    )
    assert convert(postgresql.NUMERIC(), 3) == "3"


def test_text_columns_decode_utf8_bytes_and_refuse_invalid_ones() -> None:
    assert convert(sa.String(), "plain") == "plain"
    assert convert(sa.String(), "é".encode()) == "é"
    assert convert(sa.String(), 5) == "5"
    with pytest.raises(RecordError, match="not valid UTF-8"):
        convert(sa.String(), b"\xff\xfe")


def test_timestamps_become_utc_instants_or_naive_local_times() -> None:
    naive = dt.datetime(2024, 1, 2, 3, 4, 5, 6)
    paris = dt.timezone(dt.timedelta(hours=1))
    assert convert(mysql.TIMESTAMP(), naive) == naive.replace(tzinfo=UTC)
    assert convert(sa.DateTime(timezone=True), naive) == naive.replace(tzinfo=UTC)
    aware = naive.replace(tzinfo=paris)
    assert convert(sa.DateTime(timezone=True), aware) is aware
    assert convert(sa.DateTime(), aware) == dt.datetime(2024, 1, 2, 2, 4, 5, 6)
    assert convert(sa.DateTime(), naive) is naive


def test_mysql_time_durations_become_times_of_day() -> None:
    assert convert(sa.Time(), dt.timedelta(hours=13, minutes=5, microseconds=7)) == dt.time(
        13, 5, 0, 7
    )
    assert convert(sa.Time(), dt.time(1, 2, tzinfo=UTC)) == dt.time(1, 2)
    for outside in (dt.timedelta(hours=-1), dt.timedelta(hours=24)):
        with pytest.raises(RecordError, match="not a time of day"):
            convert(sa.Time(), outside)
    with pytest.raises(RecordError, match="cannot read"):
        convert(sa.Time(), "12:00")


def test_json_values_become_compact_json_text() -> None:
    assert convert(sa.JSON(), {"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert convert(sa.JSON(), '{"raw": true}') == '{"raw": true}'


def test_uuid_values_become_canonical_text() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert convert(sa.Uuid(), value) == str(value)
    assert convert(sa.Uuid(), "12345678123456781234567812345678".upper()) == str(value)


def test_binary_values_become_bytes() -> None:
    assert convert(sa.LargeBinary(), memoryview(b"ab")) == b"ab"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("id", "id"), ("order-id", "order_id"), ("1st", "_1st"), ("prénom", "pr_nom"), ("", "_")],
)
def test_avro_name_makes_valid_names(name: str, expected: str) -> None:
    assert avro_name(name) == expected


def test_unwrap_nullable() -> None:
    assert unwrap_nullable(["null", "long"]) == ("long", True)
    assert unwrap_nullable(["long", "null"]) == ("long", True)
    assert unwrap_nullable("long") == ("long", False)
    with pytest.raises(UnsupportedTypeError, match="no single SQL type"):
        unwrap_nullable(["null", "long", "string"])


def dialect_of(url: str) -> sa.Dialect:
    return sa.create_engine(url).dialect  # no connection is made


POSTGRESQL = dialect_of("postgresql+psycopg://")
MYSQL = dialect_of("mysql+pymysql://")
SQLITE = dialect_of("sqlite://")


def compiled(field_type: Any, dialect: sa.Dialect, *, key: bool = False) -> str:
    return str(sql_type(field_type, key=key).compile(dialect=dialect))


@pytest.mark.parametrize(
    ("field_type", "pg", "my", "lite"),
    [
        ("boolean", "BOOLEAN", "BOOL", "BOOLEAN"),
        ("int", "INTEGER", "INTEGER", "INTEGER"),
        (["null", "long"], "BIGINT", "BIGINT", "BIGINT"),
        ("float", "REAL", "REAL", "REAL"),
        ("double", "DOUBLE PRECISION", "DOUBLE", "DOUBLE"),
        ("string", "TEXT", "LONGTEXT", "TEXT"),
        ("bytes", "BYTEA", "LONGBLOB", "BLOB"),
        (decimal_type(12, 3), "NUMERIC(12, 3)", "NUMERIC(12, 3)", "NUMERIC(12, 3)"),
        (TIMESTAMP, "TIMESTAMP WITH TIME ZONE", "DATETIME(6)", "DATETIME"),
        (LOCAL_TIMESTAMP, "TIMESTAMP WITHOUT TIME ZONE", "DATETIME(6)", "DATETIME"),
        ({"type": "int", "logicalType": "date"}, "DATE", "DATE", "DATE"),
        (
            {"type": "long", "logicalType": "time-micros"},
            "TIME WITHOUT TIME ZONE",
            "TIME(6)",
            "TIME",
        ),
        ({"type": "string", "logicalType": "uuid"}, "UUID", "CHAR(32)", "CHAR(32)"),
        (JSON_STRING, "JSONB", "JSON", "JSON"),
        (VARIABLE_DECIMAL, "NUMERIC", "DECIMAL(65, 30)", "NUMERIC"),
    ],
    ids=repr,
)
def test_avro_type_maps_back_to_a_sql_type_per_dialect(
    field_type: Any, pg: str, my: str, lite: str
) -> None:
    assert compiled(field_type, POSTGRESQL) == pg
    assert compiled(field_type, MYSQL) == my
    assert compiled(field_type, SQLITE) == lite


def test_key_text_columns_are_bounded_so_mysql_can_index_them() -> None:
    assert compiled("string", MYSQL, key=True) == "VARCHAR(255)"


@pytest.mark.parametrize(
    "field_type",
    [{"type": "array", "items": {"type": "array", "items": "int"}},
     {"type": "map", "values": "int"}, {"type": "enum", "name": "E", "symbols": ["A"]}],
    ids=repr,
)
def test_avro_types_without_sql_mapping_are_refused(field_type: Any) -> None:
    with pytest.raises(UnsupportedTypeError, match="no SQL mapping"):
        sql_type(field_type)


def test_from_avro_value_prepares_values_for_their_sql_type() -> None:
    assert from_avro_value(["null", JSON_STRING], '{"a":1}') == {"a": 1}
    assert from_avro_value(VARIABLE_DECIMAL, "1.50") == Decimal("1.50")
    value = uuid.UUID(int=1)
    assert from_avro_value({"type": "string", "logicalType": "uuid"}, value) == str(value)
    assert from_avro_value(JSON_STRING, None) is None
    assert from_avro_value("long", 5) == 5


# ---------------------------------------------------------------------------------------------
# Table schemas


def orders_table(metadata: sa.MetaData | None = None) -> sa.Table:
    return sa.Table(
        "orders",
        metadata or sa.MetaData(),
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("order-no", sa.String(20), nullable=False),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("placed_at", sa.DateTime(timezone=True)),
        schema="shop",
    )


def test_table_schema_has_key_and_value_records_under_the_namespace() -> None:
    schema = build_table_schema(orders_table(), namespace="pg-1.shop.orders")
    assert schema.namespace == "pg_1.shop.orders"
    assert schema.value_schema.name == "pg_1.shop.orders.Value"
    assert schema.key_schema.name == "pg_1.shop.orders.Key"
    assert schema.key_schema.fields == [{"name": "id", "type": "long"}]
    assert schema.value_schema.fields == [
        {"name": "id", "type": "long"},
        {"name": "order_no", "type": "string", COLUMN_ATTRIBUTE: "order-no"},
        {"name": "amount", "type": ["null", decimal_type(10, 2)], "default": None},
        {"name": "placed_at", "type": ["null", TIMESTAMP], "default": None},
    ]
    assert schema.columns == ("id", "order-no", "amount", "placed_at")
    assert schema.fields == ("id", "order_no", "amount", "placed_at")


def test_rows_become_avro_values_and_keys() -> None:
    schema = build_table_schema(orders_table(), namespace="shop.orders")
    placed = dt.datetime(2024, 1, 1, 12)
    value = schema.value_of((7, "A-7", 12.5, placed))
    assert value == {
        "id": 7,
        "order_no": "A-7",
        "amount": Decimal("12.5"),
        "placed_at": placed.replace(tzinfo=UTC),
    }
    assert schema.key_of(value) == {"id": 7}
    assert schema.value_of((8, "A-8", None, None))["amount"] is None
    decoded = decode(encode(1, schema.value_schema, value), schema.value_schema)
    assert decoded["amount"] == Decimal("12.50")


def test_key_columns_override_the_primary_key_and_are_never_null() -> None:
    table = sa.Table(
        "events", sa.MetaData(), sa.Column("code", sa.String(10)), sa.Column("n", sa.Integer())
    )
    schema = build_table_schema(table, namespace="e", key_columns=["code"])
    assert schema.key_schema.fields == [{"name": "code", "type": "string"}]
    assert schema.value_schema.fields[0] == {"name": "code", "type": "string"}
    assert schema.key_of(schema.value_of(("x", 1))) == {"code": "x"}


def test_table_without_primary_key_needs_key_columns() -> None:
    table = sa.Table("log", sa.MetaData(), sa.Column("line", sa.Text()))
    with pytest.raises(PrerequisiteError, match="table log has no primary key") as caught:
        build_table_schema(table, namespace="log")
    assert caught.value.hint is not None and "key_columns" in caught.value.hint


def test_unknown_key_column_is_refused() -> None:
    with pytest.raises(PrerequisiteError, match=r"key column\(s\) nope not found in table"):
        build_table_schema(orders_table(), namespace="o", key_columns=["nope"])


def test_selected_columns_restrict_and_order_the_value() -> None:
    schema = build_table_schema(orders_table(), namespace="o", columns=["amount", "id"])
    assert schema.fields == ("amount", "id")
    assert schema.key_of(schema.value_of((Decimal(1), 5))) == {"id": 5}


def test_unknown_selected_column_is_a_prerequisite_error() -> None:
    with pytest.raises(
        PrerequisiteError, match=r"column\(s\) total not found in table shop\.orders"
    ):
        build_table_schema(orders_table(), namespace="o", columns=["id", "total"])


def test_selected_columns_must_include_the_key() -> None:
    with pytest.raises(PrerequisiteError, match="not found in the selected columns of table"):
        build_table_schema(orders_table(), namespace="o", columns=["amount"])


def test_column_names_that_collide_as_avro_names_are_refused() -> None:
    table = sa.Table(
        "t",
        sa.MetaData(),
        sa.Column("a-b", sa.Integer(), primary_key=True),
        sa.Column("a b", sa.Integer()),
    )
    with pytest.raises(PrerequisiteError, match="collide"):
        build_table_schema(table, namespace="t")


def test_sqlite_table_round_trips_64_bit_integers_and_doubles(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE readings (id INTEGER PRIMARY KEY, ms INTEGER NOT NULL, v REAL,"
            " price NUMERIC(8, 3), note TEXT, at DATETIME)"
        )
        conn.exec_driver_sql(
            "INSERT INTO readings VALUES"
            " (1, 1717171717171, 0.1, 12.345, 'é', '2024-05-01 10:00:00')"
        )
    table = sa.Table("readings", sa.MetaData(), autoload_with=engine)
    schema = build_table_schema(table, namespace="lite.readings", dialect=engine.dialect.name)
    with engine.connect() as conn:
        row = conn.execute(sa.select(table)).one()
    engine.dispose()
    value = schema.value_of(tuple(row))
    decoded = decode(encode(1, schema.value_schema, value), schema.value_schema)
    assert decoded == {
        "id": 1,
        "ms": 1717171717171,
        "v": 0.1,
        "price": Decimal("12.345"),
        "note": "é",
        "at": dt.datetime(2024, 5, 1, 10),
    }
