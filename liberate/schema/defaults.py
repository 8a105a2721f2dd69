"""Column defaults as Avro field defaults: a database's constant default, in Avro's JSON form.

A reader field with a default reads data that lacks it, so a new column whose constant default
becomes its Avro default is a BACKWARD-compatible change (Confluent's rule). Reflection gives a
default as the SQL text the catalog stores, which differs per dialect:

- PostgreSQL: ``'new'::text``, ``'1.50'::numeric``, ``42``, ``'-1'::integer``, ``true``,
  ``'2024-01-01'::date``, ``nextval('orders_id_seq'::regclass)``, ``now()``;
- MySQL/MariaDB: ``'new'``, ``0`` or ``'0'``, ``NULL``, ``current_timestamp()``;
- SQLite: the text as written: ``'new'``, ``0``, ``-1.5``, ``CURRENT_TIMESTAMP``, ``(1)``.

Only a literal is a constant. Function calls, sequences, keywords such as
``CURRENT_TIMESTAMP``, expressions, and literals that do not fit the column's Avro type give
no default: a missing default only makes fewer changes compatible, a wrong one would make
consumers read values the row never had. Dates and times become their Avro logical values
(days, microseconds); a timestamp literal without an offset is read as UTC, the time zone
every source session runs at.

Everything here is a pure function of the text and the Avro type.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from liberate.schema.types import JSON_NAME, VARIABLE_DECIMAL_NAME

_EPOCH_DAY = dt.date(1970, 1, 1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# PostgreSQL casts after a literal: ::text, ::character varying, ::timestamp with time zone,
# ::numeric(10,2), ::public."mood", ::integer[] (any number of them).
_CASTS = re.compile(r'(::\s*[A-Za-z_][\w ."]*(\(\s*\d+(\s*,\s*\d+)?\s*\))?(\[\])*\s*)*')


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant SQL literal: ``text`` for a quoted string or a number, ``value`` for
    ``NULL``, ``TRUE`` and ``FALSE``."""

    kind: str  # "string", "number", "boolean" or "null"
    text: str = ""
    value: bool | None = None


@dataclass(frozen=True, slots=True)
class AvroDefault:
    """The Avro field default of a column (``value`` may be None: an Avro null)."""

    value: Any


def parse_literal(text: str | None, *, dialect: str | None = None) -> Literal | None:
    """The constant literal a default's SQL ``text`` is, or None when it is not a constant.

    ``dialect`` is the SQLAlchemy dialect name: on MySQL a backslash in a string literal may
    be an escape, so such a string is not taken as a constant.
    """
    if text is None:
        return None
    body = _strip_parens(text.strip())
    if not body:
        return None
    if body[0] == "'":
        parsed = _quoted(body)
        if parsed is None:
            return None
        value, rest = parsed
        if dialect == "mysql" and "\\" in value:
            return None
        return Literal("string", value) if _only_casts(rest) else None
    number = _NUMBER.match(body)
    if number is not None:
        return Literal("number", number.group(0)) if _only_casts(body[number.end():]) else None
    word = body.split("::", 1)
    if len(word) == 2 and not _only_casts("::" + word[1]):
        return None
    keyword = word[0].strip().upper()
    if keyword == "NULL":
        return Literal("null")
    if keyword in ("TRUE", "FALSE"):
        return Literal("boolean", value=keyword == "TRUE")
    return None


def avro_default(
    text: str | None, field_type: Any, *, dialect: str | None = None
) -> AvroDefault | None:
    """The Avro default (JSON form) of a column whose default is ``text`` and whose Avro type
    (without the null union) is ``field_type``; None when there is no constant default that
    fits the type."""
    literal = parse_literal(text, dialect=dialect)
    if literal is None or literal.kind == "null":
        return None
    try:
        value = _avro_value(literal, field_type)
    except (ValueError, ArithmeticError, InvalidOperation, TypeError):
        return None
    return None if value is _NONE else AvroDefault(value)


_NONE = object()


def _avro_value(literal: Literal, field_type: Any) -> Any:
    if isinstance(field_type, str):
        return _primitive(literal, field_type)
    if not isinstance(field_type, dict):
        return _NONE  # unions (other than the null one), which never come from a column
    kind = field_type.get("type")
    logical = field_type.get("logicalType")
    if kind == "enum":
        symbols = field_type.get("symbols") or ()
        return literal.text if literal.kind == "string" and literal.text in symbols else _NONE
    if logical == "decimal" and kind == "bytes":
        return _decimal(literal, int(field_type.get("scale", 0)), int(field_type["precision"]))
    if logical == "date" and kind == "int":
        return (dt.date.fromisoformat(_text(literal)) - _EPOCH_DAY).days
    if logical in ("timestamp-micros", "timestamp-millis") and kind == "long":
        return _since_epoch(_timestamp(literal, utc=True), logical)
    if logical in ("local-timestamp-micros", "local-timestamp-millis") and kind == "long":
        return _since_epoch(_timestamp(literal, utc=False), logical)
    if logical in ("time-micros", "time-millis"):
        return _time(literal, logical)
    if logical == "uuid" and kind == "string":
        return str(uuid.UUID(_text(literal)))
    if logical is None and kind == "string" and "connect.name" in field_type:
        return _semantic_text(literal, field_type)
    if logical is None and isinstance(kind, str) and kind != "bytes":
        return _primitive(literal, kind) if "connect.name" not in field_type else _NONE
    return _NONE


def _semantic_text(literal: Literal, field_type: dict[str, Any]) -> Any:
    """A marked string (``connect.name``) whose values are the literal's own text: JSON, exact
    decimal text, an enum label. Other marked types (intervals, network addresses, zoned
    times) hold a normal form of their own, which a literal need not be written in."""
    name = field_type["connect.name"]
    text = _text(literal)
    if name == JSON_NAME:
        return text
    if name == VARIABLE_DECIMAL_NAME:
        number = Decimal(text)
        return format(number, "f") if number.is_finite() else _NONE
    allowed = (field_type.get("connect.parameters") or {}).get("allowed")
    if isinstance(allowed, str) and literal.kind == "string":
        return literal.text if literal.text in allowed.split(",") else _NONE
    return _NONE


def _primitive(literal: Literal, kind: str) -> Any:
    if kind == "boolean":
        return _boolean(literal)
    if kind in ("int", "long"):
        number = Decimal(_text(literal))
        low, high = _INT_RANGE if kind == "int" else _LONG_RANGE
        if number != number.to_integral_value() or not low <= number <= high:
            return _NONE
        return int(number)
    if kind in ("float", "double"):
        real = float(_text(literal))
        return real if math.isfinite(real) else _NONE  # JSON has no NaN or Infinity
    if kind == "string":
        return literal.text if literal.kind in ("string", "number") else _NONE
    return _NONE


def _boolean(literal: Literal) -> Any:
    if literal.kind == "boolean":
        return literal.value
    word = literal.text.strip().lower()
    if word in ("1", "t", "true", "y", "yes", "on"):
        return True
    if word in ("0", "f", "false", "n", "no", "off"):
        return False
    return _NONE


def _decimal(literal: Literal, scale: int, precision: int) -> Any:
    number = Decimal(_text(literal))
    if not number.is_finite():
        return _NONE
    unscaled = number.scaleb(scale)
    if unscaled != unscaled.to_integral_value():
        return _NONE  # more fractional digits than the column keeps
    integer = int(unscaled)
    if len(str(abs(integer))) > precision:
        return _NONE
    size = max(1, (integer.bit_length() + 8) // 8)
    # Avro's JSON form of bytes: one character per byte (code points 0-255).
    return integer.to_bytes(size, "big", signed=True).decode("latin-1")


def _timestamp(literal: Literal, *, utc: bool) -> dt.datetime:
    value = dt.datetime.fromisoformat(_text(literal))
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    if not utc:
        raise ValueError("a local timestamp has no offset")
    return value


def _since_epoch(value: dt.datetime, logical: str) -> int:
    delta = value - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros if logical.endswith("micros") else micros // 1000


def _time(literal: Literal, logical: str) -> int:
    value = dt.time.fromisoformat(_text(literal))
    if value.tzinfo is not None:
        raise ValueError("a time with a zone has no Avro time value")
    micros = (value.hour * 3600 + value.minute * 60 + value.second) * 1_000_000
    micros += value.microsecond
    return micros if logical == "time-micros" else micros // 1000


def _text(literal: Literal) -> str:
    if literal.kind not in ("string", "number"):
        raise ValueError(f"a {literal.kind} literal is not a {literal.kind} of this type")
    return literal.text.strip()


def _strip_parens(text: str) -> str:
    while text.startswith("(") and text.endswith(")") and _closes_at_end(text):
        text = text[1:-1].strip()
    return text


def _closes_at_end(text: str) -> bool:
    depth = 0
    quoted = False
    for index, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return index == len(text) - 1
    return False


def _quoted(text: str) -> tuple[str, str] | None:
    """The value of the string literal ``text`` starts with, and what follows it."""
    chars: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == "'":
            if text.startswith("''", index):
                chars.append("'")
                index += 2
                continue
            return "".join(chars), text[index + 1:]
        chars.append(char)
        index += 1
    return None


def _only_casts(rest: str) -> bool:
    rest = rest.strip()
    return not rest or _CASTS.fullmatch(rest) is not None
