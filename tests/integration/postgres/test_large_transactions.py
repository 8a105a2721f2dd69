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
    # The big transaction in bounded polls; the small one after it comes whole with its tail.
    assert [len(b) for b in batches] == [1000, 1000, 501]
    inside = batches[0][-1].offset
    assert inside["tx_events"] == 1000 and inside["tx_lsn"] is not None
    end = batches[2][499].offset
    assert "tx_lsn" not in end and end["lsn"] > inside["lsn"]  # type: ignore[operator]
    assert [r.key for r in batches[1][:1]] == [{"id": 1001}]

    # As if only the first poll had become durable before a crash.
    again = PostgresSource(config)
    again.open({partition_key(again.partition): inside})
    try:
        replay = [r for b in poll_until_caught_up(again) for r in b]
    finally:
        again.close()
    assert [r.key["id"] for r in replay if r.key] == [*range(1001, 2501), 9999]
    assert replay[-1].offset == batches[-1][-1].offset
