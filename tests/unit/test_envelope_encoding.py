"""Encoding change-event envelopes: nested records written inline, repeated strings cached.

The generated writer of an envelope writes its ``before``/``after`` rows and its ``source`` and
``transaction`` blocks in one function, and keeps the bytes of the ``source`` block's string
runs for the very same string objects. Whatever it takes, the bytes are fastavro's.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import fastavro
import pytest

from liberate.envelope import change_value, envelope_schema, source_block, source_schema
from liberate.errors import RecordError
from liberate.records import SourceRecord
from liberate.schema.avro import AvroSchema, encode, wire_header
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.serde import RecordSerializer
from tests.unit._avro_bytes import compiled_bytes, fastavro_bytes

ROW = AvroSchema(
    {
        "type": "record",
        "name": "Value",
        "namespace": "shop.public.orders",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "customer_id", "type": ["null", "int"], "default": None},
            {"name": "note", "type": ["null", "string"], "default": None},
            {
                "name": "amount",
                "type": [
                    "null",
                    {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
                ],
                "default": None,
            },
            {
                "name": "updated_at",
                "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
                "default": None,
            },
            {
                "name": "attributes",
                "type": ["null", {"type": "string", "connect.name": "io.debezium.data.Json"}],
                "default": None,
            },
        ],
    }
)
PG_SOURCE = source_schema(
    "postgresql",
    [
        {"name": "txId", "type": ["null", "long"], "default": None},
        {"name": "lsn", "type": ["null", "long"], "default": None},
    ],
)
MYSQL_SOURCE = source_schema(
    "mysql",
    [
        {"name": "file", "type": "string"},
        {"name": "pos", "type": "long"},
        {"name": "row", "type": "int"},
        {"name": "gtid", "type": ["null", "string"], "default": None},
        {"name": "server_id", "type": "long"},
    ],
)
PG_ENVELOPE = envelope_schema(ROW, PG_SOURCE, unchanged=True)
MYSQL_ENVELOPE = envelope_schema(ROW, MYSQL_SOURCE)
NOW = dt.datetime(2026, 11, 26, 20, 45, 1, 123456, tzinfo=dt.UTC)


def row(i: int, note: str | None = "a note") -> dict[str, Any]:
    return {
        "id": i,
        "customer_id": i % 1000,
        "note": note,
        "amount": Decimal("1234.56"),
        "updated_at": NOW,
        "attributes": '{"tags": ["a", "b"]}',
    }


PG_TEMPLATE = source_block(
    connector="postgresql", name="shop", ts_ms=0, db="shop", schema="public", table="orders",
    position={"txId": None, "lsn": None},
)


def pg_value(i: int, *, template: dict[str, Any] = PG_TEMPLATE, op: str = "u",
             before: dict[str, Any] | None = None,
             unchanged: list[str] | None = None) -> dict[str, Any]:
    """An envelope the way connectors/postgres builds one: the source copied from a template."""
    source = dict(template)
    source["ts_ms"] = 1_764_189_901_000
    source["txId"] = 771
    source["lsn"] = 0x1_6B37_4D48 + i
    return {
        "before": before,
        "after": row(i) if op != "d" else None,
        "source": source,
        "op": op,
        "ts_ms": 1_764_189_901_123,
        "transaction": {"id": "771:6091591752", "total_order": i + 1,
                        "data_collection_order": i + 1},
        "unchanged": unchanged,
    }


def mysql_value(i: int, file: str = "binlog.000003", gtid: str | None = "3E11FA47-71CA:23"
                ) -> dict[str, Any]:
    """An envelope the way connectors/mysql builds one (no ``unchanged`` field)."""
    source = {
        **source_block(connector="mysql", name="shop", ts_ms=0, db="shop", schema=None,
                       table="orders"),
        "ts_ms": 1_764_189_901_000, "file": file, "pos": 4 + 100 * i, "row": i % 3,
        "gtid": gtid, "server_id": 1,
    }
    return change_value("u", before=row(i, "old"), after=row(i), source=source,
                        ts_ms=1_764_189_901_123)


@pytest.mark.parametrize(
    "value",
    [
        pg_value(1),
        pg_value(2, op="c"),
        pg_value(3, op="d", before={"id": 3}),
        pg_value(4, before=row(4, None), unchanged=["note", "attributes"]),
        {**pg_value(5), "transaction": None, "ts_ms": None},
        mysql_value(6),
        mysql_value(7, gtid=None),
    ],
    ids=["pg-update", "pg-create", "pg-delete-key-only", "pg-unchanged-toast",
         "pg-no-transaction", "mysql-update", "mysql-no-gtid"],
)
def test_an_envelope_is_written_as_fastavro_writes_it(value: dict[str, Any]) -> None:
    schema = PG_ENVELOPE if "unchanged" in value else MYSQL_ENVELOPE
    assert compiled_bytes(schema, value) == fastavro_bytes(schema, value)


def test_a_source_block_of_other_strings_is_not_written_with_the_previous_bytes() -> None:
    """The string runs are cached by the identity of their values: equal ones, new ones, the
    same dict changed in place, and back again all write what fastavro writes."""
    other = {**PG_TEMPLATE, "name": "other", "db": "other", "table": "lines"}
    values = [
        pg_value(1),
        pg_value(2),  # the very same strings: cached bytes
        pg_value(3, template=other),  # other strings
        pg_value(4, template={k: (v if not isinstance(v, str) else "".join(v)) for k, v
                              in PG_TEMPLATE.items()}),  # equal strings, other objects
        pg_value(5),  # back to the first template
    ]
    changed = pg_value(6)
    changed["source"]["table"] = "renamed"
    changed["source"]["schema"] = None
    changed["op"] = "c"
    values.append(changed)
    for value in values:
        assert compiled_bytes(PG_ENVELOPE, value) == fastavro_bytes(PG_ENVELOPE, value)
    for i in range(7, 10):
        value = mysql_value(i, file=f"binlog.00000{i}", gtid=None if i % 2 else f"g:{i}")
        assert compiled_bytes(MYSQL_ENVELOPE, value) == fastavro_bytes(MYSQL_ENVELOPE, value)


def test_nested_records_given_as_any_mapping_are_written_as_fastavro_writes_them() -> None:
    value = pg_value(1, before=row(1, "old"))
    expected = fastavro_bytes(PG_ENVELOPE, value)
    mixed = {
        **value,
        "before": OrderedDict(value["before"]),
        "after": MappingProxyType(value["after"]),
        "source": MappingProxyType(value["source"]),
    }
    assert compiled_bytes(PG_ENVELOPE, mixed) == expected
    assert compiled_bytes(PG_ENVELOPE, MappingProxyType(mixed)) == expected


def test_missing_optional_fields_are_written_with_their_defaults() -> None:
    value = pg_value(1)
    del value["unchanged"], value["transaction"], value["source"]["txId"]
    del value["after"]["note"]
    assert compiled_bytes(PG_ENVELOPE, value) == fastavro_bytes(PG_ENVELOPE, value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"after": {**row(1), "id": "7"}}, "field 'after.id': a long cannot hold str '7'"),
        ({"after": {"note": "x"}}, "field 'after.id': no value (None) for a non-nullable long"),
        ({"before": {**row(1), "customer_id": 2**31}}, "field 'before.customer_id': 2147483648 is "
         "out of range for an Avro int"),
        ({"source": {**PG_TEMPLATE, "db": 5}}, "field 'source.db': a string cannot hold int 5"),
        ({"source": None}, "field 'source': no value (None) for a non-nullable record"),
        ({"transaction": {"id": "1:2", "total_order": 1}},
         "field 'transaction.data_collection_order': no value (None)"),
        ({"unchanged": "note"},
         "field 'unchanged': a null or array of string cannot hold str 'note'"),
        ({"op": None}, "field 'op': no value (None) for a non-nullable string"),
    ],
)
def test_a_bad_value_in_an_envelope_is_a_record_error_naming_the_field(
    change: dict[str, Any], message: str
) -> None:
    # The same source strings as a good envelope written just before: the cache does not
    # hide a bad value next to them.
    compiled_bytes(PG_ENVELOPE, pg_value(0))
    with pytest.raises(RecordError) as caught:
        encode(1, PG_ENVELOPE, {**pg_value(1), **change})
    assert message in caught.value.message


def test_threads_sharing_a_writer_write_their_own_source_blocks() -> None:
    templates = [
        {**PG_TEMPLATE, "name": f"source-{n}", "table": f"table-{n}"} for n in range(4)
    ]
    failures: list[int] = []

    def encode_many(n: int) -> None:
        for i in range(2000):
            value = pg_value(i, template=templates[(n + i) % 4])
            expected_source = fastavro_bytes(PG_SOURCE_SCHEMA, value["source"])
            if expected_source not in compiled_bytes(PG_ENVELOPE, value):
                failures.append(i)

    threads = [threading.Thread(target=encode_many, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


PG_SOURCE_SCHEMA = AvroSchema(PG_SOURCE)


def test_the_serializer_writes_the_wire_format_of_envelope_dicts(tmp_path: Path) -> None:
    registry = EmbeddedRegistry(tmp_path / "streams.db")
    key_schema = AvroSchema({"type": "record", "name": "Key", "namespace": "shop.public.orders",
                             "fields": [{"name": "id", "type": "long"}]})
    try:
        serializer = RecordSerializer(registry)
        values = [pg_value(i) for i in range(3)] + [pg_value(3, template={**PG_TEMPLATE})]
        records = [
            SourceRecord("shop.public.orders", {"id": i}, value, key_schema, PG_ENVELOPE,
                         {"slot": "s"}, {"lsn": i})
            for i, value in enumerate(values)
        ]
        encoded = serializer.serialize(records)
        header = wire_header(registry.register("shop.public.orders-value", PG_ENVELOPE))
        key_header = wire_header(registry.register("shop.public.orders-key", key_schema))
        for i, (record, value) in enumerate(zip(encoded, values, strict=True)):
            assert record.value == header + fastavro_bytes(PG_ENVELOPE, value)
            assert record.key == key_header + fastavro_bytes(key_schema, {"id": i})
    finally:
        registry.close()


def _with_both_rows(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {**mysql_value(1), "before": before, "after": after}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (row(1), row(1)),  # equal values, other objects: after reuses before's bytes
        (row(1, "old"), row(1, "new")),
        ({**row(1), "amount": Decimal("-0.00")}, {**row(1), "amount": Decimal("0.00")}),
        ({**row(1), "amount": Decimal("0.00")}, {**row(1), "amount": Decimal("-0.00")}),
        ({**row(1), "amount": Decimal("1234.56")}, {**row(1), "amount": Decimal("1234.5600")}),
        ({**row(1), "updated_at": NOW},
         {**row(1), "updated_at": NOW.astimezone(dt.timezone(dt.timedelta(hours=5)))}),
        ({**row(1), "updated_at": NOW}, {**row(1), "updated_at": NOW.replace(tzinfo=None)}),
        ({**row(1), "note": None}, {**row(1), "note": ""}),
        ({**row(1), "note": ""}, {**row(1), "note": None}),
        ({"id": 1}, row(1)),  # a key-only before
        (row(1), {"id": 1}),
    ],
    ids=["equal", "other-note", "minus-zero-first", "zero-first", "other-exponent",
         "same-instant-other-zone", "naive-after", "null-then-empty", "empty-then-null",
         "key-only-before", "key-only-after"],
)
def test_an_after_row_like_its_before_row_is_written_as_fastavro_writes_it(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    value = _with_both_rows(before, after)
    try:
        expected = fastavro_bytes(MYSQL_ENVELOPE, value)
    except Exception:
        with pytest.raises(RecordError):
            compiled_bytes(MYSQL_ENVELOPE, value)
        return
    assert compiled_bytes(MYSQL_ENVELOPE, value) == expected


def test_an_ambiguous_wall_clock_time_is_not_taken_for_its_twin() -> None:
    """Equal to Python (same tzinfo, same wall-clock time), an hour apart: fold says which."""
    zone = pytest.importorskip("zoneinfo").ZoneInfo("Europe/Paris")
    first = dt.datetime(2026, 10, 25, 2, 30, tzinfo=zone, fold=0)
    second = first.replace(fold=1)
    assert first == second and first.utcoffset() != second.utcoffset()
    value = _with_both_rows({**row(1), "updated_at": first}, {**row(1), "updated_at": second})
    assert compiled_bytes(MYSQL_ENVELOPE, value) == fastavro_bytes(MYSQL_ENVELOPE, value)


def test_source_positions_equal_or_not_to_the_previous_ones_are_written_as_fastavro_does() -> None:
    """The ``source`` block's ints are cached by value (new objects of equal value hit): other
    values, and values of other types, are not written with the cached bytes."""
    big = 2**40 + 7
    for ts_ms, pos, server_id in [
        (big, 4, 1), (big + 0, 4, 1), (int(str(big)), 400, 1), (big + 1, 400, 2**33),
        (big + 1, 400, int(str(2**33))),
    ]:
        value = mysql_value(1)
        value["source"].update(ts_ms=ts_ms, pos=pos, server_id=server_id)
        assert compiled_bytes(MYSQL_ENVELOPE, value) == fastavro_bytes(MYSQL_ENVELOPE, value)
    value = mysql_value(1)
    value["source"].update(row=True, server_id=2**33)  # a bool after the int 1: written as 1
    assert compiled_bytes(MYSQL_ENVELOPE, value) == fastavro_bytes(MYSQL_ENVELOPE, value)
    value["source"].update(server_id=float(2**33))  # equal to the cached int, but a float
    with pytest.raises(RecordError, match=r"source\.server_id"):
        encode(1, MYSQL_ENVELOPE, value)


def test_interleaved_creates_updates_and_deletes_keep_their_own_op_and_images() -> None:
    """One transaction's events share one source template (as connectors/mysql builds them):
    each event still carries its own op, before and after, in any order of c, u and d."""
    template = {**mysql_value(0)["source"]}
    ops = ["c", "u", "d", "u", "u", "c", "d", "d", "c", "u"] * 3
    for i, op in enumerate(ops):
        source = {**template, "pos": 4 + 100 * i, "row": i % 3}
        value = change_value(
            op,  # type: ignore[arg-type]
            before=None if op == "c" else row(i, "old"),
            after=None if op == "d" else row(i),
            source=source, ts_ms=1_764_189_901_123,
        )
        encoded = compiled_bytes(MYSQL_ENVELOPE, value)
        assert encoded == fastavro_bytes(MYSQL_ENVELOPE, value), (i, op)
        decoded = fastavro.schemaless_reader(
            io.BytesIO(encoded), fastavro.parse_schema(MYSQL_ENVELOPE.schema)
        )
        assert isinstance(decoded, dict)
        assert decoded["op"] == op
        assert (decoded["before"] is None) == (op == "c")
        assert (decoded["after"] is None) == (op == "d")
