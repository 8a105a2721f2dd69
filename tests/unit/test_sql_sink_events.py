"""Reading records as row changes, and reducing a batch per key (no database needed)."""

from __future__ import annotations

from typing import Any

import pytest

from liberate.envelope import Op, change_value, envelope_schema, source_block, source_schema
from liberate.errors import RecordError
from liberate.records import SinkRecord
from liberate.schema.avro import AvroSchema
from sinks.sql._events import Action, Change, EventReader, envelope_row_schema
from sinks.sql._plan import plan_batch

KEY = AvroSchema({"type": "record", "name": "Key", "namespace": "t.orders",
                  "fields": [{"name": "id", "type": "long"}]})
VALUE = AvroSchema({"type": "record", "name": "Value", "namespace": "t.orders",
                    "fields": [{"name": "id", "type": "long"}, {"name": "s", "type": "string"}]})
ENVELOPE = envelope_schema(VALUE, source_schema("query", []))


def entity(offset: int, key: int, s: str) -> SinkRecord:
    return SinkRecord("t.orders", 0, offset, {"id": key}, {"id": key, "s": s}, KEY, VALUE)


def event(offset: int, op: Op, key: int, after: dict[str, Any] | None = None) -> SinkRecord:
    source = source_block(connector="query", name="t", ts_ms=0, db="d", schema=None,
                          table="orders")
    value = change_value(op, before=None, after=after, source=source, ts_ms=0)
    return SinkRecord("t.orders", 0, offset, {"id": key}, value, KEY, ENVELOPE)


def tombstone(offset: int, key: int) -> SinkRecord:
    return SinkRecord("t.orders", 0, offset, {"id": key}, None, KEY, None)


def test_an_entity_value_is_written_as_the_row() -> None:
    change = EventReader(delete_enabled=True).read(entity(0, 1, "a"))
    assert change.action is Action.WRITE
    assert change.row == {"id": 1, "s": "a"}
    assert change.row_schema == VALUE
    assert change.identity == (1,)


@pytest.mark.parametrize("op", ["c", "r", "u"])
def test_envelope_create_read_and_update_write_the_after_row(op: Op) -> None:
    change = EventReader(delete_enabled=True).read(event(0, op, 1, {"id": 1, "s": "b"}))
    assert change.action is Action.WRITE
    assert change.row == {"id": 1, "s": "b"}
    assert change.row_schema == VALUE


def test_envelope_delete_and_tombstone_delete_by_key() -> None:
    reader = EventReader(delete_enabled=True)
    for record in (event(0, "d", 7), tombstone(1, 7)):
        change = reader.read(record)
        assert (change.action, change.key, change.identity) == (Action.DELETE, {"id": 7}, (7,))


def test_deletes_are_skipped_when_disabled() -> None:
    reader = EventReader(delete_enabled=False)
    assert reader.read(event(0, "d", 7)).action is Action.SKIP
    assert reader.read(tombstone(1, 7)).action is Action.SKIP


@pytest.mark.parametrize("op", ["t", "m"])
def test_truncate_and_message_events_change_no_row(op: Op) -> None:
    assert EventReader(delete_enabled=True).read(event(0, op, 1)).action is Action.SKIP


def test_unusable_events_are_record_errors_naming_the_record() -> None:
    reader = EventReader(delete_enabled=True)
    with pytest.raises(RecordError) as no_after:
        reader.read(event(5, "c", 1))
    assert no_after.value.origin == "t.orders[0]@5"
    with pytest.raises(RecordError, match="unknown op"):
        reader.read(event(6, "x", 1))  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="no key"):
        reader.read(SinkRecord("t.orders", 0, 7, None, {"before": None, "after": None,
                                                        "op": "d"}, None, ENVELOPE))
    with pytest.raises(RecordError, match="lacks field"):
        reader.read(SinkRecord("t.orders", 0, 8, {"other": 1}, {"id": 1, "s": ""}, KEY, VALUE))


def test_equal_schemas_in_distinct_objects_read_as_one_canonical_schema() -> None:
    reader = EventReader(delete_enabled=True)
    first = reader.read(entity(0, 1, "a"))
    copy = AvroSchema(dict(VALUE.schema))
    second = reader.read(SinkRecord("t.orders", 0, 1, {"id": 2}, {"id": 2, "s": "b"},
                                    AvroSchema(dict(KEY.schema)), copy))
    assert second.row_schema is first.row_schema
    assert second.key_schema is first.key_schema


def test_envelope_detection_finds_the_row_record_by_name_reference_too() -> None:
    assert envelope_row_schema(ENVELOPE) == VALUE
    assert envelope_row_schema(VALUE) is None
    only_named = AvroSchema(
        {"type": "record", "name": "Envelope", "fields": [
            {"name": "before", "type": ["null", "string"]},
            {"name": "after", "type": ["null", VALUE.schema]},
            {"name": "op", "type": "string"},
        ]}
    )
    assert envelope_row_schema(only_named) == VALUE


def _plan(records: list[SinkRecord], *, mode: str) -> list[list[tuple[str, list[int]]]]:
    reader = EventReader(delete_enabled=True)
    changes: list[tuple[str, Change]] = [("orders", reader.read(r)) for r in records]
    return [
        [(run.action.value, [c.record.offset for c in run.changes]) for run in table.runs]
        for table in plan_batch(changes, mode=mode)
    ]


def test_upsert_reduction_keeps_the_last_change_of_each_key() -> None:
    records = [
        entity(0, 1, "insert"), entity(1, 1, "update"), tombstone(2, 1), entity(3, 1, "again"),
        entity(4, 2, "insert"), tombstone(5, 2),
        event(6, "t", 0),
        tombstone(7, 3), entity(8, 3, "back"),
    ]
    assert _plan(records, mode="upsert") == [[("delete", [5]), ("write", [3, 8])]]


def test_insert_mode_keeps_every_change_in_order_as_runs() -> None:
    records = [entity(0, 1, "a"), entity(1, 2, "b"), tombstone(2, 1), entity(3, 1, "c")]
    assert _plan(records, mode="insert") == [
        [("write", [0, 1]), ("delete", [2]), ("write", [3])]
    ]


UNCHANGED_ENVELOPE = envelope_schema(VALUE, source_schema("query", []), unchanged=True)


def toast_event(offset: int, key: int, s: str | None, unchanged: list[str] | None) -> SinkRecord:
    source = source_block(connector="query", name="t", ts_ms=0, db="d", schema=None,
                          table="orders")
    value = change_value("u", before=None, after={"id": key, "s": s}, source=source, ts_ms=0,
                         unchanged=unchanged)
    return SinkRecord("t.orders", 0, offset, {"id": key}, value, KEY, UNCHANGED_ENVELOPE)


def test_unchanged_fields_are_read_from_the_envelope() -> None:
    reader = EventReader(delete_enabled=True)
    assert reader.read(toast_event(0, 1, None, ["s"])).unchanged == frozenset({"s"})
    assert reader.read(toast_event(1, 1, "x", [])).unchanged is None
    assert reader.read(entity(2, 1, "x")).unchanged is None


def test_reduction_fills_unchanged_fields_from_the_earlier_write_of_the_key() -> None:
    reader = EventReader(delete_enabled=True)
    records = [entity(0, 1, "full"), toast_event(1, 1, None, ["s"]),
               toast_event(2, 2, None, ["s"])]
    [table] = plan_batch([("orders", reader.read(r)) for r in records], mode="upsert")
    [writes] = table.runs
    merged = {c.identity: (c.row, c.unchanged) for c in writes.changes}
    assert merged[(1,)] == ({"id": 1, "s": "full"}, None)
    assert merged[(2,)] == ({"id": 2, "s": None}, frozenset({"s"}))


def test_a_truncate_drops_the_earlier_changes_of_its_table_and_runs_first() -> None:
    reader = EventReader(delete_enabled=True, truncate_enabled=True)
    records = [entity(0, 1, "gone"), event(1, "t", 0), entity(2, 2, "kept")]
    # Without truncate_enabled, the truncate changes nothing.
    assert _plan(records, mode="upsert") == [[("write", [0, 2])]]
    [table] = plan_batch([("orders", reader.read(r)) for r in records], mode="upsert")
    assert [(run.action.value, [c.record.offset for c in run.changes]) for run in
            table.runs] == [("truncate", [1]), ("write", [2])]


def test_update_mode_keeps_a_delete_that_a_later_write_cannot_undo() -> None:
    reader = EventReader(delete_enabled=True)
    records = [tombstone(0, 1), entity(1, 1, "no row to update"), entity(2, 2, "a"),
               tombstone(3, 2), entity(4, 3, "x"), entity(5, 3, "y")]
    [table] = plan_batch([("orders", reader.read(r)) for r in records], mode="update")
    assert [(run.action.value, [c.record.offset for c in run.changes]) for run in
            table.runs] == [("delete", [0, 3]), ("write", [5])]


def test_append_only_reads_every_write_keyless_and_skips_deletes() -> None:
    reader = EventReader(delete_enabled=True, pk_mode="none")
    assert reader.read(entity(0, 1, "a")).identity == ()
    assert reader.read(tombstone(1, 1)).action is Action.SKIP


def test_value_keys_come_from_the_pk_fields_and_deletes_from_before() -> None:
    reader = EventReader(delete_enabled=True, pk_mode="record_value", pk_fields=["s"])
    assert reader.read(entity(0, 1, "code")).identity == ("code",)
    source = source_block(connector="query", name="t", ts_ms=0, db="d", schema=None,
                          table="orders")
    deleted = SinkRecord("t.orders", 0, 1, {"id": 1}, change_value(
        "d", before={"id": 1, "s": "code"}, after=None, source=source, ts_ms=0), KEY, ENVELOPE)
    change = reader.read(deleted)
    assert (change.action, change.identity) == (Action.DELETE, ("code",))
    assert reader.read(tombstone(2, 1)).action is Action.SKIP  # the key lacks "s"
