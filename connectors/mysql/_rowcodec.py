"""Row images from bytes: WRITE/UPDATE/DELETE_ROWS events decoded with a per-table decoder.

For each distinct TABLE_MAP a row decoder is *generated*: straight-line Python source with one
block per column, compiled once with ``compile()``. A generic loop over column decoders costs
a function call and a dispatch per column; the generated code reads an INT with one
``unpack_from`` and a VARCHAR with one slice and ``decode``, which is what takes the decoder
several times faster (benchmarks/mysql_cdc.py). The generator only emits code from fixed
templates with integer parameters, names of helpers in this module, codec names, and Avro
field names (checked against ``[A-Za-z_][A-Za-z0-9_]*``) as string literals: no other column
name and no value ever becomes code.

Decoded values are what the Avro schema of the table expects (the same values
``TableSchema.value_of`` makes of a snapshot row): int; ``Decimal`` for DECIMAL and BIGINT
UNSIGNED; float; ``str`` for text in the column's character set; ``bytes`` for binary
strings and BIT; ``date``; naive ``datetime`` for DATETIME; UTC ``datetime`` for TIMESTAMP;
signed microseconds (int) for TIME, a duration; int for YEAR; JSON as compact text.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.mysql import _tablemap as tm
from connectors.mysql._binlog import (
    DELETE_ROWS,
    HEADER_SIZE,
    UPDATE_ROWS,
    UPDATE_ROWS_V1,
    WRITE_ROWS,
    WRITE_ROWS_V1,
    BinlogDecodeError,
    length_encoded_int,
)
from connectors.mysql._jsonb import json_text
from connectors.mysql._values import (
    FRACTION_BYTES,
    date,
    datetime_old,
    datetime_reader,
    decimal_reader,
    decimal_size,
    set_text,
    time2,
    time_old,
    timestamp_reader,
    timestamp_seconds,
    zero_date,
)
from liberate.errors import RecordError, UnsupportedTypeError

Row = dict[str, Any]
RowDecoder = Callable[[bytes, int], tuple[Row, int]]
#: entries kept per column by the caches of DECIMAL and temporal values
VALUE_CACHE_SIZE = 4096
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


@dataclass(frozen=True, slots=True)
class RowCodec:
    """The decoder of one TABLE_MAP's rows into ``{field: value}`` dicts."""

    table: tm.TableMap
    fields: tuple[str, ...]
    decode: RowDecoder
    source: str
    #: what a WRITE/DELETE (UPDATE) event of full images has after its post-header
    row_prefix: bytes
    update_prefix: bytes


def compile_row_codec(
    table: tm.TableMap,
    fields: Sequence[str],
    *,
    encodings: Mapping[int, str] | None = None,
) -> RowCodec:
    """Generate the row decoder of ``table``, naming its values ``fields`` (Avro field names).

    Raises ``UnsupportedTypeError`` for a column type the decoder cannot read.
    """
    if len(fields) != len(table.columns):
        raise ValueError("one field name per column is needed")
    where = f"{table.database}.{table.table}"
    namespace: dict[str, Any] = dict(_HELPERS)
    body: list[str] = []
    null_bytes = (len(table.columns) + 7) // 8
    if any(c.nullable for c in table.columns):
        if null_bytes == 1:
            body.append("nulls = data[pos]")
        else:
            body.append(f"nulls = int.from_bytes(data[pos:pos + {null_bytes}], 'little')")
    body.append(f"pos += {null_bytes}")
    for column in table.columns:
        block = _column_block(column, namespace, encodings or {}, where)
        if column.nullable:
            body += [f"if nulls & {1 << column.index}:", f"    v{column.index} = None", "else:"]
            body += ["    " + line for line in block]
        else:
            body += block
    body.append(f"return {{{', '.join(_keys(fields, namespace))}}}, pos")
    # Helpers become default arguments: a local is cheaper to load than a global.
    used = sorted(set(_NAME.findall("\n".join(body))) & (set(namespace) - {"__builtins__"}))
    signature = ", ".join(["data", "pos", *(f"{name}={name}" for name in used)])
    source = f"def decode({signature}):\n" + "".join(f"    {line}\n" for line in body)
    code = compile(source, f"<row decoder of {where}>", "exec")
    exec(code, namespace)  # only our templates: see the module docstring
    row_prefix, update_prefix = _full_images(len(table.columns))
    return RowCodec(
        table, tuple(fields), namespace["decode"], source, row_prefix, update_prefix
    )


def _keys(fields: Sequence[str], namespace: dict[str, Any]) -> list[str]:
    """``key: value`` items of the row dict: Avro names (checked) as literals."""
    items = []
    for index, name in enumerate(fields):
        if _AVRO_NAME.fullmatch(name):
            items.append(f"{name!r}: v{index}")
        else:
            namespace[f"F{index}"] = name
            items.append(f"F{index}: v{index}")
    return items


def _column_block(
    column: tm.BinlogColumn, namespace: dict[str, Any], encodings: Mapping[int, str], where: str
) -> list[str]:
    """Source lines that read column ``column.index`` at ``pos`` into ``v<index>``."""
    i = column.index
    t = column.type
    v = f"v{i}"
    if t == tm.T_TINY:
        if column.unsigned:
            return [f"{v} = data[pos]", "pos += 1"]
        return [f"{v} = data[pos]", f"if {v} > 127: {v} -= 256", "pos += 1"]
    if t == tm.T_SHORT:
        return [f"{v} = {'_u16' if column.unsigned else '_i16'}(data, pos)[0]", "pos += 2"]
    if t == tm.T_INT24:
        lines = [f"{v} = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16"]
        if not column.unsigned:
            lines.append(f"if {v} & 0x800000: {v} -= 0x1000000")
        return [*lines, "pos += 3"]
    if t == tm.T_LONG:
        return [f"{v} = {'_u32' if column.unsigned else '_i32'}(data, pos)[0]", "pos += 4"]
    if t == tm.T_LONGLONG:
        if column.unsigned:
            # BIGINT UNSIGNED is decimal(20,0): exact past 2**63, never wrapped.
            return [f"{v} = _Decimal(_u64(data, pos)[0])", "pos += 8"]
        return [f"{v} = _i64(data, pos)[0]", "pos += 8"]
    if t == tm.T_FLOAT:
        return [f"{v} = _f32(data, pos)[0]", "pos += 4"]
    if t == tm.T_DOUBLE:
        return [f"{v} = _f64(data, pos)[0]", "pos += 8"]
    if t == tm.T_NEWDECIMAL:
        size = decimal_size(column.precision, column.scale)
        return _cached_block(i, size, decimal_reader(column.precision, column.scale), namespace)
    if t in (tm.T_DATE, tm.T_NEWDATE):
        return [f"{v} = _date(data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16)", "pos += 3"]
    if t == tm.T_DATETIME2:
        size = 5 + FRACTION_BYTES[column.fsp]
        return _cached_block(i, size, datetime_reader(column.fsp), namespace)
    if t == tm.T_TIMESTAMP2:
        size = 4 + FRACTION_BYTES[column.fsp]
        return _cached_block(i, size, timestamp_reader(column.fsp), namespace)
    if t == tm.T_TIME2:
        size = 3 + FRACTION_BYTES[column.fsp]
        return [f"{v} = _time2(data, pos, {column.fsp})", f"pos += {size}"]
    if t == tm.T_TIMESTAMP:
        return [f"{v} = _timestamp_seconds(_u32(data, pos)[0], 0)", "pos += 4"]
    if t == tm.T_DATETIME:
        return [f"{v} = _datetime_old(_u64(data, pos)[0])", "pos += 8"]
    if t == tm.T_TIME:
        return [f"{v} = _time_old(data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16)",
                "pos += 3"]
    if t == tm.T_YEAR:
        return [f"{v} = data[pos]", f"if {v}: {v} += 1900", "pos += 1"]
    if t in (tm.T_VARCHAR, tm.T_VAR_STRING, tm.T_STRING):
        return _string_block(column, namespace, encodings)
    if t in (tm.T_BLOB, tm.T_TINY_BLOB, tm.T_MEDIUM_BLOB, tm.T_LONG_BLOB, tm.T_JSON):
        return _blob_block(column, encodings)
    if t == tm.T_ENUM:
        namespace[f"E{i}"] = ("", *column.values)
        reader = "data[pos]" if column.length == 1 else "_u16(data, pos)[0]"
        return [f"{v} = E{i}[{reader}]", f"pos += {column.length}"]
    if t == tm.T_SET:
        namespace[f"S{i}"] = column.values
        return [
            f"{v} = _set(int.from_bytes(data[pos:pos + {column.length}], 'little'), S{i})",
            f"pos += {column.length}",
        ]
    if t == tm.T_BIT:
        return [f"{v} = data[pos:pos + {column.length}]", f"pos += {column.length}"]
    raise UnsupportedTypeError(
        f"column {where}.{column.name} has binlog type {column.type_name}, which the binlog "
        "decoder cannot read",
        hint="exclude the table from tables:, or convert the column to a supported type",
    )


def _cached_block(index: int, size: int, read: Callable[[bytes], Any],
                  namespace: dict[str, Any]) -> list[str]:
    """Read a value through a cache keyed by its stored bytes.

    DECIMAL and temporal values cost about a microsecond each to build, and most recur: an
    UPDATE logs every unchanged column twice, and timestamps repeat within a second.
    """
    cache: dict[bytes, Any] = {}
    namespace[f"C{index}"] = cache
    namespace[f"R{index}"] = read
    v = f"v{index}"
    return [
        f"k = data[pos:pos + {size}]",
        f"{v} = C{index}.get(k)",
        f"if {v} is None:",
        f"    {v} = R{index}(k)",
        f"    if len(C{index}) >= {VALUE_CACHE_SIZE}: C{index}.clear()",
        f"    C{index}[k] = {v}",
        f"pos += {size}",
    ]


def _string_block(
    column: tm.BinlogColumn, namespace: dict[str, Any], encodings: Mapping[int, str]
) -> list[str]:
    i = column.index
    v = f"v{i}"
    prefix = 1 if column.length < 256 else 2
    length = "data[pos]" if prefix == 1 else "_u16(data, pos)[0]"
    value = f"data[pos + {prefix}:pos + {prefix} + n]"
    if column.is_binary:
        if column.type == tm.T_STRING:
            # BINARY(n) is logged without its trailing zero bytes; the column holds them.
            value += f".ljust({column.length}, b'\\x00')"
    else:
        value += f".decode({_codec(column, encodings)!r})"
    return [f"n = {length}", f"{v} = {value}", f"pos += {prefix} + n"]


def _blob_block(column: tm.BinlogColumn, encodings: Mapping[int, str]) -> list[str]:
    v = f"v{column.index}"
    size = column.length
    length = {1: "data[pos]", 2: "_u16(data, pos)[0]", 4: "_u32(data, pos)[0]"}.get(
        size, f"int.from_bytes(data[pos:pos + {size}], 'little')"
    )
    value = f"data[pos + {size}:pos + {size} + n]"
    if column.type == tm.T_JSON:
        value = f"_json_text({value})"
    elif not column.is_binary:
        value += f".decode({_codec(column, encodings)!r})"
    return [f"n = {length}", f"{v} = {value}", f"pos += {size} + n"]


def _codec(column: tm.BinlogColumn, encodings: Mapping[int, str]) -> str:
    if column.collation is None:
        return "utf-8"
    return tm.python_encoding(column.collation, encodings)


# -- rows events --------------------------------------------------------------------------


def rows(event: bytes, codec: RowCodec, *, table_id_size: int = 6) -> list[Row]:
    """The row images of a WRITE/UPDATE/DELETE_ROWS event (v1 or v2), without checksum.

    An UPDATE gives before and after images alternately. A partial image
    (``binlog_row_image`` MINIMAL or NOBLOB) raises ``BinlogDecodeError``; text that is not
    valid in its character set raises ``RecordError``.
    """
    offset = HEADER_SIZE + table_id_size + 2
    kind = event[4]
    if kind in _V2_ROWS:
        offset += event[offset] | event[offset + 1] << 8
    # Full images of the codec's columns: the column count and one or two all-ones bitmaps.
    expected = codec.update_prefix if kind in _UPDATES else codec.row_prefix
    if event[offset : offset + len(expected)] != expected:
        _refuse_columns(event, offset, codec)
    offset += len(expected)
    decode = codec.decode
    end = len(event)
    result: list[Row] = []
    append = result.append
    try:
        while offset < end:
            row, offset = decode(event, offset)
            append(row)
    except UnicodeDecodeError as exc:
        table = codec.table
        raise RecordError(
            f"a row of {table.database}.{table.table} holds text that is not valid in its "
            f"character set ({exc.reason})",
            hint="fix the data or the column's character set",
        ) from exc
    except ValueError as exc:
        # datetime() refuses the day 0 and month 0 of MySQL's zero dates.
        raise zero_date(str(exc)) from exc
    except (IndexError, struct.error) as exc:
        raise BinlogDecodeError(f"malformed rows event: {exc}") from exc
    if offset != end:
        raise BinlogDecodeError("a rows event did not end where its last row did")
    return result


_V2_ROWS = frozenset({WRITE_ROWS, UPDATE_ROWS, DELETE_ROWS})
_UPDATES = frozenset({UPDATE_ROWS, UPDATE_ROWS_V1})


def _refuse_columns(event: bytes, offset: int, codec: RowCodec) -> None:
    table = codec.table
    count, offset = length_encoded_int(event, offset)
    if count != len(codec.fields):
        raise BinlogDecodeError(
            f"a rows event of {table.database}.{table.table} has {count} columns but its "
            f"TABLE_MAP has {len(codec.fields)}"
        )
    raise BinlogDecodeError(
        f"a rows event of {table.database}.{table.table} carries a partial row image",
        hint="set binlog_row_image=FULL on the server (SET GLOBAL and in its config); "
        "events logged before that cannot be captured with full images",
    )


def _full_images(count: int) -> tuple[bytes, bytes]:
    """The column count and bitmap(s) of full images: one bitmap, and two (UPDATE)."""
    bitmap = ((1 << count) - 1).to_bytes((count + 7) // 8, "little")
    if count < 0xFB:
        prefix = bytes([count])
    elif count < 1 << 16:
        prefix = b"\xfc" + count.to_bytes(2, "little")
    else:
        prefix = b"\xfd" + count.to_bytes(3, "little")
    return prefix + bitmap, prefix + bitmap + bitmap


def is_insert(event_type: int) -> bool:
    return event_type in (WRITE_ROWS, WRITE_ROWS_V1)


def is_update(event_type: int) -> bool:
    return event_type in (UPDATE_ROWS, UPDATE_ROWS_V1)


_HELPERS: dict[str, Any] = {
    "_u16": struct.Struct("<H").unpack_from,
    "_i16": struct.Struct("<h").unpack_from,
    "_u32": struct.Struct("<I").unpack_from,
    "_i32": struct.Struct("<i").unpack_from,
    "_u64": struct.Struct("<Q").unpack_from,
    "_i64": struct.Struct("<q").unpack_from,
    "_f32": struct.Struct("<f").unpack_from,
    "_f64": struct.Struct("<d").unpack_from,
    "_Decimal": Decimal,
    "_date": date,
    "_timestamp_seconds": timestamp_seconds,
    "_time2": time2,
    "_time_old": time_old,
    "_datetime_old": datetime_old,
    "_set": set_text,
    "_json_text": json_text,
    "__builtins__": {"int": int, "len": len},
}
