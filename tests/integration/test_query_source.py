"""The query source's modes, offsets and threading on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.query import PollingOffset, QuerySource
from liberate.schema.avro import encode
from tests.conformance.source import drain, offsets_after
from tests.integration._query_support import (
    BASE_TIME,
    TIMESTAMP,
    create_orders,
    db_clock,
    engine_for,
    ids,
    insert,
    order,
    query_config,
    read_everything,
)

TIMESTAMP_MODES = [
    pytest.param({"timestamp_column": "updated_at"}, id="timestamp"),
    pytest.param(
        {"timestamp_column": "updated_at", "incrementing_column": "id"},
        id="timestamp+incrementing",
    ),
]


def test_bulk_reads_every_row_in_key_order_in_every_cycle(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(i) for i in (5, 3, 1, 4, 2)])
    source = QuerySource(query_config(any_db_url, mode="bulk", batch_size=2))
    source.open({})
    try:
        first = drain(source)
        second = drain(source)
    finally:
        source.close()
    assert ids(first) == ids(second) == [1, 2, 3, 4, 5]
    assert [r.offset["cycle"] for r in first] == [1] * 5
    assert [r.offset["cycle"] for r in second] == [2] * 5
    assert [r.offset["complete"] for r in first] == [False] * 4 + [True]


def test_bulk_restart_after_a_complete_cycle_reads_the_table_again(any_db_url: str) -> None:
    # `liberate run --once` from cron: every run is a fresh full load.
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(i) for i in range(1, 4)])
    config = query_config(any_db_url, mode="bulk", batch_size=3)
    first = read_everything(config)
    again = read_everything(config, offsets_after(first))
    assert ids(again) == [1, 2, 3]
    assert again[0].offset["cycle"] == 2


def test_incrementing_reads_only_rows_above_the_last_value(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(i) for i in (1, 2, 3)])
    source = QuerySource(query_config(any_db_url, incrementing_column="id", batch_size=2))
    source.open({})
    try:
        assert ids(drain(source)) == [1, 2, 3]
        insert(any_db_url, table, [order(5), order(4)])
        engine = engine_for(any_db_url)
        with engine.begin() as conn:  # an update is not seen by incrementing mode
            conn.execute(table.update().where(table.c.id == 2).values(label="changed"))
        engine.dispose()
        assert ids(drain(source)) == [4, 5]
    finally:
        source.close()


@pytest.mark.parametrize("mode", TIMESTAMP_MODES)
def test_timestamp_modes_read_updated_rows_again(any_db_url: str, mode: dict[str, Any]) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(i) for i in (1, 2, 3)])
    source = QuerySource(query_config(any_db_url, timestamp_delay="0s", batch_size=2, **mode))
    source.open({})
    try:
        assert ids(drain(source)) == [1, 2, 3]
        engine = engine_for(any_db_url)
        with engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.id == 1)
                .values(label="changed", updated_at=BASE_TIME + dt.timedelta(hours=1))
            )
        engine.dispose()
        again = drain(source)
    finally:
        source.close()
    assert ids(again) == [1]
    assert again[0].value is not None and again[0].value["label"] == "changed"


@pytest.mark.parametrize("mode", TIMESTAMP_MODES)
def test_timestamp_modes_do_not_skip_rows_sharing_the_last_timestamp(
    any_db_url: str, mode: dict[str, Any]
) -> None:
    # kafka-connect-jdbc#598: with many rows on one timestamp and batches smaller than that
    # group, rows were lost at batch boundaries and restarts. Here every poll "crashes" after
    # all but the last record of its batch became durable, and the next run resumes from there.
    table = create_orders(any_db_url)
    shared = BASE_TIME + dt.timedelta(minutes=10)
    rows = [order(i, at=BASE_TIME + dt.timedelta(seconds=i)) for i in (1, 2)]
    rows += [order(i, at=shared) for i in range(3, 13)]
    rows += [order(i, at=shared + dt.timedelta(microseconds=1)) for i in (13, 14)]
    insert(any_db_url, table, reversed(rows))
    config = query_config(any_db_url, timestamp_delay="0s", batch_size=3, **mode)
    durable: list[Any] = []
    for _ in range(50):
        source = QuerySource(config)
        source.open(offsets_after(durable))
        try:
            batch = source.poll()
        finally:
            source.close()
        if not batch:
            break
        durable += batch[:-1] if len(batch) > 1 else batch
    assert Counter(ids(durable)) == Counter(range(1, 15))
    assert ids(durable) == list(range(1, 15))


def test_timestamp_delay_waits_for_a_transaction_still_in_flight(any_db_url: str) -> None:
    # A transaction stamps its row, commits late; meanwhile a later row commits. Without the
    # delay the later row moves the offset past the earlier one, which is then never read.
    table = create_orders(any_db_url)
    now = db_clock(any_db_url)
    insert(any_db_url, table, [order(2, at=now)])
    delay = 1.5
    source = QuerySource(
        query_config(any_db_url, timestamp_column="updated_at", timestamp_delay=f"{delay}s")
    )
    app = engine_for(any_db_url)
    try:
        with app.connect() as conn:
            conn.execute(table.insert(), [order(1, at=now - dt.timedelta(milliseconds=200))])
            source.open({})
            assert drain(source) == []  # both rows are younger than the delay
            conn.commit()
        time.sleep(delay + 0.5)
        assert ids(drain(source)) == [1, 2]
    finally:
        source.close()
        app.dispose()


def test_rows_younger_than_the_delay_wait_for_a_later_cycle(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    recent = db_clock(any_db_url) - dt.timedelta(seconds=2)
    insert(any_db_url, table, [order(1), order(2, at=recent)])
    records = read_everything(
        query_config(any_db_url, timestamp_column="updated_at", timestamp_delay="5s")
    )
    assert ids(records) == [1]


def test_timestamp_initial_starts_at_that_time(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(i) for i in range(1, 6)])
    start = (BASE_TIME + dt.timedelta(seconds=3)).isoformat()
    records = read_everything(
        query_config(
            any_db_url,
            timestamp_column="updated_at",
            timestamp_delay="0s",
            timestamp_initial=start,
        )
    )
    assert ids(records) == [3, 4, 5]


def test_a_list_of_timestamp_columns_reads_the_first_that_is_not_null(any_db_url: str) -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("updated_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    engine = engine_for(any_db_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"id": 1, "updated_at": None, "created_at": BASE_TIME},
                {"id": 2, "updated_at": BASE_TIME + dt.timedelta(hours=2), "created_at": BASE_TIME},
                {"id": 3, "updated_at": None, "created_at": BASE_TIME + dt.timedelta(hours=1)},
            ],
        )
    engine.dispose()
    records = read_everything(
        query_config(
            any_db_url, timestamp_column=["updated_at", "created_at"], timestamp_delay="0s"
        )
    )
    assert ids(records) == [1, 3, 2]
    assert records[-1].offset["timestamp"] == "2024-05-01T14:00:00.000000"


def test_rows_with_a_null_timestamp_are_reported_not_emitted(
    any_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    table = create_orders(any_db_url, nullable_ts=True)
    insert(any_db_url, table, [order(1), order(2), order(3)])
    engine = engine_for(any_db_url)
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id > 1).values(updated_at=None))
    engine.dispose()
    with caplog.at_level(logging.WARNING, logger="connectors.query"):
        records = read_everything(
            query_config(any_db_url, timestamp_column="updated_at", timestamp_delay="0s")
        )
    assert ids(records) == [1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("orders: 2 row(s) have NULL in updated_at" in w for w in warnings), warnings


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"mode": "bulk"}, id="bulk"),
        pytest.param(
            {
                "timestamp_column": "updated_at",
                "incrementing_column": "seq",
                "timestamp_delay": "0s",
            },
            id="timestamp+incrementing",
        ),
    ],
)
def test_rows_with_null_in_an_ordering_column_are_reported_and_never_emitted(
    any_db_url: str, settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "events",
        metadata,
        sa.Column("seq", sa.Integer, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
    )
    engine = engine_for(any_db_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [{"seq": seq, "updated_at": BASE_TIME} for seq in (None, 1, 2, None, 3)],
        )
    engine.dispose()
    config = query_config(
        any_db_url, tables=["events"], key_columns=["seq"], batch_size=2, **settings
    )
    with caplog.at_level(logging.WARNING, logger="connectors.query"):
        records = read_everything(config)
    assert [r.key for r in records] == [{"seq": 1}, {"seq": 2}, {"seq": 3}]
    assert any("events: 2 row(s) have NULL in seq" in r.getMessage() for r in caplog.records)


def test_key_columns_make_a_table_without_primary_key_readable(any_db_url: str) -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "events",
        metadata,
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("payload", sa.String(50)),
    )
    engine = engine_for(any_db_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"region": "us", "seq": 1, "payload": "a"},
                {"region": "eu", "seq": 2, "payload": "b"},
                {"region": "eu", "seq": 1, "payload": "c"},
            ],
        )
    engine.dispose()
    config = query_config(
        any_db_url, tables=["events"], key_columns={"events": ["region", "seq"]}, batch_size=2
    )
    first = QuerySource(config)
    first.open({})
    try:
        batch = first.poll()
    finally:
        first.close()
    rest = read_everything(config, offsets_after(batch[:1]))
    keys = [r.key for r in batch[:1] + rest]
    assert keys == [
        {"region": "eu", "seq": 1},
        {"region": "eu", "seq": 2},
        {"region": "us", "seq": 1},
    ]
    key_schema = batch[0].key_schema
    assert key_schema is not None
    assert [f["name"] for f in key_schema.fields] == ["region", "seq"]


def test_tables_are_read_round_robin_each_to_its_topic(any_db_url: str) -> None:
    orders = create_orders(any_db_url)
    returns = create_orders(any_db_url, "returns")
    insert(any_db_url, orders, [order(i) for i in range(1, 5)])
    insert(any_db_url, returns, [order(i) for i in range(1, 3)])
    source = QuerySource(
        query_config(
            any_db_url, tables=["orders", "returns"], incrementing_column="id", batch_size=2
        )
    )
    source.open({})
    try:
        batches = [source.poll() for _ in range(4)]
    finally:
        source.close()
    assert [{r.topic for r in b} for b in batches] == [
        {"shop.orders"},
        {"shop.returns"},
        {"shop.orders"},
        set(),
    ]
    assert batches[1][0].partition == {"table": "returns"}


@pytest.mark.parametrize(
    ("settings", "snapshot", "position"),
    [
        ({"mode": "bulk"}, "true", {"cycle": 1, "timestamp": None, "incrementing": None}),
        (
            {
                "timestamp_column": "updated_at",
                "incrementing_column": "id",
                "timestamp_delay": "0s",
            },
            "false",
            {"cycle": None, "timestamp": "2024-05-01T12:00:01.000000", "incrementing": 1},
        ),
    ],
)
def test_debezium_envelope_carries_the_row_as_a_read_with_its_position(
    any_db_url: str, settings: dict[str, Any], snapshot: str, position: dict[str, Any]
) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(1)])
    (record,) = read_everything(query_config(any_db_url, envelope="debezium", **settings))
    value = record.value
    assert value is not None and record.value_schema is not None
    assert value["op"] == "r" and value["before"] is None
    assert value["after"]["label"] == "order-1"
    assert record.key == {"id": 1}
    source = value["source"]
    assert source["connector"] == "query" and source["name"] == "shop"
    assert source["snapshot"] == snapshot
    assert source["table"] == "orders"
    assert {k: source[k] for k in position} == position
    assert record.value_schema.schema["name"] == "Envelope"
    assert record.value_schema.schema["namespace"] == "shop.orders"
    encode(1, record.value_schema, value)


def test_every_offset_reads_back_as_a_polling_offset(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(1), order(2)])
    records = read_everything(
        query_config(any_db_url, timestamp_column="updated_at", timestamp_delay="0s")
    )
    offsets = [PollingOffset.from_map(r.offset) for r in records]
    assert offsets[-1] == PollingOffset(timestamp="2024-05-01T12:00:02.000000", key={"id": 2})
    assert [o.to_map() for o in offsets] == [dict(r.offset) for r in records]


_SLOW_QUERIES = {
    "postgresql": "SELECT id, label, updated_at FROM orders "
    "WHERE pg_sleep((SELECT seconds FROM slow)) IS NOT NULL",
    "mysql": "SELECT id, label, updated_at FROM orders WHERE SLEEP((SELECT seconds FROM slow)) = 0",
    "sqlite": "SELECT id, label, updated_at FROM orders WHERE (WITH RECURSIVE c(x) AS "
    "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < (SELECT seconds FROM slow) * 10000000) "
    "SELECT count(*) FROM c) > 0",
}


def test_stop_interrupts_a_query_that_is_running(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(1)])
    engine = engine_for(any_db_url)
    slow = sa.Table("slow", sa.MetaData(), sa.Column("seconds", sa.Integer))
    slow.create(engine)
    with engine.begin() as conn:
        conn.execute(slow.insert(), [{"seconds": 0}])
    dialect = engine.dialect.name
    source = QuerySource(
        query_config(any_db_url, query=_SLOW_QUERIES[dialect], key_columns=["id"], mode="bulk")
    )
    source.open({})
    with engine.begin() as conn:
        conn.execute(slow.update().values(seconds=60))
    engine.dispose()
    result: list[Any] = []
    poller = threading.Thread(target=lambda: result.append(source.poll()), daemon=True)
    try:
        poller.start()
        time.sleep(1.0)
        assert poller.is_alive(), "the query should still be running"
        started = time.monotonic()
        source.stop()
        poller.join(10)
        assert not poller.is_alive(), "poll did not return after stop()"
        assert time.monotonic() - started < 10
    finally:
        source.close()
    assert result == [[]]


def test_status_reports_stored_positions_and_rows_behind(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(i) for i in range(1, 6)])
    config = query_config(any_db_url, incrementing_column="id", batch_size=2)
    source = QuerySource(config)
    source.open({})
    batch = source.poll()
    source.close()
    status = QuerySource(config).status(offsets_after(batch))
    (key,) = status.position
    assert status.position[key] == {"incrementing": 2}
    assert status.lag[key]["rows_behind"] == 3
    assert status.lag[key]["maximum"] == 5
