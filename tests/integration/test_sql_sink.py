"""The SQL sink against real SQLite, PostgreSQL and MariaDB databases."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from liberate.errors import FatalError, RecordError, RetriableError
from liberate.records import SinkRecord, TopicPartition
from liberate.schema.types import COLUMN_ATTRIBUTE
from sinks.sql import SqlSink
from tests.integration._sql_sink_support import (
    FULL_ROW,
    ORDER_FIELDS,
    ORDER_KEY,
    ORDER_VALUE,
    TOPIC,
    TYPE_FIELDS,
    TYPES_KEY,
    TYPES_VALUE,
    RecordingContext,
    change,
    config,
    decoded,
    execute,
    opened_sinks,
    order,
    read_rows,
    row,
    schemas,
    table_names,
    tombstone,
)

UTC = dt.UTC


@pytest.fixture
def open_sink(any_db_url: str) -> Iterator[Any]:
    """Opens sinks on the test database (``open_sink(**config overrides)``); closes them after."""
    yield from opened_sinks(any_db_url)


# -- event shapes ------------------------------------------------------------------------------


def test_entity_events_are_upserted_by_key(any_db_url: str, open_sink: Any) -> None:
    sink = open_sink()
    sink.write([order(0, 1, "new"), order(1, 2, "new", "gift")])
    sink.write([order(2, 1, "paid", "twice?"), order(3, 3, "new")])
    assert read_rows(any_db_url, "orders") == [
        row(1, "paid", "twice?"),
        row(2, "new", "gift"),
        row(3, "new"),
    ]


def test_insert_mode_inserts_and_refuses_a_duplicate_key_naming_the_record(
    any_db_url: str, open_sink: Any
) -> None:
    sink = open_sink(mode="insert")
    sink.write([order(0, 1, "new"), order(1, 2, "new")])
    with pytest.raises(RecordError) as refused:
        sink.write([order(2, 3, "new"), order(3, 1, "again")])
    assert refused.value.origin == f"{TOPIC}[0]@3"
    assert "{'id': 1}" in str(refused.value)
    with pytest.raises(RecordError) as within_batch:
        sink.write([order(2, 3, "new"), order(3, 3, "twice")])
    assert within_batch.value.origin == f"{TOPIC}[0]@3"
    assert read_rows(any_db_url, "orders") == [row(1, "new"), row(2, "new")]


def test_insert_mode_writes_keyless_records_into_a_table_without_key(
    any_db_url: str, open_sink: Any
) -> None:
    sink = open_sink(mode="insert", topics=["audit.log"])
    _, value_schema = schemas("audit.log", [{"name": "line", "type": "string"}])
    sink.write(
        [SinkRecord("audit.log", 0, i, None, {"line": "same"}, None, value_schema)
         for i in range(3)]
    )
    assert read_rows(any_db_url, "log") == [{"line": "same"}] * 3


def test_upsert_mode_refuses_a_keyless_record(open_sink: Any) -> None:
    sink = open_sink()
    with pytest.raises(RecordError, match="no key"):
        sink.write([SinkRecord(TOPIC, 0, 0, None, row(1, "x"), None, ORDER_VALUE)])


def test_tombstone_deletes_the_row_by_key(any_db_url: str, open_sink: Any) -> None:
    sink = open_sink()
    sink.write([order(0, 1, "new"), order(1, 2, "new")])
    sink.write([tombstone(2, 1), tombstone(3, 42)])
    assert read_rows(any_db_url, "orders") == [row(2, "new")]


def test_deletes_are_ignored_when_delete_enabled_is_off(any_db_url: str, open_sink: Any) -> None:
    sink = open_sink(delete_enabled=False)
    sink.write([order(0, 1, "new"), order(1, 2, "new")])
    sink.write([tombstone(2, 1), change(3, "d", 2, before=row(2, "new"))])
    assert read_rows(any_db_url, "orders") == [row(1, "new"), row(2, "new")]
    tp = TopicPartition(TOPIC, 0)
    assert sink.committed_offsets([tp]) == {tp: 4}


def test_debezium_envelopes_create_update_and_delete_rows(any_db_url: str, open_sink: Any) -> None:
    sink = open_sink()
    sink.write(
        [
            change(0, "r", 1, after=row(1, "snapshot")),
            change(1, "c", 2, after=row(2, "new")),
            change(2, "c", 3, after=row(3, "new")),
        ]
    )
    sink.write(
        [
            change(3, "u", 2, before=row(2, "new"), after=row(2, "paid", "fast")),
            change(4, "d", 3, before=row(3, "new")),
            tombstone(5, 3),
            change(6, "t", 0),  # truncate: ignored (with a warning), its offset still counts
        ]
    )
    assert read_rows(any_db_url, "orders") == [row(1, "snapshot"), row(2, "paid", "fast")]
    tp = TopicPartition(TOPIC, 0)
    assert sink.committed_offsets([tp]) == {tp: 7}


def test_changes_of_one_key_within_a_batch_end_as_the_last_one(
    any_db_url: str, open_sink: Any
) -> None:
    sink = open_sink()
    sink.write([order(0, 3, "old"), order(1, 4, "old")])
    sink.write(
        [
            change(2, "c", 1, after=row(1, "a")),
            change(3, "u", 1, before=row(1, "a"), after=row(1, "b")),
            change(4, "d", 1, before=row(1, "b")),
            change(5, "c", 1, after=row(1, "re-inserted")),
            order(6, 2, "short-lived"),
            tombstone(7, 2),
            tombstone(8, 3),
            order(9, 3, "back"),
            order(10, 4, "updated"),
            tombstone(11, 4),
        ]
    )
    assert read_rows(any_db_url, "orders") == [row(1, "re-inserted"), row(3, "back")]


def test_composite_keys_upsert_and_delete(any_db_url: str, open_sink: Any) -> None:
    fields = [
        {"name": "region", "type": "string"},
        {"name": "seq", "type": "int"},
        {"name": "qty", "type": "int"},
    ]
    key_schema, value_schema = schemas("shop.lines", fields, key=("region", "seq"))
    sink = open_sink(topics=["shop.lines"])

    def line(offset: int, region: str, seq: int, qty: int | None) -> SinkRecord:
        value = None if qty is None else {"region": region, "seq": seq, "qty": qty}
        return SinkRecord(
            "shop.lines", 0, offset, {"region": region, "seq": seq}, value, key_schema,
            value_schema if value else None,
        )

    sink.write([line(0, "eu", 1, 5), line(1, "eu", 2, 6), line(2, "us", 1, 7)])
    sink.write([line(3, "eu", 1, 50), line(4, "eu", 2, None), line(5, "us", 2, 8)])
    rows = sorted(read_rows(any_db_url, "lines"), key=lambda r: (r["region"], r["seq"]))
    assert rows == [
        {"region": "eu", "seq": 1, "qty": 50},
        {"region": "us", "seq": 1, "qty": 7},
        {"region": "us", "seq": 2, "qty": 8},
    ]


def test_text_keys_differing_only_in_case_or_accent_stay_distinct_rows(
    any_db_url: str, open_sink: Any
) -> None:
    fields = [{"name": "code", "type": "string"}, {"name": "n", "type": "int"}]
    key_schema, value_schema = schemas("shop.codes", fields, key=("code",))
    sink = open_sink(topics=["shop.codes"])
    codes = ["a", "A", "é", "e", "straße", "STRASSE"]
    sink.write(
        [
            SinkRecord("shop.codes", 0, i, {"code": c}, {"code": c, "n": i}, key_schema,
                       value_schema)
            for i, c in enumerate(codes)
        ]
    )
    assert {r["code"]: r["n"] for r in read_rows(any_db_url, "codes")} == {
        c: i for i, c in enumerate(codes)
    }


# -- tables: creation, evolution, names --------------------------------------------------------


NULL_ROW: dict[str, Any] = {
    **FULL_ROW, "id": 2, "small": 0, "big": -9_223_372_036_854_775_808, "flag": False,
    "price": Decimal("0.00"), "tiny": Decimal("0.00000"), "unsigned_big": Decimal(0),
    **{f["name"]: None for f in TYPE_FIELDS if isinstance(f["type"], list)},
}


def _normalized(name: str, value: Any) -> Any:
    """A read-back value in the form the Avro value has (what each database returns differs:
    MySQL booleans are 1/0, SQLite keeps decimals as text, zone-less columns read naive)."""
    if value is None:
        return None
    if name in ("price", "tiny", "unsigned_big"):
        return Decimal(str(value))
    if name == "exact":
        return Decimal(str(value))  # Decimal equality is exact; MySQL pads the scale to 30
    if name in ("ratio", "score"):
        return float(value)  # SQLAlchemy reads MySQL DOUBLE as Decimal
    if name == "flag":
        assert value in (True, False, 0, 1)
        return bool(value)
    if name == "happened":
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if name == "doc":
        return json.loads(value) if isinstance(value, str) else value
    if name == "blob":
        return bytes(value)
    if name == "uid":
        return str(value)
    return value


def _expected(avro_row: Mapping[str, Any]) -> dict[str, Any]:
    expected = dict(avro_row)
    if expected["exact"] is not None:
        expected["exact"] = Decimal(expected["exact"])
    if expected["doc"] is not None:
        expected["doc"] = json.loads(expected["doc"])
    return expected


def test_auto_created_table_round_trips_every_common_type(
    any_db_url: str, open_sink: Any
) -> None:
    sink = open_sink(topics=["shop.public.types"])
    records = [
        SinkRecord("shop.public.types", 0, i, {"id": r["id"]}, decoded(TYPES_VALUE, r),
                   TYPES_KEY, TYPES_VALUE)
        for i, r in enumerate([FULL_ROW, NULL_ROW])
    ]
    sink.write(records)
    stored = read_rows(any_db_url, "types")
    assert [{k: _normalized(k, v) for k, v in r.items()} for r in stored] == [
        _expected(FULL_ROW),
        _expected(NULL_ROW),
    ]
    # Scale survives exactly, not only the value.
    assert str(Decimal(str(stored[0]["price"]))) == "-12345678.90"
    assert str(Decimal(str(stored[1]["price"]))) == "0.00"


def test_postgres_tables_get_native_json_uuid_and_instant_types(postgres_url: str) -> None:
    sink = SqlSink(config(postgres_url, topics=["shop.public.types"]))
    sink.open()
    sink.write([SinkRecord("shop.public.types", 0, 0, {"id": 1}, decoded(TYPES_VALUE, FULL_ROW),
                           TYPES_KEY, TYPES_VALUE)])
    sink.close()
    with psycopg.connect(postgres_url) as conn:
        types: dict[str, str] = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'types'"
            ).fetchall()
        )
    assert types["doc"] == "jsonb"
    assert types["uid"] == "uuid"
    assert types["happened"] == "timestamp with time zone"
    assert types["local"] == "timestamp without time zone"
    assert types["price"] == "numeric"


def test_auto_evolve_adds_a_nullable_column_for_a_new_field(
    any_db_url: str, open_sink: Any
) -> None:
    sink = open_sink()
    sink.write([order(0, 1, "new")])
    v2_fields: list[dict[str, Any]] = [*ORDER_FIELDS, {"name": "priority", "type": "int"}]
    _, v2 = schemas("shop.public.orders", v2_fields)
    sink.write(
        [SinkRecord(TOPIC, 0, 1, {"id": 2}, {**row(2, "new"), "priority": 7}, ORDER_KEY, v2)]
    )
    # An older producer keeps writing: its schema lacks the column, which is no drop.
    sink.attach_context(RecordingContext(older=lambda schema: schema is ORDER_VALUE))
    sink.write([order(2, 3, "v1 again")])
    assert read_rows(any_db_url, "orders") == [
        {**row(1, "new"), "priority": None},
        {**row(2, "new"), "priority": 7},
        {**row(3, "v1 again"), "priority": None},
    ]


def test_a_missing_table_is_fatal_when_auto_create_is_off(open_sink: Any) -> None:
    sink = open_sink(auto_create=False)
    with pytest.raises(FatalError) as missing:
        sink.write([order(0, 1, "new")])
    assert "orders" in str(missing.value)
    assert missing.value.hint is not None and "auto_create" in missing.value.hint


def test_a_new_field_is_fatal_when_auto_evolve_is_off(any_db_url: str, open_sink: Any) -> None:
    sink = open_sink(auto_evolve=False)
    sink.write([order(0, 1, "new")])
    _, v2 = schemas("shop.public.orders", [*ORDER_FIELDS, {"name": "extra", "type": "int"}])
    with pytest.raises(FatalError, match="extra"):
        sink.write([SinkRecord(TOPIC, 0, 1, {"id": 2}, {**row(2, "x"), "extra": 1}, ORDER_KEY, v2)])
    assert read_rows(any_db_url, "orders") == [row(1, "new")]


def test_upsert_into_a_table_keyed_otherwise_is_fatal(any_db_url: str, open_sink: Any) -> None:
    execute(any_db_url, "CREATE TABLE orders (id BIGINT NOT NULL, status VARCHAR(20) PRIMARY KEY,"
            " note VARCHAR(20))")
    sink = open_sink()
    with pytest.raises(FatalError, match="primary key"):
        sink.write([order(0, 1, "new")])


def test_names_with_spaces_quotes_keywords_and_percent_signs_work(
    any_db_url: str, open_sink: Any
) -> None:
    odd = ['select', 'two words', 'it"s', "50% off", "a:b", "it's"]
    fields: list[dict[str, Any]] = [{"name": "from", "type": "long", COLUMN_ATTRIBUTE: "from"}]
    fields += [
        {"name": f"c{i}", "type": ["null", "string"], "default": None, COLUMN_ATTRIBUTE: name}
        for i, name in enumerate(odd)
    ]
    key_schema, value_schema = schemas("odd", fields, key=("from",))
    sink = open_sink(topics=["shop.order"], table='{table} "x" %(y)s:z')
    value = {"from": 1, **{f"c{i}": f"v{i}" for i in range(len(odd))}}
    sink.write([SinkRecord("shop.order", 0, 0, {"from": 1}, value, key_schema, value_schema)])
    evolved = [*fields, {"name": "c9", "type": ["null", "int"], "default": None,
                         COLUMN_ATTRIBUTE: "order"}]
    _, value_v2 = schemas("odd", evolved, key=("from",))
    sink.write([SinkRecord("shop.order", 0, 1, {"from": 1}, {**value, "c0": "new", "c9": 9},
                           key_schema, value_v2)])
    sink.write([SinkRecord("shop.order", 0, 2, {"from": 2}, None, key_schema, None)])
    table = 'order "x" %(y)s:z'
    assert table in table_names(any_db_url)
    assert read_rows(any_db_url, table) == [
        {"from": 1, "select": "new", **{n: f"v{i}" for i, n in enumerate(odd) if i}, "order": 9}
    ]


def test_a_table_dropped_under_the_sink_is_recreated_after_a_retriable_error(
    any_db_url: str, open_sink: Any
) -> None:
    sink = open_sink()
    sink.write([order(0, 1, "new")])
    execute(any_db_url, "DROP TABLE orders")
    with pytest.raises(RetriableError):
        sink.write([order(1, 2, "new")])
    sink.write([order(1, 2, "new")])
    assert read_rows(any_db_url, "orders") == [row(2, "new")]


# -- existing tables created by someone else ---------------------------------------------------


def test_writes_into_existing_postgres_columns_of_other_types(postgres_url: str) -> None:
    execute(
        postgres_url,
        "CREATE TYPE mood AS ENUM ('new', 'paid')",
        "CREATE TABLE types (id INTEGER PRIMARY KEY, label mood, doc JSON, uid TEXT,"
        " happened TIMESTAMP, price NUMERIC, flag BOOLEAN DEFAULT true, other TEXT DEFAULT 'x')",
    )
    fields = [f for f in TYPE_FIELDS if f["name"] in ("id", "label", "doc", "uid", "happened",
                                                      "price")]
    key_schema, value_schema = schemas("shop.public.types", fields)
    value = {**{f["name"]: FULL_ROW[f["name"]] for f in fields}, "label": "paid"}
    sink = SqlSink(config(postgres_url, topics=["shop.public.types"]))
    sink.open()
    sink.write([SinkRecord("shop.public.types", 0, 0, {"id": 1}, decoded(value_schema, value),
                           key_schema, value_schema)])
    sink.close()
    with psycopg.connect(postgres_url) as conn:
        stored = conn.execute(
            "SELECT label::text, doc::text, uid, happened, price, flag, other FROM types"
        ).fetchone()
    assert stored == (
        "paid", FULL_ROW["doc"], FULL_ROW["uid"], dt.datetime(2024, 2, 29, 23, 59, 59, 999_999),
        Decimal("-12345678.90"), True, "x",
    )


def test_a_value_too_long_for_an_existing_column_is_a_record_error(
    any_db_url: str, open_sink: Any
) -> None:
    if any_db_url.startswith("sqlite"):
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    execute(any_db_url, "CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(5) NOT NULL,"
            " note VARCHAR(5))")
    sink = open_sink()
    with pytest.raises(RecordError) as too_long:
        sink.write([order(0, 1, "ok"), order(1, 2, "much too long")])
    assert too_long.value.origin == f"{TOPIC}[0]@1"
    assert read_rows(any_db_url, "orders") == []


# -- offsets, check, status --------------------------------------------------------------------


def test_offsets_are_stored_with_the_rows_and_survive_a_restart(
    any_db_url: str, open_sink: Any
) -> None:
    first = open_sink()
    first.write([order(0, 1, "new"), order(1, 2, "new")])
    with pytest.raises(RecordError):
        first.write([order(2, 3, "new"), SinkRecord(TOPIC, 0, 3, {"id": 4}, {"id": 4},
                                                    ORDER_KEY, ORDER_VALUE)])
    restarted = open_sink()
    tp = TopicPartition(TOPIC, 0)
    assert restarted.committed_offsets([tp, TopicPartition(TOPIC, 1)]) == {tp: 2}
    assert read_rows(any_db_url, "orders") == [row(1, "new"), row(2, "new")]
    assert read_rows(any_db_url, "liberate_sink_offsets") == [
        {"sink": "warehouse", "topic": TOPIC, "partition": 0, "next_offset": 2}
    ]


def test_offsets_table_and_target_schema_are_configurable(postgres_url: str) -> None:
    execute(postgres_url, "CREATE SCHEMA warehouse")
    sink = SqlSink(config(postgres_url, schema="warehouse", offsets_table="my offsets"))
    sink.open()
    sink.write([order(0, 1, "new")])
    sink.close()
    assert table_names(postgres_url, "warehouse") == {"orders", "my offsets",
                                                      "liberate_sink_parked"}
    assert table_names(postgres_url) == set()
    assert read_rows(postgres_url, "orders", schema="warehouse") == [row(1, "new")]


def test_check_reports_each_problem_with_a_hint_and_writes_nothing(any_db_url: str) -> None:
    sink = SqlSink(config(any_db_url, auto_create=False, topics=[TOPIC, "shop.items"]))
    execute(any_db_url, "CREATE TABLE items (id BIGINT PRIMARY KEY)")
    results = {r.name: r for r in sink.check()}
    assert results["database"].ok
    assert results["create tables"].ok
    assert results[f"table for {TOPIC}"].ok is False
    assert "auto_create" in (results[f"table for {TOPIC}"].hint or "")
    assert results["table for shop.items"].ok
    assert table_names(any_db_url) == {"items"}


def test_check_names_an_unreachable_database_without_its_password() -> None:
    sink = SqlSink(config("postgresql://someone:s3cret@127.0.0.1:1/nowhere"))
    [result] = sink.check()
    assert result.name == "database" and not result.ok
    assert "s3cret" not in result.message and "***" in result.message
    assert result.hint


def test_status_reports_the_stored_offsets_without_opening(any_db_url: str, open_sink: Any) -> None:
    open_sink().write([order(0, 1, "new"), order(6, 2, "new")])
    status = SqlSink(config(any_db_url)).status()
    assert status.position == {TOPIC: {"0": 7}}


def test_missing_privileges_are_fatal_with_a_hint(postgres_url: str) -> None:
    role = f"limited_{uuid.uuid4().hex[:8]}"
    # PostgreSQL 15 no longer lets every role create in the public schema.
    execute(postgres_url, f'CREATE ROLE "{role}" LOGIN')
    try:
        limited_url = str(sa.make_url(postgres_url).set(username=role))
        sink = SqlSink(config(limited_url))
        checks = {r.name: r for r in sink.check()}
        assert checks["database"].ok
        assert not checks["create tables"].ok and "CREATE" in (checks["create tables"].hint or "")
        with pytest.raises(FatalError) as denied:
            sink.open()
        assert denied.value.hint is not None and "CREATE" in denied.value.hint
        sink.close()
    finally:
        execute(postgres_url, f'DROP ROLE "{role}"')


def test_a_table_name_longer_than_the_database_allows_is_fatal(
    any_db_url: str, open_sink: Any
) -> None:
    if any_db_url.startswith("sqlite"):
        pytest.skip("SQLite has no identifier length limit")
    sink = open_sink(table="{table}_" + "x" * 70)
    with pytest.raises(FatalError, match="longer than"):
        sink.write([order(0, 1, "new")])
