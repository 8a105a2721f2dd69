"""The SQL sink's transcoders (sinks/sql/_transcode.py): which schemas get one, and which bytes
they refuse (so the decoding path takes the batch). What they write is compared with the
decoding path on PostgreSQL in tests/integration/test_sql_sink_fast_path.py."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from liberate.envelope import envelope_schema, source_schema
from liberate.schema.avro import AvroSchema, encode
from sinks.sql._shape import ShapeRules
from sinks.sql._transcode import Transcoder, transcoder

KEY = AvroSchema({"type": "record", "name": "Key", "namespace": "t",
                  "fields": [{"name": "id", "type": "long"}]})
FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "note", "type": ["null", "string"], "default": None},
]
VALUE = AvroSchema({"type": "record", "name": "Value", "namespace": "t", "fields": FIELDS})
KH, VH = b"\x00\x00\x00\x00\x01", b"\x00\x00\x00\x00\x02"


def compiled(value: AvroSchema = VALUE, rules: ShapeRules | None = None,
             key: AvroSchema = KEY) -> Transcoder | None:
    return transcoder(key, value, rules or ShapeRules(), key_header=KH, value_header=VH,
                      delete=True)


def value_with(fields: list[dict[str, Any]]) -> AvroSchema:
    return AvroSchema({"type": "record", "name": "Value", "namespace": "t", "fields": fields})


def test_an_entity_schema_stages_its_columns_after_the_delete_flag() -> None:
    found = compiled()
    assert found is not None
    assert [c.name for c in found.columns] == ["id", "name", "note"]
    assert found.key_columns == ("id",)
    out: list[bytes] = []
    deletes = found.run([encode(1, KEY, {"id": 7})], [encode(2, VALUE, {
        "id": 7, "name": "Zoë", "note": None})], out)
    assert deletes == 0
    name = "Zoë".encode()
    assert b"".join(out) == (
        struct.pack(">hi?iq", 4, 1, False, 8, 7) + struct.pack(">i", len(name)) + name
        + struct.pack(">i", -1)
    )


def test_a_tombstone_stages_its_key_with_the_flag_set() -> None:
    found = compiled()
    assert found is not None
    out: list[bytes] = []
    assert found.run([encode(1, KEY, {"id": 7})], [None], out) == 1
    assert b"".join(out) == struct.pack(">hi?iqii", 4, 1, True, 8, 7, -1, -1)


@pytest.mark.parametrize(
    "field_type",
    [
        {"type": "long", "logicalType": "time-micros"},
        {"type": "string", "logicalType": "uuid"},
        {"type": "enum", "name": "E", "symbols": ["A"]},
        {"type": "array", "items": "long"},
        {"type": "map", "values": "long"},
        {"type": "fixed", "name": "F", "size": 2},
        ["null", "long", "string"],
        {"type": "long", "connect.name": "io.debezium.time.MicroTime"},
        {"type": "record", "name": "Inner", "fields": [{"name": "a", "type": "long"}]},
    ],
)
def test_schemas_with_a_type_it_does_not_stage_get_no_transcoder(field_type: Any) -> None:
    assert compiled(value_with([*FIELDS, {"name": "x", "type": field_type}])) is None


def test_envelopes_and_other_key_modes_get_no_transcoder() -> None:
    envelope = envelope_schema(VALUE, source_schema("postgresql", []))
    assert compiled(envelope) is None
    assert compiled(rules=ShapeRules(pk_mode="none")) is None
    assert compiled(rules=ShapeRules(pk_mode="record_value", pk_fields=("id",))) is None


def test_a_row_key_field_of_another_type_than_the_key_gets_no_transcoder() -> None:
    other = value_with([{"name": "id", "type": "int"}, *FIELDS[1:]])
    assert compiled(other) is None


@pytest.mark.parametrize(
    ("label", "key", "value"),
    [
        ("another value schema", encode(1, KEY, {"id": 1}),
         encode(3, VALUE, {"id": 1, "name": "a", "note": None})),
        ("another key schema", encode(3, KEY, {"id": 1}),
         encode(2, VALUE, {"id": 1, "name": "a", "note": None})),
        ("cut short", encode(1, KEY, {"id": 1}),
         encode(2, VALUE, {"id": 1, "name": "abc", "note": None})[:-3]),
    ],
)
def test_bytes_the_decoder_would_not_read_alike_are_refused(
    label: str, key: bytes, value: bytes
) -> None:
    found = compiled()
    assert found is not None
    with pytest.raises(Exception):  # noqa: B017 - any exception sends the batch the other way
        found.run([key], [value], [])


def test_an_excluded_string_that_is_not_utf8_is_refused() -> None:
    found = compiled(rules=ShapeRules(exclude=frozenset({"name"})))
    assert found is not None
    assert [c.name for c in found.columns] == ["id", "note"]
    good = encode(2, VALUE, {"id": 1, "name": "ab", "note": None})
    found.run([encode(1, KEY, {"id": 1})], [good], [])
    bad = good.replace(b"ab", b"\xff\xfe")
    with pytest.raises(UnicodeDecodeError):
        found.run([encode(1, KEY, {"id": 1})], [bad], [])


def test_a_long_out_of_an_int_column_range_is_refused() -> None:
    # An Avro int is a zig-zag varint: a foreign producer can write one too large.
    fields = [{"name": "id", "type": "long"}, {"name": "n", "type": "int"}]
    found = compiled(value_with(fields))
    assert found is not None
    wide = encode(2, value_with([fields[0], {"name": "n", "type": "long"}]), {"id": 1,
                                                                               "n": 2**40})
    with pytest.raises(struct.error):
        found.run([encode(1, KEY, {"id": 1})], [wide], [])
