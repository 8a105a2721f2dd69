"""`liberate verify` across dialects: a table liberated from one database into another is
reconciled by count and range checksums, and a difference is located down to its keys, with
compound keys whose text part sorts differently on each database."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from tests.integration._operations_support import TIMESTAMP, cli, engine_for

REGIONS = ("alpha", "Beta", "gamma")  # C collation puts Beta first, MariaDB's after alpha
IDS = range(1, 501)  # 1500 rows: more than a leaf, so ranges are cut and compared


def readings_table() -> sa.Table:
    return sa.Table(
        "readings",
        sa.MetaData(),
        sa.Column("region", sa.String(20), primary_key=True),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Numeric(12, 3), nullable=False),
        sa.Column("taken", TIMESTAMP, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
    )


def fill(url: str) -> None:
    engine = engine_for(url)
    with engine.begin() as conn:
        table = readings_table()
        table.create(conn)
        conn.execute(table.insert(), [
            {"region": r, "id": i, "value": Decimal(i) / 8,
             "taken": dt.datetime(2025, 1, 1) + dt.timedelta(seconds=i * 7),
             "note": None if i % 5 else f"note {i} ✓"}
            for r in REGIONS for i in IDS
        ])
    engine.dispose()


def liberate(tmp_path: Path, source: str, target: str) -> Path:
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"""
streams:
  path: {tmp_path / 'streams.db'}
sources:
  - name: meter
    connector: query
    database: {source}
    tables: [readings]
sinks:
  - name: copy
    connector: sql
    database: {target}
    topics: [meter.readings]
    table: "copy_{{table}}"
""")
    result = cli("run", str(run_file), "--once", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return run_file


def damage(target: str) -> None:
    """Delete one row, change one, add one: in three different places of the key space."""
    engine = engine_for(target)
    with engine.begin() as conn:
        table = sa.Table("copy_readings", sa.MetaData(), autoload_with=conn)
        conn.execute(table.delete().where(table.c.region == "gamma", table.c.id == 250))
        conn.execute(table.update().where(table.c.region == "alpha", table.c.id == 17)
                     .values(note="changed"))
        conn.execute(table.insert().values(region="Beta", id=9999, value=1, taken=dt.datetime(
            2025, 1, 1), note=None))
    engine.dispose()


def check(tmp_path: Path, run_file: Path) -> None:
    equal = cli("verify", str(run_file), "--json", cwd=tmp_path)
    assert equal.returncode == 0, equal.stdout + equal.stderr
    [table] = json.loads(equal.stdout)["tables"]
    assert (table["source_rows"], table["target_rows"]) == (1500, 1500)
    assert table["key"] == ["region", "id"]
    assert table["columns"] == ["region", "id", "value", "taken", "note"]


def check_damage_is_located(tmp_path: Path, run_file: Path) -> None:
    result = cli("verify", str(run_file), "--json", cwd=tmp_path)
    assert result.returncode == 1
    [table] = json.loads(result.stdout)["tables"]
    assert table["missing"] == [{"region": "gamma", "id": 250}]
    assert table["extra"] == [{"region": "Beta", "id": 9999}]
    assert table["different"] == [{"region": "alpha", "id": 17}]
    text = cli("verify", str(run_file), cwd=tmp_path)
    assert '1 key(s) missing in the target: (region="gamma", id=250)' in text.stdout


def test_verify_reconciles_a_table_from_each_database_into_sqlite(
    tmp_path: Path, any_db_url: str
) -> None:
    fill(any_db_url)
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    run_file = liberate(tmp_path, any_db_url, target)
    check(tmp_path, run_file)
    damage(target)
    check_damage_is_located(tmp_path, run_file)


def test_verify_reconciles_a_sqlite_table_into_each_database(
    tmp_path: Path, any_db_url: str
) -> None:
    source = f"sqlite:///{tmp_path / 'meter.db'}"
    fill(source)
    run_file = liberate(tmp_path, source, any_db_url)
    check(tmp_path, run_file)
    damage(any_db_url)
    check_damage_is_located(tmp_path, run_file)


def test_verify_compares_only_the_columns_the_sink_keeps(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'meter.db'}"
    fill(source)
    run_file = liberate(tmp_path, source, f"sqlite:///{tmp_path / 'copy.db'}")
    text = run_file.read_text().replace(
        "    table: \"copy_{table}\"", "    table: \"copy_{table}\"\n    fields_exclude: [note]")
    run_file.write_text(text)
    engine = engine_for(f"sqlite:///{tmp_path / 'copy.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE copy_readings DROP COLUMN note"))
    engine.dispose()
    result = cli("verify", str(run_file), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["tables"][0]["columns"] == ["region", "id", "value", "taken"]


def test_verify_of_a_file_with_nothing_to_compare_says_so(tmp_path: Path) -> None:
    run_file = tmp_path / "run.yaml"
    source = f"sqlite:///{tmp_path / 'meter.db'}"
    fill(source)
    query = "SELECT region, id, value FROM readings"
    run_file.write_text(f"""
sources:
  - name: meter
    connector: query
    database: {source}
    query: "{query}"
    key_columns: [region, id]
sinks:
  - name: copy
    connector: sql
    database: sqlite:///{tmp_path / 'copy.db'}
    topics: [meter]
""")
    result = cli("verify", str(run_file), cwd=tmp_path)
    assert result.returncode == 0
    assert "skipped: source meter" in result.stdout
    assert "nothing to verify" in result.stdout
