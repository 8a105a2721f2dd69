"""A run killed with SIGKILL in the middle of the snapshot or of streaming, while writers change
rows, then restarted: the stream holds the committed history exactly once.

Every row carries a version ``v``: inserted at 0, every update adds 1, deletes end it (ids are
never reused). Replaying the topic per key must then see an optional ``r`` first, then every
version exactly once in order (a gap is a lost event, a repeat or a step back is a duplicate
or an overlap between snapshot and stream), and end in exactly the table's final state.
"""

from __future__ import annotations

import random
import threading
from functools import partial
from typing import Any

import psycopg

from liberate.records import SinkRecord
from tests.integration.postgres.conftest import Database, Run, kill, wait_for

TOPIC = "cdc.public.items"
ROWS = 30_000


class Writer(threading.Thread):
    """Commits small random transactions (updates, inserts, deletes), and some big ones."""

    def __init__(self, url: str, *, big_every: int = 0, first_id: int = ROWS + 1) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.big_every = big_every
        self.done = threading.Event()
        self.committed = 0
        self.error: BaseException | None = None
        self._next_id = first_id

    def run(self) -> None:
        rng = random.Random(7)
        try:
            with psycopg.connect(self.url, autocommit=False) as conn:
                while not self.done.is_set():
                    self._transaction(conn, rng)
                    conn.commit()
                    self.committed += 1
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _transaction(self, conn: psycopg.Connection[Any], rng: random.Random) -> None:
        if self.big_every and self.committed % self.big_every == self.big_every - 1:
            low = rng.randrange(1, ROWS - 2000)
            conn.execute("UPDATE items SET v = v + 1 WHERE id BETWEEN %s AND %s",
                         (low, low + 1999))
            return
        for _ in range(rng.randrange(1, 5)):
            choice = rng.random()
            if choice < 0.75:
                conn.execute("UPDATE items SET v = v + 1 WHERE id = %s",
                              (rng.randrange(1, self._next_id),))
            elif choice < 0.9:
                conn.execute("INSERT INTO items (id, v, payload) VALUES (%s, 0, 'new')",
                              (self._next_id,))
                self._next_id += 1
            else:
                conn.execute("DELETE FROM items WHERE id = %s", (rng.randrange(1, self._next_id),))

    def finish(self) -> None:
        self.done.set()
        self.join(30)
        assert self.error is None, self.error
        assert self.committed > 0


def check_history(records: list[SinkRecord], final: dict[int, int]) -> dict[str, int]:
    """Replay the topic per key; assert no gap, no repeat, no step back, and the final state."""
    state: dict[int, int | None] = {}
    seen_snapshot: set[int] = set()
    counts = {"r": 0, "c": 0, "u": 0, "d": 0, "tombstone": 0}
    stream_started = False
    for record in records:
        assert record.key is not None
        key = record.key["id"]
        if record.value is None:
            counts["tombstone"] += 1
            assert state.get(key) is None, f"tombstone of live key {key}"
            continue
        op = record.value["op"]
        counts[op] += 1
        after = record.value["after"]
        where = f"key {key}, op {op}, record {record.offset}"
        if op == "r":
            assert not stream_started, f"snapshot event after stream events: {where}"
            assert key not in seen_snapshot, f"key read twice by the snapshot: {where}"
            seen_snapshot.add(key)
            state[key] = after["v"]
        elif op == "c":
            stream_started = True
            assert state.get(key) is None, f"create of a live key: {where}"
            assert after["v"] == 0, where
            state[key] = 0
        elif op == "u":
            stream_started = True
            previous = state.get(key)
            assert previous is not None, f"update of an absent key (lost create?): {where}"
            assert after["v"] == previous + 1, (
                f"version {previous} -> {after['v']}: "
                + ("gap (lost event)" if after["v"] > previous + 1 else "duplicate / overlap")
                + f" at {where}"
            )
            state[key] = after["v"]
        elif op == "d":
            stream_started = True
            assert state.get(key) is not None, f"delete of an absent key: {where}"
            state[key] = None
    live = {k: v for k, v in state.items() if v is not None}
    assert live == final, _diff(live, final)
    return counts


def _diff(got: dict[int, int], want: dict[int, int]) -> str:
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    wrong = [(k, got[k], want[k]) for k in sorted(set(got) & set(want)) if got[k] != want[k]][:5]
    return f"missing {missing}, extra {extra}, wrong versions (key, got, want) {wrong}"


def grown(run: Run, size: int) -> bool:
    return run.count(TOPIC) >= size


def create_items(db: Database) -> None:
    db.execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL, payload text)",
    )
    db.execute("INSERT INTO items SELECT g, 0, 'row ' || g FROM generate_series(1, %s) g",
               params=(ROWS,))


def final_state(db: Database) -> dict[int, int]:
    return {int(k): int(v) for k, v in db.rows("SELECT id, v FROM items")}


def test_kill_9_in_the_middle_of_the_snapshot_resumes_it_without_gap_or_overlap(
    db: Database, run: Run, children: list[Any]
) -> None:
    create_items(db)
    run.write(snapshot_chunk_size=500, max_batch=500)
    writer = Writer(db.url)
    writer.start()
    try:
        first = run.spawn()
        children.append(first)
        wait_for(lambda: run.count(TOPIC) >= 3_000, what="the snapshot to start")
        kill(first)
        read_before = run.count(TOPIC)
        assert read_before < ROWS, "the snapshot finished before the kill: make it longer"
        offsets = next(iter(run.offsets().values()))
        assert "snapshot_table" in offsets
        # Restart, and kill again while it is still reading: two resumes, two watermarks.
        second = run.spawn()
        children.append(second)
        wait_for(lambda: run.count(TOPIC) >= read_before + 3_000, what="the snapshot to resume")
        kill(second)
    finally:
        writer.finish()
    report = run.once()
    assert report.ok, report.errors
    counts = check_history(run.records(TOPIC), final_state(db))
    assert counts["r"] >= ROWS * 0.9
    assert counts["u"] > 0


def test_kill_9_while_streaming_loses_and_repeats_nothing(
    db: Database, run: Run, children: list[Any]
) -> None:
    create_items(db)
    # Big transactions (2,000 updates) are returned in polls of 500: kills land inside them.
    run.write(snapshot_chunk_size=5_000, max_batch=500)
    assert run.once().ok
    writer = Writer(db.url, big_every=25)
    writer.start()
    try:
        for _ in range(3):
            process = run.spawn()
            children.append(process)
            before = run.count(TOPIC)
            wait_for(partial(grown, run, before + 1_500), what="streaming")
            kill(process)
    finally:
        writer.finish()
    report = run.once()
    assert report.ok, report.errors
    counts = check_history(run.records(TOPIC), final_state(db))
    assert counts["r"] == ROWS
    assert counts["d"] == counts["tombstone"]


def test_server_restart_while_streaming_resumes_without_duplicates(
    db: Database, run: Run, children: list[Any], postgres_server: Any
) -> None:
    create_items(db)
    run.write(snapshot_chunk_size=5_000, max_batch=500)
    assert run.once().ok
    process = run.spawn()
    children.append(process)
    writer = Writer(db.url)
    writer.start()
    wait_for(partial(grown, run, ROWS + 500), what="streaming")
    writer.finish()
    postgres_server.restart()  # every connection, the stream included, is cut
    writer = Writer(db.url, first_id=int(db.scalar("SELECT max(id) FROM items")) + 1)
    writer.start()
    wait_for(partial(grown, run, run.count(TOPIC) + 500), what="streaming after the restart")
    writer.finish()
    kill(process)
    report = run.once()
    assert report.ok, report.errors
    check_history(run.records(TOPIC), final_state(db))
