"""Progress of bulk loads and snapshots on real databases: the row estimates and the lines."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
import yaml

from connectors.query import QuerySource
from liberate import progress
from liberate.config.loader import load_run_file
from liberate.progress import estimate_rows
from liberate.runtime import Pipeline, open_backend
from tests.conformance.source import drain
from tests.integration._query_support import (
    create_orders,
    engine_for,
    insert,
    order,
    query_config,
)


@pytest.fixture
def every_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress lines for every batch, however short the load."""
    monkeypatch.setattr(progress, "QUIET_S", 0.0)
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)


def _snapshot_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                    source: dict[str, object]) -> list[str]:
    """Run ``source`` once (its snapshot) and return the progress lines logged."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"streams": {"path": str(tmp_path / "streams.db")},
                                    "sources": [source]}), encoding="utf-8")
    config = load_run_file(str(path))
    backend = open_backend(config.streams)
    try:
        with caplog.at_level(logging.INFO, logger="liberate.progress"):
            assert Pipeline(config, backend, once=True).run().ok
    finally:
        backend.close()
    return [r.getMessage() for r in caplog.records if r.name == "liberate.progress"]


def test_row_estimates_come_from_the_catalog_or_a_count(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(i) for i in range(1, 201)])
    engine = engine_for(any_db_url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                assert estimate_rows(conn, table) is None  # never analyzed: unknown, no count
                conn.execute(sa.text("ANALYZE orders"))
            elif conn.dialect.name in ("mysql", "mariadb"):
                conn.execute(sa.text("ANALYZE TABLE orders"))
            estimate = estimate_rows(conn, table)
    finally:
        engine.dispose()
    assert estimate is not None and 150 <= estimate <= 250


def test_a_bulk_load_reports_rows_done_of_the_estimate_with_rate_and_time_left(
    sqlite_url: str, every_line: None, caplog: pytest.LogCaptureFixture
) -> None:
    table = create_orders(sqlite_url)
    insert(sqlite_url, table, [order(i) for i in range(1, 101)])
    source = QuerySource(query_config(sqlite_url, mode="bulk", batch_size=30))
    source.open({})
    try:
        with caplog.at_level(logging.INFO, logger="liberate.progress"):
            assert len(drain(source)) == 100
    finally:
        source.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "liberate.progress"]
    assert lines[0].startswith("source shop: bulk load: 30/100 rows (30%), ")
    assert "rows/s" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("source shop: bulk load: done, 100 rows in ")


def test_the_later_cycles_of_an_incremental_source_show_no_progress(
    sqlite_url: str, every_line: None, caplog: pytest.LogCaptureFixture
) -> None:
    table = create_orders(sqlite_url)
    insert(sqlite_url, table, [order(i) for i in range(1, 11)])
    source = QuerySource(query_config(sqlite_url, mode="incrementing", incrementing_column="id"))
    source.open({})
    try:
        with caplog.at_level(logging.INFO, logger="liberate.progress"):
            drain(source)
            initial = len(caplog.records)
            insert(sqlite_url, table, [order(11)])
            assert len(drain(source)) == 1
    finally:
        source.close()
    assert initial >= 1
    assert "initial load" in caplog.records[0].getMessage()
    assert len(caplog.records) == initial


def test_a_postgres_snapshot_reports_its_progress(
    postgres_url: str, tmp_path: Path, every_line: None, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY)")
        conn.execute("INSERT INTO items SELECT generate_series(1, 500)")
        conn.execute("ANALYZE items")
    lines = _snapshot_lines(tmp_path, caplog, {
        "name": "cdc", "connector": "postgres", "database": postgres_url, "tables": ["items"],
        "snapshot_chunk_size": 100})
    assert any(line.startswith("source cdc: snapshot: ") and "/500 rows" in line
               for line in lines)
    assert lines[-1].startswith("source cdc: snapshot: done, 500 rows in ")


def test_a_mysql_snapshot_reports_its_progress(
    mysql_url: str, tmp_path: Path, every_line: None, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for(mysql_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE items (id INT PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO items VALUES (:id)"),
                         [{"id": i} for i in range(1, 301)])
            conn.execute(sa.text("ANALYZE TABLE items"))
    finally:
        engine.dispose()
    lines = _snapshot_lines(tmp_path, caplog, {
        "name": "binlog", "connector": "mysql", "database": mysql_url, "tables": ["items"],
        "snapshot_chunk_size": 100})
    assert lines[0].startswith("source binlog: snapshot: 100/")
    assert lines[-1].startswith("source binlog: snapshot: done, 300 rows in ")
