"""The CLI verbs as a user runs them: output shapes and exit codes (DESIGN §6)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, write


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A small SQLite shop database."""
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, amount NUMERIC(10, 2) NOT NULL, "
            "note TEXT, paid BOOLEAN NOT NULL, created DATE NOT NULL, "
            "updated_at DATETIME NOT NULL, payload BLOB)"
        )
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (i, f"{i}.25", "naïve café" if i % 2 else None, i % 2, "2024-02-29",
                 "2024-03-01 10:00:00.123456", bytes([i, 0, 255]))
                for i in range(1, 21)
            ],
        )
    return path


def run_file(tmp_path: Path, shop: Path, *, sink: bool = True, extra: str = "") -> Path:
    text = f"""\
streams:
  path: {tmp_path}/streams.db
sources:
  - name: shop
    connector: query
    database: sqlite:///{shop}
    tables: [orders]
    mode: incrementing
    incrementing_column: id
{extra}"""
    if sink:
        text += f"""\
sinks:
  - name: warehouse
    connector: sql
    database: sqlite:///{tmp_path}/warehouse.db
    topics: [shop.orders]
"""
    return write(tmp_path / "run.yaml", text)


def test_run_once_then_topics_tail_and_status(cli: Cli, tmp_path: Path, shop: Path) -> None:
    file = run_file(tmp_path, shop)
    result = cli("run", str(file), "--once")
    assert result.returncode == 0, result.stderr
    assert "source shop: produced 20 record(s)" in result.stdout
    assert "sink warehouse: wrote 20 record(s)" in result.stdout

    topics = cli("topics", str(file))
    assert topics.returncode == 0
    assert "shop.orders" in topics.stdout and " 20 " in topics.stdout

    tail = cli("tail", str(file), "shop.orders", "--from-beginning", "--limit", "2")
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [line["offset"] for line in lines] == [0, 1]
    first = lines[0]
    assert set(first) == {"topic", "partition", "offset", "key", "value", "headers", "timestamp"}
    assert first["key"] == {"id": 1}
    assert first["value"]["amount"] == "1.25"
    assert first["value"]["note"] == "naïve café"
    assert first["value"]["payload"] == "AQD/"
    assert first["value"]["created"] == "2024-02-29"
    assert first["value"]["updated_at"].startswith("2024-03-01T10:00:00.123456")
    assert first["timestamp"].endswith("+00:00")

    status = cli("status", str(file), "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    [sink] = report["sinks"]
    assert (sink["name"], sink["lag"], sink["lag_total"]) == ("warehouse", {"shop.orders": 0}, 0)
    assert [(t["name"], t["records"]) for t in report["topics"]] == [("shop.orders", 20)]
    assert report["sources"][0]["position"]

    with sqlite3.connect(tmp_path / "warehouse.db") as db:
        assert db.execute("SELECT count(*), sum(amount) FROM orders").fetchone() == (20, 215.0)


def test_second_run_picks_up_only_new_rows(cli: Cli, tmp_path: Path, shop: Path) -> None:
    file = run_file(tmp_path, shop)
    assert cli("run", str(file), "--once").returncode == 0
    with sqlite3.connect(shop) as db:
        db.execute(
            "INSERT INTO orders VALUES (21, 1, NULL, 1, '2024-01-01', '2024-03-02 00:00:00', NULL)"
        )
    again = cli("run", str(file), "--once")
    assert again.returncode == 0, again.stderr
    assert "source shop: produced 1 record(s)" in again.stdout
    assert "sink warehouse: wrote 1 record(s)" in again.stdout


def test_tail_without_follow_stops_at_the_end(cli: Cli, tmp_path: Path, shop: Path) -> None:
    file = run_file(tmp_path, shop, sink=False)
    assert cli("run", str(file), "--once").returncode == 0
    tail = cli("tail", str(file), "shop.orders", "--from-beginning", "--no-follow")
    assert tail.returncode == 0
    assert len(tail.stdout.splitlines()) == 20


def test_tail_of_an_unknown_topic_exits_2(cli: Cli, tmp_path: Path, shop: Path) -> None:
    file = run_file(tmp_path, shop, sink=False)
    result = cli("tail", str(file), "shop.nope", "--no-follow")
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_bad_run_file_exits_2_with_every_problem(cli: Cli, tmp_path: Path) -> None:
    file = write(
        tmp_path / "bad.yaml",
        """\
sources:
  - name: shop
    connector: query
    database: postgresql://app:hunter2@localhost/shop
    tables: [orders]
    mode: sometimes
    colour: blue
""",
    )
    for verb in ("run", "check", "status"):
        result = cli(verb, str(file))
        assert result.returncode == 2, verb
        assert "sources[0].mode (line 6)" in result.stderr
        assert "sources[0].colour (line 7)" in result.stderr
        assert "hunter2" not in result.stderr + result.stdout


def test_missing_environment_variable_exits_2(cli: Cli, tmp_path: Path, shop: Path) -> None:
    file = write(tmp_path / "env.yaml", run_file(tmp_path, shop).read_text().replace(
        str(shop), "${SHOP_DB_PATH}"))
    result = cli("check", str(file), env={"SHOP_DB_PATH": ""})
    assert result.returncode in (1, 2)
    missing = cli("check", str(file))
    assert missing.returncode == 2
    assert "SHOP_DB_PATH is not set" in missing.stderr


def test_check_reports_a_missing_table_with_its_fix(cli: Cli, tmp_path: Path, shop: Path) -> None:
    file = write(tmp_path / "run.yaml", run_file(tmp_path, shop).read_text().replace(
        "tables: [orders]", "tables: [orders, refunds]"))
    result = cli("check", str(file))
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "refunds" in result.stdout
    assert "fix:" in result.stdout


def test_run_against_a_missing_table_exits_1_and_writes_nothing(
    cli: Cli, tmp_path: Path, shop: Path
) -> None:
    file = write(tmp_path / "run.yaml", run_file(tmp_path, shop).read_text().replace(
        "tables: [orders]", "tables: [refunds]"))
    result = cli("run", str(file), "--once")
    assert result.returncode == 1
    assert "refunds" in result.stderr
    topics = cli("topics", str(file))
    assert "no topics yet" in topics.stdout


def test_unreachable_database_is_a_clear_runtime_error(cli: Cli, tmp_path: Path) -> None:
    file = write(
        tmp_path / "run.yaml",
        f"""\
streams:
  path: {tmp_path}/streams.db
sources:
  - name: shop
    connector: query
    database: postgresql://app:hunter2@127.0.0.1:1/shop
    tables: [orders]
    mode: bulk
""",
    )
    result = cli("run", str(file), "--once", timeout=180)
    assert result.returncode == 1
    assert "127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_sigterm_finishes_the_batch_and_exits_0(tmp_path: Path, shop: Path) -> None:
    file = run_file(tmp_path, shop, extra="    schedule: 1s\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "liberate", "run", str(file)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (tmp_path / "warehouse.db").exists():
                with sqlite3.connect(tmp_path / "warehouse.db") as db:
                    tables = db.execute(
                        "SELECT name FROM sqlite_master WHERE name = 'orders'"
                    ).fetchall()
                    if tables and db.execute("SELECT count(*) FROM orders").fetchone()[0] == 20:
                        break
            time.sleep(0.2)
        else:
            pytest.fail("the run did not deliver the rows in time")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "source shop: produced 20 record(s)" in out
