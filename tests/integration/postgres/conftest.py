"""Helpers for the PostgreSQL WAL source tests: a run file per test, running it (in this process
or as ``python -m liberate run`` in a child), and reading its topics back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from liberate.config.loader import load_run_file
from liberate.records import SinkRecord
from liberate.runtime import Pipeline, RunReport, open_backend
from liberate.serde import RecordDeserializer

REPO = Path(__file__).resolve().parents[3]
SOURCE = "cdc"


@dataclass
class Database:
    """A test database: run SQL on it, read from it."""

    url: str

    def execute(self, *statements: str, params: Any = None) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement, params)

    def rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def scalar(self, query: str, params: Any = None) -> Any:
        return self.rows(query, params)[0][0]

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]


@pytest.fixture
def db(postgres_url: str) -> Database:
    return Database(postgres_url)


@dataclass
class Run:
    """A run file with one postgres source (named ``cdc``) and an embedded stream."""

    path: Path
    streams: Path
    source: dict[str, Any] = field(default_factory=dict)

    def write(self, **changes: Any) -> Run:
        self.source.update(changes)
        self.path.write_text(yaml.safe_dump({
            "streams": {"path": str(self.streams)},
            "sources": [self.source],
        }))
        return self

    def once(self) -> RunReport:
        """``liberate run FILE --once`` in this process."""
        config = load_run_file(str(self.path))
        backend = open_backend(config.streams)
        try:
            return Pipeline(config, backend, once=True).run()
        finally:
            backend.close()

    def records(self, topic: str) -> list[SinkRecord]:
        """Every record of ``topic``, decoded, in order."""
        config = load_run_file(str(self.path))
        backend = open_backend(config.streams)
        try:
            if topic not in {t.name for t in backend.topics()}:
                return []
            consumer = backend.consumer(f"test-{time.monotonic_ns()}", topics=[topic])
            decoded: list[SinkRecord] = []
            deserializer = RecordDeserializer(backend.registry())
            try:
                while True:
                    batch = consumer.poll(10_000, 0.2)
                    if not batch:
                        break
                    decoded.extend(deserializer.deserialize(batch))
            finally:
                consumer.close()
            return decoded
        finally:
            backend.close()

    def count(self, topic: str) -> int:
        config = load_run_file(str(self.path))
        backend = open_backend(config.streams)
        try:
            return sum(t.records for t in backend.topics() if t.name == topic)
        finally:
            backend.close()

    def offsets(self) -> dict[str, Any]:
        config = load_run_file(str(self.path))
        backend = open_backend(config.streams)
        try:
            return {k: dict(v) for k, v in backend.source_offsets(SOURCE).items()}
        finally:
            backend.close()

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        """``python -m liberate run FILE [args]`` in a child process (its own session)."""
        log = (self.path.parent / f"run-{time.monotonic_ns()}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "liberate", "-v", "run", str(self.path), *args],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.fixture
def run(tmp_path: Path, db: Database) -> Run:
    """A run file capturing ``items`` from the test database; ``write(...)`` changes it."""
    return Run(
        tmp_path / "run.yaml",
        tmp_path / "streams.db",
        {"name": SOURCE, "connector": "postgres", "database": db.url, "tables": ["items"]},
    ).write()


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child run (no cleanup, as a crash)."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_for(condition: Callable[[], bool], *, timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child runs started by a test; any still alive at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            kill(process)


def values(records: list[SinkRecord]) -> list[dict[str, Any]]:
    """The non-tombstone values of ``records``."""
    return [dict(r.value) for r in records if r.value is not None]
