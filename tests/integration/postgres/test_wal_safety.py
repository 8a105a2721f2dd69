"""WAL safety: an idle slot follows the WAL while other databases write; check and status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.postgres import PostgresSource, PostgresSourceConfig
from connectors.postgres._pgoutput import parse_lsn
from tests.integration.postgres.conftest import Database, Run, wait_for
from tests.servers import (
    Server,
    create_postgres_database,
    drop_postgres_database,
    new_database_name,
)


@pytest.fixture
def other_database(postgres_server: Server) -> Iterator[Database]:
    name = new_database_name()
    url = create_postgres_database(postgres_server, name)
    try:
        yield Database(url)
    finally:
        drop_postgres_database(postgres_server, name)


def slot_lsns(db: Database) -> tuple[int, int]:
    restart, confirmed = db.rows(
        "SELECT restart_lsn::text, confirmed_flush_lsn::text FROM pg_replication_slots"
        " WHERE slot_name = 'liberate_cdc'")[0]
    return parse_lsn(restart), parse_lsn(confirmed)


def test_idle_slot_does_not_pin_wal_while_another_database_writes(
    db: Database, other_database: Database, run: Run, children: list[Any]
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    run.write(heartbeat_interval="1s")
    assert run.once().ok
    restart_before, _ = slot_lsns(db)
    process = run.spawn()
    children.append(process)
    other_database.execute("CREATE TABLE busy (id int, payload text)")
    for _ in range(20):
        other_database.execute("INSERT INTO busy SELECT g, repeat('p', 200) FROM "
                               "generate_series(1, 1000) g")
    written_up_to = parse_lsn(str(db.scalar("SELECT pg_current_wal_lsn()::text")))
    wait_for(lambda: slot_lsns(db)[1] >= written_up_to, timeout_s=30,
             what="confirmed_flush_lsn to pass the other database's writes")
    # restart_lsn follows once the server logs running transactions (at a checkpoint).
    db.execute("CHECKPOINT")
    wait_for(lambda: slot_lsns(db)[0] > restart_before, timeout_s=30,
             what="restart_lsn to move")
    lag = parse_lsn(str(db.scalar("SELECT pg_current_wal_lsn()::text"))) - slot_lsns(db)[1]
    assert lag < 1_000_000


def test_status_shows_slot_lag_in_bytes_and_wal_status(db: Database, run: Run) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items VALUES (1)")
    assert run.once().ok
    # The test cluster runs with synchronous_commit off, where pg_current_wal_lsn() (WAL
    # written) trails the inserts under load: this commit waits until its WAL is written.
    db.execute("SET synchronous_commit = on",
               "INSERT INTO items SELECT g FROM generate_series(2, 5000) g")
    source = PostgresSource(PostgresSourceConfig.model_validate(run.source))
    status = source.status(run.offsets())
    assert status.state == "stopped"
    assert status.lag["slot_wal_status"] == "reserved"
    assert isinstance(status.lag["slot_lag_bytes"], int) and status.lag["slot_lag_bytes"] > 100_000
    assert status.position["lsn_text"] == "{:X}/{:X}".format(
        status.position["lsn"] >> 32, status.position["lsn"] & 0xFFFFFFFF)
    assert run.once().ok
    after = source.status(run.offsets())
    assert after.lag["slot_lag_bytes"] < status.lag["slot_lag_bytes"]


def test_check_reports_each_prerequisite_with_its_fix(db: Database, run: Run) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)",
               "CREATE TABLE loose (a int)",
               "CREATE TABLE nothing (id int PRIMARY KEY)",
               "ALTER TABLE nothing REPLICA IDENTITY NOTHING")
    run.write(tables=["items", "loose", "nothing", "absent"])
    results = {r.name: r for r in PostgresSource(
        PostgresSourceConfig.model_validate(run.source)).check()}
    assert results["database"].ok
    assert results["wal_level"].ok and results["wal_level"].message == "wal_level = logical"
    assert results["replication privilege"].ok
    assert results["replication connection"].ok
    assert results["replication slots"].ok
    items = results["table public.items"]
    assert items.ok and "replica identity DEFAULT" in items.message
    assert items.hint is not None and "REPLICA IDENTITY FULL" in items.hint
    assert not results["table public.loose"].ok
    assert "key_columns" in (results["table public.loose"].hint or "")
    assert not results["table public.nothing"].ok
    assert not results["table public.absent"].ok
    assert results["publication liberate_cdc"].ok  # missing: will be created
    assert "created" in results["slot liberate_cdc"].message


def test_check_flags_a_role_without_replication(db: Database, run: Run) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    role = f"plain_{db.name}"
    db.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        url = db.url.replace("liberate@", f"{role}@")
        run.write(database=url)
        results = {r.name: r for r in PostgresSource(
            PostgresSourceConfig.model_validate(run.source)).check()}
        assert not results["replication privilege"].ok
        assert f'ALTER ROLE {role} REPLICATION' in (results["replication privilege"].hint or "")
        report = run.once()
        assert not report.ok and "may not use replication" in report.errors[0]
    finally:
        db.execute(f'DROP ROLE "{role}"')
