"""The SQL sink's target database, or the Kafka broker between source and sink, goes away in
the middle of a run. The run says what happened, retries with backoff and resumes: the target
equals the source, and the append-only table holds every record exactly once (the sink commits
its offsets with the rows; the Kafka backend is transactional)."""

from __future__ import annotations

import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.faults._harness import (
    CATCH_UP_S,
    FaultRun,
    assert_reported,
    assert_sink_holds_exactly,
    outage,
    sink_section,
    sqlite_ids,
    sqlite_insert,
    wait_for,
)
from tests.kafka_broker import KafkaBroker
from tests.servers import Server

pytestmark = pytest.mark.integration

FIRST, SECOND = 20_000, 4_000


def shop_source(shop: Path) -> dict[str, Any]:
    return {"name": "shop", "connector": "query", "database": f"sqlite:///{shop}",
            "tables": ["items"], "mode": "incrementing", "incrementing_column": "id",
            "schedule": "100ms", "batch_size": 1000}


def sqlite_source_rows(shop: Path) -> dict[int, str]:
    with sqlite3.connect(shop) as conn:
        return {int(r[0]): str(r[1]) for r in conn.execute("SELECT id, label FROM items")}


def postgres_ids(url: str, table: str) -> list[int]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
            return []
        return [int(r[0]) for r in conn.execute(
            sql.SQL("SELECT id FROM {}").format(sql.Identifier(table)))]


def test_sql_sink_survives_a_restart_of_its_target_database(
    tmp_path: Path, postgres_url: str, postgres_server: Server
) -> None:
    shop = tmp_path / "shop.db"
    sinks = [
        {"name": "mirror", "connector": "sql", "database": postgres_url, "topics": ["shop.items"],
         "table": "items", "batch_size": 500},
        {"name": "log", "connector": "sql", "database": postgres_url, "topics": ["shop.items"],
         "table": "items_log", "pk_mode": "none", "batch_size": 300},
    ]
    run = FaultRun(tmp_path, {"path": str(tmp_path / "streams.db")}, [shop_source(shop)], sinks)
    sqlite_insert(shop, 1, FIRST)
    run.write().start()
    log = run.logs[-1]
    wait_for(lambda: len(postgres_ids(postgres_url, "items_log")) > 0, timeout_s=CATCH_UP_S,
             what="the first sunk rows", process=run.process, log=log)
    outage(postgres_server)()
    sqlite_insert(shop, FIRST + 1, SECOND)
    total = FIRST + SECOND
    wait_for(lambda: len(postgres_ids(postgres_url, "items_log")) >= total
             and len(postgres_ids(postgres_url, "items")) >= total,
             timeout_s=CATCH_UP_S, what="the sinks to catch up", process=run.process, log=log)
    assert run.stop() == 0, run.log_text()

    expected = sqlite_source_rows(shop)
    with psycopg.connect(postgres_url) as conn:
        mirror = {int(r[0]): str(r[1]) for r in conn.execute("SELECT id, label FROM items")}
    logged = postgres_ids(postgres_url, "items_log")
    assert mirror == expected
    assert len(logged) == total and set(logged) == set(expected), "lost or duplicated"
    text = run.log_text()
    assert_reported(text, "sink mirror" if "runtime: sink mirror: " in text else "sink log")


def test_kafka_backend_survives_a_broker_restart(
    tmp_path: Path, kafka_broker: KafkaBroker, schema_registry_url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    shop, target = tmp_path / "shop.db", tmp_path / "target.db"
    streams = {
        "backend": "kafka",
        "kafka": {"bootstrap_servers": kafka_broker.bootstrap,
                  "offsets_topic": f"liberate-offsets-{tag}",
                  "transactional_id_prefix": f"fault-{tag}"},
        "schema_registry": {"url": schema_registry_url},
    }
    source = shop_source(shop) | {"name": f"shop{tag}"}
    run = FaultRun(tmp_path, streams, [source], sink_section(target, f"shop{tag}.items"))
    for sink in run.sinks:
        sink["name"] = f"{sink['name']}{tag}"
    sqlite_insert(shop, 1, FIRST)
    run.write().start()
    log = run.logs[-1]
    wait_for(lambda: len(sqlite_ids(target, "items_log")) > 0, timeout_s=CATCH_UP_S,
             what="the first sunk rows", process=run.process, log=log)
    outage(kafka_broker)()
    sqlite_insert(shop, FIRST + 1, SECOND)
    total = FIRST + SECOND
    wait_for(lambda: len(sqlite_ids(target, "items_log")) >= total
             and len(sqlite_ids(target, "items")) >= total,
             timeout_s=CATCH_UP_S, what="the sinks to catch up", process=run.process, log=log)
    assert run.stop() == 0, run.log_text()
    assert_sink_holds_exactly(target, sqlite_source_rows(shop))
    # librdkafka's own reports are forwarded as warnings of liberate.kafka.
    assert re.search(r"WARNING +liberate\.kafka: .*Connection refused", run.log_text())
