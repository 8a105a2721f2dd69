"""The log-based relay (``mode: log``) on real PostgreSQL (WAL) and MariaDB (binlog).

Events are read from the log, so: a rolled-back transaction publishes nothing, a committed one
exactly once, a row deleted in its own transaction (``delete_after_insert``) still relays from
its insert, updates follow ``invalid_op_behavior``, deletes are dropped, concurrent writers keep
each aggregate's order, and on PostgreSQL ``publish_message`` events relay without a table row.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import outbox
from connectors.outbox import OutboxSource, OutboxSourceConfig
from liberate.records import SinkRecord
from liberate.runtime._source_task import SourceTask
from liberate.serde import RecordSerializer
from outbox import OutboxEvent
from tests.integration import _outbox_support
from tests.integration._outbox_support import (
    EventWriters,
    RelayRun,
    create_outbox,
    embedded_backend,
    engine_for,
    event_records,
    header,
    native_connection,
    outbox_rows,
    relay_config,
    run_relay_once,
)

pytestmark = pytest.mark.integration

log_db_url = _outbox_support.log_db_url  # the fixture: PostgreSQL, then MariaDB

WAIT_S = 60.0


def log_config(url: str, **settings: Any) -> OutboxSourceConfig:
    """A log-mode relay named ``relay``."""
    return relay_config(url, mode="log", **settings)


def _publish(url: str, *events: OutboxEvent, rollback: bool = False,
             delete_after_insert: bool = False) -> None:
    conn = native_connection(url)
    try:
        for event in events:
            outbox.publish(conn, event, delete_after_insert=delete_after_insert)
        if rollback:
            conn.rollback()
        else:
            conn.commit()
    finally:
        conn.close()


def _relay_once(config: OutboxSourceConfig, path: Path) -> None:
    with embedded_backend(path) as backend:
        run_relay_once(config, backend)


def _ids(records: list[SinkRecord]) -> list[str]:
    return [header(r, "id") or "" for r in records]


def test_committed_events_relay_once_and_rolled_back_ones_never(
    log_db_url: str, tmp_path: Path
) -> None:
    config, path = log_config(log_db_url), tmp_path / "streams.db"
    _relay_once(config, path)  # the first start: the position to stream from
    placed = OutboxEvent("Order", "42", "OrderPlaced", {"total": "12.50"},
                         headers={"trace": "t-1"})
    paid = OutboxEvent("Order", "42", "OrderPaid", {"paid": True})
    failed = OutboxEvent("Order", "43", "OrderPlaced", {"total": "1.00"})
    shipped = OutboxEvent("Shipment", "s-1", "ShipmentSent", {"order": 42})
    _publish(log_db_url, placed, paid)
    _publish(log_db_url, failed, rollback=True)
    _publish(log_db_url, shipped, delete_after_insert=True)
    _relay_once(config, path)
    _relay_once(config, path)  # again: nothing is delivered twice

    records = event_records(path)
    assert sorted(_ids(records)) == sorted([placed.id, paid.id, shipped.id])
    orders = [r for r in records if r.topic == "outbox.event.Order"]
    assert _ids(orders) == [placed.id, paid.id]
    first = orders[0]
    assert first.key == {"aggregateid": "42"}
    assert first.value is not None and json.loads(first.value["payload"]) == {"total": "12.50"}
    assert header(first, "eventType") == "OrderPlaced" and header(first, "trace") == "t-1"
    (sent,) = [r for r in records if r.topic == "outbox.event.Shipment"]
    assert sent.key == {"aggregateid": "s-1"} and header(sent, "id") == shipped.id
    # The log relay writes nothing: the rows it relayed are still there, the deleted one gone.
    assert sorted(outbox_rows(log_db_url)) == sorted([placed.id, paid.id])


@pytest.mark.parametrize("behavior", ["warn", "fatal"])
def test_updates_follow_invalid_op_behavior_and_deletes_are_dropped(
    log_db_url: str, tmp_path: Path, behavior: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = log_config(log_db_url, invalid_op_behavior=behavior)
    path = tmp_path / "streams.db"
    _relay_once(config, path)
    event = OutboxEvent("Order", "7", "OrderPlaced", {"n": 1})
    _publish(log_db_url, event)
    engine = engine_for(log_db_url)
    try:
        with engine.begin() as conn:
            table = sa.Table("outbox", sa.MetaData(), autoload_with=conn)
            conn.execute(sa.update(table).values(type="Tampered"))
            conn.execute(sa.delete(table))
    finally:
        engine.dispose()
    later = OutboxEvent("Order", "7", "OrderShipped", {"n": 2})
    _publish(log_db_url, later)

    with caplog.at_level(logging.WARNING, logger="connectors.outbox._routing"):
        error = _relay_once_error(config, path)
    if behavior == "fatal":
        # The update stops the relay before anything of its poll is stored (the insert before
        # it may have come in an earlier poll, and be stored): the next start meets it again,
        # as it must, rather than skipping it.
        assert error is not None and f"UPDATE of outbox event {event.id}" in error
        assert "never update outbox rows" in error
        stored = _ids(event_records(path))
        assert stored in ([], [event.id])
        again = _relay_once_error(config, path)
        assert again is not None and f"UPDATE of outbox event {event.id}" in again
        assert _ids(event_records(path)) == stored
    else:
        assert error is None, error
        assert f"UPDATE of outbox event {event.id} was skipped" in caplog.text
        assert _ids(event_records(path)) == [event.id, later.id]


def _relay_once_error(config: OutboxSourceConfig, path: Path) -> str | None:
    """Run the relay once through the runtime's source loop; the error it stopped with."""
    with embedded_backend(path) as backend:
        task = SourceTask(OutboxSource(config), backend, RecordSerializer(backend.registry()),
                          threading.Event(), once=True, schedule=None, max_retries=0)
        task.run()
        return task.stats.error


def test_concurrent_writers_keep_each_aggregates_order(log_db_url: str, tmp_path: Path) -> None:
    config, path = log_config(log_db_url), tmp_path / "streams.db"
    with embedded_backend(path) as backend, RelayRun(config, backend) as relay:
        _wait(lambda: relay.source.caught_up(), relay, "the relay to start")
        writers = EventWriters(log_db_url, writers=3, transactions=25,
                               delete_after_insert=True).start()
        writers.join()
        _wait(lambda: set(_ids(event_records(path))) >= writers.committed_ids, relay,
              "every committed event")
    writers.check(event_records(path))
    assert outbox_rows(log_db_url) == []


def test_pg_logical_emit_message_events_relay_like_rows(
    postgres_url: str, tmp_path: Path
) -> None:
    create_outbox(postgres_url)
    config, path = log_config(postgres_url), tmp_path / "streams.db"
    _relay_once(config, path)
    row = OutboxEvent("Order", "1", "OrderPlaced", {"n": 1})
    message = OutboxEvent("Order", "1", "OrderPaid", {"n": 2}, headers={"trace": "t-2"})
    dropped = OutboxEvent("Order", "2", "OrderPlaced", {"n": 1})
    conn = native_connection(postgres_url)
    try:
        outbox.publish(conn, row, delete_after_insert=True)
        outbox.publish_message(conn, message)
        conn.commit()
        outbox.publish_message(conn, dropped)
        conn.rollback()
        outbox.publish_message(conn, dropped, prefix="someone-else")
        conn.commit()
    finally:
        conn.close()
    _relay_once(config, path)

    records = event_records(path)
    assert _ids(records) == [row.id, message.id]
    paid = records[1]
    assert paid.key == {"aggregateid": "1"}
    assert paid.value is not None and json.loads(paid.value["payload"]) == {"n": 2}
    assert header(paid, "eventType") == "OrderPaid" and header(paid, "trace") == "t-2"
    assert paid.timestamp_ms is not None and abs(paid.timestamp_ms - time.time() * 1000) < 60_000


def _wait(condition: Any, relay: RelayRun, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert relay.error is None, relay.error
        assert time.monotonic() < deadline, f"waited {WAIT_S}s for {what}"
        time.sleep(0.05)
