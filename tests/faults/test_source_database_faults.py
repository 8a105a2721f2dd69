"""The source database goes away in the middle of a run: restarted (query source on PostgreSQL,
PostgreSQL CDC, MySQL CDC) or, for PostgreSQL CDC, the slot's walsender terminated. The run
says what happened, retries with backoff, resumes from its last durable position and loses
nothing: the stream holds every change once and the sinks equal the source."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.faults._harness import (
    CATCH_UP_S,
    FaultRun,
    assert_reported,
    assert_sink_holds_exactly,
    mysql_connect,
    mysql_insert,
    mysql_rows,
    outage,
    postgres_insert,
    postgres_rows,
    sink_section,
    sqlite_ids,
    wait_for,
)
from tests.servers import Server

pytestmark = pytest.mark.integration

FIRST, SECOND = 6_000, 2_000
SOURCE_LABEL = "source shop"


def run_through_fault(
    run: FaultRun,
    target: Path,
    insert: Callable[[int, int], None],
    fault: Callable[[], None],
) -> None:
    """Rows before the run, the fault once the sinks have written some, rows after it; then
    wait until the sinks hold everything and stop the run cleanly."""
    insert(1, FIRST)
    run.write().start()
    log = run.logs[-1]
    wait_for(lambda: len(sqlite_ids(target, "items_log")) > 0, timeout_s=CATCH_UP_S,
             what="the first sunk rows", process=run.process, log=log)
    fault()
    insert(FIRST + 1, SECOND)
    total = FIRST + SECOND
    wait_for(lambda: len(sqlite_ids(target, "items_log")) >= total
             and len(sqlite_ids(target, "items")) >= total,
             timeout_s=CATCH_UP_S, what="the sinks to catch up after the fault",
             process=run.process, log=log)
    assert run.stop() == 0, run.log_text()


def postgres_fault_run(tmp_path: Path, source: dict[str, Any], topic: str) -> FaultRun:
    target = tmp_path / "target.db"
    return FaultRun(tmp_path, {"path": str(tmp_path / "streams.db")}, [source],
                    sink_section(target, topic))


def create_items(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id BIGINT PRIMARY KEY, label TEXT NOT NULL)")


def test_query_source_survives_a_postgres_restart(
    tmp_path: Path, postgres_url: str, postgres_server: Server
) -> None:
    create_items(postgres_url)
    source = {"name": "shop", "connector": "query", "database": postgres_url,
              "tables": ["items"], "mode": "incrementing", "incrementing_column": "id",
              "schedule": "200ms", "batch_size": 500}
    run = postgres_fault_run(tmp_path, source, "shop.items")
    run_through_fault(run, tmp_path / "target.db",
                      lambda start, n: postgres_insert(postgres_url, start, n),
                      outage(postgres_server))
    assert_sink_holds_exactly(tmp_path / "target.db", postgres_rows(postgres_url))
    assert run.topic_record_count("shop.items") == FIRST + SECOND
    assert_reported(run.log_text(), SOURCE_LABEL)


@pytest.mark.parametrize("fault", ["restart", "terminate_walsender"])
def test_postgres_cdc_survives_losing_its_replication_connection(
    tmp_path: Path, postgres_url: str, postgres_server: Server, fault: str
) -> None:
    create_items(postgres_url)
    source = {"name": "shop", "connector": "postgres", "database": postgres_url,
              "tables": ["public.items"]}
    run = postgres_fault_run(tmp_path, source, "shop.public.items")

    def terminate_walsender() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            terminated = conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE database = current_database() AND active_pid IS NOT NULL"
            ).fetchall()
        assert terminated, "the run had no active slot connection to terminate"

    run_through_fault(run, tmp_path / "target.db",
                      lambda start, n: postgres_insert(postgres_url, start, n),
                      outage(postgres_server) if fault == "restart" else terminate_walsender)
    assert_sink_holds_exactly(tmp_path / "target.db", postgres_rows(postgres_url))
    assert run.topic_record_count("shop.public.items") == FIRST + SECOND
    assert_reported(run.log_text(), SOURCE_LABEL)


def test_mysql_cdc_survives_a_server_restart(
    tmp_path: Path, mysql_url: str, mysql_server: Server
) -> None:
    conn = mysql_connect(mysql_url)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE items (id BIGINT PRIMARY KEY, label TEXT NOT NULL)")
    finally:
        conn.close()
    database = mysql_url.rsplit("/", 1)[1]
    source = {"name": "shop", "connector": "mysql", "database": mysql_url, "tables": ["items"]}
    run = postgres_fault_run(tmp_path, source, f"shop.{database}.items")
    run_through_fault(run, tmp_path / "target.db",
                      lambda start, n: mysql_insert(mysql_url, start, n),
                      outage(mysql_server))
    assert_sink_holds_exactly(tmp_path / "target.db", mysql_rows(mysql_url))
    assert run.topic_record_count(f"shop.{database}.items") == FIRST + SECOND
    assert_reported(run.log_text(), SOURCE_LABEL)
