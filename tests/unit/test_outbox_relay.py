"""The polling relay on SQLite with the embedded stream: exactly once across crashes, retention,
bounded offsets, and its errors."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import outbox
from connectors.outbox import OutboxSource, OutboxSourceConfig, SeqRanges
from connectors.outbox import _polling as relay_module
from liberate.errors import PrerequisiteError, RetriableError
from liberate.records import SourceRecord
from liberate.serde import RecordSerializer
from liberate.streams.base import SourceOffset, partition_key
from liberate.streams.embedded import EmbeddedBackend
from tests.conformance.source import drain


@pytest.fixture
def app_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    outbox.create_table(conn)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[EmbeddedBackend]:
    backend = EmbeddedBackend(tmp_path / "streams.db")
    backend.open()
    yield backend
    backend.close()


def _config(app_db: Path, **settings: Any) -> OutboxSourceConfig:
    return OutboxSourceConfig.model_validate(
        {"name": "relay", "connector": "outbox", "database": f"sqlite:///{app_db}", **settings}
    )


def _publish(app_db: Path, n: int, *, start: int = 1) -> list[str]:
    conn = sqlite3.connect(app_db)
    ids = [outbox.publish(conn, outbox.OutboxEvent("Order", str(i), "OrderCreated", {"n": i}))
           for i in range(start, start + n)]
    conn.commit()
    conn.close()
    return ids


def _table(app_db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(app_db)
    try:
        return conn.execute("SELECT seq, id, relayed_at FROM outbox ORDER BY seq").fetchall()
    finally:
        conn.close()


def _ids(records: list[SourceRecord]) -> list[str]:
    return [dict(r.headers)["id"].decode() for r in records]


def _append(
    backend: EmbeddedBackend, source: OutboxSource, records: list[SourceRecord]
) -> list[SourceOffset]:
    """What the runtime does with a batch before ``commit``: make records and offset durable."""
    for topic in {r.topic for r in records}:
        backend.ensure_topic(topic)
    offsets = [SourceOffset(source.name, records[-1].partition, records[-1].offset)]
    backend.append(RecordSerializer(backend.registry()).serialize(records), offsets)
    return offsets


def _stream_ids(backend: EmbeddedBackend) -> list[str]:
    consumer = backend.consumer("check", topics=["outbox.event.Order"])
    try:
        return [dict(r.headers)["id"].decode() for r in consumer.poll(10_000, 0.1)]
    finally:
        consumer.close()


def test_a_crash_after_the_records_are_durable_repeats_nothing(
    app_db: Path, backend: EmbeddedBackend
) -> None:
    ids = _publish(app_db, 5)
    source = OutboxSource(_config(app_db))
    source.open(backend.source_offsets("relay"))
    records = source.poll()
    _append(backend, source, records)
    source.close()  # the crash: commit() never ran, the rows are still in the table
    assert len(_table(app_db)) == 5

    restarted = OutboxSource(_config(app_db))
    restarted.open(backend.source_offsets("relay"))
    try:
        assert drain(restarted) == []
    finally:
        restarted.close()
    assert _table(app_db) == []  # open() finished the interrupted confirmation
    assert _stream_ids(backend) == ids


def test_a_crash_before_the_records_are_durable_loses_nothing(
    app_db: Path, backend: EmbeddedBackend
) -> None:
    ids = _publish(app_db, 5)
    source = OutboxSource(_config(app_db, batch_size=2))
    source.open({})
    first = source.poll()
    _append(backend, source, first)
    source.commit([SourceOffset("relay", first[-1].partition, first[-1].offset)])
    source.poll()  # read, then the crash: never appended
    source.close()

    restarted = OutboxSource(_config(app_db, batch_size=2))
    restarted.open(backend.source_offsets("relay"))
    try:
        rest = drain(restarted)
    finally:
        restarted.close()
    assert _ids(first) + _ids(rest) == ids


def test_each_records_offset_covers_exactly_the_rows_up_to_it(app_db: Path) -> None:
    _publish(app_db, 4)
    source = OutboxSource(_config(app_db))
    source.open({})
    try:
        records = source.poll()
    finally:
        source.close()
    assert [r.offset for r in records] == [
        {"relayed": "1", "seq": 1}, {"relayed": "1-2", "seq": 2},
        {"relayed": "1-3", "seq": 3}, {"relayed": "1-4", "seq": 4},
    ]


def test_unconfirmed_rows_are_not_read_twice_and_offsets_accumulate_them(app_db: Path) -> None:
    _publish(app_db, 5)
    source = OutboxSource(_config(app_db, batch_size=2))
    source.open({})
    try:
        first, second = source.poll(), source.poll()
        assert _ids(first) != _ids(second)
        assert second[-1].offset == {"relayed": "1-4", "seq": 4}
        source.commit([SourceOffset("relay", first[-1].partition, first[-1].offset)])
        assert [row[0] for row in _table(app_db)] == [3, 4, 5]
        third = source.poll()
        assert third[-1].offset == {"relayed": "3-5", "seq": 5}
    finally:
        source.close()


def test_a_failed_confirmation_is_retriable_and_carried_by_the_next_offset(
    app_db: Path,
) -> None:
    _publish(app_db, 2)
    # timeout=0: the relay's connections give up on a lock at once
    config = OutboxSourceConfig.model_validate({
        "name": "relay", "connector": "outbox", "database": f"sqlite:///{app_db}?timeout=0",
        "batch_size": 1,
    })
    source = OutboxSource(config)
    source.open({})
    try:
        first = source.poll()
        locker = sqlite3.connect(app_db)
        locker.execute("BEGIN EXCLUSIVE")  # the confirmation cannot write now
        with pytest.raises(RetriableError, match="locked"):
            source.commit([SourceOffset("relay", first[-1].partition, first[-1].offset)])
        locker.rollback()
        locker.close()
        second = source.poll()
        assert second[-1].offset == {"relayed": "1-2", "seq": 2}
        source.commit([SourceOffset("relay", second[-1].partition, second[-1].offset)])
    finally:
        source.close()
    assert _table(app_db) == []


def test_retention_keeps_relayed_rows_marked_then_purges_them(
    app_db: Path, backend: EmbeddedBackend
) -> None:
    _publish(app_db, 2)
    source = OutboxSource(_config(app_db, retention="300ms"))
    source.open({})
    try:
        records = source.poll()
        source.commit(_append(backend, source, records))
        rows = _table(app_db)
        assert len(rows) == 2 and all(row[2] is not None for row in rows)
        assert source.poll() == []  # marked rows are never read again
        time.sleep(0.4)
        _publish(app_db, 1, start=3)
        records = source.poll()
        assert len(records) == 1
        source.commit(_append(backend, source, records))
    finally:
        source.close()
    rows = _table(app_db)
    assert [row[0] for row in rows] == [3] and rows[0][2] is not None


def test_a_restart_with_retention_reads_no_marked_row(
    app_db: Path, backend: EmbeddedBackend
) -> None:
    _publish(app_db, 3)
    source = OutboxSource(_config(app_db, retention="1h"))
    source.open({})
    source.commit(_append(backend, source, source.poll()))
    source.close()
    again = OutboxSource(_config(app_db, retention="1h"))
    again.open(backend.source_offsets("relay"))
    try:
        assert drain(again) == []
    finally:
        again.close()
    assert len(_table(app_db)) == 3


def test_the_pending_set_and_so_the_offset_stay_bounded(
    app_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "MAX_PENDING_RANGES", 3)
    _publish(app_db, 12)
    conn = sqlite3.connect(app_db)
    conn.execute("DELETE FROM outbox WHERE seq % 2 = 0")  # every other seq missing: 6 ranges
    conn.commit()
    conn.close()
    source = OutboxSource(_config(app_db))
    source.open({})
    try:
        first = source.poll()
        assert [r.offset["seq"] for r in first] == [1, 3, 5]
        assert len(SeqRanges.parse(str(first[-1].offset["relayed"]))) == 3
        assert source.poll() == []  # full: wait for the runtime to confirm
        source.commit([SourceOffset("relay", first[-1].partition, first[-1].offset)])
        assert [r.offset["seq"] for r in source.poll()] == [7, 9, 11]
    finally:
        source.close()


def test_caught_up_means_everything_visible_at_open_was_returned(app_db: Path) -> None:
    _publish(app_db, 3)
    source = OutboxSource(_config(app_db, batch_size=2))
    source.open({})
    try:
        assert len(source.poll()) == 2 and not source.caught_up()
        assert len(source.poll()) == 1 and not source.caught_up()
        _publish(app_db, 2, start=4)  # arrives after open
        assert source.poll() == [] and source.caught_up()  # the end of --once
        assert len(source.poll()) == 2
    finally:
        source.close()


def test_stop_makes_poll_return_nothing(app_db: Path) -> None:
    _publish(app_db, 3)
    source = OutboxSource(_config(app_db))
    source.open({})
    try:
        source.stop()
        assert source.poll() == []
    finally:
        source.close()


def test_a_missing_table_is_a_prerequisite_error_with_the_ddl_to_run(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    source = OutboxSource(_config(empty))
    with pytest.raises(PrerequisiteError, match="does not exist") as caught:
        source.open({})
    assert caught.value.hint is not None and "outbox/sql" in caught.value.hint
    assert not source.check()[-1].ok


def test_a_missing_column_is_named(app_db: Path) -> None:
    source = OutboxSource(_config(app_db, columns={"headers": "meta"}))
    with pytest.raises(PrerequisiteError, match=r"no column.*meta"):
        source.open({})


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(PrerequisiteError, match="does not exist"):
        OutboxSource(_config(missing)).open({})
    assert not missing.exists()


def test_check_and_status_report_the_table_and_its_backlog(app_db: Path) -> None:
    _publish(app_db, 2)
    source = OutboxSource(_config(app_db))
    assert all(result.ok for result in source.check())
    status = source.status({partition_key({"table": "outbox"}): {"relayed": "1", "seq": 1}})
    assert status.lag == {"outbox": {"rows": 2}}


def test_rows_left_marked_by_a_former_retention_are_purged_with_retention_zero(
    app_db: Path, backend: EmbeddedBackend
) -> None:
    _publish(app_db, 2)
    kept = OutboxSource(_config(app_db, retention="1h"))
    kept.open({})
    kept.commit(_append(backend, kept, kept.poll()))
    kept.close()
    assert len(_table(app_db)) == 2
    _publish(app_db, 1, start=3)
    source = OutboxSource(_config(app_db))
    source.open(backend.source_offsets("relay"))
    try:
        records = source.poll()
        assert len(records) == 1
        source.commit(_append(backend, source, records))
    finally:
        source.close()
    assert _table(app_db) == []
