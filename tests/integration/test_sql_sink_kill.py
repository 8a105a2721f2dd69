"""Exactly-once under kill -9: ``liberate run`` (query source on SQLite, SQL sinks into
PostgreSQL, embedded stream) is SIGKILLed while it sinks, several times, then finished with
``--once``. The upserted table equals the source row for row, and the append-only table (a
table of the user's, without a primary key: only the sink's offsets keep it exact) holds every
record exactly once."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROUNDS = 3
FIRST_ROWS = 30_000
MORE_ROWS = 10_000


def add_rows(db: Path, start: int, count: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
            [(i, f"item {i} ü", i % 977, f"{i % 10_000}.{i % 100:02d}",
              f"2024-03-01 10:{i % 60:02d}:00.{i % 1_000_000:06d}")
             for i in range(start, start + count)],
        )


def checksum(values: tuple[Any, ...]) -> str:
    return hashlib.sha256(repr(values).encode()).hexdigest()


def normalized(i: Any, label: Any, qty: Any, price: Any, updated: Any) -> tuple[Any, ...]:
    if isinstance(updated, dt.datetime):
        updated = updated.isoformat(sep=" ")
    return (int(i), str(label), int(qty), Decimal(str(price)).quantize(Decimal("0.01")),
            str(updated))


def source_rows(db: Path) -> dict[int, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, label, qty, price, updated FROM items")
        return {int(r[0]): checksum(normalized(*r)) for r in rows}


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if exists is None or exists[0] is None:
            return 0
        found = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
        return int(found[0]) if found else 0


def test_sinks_killed_mid_batch_and_restarted_write_every_record_exactly_once(
    tmp_path: Path, postgres_url: str
) -> None:
    shop = tmp_path / "shop.db"
    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT NOT NULL, qty "
                     "INTEGER NOT NULL, price NUMERIC(10, 2) NOT NULL, updated DATETIME NOT "
                     "NULL)")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute('CREATE TABLE items_log (id BIGINT NOT NULL, label TEXT NOT NULL, qty '
                     'BIGINT NOT NULL, price NUMERIC(10, 2) NOT NULL, updated TIMESTAMP NOT '
                     'NULL, "__topic" TEXT NOT NULL, "__partition" INTEGER NOT NULL, '
                     '"__offset" BIGINT NOT NULL)')
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"""\
streams:
  path: {tmp_path}/streams.db
sources:
  - name: shop
    connector: query
    database: sqlite:///{shop}
    tables: [items]
    mode: incrementing
    incrementing_column: id
    schedule: 1s
sinks:
  - name: mirror
    connector: sql
    database: {postgres_url}
    topics: [shop.items]
    batch_size: 700
  - name: log
    connector: sql
    database: {postgres_url}
    topics: [shop.items]
    table: "{{table}}_log"
    pk_mode: none
    batch_size: 300
""")
    command = [sys.executable, "-m", "liberate", "run", str(run_file)]
    total = 0
    killed_mid_sink = []
    for round_no in range(ROUNDS):
        added = FIRST_ROWS if round_no == 0 else MORE_ROWS
        add_rows(shop, total + 1, added)
        total += added
        before = count(postgres_url, "items")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=dict(os.environ))
        deadline = time.monotonic() + 120
        try:
            # Kill once the sink has written part of what this round added.
            goal = before + added // 3
            while time.monotonic() < deadline and process.poll() is None:
                if count(postgres_url, "items") >= goal:
                    break
                time.sleep(0.01)
            still_running = process.poll() is None
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert still_running, "the run ended by itself instead of being killed"
        mirrored, logged = count(postgres_url, "items"), count(postgres_url, "items_log")
        killed_mid_sink.append(0 < mirrored < total or 0 < logged < total)
    assert any(killed_mid_sink), "no kill landed while the sinks were writing"

    final = subprocess.run([*command, "--once"], capture_output=True, text=True, timeout=300,
                           check=False, env=dict(os.environ))
    assert final.returncode == 0, final.stderr

    expected = source_rows(shop)
    assert len(expected) == total
    with psycopg.connect(postgres_url) as conn:
        mirror = {
            int(r[0]): checksum(normalized(*r))
            for r in conn.execute("SELECT id, label, qty, price, updated FROM items")
        }
        log_rows = conn.execute(
            'SELECT id, label, qty, price, updated, "__topic", "__partition", "__offset" '
            "FROM items_log"
        ).fetchall()
    assert mirror == expected
    assert len(log_rows) == total  # incrementing mode emits each row once: no duplicates
    assert len({(r[5], r[6], r[7]) for r in log_rows}) == total
    assert {int(r[0]): checksum(normalized(*r[:5])) for r in log_rows} == expected
