"""Avro values per event type through the log-based relay, as a user runs it: ``liberate run
--once`` into the embedded stream, read back with ``liberate tail`` and with the backend's
consumer, decoded with the registry; a payload that does not fit its schema stops the relay
naming the event, or goes to the dead-letter topic."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

import outbox
from outbox import OutboxEvent
from tests.integration import _outbox_support
from tests.integration._outbox_support import (
    child_env,
    embedded_backend,
    event_records,
    header,
    native_connection,
    stream_records,
)

pytestmark = pytest.mark.integration

log_db_url = _outbox_support.log_db_url  # the fixture: PostgreSQL, then MariaDB

ORDER_PLACED: dict[str, Any] = {
    "type": "record", "name": "OrderPlaced", "namespace": "com.shop",
    "fields": [
        {"name": "order_id", "type": "long"},
        {"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12,
                                   "scale": 2}},
        {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ],
}
ORDER_PAID: dict[str, Any] = {
    "type": "record", "name": "OrderPaid", "namespace": "com.shop",
    "fields": [{"name": "order_id", "type": "long"}, {"name": "method", "type": "string"}],
}


def _run_file(tmp_path: Path, url: str, **settings: Any) -> Path:
    schema_file = tmp_path / "order_placed.avsc"
    schema_file.write_text(json.dumps(ORDER_PLACED))
    source = {"name": "relay", "connector": "outbox", "mode": "log", "database": url,
              "value_format": "avro",
              "schemas": {"OrderPlaced": str(schema_file), "OrderPaid": ORDER_PAID},
              **settings}
    path = tmp_path / "relay.yaml"
    path.write_text(yaml.safe_dump({
        "streams": {"backend": "embedded", "path": str(tmp_path / "streams.db"),
                    "subject_name_strategy": "topic_record"},
        "sources": [source],
    }))
    return path


def _liberate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "liberate", *args], cwd=tmp_path,
                          env=child_env(tmp_path), capture_output=True, text=True, timeout=120,
                          check=False)


def _publish(url: str, *events: OutboxEvent) -> None:
    conn = native_connection(url)
    try:
        for event in events:
            outbox.publish(conn, event, delete_after_insert=True)
        conn.commit()
    finally:
        conn.close()


def test_each_event_type_is_an_avro_value_with_its_own_registered_schema(
    log_db_url: str, tmp_path: Path
) -> None:
    run_file = _run_file(tmp_path, log_db_url)
    first = _liberate(tmp_path, "run", str(run_file), "--once")
    assert first.returncode == 0, first.stderr
    placed = OutboxEvent("Order", "42", "OrderPlaced", {
        "order_id": 42, "total": Decimal("12.50"),
        "placed_at": dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)})
    paid = OutboxEvent("Order", "42", "OrderPaid", {"order_id": 42, "method": "card"})
    _publish(log_db_url, placed, paid)
    second = _liberate(tmp_path, "run", str(run_file), "--once")
    assert second.returncode == 0, second.stderr

    records = event_records(tmp_path / "streams.db")
    assert [header(r, "id") for r in records] == [placed.id, paid.id]
    assert records[0].value_schema is not None and records[1].value_schema is not None
    assert records[0].value_schema.name == "com.shop.OrderPlaced"
    assert records[0].value == {"order_id": 42, "total": Decimal("12.50"),
                                "placed_at": dt.datetime(2026, 11, 26, 10, tzinfo=dt.UTC)}
    assert records[1].value_schema.name == "com.shop.OrderPaid"
    assert records[1].value == {"order_id": 42, "method": "card"}
    with embedded_backend(tmp_path / "streams.db") as backend:
        subjects = set(backend.registry().subjects())
    assert {"outbox.event.Order-com.shop.OrderPlaced",
            "outbox.event.Order-com.shop.OrderPaid"} <= subjects

    tail = _liberate(tmp_path, "tail", str(run_file), "outbox.event.Order", "--from-beginning",
                     "--limit", "2")
    assert tail.returncode == 0, tail.stderr
    values = [json.loads(line)["value"] for line in tail.stdout.splitlines()]
    assert values[0]["total"] == "12.50" and values[1] == {"order_id": 42, "method": "card"}


def test_a_payload_that_does_not_fit_stops_the_relay_or_goes_to_the_dead_letter_topic(
    log_db_url: str, tmp_path: Path
) -> None:
    run_file = _run_file(tmp_path, log_db_url)
    assert _liberate(tmp_path, "run", str(run_file), "--once").returncode == 0
    bad = OutboxEvent("Order", "7", "OrderPaid", {"order_id": 7})  # no method
    good = OutboxEvent("Order", "7", "OrderPaid", {"order_id": 7, "method": "cash"})
    _publish(log_db_url, bad)
    _publish(log_db_url, good)

    stopped = _liberate(tmp_path, "run", str(run_file), "--once")
    assert stopped.returncode == 1
    assert f"outbox event {bad.id} (type OrderPaid)" in stopped.stderr
    assert "method is missing" in stopped.stderr
    assert event_records(tmp_path / "streams.db") == []  # nothing skipped, nothing after it

    run_file = _run_file(tmp_path, log_db_url, dead_letter_topic="relay.dlq")
    resumed = _liberate(tmp_path, "run", str(run_file), "--once")
    assert resumed.returncode == 0, resumed.stderr
    assert [header(r, "id") for r in event_records(tmp_path / "streams.db")] == [good.id]
    (dead,) = stream_records(tmp_path / "streams.db", ["relay.dlq"])
    assert header(dead, "id") == bad.id and dead.value is not None
    assert json.loads(dead.value["payload"]) == {"order_id": 7}
    assert "method is missing" in (header(dead, "__connect.errors.exception.message") or "")
