"""Where the time of a bulk load goes: per-row cost of each stage of the source loop.

Runs the pieces ``liberate run FILE --once`` runs for one query source (the source's ``poll``,
``RecordSerializer.serialize``, ``EmbeddedBackend.append``, ``commit``) in this process and
thread, and prints the wall time and this thread's CPU time per row of each stage;
``--cprofile N`` adds the N functions with the most own time. The table is the one
``benchmarks.bulk_postgres`` prepares (run that first with the same server, e.g. with
``LIBERATE_BENCH_POSTGRES_URL`` set and ``--reuse``)::

    python -m benchmarks.profile_bulk [--url URL] [--limit ROWS] [--batch-size N]
        [--cprofile 30] [--no-read-ahead] [--parallelism 1|2|auto]

cProfile charges the overhead of every C call to its caller (the generated record writers
look several times slower than they are) and, with read-ahead, the polling thread's waits for
the GIL to whatever it was running: read ``--cprofile`` output for where time goes, and the
plain run for how much.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.bulk_postgres import RUN_FILE, TABLE
from liberate.config.loader import load_run_file
from liberate.runtime._source_task import _last_offsets
from liberate.runtime.pipeline import _fewer_collections, build_source, open_backend
from liberate.serde import RecordSerializer


def run(
    url: str, workdir: Path, limit: int | None, batch_size: int | None, parallelism: str = "1"
) -> tuple[int, dict[str, list[float]]]:
    """Rows read, and (wall, this thread's CPU) seconds per stage."""
    run_file = workdir / "profile.yaml"
    text = RUN_FILE.format(
        streams=workdir / "streams.db", url=url, table=TABLE, parallelism=parallelism
    )
    if batch_size is not None:
        text += f"    batch_size: {batch_size}\n"
    run_file.write_text(text)
    config = load_run_file(str(run_file))
    backend = open_backend(config.streams)
    source = build_source(config.sources[0])
    serializer = RecordSerializer(backend.registry())
    seconds: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    rows = 0

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.thread_time()

    def spent(stage: str, start: tuple[float, float], end: tuple[float, float]) -> None:
        seconds[stage][0] += end[0] - start[0]
        seconds[stage][1] += end[1] - start[1]

    try:
        t0 = clock()
        source.open(backend.source_offsets(source.name))
        spent("open", t0, clock())
        known: set[str] = set()
        while limit is None or rows < limit:
            t0 = clock()
            records = source.poll()
            t1 = clock()
            spent("poll (fetch + records)", t0, t1)
            if not records:
                break
            for topic in {r.topic for r in records} - known:
                backend.ensure_topic(topic, compacted=source.compacts(topic))
                known.add(topic)
            t2 = clock()
            stream_records = serializer.serialize(records)
            t3 = clock()
            offsets = _last_offsets(source.name, records)
            backend.append(stream_records, offsets)
            t4 = clock()
            source.commit(offsets)
            spent("serialize", t2, t3)
            spent("append", t3, t4)
            rows += len(records)
    finally:
        source.close()
        backend.close()
    return rows, dict(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("LIBERATE_BENCH_POSTGRES_URL"))
    parser.add_argument("--limit", type=int, default=None, help="stop after about this many rows")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--parallelism",
        default="1",
        help="the source's parallelism (default 1: every stage in this thread; with workers, "
        "'poll' is this process's share: waiting for and unpacking their encoded rows)",
    )
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    parser.add_argument(
        "--no-read-ahead",
        action="store_true",
        help="read each batch in poll() (with read-ahead, cProfile charges the time the "
        "polling thread waits for the GIL to whatever it was running)",
    )
    args = parser.parse_args()
    if args.no_read_ahead:
        from connectors.query.source import QuerySource

        QuerySource._read_ahead = lambda self, *args: None  # type: ignore[method-assign]
    if not args.url:
        raise SystemExit("give --url or set LIBERATE_BENCH_POSTGRES_URL")
    with tempfile.TemporaryDirectory(prefix="liberate-profile-") as tmp:
        profiler = cProfile.Profile() if args.cprofile else None
        cpu = time.process_time()
        wall = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        with _fewer_collections():  # as Pipeline.run does
            rows, seconds = run(
                args.url, Path(tmp), args.limit, args.batch_size, args.parallelism
            )
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    print(
        f"{rows:,} rows in {wall:.2f} s ({rows / wall:,.0f} rows/s), CPU {cpu:.2f} s"
        f" ({cpu / max(rows, 1) * 1e6:.2f} us/row)"
    )
    print(f"  {'stage':<24} {'wall us/row':>12} {'CPU us/row':>12}")
    for stage, (wall_s, cpu_s) in seconds.items():
        per = 1e6 / max(rows, 1)
        print(f"  {stage:<24} {wall_s * per:12.2f} {cpu_s * per:12.2f}")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)


if __name__ == "__main__":
    main()
