"""Schema evolution of the SQL sink's target tables: safe widenings, the unsafe-change policy,
and ``plan``, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest

from liberate.errors import FatalError
from liberate.records import SinkRecord
from liberate.schema.avro import AvroSchema
from sinks.sql import SqlSink
from tests.integration._sql_sink_support import (
    FULL_ROW,
    ORDER_FIELDS,
    ORDER_KEY,
    ORDER_VALUE,
    TOPIC,
    TYPES_KEY,
    TYPES_VALUE,
    RecordingContext,
    config,
    decoded,
    execute,
    opened_sinks,
    order,
    read_rows,
    row,
    schemas,
    table_names,
)

NS = "shop.public.orders"


@pytest.fixture
def open_sink(any_db_url: str) -> Iterator[Any]:
    yield from opened_sinks(any_db_url)


def skip_on_sqlite(url: str) -> None:
    if url.startswith("sqlite"):
        pytest.skip("SQLite keeps any value in any column: types are neither widened nor judged")


def versioned(fields: Sequence[dict[str, Any]]) -> AvroSchema:
    return schemas(NS, fields)[1]


def record(offset: int, value_schema: AvroSchema, value: dict[str, Any]) -> SinkRecord:
    return SinkRecord(TOPIC, 0, offset, {"id": value["id"]}, value, ORDER_KEY, value_schema)


QTY_INT = [*ORDER_FIELDS, {"name": "qty", "type": "int"}]
QTY_LONG = [*ORDER_FIELDS, {"name": "qty", "type": "long"}]


# -- safe widenings ----------------------------------------------------------------------------


def test_an_int_field_becoming_long_widens_the_column(any_db_url: str, open_sink: Any) -> None:
    sink = open_sink()
    sink.write([record(0, versioned(QTY_INT), {**row(1, "new"), "qty": 1})])
    big = 2**40
    sink.write([record(1, versioned(QTY_LONG), {**row(2, "new"), "qty": big})])
    assert [r["qty"] for r in read_rows(any_db_url, "orders")] == [1, big]
    assert sink.plan({TOPIC: (ORDER_KEY, versioned(QTY_LONG))})[-1] == "--   up to date"


def test_decimal_precision_and_declared_string_length_grow(any_db_url: str,
                                                           open_sink: Any) -> None:
    def fields(precision: int, length: int) -> list[dict[str, Any]]:
        return [
            {"name": "id", "type": "long"},
            {"name": "status", "type": {"type": "string", "liberate.length": length}},
            {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                        "precision": precision, "scale": 2}},
        ]

    sink = open_sink()
    sink.write([record(0, versioned(fields(5, 5)), {"id": 1, "status": "short",
                                                     "amount": Decimal("123.45")})])
    sink.write([record(1, versioned(fields(12, 20)), {"id": 2, "status": "much longer now",
                                                      "amount": Decimal("1234567890.12")})])
    stored = {r["id"]: (r["status"], Decimal(str(r["amount"])))
              for r in read_rows(any_db_url, "orders")}
    assert stored == {1: ("short", Decimal("123.45")),
                      2: ("much longer now", Decimal("1234567890.12"))}


def test_a_needed_widening_is_fatal_when_auto_evolve_is_off(any_db_url: str,
                                                           open_sink: Any) -> None:
    skip_on_sqlite(any_db_url)
    open_sink(name="first").write([record(0, versioned(QTY_INT), {**row(1, "a"), "qty": 1})])
    sink = open_sink(auto_evolve=False)
    with pytest.raises(FatalError, match="qty"):
        sink.write([record(1, versioned(QTY_LONG), {**row(2, "b"), "qty": 2})])


# -- unsafe changes ----------------------------------------------------------------------------


def test_a_narrowing_stops_the_sink_by_default_and_is_written_when_ignored(
    any_db_url: str, open_sink: Any
) -> None:
    skip_on_sqlite(any_db_url)
    open_sink(name="first").write([record(0, versioned(QTY_LONG), {**row(1, "a"), "qty": 1})])
    with pytest.raises(FatalError) as stopped:
        open_sink().write([record(1, versioned(QTY_INT), {**row(2, "b"), "qty": 2})])
    assert "narrowing: column qty" in stopped.value.message
    assert stopped.value.hint is not None and "unsafe: ignore" in stopped.value.hint
    open_sink(evolution={"unsafe": "ignore"}).write(
        [record(1, versioned(QTY_INT), {**row(2, "b"), "qty": 2})]
    )
    assert [r["qty"] for r in read_rows(any_db_url, "orders")] == [1, 2]


def test_a_type_change_stops_the_sink_by_default(any_db_url: str, open_sink: Any) -> None:
    skip_on_sqlite(any_db_url)
    execute(any_db_url, "CREATE TABLE orders (id BIGINT PRIMARY KEY, status INTEGER NOT NULL,"
            " note VARCHAR(10))")
    with pytest.raises(FatalError, match="type change: column status"):
        open_sink().write([order(0, 1, "7")])
    open_sink(evolution={"unsafe": "ignore"}).write([order(0, 1, "7")])
    assert [r["status"] for r in read_rows(any_db_url, "orders")] == [7]


def test_a_dropped_field_stops_the_sink_and_is_left_alone_when_ignored(
    any_db_url: str, open_sink: Any
) -> None:
    open_sink(name="first").write([order(0, 1, "new", "kept")])
    without_note = versioned(ORDER_FIELDS[:2])
    with pytest.raises(FatalError, match="dropped column: column note"):
        open_sink().write([record(1, without_note, {"id": 1, "status": "paid"})])
    open_sink(evolution={"unsafe": "ignore"}).write(
        [record(1, without_note, {"id": 1, "status": "paid"}),
         record(2, without_note, {"id": 2, "status": "new"})]
    )
    assert read_rows(any_db_url, "orders") == [row(1, "paid", "kept"), row(2, "new")]


def test_an_older_producers_records_are_no_schema_change(any_db_url: str,
                                                        open_sink: Any) -> None:
    skip_on_sqlite(any_db_url)
    v1, v2 = versioned(QTY_INT), versioned([*QTY_LONG, {"name": "extra", "type": ["null",
                                                        "string"], "default": None}])
    sink = open_sink()
    sink.attach_context(RecordingContext(older=lambda schema: schema is v1))
    # One batch: the v2 record widens qty and adds a column; the v1 records around it lack
    # the column and hold narrower values, as records of before the change do.
    sink.write([record(0, v1, {**row(1, "a"), "qty": 1}),
                record(1, v2, {**row(2, "b"), "qty": 2**40, "extra": "x"}),
                record(2, v1, {**row(3, "c"), "qty": 3})])
    assert [(r["qty"], r["extra"]) for r in read_rows(any_db_url, "orders")] == [
        (1, None), (2**40, "x"), (3, None)]


def test_a_required_column_the_records_lack_stops_the_sink_even_for_older_schemas(
    any_db_url: str, open_sink: Any
) -> None:
    execute(any_db_url, "CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(20) NOT "
            "NULL, note VARCHAR(20), region VARCHAR(5) NOT NULL)")
    sink = open_sink()
    sink.attach_context(RecordingContext(older=lambda schema: True))
    with pytest.raises(FatalError, match="dropped column: column region: the records do not "
                       "carry it and it is NOT NULL without a default: no record can be "
                       "written until it is made nullable or given a default"):
        sink.write([order(0, 1, "new")])


def test_a_key_change_stops_the_sink(any_db_url: str, open_sink: Any) -> None:
    open_sink(name="first").write([order(0, 1, "new")])
    key, value = schemas(NS, [*ORDER_FIELDS, {"name": "region", "type": "string"}],
                         key=("id", "region"))
    with pytest.raises(FatalError, match="primary-key change"):
        open_sink().write([SinkRecord(TOPIC, 0, 1, {"id": 1, "region": "eu"},
                                      {**row(1, "x"), "region": "eu"}, key, value)])


# -- plan --------------------------------------------------------------------------------------


def test_plan_prints_the_ddl_without_running_it(any_db_url: str, open_sink: Any) -> None:
    sink = SqlSink(config(any_db_url))
    lines = sink.plan({TOPIC: (ORDER_KEY, ORDER_VALUE)})
    assert table_names(any_db_url) == set()
    text = "\n".join(lines)
    for table in ("liberate_sink_offsets", "liberate_sink_parked", "orders"):
        assert "CREATE TABLE" in text and table in text
    assert lines[-1].rstrip().endswith(";")
    open_sink().write([order(0, 1, "new")])
    evolved = versioned([*ORDER_FIELDS, {"name": "qty", "type": ["null", "int"],
                                         "default": None}])
    planned = sink.plan({TOPIC: (ORDER_KEY, evolved), "shop.public.none": (None, None)})
    assert any(line.startswith("ALTER TABLE") and "qty" in line for line in planned)
    assert "--   no value schema registered for this topic yet" in planned
    assert "qty" not in read_rows(any_db_url, "orders")[0]
    narrowed = versioned(ORDER_FIELDS[:2])
    assert any("unsafe (the sink stops): dropped column: column note" in line
               for line in sink.plan({TOPIC: (ORDER_KEY, narrowed)}))


def test_tables_the_sink_creates_need_no_change_for_their_schema(
    any_db_url: str, open_sink: Any
) -> None:
    sink = open_sink(topics=["shop.public.types"])
    lines = sink.plan({"shop.public.types": (TYPES_KEY, TYPES_VALUE)})
    assert any(line.startswith("CREATE TABLE") for line in lines)
    sink.write([SinkRecord("shop.public.types", 0, 0, {"id": 1}, decoded(TYPES_VALUE, FULL_ROW),
                           TYPES_KEY, TYPES_VALUE)])
    assert sink.plan({"shop.public.types": (TYPES_KEY, TYPES_VALUE)})[-1] == "--   up to date"
