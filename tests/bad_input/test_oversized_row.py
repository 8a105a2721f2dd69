"""A row larger than the broker takes in one message (Kafka backend): the run stops with an
error naming the topic and the record's key, and the rows before it are in the stream; nothing
is skipped past: the source offset stays before the big row, so the next run stops at it
again."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.bad_input._support import liberate, write_run_file
from tests.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration

BIG_ID = 4
BIG = 3_000_000  # bytes: above the default message.max.bytes (1 MB) of client and broker


def test_a_row_larger_than_the_message_limit_stops_the_run_naming_topic_and_key(
    tmp_path: Path, kafka_broker: KafkaBroker, schema_registry_url: str
) -> None:
    shop = tmp_path / "shop.db"
    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT NOT NULL)")
        conn.executemany("INSERT INTO items VALUES (?, ?)",
                         [(i, "x" * BIG if i == BIG_ID else f"item {i}") for i in range(1, 8)])
    tag = uuid.uuid4().hex[:8]
    streams = {"backend": "kafka",
               "kafka": {"bootstrap_servers": kafka_broker.bootstrap,
                         "offsets_topic": f"liberate-offsets-{tag}",
                         "transactional_id_prefix": f"big-{tag}"},
               "schema_registry": {"url": schema_registry_url}}
    source = {"name": f"shop{tag}", "connector": "query", "database": f"sqlite:///{shop}",
              "tables": ["items"], "mode": "incrementing", "incrementing_column": "id",
              "batch_size": 2}
    path = write_run_file(tmp_path, [source], streams=streams)
    result = liberate("run", str(path), "--once")
    assert result.returncode == 1, result.stderr
    message = result.stderr
    assert f"shop{tag}.items" in message, message
    assert f"'id': {BIG_ID}" in message or f'"id": {BIG_ID}' in message, message
    assert "message.max.bytes" in message, message
    again = liberate("run", str(path), "--once")
    assert again.returncode == 1, "the big row was skipped past"
    assert f"'id': {BIG_ID}" in again.stderr, again.stderr
