"""``value_format: avro``: the payload is the value, under the Avro schema of its event type;
a payload that does not fit stops the relay, or goes to the dead-letter topic, never trimmed."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.outbox import EventRouter, OutboxSourceConfig, PayloadSchemas, Routing
from connectors.outbox._payloads import load_schema
from connectors.outbox._routing import payload_schemas
from liberate.errors import RecordError
from liberate.records import Primitive
from liberate.schema.avro import decode, encode

PARTITION: dict[str, Primitive] = {"table": "outbox"}
OFFSET: dict[str, Primitive] = {"relayed": "1", "seq": 1}
EVENT_ID = "4d47e190-0402-4048-bc2c-89dd54343cdc"

ORDER_PLACED: dict[str, Any] = {
    "type": "record", "name": "OrderPlaced", "namespace": "com.shop",
    "fields": [
        {"name": "order_id", "type": "long"},
        {"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12,
                                   "scale": 2}},
        {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "lines", "type": {"type": "array", "items": {
            "type": "record", "name": "Line",
            "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
ORDER_PAID: dict[str, Any] = {
    "type": "record", "name": "OrderPaid", "namespace": "com.shop",
    "fields": [{"name": "order_id", "type": "long"}],
}
PLACED_PAYLOAD = {"order_id": 42, "total": "12.50", "placed_at": "2026-11-26T10:00:00Z",
                  "lines": [{"sku": "A-1", "qty": 2}]}


def _config(**settings: Any) -> OutboxSourceConfig:
    return OutboxSourceConfig.model_validate({
        "name": "relay", "connector": "outbox", "database": "sqlite:///x.db",
        "value_format": "avro", "schemas": {"OrderPlaced": ORDER_PLACED,
                                            "OrderPaid": json.dumps(ORDER_PAID)},
        **settings,
    })


def _router(**settings: Any) -> EventRouter:
    config = _config(**settings)
    return EventRouter(Routing.of(config), {"created_at": "long"}, payload_schemas(config))


def _row(event_type: str = "OrderPlaced", payload: Any = PLACED_PAYLOAD) -> dict[str, Any]:
    return {"id": EVENT_ID, "aggregatetype": "Order", "aggregateid": "42", "type": event_type,
            "payload": None if payload is None else json.dumps(payload), "headers": None,
            "created_at": None}


def test_the_payload_becomes_the_value_under_its_types_schema() -> None:
    record = _router().route(_row(), partition=PARTITION, offset=OFFSET)
    assert record.topic == "outbox.event.Order" and record.key == {"aggregateid": "42"}
    assert record.value_schema is not None and record.value_schema.name == "com.shop.OrderPlaced"
    assert record.value is not None
    decoded = decode(encode(1, record.value_schema, record.value), record.value_schema)
    assert decoded == {
        "order_id": 42, "total": Decimal("12.50"),
        "placed_at": dt.datetime(2026, 11, 26, 10, tzinfo=dt.UTC),
        "lines": [{"sku": "A-1", "qty": 2}], "note": None,
    }
    assert record.headers == (("id", EVENT_ID.encode()), ("eventType", b"OrderPlaced"))


def test_each_event_type_has_its_own_schema_in_one_topic() -> None:
    router = _router()
    placed = router.route(_row(), partition=PARTITION, offset=OFFSET)
    paid = router.route(_row("OrderPaid", {"order_id": 42}), partition=PARTITION, offset=OFFSET)
    assert placed.topic == paid.topic
    assert paid.value_schema is not None and paid.value_schema.name == "com.shop.OrderPaid"
    assert paid.value == {"order_id": 42}


@pytest.mark.parametrize(
    ("event_type", "payload", "reason"),
    [
        ("OrderPlaced", {**PLACED_PAYLOAD, "coupon": "X"}, "coupon the schema does not have"),
        ("OrderPlaced", {"order_id": 42}, "total is missing"),
        ("OrderPlaced", {**PLACED_PAYLOAD, "total": "twelve"}, "not a decimal"),
        ("OrderPlaced", {**PLACED_PAYLOAD, "placed_at": "yesterday"}, "not a timestamp-micros"),
        ("OrderPlaced", {**PLACED_PAYLOAD, "order_id": "42"}, "order_id"),
        ("OrderPlaced", {**PLACED_PAYLOAD, "lines": [{"sku": "A"}]}, r"lines\[0\].qty"),
        ("OrderPlaced", [1, 2], "not an object"),
        ("OrderPlaced", None, "null payload"),
        ("OrderCancelled", {"order_id": 42}, "has no Avro schema"),
    ],
)
def test_a_payload_that_does_not_fit_is_a_record_error_naming_the_event_and_type(
    event_type: str, payload: Any, reason: str
) -> None:
    with pytest.raises(RecordError, match=reason) as caught:
        _router().route(_row(event_type, payload), partition=PARTITION, offset=OFFSET)
    assert f"outbox event {EVENT_ID} (type {event_type})" in caught.value.message


def test_with_a_dead_letter_topic_a_bad_payload_goes_there_as_json_with_the_error() -> None:
    router = _router(dead_letter_topic="relay.dlq")
    row = _row("OrderPlaced", {"order_id": 42})
    record = router.route(row, partition=PARTITION, offset=OFFSET)
    assert record.topic == "relay.dlq" and record.key == {"aggregateid": "42"}
    assert record.value == {"payload": row["payload"]}
    headers = dict(record.headers)
    assert headers["id"] == EVENT_ID.encode() and headers["eventType"] == b"OrderPlaced"
    assert b"total is missing" in headers["__connect.errors.exception.message"]
    assert headers["__connect.errors.connector.name"] == b"relay"
    good = router.route(_row(), partition=PARTITION, offset=OFFSET)
    assert good.topic == "outbox.event.Order"


def test_a_null_payload_is_a_tombstone_when_asked() -> None:
    record = _router(tombstone_on_empty_payload=True).route(
        _row(payload=None), partition=PARTITION, offset=OFFSET)
    assert record.value is None and record.topic == "outbox.event.Order"


def test_schemas_load_from_files_and_inline_text(tmp_path: Path) -> None:
    path = tmp_path / "placed.avsc"
    path.write_text(json.dumps(ORDER_PLACED))
    assert load_schema(str(path)).name == "com.shop.OrderPlaced"
    assert load_schema(json.dumps(ORDER_PAID)).name == "com.shop.OrderPaid"
    schemas = PayloadSchemas({"OrderPlaced": load_schema(str(path))})
    value, schema = schemas.value_of(EVENT_ID, "OrderPlaced", json.dumps(PLACED_PAYLOAD))
    assert schema.name == "com.shop.OrderPlaced" and value["total"] == Decimal("12.50")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"schemas": {}}, "needs schemas"),
        ({"schemas": {"X": "/no/such/file.avsc"}}, "schemas.X: cannot read schema file"),
        ({"schemas": {"X": {"type": "string"}}}, "must be an Avro record"),
        ({"schemas": {"X": {"type": "record", "name": "X", "fields": [{"name": "a"}]}}},
         "schemas.X"),
        ({"additional_fields": ["type:envelope"]}, "place additional_fields in headers"),
        ({"dead_letter_topic": "bad topic"}, "dead_letter_topic"),
        ({"value_format": "json", "dead_letter_topic": "dlq"}, "only used with value_format"),
    ],
)
def test_bad_avro_settings_are_refused_with_the_reason(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _config(**settings)
