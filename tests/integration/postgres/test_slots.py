"""Slot and publication lifecycle, snapshot modes, and what stops a run before it streams."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.postgres.conftest import Database, Run, kill, values, wait_for

TOPIC = "cdc.public.items"


@pytest.fixture
def items(db: Database) -> Database:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)",
               "INSERT INTO items VALUES (1, 'one'), (2, 'two')")
    return db


def slots(db: Database) -> list[tuple[Any, ...]]:
    return db.rows("SELECT slot_name, plugin, temporary FROM pg_replication_slots"
                   " WHERE database = current_database()")


def test_slot_and_publication_are_created_with_names_derived_from_the_source(
    items: Database, run: Run
) -> None:
    assert run.once().ok
    assert slots(items) == [("liberate_cdc", "pgoutput", False)]
    assert items.rows("SELECT pubname, schemaname, tablename FROM pg_publication_tables") == [
        ("liberate_cdc", "public", "items")]
    # A second run reuses both and streams.
    items.execute("INSERT INTO items VALUES (3, 'three')")
    assert run.once().ok
    assert [e["op"] for e in values(run.records(TOPIC))] == ["r", "r", "c"]
    assert len(slots(items)) == 1


def test_configured_names_are_used_and_quoted(items: Database, run: Run) -> None:
    items.execute('CREATE TABLE "Odd Name" (id int PRIMARY KEY)')
    run.write(slot="my_slot", publication="my_pub", tables=["items", 'public.Odd Name'])
    assert run.once().ok
    assert [s[0] for s in slots(items)] == ["my_slot"]
    assert sorted(r[0] for r in items.rows(
        "SELECT tablename FROM pg_publication_tables WHERE pubname = 'my_pub'")) == [
        "Odd Name", "items"]


def test_existing_publication_without_a_table_stops_before_streaming(
    items: Database, run: Run
) -> None:
    items.execute("CREATE TABLE other (id int PRIMARY KEY)",
                  "CREATE PUBLICATION liberate_cdc FOR TABLE other")
    report = run.once()
    assert not report.ok
    assert "publication liberate_cdc does not publish public.items" in report.errors[0]
    assert "ALTER PUBLICATION liberate_cdc ADD TABLE public.items" in report.errors[0]
    assert slots(items) == []


def test_missing_table_is_reported_before_anything_is_created(items: Database, run: Run) -> None:
    run.write(tables=["items", "nope"])
    report = run.once()
    assert not report.ok and "public.nope not found" in report.errors[0]
    assert slots(items) == []
    assert items.rows("SELECT pubname FROM pg_publication") == []


def test_table_without_primary_key_needs_key_columns(items: Database, run: Run) -> None:
    items.execute("CREATE TABLE loose (a int, b text)")
    run.write(tables=["loose"])
    report = run.once()
    assert not report.ok and "public.loose has no primary key" in report.errors[0]
    assert "key_columns" in report.errors[0]
    items.execute("ALTER TABLE loose REPLICA IDENTITY FULL", "INSERT INTO loose VALUES (1, 'x')")
    run.write(key_columns=["a"])
    assert run.once().ok
    items.execute("DELETE FROM loose WHERE a = 1")
    assert run.once().ok
    records = run.records("cdc.public.loose")
    assert [r.key for r in records] == [{"a": 1}, {"a": 1}, {"a": 1}]
    assert records[1].value is not None and records[1].value["before"] == {"a": 1, "b": "x"}


def test_slot_dropped_under_the_connector_stops_it_with_the_choices(
    items: Database, run: Run, children: list[Any]
) -> None:
    assert run.once().ok
    items.execute("INSERT INTO items VALUES (3, 'three')")
    process = run.spawn()
    children.append(process)
    wait_for(lambda: run.count(TOPIC) == 3, what="the insert")
    items.execute(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
        " WHERE slot_name = 'liberate_cdc'")
    wait_for(lambda: items.scalar(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'liberate_cdc'"
        " AND NOT active") == 1, what="the slot to be released")
    items.execute("SELECT pg_drop_replication_slot('liberate_cdc')")
    process.wait(60)
    assert process.returncode == 1
    log = max(run.path.parent.glob("run-*.log"), key=lambda p: p.stat().st_mtime).read_text()
    assert "replication slot liberate_cdc does not exist" in log
    assert "snapshot_mode: when_needed" in log and "stored offsets" in log
    # Never silently re-created.
    assert slots(items) == []


def test_when_needed_reads_the_tables_again_into_a_new_slot(items: Database, run: Run) -> None:
    assert run.once().ok
    items.execute("SELECT pg_drop_replication_slot('liberate_cdc')",
                  "INSERT INTO items VALUES (3, 'three')")
    report = run.once()
    assert not report.ok and "does not exist" in report.errors[0]
    run.write(snapshot_mode="when_needed")
    assert run.once().ok
    ops = [(e["op"], e["after"]["id"]) for e in values(run.records(TOPIC))]
    assert ops == [("r", 1), ("r", 2), ("r", 1), ("r", 2), ("r", 3)]
    assert len(slots(items)) == 1


def test_lost_slot_stops_the_run(items: Database, run: Run) -> None:
    assert run.once().ok
    # Invalidate the slot the way max_slot_wal_keep_size does: let it fall too far behind.
    items.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'", "SELECT pg_reload_conf()")
    try:
        items.execute("CREATE TABLE filler (x text)")
        for _ in range(6):
            items.execute("INSERT INTO filler SELECT repeat('x', 1000) FROM "
                          "generate_series(1, 3000)", "SELECT pg_switch_wal()", "CHECKPOINT")
            if items.scalar("SELECT wal_status FROM pg_replication_slots"
                            " WHERE slot_name = 'liberate_cdc'") == "lost":
                break
        assert items.scalar("SELECT wal_status FROM pg_replication_slots"
                            " WHERE slot_name = 'liberate_cdc'") == "lost"
    finally:
        items.execute("ALTER SYSTEM RESET max_slot_wal_keep_size", "SELECT pg_reload_conf()")
    report = run.once()
    assert not report.ok
    assert "replication slot liberate_cdc is lost" in report.errors[0]
    assert "when_needed" in report.errors[0]


def test_never_mode_streams_without_reading_the_tables(items: Database, run: Run) -> None:
    run.write(snapshot_mode="never")
    assert run.once().ok
    assert run.records(TOPIC) == []
    items.execute("INSERT INTO items VALUES (3, 'three')")
    assert run.once().ok
    assert [e["op"] for e in values(run.records(TOPIC))] == ["c"]


def test_initial_only_reads_the_tables_once_and_needs_no_slot(items: Database, run: Run) -> None:
    run.write(snapshot_mode="initial_only")
    assert run.once().ok
    assert slots(items) == []
    items.execute("INSERT INTO items VALUES (3, 'three')")
    assert run.once().ok
    assert [e["op"] for e in values(run.records(TOPIC))] == ["r", "r"]


def test_empty_tables_then_changes_stream_every_change(db: Database, run: Run) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
    assert run.once().ok
    db.execute("INSERT INTO items VALUES (1, 'one')", "UPDATE items SET name = 'uno'")
    assert run.once().ok
    assert [e["op"] for e in values(run.records(TOPIC))] == ["c", "u"]


def test_stop_from_another_thread_returns_a_waiting_poll_promptly(
    items: Database, run: Run
) -> None:
    import threading

    from connectors.postgres import PostgresSource, PostgresSourceConfig

    run.write(snapshot_mode="never")
    config = PostgresSourceConfig.model_validate(run.source)
    source = PostgresSource(config)
    source.open({})
    try:
        while source.poll() or not source.caught_up():
            pass
        threading.Timer(0.2, source.stop).start()
        started = time.monotonic()
        assert source.poll() == []
        assert time.monotonic() - started < 0.4
    finally:
        source.close()


def test_a_second_run_on_an_active_slot_waits_for_it(
    items: Database, run: Run, children: list[Any]
) -> None:
    assert run.once().ok
    process = run.spawn()
    children.append(process)
    wait_for(lambda: items.scalar("SELECT active FROM pg_replication_slots"
                                  " WHERE slot_name = 'liberate_cdc'") is True, what="active")
    report = run.once()
    assert not report.ok and "in use by process" in report.errors[0]
    kill(process)
