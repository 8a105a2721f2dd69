"""Avro encoding and decoding: the compiled writer is byte-for-byte fastavro, but stricter.

The writer must write exactly what fastavro writes for every shape liberate produces (checked
against fastavro itself), and refuse values fastavro would silently corrupt.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from liberate.errors import RecordError
from liberate.schema._avro_writer import compile_writer
from liberate.schema.avro import AvroSchema, decode, encode
from tests.unit._avro_bytes import compiled_bytes, fastavro_bytes

UTC = dt.UTC
STATUS = {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}
ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [
        {"name": "street", "type": "string"},
        {"name": "zip", "type": ["null", "int"], "default": None},
    ],
}
EVERYTHING = AvroSchema(
    {
        "type": "record",
        "name": "Everything",
        "namespace": "test.ns",
        "fields": [
            {"name": "b", "type": "boolean"},
            {"name": "i", "type": "int"},
            {"name": "l", "type": "long"},
            {"name": "f", "type": "float"},
            {"name": "d", "type": "double"},
            {"name": "s", "type": "string"},
            {"name": "raw", "type": "bytes"},
            {"name": "n", "type": "null"},
            {"name": "opt", "type": ["null", "string"], "default": None},
            {"name": "opt_last", "type": ["string", "null"], "default": "x"},
            {"name": "status", "type": STATUS},
            {"name": "status_again", "type": ["null", "test.ns.Status"], "default": None},
            {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "counts", "type": {"type": "map", "values": "long"}},
            {"name": "home", "type": ADDRESS},
            {"name": "work", "type": ["null", "test.ns.Address"], "default": None},
            {
                "name": "amount",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4},
            },
            {
                "name": "fixed_amount",
                "type": {
                    "type": "fixed",
                    "name": "Money",
                    "size": 8,
                    "logicalType": "decimal",
                    "precision": 12,
                    "scale": 2,
                },
            },
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "at_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "clock", "type": {"type": "long", "logicalType": "time-micros"}},
            {"name": "clock_ms", "type": {"type": "int", "logicalType": "time-millis"}},
            {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "json", "type": {"type": "string", "connect.name": "io.debezium.data.Json"}},
            {
                "name": "maybe_at",
                "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
                "default": None,
            },
            {
                "name": "nested_list",
                "type": {"type": "array", "items": {"type": "map", "values": ["null", "double"]}},
            },
        ],
    }
)


def sample(rng: random.Random) -> dict[str, Any]:
    def text() -> str:
        size = rng.choice([0, 1, 5, 63, 64, 200, 8191, 8192, 9000, 20000])
        return "".join(rng.choice("aé€😀z ") for _ in range(size))

    def long() -> int:
        bits = rng.choice([1, 6, 7, 13, 14, 20, 31, 40, 62, 63])
        return rng.randrange(-(2**bits), 2**bits)

    def instant() -> dt.datetime:
        seconds = rng.randrange(-(10**10), 10**10)
        return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(
            seconds=seconds, microseconds=rng.randrange(10**6)
        )

    return {
        "b": rng.choice([True, False, 0, 1]),
        "i": rng.choice([-(2**31), 2**31 - 1, 0, -1, rng.randrange(-(2**31), 2**31)]),
        "l": rng.choice([-(2**63), 2**63 - 1, long()]),
        "f": rng.choice([0.0, -1.5, 3.25, 1e30, float("inf"), 7]),
        "d": rng.choice([0.0, -1e300, 2.5, float("nan"), float("-inf"), 12]),
        "s": text(),
        "raw": rng.choice([b"", b"\x00\xff", bytearray(b"abc"), memoryview(b"xyz"), b"q" * 9000]),
        "n": None,
        "opt": rng.choice([None, "", text()]),
        "opt_last": rng.choice([None, "v"]),
        "status": rng.choice(STATUS["symbols"]),
        "status_again": rng.choice([None, "PAID"]),
        "hash": bytes(rng.randrange(256) for _ in range(4)),
        "tags": [text() for _ in range(rng.choice([0, 1, 3, 70]))],
        "counts": {f"k{n}": long() for n in range(rng.choice([0, 1, 4, 100]))},
        "home": {"street": text(), "zip": rng.choice([None, 1000, -5])},
        "work": rng.choice([None, {"street": "x", "zip": None}, {"street": "y"}]),
        "amount": Decimal(rng.randrange(-(10**20) + 1, 10**20)).scaleb(-4),
        "fixed_amount": Decimal(rng.randrange(-(10**12) + 1, 10**12)).scaleb(-2),
        "at": rng.choice([instant(), rng.randrange(-(10**15), 10**15)]),
        "at_ms": instant().replace(microsecond=0),
        "local": instant().replace(tzinfo=None),
        "day": rng.choice([dt.date(1969, 12, 31), dt.date(2024, 2, 29), dt.date(1, 1, 1)]),
        "clock": rng.choice([dt.time(0, 0), dt.time(23, 59, 59, 999999), dt.time(12, 30, 1)]),
        "clock_ms": dt.time(8, 15, 30, 123000),
        "uid": rng.choice([uuid.UUID(int=rng.getrandbits(128)), str(uuid.uuid4())]),
        "json": '{"a": [1, 2]}',
        "maybe_at": rng.choice([None, instant()]),
        "nested_list": [{"x": None, "y": 1.5}, {}][: rng.randrange(3)],
    }


@pytest.mark.parametrize("seed", range(60))
def test_compiled_writer_writes_the_bytes_fastavro_writes(seed: int) -> None:
    datum = sample(random.Random(seed))
    assert compiled_bytes(EVERYTHING, datum) == fastavro_bytes(EVERYTHING, datum)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x00\x00\x00\x00\x01\x02", "EOFError"),  # the union index is missing
        (b"\x00\x00\x00\x00\x01\x02\x02\x20abc", "EOFError: Expected 16 bytes, read 3"),
        (b"\x00\x00\x00\x00\x01\x02\x06", "IndexError"),  # union branch 3 of 2
    ],
)
def test_bytes_that_do_not_fit_the_schema_are_a_record_error(data: bytes, problem: str) -> None:
    schema = AvroSchema(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "id", "type": "long"}, {"name": "s", "type": ["null", "string"]}],
        }
    )
    with pytest.raises(RecordError, match="message does not decode with Avro schema R") as caught:
        decode(data, schema)
    assert problem in caught.value.message


def test_everything_round_trips_through_the_wire_format() -> None:
    datum = sample(random.Random(7))
    at = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    datum.update(d=1.5, f=0.5, at=at, uid=str(uuid.UUID(int=5)))
    decoded = decode(encode(3, EVERYTHING, datum), EVERYTHING)
    assert decoded["amount"] == datum["amount"]
    assert decoded["at"] == datum["at"]
    assert decoded["home"] == {"zip": None, **datum["home"]}
    assert decoded["tags"] == datum["tags"]
    assert decoded["counts"] == datum["counts"]
    assert str(decoded["uid"]) == datum["uid"]  # fastavro reads uuid as uuid.UUID


def test_missing_field_with_a_default_is_written_like_fastavro() -> None:
    schema = AvroSchema(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {"name": "a", "type": "long"},
                {"name": "b", "type": ["null", "string"], "default": None},
                {"name": "c", "type": "string", "default": "dflt"},
            ],
        }
    )
    assert compiled_bytes(schema, {"a": 1}) == fastavro_bytes(schema, {"a": 1})


def test_primitive_top_level_schemas_are_compiled() -> None:
    for schema, datum in [(AvroSchema("string"), "key"), (AvroSchema("long"), -(2**40))]:
        assert compiled_bytes(schema, datum) == fastavro_bytes(schema, datum)


def test_multi_branch_unions_fall_back_to_fastavro() -> None:
    schema = AvroSchema(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "v", "type": ["null", "string", "long"]}],
        }
    )
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(schema.schema, named, _write_hint=False)
    assert compile_writer(parsed, named, lambda exc: RecordError(exc.reason)) is None
    for value in (None, "x", 5):
        assert compiled_bytes(schema, {"v": value}) == fastavro_bytes(schema, {"v": value})
    with pytest.raises(RecordError, match="does not fit Avro schema R"):
        encode(1, schema, {"v": 1.5j})


def test_recursive_types_fall_back_to_fastavro() -> None:
    schema = AvroSchema(
        {
            "type": "record",
            "name": "Node",
            "fields": [
                {"name": "value", "type": "int"},
                {"name": "next", "type": ["null", "Node"], "default": None},
            ],
        }
    )
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(schema.schema, named, _write_hint=False)
    assert compile_writer(parsed, named, lambda exc: RecordError(exc.reason)) is None
    datum = {"value": 1, "next": {"value": 2, "next": None}}
    assert compiled_bytes(schema, datum) == fastavro_bytes(schema, datum)
    assert decode(encode(1, schema, datum), schema) == datum


ROW = AvroSchema(
    {
        "type": "record",
        "name": "Value",
        "namespace": "shop.orders",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "qty", "type": "int"},
            {"name": "paid", "type": "boolean"},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "attrs", "type": {"type": "map", "values": "long"}},
            {"name": "status", "type": STATUS},
            {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
            {"name": "name", "type": "string"},
            {
                "name": "amount",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2},
            },
            {"name": "after", "type": ["null", ADDRESS], "default": None},
        ],
    }
)
GOOD: dict[str, Any] = {
    "id": 1,
    "qty": 2,
    "paid": True,
    "tags": ["a"],
    "attrs": {"k": 1},
    "status": "NEW",
    "hash": b"1234",
    "name": "n",
    "amount": Decimal("12.34"),
    "after": None,
}


def test_a_good_row_encodes() -> None:
    assert compiled_bytes(ROW, GOOD) == fastavro_bytes(ROW, GOOD)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"qty": 1.5}, "field 'qty': a int cannot hold float 1.5"),
        ({"qty": 2**31}, "field 'qty': 2147483648 is out of range for an Avro int (32 bits)"),
        ({"id": 2**63}, "field 'id': 9223372036854775808 is out of range for an Avro long"),
        ({"id": "7"}, "field 'id': a long cannot hold str '7'"),
        ({"id": None}, "field 'id': no value (None) for a non-nullable long"),
        ({"paid": None}, "field 'paid': no value (None) for a non-nullable boolean"),
        ({"paid": "yes"}, "field 'paid': a boolean cannot hold str 'yes'"),
        ({"tags": "abc"}, "field 'tags': a array of string cannot hold str 'abc'"),
        ({"tags": ["a", "b", 3]}, "field 'tags[2]': a string cannot hold int 3"),
        ({"attrs": {"k": "v"}}, "field 'attrs['k']': a long cannot hold str 'v'"),
        ({"attrs": {1: 1}}, "field 'attrs[1]': map keys must be str"),
        ({"status": "LOST"}, "field 'status': 'LOST' is not a symbol of enum shop.orders.Status"),
        ({"hash": b"12345"}, "field 'hash': fixed shop.orders.Hash holds 4 bytes, got 5"),
        ({"name": b"bytes"}, "field 'name': a string cannot hold bytes b'bytes'"),
        (
            {"amount": Decimal("1.234")},
            "field 'amount': Decimal('1.234') does not fit decimal(6,2)",
        ),
        ({"amount": Decimal("123456.7")}, "field 'amount': Decimal('123456.7') does not fit"),
        ({"after": {"street": 5}}, "field 'after.street': a string cannot hold int 5"),
        ({"after": {"zip": 1}}, "field 'after.street': no value (None) for a non-nullable string"),
    ],
)
def test_a_bad_value_is_a_record_error_naming_the_field(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(RecordError) as caught:
        encode(1, ROW, {**GOOD, **change})
    assert caught.value.message.startswith("value does not fit Avro schema shop.orders.Value: ")
    assert message in caught.value.message


def test_a_datum_that_is_not_a_record_is_a_record_error() -> None:
    with pytest.raises(RecordError, match=r"non-nullable record shop\.orders\.Value"):
        encode(1, ROW, None)


def _field_schema(field_type: Any) -> AvroSchema:
    fields = [{"name": "v", "type": field_type}]
    return AvroSchema({"type": "record", "name": "F", "fields": fields})


def _both_or_same_error(schema: AvroSchema, datum: dict[str, Any]) -> None:
    """The compiled writer writes fastavro's bytes, or fails where fastavro fails."""
    try:
        expected = fastavro_bytes(schema, datum)
    except Exception:
        with pytest.raises(RecordError):
            compiled_bytes(schema, datum)
        return
    assert compiled_bytes(schema, datum) == expected


@pytest.mark.parametrize(("precision", "scale"), [(1, 0), (5, 2), (12, 2), (20, 0), (38, 10)])
def test_decimal_shortcut_writes_fastavro_bytes_and_refuses_what_fastavro_refuses(
    precision: int, scale: int
) -> None:
    schema = _field_schema(
        {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}
    )
    rng = random.Random(precision * 100 + scale)
    limit = 10**precision
    unscaled = [0, 1, -1, limit - 1, -(limit - 1), limit, -limit, 127, 128, -128, -129, 255, 256]
    unscaled += [rng.randrange(-limit * 10, limit * 10) for _ in range(300)]
    for n in unscaled:
        for value in (
            Decimal(n).scaleb(-scale),  # the exponent drivers return: the shortcut
            Decimal(n).scaleb(-scale - 1),  # one digit too many: fastavro refuses
            Decimal(n),  # fewer decimals: fastavro scales it
        ):
            _both_or_same_error(schema, {"v": value})
    for odd in (Decimal("-0").scaleb(-scale), Decimal("NaN"), Decimal("-Infinity")):
        _both_or_same_error(schema, {"v": odd})


def test_decimal_shortcut_ignores_a_narrow_decimal_context() -> None:
    import decimal

    schema = _field_schema({"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 0})
    big = Decimal(10**37 + 12345)
    with decimal.localcontext(decimal.Context(prec=5)):
        assert compiled_bytes(schema, {"v": big}) == fastavro_bytes(schema, {"v": big})


def _instants(rng: random.Random) -> list[dt.datetime]:
    from zoneinfo import ZoneInfo

    zones = [
        UTC,
        ZoneInfo("Etc/UTC"),
        ZoneInfo("Europe/Paris"),
        ZoneInfo("America/St_Johns"),
        dt.timezone(dt.timedelta(hours=-9, minutes=-30)),
    ]
    values = [
        dt.datetime(1, 1, 1, tzinfo=UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(1970, 1, 1, tzinfo=UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    for _ in range(200):
        seconds = rng.randrange(-(10**10), 10**10)
        moment = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(
            seconds=seconds, microseconds=rng.randrange(10**6)
        )
        values.append(moment.astimezone(rng.choice(zones)))
    return values


def test_timestamp_shortcuts_write_fastavro_bytes() -> None:
    rng = random.Random(11)
    utc = _field_schema({"type": "long", "logicalType": "timestamp-micros"})
    local = _field_schema({"type": "long", "logicalType": "local-timestamp-micros"})
    nullable = _field_schema(["null", {"type": "long", "logicalType": "timestamp-micros"}])
    for moment in _instants(rng):
        for schema in (utc, local, nullable):
            assert compiled_bytes(schema, {"v": moment}) == fastavro_bytes(schema, {"v": moment})
        naive = moment.replace(tzinfo=None)
        for schema in (utc, local):  # naive: fastavro's reading (local time / wall clock)
            assert compiled_bytes(schema, {"v": naive}) == fastavro_bytes(schema, {"v": naive})
    for schema in (utc, local):
        assert compiled_bytes(schema, {"v": 1234567}) == fastavro_bytes(schema, {"v": 1234567})


def test_longs_of_every_size_write_fastavro_bytes() -> None:
    schema = _field_schema("long")
    values = [0, -1, 2**63 - 1, -(2**63)]
    for bits in range(1, 63):
        values += [2**bits - 1, 2**bits, 2**bits + 1, -(2**bits), -(2**bits) - 1]
    for value in values:
        assert compiled_bytes(schema, {"v": value}) == fastavro_bytes(schema, {"v": value})


def test_a_record_given_as_any_mapping_writes_fastavro_bytes() -> None:
    from collections import OrderedDict
    from types import MappingProxyType

    datum = sample(random.Random(3))
    expected = fastavro_bytes(EVERYTHING, datum)
    assert compiled_bytes(EVERYTHING, OrderedDict(datum)) == expected
    assert compiled_bytes(EVERYTHING, MappingProxyType(datum)) == expected
