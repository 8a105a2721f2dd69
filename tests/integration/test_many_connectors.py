"""One `liberate run` with three sources (SQLite, PostgreSQL, MariaDB) and two sinks (SQLite,
PostgreSQL). MariaDB is stopped mid-run: the other sources keep flowing, the MariaDB source
retries and recovers when the server returns, SIGTERM stops the run cleanly, and `liberate
verify` proves every table arrived (and names the key of a row deleted from a sink)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import sqlalchemy as sa

from tests.integration._operations_support import (
    add_items,
    cli,
    count_rows,
    create_items,
    engine_for,
    start_run,
    terminate,
    wait_until,
)
from tests.servers import Server

ARRIVAL_TIMEOUT_S = 90
SIGTERM_DEADLINE_S = 30


def write_run_file(tmp_path: Path, postgres_url: str, mysql_url: str) -> Path:
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"""
streams:
  backend: embedded
  path: {tmp_path / 'streams.db'}
sources:
  - name: shop
    connector: query
    database: sqlite:///{tmp_path / 'shop.db'}
    tables: [orders]
    incrementing_column: id
    schedule: 300ms
  - name: pay
    connector: query
    database: {postgres_url}
    tables: [payments]
    incrementing_column: id
    schedule: 300ms
  - name: maria
    connector: query
    database: {mysql_url}
    tables: [events]
    incrementing_column: id
    schedule: 300ms
sinks:
  - name: warehouse
    connector: sql
    database: sqlite:///{tmp_path / 'warehouse.db'}
    topics: [shop.orders, pay.payments]
  - name: lake
    connector: sql
    database: {postgres_url}
    table: "lake_{{table}}"
    topics_regex: "(shop|maria)\\\\..*"
""")
    return run_file


def test_a_stopped_source_database_does_not_stop_the_others_and_verify_proves_the_recovery(
    tmp_path: Path, postgres_url: str, mysql_url: str, mysql_server: Server
) -> None:
    shop, warehouse = f"sqlite:///{tmp_path / 'shop.db'}", f"sqlite:///{tmp_path / 'warehouse.db'}"
    create_items(shop, "orders")
    create_items(postgres_url, "payments")
    create_items(mysql_url, "events")
    add_items(shop, "orders", range(1, 51))
    add_items(postgres_url, "payments", range(1, 51))
    add_items(mysql_url, "events", range(1, 51))
    run_file = write_run_file(tmp_path, postgres_url, mysql_url)

    # Before anything ran, verify fails and names the missing keys.
    before = cli("verify", str(run_file), "--json", cwd=tmp_path)
    assert before.returncode == 1, before.stderr
    report = json.loads(before.stdout)
    assert {(t["source"], t["sink"]) for t in report["tables"]} == {
        ("shop", "warehouse"), ("shop", "lake"), ("pay", "warehouse"), ("maria", "lake")
    }
    assert all(t["missing_count"] == 50 for t in report["tables"])

    run = start_run(run_file, cwd=tmp_path)
    try:
        def arrived(url: str, table: str, rows: int) -> None:
            wait_until(lambda: count_rows(url, table) >= rows, timeout_s=ARRIVAL_TIMEOUT_S,
                       what=f"{rows} rows in {table}", process=run)

        arrived(warehouse, "orders", 50)
        arrived(warehouse, "payments", 50)
        arrived(postgres_url, "lake_events", 50)

        mysql_server.shutdown()
        try:
            add_items(shop, "orders", range(51, 101))
            add_items(postgres_url, "payments", range(51, 101))
            # The other sources keep flowing into both sinks while MariaDB is down.
            arrived(warehouse, "orders", 100)
            arrived(postgres_url, "lake_orders", 100)
            arrived(warehouse, "payments", 100)
            assert run.poll() is None, "the run stopped with the MariaDB source"
        finally:
            mysql_server.start()
        add_items(mysql_url, "events", range(51, 71))
        arrived(postgres_url, "lake_events", 70)

        code, _, err = terminate(run, timeout_s=SIGTERM_DEADLINE_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert code == 0, err
    assert "source maria" in err and "retry" in err  # the failure was reported, and retried

    verified = cli("verify", str(run_file), cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count(": equal,") == 4

    engine = engine_for(warehouse)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM orders WHERE id = 42"))
    engine.dispose()
    after = cli("verify", str(run_file), cwd=tmp_path)
    assert after.returncode == 1
    assert "shop:orders -> warehouse:orders" in after.stdout
    assert "1 key(s) missing in the target: 42" in after.stdout
    assert "verify found differences in 1 table(s)" in after.stderr


def test_sigterm_while_a_source_database_is_down_still_exits_0_promptly(
    tmp_path: Path, postgres_url: str, mysql_url: str, mysql_server: Server
) -> None:
    create_items(f"sqlite:///{tmp_path / 'shop.db'}", "orders")
    create_items(postgres_url, "payments")
    create_items(mysql_url, "events")
    add_items(mysql_url, "events", range(1, 11))
    run_file = write_run_file(tmp_path, postgres_url, mysql_url)
    run = start_run(run_file, cwd=tmp_path)
    try:
        wait_until(lambda: count_rows(postgres_url, "lake_events") >= 10,
                   timeout_s=ARRIVAL_TIMEOUT_S, what="the first events", process=run)
        mysql_server.shutdown()
        try:
            time.sleep(2)  # the MariaDB source fails and waits out its backoff
            code, _, err = terminate(run, timeout_s=SIGTERM_DEADLINE_S)
        finally:
            mysql_server.start()
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert code == 0, err
    assert "source maria" in err
