"""Rows read as Avro values without a dict (``RowView``) and encoded from the row itself.

The row path must be indistinguishable from the dict path: the same values when read, the
same bytes when serialized, the same errors naming the same field.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from liberate.errors import RecordError
from liberate.records import SourceRecord
from liberate.schema import types
from liberate.schema._generated import FieldPlan, compile_row_writer
from liberate.schema.avro import AvroSchema
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.schema.rows import RowLayout, RowView
from liberate.schema.tables import TableSchema, build_table_schema
from liberate.schema.types import compact_json, keeps_avro_ready, unchanged_type
from liberate.serde import RecordSerializer

UTC = dt.UTC
SHOUTED_UUID = "ABCDEF00-0000-0000-0000-00000000000F"
PARIS = ZoneInfo("Europe/Paris")


def wide_table() -> sa.Table:
    """A table with a column of every kind the row writer writes inline or delegates."""
    return sa.Table(
        "wide",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("code", sa.String(20), primary_key=True),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("big", sa.BigInteger()),
        sa.Column("flag", sa.Boolean()),
        sa.Column("ratio", sa.Float()),
        sa.Column("real", sa.REAL()),
        sa.Column("name", sa.Text()),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("loose", sa.Numeric()),
        sa.Column("unsigned", mysql.BIGINT(unsigned=True)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("maybe_at", sa.DateTime(timezone=True)),
        sa.Column("local", sa.DateTime()),
        sa.Column("day", sa.Date()),
        sa.Column("clock", sa.Time()),
        sa.Column("doc", postgresql.JSONB()),
        sa.Column("uid", sa.Uuid()),
        sa.Column("blob", sa.LargeBinary()),
    )


def random_row(rng: random.Random, i: int) -> tuple[Any, ...]:
    """Values the way various drivers return them, converted or not, sometimes None."""

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.2 else value

    moment = dt.datetime(2024, 3, 31, 0, 30, tzinfo=UTC) + dt.timedelta(
        seconds=rng.randrange(-(10**9), 10**9), microseconds=rng.randrange(10**6)
    )
    text = rng.choice(["", "plain", "é€😀", "x" * 9000])
    return (
        i,
        rng.choice(["A-1", "b" * 20, b"bytes-code"]),  # MySQL may return bytes for text
        rng.randrange(-(2**31), 2**31),
        maybe(rng.randrange(-(2**63), 2**63)),
        maybe(rng.choice([True, False, 0, 1])),
        maybe(rng.choice([1.5, -0.0, 3, float("inf")])),
        maybe(rng.choice([0.25, 2])),
        maybe(rng.choice([text, b"utf-8 bytes"])),
        rng.choice(
            [
                Decimal(rng.randrange(-(10**12) + 1, 10**12)).scaleb(-2),
                Decimal("7"),  # fewer decimals than the scale
                12.5,  # a float from a driver without decimals
            ]
        ),
        maybe(rng.choice([Decimal("1.500"), Decimal("-2E+3")])),
        maybe(rng.choice([Decimal(2**64 - 1), 2**64 - 1])),
        rng.choice([moment, moment.astimezone(PARIS), moment.replace(tzinfo=None)]),
        maybe(moment),
        maybe(rng.choice([moment.replace(tzinfo=None), moment])),
        maybe(dt.date(2024, 2, 29)),
        maybe(rng.choice([dt.time(23, 59, 59, 999999), dt.timedelta(hours=7)])),
        maybe(rng.choice(['{"a": [1, 2.50]}', {"a": [1, 2.5], "é": None}, []])),
        maybe(rng.choice([uuid.UUID(int=rng.getrandbits(128)), SHOUTED_UUID])),
        maybe(rng.choice([b"\x00\xff", bytearray(b"ab"), memoryview(b"mv")])),
    )


@pytest.fixture
def serializer(tmp_path: Path) -> Iterator[RecordSerializer]:
    registry = EmbeddedRegistry(tmp_path / "streams.db")
    yield RecordSerializer(registry)
    registry.close()


def records(schema: TableSchema, rows: list[tuple[Any, ...]], *, views: bool) -> list[SourceRecord]:
    out = []
    for row in rows:
        value = schema.row_value(row) if views else schema.value_of(row)
        key = schema.row_key(row) if views else schema.key_of(schema.value_of(row))
        out.append(
            SourceRecord("t.wide", key, value, schema.key_schema, schema.value_schema, {}, {})
        )
    return out


def test_a_row_view_reads_like_the_dict_value_of_builds() -> None:
    schema = build_table_schema(wide_table(), namespace="t.wide", dialect="mysql")
    rng = random.Random(1)
    for i in range(300):
        row = random_row(rng, i)
        view = schema.row_value(row)
        expected = schema.value_of(row)
        assert view == expected and expected == view
        assert dict(view) == expected
        assert list(view) == list(expected) and len(view) == len(expected)
        assert "amount" in view and "nope" not in view
        assert view.get("nope", 3) == 3
        assert schema.row_key(row) == schema.key_of(expected)
    with pytest.raises(KeyError):
        schema.row_value(random_row(rng, 0))["nope"]


def test_rows_serialize_to_the_bytes_their_dicts_serialize_to(
    serializer: RecordSerializer,
) -> None:
    schema = build_table_schema(wide_table(), namespace="t.wide", dialect="mysql")
    rng = random.Random(2)
    rows = [random_row(rng, i) for i in range(500)]
    from_views = serializer.serialize(records(schema, rows, views=True))
    from_dicts = serializer.serialize(records(schema, rows, views=False))
    assert [(r.key, r.value) for r in from_views] == [(r.key, r.value) for r in from_dicts]


def test_the_generated_row_writer_writes_what_the_record_writer_writes_for_the_dict() -> None:
    schema = build_table_schema(wide_table(), namespace="t.wide", dialect="postgresql")
    layout = schema.row_value(()).layout
    rng = random.Random(5)
    written = 0
    for i in range(500):
        row = random_row(rng, i)
        expected = bytearray()
        try:
            schema.value_schema.writer(expected, schema.value_of(row))
        except RecordError:
            with pytest.raises(Exception):  # noqa: B017 - any error: the serializer falls back
                layout.write(bytearray(), row)
            continue
        out = bytearray()
        layout.write(out, row)
        assert out == expected
        written += 1
    assert written > 400


def test_a_row_value_that_does_not_fit_names_the_field_like_a_dict(
    serializer: RecordSerializer,
) -> None:
    schema = build_table_schema(wide_table(), namespace="t.wide", dialect="postgresql")
    row = list(random_row(random.Random(3), 1))
    row[2] = 2**40  # qty is an Avro int
    with pytest.raises(RecordError) as from_view:
        serializer.serialize(records(schema, [tuple(row)], views=True))
    with pytest.raises(RecordError) as from_dict:
        serializer.serialize(records(schema, [tuple(row)], views=False))
    assert "field 'qty'" in from_view.value.message
    assert from_view.value.message == from_dict.value.message


def test_a_view_of_another_schema_is_encoded_as_a_mapping(serializer: RecordSerializer) -> None:
    schema = build_table_schema(wide_table(), namespace="t.wide", dialect="postgresql")
    rng = random.Random(4)
    rows = [random_row(rng, i) for i in range(20)]
    wanted = serializer.serialize(records(schema, rows, views=False))
    other = build_table_schema(wide_table(), namespace="t.wide", dialect="postgresql")
    # Views whose layout belongs to an equal schema object, not the record's own.
    crossed = [
        SourceRecord(
            "t.wide",
            schema.row_key(row),
            other.row_value(row),
            schema.key_schema,
            schema.value_schema,
            {},
            {},
        )
        for row in rows
    ]
    assert [r.value for r in serializer.serialize(crossed)] == [r.value for r in wanted]


def test_a_schema_the_row_writer_leaves_out_is_encoded_as_a_mapping(
    serializer: RecordSerializer,
) -> None:
    union = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "v", "type": ["null", "string", "long"]}],
    }
    assert compile_row_writer(union, [FieldPlan(0)], row_length=1) is None
    schema = AvroSchema(union)
    layout = RowLayout(schema, ["v"], [FieldPlan(0)], 1)
    rows = [("text",), (5,), (None,)]
    views = [SourceRecord("t.r", None, RowView(row, layout), None, schema, {}, {}) for row in rows]
    dicts = [SourceRecord("t.r", None, {"v": row[0]}, None, schema, {}, {}) for row in rows]
    assert [r.value for r in serializer.serialize(views)] == [
        r.value for r in serializer.serialize(dicts)
    ]


def test_the_row_writer_is_not_made_for_a_plan_that_does_not_fit_the_record() -> None:
    empty = {"type": "record", "name": "R", "fields": []}
    assert compile_row_writer(empty, [FieldPlan(0)], row_length=1) is None
    assert compile_row_writer("long", [FieldPlan(0)], row_length=1) is None


def test_the_row_writer_reads_only_the_planned_positions() -> None:
    schema = {
        "type": "record",
        "name": "K",
        "fields": [{"name": "b", "type": "string"}, {"name": "a", "type": "long"}],
    }
    write = compile_row_writer(schema, [FieldPlan(2), FieldPlan(0)], row_length=3)
    assert write is not None
    out = bytearray()
    write(out, (5, "ignored", "x"))
    assert bytes(out) == b"\x02x\x0a"


def test_converters_keep_the_values_they_declare() -> None:
    samples: dict[type, list[Any]] = {
        str: ["", "é", '{"a":1}'],
        Decimal: [Decimal("1.50"), Decimal("-0"), Decimal("1E+3")],
        float: [0.0, -1.5, float("inf")],
        bytes: [b"", b"\x00\xff"],
    }
    converters: tuple[types.Converter, ...] = (
        types._to_str,
        types._to_decimal,
        types._to_float,
        types._to_bytes,
        types._json_text,
        types._uuid_text,
        types._decimal_text,
        types._aware,
    )
    for convert in converters:
        kept = unchanged_type(convert)
        for value in samples.get(kept, []) if kept is not None else []:
            assert convert(value) == value and type(convert(value)) is kept
    ready: dict[types.Converter, Any] = {
        types._to_str: "é",
        types._to_decimal: Decimal("1.50"),
        types._to_float: 2.5,
        types._to_bytes: b"\x01",
        types._json_text: '{"a":1}',
        types._aware: dt.datetime(2024, 1, 1, tzinfo=PARIS),
        types._naive_as_utc: dt.datetime(2024, 1, 1, tzinfo=UTC),
    }
    for ready_convert, value in ready.items():
        assert keeps_avro_ready(ready_convert) and ready_convert(value) == value
    # Canonicalising converters change text that is already a str.
    assert not keeps_avro_ready(types._uuid_text)
    shouted = "ABCDEF00-0000-0000-0000-000000000005"
    assert types._uuid_text(shouted) != shouted
    assert not keeps_avro_ready(types._decimal_text)
    assert types._decimal_text("1e2") != "1e2"


@pytest.mark.parametrize(
    "text",
    [
        '{"tags": ["a", "b"], "channel": "web", "priority": 1}',
        '  {"a" : 1.5, "b": [100.0, -0.0, 12345678901234567890]}  ',
        '"just a string"',
        "[]",
        "null",
        '{"esc": "quote \\" backslash \\\\ tab \\t nul-ish \\u0001 \\u00e9 \\/"}',
        '{"é": "€😀", "dup": 1, "dup": 2}',
    ],
)
def test_compact_json_is_the_text_the_converter_writes_for_the_parsed_value(text: str) -> None:
    parsed = json.loads(text)
    # A JSON string document keeps its quotes: every JSON field value parses as JSON.
    assert compact_json(text) == json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))
    if not isinstance(parsed, str):  # the converter takes a str for JSON text already
        assert compact_json(text) == types._json_text(parsed)


@pytest.mark.parametrize("text", ["", "{", "[1] x", "nan?"])
def test_compact_json_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        compact_json(text)
