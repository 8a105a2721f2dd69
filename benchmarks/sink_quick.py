"""Quick SQL sink throughput: 100k upserts per dialect (not a timed test; read as a range).

Writes 100,000 entity records (bigint key, int, text, numeric(12,2), two timestamps, JSON) with
``SqlSink.write`` in batches of the sink's default ``batch_size``, twice: into an empty table
(every upsert inserts) and again over the same keys (every upsert updates). Prints rows/s.

    .venv/bin/python -m benchmarks.sink_quick

Uses ``$LIBERATE_BENCH_POSTGRES_URL`` (an admin URL) and ``$LIBERATE_BENCH_MYSQL_URL`` (a URL
naming a database) or starts throwaway servers (durable: fsync on), and a temporary SQLite file.
The table ``liberate_sink_bench`` is dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from benchmarks._harness import machine, postgres
from liberate.database import create_engine
from liberate.records import SinkRecord
from liberate.schema.avro import AvroSchema
from sinks.sql import SqlSink, SqlSinkConfig

ROWS = 100_000
TOPIC = "bench.liberate_sink_bench"
KEY = AvroSchema(
    {"type": "record", "name": "Key", "namespace": "bench.orders",
     "fields": [{"name": "id", "type": "long"}]}
)
VALUE = AvroSchema(
    {
        "type": "record",
        "name": "Value",
        "namespace": "bench.orders",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "qty", "type": "int"},
            {"name": "note", "type": ["null", "string"], "default": None},
            {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                        "precision": 12, "scale": 2}},
            {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "attrs", "type": ["null", {"type": "string",
                                                "connect.name": "io.debezium.data.Json"}],
             "default": None},
        ],
    }
)


def records(pass_no: int) -> list[SinkRecord]:
    now = dt.datetime.now(dt.UTC)
    return [
        SinkRecord(
            topic=TOPIC,
            partition=0,
            offset=pass_no * ROWS + i,
            key={"id": i},
            value={
                "id": i,
                "qty": i % 1000 + pass_no,
                "note": f"order {i} for Zoë",
                "amount": Decimal(i % 100_000) / 100,
                "created_at": now,
                "updated_at": now,
                "attrs": json.dumps({"pass": pass_no, "tags": ["a", "b"]}),
            },
            key_schema=KEY,
            value_schema=VALUE,
        )
        for i in range(ROWS)
    ]


def measure(name: str, url: str) -> None:
    # A fresh sink name per run: stored offsets of an earlier run would make this one a replay.
    sink = SqlSink(
        SqlSinkConfig.model_validate(
            {"name": f"bench-{uuid.uuid4().hex[:8]}", "connector": "sql", "database": url,
             "topics": [TOPIC]}
        )
    )
    size = sink.settings.batch_size
    sink.open()
    try:
        for pass_no, what in ((0, "insert"), (1, "update")):
            batch = records(pass_no)
            started = time.perf_counter()
            for start in range(0, ROWS, size):
                sink.write(batch[start : start + size])
            elapsed = time.perf_counter() - started
            print(f"{name:<10} upsert ({what}) {ROWS / elapsed:>10,.0f} rows/s  ({elapsed:.2f} s)")
    finally:
        sink.close()
        _drop_table(sink.settings)


def _drop_table(settings: SqlSinkConfig) -> None:
    """Drop the benchmark table and the run's rows of the offsets table."""
    engine = create_engine(settings)
    offsets = sa.table(settings.offsets_table, sa.column("sink"))
    try:
        sa.Table(TOPIC.rsplit(".", 1)[-1], sa.MetaData()).drop(engine, checkfirst=True)
        with engine.begin() as conn:
            conn.execute(sa.delete(offsets).where(offsets.c.sink == settings.name))
    finally:
        engine.dispose()


@contextmanager
def mariadb(url_env: str = "LIBERATE_BENCH_MYSQL_URL") -> Iterator[str]:
    """A MySQL/MariaDB database URL: ``$LIBERATE_BENCH_MYSQL_URL``, or a throwaway MariaDB."""
    external = os.environ.get(url_env)
    if external:
        yield external
        return
    from tests.servers import MariaDBServer, create_mysql_database

    server = MariaDBServer(durable=True).start()
    try:
        yield create_mysql_database(server, "sink_bench")
    finally:
        server.stop()


def main() -> None:
    print(f"# SQL sink, {ROWS:,} upserts per pass ({machine()})")
    with postgres() as pg_url, mariadb() as mysql_url, tempfile.TemporaryDirectory() as tmp:
        for name, url in (
            ("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}"),
            ("postgresql", pg_url),
            ("mysql", mysql_url),
        ):
            measure(name, url)


if __name__ == "__main__":
    main()
