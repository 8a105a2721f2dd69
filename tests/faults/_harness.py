"""What every fault test does: run ``liberate run FILE`` as a user does (a child process), let
it make progress, break something it depends on (a database, the broker, the disk), add more
rows, and then check that the run retried, resumed and lost nothing.

The run file of a fault test always sinks into two SQLite tables beside the test: ``items``
(upsert: must equal the source) and ``items_log`` (append, no key: holds every record exactly
once only because the sink commits its offsets with the rows), unless the test sinks
elsewhere itself.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pymysql
import yaml

from liberate.config.loader import load_run_file
from liberate.runtime import open_backend

REPO = Path(__file__).resolve().parents[2]
#: how long a run may take to catch up after a fault (retries back off up to 30 s)
CATCH_UP_S = 180.0


def wait_for(condition: Callable[[], bool], *, timeout_s: float, what: str,
             process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll ``condition`` until it holds; fail with the run's log tail when it does not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            break
        if log is not None and " ERROR " in log.read_text(errors="replace"):
            break  # a connector failed: the run will not catch up
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-4000:] if log is not None else ""
    raise AssertionError(f"timed out waiting for {what}\n--- run log (tail) ---\n{tail}")


class Restartable(Protocol):
    def shutdown(self) -> None: ...
    def start(self) -> object: ...


#: how long a restarted server stays down: longer than a poll interval, so the run sees it
OUTAGE_S = 2.0


def outage(server: Restartable) -> Callable[[], None]:
    """A clean shutdown, ``OUTAGE_S`` down (the run must notice and back off), a start on the
    same port with the same data."""

    def fault() -> None:
        server.shutdown()
        time.sleep(OUTAGE_S)
        server.start()

    return fault


def sink_section(target: Path, topic: str) -> list[dict[str, Any]]:
    """The two SQLite sinks of a fault test reading ``topic``."""
    database = f"sqlite:///{target}"
    return [
        {"name": "mirror", "connector": "sql", "database": database, "topics": [topic],
         "table": "items", "batch_size": 500},
        {"name": "log", "connector": "sql", "database": database, "topics": [topic],
         "table": "items_log", "pk_mode": "none", "batch_size": 300},
    ]


@dataclass
class FaultRun:
    """One run file and the ``liberate run`` child process that runs it."""

    directory: Path
    streams: Mapping[str, Any]
    sources: list[dict[str, Any]]
    sinks: list[dict[str, Any]]
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.directory / "run.yaml"

    def write(self) -> FaultRun:
        self.path.write_text(yaml.safe_dump(
            {"streams": dict(self.streams), "sources": self.sources, "sinks": self.sinks}
        ))
        return self

    def start(self, *args: str, preexec_fn: Callable[[], None] | None = None) -> None:
        """``python -m liberate -v run FILE [args]`` in its own session, logging to a file."""
        log = self.directory / f"run-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "liberate", "-v", "run", str(self.path), *args],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                preexec_fn=preexec_fn,
            )

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (finish the batches in flight, commit, exit 0); SIGKILL if it hangs."""
        process = self.process
        assert process is not None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                process.kill()
                process.wait()
                raise AssertionError(
                    f"the run did not stop on SIGTERM\n{self.log_text()}"
                ) from exc
        self.process = None
        return process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log_text(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs)

    def topic_record_count(self, topic: str) -> int:
        """How many records the stream holds for ``topic`` (embedded backend)."""
        backend = open_backend(load_run_file(str(self.path)).streams)
        try:
            return sum(t.records for t in backend.topics() if t.name == topic)
        finally:
            backend.close()


# The two sink tables of a fault test, as fixed statements (no name formatted into SQL).
_SELECT_IDS = {"items": "SELECT id FROM items", "items_log": "SELECT id FROM items_log"}
_SELECT_ROWS = {"items": "SELECT id, label FROM items",
                "items_log": "SELECT id, label FROM items_log"}


def sqlite_ids(target: Path, table: str) -> list[int]:
    """The ``id`` column of a sink table (empty until the sink creates it)."""
    if not target.exists():
        return []
    with sqlite3.connect(target, timeout=30) as conn:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if exists is None:
            return []
        return [int(row[0]) for row in conn.execute(_SELECT_IDS[table])]


def sqlite_rows(target: Path, table: str) -> dict[int, str]:
    with sqlite3.connect(target, timeout=30) as conn:
        return {int(r[0]): str(r[1]) for r in conn.execute(_SELECT_ROWS[table])}


def assert_sink_holds_exactly(target: Path, expected: dict[int, str]) -> None:
    """The upserted table equals the source; the append-only log has every row exactly once."""
    assert sqlite_rows(target, "items") == expected
    logged = sqlite_ids(target, "items_log")
    assert len(logged) == len(expected), "a record is missing or was written twice"
    assert set(logged) == set(expected)


def assert_reported(log: str, connector: str) -> None:
    """The run said, as a warning, which connector hit what, and that it retries."""
    warnings = [line for line in log.splitlines()
                if re.search(rf"WARNING +[\w.]+: {re.escape(connector)}: ", line)]
    assert warnings, f"no warning names {connector}:\n{log[-3000:]}"
    assert re.search(r"retry|retrying|reconnecting", log), log[-3000:]


def postgres_insert(url: str, start: int, count: int, *, per_txn: int = 200) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for first in range(start, start + count, per_txn):
            last = min(first + per_txn, start + count)
            with conn.transaction():
                conn.cursor().executemany(
                    "INSERT INTO items (id, label) VALUES (%s, %s)",
                    [(i, f"item {i}") for i in range(first, last)],
                )


def postgres_rows(url: str) -> dict[int, str]:
    with psycopg.connect(url) as conn:
        return {int(r[0]): str(r[1]) for r in conn.execute("SELECT id, label FROM items")}


def mysql_connect(url: str) -> pymysql.connections.Connection:
    rest = url.split("://", 1)[1]
    user_host, database = rest.split("/", 1)
    user, host_port = user_host.split("@", 1)
    host, port = host_port.split(":")
    return pymysql.connect(host=host, port=int(port), user=user, database=database,
                           autocommit=True, connect_timeout=5)


def mysql_insert(url: str, start: int, count: int, *, per_txn: int = 200) -> None:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            for first in range(start, start + count, per_txn):
                last = min(first + per_txn, start + count)
                conn.begin()
                cur.executemany("INSERT INTO items (id, label) VALUES (%s, %s)",
                                [(i, f"item {i}") for i in range(first, last)])
                conn.commit()
    finally:
        conn.close()


def mysql_rows(url: str) -> dict[int, str]:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, label FROM items")
            return {int(r[0]): str(r[1]) for r in cur.fetchall()}
    finally:
        conn.close()


def sqlite_insert(db: Path, start: int, count: int) -> None:
    with sqlite3.connect(db, timeout=30) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, label TEXT "
                     "NOT NULL)")
        conn.executemany("INSERT INTO items (id, label) VALUES (?, ?)",
                         [(i, f"item {i}") for i in range(start, start + count)])
