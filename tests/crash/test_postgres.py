"""Crash suite, PostgreSQL change data capture (snapshot, then the WAL) into a SQL sink on
SQLite, on each stream backend: inserts, updates and deletes keep coming while the run is
killed; afterwards every version of every row is in the stream once, in order."""

from __future__ import annotations

from pathlib import Path

from tests.crash._harness import StreamsSpec, cdc_crash_case


def test_postgres_cdc_killed_at_random_loses_nothing_and_repeats_nothing(
    postgres_url: str, streams: StreamsSpec, tmp_path: Path
) -> None:
    cdc_crash_case(
        postgres_url, streams, tmp_path, connector="postgres", schema="public", seed=21,
        source_settings="    snapshot_chunk_size: 500\n    max_batch: 300\n",
    )
