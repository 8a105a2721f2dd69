"""Records the SQL sink cannot write: dead-lettered, later records of their key parked behind
them, and replayed in order once the cause is fixed (errors.tolerance all); or the sink stops
naming them (none). On SQLite, PostgreSQL and MariaDB, driven directly with a recording
context in place of the runtime's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from liberate.errors import RecordError, RetriableError
from liberate.records import ConsumedRecord, SinkRecord, TopicPartition
from sinks.sql import SqlSink
from sinks.sql._dead_letters import RECORD_ERROR
from tests.integration._sql_sink_support import (
    TOPIC,
    RecordingContext,
    config,
    execute,
    order,
    read_rows,
    row,
    tombstone,
)

TP = TopicPartition(TOPIC, 0)
TOO_LONG = "much too long"  # the target's status column holds 5 characters


def create_short_status_table(url: str) -> None:
    """``orders`` whose status holds at most 5 characters (SQLite: a CHECK)."""
    if url.startswith("sqlite"):
        execute(url, "CREATE TABLE orders (id BIGINT PRIMARY KEY, status TEXT NOT NULL "
                "CHECK (length(status) <= 5), note TEXT)")
    else:
        execute(url, "CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(5) NOT NULL, "
                "note TEXT)")


def widen_status(url: str) -> None:
    """The fix: let status hold longer text."""
    if url.startswith("sqlite"):
        execute(url,
                "CREATE TABLE orders_new (id BIGINT PRIMARY KEY, status TEXT NOT NULL, note TEXT)",
                "INSERT INTO orders_new SELECT * FROM orders", "DROP TABLE orders",
                "ALTER TABLE orders_new RENAME TO orders")
    elif url.startswith("postgresql"):
        execute(url, "ALTER TABLE orders ALTER COLUMN status TYPE VARCHAR(50)")
    else:
        execute(url, "ALTER TABLE orders MODIFY status VARCHAR(50) NOT NULL")


@pytest.fixture
def target(any_db_url: str) -> str:
    create_short_status_table(any_db_url)
    return any_db_url


@pytest.fixture
def tolerant(target: str) -> Iterator[tuple[SqlSink, RecordingContext]]:
    sink = SqlSink(config(target, errors={"tolerance": "all"}))
    context = RecordingContext()
    sink.attach_context(context)
    sink.open()
    yield sink, context
    sink.close()


def test_a_refused_record_is_dead_lettered_and_the_rest_of_the_batch_written(
    target: str, tolerant: tuple[SqlSink, RecordingContext]
) -> None:
    sink, context = tolerant
    sink.write([order(0, 1, "new"), order(1, 2, TOO_LONG), order(2, 3, "new")])
    assert read_rows(target, "orders") == [row(1, "new"), row(3, "new")]
    assert sink.committed_offsets([TP]) == {TP: 3}
    [(topic, record, headers)] = context.sent
    assert topic == "warehouse.dlq" and record.offset == 1
    assert headers["__connect.errors.topic"] == TOPIC
    assert headers["__connect.errors.partition"] == "0"
    assert headers["__connect.errors.offset"] == "1"
    assert headers["__connect.errors.connector.name"] == "warehouse"
    assert headers["__connect.errors.exception.class.name"] == "liberate.errors.RecordError"
    assert "orders" in headers["__connect.errors.exception.message"]
    assert int(headers["__liberate.errors.timestamp"]) > 0
    assert "__liberate.errors.parked.behind" not in headers


def test_later_records_of_the_key_are_parked_behind_it_until_replayed_in_order(
    target: str, tolerant: tuple[SqlSink, RecordingContext]
) -> None:
    sink, context = tolerant
    stream = [order(0, 1, "new"), order(1, 2, "new"), order(2, 2, TOO_LONG),
              order(3, 1, "paid")]
    sink.write(stream)
    # Key 2 waits behind offset 2 (its state before it stays); keys 1 and 3 go on.
    assert read_rows(target, "orders") == [row(1, "paid"), row(2, "new")]
    sink.write([order(4, 2, "sent", "later batch"), order(5, 3, "new"), tombstone(6, 2)])
    assert read_rows(target, "orders") == [row(1, "paid"), row(2, "new"), row(3, "new")]
    assert sink.committed_offsets([TP]) == {TP: 7}
    behind = [(r.offset, h.get("__liberate.errors.parked.behind")) for _, r, h in context.sent]
    assert behind == [(2, None), (4, f"{TOPIC}[0]@2"), (6, f"{TOPIC}[0]@2")]
    listed = sink.parked()
    assert [(p["origin"], p["table"], p["key"], p["behind"]) for p in listed] == [
        (f"{TOPIC}[0]@2", "orders", "[2]", None),
        (f"{TOPIC}[0]@4", "orders", "[2]", f"{TOPIC}[0]@2"),
        (f"{TOPIC}[0]@6", "orders", "[2]", f"{TOPIC}[0]@2"),
    ]
    assert TOO_LONG not in listed[1]["error"]
    status = SqlSink(config(target, errors={"tolerance": "all"})).status()
    assert status.state.startswith("3 record(s) parked")

    originals = {(r.topic, r.partition, r.offset): r for r in [*stream, order(4, 2, "sent",
                 "later batch"), tombstone(6, 2)]}

    def decode(consumed: list[ConsumedRecord]) -> list[SinkRecord]:
        assert [c.value for c in consumed] == [f"value@{c.offset}".encode() for c in consumed]
        return [originals[(c.topic, c.partition, c.offset)] for c in consumed]

    with pytest.raises(RecordError, match="replay stopped, nothing was applied") as still:
        sink.replay(decode)
    assert still.value.origin == f"{TOPIC}[0]@2"
    assert len(sink.parked()) == 3
    widen_status(target)
    assert sink.replay(decode) == 3  # updated, updated, deleted: in order
    assert sink.parked() == []
    assert read_rows(target, "orders") == [row(1, "paid"), row(3, "new")]
    sink.write([order(7, 2, "back")])  # the key is released
    assert read_rows(target, "orders") == [row(1, "paid"), row(2, "back"), row(3, "new")]
    assert sink.replay(decode) == 0


def test_a_record_the_runtime_could_not_decode_is_dead_lettered_and_parks_its_key(
    target: str, tolerant: tuple[SqlSink, RecordingContext]
) -> None:
    sink, context = tolerant
    undecodable = SinkRecord(TOPIC, 0, 1, {"id": 2}, None, order(0, 2, "x").key_schema, None,
                             extra={RECORD_ERROR: RecordError("cannot decode the value")})
    sink.write([order(0, 1, "new"), undecodable, order(2, 2, "new")])
    assert read_rows(target, "orders") == [row(1, "new")]
    assert [(r.offset, h["__connect.errors.exception.message"]) for _, r, h in context.sent] == [
        (1, "cannot decode the value"), (2, f"parked behind {TOPIC}[0]@1")]


def test_tolerance_none_stops_at_the_refused_record_writing_nothing(target: str) -> None:
    sink = SqlSink(config(target))
    sink.attach_context(RecordingContext())
    sink.open()
    try:
        with pytest.raises(RecordError) as stopped:
            sink.write([order(0, 1, "new"), order(1, 2, TOO_LONG)])
        assert stopped.value.origin == f"{TOPIC}[0]@1"
        assert read_rows(target, "orders") == []
        assert sink.committed_offsets([TP]) == {}
        undecodable = SinkRecord(TOPIC, 0, 0, None, None, None, None,
                                 extra={RECORD_ERROR: RecordError("bad bytes", origin="x")})
        with pytest.raises(RecordError, match="bad bytes"):
            sink.write([undecodable])
    finally:
        sink.close()


def test_many_refused_records_in_one_batch_are_found_in_one_pass(
    target: str, tolerant: tuple[SqlSink, RecordingContext]
) -> None:
    sink, context = tolerant
    batch: list[Any] = [order(i, i, TOO_LONG if i % 3 == 0 else "ok") for i in range(30)]
    sink.write(batch)
    assert [r["id"] for r in read_rows(target, "orders")] == [i for i in range(30) if i % 3]
    assert sorted(r.offset for _, r, _ in context.sent) == list(range(0, 30, 3))


def test_a_connection_lost_mid_batch_is_retriable_and_the_retry_writes_once(
    postgres_url: str,
) -> None:
    sink = SqlSink(config(postgres_url, batch_size=100_000))
    sink.open()
    batch = [order(i, i, "new") for i in range(60_000)]
    stop = threading.Event()

    def terminate_the_sinks_connections() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            while not stop.is_set():
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                              "datname = current_database() AND pid <> pg_backend_pid() AND "
                              "state <> 'idle'")
                time.sleep(0.05)

    killer = threading.Thread(target=terminate_the_sinks_connections)
    killer.start()
    try:
        with pytest.raises(RetriableError):
            for _ in range(20):  # each attempt is cut short while it runs
                sink.write(batch)
    finally:
        stop.set()
        killer.join()
    sink.write(batch)  # the runtime's retry
    sink.write(batch[:10])  # and a late duplicate changes nothing
    try:
        assert len(read_rows(postgres_url, "orders")) == 60_000
        assert sink.committed_offsets([TP]) == {TP: 60_000}
    finally:
        sink.close()
