"""The PostgreSQL part of the type contract (liberate.schema.postgres_types), without a server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from liberate.errors import RecordError, UnsupportedTypeError
from liberate.schema.avro import AvroSchema, decode, encode
from liberate.schema.postgres_types import (
    array_as_json,
    array_as_text,
    interval_parts,
    iso_interval,
)
from liberate.schema.types import avro_column, compact_json, decimal_type, sql_type


def mapped(type_: Any, dialect: str | None = "postgresql") -> Any:
    return avro_column(sa.Column("c", type_), where="t.c", dialect=dialect)


def marked(name: str) -> dict[str, Any]:
    return {"type": "string", "connect.name": name}


@pytest.mark.parametrize(
    ("column_type", "avro_type"),
    [
        (postgresql.INTERVAL(), marked("io.debezium.time.Interval")),
        (postgresql.TIME(timezone=True), marked("io.debezium.time.ZonedTime")),
        (postgresql.INET(), marked("liberate.data.Inet")),
        (postgresql.CIDR(), marked("liberate.data.Cidr")),
        (postgresql.MACADDR(), marked("liberate.data.MacAddress")),
        (postgresql.MACADDR8(), marked("liberate.data.MacAddress8")),
        (postgresql.MONEY(), decimal_type(19, 2)),
        (postgresql.ENUM("a b", "ü", name="m"),
         {"type": "string", "connect.name": "io.debezium.data.Enum",
          "connect.parameters": {"allowed": "a b,ü"}}),
        (postgresql.ARRAY(sa.Integer()), {"type": "array", "items": ["null", "int"]}),
        (postgresql.ARRAY(sa.Numeric()),
         {"type": "array", "items": ["null", marked("liberate.data.VariableDecimal")]}),
        (postgresql.ARRAY(sa.Numeric(5, 2)), {"type": "array",
                                              "items": ["null", decimal_type(5, 2)]}),
        (postgresql.DOMAIN("posint", sa.Integer()), "int"),
        (postgresql.DOMAIN("tags", postgresql.ARRAY(sa.Text())),
         {"type": "array", "items": ["null", "string"]}),
        (sa.VARCHAR(20), {"type": "string", "liberate.length": 20}),
        (sa.CHAR(5), {"type": "string", "liberate.length": 5}),
    ],
    ids=repr,
)
def test_postgres_type_maps_to_its_avro_type(column_type: Any, avro_type: Any) -> None:
    assert mapped(column_type).type == avro_type


def test_varchar_length_is_carried_only_where_postgresql_enforces_it() -> None:
    assert mapped(sa.VARCHAR(20), dialect="sqlite").type == "string"


@pytest.mark.parametrize(
    "column_type",
    [postgresql.ARRAY(postgresql.ENUM("a", name="m")), postgresql.ARRAY(postgresql.JSONB()),
     postgresql.ARRAY(postgresql.INTERVAL()), postgresql.TSTZRANGE(), postgresql.BIT(3)],
    ids=repr,
)
def test_postgres_type_outside_the_contract_is_refused_naming_the_column(column_type: Any
                                                                         ) -> None:
    with pytest.raises(UnsupportedTypeError, match=r"column t\.c has type .* no Avro mapping"):
        mapped(column_type)


def test_unrecognised_type_is_named_by_its_catalog_name() -> None:
    column = sa.Column("c", sa.types.NullType(), info={"liberate.type_name": "point"})
    with pytest.raises(UnsupportedTypeError, match=r"column t\.c has type point, which"):
        avro_column(column, where="t.c")


@pytest.mark.parametrize(
    ("text", "parts", "iso"),
    [
        ("00:00:00", (0, 0, 0), "P0Y0M0DT0H0M0S"),
        ("1 year 2 mons -3 days +04:05:06.789", (14, -3, 14_706_789_000), "P1Y2M-3DT4H5M6.789S"),
        ("-1 years -2 mons +3 days -04:05:06.000001", (-14, 3, -14_706_000_001),
         "P-1Y-2M3DT-4H-5M-6.000001S"),
        ("1 day -00:00:00.000001", (0, 1, -1), "P0Y0M1DT0H0M-0.000001S"),
        ("-1 mons", (-1, 0, 0), "P0Y-1M0DT0H0M0S"),
        ("2562047788:00:54.775807", (0, 0, 9_223_372_036_854_775_807),
         "P0Y0M0DT2562047788H0M54.775807S"),
        ("P1Y2M-3DT4H5M6.789S", (14, -3, 14_706_789_000), "P1Y2M-3DT4H5M6.789S"),
        ("PT0S", (0, 0, 0), "P0Y0M0DT0H0M0S"),
        ("P-1Y-2M3DT-4H-5M-6.000001S", (-14, 3, -14_706_000_001), "P-1Y-2M3DT-4H-5M-6.000001S"),
    ],
)
def test_interval_text_keeps_months_days_and_microseconds_apart(
    text: str, parts: tuple[int, int, int], iso: str
) -> None:
    assert interval_parts(text) == parts
    assert iso_interval(*parts) == iso
    assert interval_parts(iso) == parts


@pytest.mark.parametrize("text", ["@ 1 year ago", "1-2", "1 fortnight", "P", "PT"])
def test_interval_styles_other_than_postgres_and_iso_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        interval_parts(text)


def test_interval_converter_refuses_text_it_cannot_read_as_a_record_error() -> None:
    convert = mapped(postgresql.INTERVAL()).convert
    assert convert is not None
    assert convert("1 day") == "P0Y0M1DT0H0M0S"
    assert convert(dt.timedelta(days=-1, seconds=1)) == "P0Y0M-1DT0H0M1S"
    with pytest.raises(RecordError, match="IntervalStyle"):
        convert("1-2 3 4:05:06")


@pytest.mark.parametrize(
    ("text", "amount"),
    [("$1,234.56", Decimal("1234.56")), ("-$1,234.56", Decimal("-1234.56")),
     ("($5.00)", Decimal("-5.00")), ("$92,233,720,368,547,758.07",
                                      Decimal("92233720368547758.07")),
     ("¥1,235", Decimal("1235.00")), (Decimal("1.5"), Decimal("1.50"))],
)
def test_money_reads_the_amount_of_its_text(text: Any, amount: Decimal) -> None:
    convert = mapped(postgresql.MONEY()).convert
    assert convert is not None
    value = convert(text)
    assert value == amount and value.as_tuple().exponent == -2


def test_money_in_a_locale_with_a_decimal_comma_is_a_record_error() -> None:
    convert = mapped(postgresql.MONEY()).convert
    assert convert is not None
    with pytest.raises(RecordError, match="lc_monetary"):
        convert("1.234,56 €")


@pytest.mark.parametrize(
    ("value", "text"),
    [(ipaddress.ip_interface("192.168.0.1/24"), "192.168.0.1/24"),
     (ipaddress.ip_interface("10.0.0.1/32"), "10.0.0.1"),
     (ipaddress.ip_interface("::1/128"), "::1"),
     (ipaddress.ip_interface("2001:db8::1/64"), "2001:db8::1/64")],
)
def test_inet_is_postgresqls_own_text(value: Any, text: str) -> None:
    convert = mapped(postgresql.INET()).convert
    assert convert is not None and convert(value) == text


def test_time_with_time_zone_keeps_its_offset() -> None:
    convert = mapped(postgresql.TIME(timezone=True)).convert
    assert convert is not None
    offset = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert convert(dt.time(10, 0, 0, 500_000, tzinfo=offset)) == "10:00:00.5+05:30"
    assert convert(dt.time(23, 59, tzinfo=dt.UTC)) == "23:59:00+00:00"


def test_multi_dimensional_array_is_a_record_error_naming_the_column() -> None:
    convert = mapped(postgresql.ARRAY(sa.Integer())).convert
    assert convert is not None
    assert convert([1, None, 3]) == [1, None, 3]
    with pytest.raises(RecordError, match=r"t\.c holds a multi-dimensional array"):
        convert([[1, 2], [3, 4]])


def test_array_of_decimals_encodes_and_decodes_through_avro() -> None:
    column = mapped(postgresql.ARRAY(sa.Numeric()))
    schema = AvroSchema({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": column.type}]})
    assert column.convert is not None
    value = {"a": column.convert([Decimal("1.50"), Decimal("NaN"), None, Decimal("1E-20")])}
    assert decode(encode(1, schema, value), schema) == {
        "a": ["1.50", "NaN", None, "0.00000000000000000001"]}


def compiled(field_type: Any, url: str) -> str:
    dialect = sa.create_engine(url).dialect  # no connection is made
    return str(sql_type(field_type).compile(dialect=dialect))


@pytest.mark.parametrize(
    ("field_type", "on_postgresql", "on_sqlite"),
    [
        (marked("io.debezium.time.Interval"), "INTERVAL", "TEXT"),
        (marked("io.debezium.time.ZonedTime"), "TIME WITH TIME ZONE", "TEXT"),
        (marked("liberate.data.Inet"), "INET", "TEXT"),
        (marked("liberate.data.Cidr"), "CIDR", "TEXT"),
        (marked("liberate.data.MacAddress"), "MACADDR", "TEXT"),
        ({"type": "array", "items": ["null", "int"]}, "INTEGER[]", "JSON"),
        ({"type": "array", "items": ["null", decimal_type(5, 2)]}, "NUMERIC(5, 2)[]", "JSON"),
        ({"type": "string", "connect.name": "io.debezium.data.Enum"}, "TEXT", "TEXT"),
    ],
)
def test_sink_creates_native_columns_on_postgresql_and_text_elsewhere(
    field_type: Any, on_postgresql: str, on_sqlite: str
) -> None:
    assert compiled(field_type, "postgresql+psycopg://") == on_postgresql
    assert compiled(field_type, "sqlite://") == on_sqlite


def test_arrays_become_postgresql_item_text_and_json_elsewhere() -> None:
    items = ["null", {"type": "string", "connect.name": "liberate.data.VariableDecimal"}]
    assert array_as_json(items)(["1.50", None, "NaN"]) == '["1.50",null,"NaN"]'
    assert array_as_text([1.5, float("nan"), True, None, dt.date(1, 1, 1)]) == [
        "1.5", "nan", "true", None, "0001-01-01"]
    assert json.loads(array_as_json(["null", "long"])([1, None])) == [1, None]


@pytest.mark.parametrize(
    ("text", "compact"),
    [("12.50", "12.50"), ('{"a": 3.141592653589793238462643383279, "b": 1e5}',
                          '{"a":3.141592653589793238462643383279,"b":1e5}'),
     ('"just a string"', '"just a string"'), ("[0.1, 2.5]", "[0.1,2.5]")],
)
def test_json_numbers_keep_their_text(text: str, compact: str) -> None:
    assert compact_json(text) == compact
