"""``OutboxEvent``: validation, generated ids, and payloads of every accepted kind as JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from typing import Any, cast

import pydantic
import pytest

from outbox import OutboxError, OutboxEvent, payload_json


@dataclasses.dataclass
class Line:
    sku: str
    qty: int


@dataclasses.dataclass
class Placed:
    order_id: int
    lines: list[Line]
    at: dt.datetime


class Status(enum.Enum):
    NEW = "new"


class Shipped(pydantic.BaseModel):
    order_id: int
    carrier: str
    total: Decimal


def test_an_event_without_an_id_gets_a_fresh_uuid() -> None:
    a = OutboxEvent("Order", "1", "OrderCreated", {})
    b = OutboxEvent("Order", "1", "OrderCreated", {})
    assert uuid.UUID(a.id).version == 4
    assert a.id != b.id


def test_a_given_id_is_kept_in_canonical_form() -> None:
    given = uuid.uuid4()
    assert OutboxEvent("Order", "1", "T", {}, id=cast(Any, given)).id == str(given)
    assert OutboxEvent("Order", "1", "T", {}, id=str(given).upper()).id == str(given)


def test_an_id_that_is_not_a_uuid_is_refused() -> None:
    with pytest.raises(OutboxError, match="UUID"):
        OutboxEvent("Order", "1", "T", {}, id="order-1")


def test_integer_and_uuid_aggregate_ids_become_text() -> None:
    assert OutboxEvent("Order", cast(Any, 42), "T", {}).aggregate_id == "42"
    key = uuid.uuid4()
    assert OutboxEvent("Order", cast(Any, key), "T", {}).aggregate_id == str(key)


@pytest.mark.parametrize(
    ("field", "value"),
    [("aggregate_type", ""), ("type", ""), ("aggregate_id", ""), ("aggregate_id", None)],
)
def test_empty_routing_fields_are_refused(field: str, value: object) -> None:
    args: dict[str, Any] = {"aggregate_type": "Order", "aggregate_id": "1", "type": "T",
                            "payload": {}}
    args[field] = value
    with pytest.raises(OutboxError, match=field):
        OutboxEvent(**args)


def test_headers_must_be_strings_and_not_the_relays_own() -> None:
    assert OutboxEvent("Order", "1", "T", {}, headers={"trace": "x"}).headers == {"trace": "x"}
    with pytest.raises(OutboxError, match="strings"):
        OutboxEvent("Order", "1", "T", {}, headers=cast(Any, {"n": 1}))
    for reserved in ("id", "eventType"):
        with pytest.raises(OutboxError, match="set by the relay"):
            OutboxEvent("Order", "1", "T", {}, headers={reserved: "x"})


def test_a_dict_payload_is_compact_json_with_text_for_decimals_uuids_and_times() -> None:
    key = uuid.uuid4()
    payload = {
        "total": Decimal("12.50"),
        "id": key,
        "at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        "day": dt.date(2024, 5, 1),
        "status": Status.NEW,
        "tags": {"b", "a"},
        "name": "café",
    }
    text = OutboxEvent("Order", "1", "T", payload).payload_json
    assert text is not None and " " not in text.replace("café", "")
    assert json.loads(text) == {
        "total": "12.50", "id": str(key), "at": "2024-05-01T12:00:00+00:00",
        "day": "2024-05-01", "status": "new", "tags": ["a", "b"], "name": "café",
    }


def test_a_dataclass_payload_is_serialized_field_by_field() -> None:
    placed = Placed(7, [Line("tea", 2)], dt.datetime(2024, 5, 1, 12, 0))
    assert json.loads(payload_json(placed) or "") == {
        "order_id": 7, "lines": [{"sku": "tea", "qty": 2}], "at": "2024-05-01T12:00:00",
    }


def test_a_pydantic_payload_is_serialized_by_pydantic() -> None:
    shipped = Shipped(order_id=7, carrier="post", total=Decimal("3.10"))
    assert json.loads(payload_json(shipped) or "") == {
        "order_id": 7, "carrier": "post", "total": "3.10",
    }


def test_a_list_payload_and_a_none_payload_are_accepted() -> None:
    assert payload_json([1, 2]) == "[1,2]"
    assert OutboxEvent("Order", "1", "T", None).payload_json is None


@pytest.mark.parametrize("payload", ["already json", 42, b"bytes", {"blob": b"x"},
                                     {"bad": float("nan")}, {"obj": object()}])
def test_payloads_that_are_not_json_objects_fail_where_the_event_is_made(payload: object) -> None:
    with pytest.raises(OutboxError):
        OutboxEvent("Order", "1", "T", payload)


def test_events_are_immutable() -> None:
    event = OutboxEvent("Order", "1", "T", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, "type", "Other")  # noqa: B010 - the attribute is read-only to mypy
