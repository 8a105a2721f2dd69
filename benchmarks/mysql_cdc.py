"""Binlog change data capture of 200,000 row changes, side by side with the usual tools.

Two workloads on a 50,000-row table (bigint key, int, text, decimal(12,2), two timestamps,
JSON), each 200,000 row changes in 4 transactions:

- ``single``: 200,000 single-row UPDATE statements (a TABLE_MAP and a rows event each);
- ``multi``: 4 UPDATE statements of 50,000 rows each.

Contenders read the same binlog range, in the same run:

- ``liberate``: end to end into the embedded stream, as ``liberate run --once`` does it (the
  runtime's SourceTask: poll, Avro-encode against the registry, append with offsets);
- ``liberate source only``: ``poll()`` alone (binlog decoding and records), for the split;
- ``mariadb-binlog -v``: the C tool decoding the binlog file to /dev/null;
- ``python-mysql-replication``: ``BinLogStreamReader`` counting the updated rows (optional:
  ``pip install mysql-replication``; skipped when it is not installed);
- ``liberate at DIR`` (``--baseline DIR``, repeatable): the end-to-end contender of another
  checkout of liberate (an older commit, say), run in a child process on the same binlog
  range with the same GC thresholds: before/after figures from one run.

The liberate contenders run with the cyclic GC's young threshold that ``liberate run`` sets
while records flow (``liberate.runtime.pipeline``); ``--gc-threshold N`` sets another.
python-mysql-replication runs with Python's defaults, as its users run it.

    python -m benchmarks.mysql_cdc [--rows 50000] [--repeat 1] [--skip-pymysqlreplication]
        [--gc-threshold N] [--workloads single,multi] [--profile] [--baseline DIR ...]

``--profile`` runs the source-only contender once more under cProfile after the timed runs
and prints the functions that took the most time of their own.

Uses ``$LIBERATE_BENCH_MYSQL_URL`` (an admin URL of a server with a ROW binlog; the C tool then
reads it remotely) or a throwaway MariaDB started with ``durable=True``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import json
import os
import pstats
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
from pymysql.constants import CLIENT
from sqlalchemy.engine import make_url

from benchmarks._harness import Measurement, machine, table, timed, timed_child
from connectors.mysql import MySqlSource, MySqlSourceConfig
from connectors.mysql.offsets import BinlogPosition
from liberate.runtime._source_task import SourceTask
from liberate.runtime.pipeline import GC_YOUNG_THRESHOLD
from liberate.serde import RecordSerializer
from liberate.streams.base import SourceOffset, partition_key
from liberate.streams.embedded import EmbeddedBackend

DATABASE = "bench_cdc"
CREATE = """
CREATE TABLE items (
    id BIGINT PRIMARY KEY,
    customer_id INT NOT NULL,
    note TEXT NOT NULL,
    amount DECIMAL(12, 2) NOT NULL,
    created_at TIMESTAMP(6) NOT NULL,
    updated_at TIMESTAMP(6) NOT NULL,
    attributes JSON NOT NULL
)
"""
INSERT = (
    "INSERT INTO items VALUES (%s, %s, %s, %s, FROM_UNIXTIME(1704067200 + %s),"
    " FROM_UNIXTIME(1717200000 + %s), %s)"
)
UPDATE_ONE = "UPDATE items SET customer_id = customer_id + 1 WHERE id = %s"
TRANSACTIONS = 4
SETTLE_S = 5.0


@dataclass
class Server:
    """Where the benchmark writes and reads: an admin URL, and the binlog directory if local."""

    url: str
    data_dir: Path | None


@contextmanager
def mysql_server() -> Iterator[Server]:
    external = os.environ.get("LIBERATE_BENCH_MYSQL_URL")
    if external:
        yield Server(external, None)
        return
    from tests.servers import MariaDBServer

    server = MariaDBServer(durable=True).start()
    try:
        yield Server(server.url, server.data_dir)
    finally:
        server.stop()


def connect(server: Server, database: str | None = None) -> pymysql.connections.Connection:
    url = make_url(server.url)
    return pymysql.connect(
        host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
        password=url.password or "", database=database, autocommit=True,
        client_flag=CLIENT.MULTI_STATEMENTS,
    )


def binlog_end(cur: Any) -> tuple[str, int]:
    cur.execute("SHOW MASTER STATUS")
    file, pos = cur.fetchone()[:2]
    return str(file), int(pos)


def prepare(server: Server, rows: int) -> None:
    conn = connect(server)
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS bench_cdc")
        cur.execute("CREATE DATABASE bench_cdc CHARACTER SET utf8mb4")
        cur.execute("USE bench_cdc")
        cur.execute(CREATE)
        for start in range(1, rows + 1, 5000):
            cur.executemany(INSERT, [
                (i, i * 7919 % 100_000, f"order note {i % 1000} {i:08x}",
                 f"{i * 37 % 1_000_000 / 100:.2f}", i, i,
                 f'{{"channel": "web", "priority": {i % 5}, "tags": ["a", "b"]}}')
                for i in range(start, min(start + 5000, rows + 1))
            ])
    conn.close()


def workload(server: Server, kind: str, rows: int) -> tuple[tuple[str, int], tuple[str, int]]:
    """Run one workload; the binlog range it wrote."""
    conn = connect(server, DATABASE)
    with conn.cursor() as cur:
        start = binlog_end(cur)
        per_transaction = rows
        for _ in range(TRANSACTIONS):
            cur.execute("BEGIN")
            if kind == "multi":
                cur.execute("UPDATE items SET customer_id = customer_id + 1")
            else:
                # 1,000 statements a round trip (MULTI_STATEMENTS), each its own UPDATE.
                for first in range(1, per_transaction + 1, 1000):
                    ids = list(range(first, min(first + 1000, per_transaction + 1)))
                    cur.execute(";".join([UPDATE_ONE] * len(ids)), ids)
                    while cur.nextset():
                        pass
            cur.execute("COMMIT")
        end = binlog_end(cur)
    conn.close()
    return start, end


def source_config(server: Server, batch_size: int) -> MySqlSourceConfig:
    url = make_url(server.url).set(database=DATABASE).render_as_string(hide_password=False)
    return MySqlSourceConfig(
        name="bench", connector="mysql", database=url, tables=["items"],
        position_mode="file", heartbeat_topic="", batch_size=batch_size,
    )


def stored_offset(start: tuple[str, int]) -> dict[str, Any]:
    return {partition_key({"server": "bench"}): BinlogPosition(start[0], start[1]).to_map()}


#: CPU seconds (user and system, every thread) of each in-process or baseline contender run,
#: by contender: on a loaded machine they vary less than the wall time
CPU_SECONDS: dict[str, list[float]] = {}


def cpu_timed(name: str, rows: int, action: Callable[[], object]) -> Measurement:
    """``timed``, also noting the CPU time this process spent in ``CPU_SECONDS``."""
    before = time.process_time()
    measured = timed(name, rows, action)
    CPU_SECONDS.setdefault(name, []).append(time.process_time() - before)
    return measured


def cpu_summary(changes: int) -> str:
    """The mean CPU time per row of each contender with CPU times, one line."""
    return "CPU time per row (user + system, every thread), µs: " + "; ".join(
        f"{name} {sum(seconds) / len(seconds) / changes * 1e6:.1f}"
        for name, seconds in CPU_SECONDS.items()
    )


def liberate_end_to_end(server: Server, start: tuple[str, int], changes: int) -> Measurement:
    with tempfile.TemporaryDirectory() as tmp:
        backend = EmbeddedBackend(Path(tmp) / "streams.db", synchronous="NORMAL")
        backend.open()
        try:
            offset = SourceOffset("bench", {"server": "bench"}, stored_offset(start)[
                partition_key({"server": "bench"})])
            backend.append([], [offset])
            task = SourceTask(
                MySqlSource(source_config(server, 10_000)), backend,
                RecordSerializer(backend.registry()), threading.Event(), once=True,
                schedule=None, max_retries=0,
            )
            measured = cpu_timed("liberate", changes, task.run)
            if task.stats.error:
                raise SystemExit(task.stats.error)
            written = sum(task.stats.per_topic.values())
            if written != changes:
                raise SystemExit(f"liberate wrote {written} records, expected {changes}")
            return measured
        finally:
            backend.close()


def liberate_source_only(server: Server, start: tuple[str, int], changes: int) -> Measurement:
    source = MySqlSource(source_config(server, 10_000))
    source.open(stored_offset(start))
    count = 0

    def drain() -> None:
        nonlocal count
        while True:
            records = source.poll()
            count += len(records)
            if not records and source.caught_up():
                return

    try:
        measured = cpu_timed("liberate source only", changes, drain)
    finally:
        source.close()
    if count != changes:
        raise SystemExit(f"the source returned {count} records, expected {changes}")
    return measured


@contextmanager
def liberate_gc(threshold: int | None) -> Iterator[None]:
    """The GC thresholds of the liberate contenders: ``liberate run``'s (a young threshold of
    ``GC_YOUNG_THRESHOLD``), or ``threshold`` when given."""
    before = gc.get_threshold()
    gc.set_threshold(threshold or GC_YOUNG_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


#: run in the baseline's checkout: its end-to-end contender, printing the seconds it took
_BASELINE = """
import gc, json, sys, time
from benchmarks.mysql_cdc import Server, liberate_end_to_end
url, file, pos, changes, thresholds = json.loads(sys.argv[1])
gc.set_threshold(*thresholds)
before = time.process_time()
seconds = liberate_end_to_end(Server(url, None), (file, pos), changes).seconds
print(seconds, time.process_time() - before)
"""


def baseline_end_to_end(directory: Path, server: Server, start: tuple[str, int], changes: int
                        ) -> Measurement:
    """The end-to-end contender of the liberate checkout in ``directory`` (a child process
    with this process's GC thresholds, which the caller has set for the liberate contenders).
    """
    arguments = json.dumps([server.url, start[0], start[1], changes, list(gc.get_threshold())])
    done = subprocess.run(
        [sys.executable, "-c", _BASELINE, arguments], cwd=directory, check=True,
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(directory)},
    )
    seconds, cpu = (float(x) for x in done.stdout.strip().splitlines()[-1].split())
    name = f"liberate at {directory}"
    CPU_SECONDS.setdefault(name, []).append(cpu)
    return Measurement(name, changes, seconds)


def profile_source(server: Server, start: tuple[str, int], changes: int) -> None:
    """The source-only contender under cProfile: the 25 functions with the most own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        liberate_source_only(server, start, changes)
    finally:
        profiler.disable()
    print("\n### cProfile of liberate source only (by own time)\n")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def mariadb_binlog(server: Server, start: tuple[str, int], end: tuple[str, int], changes: int
                   ) -> Measurement:
    if start[0] != end[0]:
        raise SystemExit("the workload spans two binlog files; raise max_binlog_size")
    args = ["mariadb-binlog", "-v", f"--start-position={start[1]}", f"--stop-position={end[1]}"]
    if server.data_dir is not None:
        args.append(str(server.data_dir / start[0]))
    else:
        url = make_url(server.url)
        args += ["--read-from-remote-server", f"--host={url.host}", f"--port={url.port or 3306}",
                 f"--user={url.username}", start[0]]
        if url.password:
            args.insert(1, f"--password={url.password}")
    command = " ".join(shlex.quote(a) for a in args) + " > /dev/null"
    return timed_child("mariadb-binlog -v", changes, ["sh", "-c", command])


def python_mysql_replication(server: Server, start: tuple[str, int], end: tuple[str, int],
                             changes: int) -> Measurement | None:
    try:
        # Imported by name: an optional, untyped dependency of this benchmark only.
        replication: Any = importlib.import_module("pymysqlreplication")
        row_event: Any = importlib.import_module("pymysqlreplication.row_event")
    except ImportError:
        print("python-mysql-replication is not installed (pip install mysql-replication)")
        return None
    url = make_url(server.url)
    settings = {"host": url.host, "port": url.port or 3306, "user": url.username,
                "passwd": url.password or ""}
    count = 0

    def read() -> None:
        nonlocal count
        stream = replication.BinLogStreamReader(
            connection_settings=settings, server_id=987654, log_file=start[0],
            log_pos=start[1], resume_stream=True, blocking=False,
            only_events=[row_event.UpdateRowsEvent], only_schemas=[DATABASE],
        )
        try:
            for event in stream:
                count += len(event.rows)
                if (stream.log_file, stream.log_pos) >= end:
                    break
        finally:
            stream.close()

    measured = timed("python-mysql-replication", changes, read)
    if count != changes:
        raise SystemExit(f"python-mysql-replication read {count} rows, expected {changes}")
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="table rows (x4 changes)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-pymysqlreplication", action="store_true")
    parser.add_argument(
        "--gc-threshold", type=int, default=None,
        help="the young GC threshold of the liberate contenders (default: liberate run's)",
    )
    parser.add_argument("--workloads", default="single,multi",
                        help="comma-separated workloads to run (single, multi)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the source-only contender (cProfile)")
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="a checkout of another liberate version to run end to end too "
                        "(repeatable)")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.workloads.split(",") if k.strip()]
    if not kinds or any(k not in ("single", "multi") for k in kinds):
        parser.error("--workloads takes single and/or multi")
    changes = args.rows * TRANSACTIONS
    with liberate_gc(args.gc_threshold):
        liberate_thresholds = gc.get_threshold()
    print(f"# MySQL binlog CDC, {changes:,} row changes per workload ({machine()}, "
          f"gc thresholds: liberate {liberate_thresholds}, others {gc.get_threshold()})")
    with mysql_server() as server:
        prepare(server, args.rows)
        for kind in kinds:
            start, end = workload(server, kind, args.rows)
            # InnoDB purges the workload's undo logs in the background for a few seconds:
            # let it finish so it does not compete with the first contender.
            time.sleep(SETTLE_S)
            print(f"\n## {kind}: {changes:,} changes, binlog {start[0]} {start[1]}..{end[1]}"
                  f" ({(end[1] - start[1]) / 1e6:.0f} MB)\n")
            measurements: list[Measurement] = []
            for _ in range(args.repeat):
                with liberate_gc(args.gc_threshold):
                    measurements.append(liberate_end_to_end(server, start, changes))
                    for directory in args.baseline:
                        measurements.append(
                            baseline_end_to_end(directory, server, start, changes))
                    measurements.append(liberate_source_only(server, start, changes))
                measurements.append(mariadb_binlog(server, start, end, changes))
                if not args.skip_pymysqlreplication:
                    found = python_mysql_replication(server, start, end, changes)
                    if found is not None:
                        measurements.append(found)
                time.sleep(0.5)
            print(table(measurements, "mariadb-binlog -v"))
            print("\n" + cpu_summary(changes))
            CPU_SECONDS.clear()
            print("\nload average (1, 5, 15 min): " + ", ".join(
                f"{load:.2f}" for load in os.getloadavg()))
            if args.profile:
                with liberate_gc(args.gc_threshold):
                    profile_source(server, start, changes)


if __name__ == "__main__":
    main()
