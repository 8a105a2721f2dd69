"""The MySQL source against a real server: every event kind, types, DDL, heartbeats."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.mysql import MySqlSource
from liberate.errors import SchemaCompatibilityError
from liberate.records import SourceRecord
from liberate.schema.avro import encode
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.serde import RecordSerializer
from tests.conformance.source import drain
from tests.integration.mysql.conftest import MySqlDb, changes, source_config

ORDERS = "CREATE TABLE orders (id INT PRIMARY KEY, qty INT NOT NULL, note VARCHAR(20))"


def poll_until(source: MySqlSource, count: int, timeout_s: float = 15.0) -> list[SourceRecord]:
    """Poll until ``count`` records arrived, then twice more to catch any extra."""
    records: list[SourceRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records.extend(source.poll())
    records.extend(source.poll())
    records.extend(source.poll())
    return records


def test_snapshot_then_inserts_updates_key_changes_deletes_and_truncate(db: MySqlDb) -> None:
    db.execute(ORDERS, "INSERT INTO orders VALUES (1, 10, 'a'), (2, 20, 'b')")
    source = MySqlSource(source_config(db, ["orders"]))
    source.open({})
    try:
        snapshot = drain(source)
        db.execute("INSERT INTO orders VALUES (3, 30, NULL)")
        db.transaction(
            "UPDATE orders SET qty = qty + 1 WHERE id = 1",
            "UPDATE orders SET id = 20 WHERE id = 2",
            "DELETE FROM orders WHERE id = 3",
        )
        db.execute("INSERT INTO orders VALUES (4, 40, 'x'), (5, 50, 'y')", "TRUNCATE orders")
        streamed = poll_until(source, 10)
    finally:
        source.close()
    assert changes(snapshot) == [
        ("r", {"id": 1}, {"id": 1, "qty": 10, "note": "a"}),
        ("r", {"id": 2}, {"id": 2, "qty": 20, "note": "b"}),
    ]
    assert changes(streamed) == [
        ("c", {"id": 3}, {"id": 3, "qty": 30, "note": None}),
        ("u", {"id": 1}, {"id": 1, "qty": 11, "note": "a"}),
        ("d", {"id": 2}, {"id": 2, "qty": 20, "note": "b"}),
        (None, {"id": 2}, None),
        ("c", {"id": 20}, {"id": 20, "qty": 20, "note": "b"}),
        ("d", {"id": 3}, {"id": 3, "qty": 30, "note": None}),
        (None, {"id": 3}, None),
        ("c", {"id": 4}, {"id": 4, "qty": 40, "note": "x"}),
        ("c", {"id": 5}, {"id": 5, "qty": 50, "note": "y"}),
        ("t", None, None),
    ]
    update = streamed[1].value
    assert update is not None and update["before"] == {"id": 1, "qty": 10, "note": "a"}
    source_block = update["source"]
    assert source_block["connector"] == "mysql" and source_block["table"] == "orders"
    assert source_block["db"] == db.name and source_block["snapshot"] == "false"
    assert source_block["file"].startswith("bin.") and source_block["pos"] > 4
    assert source_block["gtid"] and source_block["server_id"] >= 1
    assert snapshot[0].value is not None and snapshot[0].value["source"]["snapshot"] == "true"
    for record in snapshot + streamed:
        assert record.topic.endswith(f".{db.name}.orders")
        for data, schema in ((record.key, record.key_schema), (record.value, record.value_schema)):
            if data is not None:
                assert schema is not None
                encode(1, schema, data)


ALL_TYPES = (
    "CREATE TABLE all_types ("
    " id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,"
    " mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT,"
    " bu BIGINT UNSIGNED, f FLOAT, d DOUBLE, dec1 DECIMAL(10,3), dec2 DECIMAL(65,30),"
    " dt0 DATETIME, dt3 DATETIME(3), dt6 DATETIME(6), ts0 TIMESTAMP NULL, ts6 TIMESTAMP(6) NULL,"
    " tm0 TIME, tm4 TIME(4), dd DATE, ch CHAR(5), chl CHAR(100), vc VARCHAR(300),"
    " vl VARCHAR(20) CHARACTER SET latin1, tx TEXT, bin BINARY(4), vb VARBINARY(10), bl BLOB,"
    " en ENUM('small','medium','large'), st SET('a','b','c','d'), js JSON)"
)
INSERT_ALL_TYPES = (
    "INSERT INTO all_types VALUES (%s, -128, 255, -32768, 65535, -8388608, 16777215,"
    " -2147483648, 4294967295,"
    " -9223372036854775808, 18446744073709551615, 1.2345678, -2.25, -1234567.891,"
    " -12345678901234567890123456789012345.123456789012345678901234567890,"
    " '2024-02-29 23:59:59', '1999-12-31 23:59:59.123', '2038-01-19 03:14:07.999999',"
    " '2000-01-01 05:00:00', '2038-01-19 08:14:07.999999', '00:00:00', '12:34:56.7891',"
    " '9999-12-31', 'ab', REPEAT('é', 100), REPEAT('x', 300), 'café', 'text ☃', 'ab', x'00ff',"
    " x'deadbeef', 'medium', 'd,a', '{\"k\": [1, 2.5, null], \"a\": \"é\"}')"
)


def test_streamed_values_equal_snapshot_values_for_every_type(db: MySqlDb) -> None:
    # TIMESTAMPs are written in a session at +05:00: both paths must give the same instant.
    db.execute(ALL_TYPES, "SET time_zone = '+05:00'", (INSERT_ALL_TYPES, (1,)))
    source = MySqlSource(source_config(db, ["all_types"]))
    source.open({})
    try:
        (snapshot,) = drain(source)
        db.execute("SET time_zone = '+05:00'", (INSERT_ALL_TYPES, (2,)),
                   "INSERT INTO all_types (id) VALUES (3)")
        streamed, nulls = poll_until(source, 2)[:2]
    finally:
        source.close()
    assert snapshot.value is not None and streamed.value is not None
    read, written = dict(snapshot.value["after"]), dict(streamed.value["after"])
    assert (read.pop("id"), written.pop("id")) == (1, 2)
    assert written == read
    assert read["bu"] == Decimal("18446744073709551615")
    assert read["ts0"] == dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert read["f"] == pytest.approx(1.2345678, rel=1e-7) and read["st"] == "a,d"
    assert streamed.value_schema is not None and snapshot.value_schema is not None
    assert streamed.value_schema.fingerprint == snapshot.value_schema.fingerprint
    assert nulls.value is not None
    assert all(v is None for k, v in nulls.value["after"].items() if k != "id")


def test_rows_written_before_an_alter_keep_the_columns_they_were_written_with(db: MySqlDb) -> None:
    db.execute(ORDERS)
    source = MySqlSource(source_config(db, ["orders"], snapshot_mode="never"))
    source.open({})
    try:
        # The source reads all of this only after the last ALTER: the catalog is ahead of
        # the rows, the binlog's column names are not.
        db.execute(
            "INSERT INTO orders VALUES (1, 10, 'a')",
            "ALTER TABLE orders ADD COLUMN status VARCHAR(10) NULL",
            "INSERT INTO orders VALUES (2, 20, 'b', 'new')",
            "ALTER TABLE orders DROP COLUMN note",
            "INSERT INTO orders VALUES (3, 30, 'old')",
        )
        records = poll_until(source, 3)
    finally:
        source.close()
    assert [row for _, _, row in changes(records)] == [
        {"id": 1, "qty": 10, "note": "a"},
        {"id": 2, "qty": 20, "note": "b", "status": "new"},
        {"id": 3, "qty": 30, "status": "old"},
    ]


def test_a_ddl_change_makes_a_new_schema_version_and_a_breaking_one_stops_with_the_column(
    db: MySqlDb, tmp_path: Path
) -> None:
    db.execute(ORDERS)
    registry = EmbeddedRegistry(tmp_path / "registry.db")
    serializer = RecordSerializer(registry)
    source = MySqlSource(source_config(db, ["orders"], snapshot_mode="never"))
    source.open({})
    try:
        db.execute(
            "INSERT INTO orders VALUES (1, 10, 'a')",
            "ALTER TABLE orders ADD COLUMN status VARCHAR(10) NULL",
            "INSERT INTO orders VALUES (2, 20, 'b', 'new')",
        )
        serializer.serialize(poll_until(source, 2))
        subject = f"{source.settings.topic_for(db.name, 'orders')}-value"
        assert len(registry.versions(subject)) == 2
        db.execute(
            # No default: old records have no value for it (a constant default is compatible).
            "ALTER TABLE orders ADD COLUMN must INT NOT NULL",
            "INSERT INTO orders VALUES (3, 30, 'c', 'new', 7)",
        )
        breaking = poll_until(source, 1)
    finally:
        source.close()
    try:
        with pytest.raises(SchemaCompatibilityError) as raised:
            serializer.serialize(breaking)
    finally:
        registry.close()
    assert "must" in str(raised.value)


def test_an_idle_captured_table_still_moves_the_stored_position(db: MySqlDb) -> None:
    db.execute(ORDERS, "CREATE TABLE busy (id INT PRIMARY KEY)")
    config = source_config(db, ["orders"], snapshot_mode="never", heartbeat_topic=None,
                           heartbeat_interval="200ms")
    ((file, pos, *_),) = db.query("SHOW MASTER STATUS")
    source = MySqlSource(config)
    source.open({})
    try:
        db.execute("INSERT INTO busy VALUES (1)", "INSERT INTO busy VALUES (2)")
        beats: list[SourceRecord] = []
        deadline = time.monotonic() + 10
        while not beats and time.monotonic() < deadline:
            beats = source.poll()
    finally:
        source.close()
    assert [r.topic for r in beats] == [f"__liberate-heartbeat.{config.name}"]
    assert beats[0].key == {"serverName": config.name}
    moved: dict[str, Any] = dict(beats[0].offset)
    assert (moved["file"], moved["pos"]) > (file, pos)
    assert moved["skip"] == 0
    assert source.compacts(beats[0].topic)
