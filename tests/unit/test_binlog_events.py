"""Binlog framing, small events, GTID positions, offsets and the DDL classifier."""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from decimal import Decimal

import pytest

from connectors.mysql import _binlog as ev
from connectors.mysql._ddl import StatementKind, classify
from connectors.mysql._gtid import MariadbGtidState, MysqlGtidSet
from connectors.mysql._replica import PacketReader, PurgedPositionError
from connectors.mysql.config import MySqlSourceConfig
from connectors.mysql.offsets import BinlogPosition, SnapshotProgress, TableProgress
from liberate.errors import PrerequisiteError, RetriableError
from tests.unit._binlog_fixtures import event_type, header, load_events, query_event


def test_format_description_of_mariadb_says_crc32_and_six_byte_table_ids() -> None:
    fde = next(e for e in load_events("all_types") if event_type(e) == ev.FORMAT_DESCRIPTION)
    description = ev.format_description(memoryview(fde))
    assert description.is_mariadb
    assert description.checksum == ev.CHECKSUM_CRC32
    assert description.table_id_size == 6
    assert description.post_header_length(ev.QUERY) == 13


def test_rotate_query_gtid_and_xid_events_decode() -> None:
    events = load_events("transactions")
    assert ev.rotate(memoryview(events[0])) == ev.Rotate("bin.000001", 6449)
    gtid = ev.mariadb_gtid(memoryview(events[2]))
    assert (gtid.text, gtid.standalone) == ("0-1-10", True)
    query = ev.query(memoryview(events[3]))
    assert query.database == "cap_transactions"
    assert query.sql.startswith("CREATE TABLE orders")
    in_transaction = ev.mariadb_gtid(memoryview(events[4]))
    assert (in_transaction.text, in_transaction.standalone) == ("0-1-11", False)
    xid = next(e for e in events if event_type(e) == ev.XID)
    assert ev.xid(memoryview(xid)) > 0


def test_gtid_list_and_heartbeat_events_decode() -> None:
    gtid_list = header(ev.MARIADB_GTID_LIST, struct.pack("<I", 2) + struct.pack(
        "<IIQ", 0, 1, 57) + struct.pack("<IIQ", 3, 2, 9))
    assert [g.text for g in ev.mariadb_gtid_list(memoryview(gtid_list))] == ["0-1-57", "3-2-9"]
    beat = header(ev.HEARTBEAT, b"bin.000007", log_pos=1234)
    assert ev.heartbeat(memoryview(beat)) == ev.Heartbeat("bin.000007", 1234)
    beat_v2 = header(ev.HEARTBEAT_V2, b"\x01\x0abin.000008\x02\x03\xfc\x39\x30\x00")
    assert ev.heartbeat(memoryview(beat_v2)) == ev.Heartbeat("bin.000008", 12345)


def test_mysql_gtid_event_decodes_uuid_and_number() -> None:
    sid = bytes.fromhex("3e11fa47718311e18bdd0800200c9a66")
    event = header(ev.MYSQL_GTID, b"\x01" + sid + struct.pack("<Q", 42) + b"\x00" * 17)
    assert ev.mysql_gtid(memoryview(event)).text == "3e11fa47-7183-11e1-8bdd-0800200c9a66:42"


@pytest.mark.parametrize(
    ("raw", "value", "end"),
    [("fa", 250, 1), ("fc3930", 12345, 3), ("fd010203", 0x030201, 4),
     ("fe0100000000000080", 2**63 + 1, 9)],
)
def test_length_encoded_integers(raw: str, value: int, end: int) -> None:
    assert ev.length_encoded_int(bytes.fromhex(raw), 0) == (value, end)


# -- packets ------------------------------------------------------------------------------


def _packet(payload: bytes, sequence: int = 1) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([sequence]) + payload


def _with_crc(event: bytes) -> bytes:
    return event + struct.pack("<I", zlib.crc32(event))


def test_packets_split_across_reads_come_out_whole_and_without_checksum() -> None:
    first, second = header(ev.XID, b"1" * 8), header(ev.XID, b"2" * 8)
    stream = _packet(b"\x00" + _with_crc(first)) + _packet(b"\x00" + _with_crc(second))
    reader = PacketReader(checksum=True)
    events = reader.feed(stream[:10]) + reader.feed(stream[10:40]) + reader.feed(stream[40:])
    assert [bytes(e) for e in events] == [first, second]


def test_a_corrupted_event_fails_its_checksum() -> None:
    event = bytearray(_with_crc(header(ev.XID, b"1" * 8)))
    event[20] ^= 1
    with pytest.raises(ev.BinlogDecodeError, match="CRC32"):
        PacketReader(checksum=True).feed(_packet(b"\x00" + bytes(event)))


def test_a_payload_of_16_mb_continues_in_the_next_packet() -> None:
    body = header(ev.QUERY, b"x" * (0xFFFFFF + 100))
    payload = b"\x00" + body
    stream = _packet(payload[:0xFFFFFF]) + _packet(payload[0xFFFFFF:], 2)
    events = PacketReader(checksum=False).feed(stream)
    assert len(events) == 1 and bytes(events[0]) == body


def test_error_1236_means_the_position_is_purged_and_lists_the_choices() -> None:
    error = b"\xff" + struct.pack("<H", 1236) + b"#HY000Could not find first log file name"
    with pytest.raises(PurgedPositionError) as raised:
        PacketReader(checksum=True).feed(_packet(error))
    assert "snapshot_mode: when_needed" in (raised.value.hint or "")
    assert "Could not find first log" in raised.value.message


def test_privilege_errors_are_prerequisites_and_eof_is_retriable() -> None:
    denied = b"\xff" + struct.pack("<H", 1227) + b"#42000Access denied"
    with pytest.raises(PrerequisiteError, match="REPLICATION SLAVE"):
        PacketReader(checksum=False).feed(_packet(denied))
    with pytest.raises(RetriableError):
        PacketReader(checksum=False).feed(_packet(b"\xfe\x00\x00\x02\x00"))


# -- GTIDs --------------------------------------------------------------------------------


def test_mariadb_gtid_state_advances_per_domain_and_compares() -> None:
    state = MariadbGtidState("0-1-5,2-1-9")
    state.add("0-1-6")
    state.add("1-3-1")
    assert state.text == "0-1-6,1-3-1,2-1-9"
    assert state.covers(MariadbGtidState("0-1-6,2-1-3"))
    assert not state.covers(MariadbGtidState("0-1-7"))
    assert not state.covers(MariadbGtidState("5-1-1"))
    assert MariadbGtidState("").text == ""
    with pytest.raises(ValueError, match="not a MariaDB GTID"):
        MariadbGtidState("0-1")


def test_mysql_gtid_set_merges_intervals_and_encodes_half_open() -> None:
    uuid = "3e11fa47-7183-11e1-8bdd-0800200c9a66"
    gtids = MysqlGtidSet(f"{uuid}:1-5:7")
    gtids.add(f"{uuid}:6")
    gtids.add(f"{uuid}:8")
    assert gtids.text == f"{uuid}:1-8"
    assert gtids.covers(MysqlGtidSet(f"{uuid}:2-4"))
    assert not gtids.covers(MysqlGtidSet(f"{uuid}:9"))
    encoded = gtids.encoded()
    assert struct.unpack_from("<Q", encoded, 0)[0] == 1
    assert encoded[8:24] == bytes.fromhex(uuid.replace("-", ""))
    assert struct.unpack_from("<QQQ", encoded, 24) == (1, 1, 9)


# -- offsets ------------------------------------------------------------------------------


def test_binlog_position_round_trips_and_orders_by_file_number() -> None:
    position = BinlogPosition("bin.000010", 4711, "0-1-57", 3, 1)
    assert BinlogPosition.from_map(position.to_map()) == position
    later, earlier = BinlogPosition("bin.000010", 4), BinlogPosition("bin.000009", 9999)
    assert later.coordinates > earlier.coordinates
    assert position.at_boundary().skip == 0


@pytest.mark.parametrize(
    "stored",
    [{"file": "", "pos": 4}, {"file": "bin.1", "pos": 1}, {"file": "bin.1", "pos": 4, "skip": -1},
     {"file": "bin.1", "pos": 4, "gtids": 5}],
)
def test_a_damaged_stored_offset_is_refused(stored: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BinlogPosition.from_map(stored)  # type: ignore[arg-type]


def test_snapshot_progress_keeps_key_types_through_json() -> None:
    key = (1, "a", Decimal("1.50"), dt.datetime(2024, 1, 2, 3, 4, 5, 6), dt.date(2024, 1, 2),
           dt.timedelta(hours=1, microseconds=5), dt.time(1, 2), b"\x00\xff", 2.5, None)
    progress = SnapshotProgress(
        [BinlogPosition("bin.000001", 4, "0-1-1"), BinlogPosition("bin.000002", 99, "0-1-7")],
        {"db.t": TableProgress([(0, None), (1, key)], key, False)},
    )
    again = SnapshotProgress.from_text(progress.to_text())
    assert again == progress
    assert again.resumed


# -- DDL ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "kind", "tables"),
    [
        ("ALTER TABLE orders ADD COLUMN x INT", StatementKind.ALTER_TABLE, [("db", "orders")]),
        ("alter online ignore table `shop`.`or``ders` add x int", StatementKind.ALTER_TABLE,
         [("shop", "or`ders")]),
        ("CREATE TABLE IF NOT EXISTS t (id INT)", StatementKind.CREATE_TABLE, [("db", "t")]),
        ("CREATE OR REPLACE TABLE t (id INT)", StatementKind.CREATE_TABLE, [("db", "t")]),
        ("DROP TABLE IF EXISTS `a`, b.c /* generated by server */", StatementKind.DROP_TABLE,
         [("db", "a"), ("b", "c")]),
        ("TRUNCATE orders", StatementKind.TRUNCATE, [("db", "orders")]),
        ("TRUNCATE TABLE x.orders", StatementKind.TRUNCATE, [("x", "orders")]),
        ("CREATE INDEX i ON orders (qty)", StatementKind.INDEX, [("db", "orders")]),
        ("/* c */ BEGIN", StatementKind.TRANSACTION, []),
        ("XA START 'x'", StatementKind.TRANSACTION, []),
        ("CREATE DEFINER=`root`@`%` TRIGGER trg BEFORE INSERT ON orders FOR EACH ROW SET @a=1",
         StatementKind.OTHER_DDL, []),
        ("CREATE VIEW v AS SELECT * FROM orders", StatementKind.OTHER_DDL, []),
        ("GRANT SELECT ON db.orders TO u", StatementKind.OTHER_DDL, []),
        ("INSERT INTO orders VALUES (1)", StatementKind.DML, None),
        ("FROBNICATE TABLE orders", StatementKind.UNKNOWN, None),
    ],
)
def test_statements_are_classified_with_the_tables_they_touch(
    sql: str, kind: StatementKind, tables: list[tuple[str, str]] | None
) -> None:
    statement = classify(sql, "db")
    assert statement.kind is kind
    if tables is not None:
        assert list(statement.tables) == tables
    else:
        assert ("db", "orders") in statement.tables


def test_renames_are_pairs_of_old_and_new_names() -> None:
    statement = classify("RENAME TABLE a TO b, x.c TO x.d", "db")
    assert statement.renames == ((("db", "a"), ("db", "b")), (("x", "c"), ("x", "d")))
    assert statement.touches({("db", "b")}) == [("db", "b")]
    alter = classify("ALTER TABLE a ADD y INT, RENAME TO z", "db")
    assert alter.renames == ((("db", "a"), ("db", "z")),)
    column = classify("ALTER TABLE a RENAME COLUMN x TO y", "db")
    assert column.renames == ()


def test_a_hand_made_query_event_decodes() -> None:
    event = query_event("shop", "DROP TABLE t")
    assert ev.query(memoryview(event)) == ev.Query(7, "shop", "DROP TABLE t", 0)


# -- config -------------------------------------------------------------------------------


def test_config_names_topics_and_derives_a_stable_server_id() -> None:
    config = MySqlSourceConfig(
        name="shop", connector="mysql", database="mysql://u@h/db", tables=["orders", "x.t"],
    )
    assert config.topic_for("db", "orders") == "shop.db.orders"
    assert 100_000 <= config.replica_server_id < 1_000_000
    assert config.replica_server_id == MySqlSourceConfig(
        name="shop", connector="mysql", database="mysql://u@h/other", tables=["t"],
    ).replica_server_id
    assert config.heartbeat_topic_name == "__liberate-heartbeat.shop"


@pytest.mark.parametrize(
    "changes",
    [{"tables": []}, {"tables": ["a.b.c"]}, {"tables": ["t", "t"]}, {"topic": "{nope}"},
     {"snapshot_mode": "always"}, {"server_id": 0}, {"bogus": 1}],
)
def test_config_mistakes_are_refused(changes: dict[str, object]) -> None:
    entry = {"name": "s", "connector": "mysql", "database": "mysql://u@h/db", "tables": ["t"]}
    with pytest.raises(ValueError):
        MySqlSourceConfig.model_validate({**entry, **changes})
