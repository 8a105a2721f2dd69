"""`liberate verify` after change data capture: a PostgreSQL table captured from the WAL
(Debezium envelopes, deletes included) into SQLite reconciles, JSONB and timestamptz too."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.integration._operations_support import cli
from tests.integration.postgres.conftest import Database


def test_a_captured_table_and_its_sqlite_copy_reconcile_after_updates_and_deletes(
    tmp_path: Path, db: Database
) -> None:
    db.execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10, 2),"
        " doc jsonb, seen timestamptz)",
        "INSERT INTO items SELECT i, 'item ' || i, i * 1.25, jsonb_build_object('n', i, 'a',"
        " 'x'), timestamptz '2025-03-01 10:00:00+02' + i * interval '1 minute'"
        " FROM generate_series(1, 300) i",
    )
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({
        "streams": {"path": str(tmp_path / "streams.db")},
        "sources": [{"name": "cdc", "connector": "postgres", "database": db.url,
                     "tables": ["items"]}],
        "sinks": [{"name": "copy", "connector": "sql", "topics": ["cdc.public.items"],
                   "database": f"sqlite:///{tmp_path / 'copy.db'}"}],
    }))
    first = cli("run", str(run_file), "--once", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert cli("verify", str(run_file), cwd=tmp_path).returncode == 0

    db.execute("UPDATE items SET doc = doc || '{\"b\": true}' WHERE id = 10",
               "DELETE FROM items WHERE id = 20",
               "INSERT INTO items VALUES (301, 'new', 1.5, '[1, 2]', now())")
    stale = cli("verify", str(run_file), "--json", cwd=tmp_path)
    assert stale.returncode == 1
    [table] = json.loads(stale.stdout)["tables"]
    assert (table["missing"], table["extra"], table["different"]) == (
        [{"id": 301}], [{"id": 20}], [{"id": 10}])

    second = cli("run", str(run_file), "--once", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    caught_up = cli("verify", str(run_file), cwd=tmp_path)
    assert caught_up.returncode == 0, caught_up.stdout
    assert "cdc:items -> copy:items (cdc.public.items): equal" in caught_up.stdout
