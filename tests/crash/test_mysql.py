"""Crash suite, MySQL/MariaDB change data capture (snapshot, then the binlog) into a SQL sink
on SQLite, on each stream backend: inserts, updates and deletes keep coming while the run is
killed; afterwards every version of every row is in the stream once, in order."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from tests.crash._harness import StreamsSpec, cdc_crash_case


def test_mysql_cdc_killed_at_random_loses_nothing_and_repeats_nothing(
    mysql_url: str, streams: StreamsSpec, tmp_path: Path
) -> None:
    cdc_crash_case(
        mysql_url, streams, tmp_path, connector="mysql", schema=str(make_url(mysql_url).database),
        seed=31, source_settings="    batch_size: 300\n    heartbeat_topic: ''\n",
    )
