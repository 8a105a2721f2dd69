"""Every event kind of the WAL source, as a consumer of the stream sees it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from tests.integration.postgres.conftest import Database, Run, values

TOPIC = "cdc.public.items"


def create_items(db: Database, *, identity: str = "DEFAULT") -> None:
    db.execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int, note text, "
        "price numeric(10,2), seen timestamptz)",
        # EXTERNAL: large values are moved out of line uncompressed, so they are TOASTed.
        "ALTER TABLE items ALTER COLUMN note SET STORAGE EXTERNAL",
        f"ALTER TABLE items REPLICA IDENTITY {identity}",
    )


def test_snapshot_reads_every_row_as_r_events_the_last_one_marked_last(
    db: Database, run: Run
) -> None:
    create_items(db)
    db.execute("INSERT INTO items SELECT g, 'n' || g, g, NULL, g * 1.5, "
               "'2024-01-02 03:04:05+00' FROM generate_series(1, 25) g")
    run.write(snapshot_chunk_size=7)
    report = run.once()
    assert report.ok, report.errors
    events = values(run.records(TOPIC))
    assert [e["after"]["id"] for e in events] == list(range(1, 26))
    assert {e["op"] for e in events} == {"r"}
    assert [e["source"]["snapshot"] for e in events] == ["true"] * 24 + ["last"]
    first = events[0]
    assert first["before"] is None and first["transaction"] is None
    assert first["after"] == {"id": 1, "name": "n1", "qty": 1, "note": None,
                              "price": Decimal("1.50"),
                              "seen": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)}
    source = first["source"]
    assert (source["connector"], source["name"], source["db"], source["schema"],
            source["table"]) == ("postgresql", "cdc", db.name, "public", "items")
    assert source["lsn"] > 0 and source["txId"] is None
    assert run.offsets() and "snapshot_table" not in next(iter(run.offsets().values()))


def test_insert_update_delete_stream_as_c_u_d_with_tombstone(db: Database, run: Run) -> None:
    create_items(db)
    assert run.once().ok
    db.execute(
        "INSERT INTO items VALUES (1, 'one', 1, NULL, 9.99, NULL)",
        "UPDATE items SET qty = 2 WHERE id = 1",
        "DELETE FROM items WHERE id = 1",
    )
    assert run.once().ok
    records = run.records(TOPIC)
    assert [(r.key, r.value["op"] if r.value else None) for r in records] == [
        ({"id": 1}, "c"), ({"id": 1}, "u"), ({"id": 1}, "d"), ({"id": 1}, None),
    ]
    created, updated, deleted = values(records)
    assert created["before"] is None and created["after"]["qty"] == 1
    # REPLICA IDENTITY DEFAULT: no before-image of an update, only the key of a delete.
    assert updated["before"] is None and updated["after"]["qty"] == 2
    assert deleted["after"] is None
    assert deleted["before"] == {"id": 1, "name": None, "qty": None, "note": None,
                                 "price": None, "seen": None}
    txids = [e["source"]["txId"] for e in (created, updated, deleted)]
    assert len(set(txids)) == 3
    for event in (created, updated, deleted):
        assert event["transaction"]["id"] == f"{event['source']['txId']}:" + \
            event["transaction"]["id"].split(":")[1]
        assert event["transaction"]["total_order"] == 1
        assert event["source"]["snapshot"] == "false"
    lsns = [e["source"]["lsn"] for e in (created, updated, deleted)]
    assert lsns == sorted(lsns)


def test_full_replica_identity_gives_whole_before_images(db: Database, run: Run) -> None:
    create_items(db, identity="FULL")
    assert run.once().ok
    db.execute(
        "INSERT INTO items VALUES (1, 'one', 1, NULL, 1.00, NULL)",
        "UPDATE items SET qty = 2 WHERE id = 1",
        "DELETE FROM items WHERE id = 1",
    )
    assert run.once().ok
    _, updated, deleted = values(run.records(TOPIC))
    assert updated["before"]["qty"] == 1 and updated["before"]["name"] == "one"
    assert updated["after"]["qty"] == 2
    assert deleted["before"] == updated["after"]


def test_transaction_metadata_orders_events_within_the_transaction(
    db: Database, run: Run
) -> None:
    create_items(db)
    db.execute("CREATE TABLE other (id int PRIMARY KEY)")
    run.write(tables=["items", "public.other"])
    assert run.once().ok
    with_tx = (
        "BEGIN; INSERT INTO items VALUES (1, 'a', 1, NULL, NULL, NULL);"
        " INSERT INTO other VALUES (7); INSERT INTO items VALUES (2, 'b', 1, NULL, NULL, NULL);"
        " COMMIT"
    )
    db.execute(with_tx)
    assert run.once().ok
    items = values(run.records(TOPIC))
    other = values(run.records("cdc.public.other"))
    blocks = [e["transaction"] for e in items + other]
    assert len({b["id"] for b in blocks}) == 1
    assert sorted(b["total_order"] for b in blocks) == [1, 2, 3]
    assert [e["transaction"]["total_order"] for e in items] == [1, 3]
    assert [e["transaction"]["data_collection_order"] for e in items] == [1, 2]
    assert other[0]["transaction"]["data_collection_order"] == 1


def test_key_change_is_a_delete_of_the_old_key_and_a_create_of_the_new(
    db: Database, run: Run
) -> None:
    create_items(db)
    db.execute("INSERT INTO items VALUES (1, 'one', 1, NULL, NULL, NULL)")
    assert run.once().ok
    db.execute("UPDATE items SET id = 5 WHERE id = 1")
    assert run.once().ok
    records = run.records(TOPIC)[1:]
    assert [(r.key, r.value["op"] if r.value else None) for r in records] == [
        ({"id": 1}, "d"), ({"id": 1}, None), ({"id": 5}, "c"),
    ]
    assert records[2].value is not None and records[2].value["after"]["name"] == "one"


def test_unchanged_toast_value_is_marked_unchanged_not_sent(db: Database, run: Run) -> None:
    create_items(db)
    big = "x" * 10_000
    db.execute("INSERT INTO items VALUES (1, 'one', 1, %s, NULL, NULL)", params=(big,))
    assert run.once().ok
    db.execute("UPDATE items SET qty = 2 WHERE id = 1")
    assert run.once().ok
    snapshot, update = values(run.records(TOPIC))
    assert snapshot["after"]["note"] == big and snapshot["unchanged"] is None
    assert update["op"] == "u"
    assert update["unchanged"] == ["note"]
    assert update["after"]["note"] is None  # no value, and the marker says it is unchanged
    assert update["after"]["qty"] == 2


def test_unchanged_toast_value_under_full_identity_is_taken_from_the_old_row(
    db: Database, run: Run
) -> None:
    create_items(db, identity="FULL")
    big = "y" * 10_000
    db.execute("INSERT INTO items VALUES (1, 'one', 1, %s, NULL, NULL)", params=(big,))
    assert run.once().ok
    db.execute("UPDATE items SET qty = 2 WHERE id = 1")
    assert run.once().ok
    update = values(run.records(TOPIC))[-1]
    assert update["unchanged"] is None
    assert update["after"]["note"] == big and update["before"]["note"] == big


def test_truncate_streams_a_t_event_without_key(db: Database, run: Run) -> None:
    create_items(db)
    db.execute("INSERT INTO items VALUES (1, 'one', 1, NULL, NULL, NULL)")
    assert run.once().ok
    db.execute("TRUNCATE items")
    assert run.once().ok
    last = run.records(TOPIC)[-1]
    assert last.key is None and last.value is not None
    assert last.value["op"] == "t"
    assert last.value["before"] is None and last.value["after"] is None
    assert last.value["source"]["table"] == "items"


def test_logical_decoding_messages_become_m_events_when_enabled(db: Database, run: Run) -> None:
    create_items(db)
    run.write(messages=True, message_prefixes=["orders"])
    assert run.once().ok
    db.execute(
        "SELECT pg_logical_emit_message(true, 'orders', 'in a transaction')",
        "SELECT pg_logical_emit_message(false, 'orders', 'outside')",
        "SELECT pg_logical_emit_message(false, 'ignored', 'not listed')",
    )
    assert run.once().ok
    records = run.records("cdc.message")
    assert [r.key for r in records] == [{"prefix": "orders"}, {"prefix": "orders"}]
    first, second = values(records)
    assert first["op"] == "m" and first["message"]["content"] == b"in a transaction"
    assert first["transaction"] is not None and first["source"]["txId"] is not None
    assert second["message"]["content"] == b"outside" and second["transaction"] is None
    # A second run does not send them again.
    assert run.once().ok
    assert len(run.records("cdc.message")) == 2


def test_messages_are_not_events_by_default(db: Database, run: Run) -> None:
    create_items(db)
    assert run.once().ok
    db.execute("SELECT pg_logical_emit_message(true, 'orders', 'x')")
    assert run.once().ok
    assert run.records("cdc.message") == []


def test_topic_template_overrides_the_default_name(db: Database, run: Run) -> None:
    create_items(db)
    db.execute("INSERT INTO items VALUES (1, 'one', 1, NULL, NULL, NULL)")
    run.write(topic="lake.{schema}_{table}")
    assert run.once().ok
    assert len(run.records("lake.public_items")) == 1


def test_snapshot_and_stream_give_the_same_values_for_every_type(
    db: Database, run: Run
) -> None:
    db.execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy')",
        "CREATE DOMAIN positive AS int CHECK (VALUE > 0)",
        "CREATE TABLE items (id bigint PRIMARY KEY, b boolean, s smallint, i int, n numeric(12,3),"
        " u numeric, r real, d double precision, t text, v varchar(10), c char(3), by bytea,"
        " dt date, tm time, ts timestamp, tz timestamptz, j json, jb jsonb, id2 uuid, m mood,"
        " p positive)",
    )
    db.execute(
        "INSERT INTO items VALUES (1, true, 7, 123456, -1234.567, 3.14159265358979323846, 1.5,"
        " 2.25, 'naïve ☃', 'abc', 'x', '\\x00ff', '2024-02-29', '12:34:56.789',"
        " '2024-03-01 10:00:00.123456', '2024-03-01 10:00:00.5+02', '{\"a\": [1, 2]}',"
        " '{\"b\": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', 5)"
    )
    assert run.once().ok
    # The same values again, this time through the WAL in their text form.
    db.execute("INSERT INTO items SELECT 2, b, s, i, n, u, r, d, t, v, c, by, dt, tm, ts, tz, j,"
               " jb, id2, m, p FROM items WHERE id = 1")
    db.execute("INSERT INTO items (id) VALUES (3)")
    assert run.once().ok
    snapshot, streamed, nulls = values(run.records(TOPIC))
    assert (snapshot["op"], streamed["op"]) == ("r", "c")
    assert {**snapshot["after"], "id": 2} == streamed["after"]
    assert all(v is None for k, v in nulls["after"].items() if k != "id")


def test_generated_columns_are_left_out_of_snapshot_and_stream_alike(
    db: Database, run: Run
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL,"
               " twice int GENERATED ALWAYS AS (qty * 2) STORED)",
               "INSERT INTO items (id, qty) VALUES (1, 1)")
    assert run.once().ok
    db.execute("INSERT INTO items (id, qty) VALUES (2, 2)")
    assert run.once().ok
    assert [e["after"] for e in values(run.records(TOPIC))] == [
        {"id": 1, "qty": 1}, {"id": 2, "qty": 2}]
