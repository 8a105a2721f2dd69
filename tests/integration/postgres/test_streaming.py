"""Large in-progress transactions streamed by the server (protocol 2): only what commits."""

from __future__ import annotations

from functools import partial
from typing import Any

from tests.integration.postgres.conftest import Database, Run, kill, values, wait_for
from tests.integration.postgres.test_crash import (
    ROWS,
    TOPIC,
    Writer,
    check_history,
    create_items,
    final_state,
    grown,
)


def stream_in_progress_transactions(db: Database) -> None:
    """Make the server stream any transaction past 64 kB of changes (new sessions of db)."""
    db.execute(f'ALTER DATABASE "{db.name}" SET logical_decoding_work_mem = \'64kB\'')


def streamed_transactions(db: Database) -> int:
    return int(db.scalar("SELECT coalesce(sum(stream_txns), 0) FROM pg_stat_replication_slots"
                         " WHERE slot_name = 'liberate_cdc'"))


def test_streamed_transactions_become_events_only_when_they_commit(
    db: Database, run: Run
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL)")
    stream_in_progress_transactions(db)
    run.write(max_batch=700)
    assert run.once().ok
    db.execute(
        "BEGIN;"
        " INSERT INTO items SELECT g, repeat('a', 100) FROM generate_series(1, 1500) g;"
        " SAVEPOINT s;"
        " INSERT INTO items SELECT g, repeat('s', 100) FROM generate_series(5001, 6500) g;"
        " ROLLBACK TO SAVEPOINT s;"
        " INSERT INTO items SELECT g, repeat('b', 100) FROM generate_series(1501, 3000) g;"
        " COMMIT",
        "BEGIN; INSERT INTO items SELECT g, 'gone' FROM generate_series(7001, 9000) g; ROLLBACK",
        "INSERT INTO items VALUES (9999, 'small')",
    )
    assert run.once().ok
    assert streamed_transactions(db) >= 2
    events = values(run.records(TOPIC := "cdc.public.items"))
    assert [e["after"]["id"] for e in events] == [*range(1, 3001), 9999]
    assert len({e["transaction"]["id"] for e in events[:3000]}) == 1
    assert [e["transaction"]["total_order"] for e in events[:3000]] == list(range(1, 3001))
    assert run.records(TOPIC)[-1].offset == 3000
    # Nothing left behind on disk, nothing sent twice.
    assert run.once().ok
    assert len(run.records(TOPIC)) == 3001


def test_kill_9_while_replaying_a_streamed_transaction_loses_and_repeats_nothing(
    db: Database, run: Run, children: list[Any]
) -> None:
    create_items(db)
    stream_in_progress_transactions(db)
    run.write(snapshot_chunk_size=5_000, max_batch=500)
    assert run.once().ok
    writer = Writer(db.url, big_every=10)
    writer.start()
    try:
        for _ in range(3):
            process = run.spawn()
            children.append(process)
            wait_for(partial(grown, run, run.count(TOPIC) + 1_500), what="streaming")
            kill(process)
    finally:
        writer.finish()
    report = run.once()
    assert report.ok, report.errors
    check_history(run.records(TOPIC), final_state(db))
    assert streamed_transactions(db) > 0
    assert ROWS > 0
