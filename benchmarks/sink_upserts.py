"""1,000,000 upserts (half inserts, half updates of existing keys) from the embedded stream into
PostgreSQL, side by side with ``psql \\copy`` of the same rows into an empty table and a plain
psycopg 3 ``executemany`` upsert; the same upserts into MariaDB and SQLite.

    .venv/bin/python -m benchmarks.sink_upserts [--rows N] [--repeat K]
        [--targets postgresql,mysql,sqlite] [--batch-size B] [--profile] [--before DIR]

Set-up, not timed: N rows of ~160 B (bigint key, int, text, numeric(12,2), two timestamptz, a
JSON document) are appended to an embedded stream through the runtime's Avro serializer, keys
0..N-1; each target table is created and pre-loaded with keys 0..N/2-1, so half the upserts
update a row and half insert one.

Contenders:

- ``liberate``: ``liberate run FILE --once`` with one SQL sink and no source, as a child
  process (its peak RSS is its own): poll the stream, decode, upsert, commit the offsets;
- ``psql \\copy``: the same rows as CSV into an empty table with the same primary key;
- ``psycopg 3 executemany``: ``INSERT ... ON CONFLICT DO UPDATE`` of the same rows (Python
  tuples) into the pre-loaded table, in 5,000-row transactions;
- MariaDB and SQLite: liberate, next to PyMySQL / sqlite3 ``executemany`` upserts.

Each table is followed by the 1-minute load average at the end of each run (the machine may
be shared). ``--profile`` runs liberate in this process under cProfile instead (writes in
the same thread, so the profile sees them), and prints where its time goes. Uses
``$LIBERATE_BENCH_POSTGRES_URL`` / ``$LIBERATE_BENCH_MYSQL_URL`` or throwaway servers
(durable: fsync on).
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import datetime as dt
import json
import os
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql

from benchmarks._harness import Measurement, machine, postgres, table, timed, timed_child
from liberate.config.loader import load_run_file
from liberate.records import SourceRecord
from liberate.runtime import Pipeline, open_backend
from liberate.schema.avro import AvroSchema
from liberate.serde import RecordSerializer
from liberate.streams.embedded import EmbeddedBackend
from sinks.sql.config import SqlSinkConfig

TOPIC = "bench.upserts"
TABLE = "upserts"
COLUMNS = ("id", "qty", "note", "amount", "created_at", "updated_at", "attrs")
KEY = AvroSchema({"type": "record", "name": "Key", "namespace": "bench.upserts",
                  "fields": [{"name": "id", "type": "long"}]})
VALUE = AvroSchema({
    "type": "record", "name": "Value", "namespace": "bench.upserts",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "qty", "type": "int"},
        {"name": "note", "type": "string"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12,
                                    "scale": 2}},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "attrs", "type": {"type": "string", "connect.name": "io.debezium.data.Json"}},
    ],
})
CREATED = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
UPDATED = dt.datetime(2024, 6, 1, 12, 30, tzinfo=dt.UTC)

DDL = {
    "postgresql": "CREATE TABLE upserts (id BIGINT PRIMARY KEY, qty INTEGER NOT NULL, note TEXT "
                  "NOT NULL, amount NUMERIC(12, 2) NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
                  "updated_at TIMESTAMPTZ NOT NULL, attrs JSONB NOT NULL)",
    "mysql": "CREATE TABLE upserts (id BIGINT PRIMARY KEY, qty INT NOT NULL, note LONGTEXT NOT "
             "NULL, amount DECIMAL(12, 2) NOT NULL, created_at DATETIME(6) NOT NULL, "
             "updated_at DATETIME(6) NOT NULL, attrs JSON NOT NULL) CHARACTER SET utf8mb4 "
             "COLLATE utf8mb4_bin",
    "sqlite": "CREATE TABLE upserts (id BIGINT PRIMARY KEY, qty INTEGER NOT NULL, note TEXT NOT "
              "NULL, amount TEXT NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME "
              "NOT NULL, attrs JSON NOT NULL)",
}
UPSERT = {
    "postgresql": "INSERT INTO upserts VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO "
                  "UPDATE SET qty = excluded.qty, note = excluded.note, amount = excluded.amount,"
                  " created_at = excluded.created_at, updated_at = excluded.updated_at, "
                  "attrs = excluded.attrs",
    "mysql": "INSERT INTO upserts VALUES (%s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
             "qty = VALUES(qty), note = VALUES(note), amount = VALUES(amount), created_at = "
             "VALUES(created_at), updated_at = VALUES(updated_at), attrs = VALUES(attrs)",
    "sqlite": "INSERT INTO upserts VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
              "qty = excluded.qty, note = excluded.note, amount = excluded.amount, created_at "
              "= excluded.created_at, updated_at = excluded.updated_at, attrs = excluded.attrs",
}
CHUNK = 5000


def value(i: int) -> dict[str, Any]:
    return {"id": i, "qty": i % 1000, "note": f"order {i} for Zoë", "amount":
            Decimal(i % 100_000) / 100, "created_at": CREATED, "updated_at": UPDATED,
            "attrs": json.dumps({"pass": 1, "tags": ["a", "b"]}, separators=(",", ":"))}


def rows(start: int, stop: int, dialect: str) -> Iterator[tuple[Any, ...]]:
    for i in range(start, stop):
        v = value(i)
        stamps: tuple[Any, Any] = (CREATED, UPDATED)
        if dialect != "postgresql":  # naive UTC where the column keeps no zone
            stamps = (CREATED.replace(tzinfo=None), UPDATED.replace(tzinfo=None))
        amount = v["amount"] if dialect != "sqlite" else format(v["amount"], "f")
        yield (i, v["qty"], v["note"], amount, *stamps, v["attrs"])


def fill_stream(path: Path, count: int) -> None:
    backend = EmbeddedBackend(path, synchronous="NORMAL")
    backend.open()
    try:
        backend.ensure_topic(TOPIC, compacted=True)
        serializer = RecordSerializer(backend.registry())
        for start in range(0, count, 50_000):
            backend.append(serializer.serialize([
                SourceRecord(TOPIC, {"id": i}, value(i), KEY, VALUE, {}, {})
                for i in range(start, min(count, start + 50_000))
            ]), [])
    finally:
        backend.close()


# -- targets ---------------------------------------------------------------------------------


def prepare_postgres(url: str, count: int, name: str = TABLE, preload: bool = True) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute("DROP TABLE IF EXISTS liberate_sink_offsets, liberate_sink_parked")
        conn.execute(DDL["postgresql"].replace("upserts", name, 1))
        if preload:
            with conn.cursor().copy(f"COPY {name} FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int4", "text", "numeric", "timestamptz",
                                "timestamptz", "jsonb"])
                for row in rows(0, count // 2, "postgresql"):
                    copy.write_row(row)
        conn.execute(f"VACUUM ANALYZE {name}")


def prepare_mysql(url: str, count: int) -> None:
    with mysql_connection(url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS upserts, liberate_sink_offsets, liberate_sink_parked")
        cur.execute(DDL["mysql"])
        batch = list(rows(0, count // 2, "mysql"))
        for start in range(0, len(batch), 10_000):
            cur.executemany("INSERT INTO upserts VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            batch[start:start + 10_000])
            conn.commit()


def prepare_sqlite(path: Path, count: int) -> None:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(DDL["sqlite"])
        conn.executemany("INSERT INTO upserts VALUES (?, ?, ?, ?, ?, ?, ?)",
                         rows(0, count // 2, "sqlite"))


@contextmanager
def mysql_connection(url: str) -> Iterator[pymysql.connections.Connection[Any]]:
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    conn = pymysql.connect(host=parts.host, port=parts.port or 3306, user=parts.username,
                           password=parts.password or "", database=parts.database,
                           charset="utf8mb4", autocommit=False)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def mariadb() -> Iterator[str]:
    external = os.environ.get("LIBERATE_BENCH_MYSQL_URL")
    if external:
        yield external
        return
    from tests.servers import MariaDBServer, create_mysql_database

    server = MariaDBServer(durable=True).start()
    try:
        yield create_mysql_database(server, "sink_bench")
    finally:
        server.stop()


# -- contenders ------------------------------------------------------------------------------


def run_file(workdir: Path, url: str, batch_size: int) -> Path:
    path = workdir / "sink.yaml"
    path.write_text(f"""\
streams:
  path: {workdir / "streams.db"}
sinks:
  - name: bench
    connector: sql
    database: "{url}"
    topics: [{TOPIC}]
    batch_size: {batch_size}
""")
    return path


def liberate(name: str, workdir: Path, url: str, count: int, batch_size: int,
             code: Path | None = None) -> Measurement:
    """``liberate run --once``; with ``code``, the liberate source tree there instead (a
    checkout of an earlier version, for before/after figures in one run)."""
    path = run_file(workdir, url, batch_size)
    env = None
    if code is not None:
        env = {**os.environ, "PYTHONPATH": str(code)}
    return timed_child(name, count, [sys.executable, "-c", _RUN_FROM, str(code or ""), "run",
                                     str(path), "--once"], env=env)


# Runs liberate's CLI with the given source tree first on sys.path (or this one's).
_RUN_FROM = ("import sys, runpy; code = sys.argv.pop(1); code and sys.path.insert(0, code); "
             "sys.argv[0] = 'liberate'; runpy.run_module('liberate', run_name='__main__')")


def profiled(workdir: Path, url: str, count: int, batch_size: int) -> None:
    """The sink's task run in this thread, writes included (cProfile sees one thread)."""
    config = load_run_file(run_file(workdir, url, batch_size))
    backend = open_backend(config.streams)
    pipeline = Pipeline(config, backend, once=True)
    [task] = pipeline.sink_tasks
    task.sources_done.set()
    task.sink.read_ahead = False  # type: ignore[attr-defined]  # writes in this thread too
    profile = cProfile.Profile()
    started = time.perf_counter()
    try:
        profile.enable()
        task.run()
        profile.disable()
    finally:
        backend.close()
    elapsed = time.perf_counter() - started
    assert task.stats.error is None, task.stats.error
    print(f"liberate in-process (profiled): {count / elapsed:,.0f} rows/s ({elapsed:.1f} s)")
    pstats.Stats(profile).sort_stats("tottime").print_stats(25)


def psql_copy(url: str, count: int, workdir: Path) -> Measurement:
    csv_path = workdir / "rows.csv"
    with csv_path.open("w", newline="") as out:
        writer = csv.writer(out)
        for row in rows(0, count, "postgresql"):
            writer.writerow(row)
    prepare_postgres(url, count, name="copied", preload=False)
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    return timed_child("psql \\copy into an empty table", count,
                       [psql, url, "-q", "-c", f"\\copy copied FROM '{csv_path}' (FORMAT csv)"])


def executemany(dialect: str, target: str, count: int) -> Measurement:
    def run() -> None:
        if dialect == "postgresql":
            with psycopg.connect(target) as conn, conn.cursor() as cur:
                for start in range(0, count, CHUNK):
                    cur.executemany(UPSERT[dialect], list(rows(start, min(count, start + CHUNK),
                                                              dialect)))
                    conn.commit()
        elif dialect == "mysql":
            with mysql_connection(target) as conn, conn.cursor() as cur:
                for start in range(0, count, CHUNK):
                    cur.executemany(UPSERT[dialect], list(rows(start, min(count, start + CHUNK),
                                                              dialect)))
                    conn.commit()
        else:
            with sqlite3.connect(target) as lite:
                for start in range(0, count, CHUNK):
                    lite.executemany(UPSERT[dialect], rows(start, min(count, start + CHUNK),
                                                           dialect))
                    lite.commit()

    names = {"postgresql": "psycopg 3", "mysql": "PyMySQL", "sqlite": "sqlite3"}
    return timed(f"{names[dialect]} executemany upsert", count, run)


def check(dialect: str, target: str, count: int) -> None:
    """The liberate run left ``count`` rows, the updated half with the stream's values."""
    if dialect == "postgresql":
        with psycopg.connect(target) as conn:
            found = conn.execute("SELECT count(*), sum(qty) FROM upserts").fetchone()
    elif dialect == "mysql":
        with mysql_connection(target) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*), sum(qty) FROM upserts")
            found = cur.fetchone()
    else:
        with sqlite3.connect(target) as lite:
            found = lite.execute("SELECT count(*), sum(qty) FROM upserts").fetchone()
    expected = (count, sum(i % 1000 for i in range(count)))
    if found is None or (int(found[0]), int(found[1])) != expected:
        raise SystemExit(f"{dialect}: found {found}, expected {expected}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--targets", default="postgresql,mysql,sqlite")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="the sink's batch_size (its default when unset)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--before", type=Path, default=None,
                        help="also run the liberate source tree in this directory (e.g. from "
                        "`git archive`), side by side: before/after figures of one run")
    args = parser.parse_args()
    targets: Sequence[str] = args.targets.split(",")
    count = args.rows
    batch = args.batch_size or SqlSinkConfig.model_fields["batch_size"].default
    print(f"# SQL sink: {count:,} upserts (half updates) from the embedded stream ({machine()})")
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sink-bench-")))
        urls: dict[str, str] = {}
        if "postgresql" in targets:
            urls["postgresql"] = stack.enter_context(postgres())
        if "mysql" in targets:
            urls["mysql"] = stack.enter_context(mariadb())
        if "sqlite" in targets:
            urls["sqlite"] = f"sqlite:///{workdir / 'target.db'}"
        started = time.perf_counter()
        fill_stream(workdir / "streams.db", count)
        print(f"stream filled with {count:,} records in {time.perf_counter() - started:.1f} s")
        prepare = {
            "postgresql": lambda: prepare_postgres(urls["postgresql"], count),
            "mysql": lambda: prepare_mysql(urls["mysql"], count),
            "sqlite": lambda: prepare_sqlite(workdir / "target.db", count),
        }
        if args.profile:
            for dialect in targets:
                prepare[dialect]()
                profiled(workdir, urls[dialect], count, batch)
            return
        for dialect in targets:
            url = urls[dialect]
            direct = str(workdir / "target.db") if dialect == "sqlite" else url
            measured: list[Measurement] = []
            loads: list[str] = []  # the machine may be shared: the load as each run ends
            for _ in range(args.repeat):
                prepare[dialect]()
                measured.append(liberate(f"liberate ({dialect} sink)", workdir, url, count,
                                         batch))
                loads.append(_load(measured[-1]))
                check(dialect, direct, count)
                if args.before is not None:
                    prepare[dialect]()
                    measured.append(liberate(f"liberate before ({dialect} sink)", workdir,
                                             url, count, batch, code=args.before))
                    loads.append(_load(measured[-1]))
                    check(dialect, direct, count)
                if dialect == "postgresql":
                    measured.append(psql_copy(url, count, workdir))
                    loads.append(_load(measured[-1]))
                prepare[dialect]()
                measured.append(executemany(dialect, direct, count))
                loads.append(_load(measured[-1]))
            print(f"\n## {dialect}\n")
            print(table(measured, reference=measured[0].name))
            print("\nload average (1 min) at the end of each run: " + "; ".join(loads))


def _load(measurement: Measurement) -> str:
    return f"{measurement.name}: {os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    main()
