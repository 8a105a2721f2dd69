"""DDL while streaming: a compatible change makes a new schema version, a breaking one stops."""

from __future__ import annotations

from liberate.config.loader import load_run_file
from liberate.runtime import open_backend
from tests.integration.postgres.conftest import Database, Run, values

TOPIC = "cdc.public.items"


def versions(run: Run, subject: str) -> int:
    backend = open_backend(load_run_file(str(run.path)).streams)
    try:
        return len(backend.registry().versions(subject))
    finally:
        backend.close()


def test_added_nullable_column_streams_under_a_new_schema_version(
    db: Database, run: Run
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
               "INSERT INTO items VALUES (1, 'one')")
    assert run.once().ok
    db.execute("INSERT INTO items VALUES (2, 'two')",
               "ALTER TABLE items ADD COLUMN color text",
               "INSERT INTO items VALUES (3, 'three', 'red')",
               "UPDATE items SET color = 'blue' WHERE id = 1")
    assert run.once().ok
    events = values(run.records(TOPIC))
    assert [e["after"] for e in events] == [
        {"id": 1, "name": "one"},
        {"id": 2, "name": "two"},
        {"id": 3, "name": "three", "color": "red"},
        {"id": 1, "name": "one", "color": "blue"},
    ]
    assert versions(run, f"{TOPIC}-value") == 2


def test_breaking_column_change_stops_naming_the_column_and_the_rule(
    db: Database, run: Run
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, qty int)",
               "INSERT INTO items VALUES (1, 5)")
    assert run.once().ok
    db.execute("ALTER TABLE items ALTER COLUMN qty TYPE text",
               "INSERT INTO items VALUES (2, 'many')")
    report = run.once()
    assert not report.ok
    error = report.errors[0]
    assert "qty" in error and "BACKWARD" in error
    # Nothing of the breaking change was written, and a restart stops again the same way.
    assert len(run.records(TOPIC)) == 1
    again = run.once()
    assert not again.ok and "qty" in again.errors[0]
