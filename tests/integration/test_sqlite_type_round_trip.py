"""The SQLite type contract (docs/types.md), row by row: SQLite query source -> SQLite sink,
and -> PostgreSQL sink (the cross-database case).

Each case is one declared column type (as SQLAlchemy reflects it) with values at its edges and
a NULL, inserted through SQLAlchemy as an application would. The sink's row must equal the
source row by what the Avro type means: SQLite spells a decimal as a float or text, a date as
ISO text, a boolean as 0/1, and none of that is a difference. The field must have the
documented Avro type.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from liberate.schema.types import JSON_NAME, VARIABLE_DECIMAL_NAME, decimal_type, unwrap_nullable
from tests.integration._sql_sink_support import engine_for
from tests.integration._type_round_trip_support import Case, run_once
from tests.servers import (
    Server,
    create_postgres_database,
    drop_postgres_database,
    new_database_name,
)

TEXT = 'Zoë 日本 🎉 "q" \\ \''
INF = float("inf")


CASES = [
    Case("integer", "INTEGER", (-(2**63), 0, 2**63 - 1), "long"),
    Case("bigint", "BIGINT", (-(2**63), 2**63 - 1), "long"),
    Case("real", "REAL", (0.1, -1e308, 5e-324, 1 / 3, INF, -INF), "double"),
    Case("double", "DOUBLE", (2.5, -0.0), "double"),
    Case("float", "FLOAT", (1.5,), "double"),
    Case("text", "TEXT", ("", TEXT), "string"),
    Case("varchar", "VARCHAR(5)", ("longer than declared",), "string"),
    Case("blob", "BLOB", (b"", b"\x00\xff\x10binary"), "bytes"),
    Case("numeric", "NUMERIC", (42, -0.5, 0.1, 12345678901234567890, "7", "1e3"),
         {"type": "string", "connect.name": VARIABLE_DECIMAL_NAME}),
    Case("numeric_scale", "NUMERIC(10, 2)", (123.45, -12345678.9, 0, 5, "0.01"),
         decimal_type(10, 2)),
    Case("decimal", "DECIMAL(10, 3)", (1.5, -0.001, 9999999.999), decimal_type(10, 3)),
    Case("boolean", "BOOLEAN", (True, False), "boolean"),
    Case("date", "DATE", (dt.date(1000, 1, 1), dt.date(2024, 2, 29), dt.date(9999, 12, 31)),
         {"type": "int", "logicalType": "date"}),
    Case("datetime", "DATETIME",
         (dt.datetime(1969, 12, 31, 23, 59, 59, 999_999), dt.datetime(2038, 1, 19, 3, 14, 8),
          dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999_999)),
         {"type": "long", "logicalType": "local-timestamp-micros"}),
    Case("timestamp", "TIMESTAMP", (dt.datetime(2024, 3, 31, 2, 30, 0, 1),),
         {"type": "long", "logicalType": "local-timestamp-micros"}),
    Case("time", "TIME", (dt.time(0, 0), dt.time(23, 59, 59, 999_999)),
         {"type": "long", "logicalType": "time-micros"}),
    Case("json", "JSON", ({"a": [1, 2.5, "ü"], "b": None}, "hello", [], 1),
         {"type": "string", "connect.name": JSON_NAME}),
]


def canonical(avro: Any, value: Any) -> Any:
    """``value`` as its Avro type means it, from either database's spelling of it."""
    if value is None:
        return None
    base, _ = unwrap_nullable(avro)
    props = base if isinstance(base, dict) else {}
    logical, marker = props.get("logicalType"), props.get("connect.name")
    if logical == "decimal":
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-int(props["scale"])))
    if marker == VARIABLE_DECIMAL_NAME:
        return Decimal(str(value)).normalize()
    if marker == JSON_NAME:
        parsed = json.loads(value) if isinstance(value, str | bytes) else value
        return json.dumps(parsed, sort_keys=True)
    if logical == "date":
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
    if logical == "local-timestamp-micros":
        return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if logical == "time-micros":
        return value if isinstance(value, dt.time) else dt.time.fromisoformat(value)
    if base == "boolean":
        return bool(value)
    if base == "bytes":
        return bytes(value)
    return value


def run(run_dir: Path, source: Path, sink: str) -> dict[str, Any]:
    """Run the SQLite source -> stream -> sink once; the Avro type of ``v`` by table."""
    tables = [case.table for case in CASES]
    outcome = run_once(run_dir / "run.yaml", name="lite", source=f"sqlite:///{source}",
                       sink=sink, connector="query", tables=tables, options={"mode": "bulk"})
    assert outcome.errors == []
    return {table: outcome.column_type(table, "v") for table in tables}


@dataclass
class RoundTrip:
    source: Path
    sinks: dict[str, str]  # target kind -> URL
    fields: dict[str, dict[str, Any]]  # target kind -> table -> Avro type


@pytest.fixture(scope="module")
def round_trip(postgres_server: Server, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[RoundTrip]:
    tmp_path = tmp_path_factory.mktemp("sqlite_types")
    source = tmp_path / "source.db"
    engine = sa.create_engine(f"sqlite:///{source}")
    try:
        with engine.begin() as conn:
            for case in CASES:
                conn.exec_driver_sql(f"CREATE TABLE {case.table} (id INTEGER PRIMARY KEY, "
                                     f"v {case.ddl})")
                table = sa.Table(case.table, sa.MetaData(), autoload_with=conn)
                rows = [{"id": i + 1, "v": value} for i, value in enumerate(case.values)]
                # A NULL, and for JSON the SQL NULL rather than the JSON null.
                rows.append({"id": len(rows) + 1, "v": sa.null()})
                for row in rows:
                    conn.execute(sa.insert(table).values(**row))
    finally:
        engine.dispose()
    pg_name = new_database_name()
    sinks = {
        "sqlite": f"sqlite:///{tmp_path / 'sink.db'}",
        "postgresql": create_postgres_database(postgres_server, pg_name),
    }
    try:
        fields = {}
        for kind, url in sinks.items():
            run_dir = tmp_path / kind
            run_dir.mkdir()
            fields[kind] = run(run_dir, source, url)
        yield RoundTrip(source, sinks, fields)
    finally:
        drop_postgres_database(postgres_server, pg_name)


def source_rows(path: Path, table: str) -> dict[int, Any]:
    conn = sqlite3.connect(path)
    try:
        # The test's own constant table names.
        return dict(conn.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall())  # noqa: S608
    finally:
        conn.close()


def sink_rows(url: str, table: str) -> dict[int, Any]:
    if url.startswith("sqlite"):
        return source_rows(Path(url.removeprefix("sqlite:///")), table)
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
            value: Any = reflected.c.v
            if isinstance(value.type, sa.JSON):
                value = sa.cast(value, sa.Text)  # its text: a JSON string stays quoted
            return {int(r[0]): r[1] for r in conn.execute(sa.select(reflected.c.id, value))}
    finally:
        engine.dispose()


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_sqlite_type_round_trips_exactly(round_trip: RoundTrip, case: Case, target: str) -> None:
    assert round_trip.fields[target][case.table] == ["null", case.avro]
    source = source_rows(round_trip.source, case.table)
    written = sink_rows(round_trip.sinks[target], case.table)
    assert len(source) == len(case.values) + 1 and source[len(source)] is None
    meant = {key: canonical(case.avro, value) for key, value in source.items()}
    assert {key: canonical(case.avro, value) for key, value in written.items()} == meant
