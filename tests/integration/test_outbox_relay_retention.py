"""Retention on every database: relayed rows are kept marked, never read again, then purged.

The marks are UTC instants compared with UTC cutoffs: a time zone slip on any database would
purge rows early or keep them for hours.
"""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

import outbox
from connectors.outbox import OutboxSource
from liberate.serde import RecordSerializer
from liberate.streams.base import SourceOffset
from tests.conformance.source import drain
from tests.integration._outbox_support import (
    create_outbox,
    embedded_backend,
    engine_for,
    relay_config,
)


def _publish(url: str, n: int) -> None:
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            for i in range(n):
                outbox.publish(conn, outbox.OutboxEvent("Order", str(i), "T", {"i": i}))
    finally:
        engine.dispose()


def _rows(url: str) -> list[tuple[int, bool]]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            t = sa.Table("outbox", sa.MetaData(), autoload_with=conn)
            query = sa.select(t.c.seq, t.c.relayed_at.is_not(None)).order_by(t.c.seq)
            return [(int(seq), bool(marked)) for seq, marked in conn.execute(query)]
    finally:
        engine.dispose()


def test_relayed_rows_are_kept_for_the_retention_then_purged(
    any_db_url: str, tmp_path: Path
) -> None:
    create_outbox(any_db_url)
    _publish(any_db_url, 2)
    config = relay_config(any_db_url, retention="2s")
    with embedded_backend(tmp_path / "streams.db") as backend:
        serializer = RecordSerializer(backend.registry())

        def deliver(source: OutboxSource) -> int:
            records = drain(source)
            if records:
                backend.ensure_topic(records[0].topic)
                offsets = [SourceOffset("relay", records[-1].partition, records[-1].offset)]
                backend.append(serializer.serialize(records), offsets)
                source.commit(offsets)
            return len(records)

        source = OutboxSource(config)
        source.open(backend.source_offsets("relay"))
        try:
            assert deliver(source) == 2
            assert _rows(any_db_url) == [(1, True), (2, True)]  # kept, marked, not purged
        finally:
            source.close()
        restarted = OutboxSource(config)
        restarted.open(backend.source_offsets("relay"))
        try:
            assert deliver(restarted) == 0  # marked rows are never read again
            time.sleep(2.2)
            _publish(any_db_url, 1)
            assert deliver(restarted) == 1  # its commit purges what is past the retention
        finally:
            restarted.close()
    assert _rows(any_db_url) == [(3, True)]
