"""Database-neutral row values: what ``verify`` hashes and compares on both sides.

A value read from PostgreSQL and the same value written by the SQL sink into SQLite come back
as different Python objects (an aware ``datetime`` and a naive one in UTC, ``Decimal('5.00')``
and ``5``, a ``dict`` and its JSON text, ``True`` and ``1``). ``normalise`` maps both to one
JSON-able form; ``row_digest`` hashes a normalised row. Digests are combined by addition, so a
range's checksum does not depend on the order rows come in (collations differ by dialect).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

DIGEST_BITS = 128
DIGEST_MODULUS = 1 << DIGEST_BITS

Normalised = None | int | str | list[Any]


def normalise(value: object) -> Normalised:
    """The database-neutral form of one column value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float | decimal.Decimal):
        return _number(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.replace(tzinfo=None).isoformat(timespec="microseconds")
    if isinstance(value, dt.timedelta):
        return value // dt.timedelta(microseconds=1)
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return normalise(value.value)
    if isinstance(value, dict | list | tuple):
        return _json(value)
    return str(value)


def _number(value: float | decimal.Decimal) -> int | str:
    number = decimal.Decimal(repr(value)) if isinstance(value, float) else value
    if not number.is_finite():
        return str(number)
    if number == number.to_integral_value():
        return int(number)
    return format(number.normalize(), "f")


def _text(value: str) -> str:
    # JSON columns come back parsed from one database and as text from another.
    if value[:1] in ("{", "["):
        try:
            return _json(json.loads(value))
        except ValueError:
            return value
    return value


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


Converter = Callable[[object], object]

_FROM_TEXT: dict[type, Callable[[str], object]] = {
    decimal.Decimal: decimal.Decimal,
    float: decimal.Decimal,
    int: int,
    bool: lambda text: int(text) if text.isdigit() else text.lower() in ("true", "t"),
    dt.datetime: dt.datetime.fromisoformat,
    dt.date: dt.date.fromisoformat,
    dt.time: dt.time.fromisoformat,
}


def converter_to(python_type: type | None) -> Converter | None:
    """How to read text stored for a value of ``python_type`` (the source column's type).

    A sink may store a typed value as text (the SQL sink keeps decimals as TEXT in SQLite):
    compared with the source's value, the text must be read as that type first. Text that
    does not parse is left as it is, and then differs.
    """
    parse = _FROM_TEXT.get(python_type) if python_type is not None else None
    if parse is None:
        return None

    def convert(value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return parse(value)
        except (ValueError, ArithmeticError):
            return value

    return convert


def normalise_row(
    values: Sequence[object], converters: Sequence[Converter | None] = ()
) -> tuple[Normalised, ...]:
    """Each value of a row (read through its converter, when it has one), normalised."""
    if not converters:
        return tuple(normalise(v) for v in values)
    return tuple(
        normalise(v if convert is None else convert(v))
        for v, convert in zip(values, converters, strict=True)
    )


def row_digest(row: Sequence[Normalised]) -> int:
    """A 128-bit digest of a normalised row."""
    text = json.dumps(list(row), separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=DIGEST_BITS // 8).digest())
