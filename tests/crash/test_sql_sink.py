"""Crash suite, the SQL sink: a query source (incrementing) on PostgreSQL feeds two sinks into
PostgreSQL, an upserting mirror and an append-only log (no key: only the offsets the sink
stores with its rows keep it exact), on each stream backend. The kills land while the sinks
write; afterwards the mirror equals the source (``liberate verify``) and the log holds every
record of the stream exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from tests.crash._harness import (
    KillLoop,
    StreamsSpec,
    VersionWriter,
    create_items,
    items_table,
    read_topics,
    record_result,
)
from tests.integration._query_support import engine_for

ROWS = 10_000


def _log_rows(url: str) -> list[tuple[int, str, int, int]]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("items_log"):
                return []
            log = sa.Table("items_log", sa.MetaData(), autoload_with=conn)
            query = sa.select(log.c.id, log.c["__topic"], log.c["__partition"],
                              log.c["__offset"])
            return [(int(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in conn.execute(query)]
    finally:
        engine.dispose()


def test_sql_sinks_killed_while_writing_hold_every_record_exactly_once(
    postgres_url: str, streams: StreamsSpec, tmp_path: Path
) -> None:
    table = items_table("items")
    create_items(postgres_url, table, ROWS)
    source = streams.name("shop")
    topic = f"{source}.items"
    head = (
        streams.yaml()
        + "sources:\n"
        + f"  - name: {source}\n"
        + "    connector: query\n"
        + f"    database: {postgres_url}\n"
        + "    tables: [items]\n"
        + "    mode: incrementing\n"
        + "    incrementing_column: id\n"
        + "    batch_size: 1000\n"
        + "    schedule: 200ms\n"
        + "sinks:\n"
        + f"  - name: {streams.name('mirror')}\n"
        + "    connector: sql\n"
        + f"    database: {postgres_url}\n"
        + f"    topics: [{topic}]\n"
        + "    table: '{table}_mirror'\n"
        + "    batch_size: 700\n"
    )
    mirror_only = tmp_path / "mirror.yaml"
    mirror_only.write_text(head)
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        head
        + f"  - name: {streams.name('log')}\n"
        + "    connector: sql\n"
        + f"    database: {postgres_url}\n"
        + f"    topics: [{topic}]\n"
        + "    table: '{table}_log'\n"
        + "    pk_mode: none\n"
        + "    batch_size: 300\n"
    )
    writer = VersionWriter(postgres_url, table, first_id=ROWS + 1, updates=False)
    writer.start()
    loop = KillLoop(run_file, lambda: len(_log_rows(postgres_url)), seed=51)
    try:
        report = loop.kill_repeatedly()
    finally:
        writer.finish()
    loop.once()
    loop.verify(mirror_only)
    records = read_topics(run_file, [topic])
    log = _log_rows(postgres_url)
    coordinates = Counter((t, p, o) for _, t, p, o in log)
    twice = [c for c, n in coordinates.items() if n > 1]
    assert not twice, f"stream records written twice into the log: {twice[:5]}"
    stream = {(r.topic, r.partition, r.offset) for r in records}
    streamed_ids = Counter(int(r.key["id"]) for r in records if r.key is not None)
    assert set(streamed_ids) == set(range(1, writer.next_id)), "rows missing in the stream"
    assert max(streamed_ids.values()) == 1, "incrementing mode streamed a row twice"
    record_result(f"sql-sink/{streams.backend}", report,
                  f"{len(log)} log rows, {len(records)} stream records")
    if loop.broker_skipped:
        # The sinks stopped at records the broker skipped: what they wrote is in the stream.
        assert set(coordinates) <= stream, "the log holds records that are not in the stream"
        loop.expected_failure()
    assert set(coordinates) == stream, "the log does not hold exactly the records of the stream"
