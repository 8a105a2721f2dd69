"""The MySQL/MariaDB type contract (docs/types.md), row by row, against a real MariaDB.

Each case is one column type with values at its edges and a NULL. The values go
source row -> event -> decoded value -> sink row through both MySQL sources into a MariaDB
sink: the query source (SELECT), and the mysql connector, whose first run snapshots rows 1..n
and whose second run streams the same values inserted afterwards as rows 101.. from the
binlog. The row the sink wrote must equal the source row as PyMySQL reads both (a FLOAT read
as the DOUBLE of its exact value), and the field must have the documented Avro type.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import make_url

from connectors.mysql import MySqlSource
from connectors.query import QuerySource, QuerySourceConfig
from liberate.schema.types import LENGTH_ATTRIBUTE, MICRO_TIME_NAME, decimal_type
from tests.integration._type_round_trip_support import Case, Outcome, run_once
from tests.integration.mysql.conftest import MySqlDb, source_config
from tests.servers import (
    Server,
    create_mysql_database,
    drop_mysql_database,
    new_database_name,
)

TEXT = 'Zoë 日本 🎉 "q" \\ \''
UID = uuid.UUID("6f1c8a3e-2b7d-4c3e-9a51-0f2e3d4c5b6a")
STREAMED = 100  # streamed rows are the snapshot rows' ids plus this


def td(**parts: int) -> dt.timedelta:
    return dt.timedelta(**parts)


def string(length: int) -> dict[str, Any]:
    return {"type": "string", LENGTH_ATTRIBUTE: length}


MICRO_TIME = {"type": "long", "connect.name": MICRO_TIME_NAME}
CASES = [
    Case("tinyint", "TINYINT", (-128, 0, 127), "int"),
    Case("tinyint_unsigned", "TINYINT UNSIGNED", (0, 255), "int"),
    Case("smallint", "SMALLINT", (-32768, 32767), "int"),
    Case("smallint_unsigned", "SMALLINT UNSIGNED", (0, 65535), "int"),
    Case("mediumint", "MEDIUMINT", (-8_388_608, 8_388_607), "int"),
    Case("mediumint_unsigned", "MEDIUMINT UNSIGNED", (0, 16_777_215), "int"),
    Case("int", "INT", (-2_147_483_648, 2_147_483_647), "int"),
    Case("int_unsigned", "INT UNSIGNED", (0, 4_294_967_295), "long"),
    Case("bigint", "BIGINT", (-(2**63), 2**63 - 1), "long"),
    Case("bigint_unsigned", "BIGINT UNSIGNED", (0, 2**63, 2**64 - 1), decimal_type(20, 0)),
    Case("boolean", "BOOLEAN", (True, False, 2, -128), "int"),
    Case("decimal", "DECIMAL(12, 2)",
         (Decimal("-1234567890.12"), Decimal("0.00"), Decimal("9999999999.99"),
          Decimal("-0.01")), decimal_type(12, 2)),
    Case("decimal_all_scale", "DECIMAL(5, 5)", (Decimal("-0.00001"), Decimal("0.99999")),
         decimal_type(5, 5)),
    Case("decimal_max", "DECIMAL(65, 30)",
         (Decimal("-" + "9" * 35 + "." + "9" * 30), Decimal("1E-30"),
          Decimal("12345678901234567890123456789012345.123456789012345678901234567890")),
         decimal_type(65, 30)),
    Case("float", "FLOAT", (0.1, -1.5, 3.4e38, 1.17549435e-38, 0.0), "float", "v + 0e0"),
    Case("float_m_d", "FLOAT(7, 4)", (123.4567, -0.0001), "float", "v + 0e0"),
    Case("double", "DOUBLE", (0.1, -1e308, 2.2250738585072014e-308, 1 / 3), "double"),
    Case("char", "CHAR(10)", ("", "Zoë 日本", "🎉" * 10), string(10)),
    Case("varchar", "VARCHAR(20)", ("", TEXT, "trailing  "), string(20)),
    Case("varchar_latin1", "VARCHAR(10) CHARACTER SET latin1", ("café", "€ÿ", "plain"),
         string(10)),
    Case("tinytext", "TINYTEXT", ("", TEXT), "string"),
    Case("text", "TEXT", ("", TEXT * 100), "string"),
    Case("mediumtext", "MEDIUMTEXT", (TEXT,), "string"),
    Case("longtext", "LONGTEXT", (TEXT,), "string"),
    Case("binary", "BINARY(4)", (b"\x00\x01\x00\x00", b"ab\x00\x00", b"\xff" * 4), "bytes"),
    Case("varbinary", "VARBINARY(10)", (b"", b"\x00\xff\x00"), "bytes"),
    Case("tinyblob", "TINYBLOB", (b"", b"\x00\xff\x10binary"), "bytes"),
    Case("blob", "BLOB", (b"\x00\xff" * 1000,), "bytes"),
    Case("mediumblob", "MEDIUMBLOB", (b"\x01\x02",), "bytes"),
    Case("longblob", "LONGBLOB", (b"\x80" * 70_000,), "bytes"),
    Case("date", "DATE", (dt.date(1000, 1, 1), dt.date(2024, 2, 29), dt.date(9999, 12, 31)),
         {"type": "int", "logicalType": "date"}),
    Case("time", "TIME(6)",
         (td(), td(hours=23, minutes=59, seconds=59, microseconds=999_999), td(hours=24),
          -td(hours=838, minutes=59, seconds=59), td(hours=838, minutes=59, seconds=59),
          -td(microseconds=1), -td(seconds=1, microseconds=500_000)), MICRO_TIME),
    Case("time_seconds", "TIME", (td(hours=-1), td(hours=100, seconds=1)), MICRO_TIME),
    Case("datetime", "DATETIME(6)",
         (dt.datetime(1000, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59, 999_999),
          dt.datetime(2038, 1, 19, 3, 14, 8), dt.datetime(9999, 12, 31, 23, 59, 59, 999_999)),
         {"type": "long", "logicalType": "local-timestamp-micros"}),
    Case("timestamp", "TIMESTAMP(6) NULL",
         (dt.datetime(1970, 1, 1, 0, 0, 1), dt.datetime(2038, 1, 19, 3, 14, 7, 999_999),
          # the starts and ends of daylight saving time in Europe and the US, in UTC
          dt.datetime(2024, 3, 31, 1, 0), dt.datetime(2024, 10, 27, 0, 59, 59, 999_999),
          dt.datetime(2024, 3, 10, 7, 0, 0, 1)),
         {"type": "long", "logicalType": "timestamp-micros"}),
    Case("year", "YEAR", (1901, 2024, 2155, 0), "int"),
    Case("json", "JSON",
         ('{"a": [1, 2.5, "ü"], "b": null}', '"hello"', "[]", ' {"spaced" : true} ', "1e400"),
         "string"),
    Case("enum", "ENUM('new', 'paid', 'ü')", ("new", "ü"), "string"),
    Case("set", "SET('a', 'b', 'c')", ("", "a", "c,a", "a,b,c"), "string"),
    Case("bit1", "BIT(1)", (b"\x00", b"\x01"), "bytes"),
    Case("bit10", "BIT(10)", (b"\x02\x01", b"\x00\x00", b"\x03\xff"), "bytes"),
    Case("bit64", "BIT(64)", (b"\xff" * 8, b"\x80" + b"\x00" * 7), "bytes"),
    Case("uuid_char", "CHAR(36)", (str(UID),), string(36)),
    Case("uuid_binary", "BINARY(16)", (UID.bytes,), "bytes"),
]


@dataclass
class RoundTrip:
    """The source database and the sink databases each path wrote, with the Avro fields."""

    server: Server
    source: str
    sinks: dict[str, str]  # path -> sink database name
    fields: dict[str, dict[str, Any]]  # path -> case name -> Avro type of its column


def connect(server: Server, database: str) -> pymysql.connections.Connection:
    url = make_url(server.url)
    return pymysql.connect(
        host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
        password=url.password or "", database=database, autocommit=True,
        init_command="SET time_zone = '+00:00'",
    )


def insert_rows(server: Server, database: str, offset: int) -> None:
    conn = connect(server, database)
    try:
        with conn.cursor() as cur:
            for case in CASES:
                # The test's own constant table names; values go as parameters.
                insert = f"INSERT INTO {case.table} (id, v) VALUES (%s, %s)"  # noqa: S608
                rows = [(offset + i + 1, value) for i, value in enumerate(case.values)]
                cur.executemany(insert, [*rows, (offset + len(rows) + 1, None)])
    finally:
        conn.close()


def run(tmp_path: Path, name: str, source: str, sink: str, connector: str,
        tables: list[str]) -> Outcome:
    options = {"mode": "bulk"} if connector == "query" else {"heartbeat_topic": "''"}
    return run_once(tmp_path / f"{name}.yaml", name=name, source=source, sink=sink,
                    connector=connector, tables=tables, options=options)


def types_of(outcome: Outcome) -> dict[str, Any]:
    """The Avro type of ``v`` of every case; the snapshot and the binlog described each
    table with one and the same schema (one version)."""
    assert outcome.errors == []
    return {case.name: outcome.column_type(case.table, "v") for case in CASES}


@pytest.fixture(scope="module")
def round_trip(mysql_server: Server, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[RoundTrip]:
    names = {role: new_database_name() for role in ("source", "query", "mysql")}
    urls = {role: create_mysql_database(mysql_server, name) for role, name in names.items()}
    tmp_path = tmp_path_factory.mktemp("types")
    try:
        conn = connect(mysql_server, names["source"])
        try:
            with conn.cursor() as cur:
                for case in CASES:
                    cur.execute(f"CREATE TABLE {case.table} (id INT PRIMARY KEY, v {case.ddl})")
        finally:
            conn.close()
        tables = [case.table for case in CASES]
        insert_rows(mysql_server, names["source"], 0)
        # First run: the snapshot; second run: the rows inserted since, from the binlog.
        types_of(run(tmp_path, "cdc", urls["source"], urls["mysql"], "mysql", tables))
        insert_rows(mysql_server, names["source"], STREAMED)
        fields = {
            "mysql": types_of(run(tmp_path, "cdc", urls["source"], urls["mysql"], "mysql", tables)),
            "query": types_of(run(tmp_path, "query", urls["source"], urls["query"], "query",
                                  tables)),
        }
        yield RoundTrip(mysql_server, names["source"], names, fields)
    finally:
        for name in names.values():
            drop_mysql_database(mysql_server, name)


def rows(server: Server, database: str, table: str, read: str) -> dict[int, Any]:
    conn = connect(server, database)
    try:
        with conn.cursor() as cur:
            # The test's own constant names and read expressions.
            cur.execute(f"SELECT id, {read} FROM {table} ORDER BY id")  # noqa: S608
            return {int(row[0]): row[1] for row in cur.fetchall()}
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["query", "mysql"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_mysql_type_round_trips_exactly(round_trip: RoundTrip, case: Case, path: str) -> None:
    nullable = ["null", case.avro]
    assert round_trip.fields[path][case.name] == nullable
    source = rows(round_trip.server, round_trip.source, case.table, case.read)
    written = rows(round_trip.server, round_trip.sinks[path], case.table, "v")
    streamed = [key for key in source if key > STREAMED]
    assert len(source) == 2 * (len(case.values) + 1) and len(streamed) == len(case.values) + 1
    assert written == source
    for key, value in source.items():
        assert type(written[key]) is type(value) or isinstance(value, int), (key, value)


@pytest.mark.parametrize("connector", ["query", "mysql"])
def test_a_column_type_outside_the_contract_fails_check_naming_table_column_and_type(
    db: MySqlDb, connector: str
) -> None:
    db.execute("CREATE TABLE places (id INT PRIMARY KEY, g POINT, addr INET6)")
    if connector == "mysql":
        results = MySqlSource(source_config(db, ["places"])).check()
    else:
        config = QuerySourceConfig.model_validate(
            {"name": "q", "connector": "query", "database": db.url, "tables": ["places"]}
        )
        results = QuerySource(config).check()
    failed = [r for r in results if not r.ok]
    assert len(failed) == 1, results
    (result,) = failed
    assert "places" in result.name + result.message
    assert re.search(r"column \S*places\.(g|addr) has type (point|inet6)", result.message)
    assert "docs/types.md" in (result.hint or "")


def run_failing(tmp_path: Path, db: MySqlDb, connector: str) -> list[str]:
    """Run a source of table ``dates`` once into a SQLite sink; the errors it reported."""
    sink = f"sqlite:///{tmp_path}/sink.db"
    return run(tmp_path, "z", db.url, sink, connector, ["dates"]).errors


@pytest.mark.parametrize("path", ["query", "snapshot", "binlog"])
def test_a_zero_date_is_a_record_error_on_every_path(
    tmp_path: Path, db: MySqlDb, path: str
) -> None:
    db.execute("CREATE TABLE dates (id INT PRIMARY KEY, d DATE, t DATETIME(6))")
    zero = ("SET SESSION sql_mode = ''",
            "INSERT INTO dates VALUES (1, '0000-00-00', '2024-01-01 00:00:00')",
            "INSERT INTO dates VALUES (2, '2024-01-01', '0000-00-00 00:00:00')")
    if path == "binlog":
        assert run_failing(tmp_path, db, "mysql") == []
    db.execute(*zero)
    errors = run_failing(tmp_path, db, "query" if path == "query" else "mysql")
    assert errors and all("zero date" in error for error in errors), errors
