"""The source's tables change under a running ``liberate run``: a table dropped mid-run stops
its source naming the table (the rows read before are all in the stream), and a column added
while PostgreSQL CDC snapshots the table waits for the snapshot and then arrives as a new
schema version, with no row lost or repeated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.bad_input._support import topic_records, write_run_file
from tests.faults._harness import CATCH_UP_S, FaultRun, postgres_insert, wait_for

pytestmark = pytest.mark.integration


def run_of(tmp_path: Path, source: dict[str, Any]) -> FaultRun:
    write_run_file(tmp_path, [source])
    return FaultRun(tmp_path, {"path": str(tmp_path / "streams.db")}, [source], [])


def test_a_table_dropped_mid_run_stops_its_source_naming_the_table(
    tmp_path: Path, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id BIGINT PRIMARY KEY, label TEXT NOT NULL)")
    postgres_insert(postgres_url, 1, 500)
    source = {"name": "shop", "connector": "query", "database": postgres_url,
              "tables": ["items"], "mode": "incrementing", "incrementing_column": "id",
              "schedule": "200ms"}
    run = run_of(tmp_path, source)
    run.write().start()
    log = run.logs[-1]
    wait_for(lambda: run.topic_record_count("shop.items") == 500, timeout_s=CATCH_UP_S,
             what="the rows before the drop", process=run.process, log=log)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE items")
    wait_for(lambda: " ERROR " in log.read_text(errors="replace"), timeout_s=60,
             what="the source to stop", process=run.process)
    text = run.log_text()
    run.stop()
    error = next(line for line in text.splitlines() if " ERROR " in line)
    assert "source shop" in error and "items" in error, text
    assert run.topic_record_count("shop.items") == 500


def test_a_column_added_during_the_cdc_snapshot_arrives_after_it_as_a_new_version(
    tmp_path: Path, postgres_url: str
) -> None:
    rows = 40_000
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id BIGINT PRIMARY KEY, label TEXT NOT NULL)")
    postgres_insert(postgres_url, 1, rows, per_txn=5_000)
    source = {"name": "cdc", "connector": "postgres", "database": postgres_url,
              "tables": ["public.items"]}
    run = run_of(tmp_path, source)
    run.write().start()
    log = run.logs[-1]
    topic = "cdc.public.items"
    wait_for(lambda: run.topic_record_count(topic) > 0, timeout_s=CATCH_UP_S,
             what="the snapshot to start", process=run.process, log=log)
    sent_at = run.topic_record_count(topic)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE items ADD COLUMN note TEXT NOT NULL DEFAULT 'new'")
        conn.execute("INSERT INTO items (id, label) VALUES (%s, 'after')", (rows + 1,))
    assert sent_at < rows, "the snapshot ended before the ALTER was sent"
    wait_for(lambda: run.topic_record_count(topic) >= rows + 1, timeout_s=CATCH_UP_S,
             what="the change after the ALTER", process=run.process, log=log)
    assert run.stop() == 0, run.log_text()

    events = [r.value for r in topic_records(run.path, topic) if r.value is not None]
    ids = [int(v["after"]["id"]) for v in events]
    assert sorted(ids) == list(range(1, rows + 2)), "a row is missing or repeated"
    snapshot = [v for v in events if v["op"] == "r"]
    assert len(snapshot) == rows and all("note" not in v["after"] for v in snapshot)
    last = events[-1]
    assert last["op"] == "c" and last["after"]["note"] == "new"


def test_a_table_dropped_under_postgres_cdc_keeps_its_changes_and_is_named_at_the_next_start(
    tmp_path: Path, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id BIGINT PRIMARY KEY, label TEXT NOT NULL)")
        conn.execute("CREATE TABLE other (id BIGINT PRIMARY KEY)")
    source = {"name": "cdc", "connector": "postgres", "database": postgres_url,
              "tables": ["public.items", "public.other"]}
    run = run_of(tmp_path, source)
    run.write().start()
    log = run.logs[-1]
    postgres_insert(postgres_url, 1, 300)
    topic = "cdc.public.items"
    wait_for(lambda: run.topic_record_count(topic) == 300, timeout_s=CATCH_UP_S,
             what="the changes before the drop", process=run.process, log=log)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE items")
        conn.execute("INSERT INTO other VALUES (1)")
    wait_for(lambda: run.topic_record_count("cdc.public.other") == 1, timeout_s=CATCH_UP_S,
             what="the other table's change after the drop", process=run.process, log=log)
    assert run.stop() == 0, run.log_text()
    assert run.topic_record_count(topic) == 300

    run.start("--once")
    assert run.process is not None
    assert run.process.wait(timeout=CATCH_UP_S) == 1, run.log_text()
    assert "table(s) public.items not found" in run.logs[-1].read_text(), run.log_text()
