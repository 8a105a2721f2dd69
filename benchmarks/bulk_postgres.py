"""Bulk load of a 1,000,000-row PostgreSQL table into the embedded stream, Avro-encoded and
durable, next to ``COPY t TO '/dev/null'`` and a plain psycopg server-side-cursor fetch.

    .venv/bin/python -m benchmarks.bulk_postgres [--rows N] [--repeat K] [--reuse]
        [--only-liberate]

Uses ``$LIBERATE_BENCH_POSTGRES_URL`` (an admin URL) or starts a throwaway cluster. liberate
runs as a child process (`liberate run FILE --once`), so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks._harness import Measurement, machine, postgres, table, timed, timed_child

TABLE = "bench_bulk"

CREATE = """
CREATE TABLE bench_bulk (
    id bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    note text NOT NULL,
    amount numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    attributes jsonb NOT NULL
)
"""

FILL = """
INSERT INTO bench_bulk
SELECT g,
       ((g * 7919) %% 100000)::integer,
       md5(g::text) || ' order note ' || (g %% 1000),
       ((g * 37) %% 1000000) / 100.0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       timestamptz '2024-06-01 00:00:00+00' + g * interval '1 second',
       jsonb_build_object('channel', 'web', 'priority', g %% 5, 'tags', jsonb_build_array('a', 'b'))
FROM generate_series(1::bigint, %s) AS g
"""

RUN_FILE = """\
streams:
  backend: embedded
  path: {streams}
sources:
  - name: bench
    connector: query
    database: {url}
    tables: [{table}]
    mode: bulk
    parallelism: {parallelism}
"""


def prepare(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(CREATE)
        conn.execute(FILL, (rows,))
        conn.execute(f"VACUUM ANALYZE {TABLE}")
        size = conn.execute("SELECT pg_total_relation_size(%s)", (TABLE,)).fetchone()
        print(f"prepared {rows:,} rows, {size[0] / rows if size else 0:.0f} bytes/row on disk")


def copy_to_dev_null(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("COPY {} TO '/dev/null'").format(sql.Identifier(TABLE)))


def server_side_cursor(url: str) -> int:
    count = 0
    with psycopg.connect(url) as conn, conn.cursor(name="bench") as cur:
        cur.itersize = 10_000
        cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(TABLE)))
        for _ in cur:
            count += 1
    return count


def liberate_bulk(
    url: str, rows: int, workdir: Path, attempt: int, parallelism: str = "auto"
) -> Measurement:
    streams = workdir / f"streams-{attempt}.db"
    run_file = workdir / f"bulk-{attempt}.yaml"
    run_file.write_text(
        RUN_FILE.format(streams=streams, url=url, table=TABLE, parallelism=parallelism)
    )
    measurement = timed_child(
        f"liberate bulk -> embedded (Avro, durable, parallelism {parallelism})",
        rows,
        [sys.executable, "-m", "liberate", "run", str(run_file), "--once"],
    )
    with sqlite3.connect(streams) as db:
        (stored,) = db.execute(
            "SELECT coalesce(sum(record_count), 0) FROM stream_batches"
        ).fetchone()
    if stored != rows:
        raise SystemExit(f"liberate stored {stored} records, expected {rows}")
    for leftover in workdir.glob(f"streams-{attempt}.db*"):
        if leftover.is_dir():  # the run's lock directory
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    return measurement


def table_rows(url: str) -> int | None:
    """Rows in the benchmark table, or None when it does not exist."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()
        if exists is None or exists[0] is None:
            return None
        counted = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE))
        ).fetchone()
        return int(counted[0]) if counted else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the table if it already holds --rows rows (with an external server)",
    )
    parser.add_argument(
        "--only-liberate", action="store_true", help="skip the COPY and fetch baselines"
    )
    parser.add_argument(
        "--parallelism",
        default="auto,1",
        help="comma-separated parallelism settings of the query source to run (default: "
        "auto,1: the parallel bulk reader and the single-process path)",
    )
    args = parser.parse_args()
    results: dict[str, list[Measurement]] = {}
    with postgres() as url, tempfile.TemporaryDirectory(prefix="liberate-bench-") as tmp:
        if not (args.reuse and table_rows(url) == args.rows):
            prepare(url, args.rows)
        for attempt in range(args.repeat):
            runs: list[Measurement] = []
            if not args.only_liberate:
                runs.append(
                    timed(
                        "COPY t TO '/dev/null' (server)", args.rows, lambda: copy_to_dev_null(url)
                    )
                )
                runs.append(
                    timed(
                        "psycopg 3 server-side cursor fetch",
                        args.rows,
                        lambda: server_side_cursor(url),
                    )
                )
            for parallelism in args.parallelism.split(","):
                runs.append(liberate_bulk(url, args.rows, Path(tmp), attempt, parallelism))
            load = os.getloadavg()[0]
            for m in runs:
                rss = f", peak RSS {m.peak_rss_mb:.0f} MB" if m.peak_rss_mb is not None else ""
                print(
                    f"[{attempt + 1}/{args.repeat}] {m.name}: {m.seconds:.2f} s, "
                    f"{m.rows_per_s:,.0f} rows/s{rss} (load average {load:.1f})",
                    flush=True,
                )
                results.setdefault(m.name, []).append(m)
    best = [min(runs, key=lambda m: m.seconds) for runs in results.values()]
    print(f"\n{machine()}; best of {args.repeat}; load average now {os.getloadavg()[0]:.1f}\n")
    reference = best[0].name if args.only_liberate else "psycopg 3 server-side cursor fetch"
    print(table(best, reference=reference))


if __name__ == "__main__":
    main()
