"""``outbox.publish_message``: table-less events through ``pg_logical_emit_message``."""

from __future__ import annotations

import json

import psycopg
import pytest

import outbox
from outbox import OutboxError, OutboxEvent
from tests.integration._outbox_support import engine_for, native_connection


def _peek(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_peek_changes('outbox_test', NULL, NULL)"
        ).fetchall()
    return [str(r[0]) for r in rows if str(r[0]).startswith("message:")]


def test_a_committed_message_is_decoded_and_a_rolled_back_one_is_not(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('outbox_test', 'test_decoding')")
    kept = OutboxEvent("Order", "1", "OrderCreated", {"total": "12.50"}, headers={"t": "x"})
    dropped = OutboxEvent("Order", "2", "OrderCreated", {"total": "1.00"})
    conn = native_connection(postgres_url)
    try:
        # The test server runs with synchronous_commit off, and decoding reads flushed WAL
        # only: this session's commits flush (what they do on a default server).
        conn.execute("SET synchronous_commit = on")
        conn.commit()
        outbox.publish_message(conn, dropped)
        conn.rollback()  # written into the WAL before the kept one, then aborted
        outbox.publish_message(conn, kept)
        conn.commit()
    finally:
        conn.close()
    messages = _peek(postgres_url)
    assert len(messages) == 1
    assert "transactional: 1 prefix: outbox" in messages[0]
    content = json.loads(messages[0].split("content:", 1)[1])
    assert content == {
        "id": kept.id, "aggregatetype": "Order", "aggregateid": "1", "type": "OrderCreated",
        "payload": {"total": "12.50"}, "headers": {"t": "x"},
    }


def test_messages_need_postgresql(sqlite_url: str) -> None:
    engine = engine_for(sqlite_url)
    try:
        with engine.connect() as conn, pytest.raises(OutboxError, match="PostgreSQL"):
            outbox.publish_message(conn, OutboxEvent("Order", "1", "OrderCreated", {}))
    finally:
        engine.dispose()
