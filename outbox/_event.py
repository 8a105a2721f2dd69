"""``OutboxEvent``: one domain event as an application hands it to ``publish``.

The payload is turned into JSON text when the event is made, so a payload that cannot be
serialized fails where the application builds it, not inside its database transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

#: header names the relay sets itself (Debezium's ``id``; ``eventType`` from the type column)
RESERVED_HEADERS = frozenset({"id", "eventType"})


class OutboxError(Exception):
    """An outbox call was used wrongly or the database refused it; the message says the fix."""


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A domain event to publish in the same transaction as the writes that caused it.

    ``aggregate_type`` picks the topic (``outbox.event.<aggregate_type>`` by default),
    ``aggregate_id`` is the record key (events of one aggregate stay in order), ``type`` says
    what happened (header ``eventType``), ``payload`` is a dict, a list, a dataclass or a
    pydantic model (serialized to JSON; datetimes as ISO-8601, decimals and UUIDs as strings)
    or None. ``id`` is a UUID, generated when not given; consumers use it to drop duplicates.
    ``headers`` are extra string headers for the record.
    """

    aggregate_type: str
    aggregate_id: str
    type: str
    payload: Any
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    headers: Mapping[str, str] | None = None
    #: the payload as JSON text (None for a None payload); set from ``payload``
    payload_json: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("aggregate_type", "type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise OutboxError(f"OutboxEvent.{name} must be a non-empty string, not {value!r}")
        aggregate_id = self.aggregate_id
        if isinstance(aggregate_id, int | uuid.UUID) and not isinstance(aggregate_id, bool):
            object.__setattr__(self, "aggregate_id", str(aggregate_id))
        elif not isinstance(aggregate_id, str) or not aggregate_id:
            raise OutboxError(
                f"OutboxEvent.aggregate_id must be a non-empty string (or an int or UUID), "
                f"not {aggregate_id!r}"
            )
        object.__setattr__(self, "id", _event_id(self.id))
        if self.headers is not None:
            object.__setattr__(self, "headers", _headers(self.headers))
        object.__setattr__(self, "payload_json", payload_json(self.payload))


def _event_id(value: object) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise OutboxError(f"OutboxEvent.id must be a UUID (or its text), not {value!r}")


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise OutboxError(
                f"OutboxEvent.headers maps non-empty strings to strings; got {name!r}: {value!r}"
            )
        if name in RESERVED_HEADERS:
            raise OutboxError(
                f"header {name!r} is set by the relay (event id / event type); use another name"
            )
        result[name] = value
    return result


def payload_json(payload: Any) -> str | None:
    """``payload`` as compact JSON text (None stays None); ``OutboxError`` if it cannot be."""
    if payload is None:
        return None
    dump = getattr(payload, "model_dump_json", None)
    if callable(dump) and not isinstance(payload, type):  # a pydantic v2 model instance
        text = dump()
        if isinstance(text, str):
            return text
    if dataclasses.is_dataclass(payload) and not isinstance(payload, type):
        payload = dataclasses.asdict(payload)
    if not isinstance(payload, Mapping | list | tuple):
        raise OutboxError(
            f"an outbox payload is a dict, a list, a dataclass or a pydantic model, not "
            f"{type(payload).__name__}"
        )
    try:
        return json.dumps(
            payload, default=_json_default, ensure_ascii=False, separators=(",", ":"),
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise OutboxError(f"the outbox payload is not JSON-serializable: {exc}") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        # Decimals as text: a JSON number would go through float on most readers.
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        raise TypeError("bytes are not JSON; encode them (base64) in the payload")
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")
