"""The outbox event router, as Debezium's EventRouter routes: topic, key, value, headers."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest

import outbox
from connectors.outbox import EventRouter, OutboxSourceConfig, Routing, message_row
from liberate.errors import FatalError, RecordError
from liberate.records import Primitive
from liberate.schema.avro import decode, encode

PARTITION: dict[str, Primitive] = {"table": "outbox"}
OFFSET: dict[str, Primitive] = {"relayed": "1", "seq": 1}
EVENT_ID = "4d47e190-0402-4048-bc2c-89dd54343cdc"
TYPES = {"created_at": {"type": "long", "logicalType": "timestamp-micros"}}


def _router(types: dict[str, Any] | None = None, **settings: Any) -> EventRouter:
    config = OutboxSourceConfig.model_validate(
        {"name": "relay", "connector": "outbox", "database": "sqlite:///x.db", **settings}
    )
    return EventRouter(Routing.of(config), TYPES if types is None else types)


def _row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": EVENT_ID, "aggregatetype": "Order", "aggregateid": "1", "type": "OrderCreated",
        "payload": '{"id": 1, "customerId": 123}', "headers": None,
        "created_at": 1_556_890_294_484_000,
    }
    row.update(overrides)
    return row


def test_an_event_routes_like_debeziums_example() -> None:
    record = _router().route(_row(), partition=PARTITION, offset=OFFSET)
    assert record.topic == "outbox.event.Order"
    assert record.key == {"aggregateid": "1"}
    assert record.value == {"payload": '{"id": 1, "customerId": 123}'}
    assert record.headers == (("id", EVENT_ID.encode()), ("eventType", b"OrderCreated"))
    assert record.timestamp_ms == 1_556_890_294_484
    assert (record.partition, record.offset) == (PARTITION, OFFSET)


def test_key_and_value_encode_with_their_schemas_and_the_payload_is_marked_json() -> None:
    record = _router().route(_row(), partition=PARTITION, offset=OFFSET)
    assert record.key_schema is not None and record.value_schema is not None
    assert record.value_schema.name == "outbox.event.Order.Value"
    payload_type = record.value_schema.fields[0]["type"][1]
    assert payload_type == {"type": "string", "connect.name": "io.debezium.data.Json"}
    for datum, schema in ((record.key, record.key_schema), (record.value, record.value_schema)):
        assert decode(encode(1, schema, datum), schema) == datum


def test_schemas_are_made_once_per_topic() -> None:
    router = _router()
    a = router.route(_row(), partition=PARTITION, offset=OFFSET)
    b = router.route(_row(aggregateid="2"), partition=PARTITION, offset=OFFSET)
    c = router.route(_row(aggregatetype="Customer"), partition=PARTITION, offset=OFFSET)
    assert a.value_schema is b.value_schema and a.key_schema is b.key_schema
    assert c.topic == "outbox.event.Customer" and c.value_schema is not a.value_schema


def test_the_topic_template_can_use_the_source_name() -> None:
    record = _router(topic="{source}.{aggregate_type}.events").route(
        _row(), partition=PARTITION, offset=OFFSET
    )
    assert record.topic == "relay.Order.events"


def test_non_text_ids_are_keyed_by_their_text() -> None:
    record = _router().route(_row(aggregateid=42), partition=PARTITION, offset=OFFSET)
    assert record.key == {"aggregateid": "42"}


def test_a_parsed_json_payload_becomes_json_text_again() -> None:
    record = _router().route(_row(payload={"a": [1, 2]}), partition=PARTITION, offset=OFFSET)
    assert record.value == {"payload": '{"a":[1,2]}'}


def test_an_empty_payload_is_a_null_field_or_a_tombstone_when_asked() -> None:
    assert _router().route(_row(payload=None), partition=PARTITION, offset=OFFSET).value == {
        "payload": None
    }
    tombstone = _router(tombstone_on_empty_payload=True).route(
        _row(payload=None), partition=PARTITION, offset=OFFSET
    )
    assert tombstone.value is None and tombstone.key == {"aggregateid": "1"}


def test_additional_fields_go_to_headers_and_the_envelope() -> None:
    router = _router(
        {**TYPES, "type": "string", "aggregateid": "string"},
        additional_fields=["type:envelope:eventType", "aggregateid:header:aggregate",
                           "created_at:envelope"],
    )
    record = router.route(_row(), partition=PARTITION, offset=OFFSET)
    assert record.value == {
        "payload": '{"id": 1, "customerId": 123}', "eventType": "OrderCreated",
        "created_at": 1_556_890_294_484_000,
    }
    assert record.headers == (("id", EVENT_ID.encode()), ("aggregate", b"1"))
    assert record.value_schema is not None
    names = [f["name"] for f in record.value_schema.fields]
    assert names == ["payload", "eventType", "created_at"]
    assert decode(encode(1, record.value_schema, record.value), record.value_schema)


def test_the_headers_column_adds_its_entries_after_the_relays_headers() -> None:
    record = _router().route(_row(headers='{"trace": "t-1", "n": 2, "gone": null}'),
                             partition=PARTITION, offset=OFFSET)
    assert record.headers[2:] == (("trace", b"t-1"), ("n", b"2"))


def test_without_a_timestamp_column_the_runtime_stamps_the_record() -> None:
    record = _router({}, columns={"timestamp": None}).route(
        _row(), partition=PARTITION, offset=OFFSET
    )
    assert record.timestamp_ms is None


@pytest.mark.parametrize(
    ("value", "logical"),
    [
        (dt.datetime(2019, 5, 3, 13, 31, 34, 484000, tzinfo=dt.UTC), None),
        (dt.datetime(2019, 5, 3, 13, 31, 34, 484000), None),
        ("2019-05-03 13:31:34.484", None),
        ("2019-05-03T13:31:34.484Z", None),
        (1_556_890_294_484_000, "timestamp-micros"),
        (1_556_890_294_484, "timestamp-millis"),
    ],
)
def test_timestamps_of_every_shape_become_epoch_milliseconds(value: Any, logical: Any) -> None:
    types = {"created_at": {"type": "long", "logicalType": logical} if logical else "string"}
    record = _router(types).route(_row(created_at=value), partition=PARTITION, offset=OFFSET)
    assert record.timestamp_ms == 1_556_890_294_484


@pytest.mark.parametrize(
    ("column", "value"), [("id", None), ("aggregatetype", ""), ("aggregateid", None)]
)
def test_a_row_without_routing_fields_is_a_record_error_naming_the_fix(
    column: str, value: Any
) -> None:
    with pytest.raises(RecordError, match="fix or delete the row"):
        _router().route(_row(**{column: value}), partition=PARTITION, offset=OFFSET)


def test_an_aggregate_type_that_makes_no_topic_name_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="not a valid topic name") as caught:
        _router().route(_row(aggregatetype="Order Line"), partition=PARTITION, offset=OFFSET)
    assert EVENT_ID in str(caught.value)


def test_a_headers_column_that_is_not_a_json_object_is_a_record_error() -> None:
    for bad in ("not json", "[1, 2]"):
        with pytest.raises(RecordError, match=r"headers column|JSON"):
            _router().route(_row(headers=bad), partition=PARTITION, offset=OFFSET)


def test_inserts_and_reads_route_and_deletes_vanish() -> None:
    router = _router()
    for op in ("c", "r"):
        assert router.route_change(op, _row(), partition=PARTITION, offset=OFFSET) is not None
    assert router.route_change("d", None, partition=PARTITION, offset=OFFSET) is None
    assert router.route_change("t", None, partition=PARTITION, offset=OFFSET) is None


@pytest.mark.parametrize(("behavior", "level"), [("warn", logging.WARNING),
                                                 ("error", logging.ERROR)])
def test_updates_are_skipped_and_logged_as_configured(
    behavior: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    router = _router(invalid_op_behavior=behavior)
    with caplog.at_level(logging.DEBUG, logger="connectors.outbox._routing"):
        assert router.route_change("u", _row(), partition=PARTITION, offset=OFFSET) is None
    assert [r.levelno for r in caplog.records] == [level]
    assert EVENT_ID in caplog.records[0].getMessage()


def test_updates_stop_the_relay_when_fatal_and_pass_silently_when_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(FatalError, match="UPDATE"):
        _router(invalid_op_behavior="fatal").route_change(
            "u", _row(), partition=PARTITION, offset=OFFSET
        )
    with caplog.at_level(logging.DEBUG):
        assert _router(invalid_op_behavior="ignore").route_change(
            "u", _row(), partition=PARTITION, offset=OFFSET
        ) is None
    assert not caplog.records


def test_a_logical_decoding_message_routes_like_the_row_it_stands_for() -> None:
    event = outbox.OutboxEvent("Order", "1", "OrderCreated", {"id": 1}, id=EVENT_ID,
                               headers={"trace": "t"})
    row = message_row(outbox.message_content(event), ["payload", "headers"])
    record = _router({}, columns={"timestamp": None}).route(
        row, partition=PARTITION, offset=OFFSET
    )
    assert record.topic == "outbox.event.Order"
    assert record.key == {"aggregateid": "1"}
    assert record.value == {"payload": '{"id":1}'}
    assert record.headers == (("id", EVENT_ID.encode()), ("eventType", b"OrderCreated"),
                              ("trace", b"t"))
    assert json.loads(record.value["payload"]) == {"id": 1}


def test_a_message_that_is_not_a_json_object_is_a_record_error() -> None:
    for bad in (b"\xff", "[]", "nope"):
        with pytest.raises(RecordError):
            message_row(bad, ["payload"])


def test_a_router_without_the_types_it_needs_is_a_bug_report() -> None:
    with pytest.raises(FatalError, match="no type"):
        _router({})
