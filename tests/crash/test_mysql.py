"""Crash suite, MySQL/MariaDB change data capture (snapshot, then the binlog) into a SQL sink
on SQLite, on each stream backend: inserts, updates and deletes keep coming while the run is
killed; afterwards every version of every row is in the stream once, in order."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from tests.crash._harness import (
    KillLoop,
    StreamsSpec,
    VersionWriter,
    create_items,
    final_versions,
    items_table,
    read_topics,
    record_result,
    stream_size,
)
from tests.integration.postgres.test_crash import check_history

ROWS = 5_000


def test_mysql_cdc_killed_at_random_loses_nothing_and_repeats_nothing(
    mysql_url: str, streams: StreamsSpec, tmp_path: Path
) -> None:
    table = items_table("items")
    create_items(mysql_url, table, ROWS)
    source = streams.name("my")
    topic = f"{source}.{make_url(mysql_url).database}.items"
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        streams.yaml()
        + "sources:\n"
        + f"  - name: {source}\n"
        + "    connector: mysql\n"
        + f"    database: {mysql_url}\n"
        + "    tables: [items]\n"
        + "    batch_size: 300\n"
        + "    heartbeat_topic: ''\n"
        + "sinks:\n"
        + f"  - name: {streams.name('wh')}\n"
        + "    connector: sql\n"
        + f"    database: sqlite:///{tmp_path / 'warehouse.db'}\n"
        + f"    topics: [{topic}]\n"
        + "    batch_size: 300\n"
    )
    writer = VersionWriter(mysql_url, table, first_id=ROWS + 1, deletes=True)
    writer.start()
    loop = KillLoop(run_file, lambda: stream_size(run_file, topic), seed=31)
    try:
        report = loop.kill_repeatedly()
    finally:
        writer.finish()
    loop.once()
    loop.verify()
    records = read_topics(run_file, [topic])
    counts = check_history(records, final_versions(mysql_url, table))
    record_result(f"mysql/{streams.backend}", report,
                  f"{len(records)} records, ops {dict(counts)}")
    loop.expected_failure()
