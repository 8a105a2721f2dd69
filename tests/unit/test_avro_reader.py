"""The generated Avro reader gives exactly what fastavro's ``schemaless_reader`` gives.

Checked against fastavro itself on random data over every Avro type (test_avro_codec's
EVERYTHING schema) and every type of the type contract (liberate/schema/types.py), nullable
and not, inside a Debezium envelope; values compare by ``repr``, so a Decimal's exponent, a
datetime's zone and a float's NaN count.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import uuid
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from fastavro.read import LOGICAL_READERS

from liberate.schema._avro_reader import compile_reader
from liberate.schema.avro import AvroSchema
from liberate.schema.types import JSON_NAME, MICRO_TIME_NAME, VARIABLE_DECIMAL_NAME, decimal_type
from tests.unit._avro_bytes import fastavro_bytes
from tests.unit.test_avro_codec import EVERYTHING, sample

UTC = dt.UTC
# Every Avro type liberate/schema/types.py maps a column to.
CONTRACT_TYPES: dict[str, Any] = {
    "boolean": "boolean",
    "int": "int",
    "long": "long",
    "float": "float",
    "double": "double",
    "string": "string",
    "bytes": "bytes",
    "decimal": decimal_type(12, 2),
    "unsigned_bigint": decimal_type(20, 0),
    "wide_decimal": decimal_type(38, 10),
    "variable_decimal": {"type": "string", "connect.name": VARIABLE_DECIMAL_NAME},
    "instant": {"type": "long", "logicalType": "timestamp-micros"},
    "local": {"type": "long", "logicalType": "local-timestamp-micros"},
    "day": {"type": "int", "logicalType": "date"},
    "clock": {"type": "long", "logicalType": "time-micros"},
    "duration": {"type": "long", "connect.name": MICRO_TIME_NAME},
    "uid": {"type": "string", "logicalType": "uuid"},
    "json": {"type": "string", "connect.name": JSON_NAME},
    "pg_enum": {"type": "string", "connect.name": "io.debezium.data.Enum"},
    "int_array": {"type": "array", "items": ["null", "long"]},
    "text_array": {"type": "array", "items": ["null", "string"]},
}


def contract_row_schema() -> dict[str, Any]:
    fields = []
    for name, avro_type in CONTRACT_TYPES.items():
        fields.append({"name": name, "type": avro_type})
        fields.append({"name": f"{name}_or_null", "type": ["null", avro_type], "default": None})
    return {"type": "record", "name": "Row", "namespace": "db.public.t", "fields": fields}


ENVELOPE = AvroSchema(
    {
        "type": "record",
        "name": "Envelope",
        "namespace": "db.public.t",
        "fields": [
            {"name": "before", "type": ["null", contract_row_schema()], "default": None},
            {"name": "after", "type": ["null", "db.public.t.Row"], "default": None},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": ["null", "long"], "default": None},
            {"name": "unchanged", "type": ["null", {"type": "array", "items": "string"}],
             "default": None},
        ],
    }
)


def contract_value(rng: random.Random, name: str) -> Any:
    def long(bits: int = 63) -> int:
        width = rng.choice([b for b in (1, 6, 7, 8, 13, 14, 15, 20, 31, 48, 52, 56) if b < bits])
        value: int = rng.choice([0, -1, 2**bits - 1, -(2**bits)])
        return rng.choice([value, rng.randrange(-(2**width), 2**width)])

    def instant() -> dt.datetime:
        return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(
            seconds=rng.randrange(-(6 * 10**10), 2 * 10**11), microseconds=rng.randrange(10**6)
        )

    text = "".join(rng.choice("aé€😀z \x00") for _ in range(rng.choice([0, 1, 63, 64, 9000])))
    values: dict[str, Any] = {
        "boolean": rng.choice([True, False]),
        "int": long(31),
        "long": long(),
        "float": rng.choice([0.0, -1.5, 3.4e38, float("inf"), float("nan"), 1e-45]),
        "double": rng.choice([0.0, -1e300, 2.5, float("nan"), float("-inf"), 5e-324]),
        "string": text,
        "bytes": bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 64, 300]))),
        "decimal": Decimal(rng.randrange(-(10**12) + 1, 10**12)).scaleb(-2),
        "unsigned_bigint": Decimal(rng.choice([0, 2**64 - 1, rng.randrange(2**64)])),
        "wide_decimal": Decimal(rng.randrange(-(10**38) + 1, 10**38)).scaleb(-10),
        "variable_decimal": rng.choice(["0", "-1.50", "1e-30", "123456789012345678901234.5"]),
        "instant": instant(),
        "local": instant().replace(tzinfo=None),
        "day": dt.date.fromordinal(rng.randrange(1, 3_652_059)),
        "clock": dt.time(rng.randrange(24), rng.randrange(60), rng.randrange(60),
                         rng.randrange(10**6)),
        "duration": long(40),
        "uid": uuid.UUID(int=rng.getrandbits(128)),
        "json": '{"a":[1,2],"b":null}',
        "pg_enum": rng.choice(["x", "long label"]),
        "int_array": [rng.choice([None, long()]) for _ in range(rng.choice([0, 1, 5]))],
        "text_array": [rng.choice([None, "", "é"]) for _ in range(rng.choice([0, 2]))],
    }
    return values[name]


def contract_row(rng: random.Random) -> dict[str, Any]:
    row = {}
    for name in CONTRACT_TYPES:
        row[name] = contract_value(rng, name)
        row[f"{name}_or_null"] = rng.choice([None, contract_value(rng, name)])
    return row


def fastavro_read(schema: AvroSchema, data: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(data), fastavro.parse_schema(schema.schema),
                                      None)


def generated_read(schema: AvroSchema, data: bytes) -> Any:
    read = compile_reader(schema.schema)
    assert read is not None, "the schema is left to fastavro"
    return read(data, 0)


def assert_reads_like_fastavro(schema: AvroSchema, data: bytes) -> None:
    assert repr(generated_read(schema, data)) == repr(fastavro_read(schema, data))


@pytest.mark.parametrize("seed", range(40))
def test_every_avro_type_reads_as_fastavro_reads_it(seed: int) -> None:
    data = fastavro_bytes(EVERYTHING, sample(random.Random(seed)))
    assert_reads_like_fastavro(EVERYTHING, data)


@pytest.mark.parametrize("seed", range(60))
def test_every_contract_type_in_an_envelope_reads_as_fastavro_reads_it(seed: int) -> None:
    rng = random.Random(seed)
    datum = {
        "before": rng.choice([None, contract_row(rng)]),
        "after": contract_row(rng),
        "op": rng.choice("crud"),
        "ts_ms": rng.choice([None, 1_700_000_000_000]),
        "unchanged": rng.choice([None, [], ["text_array"]]),
    }
    assert_reads_like_fastavro(ENVELOPE, fastavro_bytes(ENVELOPE, datum))


def test_longs_of_every_size_read_as_fastavro_reads_them() -> None:
    schema = AvroSchema("long")
    values = [0, -1, 2**63 - 1, -(2**63)]
    for bits in range(1, 63):
        values += [2**bits - 1, 2**bits, 2**bits + 1, -(2**bits), -(2**bits) - 1]
    for value in values:
        assert generated_read(schema, fastavro_bytes(schema, value)) == value


def test_arrays_and_maps_written_in_sized_blocks_are_read() -> None:
    # Java writers may write negative block counts followed by the block's size in bytes.
    schema = AvroSchema({"type": "array", "items": "int"})
    data = bytes([0x03, 0x04, 0x02, 0x04, 0x02, 0x06, 0x00])  # [1, 2] sized, [3], end
    assert generated_read(schema, data) == fastavro_read(schema, data) == [1, 2, 3]
    schema = AvroSchema({"type": "map", "values": "int"})
    data = bytes([0x01, 0x06, 0x02, 0x61, 0x08, 0x00])
    assert generated_read(schema, data) == fastavro_read(schema, data) == {"a": 4}


def test_recursive_records_are_read() -> None:
    schema = AvroSchema({
        "type": "record", "name": "Node",
        "fields": [{"name": "value", "type": "long"},
                   {"name": "next", "type": ["null", "Node"], "default": None}],
    })
    datum = {"value": 1, "next": {"value": 2, "next": {"value": 3, "next": None}}}
    assert generated_read(schema, fastavro_bytes(schema, datum)) == datum


def test_bytes_cut_short_fail_where_fastavro_fails() -> None:
    rng = random.Random(5)
    schema = AvroSchema(contract_row_schema())
    data = fastavro_bytes(schema, contract_row(rng))
    read = compile_reader(schema.schema)
    assert read is not None
    for end in range(len(data)):
        with pytest.raises(Exception):  # noqa: B017 - any error: the caller asks fastavro
            read(data[:end], 0)
    assert repr(read(data, 0)) == repr(fastavro_read(schema, data))


def test_out_of_range_union_and_enum_indexes_fail() -> None:
    union = compile_reader(["null", "long"])
    enum = compile_reader({"type": "enum", "name": "E", "symbols": ["A", "B"]})
    assert union is not None and enum is not None
    for bad in (b"\x04\x02", b"\x01\x02"):  # index 2, index -1
        with pytest.raises(ValueError, match="union"):
            union(bad, 0)
    for bad in (b"\x04", b"\x01"):
        with pytest.raises(ValueError, match="enum"):
            enum(bad, 0)


def test_a_logical_reader_registered_with_fastavro_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = AvroSchema({"type": "long", "logicalType": "timestamp-micros"})
    monkeypatch.setitem(LOGICAL_READERS, "long-timestamp-micros", lambda data, *_: ("at", data))
    assert generated_read(schema, b"\x02") == fastavro_read(schema, b"\x02") == ("at", 1)


def test_decimals_wider_than_their_precision_read_as_fastavro_rounds_them() -> None:
    schema = AvroSchema(decimal_type(3, 1))
    unscaled = 123456  # six digits in a decimal(3, 1): fastavro's context rounds it
    data = fastavro_bytes(AvroSchema("bytes"), unscaled.to_bytes(3, "big", signed=True))
    assert repr(generated_read(schema, data)) == repr(fastavro_read(schema, data))


def test_types_nested_deeper_than_python_blocks_allow_are_left_to_fastavro() -> None:
    schema: Any = "long"
    for _ in range(12):  # each array is two nested blocks of the generated code
        schema = {"type": "array", "items": ["null", schema]}
    assert compile_reader(schema) is None
    shallow = {"type": "array", "items": {"type": "array", "items": "long"}}
    assert compile_reader(shallow) is not None
