"""Exact resume: by GTID and by file/position, mid-transaction, after lost connections,
after a purged binlog, and after an interrupted snapshot."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest

from connectors.mysql import MySqlSource
from liberate.errors import FatalError
from liberate.records import SourceRecord
from tests.conformance.source import drain, offsets_after
from tests.integration.mysql.conftest import MySqlDb, changes, read_all, source_config
from tests.integration.mysql.test_mysql_changes import ORDERS, poll_until


def _inserts(db: MySqlDb, ids: range) -> None:
    for i in ids:
        db.execute(("INSERT INTO orders VALUES (%s, %s, 'n')", (i, i * 10)))


def _ids(records: list[SourceRecord]) -> Counter[int]:
    return Counter(r.key["id"] for r in records if r.key is not None and r.value is not None)


@pytest.mark.parametrize("position_mode", ["gtid", "file"])
def test_a_restarted_source_resumes_exactly_after_the_last_stored_record(
    db: MySqlDb, position_mode: str
) -> None:
    db.execute(ORDERS)
    config = source_config(db, ["orders"], position_mode=position_mode, batch_size=3)
    first = read_all(config)
    assert first == []
    _inserts(db, range(1, 11))
    source = MySqlSource(config)
    source.open(offsets_after(first))
    try:
        head = poll_until(source, 1)[:4]
    finally:
        source.close()
    assert 0 < len(head) < 10
    stored = offsets_after(head)
    if position_mode == "file":
        assert set(next(iter(stored.values()))) >= {"file", "pos"}
    rest = read_all(config, stored)
    assert _ids(head) + _ids(rest) == Counter(range(1, 11))


def test_a_transaction_larger_than_a_batch_resumes_inside_it(db: MySqlDb) -> None:
    db.execute(ORDERS)
    config = source_config(db, ["orders"], batch_size=5, snapshot_mode="never")
    source = MySqlSource(config)
    source.open({})
    try:
        db.transaction(
            *(("INSERT INTO orders VALUES (%s, %s, 'big')", (i, i)) for i in range(1, 24))
        )
        head: list[SourceRecord] = []
        while len(head) < 7:
            head += source.poll()
    finally:
        source.close()
    offsets = offsets_after(head[:7])
    assert next(iter(offsets.values()))["skip"] == 7
    rest = read_all(config, offsets)
    assert [r.key["id"] for r in head[:7] + rest if r.key] == list(range(1, 24))


def _kill_binlog_dumps(db: MySqlDb) -> int:
    threads = db.query(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'"
    )
    for (thread_id,) in threads:
        db.execute(f"KILL {int(thread_id)}")
    return len(threads)


def test_a_killed_dump_connection_reconnects_from_the_last_record_returned(
    db: MySqlDb, caplog: pytest.LogCaptureFixture
) -> None:
    db.execute(ORDERS)
    source = MySqlSource(source_config(db, ["orders"], batch_size=4))
    source.open({})
    records: list[SourceRecord] = []
    try:
        assert drain(source) == []
        writer = threading.Thread(target=_inserts, args=(db, range(1, 61)))
        writer.start()
        killed = 0
        with caplog.at_level(logging.WARNING, logger="connectors.mysql"):
            deadline = time.monotonic() + 30
            while len(records) < 60 and time.monotonic() < deadline:
                records += source.poll()
                if killed < 2 and len(records) >= 15 * (killed + 1):
                    killed += _kill_binlog_dumps(db) and 1
        writer.join()
        records += poll_until(source, 0)
    finally:
        source.close()
    assert killed == 2
    assert any("reconnecting from" in r.getMessage() for r in caplog.records)
    assert [r.key["id"] for r in records if r.key] == list(range(1, 61))


def test_a_server_restart_is_survived_without_loss_or_duplicates(db: MySqlDb) -> None:
    db.execute(ORDERS)
    source = MySqlSource(source_config(db, ["orders"]))
    source.open({})
    try:
        assert drain(source) == []
        _inserts(db, range(1, 6))
        records = poll_until(source, 5)
        db.server.restart()
        _inserts(db, range(6, 11))
        records += poll_until(source, 5, timeout_s=40)
    finally:
        source.close()
    assert [r.key["id"] for r in records if r.key] == list(range(1, 11))


def _purge_binlogs(db: MySqlDb, needed: str) -> None:
    """Purge every binlog before the current one, ``needed`` included."""
    db.execute("FLUSH BINARY LOGS", "FLUSH BINARY LOGS")
    ((current, *_),) = db.query("SHOW MASTER STATUS")
    # The server keeps files a dump thread still reads: a closed source's thread ends when
    # the server notices, so purge until the file is gone.
    deadline = time.monotonic() + 15
    while any(name == needed for name, *_ in db.query("SHOW BINARY LOGS")):
        assert time.monotonic() < deadline, f"{needed} could not be purged"
        db.execute(("PURGE BINARY LOGS TO %s", (current,)))
        time.sleep(0.1)


@pytest.mark.parametrize("position_mode", ["gtid", "file"])
def test_a_purged_position_stops_with_the_choices_or_snapshots_again_when_needed(
    db: MySqlDb, position_mode: str
) -> None:
    db.execute(ORDERS, "INSERT INTO orders VALUES (1, 10, 'a')")
    config = source_config(db, ["orders"], position_mode=position_mode)
    first = read_all(config)
    assert changes(first) == [("r", {"id": 1}, {"id": 1, "qty": 10, "note": "a"})]
    stored = offsets_after(first)
    _inserts(db, range(2, 4))
    _purge_binlogs(db, str(next(iter(stored.values()))["file"]))
    with pytest.raises(FatalError) as raised:
        read_all(config, stored)
    assert "snapshot_mode: when_needed" in (raised.value.hint or "")
    again = read_all(source_config(db, ["orders"], position_mode=position_mode,
                                   snapshot_mode="when_needed"), stored)
    assert [(op, key) for op, key, _ in changes(again)] == [
        ("r", {"id": 1}), ("r", {"id": 2}), ("r", {"id": 3}),
    ]


def test_an_interrupted_snapshot_resumes_without_moving_rows_back_in_time(db: MySqlDb) -> None:
    db.execute(
        "CREATE TABLE counters (id INT PRIMARY KEY, version INT NOT NULL)",
        *(("INSERT INTO counters VALUES (%s, 0)", (i,)) for i in range(1, 9)),
    )
    config = source_config(db, ["counters"], snapshot_chunk_size=3, batch_size=3)
    source = MySqlSource(config)
    source.open({})
    try:
        first_chunk = source.poll()  # ids 1-3, read in the first consistent read (E0)
    finally:
        source.close()
    # Two versions land after E0 and before the resumed read (E1), one after it.
    db.execute("UPDATE counters SET version = 1", "UPDATE counters SET version = 2")
    source = MySqlSource(config)
    source.open(offsets_after(first_chunk))
    try:
        records = first_chunk + drain(source)
        db.execute("UPDATE counters SET version = 3")
        records += poll_until(source, 8)
    finally:
        source.close()
    versions: dict[int, list[int]] = {}
    for op, key, row in changes(records):
        assert op in ("r", "u") and key is not None and row is not None
        versions.setdefault(key["id"], []).append(row["version"])
    assert versions == {
        **{i: [0, 1, 2, 3] for i in (1, 2, 3)},  # read at E0: every later change follows
        **{i: [2, 3] for i in range(4, 9)},  # read at E1: the changes before E1 are in it
    }


def test_resuming_the_stream_of_a_resumed_snapshot_inside_its_window(db: MySqlDb) -> None:
    db.execute(
        "CREATE TABLE counters (id INT PRIMARY KEY, version INT NOT NULL)",
        *(("INSERT INTO counters VALUES (%s, 0)", (i,)) for i in range(1, 7)),
    )
    config = source_config(db, ["counters"], snapshot_chunk_size=3, batch_size=2)
    first_chunk = _first_poll(config, {})
    db.execute("UPDATE counters SET version = 1")
    db.execute("UPDATE counters SET version = 2")
    everything = read_all(config, offsets_after(first_chunk))
    # Crash after every single record: the replay continues exactly.
    for index in range(len(everything)):
        rest = read_all(config, offsets_after(first_chunk + everything[: index + 1]))
        assert changes(rest) == changes(everything[index + 1 :]), f"after record {index}"


def _first_poll(config: Any, offsets: dict[str, Any]) -> list[SourceRecord]:
    source = MySqlSource(config)
    source.open(offsets)
    try:
        return source.poll()
    finally:
        source.close()
