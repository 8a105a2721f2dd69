"""The SQL sink under ``liberate run`` as a user runs it: dead letters through the runtime,
``liberate dlq list`` / ``replay``, ``liberate sink plan``, and stopping at a bad record."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from liberate.records import StreamRecord
from liberate.streams.embedded import EmbeddedBackend

REPO = Path(__file__).resolve().parents[2]


def liberate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liberate", *args], cwd=cwd, env=dict(os.environ),
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A SQLite source of 10 orders, and a target whose status holds 5 characters."""
    with sqlite3.connect(tmp_path / "shop.db") as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        db.executemany("INSERT INTO orders VALUES (?, ?)",
                       [(i, "much too long" if i == 4 else "new") for i in range(1, 11)])
    with sqlite3.connect(tmp_path / "wh.db") as db:
        db.execute("CREATE TABLE orders (id BIGINT PRIMARY KEY, status TEXT NOT NULL "
                   "CHECK (length(status) <= 5))")
    return tmp_path


def run_file(directory: Path, tolerance: str) -> Path:
    path = directory / "run.yaml"
    path.write_text(f"""\
streams:
  path: {directory}/streams.db
sources:
  - name: shop
    connector: query
    database: sqlite:///{directory}/shop.db
    tables: [orders]
    mode: bulk
sinks:
  - name: wh
    connector: sql
    database: sqlite:///{directory}/wh.db
    topics: [shop.orders]
    errors:
      tolerance: {tolerance}
      deadletterqueue.topic.name: wh.errors
""")
    return path


def target_rows(directory: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(directory / "wh.db") as db:
        return [(int(i), str(s)) for i, s in db.execute("SELECT id, status FROM orders "
                                                          "ORDER BY id")]


def test_dead_letters_are_listed_then_replayed_after_the_fix(shop: Path) -> None:
    file = str(run_file(shop, "all"))
    first = liberate(shop, "run", file, "--once")
    assert first.returncode == 0, first.stderr
    assert [i for i, _ in target_rows(shop)] == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    with sqlite3.connect(shop / "shop.db") as db:
        db.execute("UPDATE orders SET status = 'sent' WHERE id IN (4, 5)")
    assert liberate(shop, "run", file, "--once").returncode == 0  # a bulk cycle: all again

    tail = liberate(shop, "tail", file, "wh.errors", "--from-beginning", "--no-follow")
    letters = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [(x["key"], x["value"]["status"], x["headers"]["__connect.errors.offset"])
            for x in letters] == [({"id": 4}, "much too long", "3"), ({"id": 4}, "sent", "13")]
    assert letters[1]["headers"]["__liberate.errors.parked.behind"] == "shop.orders[0]@3"

    listed = liberate(shop, "dlq", "list", file)
    assert listed.returncode == 0, listed.stderr
    assert "sink wh: 2 record(s) set aside" in listed.stdout
    assert "shop.orders[0]@13  table orders  key [4]  parked behind shop.orders[0]@3" \
        in listed.stdout
    as_json = [json.loads(line) for line in liberate(shop, "dlq", "list", file, "--json")
               .stdout.splitlines()]
    assert [(x["sink"], x["origin"], x["behind"]) for x in as_json] == [
        ("wh", "shop.orders[0]@3", None), ("wh", "shop.orders[0]@13", "shop.orders[0]@3")]

    refused = liberate(shop, "dlq", "replay", file)
    assert refused.returncode == 1 and "shop.orders[0]@3" in refused.stderr
    unknown = liberate(shop, "dlq", "discard", file, "shop.orders[0]@99")
    assert unknown.returncode == 1 and "shop.orders[0]@99" in unknown.stderr
    with sqlite3.connect(shop / "wh.db") as db:  # the fix: a wider status
        db.executescript(
            "CREATE TABLE o2 (id BIGINT PRIMARY KEY, status TEXT NOT NULL);"
            "INSERT INTO o2 SELECT * FROM orders; DROP TABLE orders;"
            "ALTER TABLE o2 RENAME TO orders;"
        )
    replayed = liberate(shop, "dlq", "replay", file)
    assert replayed.returncode == 0, replayed.stderr
    assert "sink wh: replayed 2 record(s)" in replayed.stdout
    with sqlite3.connect(shop / "shop.db") as db:
        source = [(int(i), str(s)) for i, s in db.execute("SELECT id, status FROM orders "
                                                          "ORDER BY id")]
    assert target_rows(shop) == source
    assert "0 record(s) set aside" in liberate(shop, "dlq", "list", file).stdout


def test_a_discarded_dead_letter_is_never_applied_and_its_key_moves_on(shop: Path) -> None:
    file = str(run_file(shop, "all"))
    assert liberate(shop, "run", file, "--once").returncode == 0
    with sqlite3.connect(shop / "shop.db") as db:
        db.execute("UPDATE orders SET status = 'fixed' WHERE id = 4")
    assert liberate(shop, "run", file, "--once").returncode == 0  # parked behind @3
    discarded = liberate(shop, "dlq", "discard", file, "shop.orders[0]@3")
    assert discarded.returncode == 0, discarded.stderr
    assert "sink wh: discarded shop.orders[0]@3" in discarded.stdout
    replayed = liberate(shop, "dlq", "replay", file)
    assert "replayed 1 record(s)" in replayed.stdout, replayed.stderr
    assert (4, "fixed") in target_rows(shop)


def test_a_record_the_runtime_cannot_decode_is_dead_lettered(shop: Path) -> None:
    file = str(run_file(shop, "all"))
    with sqlite3.connect(shop / "shop.db") as db:
        db.execute("UPDATE orders SET status = 'ok' WHERE id = 4")
    assert liberate(shop, "run", file, "--once").returncode == 0
    backend = EmbeddedBackend(shop / "streams.db")
    backend.open()
    try:
        consumer = backend.consumer("probe", topics=("shop.orders",))
        first = consumer.poll(1, 1.0)[0]
        consumer.close()
        assert first.value is not None
        backend.append([StreamRecord("shop.orders", first.key, first.value[:6])], [])
    finally:
        backend.close()
    again = liberate(shop, "run", file, "--once")
    assert again.returncode == 0, again.stderr
    listed = liberate(shop, "dlq", "list", file, "--json")
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    # The bulk cycle of the second run wrote key 1 again after it: parked behind it.
    assert [(x["origin"], x["key"], x["behind"]) for x in letters] == [
        ("shop.orders[0]@10", "[1]", None), ("shop.orders[0]@11", "[1]", "shop.orders[0]@10")]
    assert "cannot decode the value" in letters[0]["error"]


def test_tolerance_none_stops_the_run_naming_the_record(shop: Path) -> None:
    file = str(run_file(shop, "none"))
    result = liberate(shop, "run", file, "--once")
    assert result.returncode == 1
    assert "shop.orders[0]@3" in result.stderr and "{'id': 4}" in result.stderr
    assert target_rows(shop) == []


def test_sink_plan_prints_the_ddl_for_the_registered_schemas(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "shop.db") as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        db.execute("INSERT INTO orders VALUES (1, 'new')")
    file = run_file(tmp_path, "none")
    idle = (f"sinks:\n  - name: idle\n    connector: sql\n    database: sqlite:///{tmp_path}"
            "/other.db\n    topics_regex: \"shop\\\\..*\"\n")
    file.write_text(file.read_text().replace("sinks:\n", idle, 1))
    # Produce the schemas only: a run file without the sinks would do the same.
    produced = liberate(tmp_path, "run", str(file), "--once")
    assert produced.returncode == 0, produced.stderr
    (tmp_path / "other.db").unlink()
    plan = liberate(tmp_path, "sink", "plan", str(file), "--sink", "idle")
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    assert lines[0] == "-- sink idle (sql)"
    assert "-- shop.orders -> orders (sqlite)" in lines
    assert any(line.startswith("CREATE TABLE IF NOT EXISTS orders") for line in lines)
    assert not (tmp_path / "other.db").exists() or sqlite3.connect(
        tmp_path / "other.db").execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    unknown = liberate(tmp_path, "sink", "plan", str(file), "--sink", "nope")
    assert unknown.returncode == 2 and "idle" in unknown.stderr
