"""``liberate status FILE``: per source position, lag and state; per sink lag per topic; topic
sizes. Real databases, a real run before it."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import yaml

from liberate.commands.inspect import status
from liberate.config.loader import load_run_file
from liberate.runtime import Pipeline, open_backend


def _run_once(path: Path) -> None:
    config = load_run_file(str(path))
    backend = open_backend(config.streams)
    try:
        assert Pipeline(config, backend, once=True).run().ok
    finally:
        backend.close()


def _status(path: Path) -> tuple[dict[str, Any], str]:
    as_json, as_table = io.StringIO(), io.StringIO()
    assert status(str(path), as_json=True, out=as_json) == 0
    assert status(str(path), out=as_table) == 0
    return json.loads(as_json.getvalue()), as_table.getvalue()


def _measure(report: dict[str, Any], source: str, measure: str) -> list[float]:
    entry = next(s for s in report["sources"] if s["name"] == source)
    return [m["value"] for m in entry["lag_measures"] if m["measure"] == measure]


def test_status_reports_wal_bytes_rows_and_row_age_behind_and_sink_lag_per_topic(
    tmp_path: Path, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items SELECT g, 'n' FROM generate_series(1, 5) g")
    shop = tmp_path / "shop.db"
    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, updated_at TIMESTAMP NOT NULL)")
        conn.executemany("INSERT INTO orders VALUES (?, '2024-01-01 00:00:00')",
                         [(i,) for i in range(1, 11)])
    run: dict[str, Any] = {
        "streams": {"path": str(tmp_path / "streams.db")},
        "sources": [
            {"name": "cdc", "connector": "postgres", "database": postgres_url,
             "tables": ["items"]},
            {"name": "ids", "connector": "query", "database": f"sqlite:///{shop}",
             "tables": ["orders"], "mode": "incrementing", "incrementing_column": "id"},
            {"name": "stamps", "connector": "query", "database": f"sqlite:///{shop}",
             "tables": ["orders"], "mode": "timestamp", "timestamp_column": "updated_at",
             "timestamp_delay": "0s"},
        ],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run), encoding="utf-8")
    _run_once(path)
    # Changes the sources have not read yet, and a sink that has written nothing.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        # The test cluster runs with synchronous_commit off, where pg_current_wal_lsn() (WAL
        # written) trails the inserts under load: this commit waits until its WAL is written.
        conn.execute("SET synchronous_commit = on")
        conn.execute("INSERT INTO items SELECT g, repeat('x', 500) FROM generate_series(6, 500) g")
    with sqlite3.connect(shop) as conn:
        conn.executemany("INSERT INTO orders VALUES (?, '2024-01-01 00:00:00')",
                         [(i,) for i in range(11, 14)])
    run["sinks"] = [{"name": "warehouse", "connector": "sql",
                     "database": f"sqlite:///{tmp_path / 'wh.db'}",
                     "topics": ["ids.orders", "cdc.public.items"]}]
    path.write_text(yaml.safe_dump(run), encoding="utf-8")

    report, table = _status(path)

    wal_behind = _measure(report, "cdc", "stored_behind_bytes")
    assert wal_behind and wal_behind[0] > 500 * 400  # 495 rows of 500 bytes, at least
    assert _measure(report, "ids", "rows_behind") == [3.0]
    # The newest row read is from 2024: its age is the time since then.
    assert _measure(report, "stamps", "behind_s")[0] > 365 * 86400
    cdc = next(s for s in report["sources"] if s["name"] == "cdc")
    assert cdc["state"] == "stopped" and "lsn" in cdc["position"]
    [sink] = report["sinks"]
    assert sink["lag"] == {"cdc.public.items": 5, "ids.orders": 10}
    assert sink["lag_total"] == 15
    sizes = {t["name"]: t for t in report["topics"]}
    assert sizes["ids.orders"]["records"] == 10 and sizes["ids.orders"]["bytes"] > 0

    lines = table.splitlines()
    assert any(line.split()[:3] == ["SOURCE", "CONNECTOR", "STATE"] for line in lines)
    assert any(line.startswith("cdc ") and "WAL " in line and " behind" in line for line in lines)
    assert any("orders" in line and "3 rows behind" in line for line in lines)
    assert any(line.split()[-2:] == ["ids.orders", "10"] for line in lines)
    assert any(line.startswith("ids.orders") and line.split()[2] == "10" for line in lines)


def test_status_reports_a_source_whose_database_is_down_and_still_reports_the_others(
    tmp_path: Path,
) -> None:
    shop = tmp_path / "shop.db"
    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "streams": {"path": str(tmp_path / "streams.db")},
        "sources": [
            {"name": "down", "connector": "postgres",
             "database": "postgresql://nobody:hidden-pw@127.0.0.1:1/none", "tables": ["t"]},
            {"name": "ids", "connector": "query", "database": f"sqlite:///{shop}",
             "tables": ["orders"], "mode": "incrementing", "incrementing_column": "id"},
        ],
    }), encoding="utf-8")
    report, table = _status(path)
    down = next(s for s in report["sources"] if s["name"] == "down")
    assert down["state"] == "unknown" and "error" in down["lag"]
    assert _measure(report, "ids", "rows_behind") == [0.0]
    assert "hidden-pw" not in table and "hidden-pw" not in json.dumps(report)


def test_status_reports_binlog_bytes_behind_and_whether_gtids_caught_up(
    tmp_path: Path, mysql_url: str
) -> None:
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(mysql_url)

    def execute(*statements: str, rows: list[tuple[int]] | None = None) -> None:
        conn = pymysql.connect(host=url.host, port=url.port, user=url.username,
                               password=url.password or "", database=url.database,
                               autocommit=True)
        try:
            with conn.cursor() as cursor:
                for statement in statements:
                    if rows is None:
                        cursor.execute(statement)
                    else:
                        cursor.executemany(statement, rows)
        finally:
            conn.close()

    execute("CREATE TABLE items (id INT PRIMARY KEY, note VARCHAR(200))",
            "INSERT INTO items VALUES (1, 'a')")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "streams": {"path": str(tmp_path / "streams.db")},
        "sources": [{"name": "binlog", "connector": "mysql", "database": mysql_url,
                     "tables": ["items"]}],
    }), encoding="utf-8")
    _run_once(path)
    caught_up, _ = _status(path)
    execute("INSERT INTO items VALUES (%s, REPEAT('x', 150))", rows=[(i,) for i in range(2, 40)])
    behind, table = _status(path)
    assert _measure(behind, "binlog", "bytes_behind")[0] > 38 * 150
    assert _measure(behind, "binlog", "bytes_behind")[0] > \
        _measure(caught_up, "binlog", "bytes_behind")[0]
    [source] = behind["sources"]
    if "gtids_caught_up" in source["lag"]:
        assert source["lag"]["gtids_caught_up"] is False
    assert any(line.startswith("binlog ") and "binlog " in line[20:] and " behind" in line
               for line in table.splitlines())
