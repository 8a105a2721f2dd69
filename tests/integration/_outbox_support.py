"""Connections, tables, relays and stream reads for the outbox tests, alike on every database."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

import outbox
from connectors.outbox import OutboxSource, OutboxSourceConfig
from liberate import plugins
from liberate.config.base import DatabaseSettings
from liberate.database import database_url
from liberate.errors import LiberateError
from liberate.records import SinkRecord
from liberate.runtime._source_task import SourceTask
from liberate.serde import RecordDeserializer, RecordSerializer
from liberate.streams.embedded import EmbeddedBackend

ROOT = Path(__file__).resolve().parents[2]


def child_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a ``python -m liberate`` child that knows ``connector: outbox``.

    Until the connector is registered in pyproject.toml, a throwaway distribution on the
    child's PYTHONPATH declares the ``liberate.sources`` entry point (the way any third-party
    connector registers).
    """
    paths = [str(ROOT)]
    if "outbox" not in plugins.available(plugins.SOURCES_GROUP):
        dist = tmp_path / "plugins" / "liberate_outbox_relay_test-0.0.0.dist-info"
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: liberate-outbox-relay-test\nVersion: 0.0.0\n"
        )
        (dist / "entry_points.txt").write_text(
            "[liberate.sources]\noutbox = connectors.outbox:OutboxSource\n"
        )
        paths.insert(0, str(dist.parent))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def kill_repeatedly(
    run_file: Path, tmp_path: Path, *, kills: int, seed: int, alive_s: tuple[float, float],
    verbose: bool = False,
) -> None:
    """Start ``liberate run FILE`` in a child ``kills`` times, each SIGKILLed after a random
    time in ``alive_s``; the children's output goes to ``relay.log`` (``relay_log`` reads it).

    Each child's clock starts only once the stream at ``tmp_path/streams.db`` holds more event
    records than when it started: on a loaded machine starting Python and connecting can take
    longer than ``alive_s``, and a test whose relays never got going proves nothing. (Records
    of other topics, such as heartbeats an earlier run wrote, do not count.)"""
    env = child_env(tmp_path)
    rng = random.Random(seed)
    command = [sys.executable, "-m", "liberate", *(["-v"] if verbose else []), "run",
               str(run_file)]
    streams = tmp_path / "streams.db"
    with (tmp_path / "relay.log").open("a") as log:
        for _ in range(kills):
            before = _event_count(streams)
            child = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)
            try:
                _wait_for_events(streams, child, more_than=before, timeout_s=90)
                time.sleep(rng.uniform(*alive_s))
                assert child.poll() is None, f"the relay exited early:\n{relay_log(tmp_path)}"
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait(30)


def _event_count(path: Path, prefix: str = "outbox.event.") -> int | None:
    """How many records the event topics of the stream at ``path`` hold (None: no store yet,
    or one its writer is still creating)."""
    if not path.exists():
        return None
    backend = EmbeddedBackend(path)
    try:
        backend.open()
    except (LiberateError, sqlite3.Error):
        return None
    try:
        return sum(info.records for info in backend.topics() if info.name.startswith(prefix))
    finally:
        backend.close()


def _wait_for_events(path: Path, child: subprocess.Popen[bytes], *, more_than: int | None,
                     timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.poll() is None:
        count = _event_count(path)
        if count is not None and count > (more_than or 0):
            return
        time.sleep(0.2)


def run_once_in_child(run_file: Path, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    """``liberate run FILE --once`` in a child, its output appended to ``relay.log``."""
    with (tmp_path / "relay.log").open("a") as log:
        return subprocess.run(
            [sys.executable, "-m", "liberate", "run", str(run_file), "--once"],
            cwd=tmp_path, env=child_env(tmp_path), stdout=log, stderr=log, timeout=120,
            check=False,
        )


def relay_log(tmp_path: Path) -> str:
    """The end of the children's ``relay.log``."""
    path = tmp_path / "relay.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@pytest.fixture(params=["postgresql", "mysql"])
def log_db_url(request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL or MariaDB database with the outbox table (for ``mode: log``)."""
    url: str = request.getfixturevalue(
        "postgres_url" if request.param == "postgresql" else "mysql_url"
    )
    create_outbox(url)
    return url


def engine_for(url: str) -> Engine:
    """An engine on ``url`` with liberate's default drivers."""
    return sa.create_engine(database_url(DatabaseSettings(database=url)))


def kind_of(url: str) -> str:
    """``postgresql``, ``mysql`` or ``sqlite``."""
    backend = make_url(url).get_backend_name()
    return "mysql" if backend == "mariadb" else backend


def native_connection(url: str) -> Any:
    """A DB-API connection of the driver an application would use: psycopg 3, PyMySQL, sqlite3.

    Not in autocommit mode: statements run in an implicit transaction until commit/rollback.
    A sqlite3 connection may be handed to another thread (tests do, one thread at a time).
    """
    parsed = make_url(url)
    kind = kind_of(url)
    if kind == "postgresql":
        return psycopg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username,
            password=parsed.password or "", dbname=parsed.database,
        )
    if kind == "mysql":
        return pymysql.connect(
            host=parsed.host or "127.0.0.1", port=parsed.port or 3306,
            user=parsed.username or "root", password=parsed.password or "",
            database=parsed.database, autocommit=False,
        )
    return sqlite3.connect(parsed.database or "", timeout=30, check_same_thread=False)


def create_outbox(url: str) -> None:
    """Create the default outbox table with the shipped DDL."""
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            outbox.create_table(conn)
    finally:
        engine.dispose()


def outbox_rows(url: str, table: str = "outbox", id_column: str = "id") -> list[str]:
    """The event ids in the outbox table, in seq order if it has one."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            query = sa.select(sa.cast(t.c[id_column], sa.String))
            if "seq" in t.c:
                query = query.order_by(t.c.seq)
            return [str(v) for v in conn.execute(query).scalars()]
    finally:
        engine.dispose()


def relay_config(url: str, **settings: Any) -> OutboxSourceConfig:
    """A relay config on ``url`` (name ``relay``) with ``settings`` on top."""
    return OutboxSourceConfig.model_validate(
        {"name": "relay", "connector": "outbox", "database": url, **settings}
    )


def stream_records(path: Path, topics: list[str] | None = None) -> list[SinkRecord]:
    """Every record of ``topics`` (all topics when None) in the embedded stream at ``path``."""
    backend = EmbeddedBackend(path)
    backend.open()
    try:
        names = topics if topics is not None else [t.name for t in backend.topics()]
        if not names:
            return []
        consumer = backend.consumer("outbox-test-reader", topics=names)
        deserializer = RecordDeserializer(backend.registry())
        records: list[SinkRecord] = []
        try:
            while True:
                batch = consumer.poll(10_000, 0.2)
                if not batch:
                    return records
                records.extend(deserializer.deserialize(batch))
        finally:
            consumer.close()
    finally:
        backend.close()


def event_records(path: Path, prefix: str = "outbox.event.") -> list[SinkRecord]:
    """The records of the event topics (``prefix``) in the embedded stream at ``path``, leaving
    out heartbeats and dead letters."""
    backend = EmbeddedBackend(path)
    backend.open()
    try:
        topics = [t.name for t in backend.topics() if t.name.startswith(prefix)]
    finally:
        backend.close()
    return stream_records(path, topics) if topics else []


def header(record: SinkRecord, name: str) -> str | None:
    """The first header ``name`` of ``record`` as text."""
    for key, value in record.headers:
        if key == name:
            return value.decode()
    return None


class RelayRun:
    """The relay driven by the runtime's own source loop, on a background thread."""

    def __init__(self, config: OutboxSourceConfig, backend: EmbeddedBackend) -> None:
        self.source = OutboxSource(config)
        self.stop_event = threading.Event()
        self.task = SourceTask(
            self.source, backend, RecordSerializer(backend.registry()), self.stop_event,
            once=False, schedule=None, max_retries=None,
        )
        self.thread = threading.Thread(target=self.task.run, name="relay", daemon=True)

    def __enter__(self) -> RelayRun:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.source.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the relay did not stop"

    @property
    def error(self) -> str | None:
        return self.task.stats.error


def run_relay_once(config: OutboxSourceConfig, backend: EmbeddedBackend) -> None:
    """Run the relay through the runtime's source loop until it has caught up."""
    source = OutboxSource(config)
    task = SourceTask(
        source, backend, RecordSerializer(backend.registry()), threading.Event(),
        once=True, schedule=None, max_retries=0,
    )
    task.run()
    assert task.stats.error is None, task.stats.error


@contextmanager
def embedded_backend(path: Path) -> Iterator[EmbeddedBackend]:
    backend = EmbeddedBackend(path)
    backend.open()
    try:
        yield backend
    finally:
        backend.close()


class EventWriters:
    """Writer threads, each with its own connection, publishing numbered events of its own
    aggregates (``w<writer>-a<n>``) in transactions of 1-3 events.

    ``hold_rate`` of the transactions stay open 100 ms after their inserts, while later ones
    commit and get relayed; ``rollback_rate`` roll back; ``pause_s`` separates a writer's
    transactions; ``delete_after_insert`` publishes that way (for log-based relays). Each
    writer runs ``transactions`` transactions, or until ``stop()``.
    Records every committed event, per aggregate in commit order.
    """

    def __init__(
        self, url: str, *, writers: int, transactions: int | None = None,
        hold_rate: float = 0.25, rollback_rate: float = 0.15, pause_s: float = 0.0,
        delete_after_insert: bool = False,
    ) -> None:
        self.url = url
        self.delete_after_insert = delete_after_insert
        self.transactions = transactions
        self.hold_rate, self.rollback_rate, self.pause_s = hold_rate, rollback_rate, pause_s
        self.committed: dict[str, list[int]] = defaultdict(list)
        self.committed_ids: set[str] = set()
        self.rolled_back_ids: set[str] = set()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, args=(w,)) for w in range(writers)]

    def start(self) -> EventWriters:
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> None:
        """Wait for the writers (after ``stop()``, or their last transaction)."""
        for thread in self._threads:
            thread.join()
        assert not self.errors, self.errors

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def check(self, records: list[SinkRecord]) -> None:
        """``records`` hold every committed event exactly once, no rolled-back one, and each
        aggregate's events in commit order."""
        ids = [header(r, "id") for r in records]
        assert Counter(ids) == Counter(self.committed_ids), "every committed event exactly once"
        assert not self.rolled_back_ids & set(ids)
        relayed: dict[str, list[int]] = defaultdict(list)
        for record in records:
            assert record.key is not None and record.value is not None
            relayed[record.key["aggregateid"]].append(json.loads(record.value["payload"])["n"])
        assert relayed == self.committed

    def _write(self, w: int) -> None:
        rng = random.Random(w)
        conn = native_connection(self.url)
        counters: Counter[str] = Counter()
        done = 0
        try:
            while not self._stop.is_set() and (self.transactions is None
                                               or done < self.transactions):
                done += 1
                events: list[outbox.OutboxEvent] = []
                try:
                    for _ in range(rng.randint(1, 3)):
                        aggregate = f"w{w}-a{rng.randint(0, 2)}"
                        counters[aggregate] += 1
                        events.append(outbox.OutboxEvent("Order", aggregate, "OrderChanged",
                                                         {"n": counters[aggregate]}))
                        outbox.publish(conn, events[-1],
                                       delete_after_insert=self.delete_after_insert)
                        time.sleep(rng.uniform(0, 0.01))
                    if rng.random() < self.hold_rate:
                        time.sleep(0.1)
                    rollback = rng.random() < self.rollback_rate
                except (pymysql.err.OperationalError, psycopg.errors.DeadlockDetected) as exc:
                    # InnoDB's gap locks make concurrent insert-then-delete writers deadlock
                    # now and then: the database rolled the transaction back, as an app sees.
                    if not _is_deadlock(exc):
                        raise
                    rollback = True
                if rollback:
                    conn.rollback()
                    for event in events:
                        counters[event.aggregate_id] -= 1
                    with self._lock:
                        self.rolled_back_ids.update(e.id for e in events)
                    continue
                conn.commit()
                with self._lock:
                    for event in events:
                        self.committed[event.aggregate_id].append(
                            json.loads(event.payload_json or "")["n"])
                        self.committed_ids.add(event.id)
                time.sleep(self.pause_s)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            conn.close()


def _is_deadlock(exc: Exception) -> bool:
    if isinstance(exc, pymysql.err.OperationalError):
        return bool(exc.args) and exc.args[0] in (1205, 1213)
    return True
