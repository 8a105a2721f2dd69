"""Tables liberate cannot key, and columns it cannot type, are refused by name at ``liberate
check`` and at ``liberate run`` (before a row is read), with the fix in the message; never
guessed. A table without a primary key is accepted where ``key_columns`` names a key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from tests.bad_input._support import liberate, topic_records, write_run_file
from tests.faults._harness import mysql_connect

pytestmark = pytest.mark.integration


def keyless_shop(tmp_path: Path) -> Path:
    shop = tmp_path / "shop.db"
    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE events (id INTEGER NOT NULL, seen DATETIME NOT NULL, "
                     "label TEXT)")
        conn.executemany("INSERT INTO events VALUES (?, '2024-01-01 00:00:00', ?)",
                         [(i, f"event {i}") for i in range(1, 4)])
    return shop


MODES = {
    "bulk": {},
    "incrementing": {"incrementing_column": "id"},
    "timestamp": {"timestamp_column": "seen"},
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_query_source_refuses_a_table_without_a_key_naming_key_columns(
    tmp_path: Path, mode: str
) -> None:
    source = {"name": "shop", "connector": "query", "database": f"sqlite:///{keyless_shop(tmp_path)}",
              "tables": ["events"], "mode": mode, **MODES[mode]}
    path = write_run_file(tmp_path, [source])
    for verb in ("check", "run"):
        result = liberate(verb, str(path), *(["--once"] if verb == "run" else []))
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "events" in output and "key_columns" in output, output
    assert topic_records(path, "shop.events") == []

    source["key_columns"] = ["id"]
    path = write_run_file(tmp_path, [source])
    result = liberate("run", str(path), "--once")
    assert result.returncode == 0, result.stderr
    assert sorted(r.value["id"] for r in topic_records(path, "shop.events")
                  if r.value is not None) == [1, 2, 3]


def test_postgres_cdc_refuses_a_table_without_key_or_replica_identity(
    tmp_path: Path, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id BIGINT NOT NULL, label TEXT)")
        conn.execute("INSERT INTO events VALUES (1, 'one')")
    source = {"name": "cdc", "connector": "postgres", "database": postgres_url,
              "tables": ["public.events"]}
    path = write_run_file(tmp_path, [source])
    for verb in ("check", "run"):
        result = liberate(verb, str(path), *(["--once"] if verb == "run" else []))
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "events" in output, output
        assert "REPLICA IDENTITY" in output or "key_columns" in output, output
    assert topic_records(path, "cdc.public.events") == []


def test_a_column_of_an_unsupported_type_is_named_at_check_and_run(
    tmp_path: Path, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id BIGINT PRIMARY KEY, body tsvector)")
        conn.execute("INSERT INTO docs VALUES (1, 'a fat cat')")
    for connector, extra in (("query", {"mode": "bulk"}), ("postgres", {})):
        tables = ["docs"] if connector == "query" else ["public.docs"]
        source = {"name": "shop", "connector": connector, "database": postgres_url,
                  "tables": tables, **extra}
        path = write_run_file(tmp_path, [source])
        for verb in ("check", "run"):
            result = liberate(verb, str(path), *(["--once"] if verb == "run" else []))
            output = result.stdout + result.stderr
            assert result.returncode == 1, output
            assert "docs.body" in output and "tsvector" in output.lower(), output
            assert "Traceback" not in output


def test_mysql_cdc_refuses_a_table_without_a_key_and_a_column_it_cannot_type(
    tmp_path: Path, mysql_url: str
) -> None:
    conn = mysql_connect(mysql_url)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE events (id BIGINT NOT NULL, label TEXT)")
            cur.execute("CREATE TABLE places (id BIGINT PRIMARY KEY, spot POINT)")
    finally:
        conn.close()
    for table, expected in (("events", ("events has no primary key", "key_columns")),
                            ("places", ("places.spot has type point", "exclude the column"))):
        source = {"name": "cdc", "connector": "mysql", "database": mysql_url, "tables": [table]}
        path = write_run_file(tmp_path, [source])
        for verb in ("check", "run"):
            result = liberate(verb, str(path), *(["--once"] if verb == "run" else []))
            output = result.stdout + result.stderr
            assert result.returncode == 1, output
            assert all(word.lower() in output.lower() for word in expected), output
            assert "Traceback" not in output
