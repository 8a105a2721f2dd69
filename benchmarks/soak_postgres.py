"""Soak: PostgreSQL change data capture at a steady rate for minutes, into the embedded stream
and a SQL sink (PostgreSQL), as a user runs it (``python -m liberate run FILE`` in a child).

    .venv/bin/python -m benchmarks.soak_postgres [--minutes 10] [--rate 5000]
        [--rows-per-txn 50] [--writers 4] [--warmup-s 60] [--json FILE]

Load: writer threads update random rows of a 50,000-row table (``soak_rows``), ``--rows-per-txn``
rows per transaction, ``synchronous_commit = on``, paced to ``--rate`` changes per second.
Lag: every 200 ms a probe transaction bumps ``soak_probe.seq``; its commit time (when COMMIT
returns to the client) is compared with when that version is first seen durable in the stream
(a consumer of the probe topic on the embedded store) and in the sink's target table. The
probe rides the same WAL, stream and sink as the load, so it waits behind it.
RSS: the liberate child's VmRSS every 5 s.

Checks (exit 1 when one fails): after ``--warmup-s``, the child's RSS never exceeds its RSS at
the end of the warm-up by more than 10%, both lags stay under 1 s (their maximum), and the
writers reach 95% of ``--rate`` (otherwise the machine, not liberate, set the pace).

Uses ``$LIBERATE_BENCH_POSTGRES_URL`` (an admin URL) or starts a durable throwaway cluster.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks._harness import machine, postgres

SOURCE_DB, SINK_DB = "soak_source", "soak_sink"
ROWS = 50_000
PROBE_EVERY_S = 0.2
RSS_EVERY_S = 5.0
MAX_RSS_GROWTH = 0.10
MAX_LAG_S = 1.0

RUN_FILE = """\
streams:
  backend: embedded
  path: {streams}
sources:
  - name: soak
    connector: postgres
    database: {source}
    tables: [soak_rows, soak_probe]
sinks:
  - name: soak-sink
    connector: sql
    database: {sink}
    topics: [soak.public.soak_rows, soak.public.soak_probe]
"""


@dataclass
class Probes:
    """Commit times of probe versions, and when each was first seen in the stream and sink."""

    committed: dict[int, float] = field(default_factory=dict)
    in_stream: dict[int, float] = field(default_factory=dict)
    in_sink: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, where: dict[int, float], seq: int, at: float) -> None:
        with self.lock:
            for version in range(seq, 0, -1):  # a version seen implies the earlier ones
                if version in where:
                    break
                where[version] = at

    def lags(self, where: dict[int, float], after: float, before: float) -> list[float]:
        """Lags of the probes committed in [after, before); one not seen yet counts as late
        as now."""
        now = time.monotonic()
        with self.lock:
            return [where.get(s, now) - t for s, t in self.committed.items()
                    if after <= t < before]

    def unseen(self, where: dict[int, float], before: float) -> int:
        with self.lock:
            return sum(1 for s, t in self.committed.items() if t < before and s not in where)


def prepare(admin_url: str) -> tuple[str, str]:
    """Fresh source and sink databases; the URLs."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in (SOURCE_DB, SINK_DB):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = admin_url.rsplit("/", 1)[0]
    source, sink = f"{base}/{SOURCE_DB}", f"{base}/{SINK_DB}"
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE TABLE soak_rows (id bigint PRIMARY KEY, n bigint NOT NULL,"
                     " note text NOT NULL, updated_at timestamptz NOT NULL)")
        conn.execute("INSERT INTO soak_rows SELECT g, 0, 'row ' || g, now()"
                     " FROM generate_series(1, %s) g", (ROWS,))
        conn.execute("CREATE TABLE soak_probe (id int PRIMARY KEY, seq bigint NOT NULL)")
        conn.execute("INSERT INTO soak_probe VALUES (1, 0)")
    return source, sink


def write_load(url: str, rate: float, rows_per_txn: int, stop: threading.Event,
               counter: list[int], seed: int) -> None:
    """Update ``rows_per_txn`` random rows a transaction, paced to ``rate`` changes/s."""
    rng = random.Random(seed)
    interval = rows_per_txn / rate
    next_at = time.monotonic()
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.commit()
        while not stop.is_set():
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE soak_rows SET n = n + 1, updated_at = now() WHERE id = %s",
                    # in key order: writers lock rows in one order and never deadlock
                    [(row_id,) for row_id in sorted(rng.randint(1, ROWS)
                                                     for _ in range(rows_per_txn))],
                )
            conn.commit()
            counter[0] += rows_per_txn
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            elif pause < -1.0:
                next_at = time.monotonic()  # behind by a second: do not burst to catch up


def write_probes(url: str, probes: Probes, stop: threading.Event) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(PROBE_EVERY_S):
            row = conn.execute("UPDATE soak_probe SET seq = seq + 1 WHERE id = 1"
                               " RETURNING seq").fetchone()
            assert row is not None
            with probes.lock:
                probes.committed[int(row[0])] = time.monotonic()


def watch_stream(streams: Path, probes: Probes, stop: threading.Event) -> None:
    """Consume the probe topic of the embedded store: a version read is durable there."""
    from liberate.serde import RecordDeserializer
    from liberate.streams.embedded import EmbeddedBackend

    backend = EmbeddedBackend(streams)
    backend.open()
    try:
        consumer = backend.consumer("soak-watch", topics=["soak.public.soak_probe"])
        deserializer = RecordDeserializer(backend.registry())
        while not stop.is_set():
            batch = consumer.poll(1000, 0.02)
            now = time.monotonic()
            for record in deserializer.deserialize(batch):
                if record.value is not None and record.value.get("after"):
                    probes.seen(probes.in_stream, int(record.value["after"]["seq"]), now)
            if not batch:
                time.sleep(0.01)
        consumer.close()
    finally:
        backend.close()


def watch_sink(url: str, probes: Probes, stop: threading.Event) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(0.02):
            try:
                row = conn.execute("SELECT seq FROM soak_probe WHERE id = 1").fetchone()
            except psycopg.errors.UndefinedTable:
                continue
            if row is not None:
                probes.seen(probes.in_sink, int(row[0]), time.monotonic())


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_caught_up(probes: Probes, timeout_s: float = 300) -> None:
    """Until the sink holds the latest probe version (the snapshot is through)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with probes.lock:
            latest = max(probes.committed, default=0)
            if latest and latest in probes.in_sink:
                return
        time.sleep(0.1)
    raise SystemExit("the run did not catch up with the probes after its snapshot")


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def soak(args: argparse.Namespace, admin_url: str, work: Path) -> int:
    source, sink = prepare(admin_url)
    streams = work / "streams.db"
    run_file = work / "soak.yaml"
    run_file.write_text(RUN_FILE.format(streams=streams, source=source, sink=sink))
    log = (work / "run.log").open("wb")
    child = subprocess.Popen([sys.executable, "-m", "liberate", "run", str(run_file)],
                             stdout=log, stderr=subprocess.STDOUT)
    probes, stop_probes, stop_load = Probes(), threading.Event(), threading.Event()
    watchers = [
        threading.Thread(target=write_probes, args=(source, probes, stop_probes)),
        threading.Thread(target=watch_sink, args=(sink, probes, stop_probes)),
    ]
    for thread in watchers:
        thread.start()
    try:
        while not streams.exists():
            time.sleep(0.1)
        watchers.append(threading.Thread(target=watch_stream,
                                         args=(streams, probes, stop_probes)))
        watchers[-1].start()
        wait_caught_up(probes)
        counters = [[0] for _ in range(args.writers)]
        writers = [
            threading.Thread(target=write_load, args=(
                source, args.rate / args.writers, args.rows_per_txn, stop_load, counters[i], i))
            for i in range(args.writers)
        ]
        started = time.monotonic()
        for thread in writers:
            thread.start()
        timeline: list[dict[str, float]] = []
        end = started + args.minutes * 60
        last_changes, last_at = 0, started
        while time.monotonic() < end:
            time.sleep(RSS_EVERY_S)
            assert child.poll() is None, "the liberate run exited during the soak"
            now = time.monotonic()
            changes = sum(c[0] for c in counters)
            # The probes of the last interval, but those of the last 2 s are still on the way.
            stream_lags = probes.lags(probes.in_stream, now - RSS_EVERY_S - 2.0, now - 2.0)
            sink_lags = probes.lags(probes.in_sink, now - RSS_EVERY_S - 2.0, now - 2.0)
            point = {
                "t_s": round(now - started, 1),
                "changes_per_s": (changes - last_changes) / (now - last_at),
                "rss_mb": rss_mb(child.pid),
                "stream_lag_p50_ms": 1000 * _quantile(stream_lags, 0.5),
                "stream_lag_max_ms": 1000 * max(stream_lags, default=float("nan")),
                "sink_lag_p50_ms": 1000 * _quantile(sink_lags, 0.5),
                "sink_lag_max_ms": 1000 * max(sink_lags, default=float("nan")),
            }
            timeline.append(point)
            last_changes, last_at = changes, now
            print(" | ".join(f"{k} {v:,.1f}" for k, v in point.items()), flush=True)
        stop_load.set()
        for thread in writers:
            thread.join()
        elapsed = time.monotonic() - started
        time.sleep(3.0)  # the last probes arrive (a probe never seen counts as late as now)
        total_changes = sum(c[0] for c in counters)
    finally:
        stop_load.set()
        stop_probes.set()
        for thread in watchers:
            thread.join(30)
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()
    return report(args, timeline, probes, started, elapsed, total_changes)


def report(args: argparse.Namespace, timeline: list[dict[str, float]], probes: Probes,
           started: float, elapsed: float, changes: int) -> int:
    warm = started + args.warmup_s
    after = [p for p in timeline if p["t_s"] >= args.warmup_s]
    baseline = next((p["rss_mb"] for p in after), float("nan"))
    peak = max((p["rss_mb"] for p in after), default=float("nan"))
    growth = (peak - baseline) / baseline if baseline else float("nan")
    ends = started + elapsed
    stream = probes.lags(probes.in_stream, warm, ends)
    sink = probes.lags(probes.in_sink, warm, ends)
    lost = probes.unseen(probes.in_sink, ends)
    rate = changes / elapsed
    figures: dict[str, Any] = {
        "machine": machine(),
        "minutes": args.minutes,
        "target_rate": args.rate,
        "achieved_rate": round(rate),
        "changes": changes,
        "rss_after_warmup_mb": round(baseline, 1),
        "rss_peak_after_warmup_mb": round(peak, 1),
        "rss_growth": round(growth, 4),
        "stream_lag_ms": _summary(stream),
        "sink_lag_ms": _summary(sink),
        "probes_never_in_sink": lost,
    }
    checks = {
        f"RSS growth after warm-up <= {MAX_RSS_GROWTH:.0%}": growth <= MAX_RSS_GROWTH,
        f"commit -> stream lag < {MAX_LAG_S} s": bool(stream) and max(stream) < MAX_LAG_S,
        f"commit -> sink lag < {MAX_LAG_S} s": bool(sink) and max(sink) < MAX_LAG_S,
        "every probe reached the sink": lost == 0,
        "writers reached 95% of the rate": rate >= 0.95 * args.rate,
    }
    figures["checks"] = checks
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "timeline": timeline}, indent=2))
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        print(f"FAILED: {name}", file=sys.stderr)
    return 1 if failed else 0


def _summary(lags: list[float]) -> dict[str, float]:
    if not lags:
        return {"count": 0}
    return {
        "count": len(lags),
        "p50": round(1000 * statistics.median(lags), 1),
        "p99": round(1000 * _quantile(lags, 0.99), 1),
        "max": round(1000 * max(lags), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5000.0, help="changes per second")
    parser.add_argument("--rows-per-txn", type=int, default=50)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--json", help="also write the figures and the timeline here")
    args = parser.parse_args()
    with postgres() as admin_url, tempfile.TemporaryDirectory(prefix="liberate-soak-") as work:
        code = soak(args, admin_url, Path(work))
    sys.exit(code)


if __name__ == "__main__":
    main()
