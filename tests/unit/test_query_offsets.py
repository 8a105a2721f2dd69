"""Query source offsets: the stored map shape and key values that survive the round trip."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.query import PollingOffset
from connectors.query.offsets import key_decoder, key_encoder


@pytest.mark.parametrize(
    "offset",
    [
        PollingOffset(incrementing=42),
        PollingOffset(timestamp="2024-05-01T10:00:00.000000", key={"id": 7}),
        PollingOffset(timestamp="2024-05-01T10:00:00.000000+00:00", incrementing=3),
        PollingOffset(cycle=3, complete=False, key={"region": "eu", "seq": 2}),
        PollingOffset(cycle=4, complete=True),
    ],
)
def test_offsets_round_trip_through_a_json_map_of_primitives(offset: PollingOffset) -> None:
    stored = json.loads(json.dumps(offset.to_map()))
    assert PollingOffset.from_map(stored) == offset


def test_the_map_names_follow_kafka_connect_jdbc() -> None:
    offset = PollingOffset(timestamp="2024-05-01T10:00:00.000000", incrementing=5)
    assert offset.to_map() == {"timestamp": "2024-05-01T10:00:00.000000", "incrementing": 5}
    assert PollingOffset(cycle=1, key={"id": 9}).to_map() == {
        "cycle": 1,
        "complete": False,
        "key.id": 9,
    }


@pytest.mark.parametrize(
    "stored",
    [{"timestamp": 5}, {"timestamp": "yesterday"}, {"incrementing": "7"}, {"cycle": True}],
)
def test_a_malformed_stored_offset_is_refused(stored: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PollingOffset.from_map(stored)


@pytest.mark.parametrize(
    ("column_type", "value"),
    [
        (sa.Integer(), 12),
        (sa.String(10), "eu"),
        (sa.Numeric(20, 0), Decimal("18446744073709551615")),
        (sa.DateTime(), dt.datetime(2024, 5, 1, 10, 0, 0, 123456)),
        (sa.DateTime(timezone=True), dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)),
        (sa.Date(), dt.date(2024, 5, 1)),
        (sa.Time(), dt.time(10, 30, 1)),
        (sa.LargeBinary(), b"\x00\xff"),
        (sa.Uuid(), uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ],
)
def test_key_values_of_every_type_come_back_as_the_column_binds_them(
    column_type: sa.types.TypeEngine[Any], value: Any
) -> None:
    encode = key_encoder(column_type)
    stored = value if encode is None else encode(value)
    assert isinstance(stored, str | int | float | bool)
    assert key_decoder(column_type)(json.loads(json.dumps(stored))) == value
