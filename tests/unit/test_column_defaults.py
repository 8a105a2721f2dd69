"""Database column defaults become Avro field defaults only where they are constants."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import fastavro
import pytest
import sqlalchemy as sa

from liberate.schema.compatibility import check_compatibility
from liberate.schema.defaults import AvroDefault, avro_default, parse_literal
from liberate.schema.tables import build_table_schema

DECIMAL_10_2: dict[str, Any] = {
    "type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2,
}
TIMESTAMP: dict[str, Any] = {"type": "long", "logicalType": "timestamp-micros"}
LOCAL_TIMESTAMP: dict[str, Any] = {"type": "long", "logicalType": "local-timestamp-micros"}


@pytest.mark.parametrize(
    ("text", "dialect", "field_type", "expected"),
    [
        # PostgreSQL (pg_get_expr text, as SQLAlchemy reflects it)
        ("'new'::text", "postgresql", "string", "new"),
        ("'new'::character varying", "postgresql", "string", "new"),
        ("'it''s'::text", "postgresql", "string", "it's"),
        ("42", "postgresql", "int", 42),
        ("'-1'::integer", "postgresql", "int", -1),
        ("'9000000000'::bigint", "postgresql", "long", 9_000_000_000),
        ("true", "postgresql", "boolean", True),
        ("false", "postgresql", "boolean", False),
        ("'1.5'::double precision", "postgresql", "double", 1.5),
        ("'2024-02-29'::date", "postgresql", {"type": "int", "logicalType": "date"}, 19782),
        ("'2024-01-01 00:00:01+01'::timestamp with time zone", "postgresql", TIMESTAMP,
         1_704_063_601_000_000),  # 2023-12-31T23:00:01Z
        ("'1970-01-01 00:00:00.25'::timestamp without time zone", "postgresql",
         LOCAL_TIMESTAMP, 250_000),
        ("'12:30:00.5'::time without time zone", "postgresql",
         {"type": "long", "logicalType": "time-micros"}, 45_000_500_000),
        ("'0b3c1e8a-6f0b-4a53-9d5b-0a0c6c3f6d11'::uuid", "postgresql",
         {"type": "string", "logicalType": "uuid"}, "0b3c1e8a-6f0b-4a53-9d5b-0a0c6c3f6d11"),
        ("'happy'::mood", "postgresql",
         {"type": "enum", "name": "mood", "symbols": ["sad", "happy"]}, "happy"),
        ("'{}'::jsonb", "postgresql",
         {"type": "string", "connect.name": "io.debezium.data.Json"}, "{}"),
        ("'1.50'::numeric", "postgresql",
         {"type": "string", "connect.name": "liberate.data.VariableDecimal"}, "1.50"),
        ("'happy'::mood", "postgresql", {"type": "string", "connect.name": "io.debezium.data.Enum",
                                         "connect.parameters": {"allowed": "sad,happy"}}, "happy"),
        # MySQL / MariaDB (SHOW CREATE TABLE text)
        ("'new'", "mysql", "string", "new"),
        ("'0'", "mysql", "int", 0),
        ("0", "mysql", "long", 0),
        ("'1'", "mysql", "boolean", True),
        ("'2024-01-01 10:00:00'", "mysql", TIMESTAMP, 1_704_103_200_000_000),
        # SQLite (the text as written)
        ("'new'", "sqlite", "string", "new"),
        ("-7", "sqlite", "long", -7),
        ("(1)", "sqlite", "boolean", True),
        ("2.5e1", "sqlite", "double", 25.0),
    ],
)
def test_a_constant_default_becomes_the_avro_default_of_its_type(
    text: str, dialect: str, field_type: Any, expected: Any
) -> None:
    assert avro_default(text, field_type, dialect=dialect) == AvroDefault(expected)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'1.50'::numeric", Decimal("1.50")),
        ("-12.3", Decimal("-12.30")),
        ("'0'", Decimal("0.00")),
        ("99999999.99", Decimal("99999999.99")),
    ],
)
def test_a_decimal_default_is_the_avro_bytes_string_of_its_unscaled_value(
    text: str, value: Decimal
) -> None:
    default = avro_default(text, DECIMAL_10_2, dialect=None)
    assert default is not None
    # Avro's JSON form of bytes is one character per byte; a decimal's bytes are its unscaled
    # value, two's complement, big-endian (what Java's DecimalConversion reads).
    unscaled = int.from_bytes(default.value.encode("latin-1"), "big", signed=True)
    assert Decimal(unscaled).scaleb(-2) == value
    fastavro.parse_schema({"type": "record", "name": "R", "fields": [
        {"name": "amount", "type": DECIMAL_10_2, "default": default.value}
    ]})


@pytest.mark.parametrize(
    ("text", "dialect", "field_type"),
    [
        ("nextval('orders_id_seq'::regclass)", "postgresql", "long"),
        ("now()", "postgresql", TIMESTAMP),
        ("CURRENT_TIMESTAMP", "postgresql", TIMESTAMP),
        ("gen_random_uuid()", "postgresql", {"type": "string", "logicalType": "uuid"}),
        ("('x'::text || 'y'::text)", "postgresql", "string"),
        ("current_timestamp()", "mysql", TIMESTAMP),
        ("uuid()", "mysql", "string"),
        ("'a\\\\b'", "mysql", "string"),  # a backslash may be an escape on MySQL
        ("CURRENT_TIMESTAMP", "sqlite", LOCAL_TIMESTAMP),
        ("(datetime('now'))", "sqlite", "string"),
        ("NULL", "mysql", "string"),
        ("'abc'", "postgresql", "int"),  # does not fit the type
        ("3000000000", "sqlite", "int"),  # out of range
        ("1.5", "postgresql", "long"),
        ("'1.234'", "postgresql", DECIMAL_10_2),  # more scale than the column keeps
        ("'123456789012'", "postgresql", DECIMAL_10_2),  # more precision
        ("'NaN'::numeric", "postgresql", DECIMAL_10_2),
        ("'\\x00'::bytea", "postgresql", "bytes"),
        ("'2024-01-01 00:00:00+01'", "postgresql", LOCAL_TIMESTAMP),
        ("'sleepy'::mood", "postgresql", {"type": "enum", "name": "m", "symbols": ["sad"]}),
        (None, "sqlite", "string"),
        ("'NaN'::double precision", "postgresql", "double"),
        ("'-Infinity'::real", "postgresql", "float"),
        ("'1 day'::interval", "postgresql",
         {"type": "string", "connect.name": "io.debezium.time.Interval"}),
        ("'10.0.0.1'::inet", "postgresql",
         {"type": "string", "connect.name": "liberate.data.Inet"}),
        ("'12:00:00'", "mysql", {"type": "long", "connect.name": "io.debezium.time.MicroTime"}),
        ("'sleepy'::mood", "postgresql", {"type": "string", "connect.name": "io.debezium.data.Enum",
                                          "connect.parameters": {"allowed": "sad,happy"}}),
    ],
)
def test_a_non_constant_or_unfitting_default_gives_no_avro_default(
    text: str | None, dialect: str, field_type: Any
) -> None:
    assert avro_default(text, field_type, dialect=dialect) is None


def test_parse_literal_unquotes_and_drops_postgres_casts() -> None:
    literal = parse_literal("'a::b'::character varying(10)", dialect="postgresql")
    assert literal is not None and (literal.kind, literal.text) == ("string", "a::b")


def _table(*columns: sa.Column[Any]) -> sa.Table:
    return sa.Table("orders", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                    *columns)


def test_a_not_null_column_with_a_constant_default_gets_that_avro_default() -> None:
    table = _table(sa.Column("status", sa.String(10), nullable=False,
                             server_default=sa.text("'new'")))
    schema = build_table_schema(table, namespace="shop.orders", dialect="sqlite")
    field = schema.value_schema.schema["fields"][1]
    assert field == {"name": "status", "type": "string", "default": "new"}


def test_a_nullable_column_keeps_null_first_and_a_null_default() -> None:
    table = _table(sa.Column("status", sa.String(10), nullable=True,
                             server_default=sa.text("'new'")))
    schema = build_table_schema(table, namespace="shop.orders", dialect="sqlite")
    field = schema.value_schema.schema["fields"][1]
    assert field == {"name": "status", "type": ["null", "string"], "default": None}


def test_the_key_record_never_carries_defaults() -> None:
    table = sa.Table("t", sa.MetaData(),
                     sa.Column("code", sa.String(5), primary_key=True,
                               server_default=sa.text("'a'")))
    schema = build_table_schema(table, namespace="t", dialect="sqlite")
    assert schema.key_schema.schema["fields"] == [{"name": "code", "type": "string"}]


def test_adding_a_not_null_column_with_a_default_is_a_backward_compatible_change() -> None:
    before = build_table_schema(_table(), namespace="shop.orders", dialect="sqlite")
    after = build_table_schema(
        _table(sa.Column("placed", sa.Date, nullable=False,
                         server_default=sa.text("'2024-01-01'"))),
        namespace="shop.orders", dialect="sqlite",
    )
    without = build_table_schema(
        _table(sa.Column("placed", sa.Date, nullable=False,
                         server_default=sa.text("CURRENT_DATE"))),
        namespace="shop.orders", dialect="sqlite",
    )
    assert check_compatibility(after.value_schema, [before.value_schema], "BACKWARD") == []
    assert check_compatibility(without.value_schema, [before.value_schema], "BACKWARD")
    assert dt.date(2024, 1, 1) == dt.date(1970, 1, 1) + dt.timedelta(
        days=after.value_schema.schema["fields"][1]["default"]
    )
