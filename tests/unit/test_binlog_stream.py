"""ChangeStream on captured events: records, exact resume offsets, DDL, windows, heartbeats."""

from __future__ import annotations

import logging
import struct
from typing import Any

import pytest

from connectors.mysql import _binlog as ev
from connectors.mysql._catalog import Catalog
from connectors.mysql._stream import ChangeStream
from connectors.mysql._window import SnapshotWindow
from connectors.mysql.offsets import BinlogPosition, SnapshotProgress, TableProgress
from liberate.errors import FatalError
from liberate.records import Primitive, SourceRecord
from tests.unit._binlog_fixtures import (
    TRANSACTIONS_DB,
    header,
    load_events,
    query_event,
    start_position,
    transactions_catalog,
)

DB = TRANSACTIONS_DB
ORDERS = f"{DB}.orders"
NOW_MS = 1_700_000_000_000
EVENTS = load_events("transactions")
#: the dump's fake ROTATE and FORMAT_DESCRIPTION, then the scenario
PRELUDE, BODY = EVENTS[:2], EVENTS[2:]
START = BinlogPosition("bin.000001", start_position(BODY[0]), "0-1-9", 0, 1)
AFTER_FIRST_TRANSACTION = 7595


def _stream(start: BinlogPosition = START, catalog: Catalog | None = None, **options: Any
            ) -> ChangeStream:
    return ChangeStream(
        flavor="mariadb", start=start, catalog=catalog or transactions_catalog(),
        partition={"server": "shop"}, **options,
    )


def _events_from(position: int) -> list[memoryview]:
    """What the server sends to a replica asking for ``position``: the prelude, then events."""
    return [memoryview(e) for e in PRELUDE + [e for e in BODY if start_position(e) >= position]]


def _read(stream: ChangeStream, events: list[memoryview]) -> list[SourceRecord]:
    out: list[SourceRecord] = []
    stream.feed(events, out, NOW_MS)
    return out


def _summary(record: SourceRecord) -> tuple[Any, ...]:
    value = record.value
    if value is None:
        return (record.key, None)
    row = value["after"] or value["before"]
    return (record.key, value["op"], row)


def test_changes_come_out_in_order_with_full_images_and_key_changes_split() -> None:
    records = _read(_stream(), _events_from(START.pos))
    assert [_summary(r) for r in records] == [
        ({"id": 1}, "c", {"id": 1, "qty": 10, "note": "a"}),
        ({"id": 2}, "c", {"id": 2, "qty": 20, "note": "b"}),
        ({"id": 3}, "c", {"id": 3, "qty": 30, "note": None}),
        ({"id": 1}, "u", {"id": 1, "qty": 11, "note": "a"}),
        ({"id": 2}, "u", {"id": 2, "qty": 21, "note": "b"}),
        ({"id": 3}, "u", {"id": 3, "qty": 31, "note": None}),
        ({"id": 3}, "d", {"id": 3, "qty": 31, "note": None}),
        ({"id": 3}, None),
        ({"id": 30}, "c", {"id": 30, "qty": 31, "note": None}),
        ({"id": 1}, "d", {"id": 1, "qty": 11, "note": "a"}),
        ({"id": 1}, None),
        ({"id": 4}, "c", {"id": 4, "qty": 40, "note": None, "status": "new"}),
        ({"id": 5}, "c", {"id": 5, "qty": 50, "status": "new"}),
        (None, "t", None),
    ]
    update = records[3].value
    assert update is not None
    assert update["before"] == {"id": 1, "qty": 10, "note": "a"}
    assert {k: update["source"][k] for k in ("db", "table", "gtid", "file", "snapshot")} == {
        "db": DB, "table": "orders", "gtid": "0-1-11", "file": "bin.000001", "snapshot": "false",
    }
    assert all(r.topic == "shop.cap_transactions.orders" for r in records)


def test_records_in_a_transaction_count_from_its_start_and_the_last_names_the_boundary() -> None:
    records = _read(_stream(), _events_from(START.pos))
    first_transaction = records[:11]
    start_map = {"file": "bin.000001", "pos": 6655, "gtids": "0-1-10", "server_id": 1}
    for count, record in enumerate(first_transaction[:-1], start=1):
        assert record.offset == {**start_map, "skip": count}
    assert first_transaction[-1].offset == {
        "file": "bin.000001", "pos": AFTER_FIRST_TRANSACTION, "gtids": "0-1-11", "skip": 0,
        "server_id": 1,
    }


def test_restarting_from_any_record_replays_exactly_the_records_after_it() -> None:
    records = _read(_stream(), _events_from(START.pos))
    for index, record in enumerate(records):
        position = BinlogPosition.from_map(record.offset)
        replayed = _read(_stream(position), _events_from(position.pos))
        assert [(_summary(r), r.offset) for r in replayed] == [
            (_summary(r), r.offset) for r in records[index + 1 :]
        ], f"restart after record {index}"


def test_rows_are_labelled_with_the_columns_they_were_written_with() -> None:
    records = _read(_stream(), _events_from(START.pos))
    before_alter, after_add, after_drop = records[0], records[11], records[12]
    names = [[f["name"] for f in r.value_schema.schema["fields"][0]["type"][1]["fields"]]
             for r in (before_alter, after_add, after_drop) if r.value_schema is not None]
    assert names == [["id", "qty", "note"], ["id", "qty", "note", "status"],
                     ["id", "qty", "status"]]
    assert before_alter.value_schema is records[9].value_schema


def test_ddl_on_captured_tables_is_reported_and_renames_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="connectors.mysql"):
        _read(_stream(), _events_from(START.pos))
    messages = [r.getMessage() for r in caplog.records]
    assert any("schema change on cap_transactions.orders: ALTER TABLE orders ADD" in m
               for m in messages)
    assert any("renamed" in m and "RENAME TABLE orders TO orders_old" in m for m in messages)


def test_changes_of_tables_not_captured_make_no_records_but_a_heartbeat_moves_the_position(
) -> None:
    def heartbeat(offset: dict[str, Primitive]) -> SourceRecord:
        return SourceRecord("beats", {"serverName": "shop"}, {"ts_ms": 1}, None, None,
                            {"server": "shop"}, offset)

    start = BinlogPosition("bin.000001", AFTER_FIRST_TRANSACTION, "0-1-11", 0, 1)
    other = [memoryview(e) for e in PRELUDE] + [
        memoryview(e) for e in BODY if AFTER_FIRST_TRANSACTION <= start_position(e) < 8039
    ]
    out = _read(_stream(start, heartbeat=heartbeat, heartbeat_interval_s=0.0), other)
    assert [r.topic for r in out] == ["beats"]
    assert out[0].offset == {"file": "bin.000001", "pos": 7997, "gtids": "0-1-13", "skip": 0,
                             "server_id": 1}


def test_a_statement_based_change_to_a_captured_table_stops_the_stream() -> None:
    events = [memoryview(e) for e in PRELUDE] + [
        memoryview(query_event(DB, "INSERT INTO orders VALUES (9, 9, 'x')", log_pos=9999))
    ]
    with pytest.raises(FatalError, match="binlog_format=ROW") as raised:
        _read(_stream(), events)
    assert "INSERT INTO orders VALUES (9, 9, 'x')" in raised.value.message


def test_a_statement_it_cannot_understand_on_a_captured_table_stops_it_quoted() -> None:
    events = [memoryview(query_event(DB, "FROBNICATE orders WITH vigour", log_pos=9999))]
    with pytest.raises(FatalError, match="could not be understood") as raised:
        _read(_stream(), events)
    assert "'FROBNICATE orders WITH vigour'" in raised.value.message
    # The same statement on another table is none of our business.
    assert _read(_stream(), [memoryview(query_event(DB, "FROBNICATE other", log_pos=9999))]) == []


def test_an_incident_or_an_undecodable_event_stops_the_stream() -> None:
    with pytest.raises(FatalError, match="INCIDENT"):
        _read(_stream(), [memoryview(header(ev.INCIDENT, b"\x01\x00\x00"))])
    with pytest.raises(FatalError, match="compressed transaction"):
        _read(_stream(), [memoryview(header(ev.TRANSACTION_PAYLOAD, b"\x00" * 8))])


def test_a_resumed_snapshot_drops_changes_already_in_its_later_read() -> None:
    # Keys up to 1 were read at E0 (where the stream starts), the rest at E1, after the first
    # transaction: that transaction's changes to keys above 1 are already in the snapshot.
    progress = SnapshotProgress(
        [START, BinlogPosition("bin.000001", AFTER_FIRST_TRANSACTION, "0-1-11")],
        {ORDERS: TableProgress([(0, None), (1, (1,))], None, True)},
        done=True,
    )
    window = SnapshotWindow(progress, {ORDERS: ("id",)})
    records = _read(_stream(window=window), _events_from(START.pos))
    assert [_summary(r)[:2] for r in records] == [
        ({"id": 1}, "c"), ({"id": 1}, "u"), ({"id": 1}, "d"), ({"id": 1}, None),
        ({"id": 4}, "c"), ({"id": 5}, "c"), (None, "t"),
    ]
    assert all("snapshot" in r.offset for r in records[:3])
    assert records[3].offset.get("pos") == AFTER_FIRST_TRANSACTION
    assert all("snapshot" not in r.offset for r in records[3:])


def test_caught_up_once_the_boundary_reaches_the_target_by_position_or_gtid() -> None:
    stream = _stream()
    target = BinlogPosition("bin.000001", AFTER_FIRST_TRANSACTION)
    assert not stream.caught_up_with(target, None)
    _read(stream, [memoryview(e) for e in PRELUDE + BODY[:14]])
    assert stream.caught_up_with(target, None)
    assert stream.caught_up_with(None, "0-1-12")
    assert not stream.caught_up_with(None, "0-1-13")


def test_rollback_to_a_savepoint_stays_inside_the_transaction() -> None:
    stream = _stream()
    begin = header(ev.MARIADB_GTID, struct.pack("<QIB", 99, 0, 0x0C), log_pos=20_000)
    events = [memoryview(begin), memoryview(query_event(DB, "SAVEPOINT s", log_pos=20_100)),
              memoryview(query_event(DB, "ROLLBACK TO SAVEPOINT s", log_pos=20_200))]
    _read(stream, events)
    assert stream.in_transaction
    _read(stream, [memoryview(query_event(DB, "COMMIT", log_pos=20_300))])
    assert not stream.in_transaction
    assert stream.offset["pos"] == 20_300 and stream.offset["gtids"] == "0-1-99"
