"""The polling relay never skips an event and keeps each aggregate's order, under concurrency.

Writers are threads with their own connections whose transactions stay open while later ones
commit; the relay runs meanwhile in the runtime's own source loop, into the embedded stream.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import outbox
from outbox import OutboxEvent
from tests.integration._outbox_support import (
    EventWriters,
    RelayRun,
    create_outbox,
    embedded_backend,
    header,
    kind_of,
    native_connection,
    outbox_rows,
    relay_config,
    stream_records,
)

WAIT_S = 60.0


def _wait_for_ids(path: Path, expected: set[str], relay: RelayRun) -> list[Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        records = stream_records(path)
        if expected <= {header(r, "id") for r in records}:
            return records
        assert relay.error is None, relay.error
        assert time.monotonic() < deadline, (
            f"missing after {WAIT_S}s: {sorted(expected - {header(r, 'id') for r in records})}"
        )
        time.sleep(0.05)


def test_a_transaction_that_commits_after_a_later_one_is_not_skipped(
    any_db_url: str, tmp_path: Path
) -> None:
    if kind_of(any_db_url) == "sqlite":
        pytest.skip("SQLite serializes writers: a later transaction cannot commit first")
    create_outbox(any_db_url)
    early, late = native_connection(any_db_url), native_connection(any_db_url)
    first = OutboxEvent("Order", "1", "OrderCreated", {"n": 1})
    second = OutboxEvent("Order", "2", "OrderCreated", {"n": 2})
    path = tmp_path / "streams.db"
    try:
        outbox.publish(early, first)  # takes the lower seq, and stays uncommitted
        outbox.publish(late, second)
        late.commit()
        with embedded_backend(path) as backend, RelayRun(
            relay_config(any_db_url), backend
        ) as relay:
            _wait_for_ids(path, {second.id}, relay)
            time.sleep(0.3)  # several more polls see nothing new while `early` is open
            early.commit()
            records = _wait_for_ids(path, {first.id, second.id}, relay)
    finally:
        early.close()
        late.close()
    assert [header(r, "id") for r in records] == [second.id, first.id]
    assert outbox_rows(any_db_url) == []


def test_concurrent_writers_keep_per_aggregate_order_and_lose_nothing(
    any_db_url: str, tmp_path: Path
) -> None:
    create_outbox(any_db_url)
    path = tmp_path / "streams.db"
    with embedded_backend(path) as backend, RelayRun(
        relay_config(any_db_url, batch_size=7), backend
    ) as relay:
        writers = EventWriters(any_db_url, writers=4, transactions=30).start()
        writers.join()
        _wait_for_ids(path, writers.committed_ids, relay)
        time.sleep(0.2)  # a duplicate would show up now
    writers.check(stream_records(path))
    assert outbox_rows(any_db_url) == []
