"""The outbox helper on plain sqlite3: no servers, no SQLAlchemy, nothing of liberate's."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import outbox
from outbox import IdempotentConsumer, OutboxError, OutboxEvent

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "app.db")
    outbox.create_table(conn)
    IdempotentConsumer().create_table(conn)
    conn.commit()
    return conn


def _ids(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM outbox ORDER BY seq")]


def test_importing_the_helper_loads_only_the_standard_library() -> None:
    code = (
        "import sys, outbox\n"
        "ours = ('sqlalchemy', 'psycopg', 'pymysql', 'pydantic', 'liberate', 'connectors',"
        " 'sinks')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(ours)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_commit_publishes_once_and_rollback_publishes_nothing(conn: sqlite3.Connection) -> None:
    kept = OutboxEvent("Order", "1", "OrderCreated", {"n": 1})
    outbox.publish(conn, kept)
    conn.commit()
    outbox.publish(conn, OutboxEvent("Order", "2", "OrderCreated", {"n": 2}))
    conn.rollback()
    assert _ids(conn) == [kept.id]
    row = conn.execute("SELECT aggregatetype, aggregateid, type, payload FROM outbox").fetchone()
    assert row == ("Order", "1", "OrderCreated", '{"n":1}')


def test_publish_returns_the_event_id_and_never_commits(conn: sqlite3.Connection) -> None:
    event = OutboxEvent("Order", "1", "OrderCreated", {})
    assert outbox.publish(conn, event) == event.id
    assert conn.in_transaction
    other = sqlite3.connect(conn.execute("PRAGMA database_list").fetchone()[2])
    assert other.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    conn.rollback()


def test_headers_are_stored_as_a_json_object(conn: sqlite3.Connection) -> None:
    outbox.publish(conn, OutboxEvent("Order", "1", "T", {}, headers={"trace": "t-1"}))
    assert json.loads(conn.execute("SELECT headers FROM outbox").fetchone()[0]) == {
        "trace": "t-1"
    }


def test_an_object_that_is_no_database_connection_is_refused() -> None:
    with pytest.raises(OutboxError, match="cannot publish through"):
        outbox.publish(object(), OutboxEvent("Order", "1", "T", {}))


def test_the_idempotent_consumer_marks_once_per_event(conn: sqlite3.Connection) -> None:
    consumer = IdempotentConsumer()
    assert consumer.mark(conn, "e1") is True
    assert consumer.mark(conn, "e1") is False
    conn.commit()
    assert consumer.seen(conn, "e1") and not consumer.seen(conn, "e2")


def test_the_consumer_table_statements_quote_a_custom_name() -> None:
    statements = IdempotentConsumer(table="seen events").create_table_sql("postgresql")
    assert statements[0].startswith('CREATE TABLE IF NOT EXISTS "seen events"')
    assert '"seen events_processed_at"' in statements[1]
