"""The kill loop of the crash suite, and what every crash test checks afterwards.

A crash test writes a run file (a source, usually a SQL sink, and the stream backend of the
case), starts writer threads that keep changing the source, and hands the file to
:class:`KillLoop`: it starts ``liberate run FILE`` as a user does (a child process in its own
session), waits until the run makes progress, lets it run a random while longer (so the kill
lands anywhere: snapshot, streaming, sinking, committing) and SIGKILLs it; ``kills`` times.
Then the writers stop, ``liberate run FILE --once`` catches up, ``liberate verify FILE`` proves
the sink equals the source, and the test reads the stream back through the backend's own
consumer (:func:`read_topics`) to prove that no change is missing and, in exactly-once modes,
that none is there twice.

``LIBERATE_CRASH_KILLS`` sets the kills per case (default 3, the CI run; 30 is the long run,
see docs/guarantees.md). The figures are printed at the end of the pytest run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from liberate.config.loader import load_run_file
from liberate.records import SinkRecord
from liberate.runtime import open_backend
from liberate.serde import RecordDeserializer
from liberate.streams.base import end_offsets
from tests.integration._outbox_support import child_env
from tests.integration._query_support import TIMESTAMP, engine_for
from tests.integration.postgres.test_crash import check_history

#: kills per case: ``LIBERATE_CRASH_KILLS=30`` for the long run
KILLS = int(os.environ.get("LIBERATE_CRASH_KILLS", "3"))
#: longest random wait between a run's first progress and its kill
MAX_KILL_DELAY_S = float(os.environ.get("LIBERATE_CRASH_MAX_DELAY_S", "1.5"))
#: what each case survived, printed by tests/crash/conftest.py at the end of the session
RESULTS: list[str] = []
#: what liberate says when the broker made its consumer pass over committed records
#: (liberate/streams/_kafka_aborts.py): noida-db 0.2.3 does, see docs/guarantees.md
BROKER_SKIPS = ("committed record(s) of", "lists aborted transactions that ended before")


@dataclass(frozen=True)
class StreamsSpec:
    """The ``streams:`` section of a case: the embedded backend, or the session's Kafka broker
    (transactional: the exactly-once mode) with the session's schema registry."""

    backend: str
    directory: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    bootstrap: str = ""
    registry: str = ""

    def yaml(self) -> str:
        if self.backend == "embedded":
            return f"streams:\n  backend: embedded\n  path: {self.directory / 'streams.db'}\n"
        return (
            "streams:\n"
            "  backend: kafka\n"
            "  kafka:\n"
            f"    bootstrap_servers: {self.bootstrap}\n"
            f"    offsets_topic: liberate-offsets-{self.tag}\n"
            f"    transactional_id_prefix: crash-{self.tag}\n"
            # A killed sink never leaves its group: without static membership its successor
            # waits for the dead member's session (45 s on Kafka; noida-db never evicts it).
            "    properties:\n"
            f"      group.instance.id: crash-{self.tag}\n"
            "  schema_registry:\n"
            f"    url: {self.registry}\n"
        )

    def name(self, base: str) -> str:
        """A connector name unique to this case (topics and groups outlive a case on Kafka)."""
        return f"{base}{self.tag}"


# -- the kill loop -------------------------------------------------------------------------


@dataclass
class KillReport:
    """What one kill loop did."""

    kills: int = 0
    mid_progress: int = 0  # kills of a run whose stream (or sink) had grown since its start


class KillLoop:
    """Start ``liberate run FILE`` in a child, SIGKILL it at a random moment, again and again.

    ``progress`` returns a number that grows while the run works (records in the stream, rows
    in the sink). The kill comes a random 0..``MAX_KILL_DELAY_S`` after the run first moved it.
    """

    def __init__(self, run_file: Path, progress: Callable[[], int], *, seed: int = 0) -> None:
        self.run_file = run_file
        self.progress = progress
        self.rng = random.Random(seed)
        self.log = run_file.parent / "runs.log"
        self.env = {**child_env(run_file.parent), "PYTHONUNBUFFERED": "1"}
        #: liberate's error when the broker made a sink pass over committed records: the
        #: sink stopped there (as it must); the case ends as an expected failure
        self.broker_skipped: str | None = None

    def kill_repeatedly(self, kills: int = KILLS, *, progress_timeout_s: float = 120) -> KillReport:
        report = KillReport()
        for _ in range(kills):
            before = self.progress()
            child = self._spawn()
            try:
                progressed = self._wait_for_progress(child, before, progress_timeout_s)
                if progressed:
                    time.sleep(self.rng.uniform(0, MAX_KILL_DELAY_S))
                    assert child.poll() is None, f"the run exited by itself:\n{self.tail()}"
            finally:
                _kill(child)
            if not progressed:
                break  # progress counts sink rows, and the sink stopped at skipped records
            report.kills += 1
            report.mid_progress += self.progress() > before
        self._broker_skipped()
        return report

    def once(self, timeout_s: float = 300) -> None:
        """``liberate run FILE --once``: must catch up and exit 0 (or fail naming records
        the broker made the sink pass over)."""
        done = self._liberate("-v", "run", str(self.run_file), "--once", timeout_s=timeout_s)
        output = done.stdout + done.stderr
        if done.returncode != 0 and all(words in output for words in BROKER_SKIPS):
            self._broker_skipped()  # the sources caught up; the sink stopped where it must
            return
        assert done.returncode == 0, f"--once failed ({done.returncode}):\n{self.tail()}"

    def expected_failure(self) -> None:
        """End the case as an expected failure when the broker made the sink pass over
        committed records (the stream itself has been checked by then)."""
        if self.broker_skipped:
            pytest.xfail(f"the broker made the sink pass over committed records (liberate"
                         f" stopped there, as it must): {self.broker_skipped}")

    def _broker_skipped(self) -> bool:
        if self.broker_skipped is None and self.log.exists():
            text = self.log.read_text(errors="replace")
            found = [line for line in text.splitlines()
                     if all(words in line for words in BROKER_SKIPS)]
            if found:
                self.broker_skipped = found[-1].strip()[-600:]
        return self.broker_skipped is not None

    def verify(self, run_file: Path | None = None) -> str:
        """``liberate verify FILE``: must find every sink table equal to its source table
        (not run when the sink stopped at records the broker skipped: it cannot be)."""
        if self.broker_skipped:
            return ""
        done = self._liberate("verify", str(run_file or self.run_file), timeout_s=300)
        text = done.stdout + done.stderr
        assert done.returncode == 0, f"verify found differences:\n{text}"
        assert "DIFFERENT" not in text and "equal" in text, text
        return text

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "liberate", "-v", "run", str(self.run_file)],
                cwd=self.run_file.parent, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _liberate(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "liberate", *args], cwd=self.run_file.parent, env=self.env,
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        with self.log.open("a") as out:
            out.write(f"--- liberate {' '.join(args)}: exit {done.returncode}\n")
            out.write(done.stdout + done.stderr)
        return done

    def _wait_for_progress(
        self, child: subprocess.Popen[bytes], before: int, timeout_s: float
    ) -> bool:
        """True once the run made progress; False when it cannot because the broker made
        its sink pass over committed records (the sink stopped there)."""
        started = time.monotonic()
        deadline = started + timeout_s
        next_look = started + 30  # a run shows progress well within this
        while self.progress() <= before:
            assert child.poll() is None, f"the run exited by itself:\n{self.tail()}"
            now = time.monotonic()
            if now >= next_look:
                next_look = now + 1
                if self._broker_skipped():
                    return False
            assert now < deadline, f"the run made no progress:\n{self.tail()}"
            time.sleep(0.05)
        return True


def _kill(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(30)


def record_result(case: str, report: KillReport, checked: str) -> None:
    """Note what a case survived, for the summary at the end of the run."""
    RESULTS.append(
        f"{case}: {report.kills} kills survived ({report.mid_progress} mid-progress); {checked}"
    )


# -- reading the stream back ---------------------------------------------------------------


def stream_size(run_file: Path, prefix: str = "") -> int:
    """Records in the run's topics starting with ``prefix`` (0 before any exist)."""
    config = load_run_file(str(run_file))
    backend = open_backend(config.streams)
    try:
        return sum(
            sum(info.end_offsets.values())
            for info in backend.topics()
            if info.name.startswith(prefix)
        )
    finally:
        backend.close()


def read_topics(run_file: Path, topics: Iterable[str]) -> list[SinkRecord]:
    """Every committed record of ``topics``, decoded, in stream order (per partition), read by
    a fresh consumer group of the run's backend."""
    names = list(topics)
    config = load_run_file(str(run_file))
    # A Kafka group needs a while to be assigned: stop only after a few seconds of nothing.
    idle_s = 3.0 if config.streams.backend == "kafka" else 0.0
    backend = open_backend(config.streams)
    try:
        present = {t.name for t in backend.topics()}
        names = [n for n in names if n in present]
        if not names:
            return []
        consumer = backend.consumer(f"crash-check-{uuid.uuid4().hex[:8]}", topics=names)
        deserializer = RecordDeserializer(backend.registry())
        records: list[SinkRecord] = []
        quiet_since = time.monotonic()
        deadline = time.monotonic() + 300
        ends = end_offsets(backend.topics())
        try:
            while True:
                assert time.monotonic() < deadline, (
                    f"reading the stream back took over 300 s ({len(records)} records read)")
                batch = consumer.poll(10_000, 0.2)
                if batch:
                    records.extend(deserializer.deserialize(batch))
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= idle_s:
                    # The end of every partition, past its last transaction marker (on Kafka,
                    # asking the positions also checks what the consumer passed over last).
                    positions = consumer.positions()
                    behind = [tp for tp, end in ends.items()
                              if tp.topic in names and max(
                                  positions.get(tp, 0),
                                  max((r.offset + 1 for r in records if
                                       (r.topic, r.partition) == (tp.topic, tp.partition)),
                                      default=0)) < end]
                    if not behind:
                        break
                    quiet_since = time.monotonic()
        finally:
            consumer.close()
        return records
    finally:
        backend.close()


def topics_with_prefix(run_file: Path, prefix: str) -> list[str]:
    config = load_run_file(str(run_file))
    backend = open_backend(config.streams)
    try:
        return sorted(t.name for t in backend.topics() if t.name.startswith(prefix))
    finally:
        backend.close()


# -- versioned tables and their writers ----------------------------------------------------


def items_table(name: str) -> sa.Table:
    """``id`` key, ``v`` the row's version (0 at insert, +1 per update), a timestamp, a text."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("v", sa.Integer, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("payload", sa.String(100), nullable=False),
    )


def create_items(url: str, table: sa.Table, rows: int) -> None:
    """Create ``table`` with ids 1..``rows`` at version 0."""
    engine = engine_for(url)
    try:
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            insert = table.insert().values(updated_at=sa.func.current_timestamp())
            for start in range(1, rows + 1, 5_000):
                conn.execute(insert, [{"id": i, "v": 0, "payload": f"row {i}"}
                                      for i in range(start, min(start + 5_000, rows + 1))])
    finally:
        engine.dispose()


def final_versions(url: str, table: sa.Table) -> dict[int, int]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return {int(i): int(v) for i, v in conn.execute(sa.select(table.c.id, table.c.v))}
    finally:
        engine.dispose()


class VersionWriter(threading.Thread):
    """Commits small transactions on a versioned table until ``finish()``: inserts of new ids,
    updates (``v + 1``) and, if ``deletes``, deletes; one thread, so commits follow id and
    timestamp order (what polling sources need to see every row)."""

    def __init__(
        self, url: str, table: sa.Table, *, first_id: int, updates: bool = True,
        deletes: bool = False, pause_s: float = 0.01, seed: int = 1,
    ) -> None:
        super().__init__(daemon=True, name=f"writer-{table.name}")
        self.url, self.table = url, table
        self.updates, self.deletes, self.pause_s = updates, deletes, pause_s
        self.rng = random.Random(seed)
        self.next_id = first_id
        self.committed = 0
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        engine = engine_for(self.url)
        try:
            while not self._done.is_set():
                with engine.begin() as conn:
                    for _ in range(self.rng.randint(1, 3)):
                        self._change(conn)
                self.committed += 1
                time.sleep(self.pause_s)
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            engine.dispose()

    def _change(self, conn: sa.Connection) -> None:
        t, choice = self.table, self.rng.random()
        now = sa.func.current_timestamp()
        if not self.updates or choice < 0.3:
            conn.execute(t.insert().values(id=self.next_id, v=0, updated_at=now,
                                           payload=f"new {self.next_id}"))
            self.next_id += 1
        elif not self.deletes or choice < 0.9:
            target = self.rng.randrange(1, self.next_id)
            conn.execute(t.update().where(t.c.id == target).values(v=t.c.v + 1, updated_at=now))
        else:
            conn.execute(t.delete().where(t.c.id == self.rng.randrange(1, self.next_id)))

    def finish(self) -> None:
        self._done.set()
        self.join(30)
        assert self.error is None, self.error
        assert self.committed > 0, "the writer committed nothing"


# -- checks on the stream ------------------------------------------------------------------


def key_of(record: SinkRecord) -> int:
    assert record.key is not None
    return int(record.key["id"])


def check_polled(
    records: list[SinkRecord], final: Mapping[int, int], *, exactly_once: bool
) -> Counter[str]:
    """A polled (entity) topic: the last record of every key carries the row's final version
    (nothing lost, per-key order kept), no key is in the stream that is not in the table, and
    with ``exactly_once`` no version of a row is there twice."""
    last: dict[int, int] = {}
    seen: Counter[tuple[int, int]] = Counter()
    for record in records:
        assert record.value is not None, f"unexpected tombstone at {record.offset}"
        key, version = key_of(record), int(record.value["v"])
        assert version >= last.get(key, -1), (
            f"key {key} went back from version {last[key]} to {version} at {record.offset}"
        )
        last[key] = version
        seen[(key, version)] += 1
    missing = sorted(set(final) - set(last))[:5]
    assert not missing, f"rows never in the stream (lost): {missing}"
    stale = [(k, last[k], v) for k, v in final.items() if last[k] != v][:5]
    assert not stale, f"(key, last streamed version, table version) differ (lost): {stale}"
    assert set(last) <= set(final), f"keys not in the table: {sorted(set(last) - set(final))[:5]}"
    twice = [kv for kv, n in seen.items() if n > 1]
    if exactly_once:
        assert not twice, f"(key, version) in the stream more than once: {twice[:5]}"
    return Counter(records=len(records), keys=len(last), repeated=len(twice))


def cdc_crash_case(
    url: str, streams: StreamsSpec, tmp_path: Path, *, connector: str, schema: str,
    source_settings: str, seed: int, rows: int = 5_000,
) -> None:
    """The crash case of a change-data-capture source (``connector``) into a SQL sink on
    SQLite: an ``items`` table of ``rows`` rows in ``schema`` while a writer inserts, updates
    and deletes; the run killed again and again, then ``--once`` and verify; the stream must
    hold every version of every row once, in order (``check_history``).

    ``source_settings``: the source's own YAML lines (indented four spaces).
    """
    table = items_table("items")
    create_items(url, table, rows)
    source = streams.name(connector)
    topic = f"{source}.{schema}.items"
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        streams.yaml()
        + "sources:\n"
        + f"  - name: {source}\n"
        + f"    connector: {connector}\n"
        + f"    database: {url}\n"
        + "    tables: [items]\n"
        + source_settings
        + "sinks:\n"
        + f"  - name: {streams.name('wh')}\n"
        + "    connector: sql\n"
        + f"    database: sqlite:///{tmp_path / 'warehouse.db'}\n"
        + f"    topics: [{topic}]\n"
        + "    batch_size: 300\n"
    )
    writer = VersionWriter(url, table, first_id=rows + 1, deletes=True)
    writer.start()
    loop = KillLoop(run_file, lambda: stream_size(run_file, topic), seed=seed)
    try:
        report = loop.kill_repeatedly()
    finally:
        writer.finish()
    loop.once()
    loop.verify()
    records = read_topics(run_file, [topic])
    counts = check_history(records, final_versions(url, table))
    record_result(f"{connector}/{streams.backend}", report,
                  f"{len(records)} records, ops {dict(counts)}")
    loop.expected_failure()
