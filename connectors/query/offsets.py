"""The offset of a query source in one table: a small map of primitives (kafka-connect-jdbc shape).

Shapes, by mode (``key.<column>`` entries hold the key of the last row read, one per key column):

- ``incrementing``: ``{"incrementing": 42}``
- ``timestamp``: ``{"timestamp": "2024-05-01T10:00:00.000000", "key.id": 42}``; rows sharing a
  timestamp are ordered by their key, so the key says where in that group we stopped
- ``timestamp+incrementing``: ``{"timestamp": "...", "incrementing": 42}``
- ``bulk``: ``{"cycle": 3, "complete": false, "key.id": 42}``: cycle 3 has read every row up to
  key 42 (key order); ``complete`` marks the last row of a cycle

Timestamps are ISO 8601 text with microseconds; time-zone-aware values are in UTC with
``+00:00``, naive ones without an offset. Key values that are not JSON primitives are stored as
text (decimals, date-times in ISO, bytes in hex, UUIDs) and decoded with the column's type.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from liberate.records import Primitive

TIMESTAMP = "timestamp"
INCREMENTING = "incrementing"
CYCLE = "cycle"
COMPLETE = "complete"
KEY_PREFIX = "key."

Encoder = Callable[[Any], Primitive]
Decoder = Callable[[Primitive], Any]


@dataclass(frozen=True, slots=True)
class PollingOffset:
    """Where a query source stands in one table (see the module docstring for the map shapes)."""

    timestamp: str | None = None
    incrementing: int | None = None
    key: Mapping[str, Primitive] = field(default_factory=dict)
    cycle: int | None = None
    complete: bool = False

    def to_map(self) -> dict[str, Primitive]:
        """The stored form."""
        data: dict[str, Primitive] = {}
        if self.cycle is not None:
            data[CYCLE] = self.cycle
            data[COMPLETE] = self.complete
        if self.timestamp is not None:
            data[TIMESTAMP] = self.timestamp
        if self.incrementing is not None:
            data[INCREMENTING] = self.incrementing
        for column, value in self.key.items():
            data[KEY_PREFIX + column] = value
        return data

    @classmethod
    def from_map(cls, data: Mapping[str, Primitive]) -> PollingOffset:
        """Read a stored offset; unknown entries are ignored, wrong types raise ValueError."""
        timestamp = data.get(TIMESTAMP)
        if timestamp is not None:
            if not isinstance(timestamp, str):
                raise ValueError(f"offset timestamp {timestamp!r} is not ISO text")
            dt.datetime.fromisoformat(timestamp)
        incrementing = data.get(INCREMENTING)
        if incrementing is not None and (
            isinstance(incrementing, bool) or not isinstance(incrementing, int)
        ):
            raise ValueError(f"offset incrementing {incrementing!r} is not an integer")
        cycle = data.get(CYCLE)
        if cycle is not None and (isinstance(cycle, bool) or not isinstance(cycle, int)):
            raise ValueError(f"offset cycle {cycle!r} is not an integer")
        key = {k[len(KEY_PREFIX) :]: v for k, v in data.items() if k.startswith(KEY_PREFIX)}
        return cls(
            timestamp=timestamp,
            incrementing=incrementing,
            key=key,
            cycle=cycle,
            complete=bool(data.get(COMPLETE, False)),
        )

    @property
    def timestamp_value(self) -> dt.datetime | None:
        return None if self.timestamp is None else dt.datetime.fromisoformat(self.timestamp)


def key_encoder(column_type: sa.types.TypeEngine[Any]) -> Encoder | None:
    """How a key value read from a column of ``column_type`` is stored (None: as it is)."""
    if isinstance(column_type, sa.Integer | sa.String | sa.Boolean | sa.Enum):
        return None
    if isinstance(column_type, sa.Float):
        return None
    return _encode


def key_decoder(column_type: sa.types.TypeEngine[Any]) -> Decoder:
    """The inverse of ``key_encoder``: a stored key value back to what the column type binds."""
    if isinstance(column_type, sa.Integer):
        return _int
    if isinstance(column_type, sa.Float):
        return _float
    if isinstance(column_type, sa.Numeric):
        return lambda value: Decimal(str(value))
    if isinstance(column_type, sa.DateTime):
        return lambda value: dt.datetime.fromisoformat(str(value))
    if isinstance(column_type, sa.Date):
        return lambda value: dt.date.fromisoformat(str(value))
    if isinstance(column_type, sa.Time):
        return lambda value: dt.time.fromisoformat(str(value))
    if isinstance(column_type, sa.LargeBinary | sa.BINARY | sa.VARBINARY):
        return lambda value: bytes.fromhex(str(value))
    if isinstance(column_type, sa.Uuid):
        if column_type.as_uuid:
            return lambda value: uuid.UUID(str(value))
        return str
    return lambda value: value


def _int(value: Primitive) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not an integer key")
    return int(value)


def _float(value: Primitive) -> float:
    if not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _encode(value: Any) -> Primitive:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)
