"""Text with a NUL byte: SQLite (like MySQL) stores it, PostgreSQL refuses it in ``text``. The
stream carries the value as it is; the PostgreSQL sink stops naming the record
(``errors.tolerance: none``) or dead-letters it and writes every other row (``all``). Never a
silently dropped or truncated row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from tests.bad_input._support import liberate, topic_records, write_run_file

pytestmark = pytest.mark.integration

BAD_ID = 3
BAD_LABEL = "nul\x00inside"


def shop_with_a_nul(tmp_path: Path) -> Path:
    shop = tmp_path / "shop.db"
    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT NOT NULL)")
        conn.executemany("INSERT INTO items VALUES (?, ?)",
                         [(i, BAD_LABEL if i == BAD_ID else f"item {i}") for i in range(1, 6)])
    return shop


def run_file(tmp_path: Path, shop: Path, target: str, tolerance: str) -> Path:
    source = {"name": "shop", "connector": "query", "database": f"sqlite:///{shop}",
              "tables": ["items"], "mode": "incrementing", "incrementing_column": "id"}
    sink = {"name": "mirror", "connector": "sql", "database": target, "topics": ["shop.items"],
            "errors": {"tolerance": tolerance}}
    return write_run_file(tmp_path, [source], [sink])


def target_rows(url: str) -> dict[int, str]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('items')").fetchone() == (None,):
            return {}
        return {int(r[0]): str(r[1]) for r in conn.execute("SELECT id, label FROM items")}


def test_nul_in_text_stops_the_postgres_sink_naming_the_record(
    tmp_path: Path, postgres_url: str
) -> None:
    path = run_file(tmp_path, shop_with_a_nul(tmp_path), postgres_url, "none")
    result = liberate("run", str(path), "--once")
    assert result.returncode == 1, result.stderr
    assert "sink mirror" in result.stderr
    assert f"key {{'id': {BAD_ID}}}" in result.stderr and "NUL" in result.stderr
    stream = [r.value for r in topic_records(path, "shop.items")]
    assert {"id": BAD_ID, "label": BAD_LABEL} in stream, "the stream keeps the value as it is"
    assert BAD_ID not in target_rows(postgres_url)


def test_nul_in_text_is_dead_lettered_with_tolerance_all(
    tmp_path: Path, postgres_url: str
) -> None:
    path = run_file(tmp_path, shop_with_a_nul(tmp_path), postgres_url, "all")
    result = liberate("run", str(path), "--once")
    assert result.returncode == 0, result.stderr
    assert target_rows(postgres_url) == {i: f"item {i}" for i in range(1, 6) if i != BAD_ID}
    letters = topic_records(path, "mirror.dlq")
    assert [dict(r.value or {}) for r in letters] == [{"id": BAD_ID, "label": BAD_LABEL}]
    reasons = [value.decode() for r in letters for name, value in r.headers
               if value is not None and "exception" in name and "message" in name]
    assert any("NUL" in reason for reason in reasons), letters[0].headers
