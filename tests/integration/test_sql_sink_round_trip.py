"""Round trip: source database -> query source -> embedded stream -> SQL sink -> target
database equals the source, in row count and per-row checksum, for every type of the type
contract (docs/types.md), for each of PostgreSQL, MariaDB and SQLite as source and as target.

Values are compared by what their Avro type means (the schema the stream carries): a decimal by
its value at its scale, an instant by its UTC time, JSON by its parsed value, a float by its
32-bit value. Each database spells them its own way (MySQL booleans are 1/0, SQLite keeps
decimals as text), and none of that is a difference.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from liberate.config.loader import load_run_file
from liberate.runtime import Pipeline, open_backend
from liberate.schema.reading import reading_table
from liberate.schema.types import (
    JSON_NAME,
    MICRO_TIME_NAME,
    VARIABLE_DECIMAL_NAME,
    unwrap_nullable,
)
from tests.integration._sql_sink_support import engine_for, execute
from tests.servers import (
    Server,
    create_mysql_database,
    create_postgres_database,
    drop_mysql_database,
    drop_postgres_database,
    new_database_name,
)

UTC = dt.UTC
KINDS = ("sqlite", "postgresql", "mysql")

# Every type of the contract, per source database, and rows that reach its edges.
SOURCE_DDL = {
    "postgresql": [
        "CREATE TYPE mood AS ENUM ('new', 'paid')",
        "CREATE TABLE everything (id INTEGER PRIMARY KEY, small SMALLINT, i INTEGER, "
        "big BIGINT, amount NUMERIC(12, 2), tiny NUMERIC(5, 5), exact NUMERIC, r REAL, "
        "d DOUBLE PRECISION, flag BOOLEAN, label TEXT, code VARCHAR(20), fixed CHAR(5), "
        "mood mood, bin BYTEA, day DATE, at TIME, happened TIMESTAMPTZ, local TIMESTAMP, "
        "doc JSON, docb JSONB, uid UUID)",
    ],
    "mysql": [
        "CREATE TABLE everything (id INT PRIMARY KEY, tiny TINYINT, small SMALLINT, "
        "medium MEDIUMINT, i INT, iu INT UNSIGNED, big BIGINT, bigu BIGINT UNSIGNED, "
        "amount DECIMAL(12, 2), r FLOAT, d DOUBLE, flag BOOLEAN, label TEXT, "
        "code VARCHAR(20), mood ENUM('new', 'paid'), tags SET('a', 'b'), bin BLOB, "
        "vb VARBINARY(10), day DATE, at TIME(6), happened TIMESTAMP(6) NULL, "
        "local DATETIME(6), doc JSON) CHARACTER SET utf8mb4",
    ],
    "sqlite": [
        "CREATE TABLE everything (id INTEGER PRIMARY KEY, i INTEGER, r REAL, label TEXT, "
        "bin BLOB, amount NUMERIC(10, 2), flag BOOLEAN, day DATE, local DATETIME, "
        "ts TIMESTAMP, doc JSON)",
    ],
}

TEXT = 'Zoë 日本 🎉 "quoted" \\ back\'slash'
DOC = json.loads('{"a": [1, 2.5, "ü"], "b": null, "c": {"d": true}}')
UID = "6f1c8a3e-2b7d-4c3e-9a51-0f2e3d4c5b6a"
ROWS: dict[str, list[dict[str, Any]]] = {
    "postgresql": [
        {"id": 1, "small": -32768, "i": -2_147_483_648, "big": 9_223_372_036_854_775_807,
         "amount": Decimal("-1234567890.12"), "tiny": Decimal("-0.00001"),
         "exact": Decimal("123456789012345678901234567890.123456789"), "r": -0.1, "d": 0.1,
         "flag": True, "label": TEXT, "code": "x" * 20, "fixed": "ab", "mood": "paid",
         "bin": b"\x00\xff\x10binary", "day": dt.date(2024, 2, 29),
         "at": dt.time(23, 59, 59, 999_999),
         "happened": dt.datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
         "local": dt.datetime(1999, 12, 31, 23, 59, 59, 123_456), "doc": DOC, "docb": DOC,
         "uid": UID},
        {"id": 2, "small": 32767, "i": 2_147_483_647, "big": -9_223_372_036_854_775_808,
         "amount": Decimal("0.00"), "tiny": Decimal("0.99999"), "exact": Decimal("-0.5"),
         "r": 3.4e38, "d": -1e308, "flag": False, "label": "", "code": "", "fixed": "abcde",
         "mood": "new", "bin": b"", "day": dt.date(9999, 12, 31), "at": dt.time(0, 0),
         "happened": dt.datetime(1970, 1, 1, tzinfo=UTC),
         "local": dt.datetime(2038, 1, 19, 3, 14, 8), "doc": [], "docb": {"z": 1, "a": 2},
         "uid": str(uuid.UUID(int=0))},
        {"id": 3},
    ],
    "mysql": [
        {"id": 1, "tiny": -128, "small": -32768, "medium": -8_388_608, "i": -2_147_483_648,
         "iu": 4_294_967_295, "big": -9_223_372_036_854_775_808,
         "bigu": 18_446_744_073_709_551_615, "amount": Decimal("-1234567890.12"), "r": -0.1,
         "d": 0.1, "flag": True, "label": TEXT, "code": "y" * 20, "mood": "paid",
         "tags": "a,b", "bin": b"\x00\xff\x10binary", "vb": b"\x01\x02", "day":
         dt.date(1000, 1, 1), "at": dt.time(23, 59, 59, 999_999),
         "happened": dt.datetime(2038, 1, 19, 3, 14, 7, 999_999),
         "local": dt.datetime(1999, 12, 31, 23, 59, 59, 123_456), "doc": DOC},
        {"id": 2, "tiny": 127, "small": 32767, "medium": 8_388_607, "i": 2_147_483_647,
         "iu": 0, "big": 9_223_372_036_854_775_807, "bigu": 0, "amount": Decimal("0.00"),
         "r": 1.5, "d": -1e308, "flag": False, "label": "", "code": "", "mood": "new",
         "tags": "", "bin": b"", "vb": b"", "day": dt.date(9999, 12, 31),
         "at": dt.time(0, 0), "happened": dt.datetime(1970, 1, 2),
         "local": dt.datetime(1000, 1, 1), "doc": []},
        {"id": 3},
    ],
    "sqlite": [
        {"id": 1, "i": 9_223_372_036_854_775_807, "r": 0.1, "label": TEXT,
         "bin": b"\x00\xff", "amount": Decimal("-12345678.90"), "flag": True,
         "day": dt.date(2024, 2, 29), "local": dt.datetime(1999, 12, 31, 23, 59, 59, 123_456),
         "ts": dt.datetime(2024, 3, 1, 10, 0, 0, 1), "doc": DOC},
        {"id": 2, "i": -9_223_372_036_854_775_808, "r": -1e308, "label": "", "bin": b"",
         "amount": Decimal("0.00"), "flag": False, "day": dt.date(1970, 1, 1),
         "local": dt.datetime(2038, 1, 19, 3, 14, 8), "ts": dt.datetime(1970, 1, 1),
         "doc": {}},
        {"id": 3},
    ],
}


@pytest.fixture
def databases(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[str], str]]:
    """Make fresh databases of a kind (two of one kind are distinct); dropped afterwards."""
    made: list[tuple[Server, str, str]] = []

    def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / new_database_name()}.db"
        name = new_database_name()
        if kind == "postgresql":
            server: Server = request.getfixturevalue("postgres_server")
            url = create_postgres_database(server, name)
        else:
            server = request.getfixturevalue("mysql_server")
            url = create_mysql_database(server, name)
        made.append((server, kind, name))
        return url

    yield make
    for server, kind, name in made:
        (drop_postgres_database if kind == "postgresql" else drop_mysql_database)(server, name)


def fill_source(url: str, kind: str) -> None:
    execute(url, *SOURCE_DDL[kind])
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            table = sa.Table("everything", sa.MetaData(), autoload_with=conn)
            for values in ROWS[kind]:
                # MariaDB's JSON is LONGTEXT: it takes the JSON text.
                bound = {
                    name: json.dumps(v) if isinstance(v, dict | list)
                    and not isinstance(table.c[name].type, sa.JSON) else v
                    for name, v in values.items()
                }
                conn.execute(sa.insert(table).values(**bound))
    finally:
        engine.dispose()


def run_once(tmp_path: Path, source: str, target: str) -> dict[str, Any]:
    """Run source -> stream -> sink once; the value schema's fields by name."""
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"""\
streams:
  path: {tmp_path}/streams.db
sources:
  - name: rt
    connector: query
    database: "{source}"
    tables: [everything]
    mode: bulk
sinks:
  - name: copy
    connector: sql
    database: "{target}"
    topics: [rt.everything]
""")
    config = load_run_file(run_file)
    backend = open_backend(config.streams)
    try:
        report = Pipeline(config, backend, once=True).run()
        assert report.ok, report.errors
        schema = backend.registry().versions("rt.everything-value")[-1].schema
    finally:
        backend.close()
    return {str(f["name"]): f["type"] for f in schema.fields}


def canonical(field_type: Any, value: Any) -> Any:
    """``value`` as its Avro type means it (see the module doc)."""
    if value is None:
        return None
    base, _ = unwrap_nullable(field_type)
    props = base if isinstance(base, dict) else {}
    primitive = props.get("type", base)
    logical = props.get("logicalType")
    if logical == "decimal":
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-int(props.get("scale", 0))))
    if props.get("connect.name") == VARIABLE_DECIMAL_NAME:
        return Decimal(str(value)).normalize()
    if props.get("connect.name") == MICRO_TIME_NAME:
        return micros(value)
    if props.get("connect.name") == JSON_NAME:
        parsed = json.loads(value) if isinstance(value, str | bytes) else value
        return json.dumps(parsed, sort_keys=True)
    if logical == "uuid":
        return str(uuid.UUID(str(value)))
    if logical == "date":
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    if logical in ("time-micros", "time-millis"):
        if isinstance(value, dt.timedelta):
            value = (dt.datetime.min + value).time()
        return value if isinstance(value, dt.time) else dt.time.fromisoformat(str(value))
    if logical in ("timestamp-micros", "timestamp-millis"):
        stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        return stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    if logical in ("local-timestamp-micros", "local-timestamp-millis"):
        return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if primitive == "float":
        return struct.unpack("f", struct.pack("f", float(value)))[0]
    if primitive == "double":
        return float(value)
    if primitive == "boolean":
        return bool(value)
    if primitive in ("int", "long"):
        return int(value)
    if primitive == "bytes":
        return bytes(value)
    return str(value)


def micros(value: Any) -> int:
    """A MySQL TIME (a duration) in microseconds, from each database's spelling of it."""
    if isinstance(value, dt.timedelta):
        return value // dt.timedelta(microseconds=1)
    if isinstance(value, dt.time):
        return (value.hour * 3600 + value.minute * 60 + value.second) * 10**6 + value.microsecond
    text = str(value)
    sign = -1 if text.startswith("-") else 1
    hours, minutes, seconds = text.lstrip("-").split(":")
    whole = (int(hours) * 60 + int(minutes)) * 60
    return sign * (whole * 10**6 + round(float(seconds) * 10**6))


def canonical_rows(url: str, table: str, fields: dict[str, Any]) -> dict[int, list[Any]]:
    """The rows of ``table`` by id, as ``(column, canonical value)`` lists over ``fields``."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            # Read as the sources read (MySQL SET as its text, TIME as a duration...).
            reflected = reading_table(
                sa.Table(table, sa.MetaData(), autoload_with=conn), conn.dialect.name
            )
            rows = [dict(r._mapping) for r in conn.execute(sa.select(reflected))]
    finally:
        engine.dispose()
    assert set(rows[0]) == set(fields), "the target has other columns than the stream"
    return {
        int(r["id"]): [(name, canonical(fields[name], r[name])) for name in sorted(fields)]
        for r in rows
    }


def checksum(row: list[Any]) -> str:
    return hashlib.sha256(repr(row).encode()).hexdigest()


@pytest.mark.parametrize("target_kind", KINDS)
@pytest.mark.parametrize("source_kind", KINDS)
def test_every_contract_type_round_trips_between_databases(
    tmp_path: Path, databases: Callable[[str], str], source_kind: str, target_kind: str
) -> None:
    source, target = databases(source_kind), databases(target_kind)
    fill_source(source, source_kind)
    fields = run_once(tmp_path, source, target)
    expected = canonical_rows(source, "everything", fields)
    written = canonical_rows(target, "everything", fields)
    assert len(expected) == len(ROWS[source_kind]) == len(written)
    differences = {
        key: [(a, b) for a, b in zip(row, written.get(key, []), strict=False) if a != b]
        for key, row in expected.items()
        if checksum(row) != checksum(written.get(key, []))
    }
    assert differences == {}
