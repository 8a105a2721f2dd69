"""A transaction larger than ``max_batch`` comes in bounded polls and resumes inside itself."""

from __future__ import annotations

from connectors.postgres import PostgresSource, PostgresSourceConfig
from liberate.records import SourceRecord
from liberate.streams.base import partition_key
from tests.integration.postgres.conftest import Database, Run


def poll_until_caught_up(source: PostgresSource) -> list[list[SourceRecord]]:
    batches: list[list[SourceRecord]] = []
    while True:
        batch = source.poll()
        if batch:
            batches.append(batch)
        elif source.caught_up():
            return batches


def test_large_transaction_is_returned_in_bounded_polls_and_resumes_inside_itself(
    db: Database, run: Run
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL)",
               "INSERT INTO items SELECT g, 0 FROM generate_series(1, 2500) g")
    run.write(snapshot_mode="never", max_batch=1000)
    assert run.once().ok
    db.execute("UPDATE items SET qty = qty + 1", "INSERT INTO items VALUES (9999, 0)")
    config = PostgresSourceConfig.model_validate(run.source)

    source = PostgresSource(config)
    source.open(run.offsets())
    try:
        batches = poll_until_caught_up(source)
    finally:
        source.close()
    # The big transaction in bounded polls; how the polls split the rest depends on when the
    # server sends it, so the test pins the bound, the order and where each poll ends.
    assert all(0 < len(b) <= 1000 for b in batches)
    flat = [r for b in batches for r in b]
    assert [r.key["id"] for r in flat if r.key] == [*range(1, 2501), 9999]
    first = len(batches[0])
    inside = batches[0][-1].offset
    assert inside["tx_events"] == first and inside["tx_lsn"] is not None
    end = flat[2499].offset
    assert "tx_lsn" not in end and end["lsn"] > inside["lsn"]  # type: ignore[operator]
    assert [r.key for r in batches[1][:1]] == [{"id": first + 1}]

    # As if only the first poll had become durable before a crash.
    again = PostgresSource(config)
    again.open({partition_key(again.partition): inside})
    try:
        replay = [r for b in poll_until_caught_up(again) for r in b]
    finally:
        again.close()
    assert [r.key["id"] for r in replay if r.key] == [*range(first + 1, 2501), 9999]
    assert replay[-1].offset == batches[-1][-1].offset
