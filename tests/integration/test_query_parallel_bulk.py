"""The parallel bulk reader: worker processes read key ranges, the source delivers them in order.

Every test runs on PostgreSQL and MariaDB (SQLite is always read in one process) with a batch
size small enough that the workers are used.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from connectors.query import QuerySource
from liberate.records import SourceRecord, StreamRecord
from liberate.schema.registry import SchemaRegistry
from liberate.serde import EncodedRecord, RecordDeserializer, RecordSerializer
from liberate.streams.base import partition_key
from liberate.streams.embedded import EmbeddedBackend
from tests.conformance.source import RowWriter, SourceConformance, SourceFactory, drain
from tests.integration._query_support import (
    create_orders,
    engine_for,
    insert,
    order,
    query_config,
)
from tests.processes import process_tree

pytestmark = pytest.mark.integration

ROWS = 23


@pytest.fixture(params=["postgres_url", "mysql_url"], ids=["postgresql", "mysql"])
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def _create_items(url: str) -> sa.Table:
    """A table with a composite key and values of the common types, some NULL."""
    metadata = sa.MetaData()
    table = sa.Table(
        "items",
        metadata,
        sa.Column("region", sa.String(10), primary_key=True),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attributes", sa.JSON, nullable=True),
    )
    engine = engine_for(url)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                table.insert(),
                [
                    {
                        "region": region,
                        "id": i,
                        "amount": decimal.Decimal(i * 37 % 1000) / 100,
                        "note": None if i % 4 == 0 else f"note {i} ✓",
                        "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
                        "attributes": None if i % 5 == 0 else {"n": i, "tags": ["a", "b"]},
                    }
                    for i in range(1, ROWS + 1)
                    for region in ("eu", "us")
                ],
            )
    finally:
        engine.dispose()
    return table


def _read(url: str, parallelism: int, offsets: dict[str, Any] | None = None) -> list[SourceRecord]:
    config = query_config(url, tables=["items"], mode="bulk", batch_size=5, parallelism=parallelism)
    source = QuerySource(config)
    source.open(offsets or {})
    try:
        return drain(source)
    finally:
        source.close()


def _stream(records: Sequence[SourceRecord], registry: SchemaRegistry) -> list[StreamRecord]:
    return RecordSerializer(registry).serialize(records)


def test_workers_make_the_bytes_and_offsets_of_the_single_process_path(
    server_url: str, tmp_path: Path
) -> None:
    _create_items(server_url)
    parallel = _read(server_url, parallelism=2)
    single = _read(server_url, parallelism=1)
    made_by_workers = [type(r.value) is EncodedRecord for r in parallel]
    # One worker; the source's own process reads one chunk in three.
    assert any(made_by_workers), "the workers were not used"
    assert not all(made_by_workers), "the source read no chunk itself"
    assert all(type(r.value) is not EncodedRecord for r in single)
    backend = EmbeddedBackend(tmp_path / "streams.db")
    backend.open()
    try:
        registry = backend.registry()
        # Timestamps differ (read at another instant); keys, values and offsets may not.
        assert [(s.key, s.value) for s in _stream(parallel, registry)] == [
            (s.key, s.value) for s in _stream(single, registry)
        ]
    finally:
        backend.close()
    assert [r.offset for r in parallel] == [r.offset for r in single]
    assert len(parallel) == 2 * ROWS
    assert parallel[-1].offset["complete"] is True


def test_an_encoded_record_reads_as_the_row_it_encodes(server_url: str) -> None:
    _create_items(server_url)
    parallel = _read(server_url, parallelism=2)
    single = _read(server_url, parallelism=1)
    assert [dict(r.key or {}) for r in parallel] == [dict(r.key or {}) for r in single]
    assert [dict(r.value or {}) for r in parallel] == [dict(r.value or {}) for r in single]


def test_a_restart_resumes_after_the_last_durable_key_without_gap_or_repeat(
    server_url: str,
) -> None:
    _create_items(server_url)
    everything = _read(server_url, parallelism=1)
    config = query_config(server_url, tables=["items"], mode="bulk", batch_size=5, parallelism=2)
    source = QuerySource(config)
    source.open({})
    try:
        first = source.poll() + source.poll() + source.poll()
    finally:
        source.close()  # a crash after three batches were durable
    assert type(first[0].value) is EncodedRecord
    stored = {partition_key(first[-1].partition): dict(first[-1].offset)}
    rest = _read(server_url, parallelism=2, offsets=stored)
    keys = [dict(r.key or {}) for r in first + rest]
    assert keys == [dict(r.key or {}) for r in everything]


def test_a_table_changed_under_the_workers_is_read_in_one_process_every_row_once(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _create_items(server_url)
    config = query_config(server_url, tables=["items"], mode="bulk", batch_size=5, parallelism=2)
    source = QuerySource(config)
    source.open({})  # the source has read the table's schemas
    engine = engine_for(server_url)
    try:
        with engine.begin() as conn:  # the workers see another table than the source did
            conn.execute(sa.text("ALTER TABLE items ADD COLUMN extra INTEGER"))
    finally:
        engine.dispose()
    try:
        with caplog.at_level(logging.WARNING, logger="liberate.query"):
            records = drain(source)
    finally:
        source.close()
    assert not any(type(r.value) is EncodedRecord for r in records)
    assert len({(r.key or {})["id"] for r in records}) == ROWS
    assert len(records) == 2 * ROWS
    assert "reading items in one process from now on" in caplog.text
    assert "schemas of items changed" in caplog.text


class TestParallelBulkConformance(SourceConformance):
    """The source conformance suite with every bulk cycle read by the workers."""

    replays_after_complete_cycle = True

    @pytest.fixture
    def source_factory(self, server_url: str) -> SourceFactory:
        config = query_config(server_url, mode="bulk", batch_size=1, parallelism=2)
        return lambda: QuerySource(config)

    @pytest.fixture
    def insert_rows(self, server_url: str) -> RowWriter:
        table = create_orders(server_url)
        counter = itertools.count(1)

        def write(n: int) -> list[Hashable]:
            rows = [order(next(counter)) for _ in range(n)]
            insert(server_url, table, rows)
            return [("shop.orders", f'{{"id": {row["id"]}}}') for row in rows]

        return write


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stored_records(streams: Path) -> int:
    if not streams.exists():
        return 0
    try:
        with sqlite3.connect(streams) as db:
            found = db.execute("SELECT coalesce(sum(record_count), 0) FROM stream_batches")
            return int(found.fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def _stream_keys(streams: Path) -> list[int]:
    backend = EmbeddedBackend(streams)
    backend.open()
    try:
        consumer = backend.consumer("check", topics=["kill.items"])
        decode = RecordDeserializer(backend.registry()).deserialize
        keys: list[int] = []
        while batch := consumer.poll(100_000, 0.5):
            keys += [int((r.key or {})["id"]) for r in decode(batch)]
        return keys
    finally:
        backend.close()


def test_a_bulk_load_killed_mid_cycle_resumes_without_loss_or_repeat_and_leaves_no_worker(
    postgres_url: str, tmp_path: Path
) -> None:
    rows = 30_000
    engine = engine_for(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE items (id bigint PRIMARY KEY, note text)"))
            conn.execute(sa.text(
                "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, :n) g"
            ), {"n": rows})
    finally:
        engine.dispose()
    streams = tmp_path / "streams.db"
    run_file = tmp_path / "kill.yaml"
    run_file.write_text(yaml.safe_dump({
        "streams": {"backend": "embedded", "path": str(streams)},
        "sources": [{"name": "kill", "connector": "query", "database": postgres_url,
                     "tables": ["items"], "mode": "bulk", "batch_size": 500,
                     "parallelism": 3}],
    }))
    argv = [sys.executable, "-m", "liberate", "run", str(run_file), "--once"]
    process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        workers: set[int] = set()
        stored = 0
        while time.monotonic() < deadline and process.poll() is None:
            workers |= process_tree(process.pid) - {process.pid}
            stored = _stored_records(streams)
            if stored >= 5_000 and len(workers) >= 3:  # forkserver and two workers
                break
            time.sleep(0.05)
        assert process.poll() is None, "the load ended before it could be killed"
        assert 0 < stored < rows
        process.kill()  # SIGKILL: no clean-up of any kind
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    # Workers notice their parent is gone and end (they check every second).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "worker processes outlived the source"
    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    keys = _stream_keys(streams)
    assert sorted(keys) == list(range(1, rows + 1))  # every row once: no gap, no repeat
