"""Crash suite, query source in each mode (bulk, incrementing, timestamp,
timestamp+incrementing) on PostgreSQL, into a SQL sink on SQLite, on each stream backend.

One run file holds the four sources (one table each, a writer thread each), so every kill lands
in all four modes at once, each somewhere in its own cycle.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.crash._harness import (
    KillLoop,
    StreamsSpec,
    VersionWriter,
    check_polled,
    create_items,
    final_versions,
    items_table,
    read_topics,
    record_result,
    stream_size,
)

#: mode -> (table, rows at start, writer updates rows, exactly once per (key, version))
MODES = {
    "bulk": ("bulk_items", 300, True, False),
    "incrementing": ("inc_items", 3_000, False, True),
    "timestamp": ("ts_items", 3_000, True, True),
    "timestamp+incrementing": ("tsi_items", 3_000, True, True),
}


def _source(streams: StreamsSpec, mode: str, table: str, url: str) -> str:
    lines = [
        f"  - name: {streams.name('q')}{table.split('_')[0]}",
        "    connector: query",
        f"    database: {url}",
        f"    tables: [{table}]",
        f"    mode: {mode}",
        "    batch_size: 200",
        "    schedule: 1s" if mode == "bulk" else "    schedule: 200ms",
    ]
    if mode in ("incrementing", "timestamp+incrementing"):
        lines.append("    incrementing_column: id")
    if mode.startswith("timestamp"):
        lines += ["    timestamp_column: updated_at", "    timestamp_delay: 1s"]
    return "\n".join(lines) + "\n"


def _topic(streams: StreamsSpec, table: str) -> str:
    return f"{streams.name('q')}{table.split('_')[0]}.{table}"


def test_query_sources_killed_at_random_lose_nothing_and_repeat_nothing(
    postgres_url: str, streams: StreamsSpec, tmp_path: Path
) -> None:
    tables = {mode: items_table(spec[0]) for mode, spec in MODES.items()}
    for mode, (_, rows, _, _) in MODES.items():
        create_items(postgres_url, tables[mode], rows)
    topics = [_topic(streams, spec[0]) for spec in MODES.values()]
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        streams.yaml()
        + "sources:\n"
        + "".join(_source(streams, mode, spec[0], postgres_url) for mode, spec in MODES.items())
        + "sinks:\n"
        + f"  - name: {streams.name('wh')}\n"
        + "    connector: sql\n"
        + f"    database: sqlite:///{tmp_path / 'warehouse.db'}\n"
        + f"    topics: [{', '.join(topics)}]\n"
        + "    batch_size: 300\n"
    )
    writers = [
        VersionWriter(postgres_url, tables[mode], first_id=rows + 1, updates=updates, seed=i)
        for i, (mode, (_, rows, updates, _)) in enumerate(MODES.items())
    ]
    for writer in writers:
        writer.start()
    loop = KillLoop(run_file, lambda: stream_size(run_file), seed=11)
    try:
        report = loop.kill_repeatedly()
    finally:
        for writer in writers:
            writer.finish()
    # --once reads timestamps only up to the database clock minus timestamp_delay.
    time.sleep(1.5)
    loop.once()
    # A bulk cycle resumed after a kill holds the rows it read before the kill as they were
    # then (that is what makes a killed bulk load resumable); the next cycle is current.
    loop.once()
    loop.verify()
    stream = read_topics(run_file, topics)
    figures, repeated = [], []
    for mode, (table, _, _, exactly_once) in MODES.items():
        records = [r for r in stream if r.topic == _topic(streams, table)]
        # Loss and order are checked for every mode first; repeats are judged below.
        counts = check_polled(records, final_versions(postgres_url, tables[mode]),
                              exactly_once=False)
        figures.append(f"{mode} {counts['records']} records")
        if exactly_once and counts["repeated"]:
            repeated.append(f"{mode}: {counts['repeated']} (key, version) pairs repeated")
    record_result(f"query/{streams.backend}", report, ", ".join(figures))
    assert not repeated, "; ".join(repeated)
    loop.expected_failure()
