"""The PostgreSQL type contract (docs/types.md, "PostgreSQL"), one row of its table per case:
source row -> event -> decoded value -> sink row equals the original, through the query source
and through the WAL source (its snapshot and its stream), into a PostgreSQL sink; and what a
SQLite sink writes for the types only PostgreSQL has.

One pipeline run serves every case (a table with a column per case); each case then checks its
column: the Avro type registered, the decoded values where the case states them, and the
target's text of every row (cast as the case says) against the source's.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import yaml

from connectors.postgres import PostgresSource
from connectors.postgres.config import PostgresSourceConfig
from connectors.query import QuerySource
from connectors.query.config import QuerySourceConfig
from liberate.config.loader import load_run_file
from liberate.errors import UnsupportedTypeError
from liberate.runtime import Pipeline, RunReport, open_backend
from liberate.schema.types import unwrap_nullable
from liberate.serde import RecordDeserializer
from tests.integration._sql_sink_support import engine_for
from tests.servers import (
    Server,
    create_postgres_database,
    drop_postgres_database,
    new_database_name,
)

pytestmark = pytest.mark.integration

UTC = dt.UTC
TEXT = 'Zoë 日本 🎉 "quoted" \\ back\'slash'


def decimal(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def marked(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "connect.name": name, **extra}


def array(items: Any) -> dict[str, Any]:
    return {"type": "array", "items": ["null", items]}


TIMESTAMP = {"type": "long", "logicalType": "timestamp-micros"}
LOCAL = {"type": "long", "logicalType": "local-timestamp-micros"}
VARIABLE = marked("liberate.data.VariableDecimal")
JSON_TEXT = marked("io.debezium.data.Json")


@dataclass(frozen=True)
class Case:
    """One row of the PostgreSQL table of docs/types.md."""

    id: str
    sql_type: str
    literals: list[str]  # one SQL literal per source row (NULL is added as a row of its own)
    avro: Any
    decoded: list[Any] | None = None  # the decoded event values of the literals, if stated
    compare: str = "text"  # the type both sides are cast to before their text is compared
    sqlite: list[Any] | None = None  # what a SQLite sink stores, if stated
    not_null: bool = False
    ddl: list[str] = field(default_factory=list)


CASES = [
    Case("smallint", "smallint", ["-32768", "32767", "0"], "int", [-32768, 32767, 0]),
    Case("integer", "integer", ["-2147483648", "2147483647"], "int"),
    Case("bigint", "bigint", ["-9223372036854775808", "9223372036854775807"], "long",
         [-9223372036854775808, 9223372036854775807]),
    Case("numeric_p_s", "numeric(12, 2)", ["-1234567890.12", "0.00", "9999999999.99"],
         decimal(12, 2), [Decimal("-1234567890.12"), Decimal("0.00"), Decimal("9999999999.99")]),
    Case("numeric_max_scale", "numeric(5, 5)", ["-0.00001", "0.99999"], decimal(5, 5),
         [Decimal("-0.00001"), Decimal("0.99999")]),
    Case("numeric_wide", "numeric(38, 10)",
         ["-1234567890123456789012345678.0123456789"], decimal(38, 10)),
    Case("numeric_unconstrained", "numeric",
         ["123456789012345678901234567890.123456789", "-0.5", "'NaN'", "'Infinity'",
          "'-Infinity'", "1.50", "1e-20"],
         VARIABLE, ["123456789012345678901234567890.123456789", "-0.5", "NaN", "Infinity",
                    "-Infinity", "1.50", "0.00000000000000000001"]),
    Case("real", "real", ["-0.1", "3.4e38", "'NaN'", "'Infinity'", "'-Infinity'"], "float"),
    Case("double", "double precision",
         ["0.1", "-1e308", "'NaN'", "'Infinity'", "'-Infinity'", "5e-324"], "double"),
    Case("boolean", "boolean", ["true", "false"], "boolean", [True, False]),
    Case("text", "text", [f"'{TEXT.replace(chr(39), chr(39) * 2)}'", "''"], "string",
         [TEXT, ""]),
    Case("varchar", "varchar(20)", ["'ü日本🎉'", "'xxxxxxxxxxxxxxxxxxxx'"],
         {"type": "string", "liberate.length": 20}, ["ü日本🎉", "x" * 20]),
    # char(n) values come padded, as PostgreSQL returns them; the sink keeps the padding in
    # the varchar(n) it creates (compared as char(5): casting char to text trims it).
    Case("char", "char(5)", ["'ab'", "'ÿü'"], {"type": "string", "liberate.length": 5},
         ["ab   ", "ÿü   "], compare="char(5)", sqlite=["ab   ", "ÿü   "]),
    Case("bytea", "bytea", ["'\\x00ff10'::bytea", "''::bytea"], "bytes", [b"\x00\xff\x10", b""]),
    Case("date", "date", ["'2024-02-29'", "'0001-01-01'", "'9999-12-31'", "'1969-12-31'"],
         {"type": "int", "logicalType": "date"},
         [dt.date(2024, 2, 29), dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1969, 12, 31)]),
    Case("time", "time", ["'23:59:59.999999'", "'00:00:00'", "'12:00:00.5'"],
         {"type": "long", "logicalType": "time-micros"},
         [dt.time(23, 59, 59, 999999), dt.time(0), dt.time(12, 0, 0, 500000)]),
    Case("timetz", "time with time zone", ["'10:00:00.5+05:30'", "'23:59:59.999999-12'",
                                          "'00:00:00+00'"],
         marked("io.debezium.time.ZonedTime"),
         ["10:00:00.5+05:30", "23:59:59.999999-12:00", "00:00:00+00:00"],
         sqlite=["10:00:00.5+05:30", "23:59:59.999999-12:00", "00:00:00+00:00"]),
    Case("timestamp", "timestamp",
         ["'1999-12-31 23:59:59.123456'", "'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'",
          "'1969-12-31 23:59:59.999999'", "'2038-01-19 03:14:08'"],
         LOCAL, [dt.datetime(1999, 12, 31, 23, 59, 59, 123456), dt.datetime(1, 1, 1),
                 dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
                 dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
                 dt.datetime(2038, 1, 19, 3, 14, 8)]),
    # DST edges of Europe/Berlin: the instants either side of the hour that repeats and of the
    # hour that is skipped, written with their offsets.
    Case("timestamptz", "timestamptz",
         ["'2024-10-27 02:30:00+02'", "'2024-10-27 02:30:00+01'", "'2024-03-31 01:59:59.999999+01'",
          "'2024-03-31 03:00:00+02'", "'1900-01-01 00:00:00+00'", "'2100-06-30 12:00:00.000001Z'",
          "'0001-01-01 00:00:00+00'"],
         TIMESTAMP, [dt.datetime(2024, 10, 27, 0, 30, tzinfo=UTC),
                     dt.datetime(2024, 10, 27, 1, 30, tzinfo=UTC),
                     dt.datetime(2024, 3, 31, 0, 59, 59, 999999, tzinfo=UTC),
                     dt.datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
                     dt.datetime(1900, 1, 1, tzinfo=UTC),
                     dt.datetime(2100, 6, 30, 12, 0, 0, 1, tzinfo=UTC),
                     dt.datetime(1, 1, 1, tzinfo=UTC)]),
    Case("interval", "interval",
         ["'1 year 2 mons -3 days 04:05:06.789'", "'-1 mons'", "'00:00:00'",
          "'-178956970 years -7 mons -2147483647 days -2562047788:00:54.775807'",
          "'1 day -00:00:00.000001'"],
         marked("io.debezium.time.Interval"),
         ["P1Y2M-3DT4H5M6.789S", "P0Y-1M0DT0H0M0S", "P0Y0M0DT0H0M0S",
          "P-178956970Y-7M-2147483647DT-2562047788H0M-54.775807S", "P0Y0M1DT0H0M-0.000001S"],
         sqlite=["P1Y2M-3DT4H5M6.789S", "P0Y-1M0DT0H0M0S", "P0Y0M0DT0H0M0S",
                 "P-178956970Y-7M-2147483647DT-2562047788H0M-54.775807S",
                 "P0Y0M1DT0H0M-0.000001S"]),
    Case("uuid", "uuid", ["'6f1c8a3e-2b7d-4c3e-9a51-0f2e3d4c5b6a'",
                          "'00000000-0000-0000-0000-000000000000'"],
         {"type": "string", "logicalType": "uuid"}),
    Case("json", "json", ['\'{"b": 1, "a": [1, 2.5, "ü"], "c": null}\'', "'\"just a string\"'",
                          "'[]'", "'null'", "'12.50'",
                          "'{\"pi\": 3.141592653589793238462643383279}'"],
         JSON_TEXT, ['{"b":1,"a":[1,2.5,"ü"],"c":null}', '"just a string"', "[]", "null",
                     "12.50", '{"pi":3.141592653589793238462643383279}'], compare="jsonb"),
    Case("jsonb", "jsonb", ['\'{"z": 1, "a": {"d": true}}\'', "'\"ü\"'", "'1e400'"],
         JSON_TEXT, ['{"a":{"d":true},"z":1}', '"ü"', "1" + "0" * 400]),
    Case("int_array", "integer[]", ["'{1,NULL,-3}'", "'{}'"], array("int"), [[1, None, -3], []],
         sqlite=["[1,null,-3]", "[]"]),
    Case("bigint_array", "bigint[]", ["'{9223372036854775807}'"], array("long")),
    Case("text_array", "text[]", ["ARRAY['a b', NULL, 'ü\",{}', '']"], array("string"),
         [["a b", None, 'ü",{}', ""]], sqlite=['["a b",null,"ü\\",{}",""]']),
    Case("numeric_array", "numeric[]", ["'{1.50,NaN,-0.001}'"], array(VARIABLE),
         [["1.50", "NaN", "-0.001"]], sqlite=['["1.50","NaN","-0.001"]']),
    Case("numeric_p_s_array", "numeric(5,2)[]", ["'{1.50,-999.99}'"], array(decimal(5, 2)),
         [[Decimal("1.50"), Decimal("-999.99")]], sqlite=['["1.50","-999.99"]']),
    Case("double_array", "double precision[]", ["'{0.1,NaN,-Infinity}'"], array("double")),
    Case("boolean_array", "boolean[]", ["'{true,false,NULL}'"], array("boolean"),
         [[True, False, None]]),
    Case("uuid_array", "uuid[]", ["'{6f1c8a3e-2b7d-4c3e-9a51-0f2e3d4c5b6a}'"],
         array({"type": "string", "logicalType": "uuid"})),
    Case("date_array", "date[]", ["'{2024-02-29,0001-01-01}'"],
         array({"type": "int", "logicalType": "date"}),
         sqlite=['["2024-02-29","0001-01-01"]']),
    Case("timestamptz_array", "timestamptz[]", ["'{\"2024-10-27 02:30:00+02\"}'"],
         array(TIMESTAMP)),
    Case("enum", "mood", ["'new'", "'in progress'", "'ü'"],
         marked("io.debezium.data.Enum",
                **{"connect.parameters": {"allowed": "new,in progress,ü"}}),
         ["new", "in progress", "ü"], sqlite=["new", "in progress", "ü"],
         ddl=["CREATE TYPE mood AS ENUM ('new', 'in progress', 'ü')"]),
    Case("inet", "inet", ["'192.168.0.1/24'", "'10.0.0.1'", "'2001:db8::1/64'", "'::1'"],
         marked("liberate.data.Inet"),
         ["192.168.0.1/24", "10.0.0.1", "2001:db8::1/64", "::1"],
         sqlite=["192.168.0.1/24", "10.0.0.1", "2001:db8::1/64", "::1"]),
    Case("cidr", "cidr", ["'10.0.0.0/8'", "'2001:db8::/32'"], marked("liberate.data.Cidr"),
         ["10.0.0.0/8", "2001:db8::/32"], sqlite=["10.0.0.0/8", "2001:db8::/32"]),
    Case("macaddr", "macaddr", ["'08:00:2b:01:02:03'"], marked("liberate.data.MacAddress"),
         ["08:00:2b:01:02:03"], sqlite=["08:00:2b:01:02:03"]),
    Case("macaddr8", "macaddr8", ["'08:00:2b:01:02:03:04:05'"],
         marked("liberate.data.MacAddress8"), ["08:00:2b:01:02:03:04:05"]),
    Case("money", "money", ["'-1234.56'", "'92233720368547758.07'", "0"], decimal(19, 2),
         [Decimal("-1234.56"), Decimal("92233720368547758.07"), Decimal("0.00")],
         compare="numeric", sqlite=["-1234.56", "92233720368547758.07", "0.00"]),
    Case("domain_int", "posint", ["5"], "int", [5],
         ddl=["CREATE DOMAIN posint AS integer CHECK (VALUE > 0)"]),
    Case("domain_text_array", "labels", ["'{a,b}'"], array("string"), [["a", "b"]],
         ddl=["CREATE DOMAIN labels AS text[]"]),
    Case("not_null_text", "text NOT NULL DEFAULT 'x'", ["'a'"], "string", ["a"], not_null=True),
]
ROWS = max(len(c.literals) for c in CASES) + 1  # the last row holds NULL where it may
STREAMED = 100  # ids of the rows the WAL source streams (after its snapshot): id + STREAMED


def _insert(ids: range, cases: list[Case] = CASES) -> str:
    columns = ", ".join(c.id for c in cases)
    rows = []
    for index, row_id in enumerate(ids):
        values = [c.literals[index] if index < len(c.literals)
                  else (c.literals[0] if c.not_null else "NULL") for c in cases]
        rows.append(f"({row_id}, {', '.join(values)})")
    return f"INSERT INTO types (id, {columns}) VALUES " + ", ".join(rows)  # noqa: S608


def _create(url: str, cases: list[Case]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for case in cases:
            for statement in case.ddl:
                conn.execute(statement)
        columns = ", ".join(f"{c.id} {c.sql_type}" for c in cases)
        conn.execute(f"CREATE TABLE types (id integer PRIMARY KEY, {columns})")


@dataclass
class RoundTrip:
    """The source, the targets and what the pipeline wrote."""

    source: str
    targets: dict[str, str]  # "query" / "wal" -> PostgreSQL URL, "sqlite" -> SQLite path
    fields: dict[str, dict[str, Any]]  # topic -> field name -> Avro type
    decoded: dict[str, dict[int, dict[str, Any]]]  # topic -> id -> decoded row record


QUERY_TOPIC, WAL_TOPIC = "q.types", "cdc.public.types"


def _run(run_file: Path) -> RunReport:
    """``liberate run FILE --once`` in this process."""
    config = load_run_file(run_file)
    backend = open_backend(config.streams)
    try:
        return Pipeline(config, backend, once=True).run()
    finally:
        backend.close()


def _read(run_file: Path, topic: str) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    config = load_run_file(run_file)
    backend = open_backend(config.streams)
    try:
        schema = backend.registry().versions(f"{topic}-value")[-1].schema
        consumer = backend.consumer(f"read-{topic}", topics=[topic])
        deserializer = RecordDeserializer(backend.registry())
        rows: dict[int, dict[str, Any]] = {}
        try:
            while batch := consumer.poll(10_000, 0.2):
                for record in deserializer.deserialize(batch):
                    if record.value is None:
                        continue
                    row = record.value.get("after", record.value)
                    if row is not None:
                        rows[int(row["id"])] = dict(row)
        finally:
            consumer.close()
    finally:
        backend.close()
    fields = {str(f["name"]): f["type"] for f in schema.fields}
    if "before" in fields:  # the envelope: its row record's fields (defined in "before")
        record = unwrap_nullable(fields["before"])[0]
        fields = {str(f["name"]): f["type"] for f in record["fields"]}
    return fields, rows


@pytest.fixture(scope="module")
def round_trip(postgres_server: Server, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[RoundTrip]:
    made = [new_database_name() for _ in range(3)]
    source, query_target, wal_target = (create_postgres_database(postgres_server, n)
                                        for n in made)
    tmp = tmp_path_factory.mktemp("types")
    sqlite_path = tmp / "target.db"
    try:
        _create(source, CASES)
        with psycopg.connect(source, autocommit=True) as conn:
            conn.execute(_insert(range(1, ROWS + 1)))
        run_file = tmp / "run.yaml"
        run_file.write_text(yaml.safe_dump({
            "streams": {"path": str(tmp / "streams.db")},
            "sources": [
                {"name": "q", "connector": "query", "database": source, "tables": ["types"],
                 "mode": "bulk"},
                {"name": "cdc", "connector": "postgres", "database": source,
                 "tables": ["types"]},
            ],
            "sinks": [
                {"name": "to-pg", "connector": "sql", "database": query_target,
                 "topics": [QUERY_TOPIC]},
                {"name": "wal-to-pg", "connector": "sql", "database": wal_target,
                 "topics": [WAL_TOPIC]},
                {"name": "to-sqlite", "connector": "sql", "database": f"sqlite:///{sqlite_path}",
                 "topics": [QUERY_TOPIC]},
            ],
        }))
        report = _run(run_file)  # the query source's rows, the WAL source's snapshot
        assert report.ok, report.errors
        with psycopg.connect(source, autocommit=True) as conn:
            conn.execute(_insert(range(1 + STREAMED, ROWS + 1 + STREAMED)))
        report = _run(run_file)  # and the WAL source's stream
        assert report.ok, report.errors
        fields, decoded = {}, {}
        for topic in (QUERY_TOPIC, WAL_TOPIC):
            fields[topic], decoded[topic] = _read(run_file, topic)
        yield RoundTrip(source, {"query": query_target, "wal": wal_target,
                                 "sqlite": str(sqlite_path)}, fields, decoded)
    finally:
        for name in made:
            drop_postgres_database(postgres_server, name)


def _texts(url: str, column: str, compare: str) -> dict[int, str | None]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        query = psycopg.sql.SQL("SELECT id, CAST(CAST({} AS {}) AS text) FROM types").format(
            psycopg.sql.Identifier(column), psycopg.sql.SQL(compare))
        return {int(r[0]): r[1] for r in conn.execute(query).fetchall()}


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float) and left != left:
        return right != right
    return bool(left == right)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("path", ["query", "wal"])
def test_postgres_type_round_trips_into_postgres(round_trip: RoundTrip, case: Case, path: str
                                                 ) -> None:
    topic = QUERY_TOPIC if path == "query" else WAL_TOPIC
    field_type, nullable = unwrap_nullable(round_trip.fields[topic][case.id])
    assert field_type == case.avro
    # The WAL source's row record is nullable throughout (a delete's before-image carries
    # only the key; its NOT NULL is an attribute, see the next test); the query source's is
    # nullable where the column is.
    assert nullable is (path == "wal" or not case.not_null)
    decoded = round_trip.decoded[topic]
    ids = [*range(1, ROWS + 1), *range(1 + STREAMED, ROWS + 1 + STREAMED)]
    if case.decoded is not None:
        for row_id in ids:
            index = (row_id - 1) % STREAMED
            expected = case.decoded[index] if index < len(case.decoded) else (
                case.decoded[0] if case.not_null else None)
            assert _equal(decoded[row_id][case.id], expected), (row_id, decoded[row_id][case.id])
    source_rows = _texts(round_trip.source, case.id, case.compare)
    written = _texts(round_trip.targets[path], case.id, case.compare)
    assert set(written) == set(source_rows) == set(ids)
    assert written == source_rows


def _nullable_columns(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT column_name FROM information_schema.columns "
                            "WHERE table_name = 'types' AND is_nullable = 'YES'").fetchall()
    return {str(r[0]) for r in rows}


@pytest.mark.parametrize("path", ["query", "wal"])
def test_sink_creates_the_source_columns_not_null_where_the_source_has_them(
    round_trip: RoundTrip, path: str
) -> None:
    nullable = _nullable_columns(round_trip.source)
    assert "not_null_text" not in nullable and "smallint" in nullable
    assert _nullable_columns(round_trip.targets[path]) == nullable


ELSEWHERE = [c for c in CASES if c.sqlite is not None]


def _assert_stored(rows: dict[int, Any], case: Case, null_row: int) -> None:
    """``rows`` (id -> stored value) hold what ``case.sqlite`` says, NULL in ``null_row``."""
    assert case.sqlite is not None
    for index, expected in enumerate(case.sqlite):
        stored = rows[index + 1]
        if isinstance(expected, str) and expected.startswith("["):
            assert json.loads(stored) == json.loads(expected)
        else:
            assert str(stored) == expected
    assert rows[null_row] is None


@pytest.mark.parametrize("case", ELSEWHERE, ids=lambda c: c.id)
def test_postgres_only_type_lands_in_sqlite_as_documented(round_trip: RoundTrip, case: Case
                                                          ) -> None:
    with sqlite3.connect(round_trip.targets["sqlite"]) as conn:
        rows = dict(conn.execute(f'SELECT id, "{case.id}" FROM types'))  # noqa: S608
    _assert_stored(rows, case, ROWS)


def test_postgres_only_types_land_in_mysql_as_documented(
    postgres_url: str, mysql_url: str, tmp_path: Path
) -> None:
    # The types only PostgreSQL has (and their edge values) into MySQL/MariaDB: text and JSON.
    cases = [*ELSEWHERE, CASES[[c.id for c in CASES].index("double_array")]]
    rows = max(len(c.literals) for c in cases) + 1
    _create(postgres_url, cases)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(_insert(range(1, rows + 1), cases))
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({
        "streams": {"path": str(tmp_path / "streams.db")},
        "sources": [{"name": "q", "connector": "query", "database": postgres_url,
                     "tables": ["types"], "mode": "bulk"}],
        "sinks": [{"name": "to-mysql", "connector": "sql", "database": mysql_url,
                   "topics": [QUERY_TOPIC]}],
    }))
    report = _run(run_file)
    assert report.ok, report.errors
    engine = engine_for(mysql_url)

    def stored(target: sa.Connection, column: str) -> dict[int, Any]:
        table = sa.table("types", sa.column("id"), sa.column(column))
        return {int(r[0]): r[1] for r in target.execute(sa.select(table))}

    try:
        with engine.connect() as target:
            for case in ELSEWHERE:
                _assert_stored(stored(target, case.id), case, rows)
            doubles = stored(target, "double_array")
    finally:
        engine.dispose()
    assert json.loads(doubles[1]) == [0.1, "NaN", "-Infinity"]


@pytest.fixture
def odd_table(postgres_url: str) -> str:
    """A table with a column of a type outside the contract (point)."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE odd (id integer PRIMARY KEY, spot point, fine text)")
    return postgres_url


@pytest.mark.filterwarnings("ignore:Did not recognize type")
def test_query_check_names_the_table_column_and_type_outside_the_contract(odd_table: str
                                                                          ) -> None:
    config = QuerySourceConfig.model_validate(
        {"name": "q", "connector": "query", "database": odd_table, "tables": ["odd"],
         "mode": "bulk"})
    failed = [r for r in QuerySource(config).check() if not r.ok]
    assert len(failed) == 1
    assert "column odd.spot has type point, which has no Avro mapping" in failed[0].message
    with pytest.raises(UnsupportedTypeError, match=r"odd\.spot has type point"):
        QuerySource(config).open({})


@pytest.mark.filterwarnings("ignore:Did not recognize type")
def test_wal_check_names_the_table_column_and_type_outside_the_contract(odd_table: str) -> None:
    config = PostgresSourceConfig.model_validate(
        {"name": "cdc", "connector": "postgres", "database": odd_table, "tables": ["odd"]})
    results = {r.name: r for r in PostgresSource(config).check()}
    columns = results["columns of public.odd"]
    assert not columns.ok
    assert "column public.odd.spot has type point, which has no Avro mapping" in columns.message


def test_wal_check_passes_a_table_of_contract_types(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE fine (id integer PRIMARY KEY, tags text[], span interval)")
    config = PostgresSourceConfig.model_validate(
        {"name": "cdc", "connector": "postgres", "database": postgres_url, "tables": ["fine"]})
    columns = {r.name: r for r in PostgresSource(config).check()}["columns of public.fine"]
    assert columns.ok and columns.message == "3 columns, every type mapped"


@pytest.mark.parametrize(
    ("sql_type", "literal", "error"),
    [
        ("numeric(10, 2)", "'NaN'", "cannot hold Decimal Decimal('NaN')"),
        ("timestamptz", "'infinity'", "timestamp too large"),
        ("timestamp", "'-infinity'", "timestamp too small"),
        ("date", "'infinity'", "date too large"),
        ("integer[]", "'{{1,2},{3,4}}'", "multi-dimensional array"),
    ],
    ids=["numeric_p_s_nan", "timestamptz_infinity", "timestamp_minus_infinity",
         "date_infinity", "multi_dimensional_array"],
)
@pytest.mark.parametrize("connector", ["query", "postgres"])
def test_value_without_avro_form_stops_the_source_naming_it(
    postgres_url: str, tmp_path: Path, connector: str, sql_type: str, literal: str, error: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE edge (id integer PRIMARY KEY, v {sql_type})")
        conn.execute(f"INSERT INTO edge VALUES (1, {literal})")  # noqa: S608
    run_file = tmp_path / "run.yaml"
    source: dict[str, Any] = {"name": "s", "connector": connector, "database": postgres_url,
                              "tables": ["edge"]}
    if connector == "query":
        source["mode"] = "bulk"
    run_file.write_text(yaml.safe_dump({"streams": {"path": str(tmp_path / "streams.db")},
                                        "sources": [source]}))
    report = _run(run_file)
    assert not report.ok
    assert error in " ".join(report.errors)
