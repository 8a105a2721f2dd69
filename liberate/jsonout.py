"""Values as JSON for people and scripts: decimals as strings, timestamps ISO-8601, bytes base64."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def to_json(value: Any) -> Any:
    """``value`` with every non-JSON type turned into its documented text form."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def header_text(value: bytes) -> str:
    """A header value as text: UTF-8 when it is, else ``base64:`` and the base64 form."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")


def timestamp_text(ms: int | None) -> str | None:
    """Milliseconds since the epoch as ISO-8601 UTC."""
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds")
