"""PostgreSQL WAL change capture into the embedded stream (Avro-encoded, durable), next to
``pg_recvlogical`` (pgoutput, to /dev/null) on the same WAL range; commit-to-durable latency;
peak RSS on a 1,000,000-row transaction.

    .venv/bin/python -m benchmarks.postgres_cdc [--events N] [--repeat K]
        [--latency-seconds S] [--rate R] [--big-rows N] [--skip a,b,latency,rss]
        [--tree NAME=DIR ...] [--profile DIR]

Workload A: N single-row updates in 4 transactions. Workload B: N one-row transactions. Both
are written first, with two slots created before them; then pg_recvlogical and liberate each
read that same WAL range from their own slot (alternating when repeated). liberate runs as a
child process (``Pipeline`` with ``--once`` semantics), timed from its start to caught-up,
excluding only the interpreter's start-up; its peak RSS comes from wait4.

Latency: a liberate child streams while writer threads commit one-row transactions at R per
second with synchronous_commit on; for each transaction, the time from its commit returning to
the writer to its record being durable in the embedded stream (the backend's append returning).

Uses ``$LIBERATE_BENCH_POSTGRES_URL`` (an admin URL) or starts a durable throwaway cluster.

For work on liberate itself: ``--tree NAME=DIR`` (repeatable) runs the liberate contender of
workloads A and B from each source tree DIR (a copy of the repository, say before and after a
change), each from its own slot on the same WAL range, side by side; ``--profile DIR`` writes a
cProfile of each liberate child's source thread (where the connector and the encoding run) to
DIR/<workload>-<contender>.pstats. Each liberate child also reports the CPU time of its source
thread by stage: the connector's poll, the encoding (serialize) and the durable append.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks._harness import Measurement, machine, postgres, table, timed_child
from benchmarks.bulk_postgres import CREATE, FILL
from connectors.postgres._pgoutput import lsn_text, parse_lsn

DATABASE = "bench_cdc"
# The 7-column (~160 bytes) table of the bulk benchmark (bigint key, int, text, numeric,
# two timestamptz, jsonb).
TABLE = "bench_bulk"
SLOT = "liberate_bench"
PUBLICATION = "bench_cdc"

# One transaction of single-row updates (a DO block is one transaction).
UPDATE_IN_ONE_TXN = """
DO $$ BEGIN
  FOR i IN {low}..{high} LOOP
    UPDATE bench_bulk SET customer_id = customer_id + 1, updated_at = now() WHERE id = i;
  END LOOP;
END $$
"""

# One-row transactions: a procedure may COMMIT in its loop.
ONE_ROW_TXNS = """
CREATE OR REPLACE PROCEDURE bench_one_row_txns(low bigint, high bigint) LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN low..high LOOP
    UPDATE bench_bulk SET customer_id = customer_id + 1, updated_at = now() WHERE id = i;
    COMMIT;
  END LOOP;
END $$
"""

RUN_FILE = """\
streams:
  backend: embedded
  path: {streams}
sources:
  - name: bench
    connector: postgres
    database: {url}
    tables: [{table}]
    slot: {slot}
    publication: {publication}
    snapshot_mode: never
"""


# -- the liberate child -----------------------------------------------------------------------


def child(run_file: str, out: str, *, latency: bool, profile: str | None = None) -> None:
    """Run the pipeline of ``run_file`` (``--once`` unless ``latency``) and write figures."""
    from liberate.config.loader import load_run_file
    from liberate.runtime import Pipeline
    from liberate.runtime._source_task import SourceTask
    from liberate.streams.embedded import EmbeddedBackend

    if profile is not None:
        # The source task runs in a thread of its own: profile that thread.
        run_task = SourceTask.run

        def profiled(task: SourceTask) -> None:
            profiler = cProfile.Profile()
            profiler.enable()
            try:
                run_task(task)
            finally:
                profiler.disable()
                profiler.dump_stats(profile)

        SourceTask.run = profiled  # type: ignore[method-assign, assignment]

    config = load_run_file(run_file)
    durable_at: dict[int, float] = {}
    appending_at: dict[int, float] = {}

    from connectors.postgres.source import PostgresSource
    from liberate.serde import RecordSerializer

    # CPU of the source thread by stage: the connector's poll, the encoding, the append.
    stage_cpu = {"poll": 0.0, "serialize": 0.0, "append": 0.0}

    def cpu_timed(stage: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                stage_cpu[stage] += time.thread_time() - started
        return timed

    PostgresSource.poll = cpu_timed("poll", PostgresSource.poll)  # type: ignore[method-assign]
    RecordSerializer.serialize = cpu_timed(  # type: ignore[method-assign]
        "serialize", RecordSerializer.serialize)

    class Timed(EmbeddedBackend):
        def append(self, records: Sequence[Any], offsets: Sequence[Any]) -> None:
            before = time.time()
            cpu_before = time.thread_time()
            super().append(records, offsets)
            stage_cpu["append"] += time.thread_time() - cpu_before
            if latency:
                now = time.time()
                for record in records:
                    if record.key is not None and record.topic.endswith(".latency"):
                        key = _key_id(record.key)
                        durable_at[key] = now
                        appending_at[key] = before

    backend = Timed(config.streams.path)
    backend.open()
    started = time.perf_counter()
    cpu_started = time.process_time()
    pipeline = Pipeline(config, backend, once=not latency)
    if latency:
        signal.signal(signal.SIGTERM, lambda *_: pipeline.stop())
        Path(out + ".ready").write_text("ready")
    report = pipeline.run()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    backend.close()
    Path(out).write_text(json.dumps({
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "stage_cpu_seconds": stage_cpu,
        "records": sum(sum(c.values()) for c in report.sources.values()),
        "errors": report.errors,
        "durable_at": {str(k): v for k, v in durable_at.items()},
        "appending_at": {str(k): v for k, v in appending_at.items()},
    }))


def _key_id(data: bytes) -> int:
    """The ``id`` of a wire-format key record ``{id: long}`` (zig-zag varint after 5 bytes)."""
    shift = result = 0
    for byte in data[5:]:
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1)


@dataclass(frozen=True)
class Options:
    """How the liberate children run (see the module docstring)."""

    trees: tuple[tuple[str, Path], ...] = ()
    profile: Path | None = None


def run_liberate(name: str, run_file: Path, events: int, work: Path,
                 options: Options = Options(), tree: Path | None = None,
                 label: str = "") -> Measurement:
    out = work / f"{name}.json"
    argv = [sys.executable]
    env = None
    if tree is not None:
        # -P: not the current directory first; the tree's modules come before the installed.
        argv.append("-P")
        env = {**os.environ, "PYTHONPATH": str(tree)}
    argv += ["-m", "benchmarks.postgres_cdc", "--child", str(run_file), str(out)]
    if options.profile is not None:
        slug = "".join(c if c.isalnum() else "-" for c in f"{label}-{name}")
        argv += ["--profile", str(options.profile / f"{slug}.pstats")]
    measurement = timed_child(name, events, argv, env)
    figures = json.loads(out.read_text())
    if figures["errors"]:
        raise SystemExit(f"{name}: {figures['errors']}")
    if figures["records"] < events:
        raise SystemExit(f"{name}: {figures['records']} records, expected {events}")
    # Time inside the child: from building the pipeline to caught up (no interpreter start-up).
    stages = ", ".join(f"{stage} {cpu / events * 1e6:.1f}"
                       for stage, cpu in figures.get("stage_cpu_seconds", {}).items())
    print(f"  {name}: {figures['cpu_seconds']:.2f} s of CPU "
          f"({figures['cpu_seconds'] / events * 1e6:.1f} µs per event; {stages})")
    return Measurement(name, events, figures["seconds"], measurement.peak_rss_mb)


# -- the database side ------------------------------------------------------------------------


def prepare(admin_url: str, rows: int) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = admin_url.rsplit("/", 1)[0] + "/" + DATABASE
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CREATE)
        conn.execute(FILL, (rows,))
        conn.execute("CREATE TABLE bench_latency (id bigint PRIMARY KEY, note text NOT NULL)")
        conn.execute(ONE_ROW_TXNS)
        conn.execute("VACUUM ANALYZE bench_bulk")
        conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE bench_bulk, bench_latency").format(
            sql.Identifier(PUBLICATION)))
    return url


def recreate_slots(url: str, names: Sequence[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                         " WHERE slot_name = %s", (name,))
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))


def current_lsn(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return parse_lsn(str(row[0]))


def write_workload(url: str, workload: str, events: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        # The writer's own durability does not change what is decoded: do not wait for it.
        conn.execute("SET synchronous_commit = off")
        if workload == "A":
            per = events // 4
            for part in range(4):
                low, high = part * per + 1, (part + 1) * per
                conn.execute(UPDATE_IN_ONE_TXN.format(low=low, high=high))  # our own numbers
        else:
            conn.execute("CALL bench_one_row_txns(1, %s)", (events,))
    return time.perf_counter() - started


def run_recvlogical(url: str, slot: str, end_lsn: int, events: int) -> Measurement:
    tool = shutil.which("pg_recvlogical") or "/usr/lib/postgresql/15/bin/pg_recvlogical"
    return timed_child("pg_recvlogical", events, [
        tool, "-d", url, "--slot", slot, "--start", "--endpos", lsn_text(end_lsn),
        "-o", "proto_version=1", "-o", f"publication_names={PUBLICATION}",
        "-f", "/dev/null", "--no-loop",
    ])


def throughput(url: str, workload: str, events: int, repeat: int, work: Path,
               options: Options = Options()) -> list[Measurement]:
    results: list[Measurement] = []
    trees: Sequence[tuple[str, Path | None]] = options.trees or (("liberate", None),)
    slots = [SLOT if i == 0 else f"{SLOT}_{i}" for i in range(len(trees))]
    for attempt in range(repeat):
        recreate_slots(url, ["bench_recv", *slots])
        wrote = write_workload(url, workload, events)
        end = current_lsn(url)
        print(f"[{workload} {attempt + 1}/{repeat}] wrote {events:,} changes in {wrote:.1f} s")
        contenders: list[Callable[[], Measurement]] = [
            partial(run_recvlogical, url, "bench_recv", end, events),
        ]
        for (name, tree), slot in zip(trees, slots, strict=True):
            run_file = work / f"{workload}-{slot}.yaml"
            streams = work / f"{workload}-{slot}-{attempt}.db"
            run_file.write_text(RUN_FILE.format(streams=streams, url=url, table=TABLE, slot=slot,
                                                publication=PUBLICATION))
            contenders.append(partial(run_liberate, name, run_file, events, work, options, tree,
                                      f"{workload}{attempt}"))
        if attempt % 2:
            contenders.reverse()
        for contender in contenders:
            measurement = contender()
            print(f"  {measurement.name}: {measurement.seconds:.2f} s, "
                  f"{measurement.rows_per_s:,.0f} events/s")
            results.append(measurement)
    return results


def best(measurements: Sequence[Measurement]) -> list[Measurement]:
    by_name: dict[str, Measurement] = {}
    for m in measurements:
        if m.name not in by_name or m.seconds < by_name[m.name].seconds:
            by_name[m.name] = m
    return list(by_name.values())


# -- latency ----------------------------------------------------------------------------------


def latency(url: str, seconds: float, rate: int, work: Path) -> dict[str, float]:
    recreate_slots(url, [SLOT])
    run_file = work / "latency.yaml"
    run_file.write_text(RUN_FILE.format(
        streams=work / "latency.db", url=url, table="bench_latency", slot=SLOT,
        publication=PUBLICATION,
    ).replace("name: bench", "name: bench\n    topic: bench.latency"))
    out = work / "latency.json"
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.postgres_cdc", "--child",
                                str(run_file), str(out), "--latency"])
    ready = Path(str(out) + ".ready")
    while not ready.exists():
        time.sleep(0.05)
    time.sleep(1.0)  # let it reach the stream
    committed: dict[int, float] = {}
    writers = 8
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def writer(index: int) -> None:
        interval = writers / rate
        next_at = time.monotonic()
        key = index
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = on")
            while time.monotonic() < stop_at:
                conn.execute("INSERT INTO bench_latency VALUES (%s, 'x')", (key,))
                done = time.time()
                with lock:
                    committed[key] = done
                key += writers
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    time.sleep(2.0)
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    figures = json.loads(out.read_text())
    durable = {int(k): v for k, v in figures["durable_at"].items()}
    appending = {int(k): v for k, v in figures["appending_at"].items()}
    delays = sorted((durable[k] - t) * 1000 for k, t in committed.items() if k in durable)
    # Where the time goes: until the record is serialized and handed to the backend, then
    # the backend's durable append (SQLite commit with synchronous=FULL).
    before_append = sorted((appending[k] - t) * 1000 for k, t in committed.items()
                           if k in appending)
    appends = sorted((durable[k] - appending[k]) * 1000 for k in durable if k in appending)
    missing = len(committed) - len(delays)
    return {
        "transactions": len(committed),
        "rate": len(committed) / elapsed,
        "p50_ms": statistics.median(delays),
        "p99_ms": _p99(delays),
        "max_ms": delays[-1],
        "missing": missing,
        "source_p50_ms": statistics.median(before_append),
        "source_p99_ms": _p99(before_append),
        "append_p50_ms": statistics.median(appends),
        "append_p99_ms": _p99(appends),
    }


def _p99(values: Sequence[float]) -> float:
    return values[max(0, int(len(values) * 0.99) - 1)]


# -- peak RSS on one big transaction ----------------------------------------------------------


def big_transaction(url: str, rows: int, work: Path) -> Measurement:
    """liberate reading one transaction that updates ``rows`` rows (prepared up front)."""
    recreate_slots(url, [SLOT])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("UPDATE bench_bulk SET customer_id = customer_id + 1 WHERE id <= %s",
                     (rows,))
    run_file = work / "big.yaml"
    run_file.write_text(RUN_FILE.format(streams=work / "big.db", url=url, table=TABLE, slot=SLOT,
                                        publication=PUBLICATION))
    return run_liberate("liberate (1 txn)", run_file, rows, work)


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--skip", default="", help="comma-separated: a,b,latency,rss")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                        help="run liberate from source tree DIR as contender NAME (repeatable)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write a cProfile of each liberate child's source thread to DIR")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--latency", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], latency=args.latency,
              profile=str(args.profile) if args.profile else None)
        return
    trees = []
    for item in args.tree:
        name, sep, directory = item.partition("=")
        if not sep or not Path(directory, "liberate").is_dir():
            parser.error(f"--tree {item}: expected NAME=DIR of a liberate source tree")
        trees.append((name, Path(directory).resolve()))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    options = Options(tuple(trees), args.profile.resolve() if args.profile else None)
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="liberate-bench-cdc-"))
    os.chmod(work, 0o755)
    try:
        with postgres() as admin_url:
            rows = args.events if "rss" in skip else max(args.events, args.big_rows)
            url = prepare(admin_url, rows)
            print(f"\n{machine()}\n")
            for workload, label in (("A", "single-row updates in 4 transactions"),
                                    ("B", "one-row transactions")):
                if workload.lower() in skip:
                    continue
                results = best(throughput(url, workload, args.events, args.repeat, work,
                                          options))
                print(f"\nWorkload {workload}: {args.events:,} {label} (best of {args.repeat})\n")
                print(table(results, reference="pg_recvlogical"))
            if "latency" not in skip:
                figures = latency(url, args.latency_seconds, args.rate, work)
                print(f"\nLatency commit -> durable in the stream, target {args.rate:,} tx/s, "
                      "synchronous_commit on\n")
                print("| transactions | achieved tx/s | p50 ms | p99 ms | max ms | missing |"
                      " commit->append p50/p99 ms | append p50/p99 ms |")
                print("|---:|---:|---:|---:|---:|---:|---:|---:|")
                print(f"| {figures['transactions']:,} | {figures['rate']:,.0f} | "
                      f"{figures['p50_ms']:.2f} | {figures['p99_ms']:.2f} | "
                      f"{figures['max_ms']:.2f} | {figures['missing']} | "
                      f"{figures['source_p50_ms']:.2f} / {figures['source_p99_ms']:.2f} | "
                      f"{figures['append_p50_ms']:.2f} / {figures['append_p99_ms']:.2f} |")
            if "rss" not in skip:
                big = big_transaction(url, args.big_rows, work)
                print(f"\nOne transaction updating {args.big_rows:,} rows\n")
                print("| contender | events | seconds | events/s | peak RSS MB |")
                print("|---|---:|---:|---:|---:|")
                print(f"| {big.name} | {big.rows:,} | {big.seconds:.2f} | "
                      f"{big.rows_per_s:,.0f} | {big.peak_rss_mb:.0f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
