"""MySQL's binary JSON (the JSON column type of MySQL 5.7+) from bytes to JSON text.

MariaDB stores JSON as LONGTEXT, so this is only met on MySQL. The text is compact
(``{"a":1}``) and holds the values ``json.loads`` would make of the server's own text form,
so a streamed JSON value equals the snapshot's. Layout (sql-common/json_binary.cc): a type
byte, then objects and arrays as ``count, size`` followed by key entries ``(offset, length)``
and value entries ``(type, offset-or-inline value)``, with 2-byte offsets in small and 4-byte
offsets in large containers.
"""

from __future__ import annotations

import base64
import json
import struct
from decimal import Decimal
from typing import Any

from connectors.mysql._binlog import BinlogDecodeError
from connectors.mysql._values import decimal_reader

_SMALL_OBJECT, _LARGE_OBJECT, _SMALL_ARRAY, _LARGE_ARRAY = 0, 1, 2, 3
_LITERAL, _INT16, _UINT16, _INT32, _UINT32, _INT64, _UINT64, _DOUBLE, _STRING = range(4, 13)
_OPAQUE = 15
_LITERALS = {0: None, 1: True, 2: False}

_I16 = struct.Struct("<h").unpack_from
_U16 = struct.Struct("<H").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I64 = struct.Struct("<q").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_F64 = struct.Struct("<d").unpack_from

# Opaque values: MySQL column types kept inside JSON.
_OPAQUE_DECIMAL = 246
_OPAQUE_DATE = (10, 14)
_OPAQUE_TIME = (11, 19)
_OPAQUE_DATETIME = (7, 12, 17, 18)


def json_text(data: bytes) -> str:
    """The compact JSON text of a binary JSON value (empty input: JSON null)."""
    if not data:
        return "null"
    try:
        value = _value(data[0], data, 1, len(data))
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise BinlogDecodeError(f"malformed binary JSON value: {exc}") from exc
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _value(kind: int, data: bytes, offset: int, end: int) -> Any:
    if kind in (_SMALL_OBJECT, _LARGE_OBJECT, _SMALL_ARRAY, _LARGE_ARRAY):
        return _container(kind, data, offset)
    if kind == _LITERAL:
        return _LITERALS[data[offset]]
    if kind == _INT16:
        return _I16(data, offset)[0]
    if kind == _UINT16:
        return _U16(data, offset)[0]
    if kind == _INT32:
        return _I32(data, offset)[0]
    if kind == _UINT32:
        return _U32(data, offset)[0]
    if kind == _INT64:
        return _I64(data, offset)[0]
    if kind == _UINT64:
        return _U64(data, offset)[0]
    if kind == _DOUBLE:
        return _F64(data, offset)[0]
    if kind == _STRING:
        length, offset = _varlen(data, offset)
        return data[offset : offset + length].decode("utf-8")
    if kind == _OPAQUE:
        return _opaque(data, offset)
    raise BinlogDecodeError(f"unknown binary JSON type {kind}")


def _container(kind: int, data: bytes, start: int) -> Any:
    large = kind in (_LARGE_OBJECT, _LARGE_ARRAY)
    is_object = kind in (_SMALL_OBJECT, _LARGE_OBJECT)
    unpack = _U32 if large else _U16
    step = 4 if large else 2
    count = unpack(data, start)[0]
    key_entry = step + 2
    value_entry = 1 + step
    entries = start + 2 * step
    keys: list[str] = []
    if is_object:
        for i in range(count):
            entry = entries + i * key_entry
            key_offset = unpack(data, entry)[0]
            key_length = _U16(data, entry + step)[0]
            keys.append(data[start + key_offset : start + key_offset + key_length].decode("utf-8"))
        entries += count * key_entry
    values: list[Any] = []
    for i in range(count):
        entry = entries + i * value_entry
        kind_i = data[entry]
        inline = kind_i in (_LITERAL, _INT16, _UINT16) or (large and kind_i in (_INT32, _UINT32))
        if inline:
            values.append(_value(kind_i, data, entry + 1, len(data)))
        else:
            offset = unpack(data, entry + 1)[0]
            values.append(_value(kind_i, data, start + offset, len(data)))
    return dict(zip(keys, values, strict=True)) if is_object else values


def _varlen(data: bytes, offset: int) -> tuple[int, int]:
    length = 0
    shift = 0
    while True:
        byte = data[offset]
        offset += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length, offset
        shift += 7


def _opaque(data: bytes, offset: int) -> Any:
    field_type = data[offset]
    length, offset = _varlen(data, offset + 1)
    raw = data[offset : offset + length]
    if field_type == _OPAQUE_DECIMAL:
        # A decimal inside JSON prints as a number; json.loads of that text is a float.
        return float(_json_decimal(raw))
    if field_type in _OPAQUE_DATE + _OPAQUE_TIME + _OPAQUE_DATETIME:
        return _temporal(field_type, raw)
    return f"base64:type{field_type}:{base64.b64encode(raw).decode('ascii')}"


def _json_decimal(raw: bytes) -> Decimal:
    precision, scale = raw[0], raw[1]
    return decimal_reader(precision, scale)(raw[2:])


def _temporal(field_type: int, raw: bytes) -> str:
    # A packed temporal int64 (TIME_to_longlong_*_packed): integer part << 24 | microseconds.
    packed = _I64(raw, 0)[0]
    negative = packed < 0
    if negative:
        packed = -packed
    micros = packed & 0xFFFFFF
    intpart = packed >> 24
    if field_type in _OPAQUE_TIME:
        hour, minute, second = intpart >> 12 & 0x3FF, intpart >> 6 & 63, intpart & 63
        sign = "-" if negative else ""
        return f"{sign}{hour:02d}:{minute:02d}:{second:02d}.{micros:06d}"
    ymd = intpart >> 17
    ym = ymd >> 5
    date = f"{ym // 13:04d}-{ym % 13:02d}-{ymd & 31:02d}"
    if field_type in _OPAQUE_DATE:
        return date
    hms = intpart & 0x1FFFF
    return f"{date} {hms >> 12:02d}:{hms >> 6 & 63:02d}:{hms & 63:02d}.{micros:06d}"
