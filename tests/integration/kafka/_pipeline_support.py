"""Run files and running pipelines for the Kafka lane: a query source on SQLite, Kafka in the
middle, an SQL sink on SQLite."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from liberate.config.loader import parse_run_file
from liberate.config.models import KafkaSettings, RunConfig
from liberate.runtime import Pipeline, RunReport, open_backend
from liberate.streams.kafka import KafkaBackend

RUN_FILE = """\
streams:
  backend: kafka
  kafka:
    bootstrap_servers: {bootstrap}
    offsets_topic: {offsets_topic}
    transactional_id_prefix: {prefix}
  schema_registry:
    url: {registry}
    retries: 0
    timeout_s: 5
sources:
  - name: {source}
    connector: query
    database: sqlite:///{shop}
    tables: [orders]
    mode: incrementing
    incrementing_column: id
    batch_size: 100
    schedule: 100ms
"""

SINK = """\
sinks:
  - name: {sink}
    connector: sql
    database: sqlite:///{warehouse}
    topics: [{topic}]
    mode: upsert
    auto_create: true
"""


@dataclass
class Shop:
    """A SQLite shop database, a SQLite warehouse, and a run file that links them via Kafka."""

    directory: Path
    bootstrap: str
    registry: str
    tag: str = ""

    def __post_init__(self) -> None:
        self.tag = self.tag or uuid.uuid4().hex[:8]
        with sqlite3.connect(self.shop) as db:
            db.execute(
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL,"
                " amount INTEGER NOT NULL)"
            )

    @property
    def shop(self) -> Path:
        return self.directory / "shop.db"

    @property
    def warehouse(self) -> Path:
        return self.directory / "warehouse.db"

    @property
    def source(self) -> str:
        return f"shop-{self.tag}"

    @property
    def sink(self) -> str:
        return f"warehouse-{self.tag}"

    @property
    def topic(self) -> str:
        return f"{self.source}.orders"

    def run_file(self, *, with_sink: bool = True, registry: str | None = None) -> Path:
        text = RUN_FILE.format(
            bootstrap=self.bootstrap,
            offsets_topic=f"liberate-offsets-{self.tag}",
            prefix=f"lt-{self.tag}",
            registry=registry or self.registry,
            source=self.source,
            shop=self.shop,
        )
        if with_sink:
            text += SINK.format(sink=self.sink, warehouse=self.warehouse, topic=self.topic)
        path = self.directory / ("run.yaml" if with_sink else "source-only.yaml")
        path.write_text(text)
        return path

    def config(self, *, with_sink: bool = True) -> RunConfig:
        path = self.run_file(with_sink=with_sink)
        return parse_run_file(path.read_text(), path)

    def settings(self) -> KafkaSettings:
        settings = self.config().streams.kafka
        assert settings is not None
        return settings

    def insert(self, ids: range) -> None:
        with sqlite3.connect(self.shop) as db:
            db.executemany(
                "INSERT INTO orders (id, customer, amount) VALUES (?, ?, ?)",
                [(i, f"customer-{i % 17}", i * 3) for i in ids],
            )

    def warehouse_ids(self) -> list[int]:
        if not self.warehouse.exists():
            return []
        with sqlite3.connect(self.warehouse) as db:
            try:
                return [int(r[0]) for r in db.execute("SELECT id FROM orders ORDER BY id")]
            except sqlite3.OperationalError:  # not created yet
                return []

    def wait_for_warehouse(self, count: int, timeout_s: float = 60.0) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ids = self.warehouse_ids()
            if len(ids) >= count:
                return ids
            time.sleep(0.1)
        return self.warehouse_ids()

    def topic_keys(self, expected: int, timeout_s: float = 20.0) -> Counter[bytes | None]:
        """How often each key is in the topic (committed records, read from the start)."""
        backend = KafkaBackend(self.settings())
        backend.open()
        consumer = backend.consumer(f"count-{uuid.uuid4().hex[:8]}", topics=[self.topic])
        keys: Counter[bytes | None] = Counter()
        try:
            deadline = time.monotonic() + timeout_s
            while sum(keys.values()) < expected and time.monotonic() < deadline:
                keys.update(r.key for r in consumer.poll(1000, 0.2))
            keys.update(r.key for r in consumer.poll(1000, 0.5))
        finally:
            consumer.close()
            backend.close()
        return keys


class RunningPipeline:
    """A pipeline on its own thread until ``stop()``; ``report`` is set then."""

    def __init__(self, config: RunConfig) -> None:
        self.backend = open_backend(config.streams)
        self.pipeline = Pipeline(config, self.backend, max_retries=None)
        self.report: RunReport | None = None
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.report = self.pipeline.run()

    def stop(self) -> RunReport:
        self.pipeline.stop()
        self._thread.join(60)
        self.backend.close()
        assert self.report is not None, "the pipeline did not stop"
        return self.report


@contextmanager
def running(config: RunConfig) -> Iterator[RunningPipeline]:
    """Run ``config`` in the background for the duration of the block."""
    run = RunningPipeline(config)
    try:
        yield run
    finally:
        if run.report is None:
            run.stop()


def liberate(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m liberate ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "liberate", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
