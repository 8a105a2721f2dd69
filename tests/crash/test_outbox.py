"""Crash suite, the outbox relay on PostgreSQL, on each stream backend: writer threads keep
publishing events (some transactions held open, some rolled back) while the relay is killed;
afterwards every committed event is in the stream exactly once, each aggregate in order, none
rolled back, and the outbox table is empty."""

from __future__ import annotations

from pathlib import Path

from tests.crash._harness import (
    KillLoop,
    StreamsSpec,
    read_topics,
    record_result,
    stream_size,
    topics_with_prefix,
)
from tests.integration._outbox_support import EventWriters, create_outbox, outbox_rows


def test_outbox_relay_killed_at_random_loses_nothing_and_repeats_nothing(
    postgres_url: str, streams: StreamsSpec, tmp_path: Path
) -> None:
    create_outbox(postgres_url)
    prefix = f"{streams.name('ob')}."
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        streams.yaml()
        + "sources:\n"
        + f"  - name: {streams.name('relay')}\n"
        + "    connector: outbox\n"
        + f"    database: {postgres_url}\n"
        + f"    topic: '{prefix}{{aggregate_type}}'\n"
        + "    batch_size: 20\n"
        + "    schedule: 50ms\n"
    )
    writers = EventWriters(postgres_url, writers=2, hold_rate=0.1, rollback_rate=0.1,
                           pause_s=0.01).start()
    loop = KillLoop(run_file, lambda: stream_size(run_file, prefix), seed=41)
    try:
        report = loop.kill_repeatedly()
    finally:
        writers.stop()
    loop.once()
    records = read_topics(run_file, topics_with_prefix(run_file, prefix))
    writers.check(records)
    assert outbox_rows(postgres_url) == []
    record_result(f"outbox/{streams.backend}", report,
                  f"{len(records)} events, {len(writers.rolled_back_ids)} rolled back")
