"""Row images from bytes: WRITE/UPDATE/DELETE_ROWS events decoded with a per-table decoder.

For each distinct TABLE_MAP a row decoder is *generated*: straight-line Python source with one
block per column, compiled once with ``compile()``. A generic loop over column decoders costs
a function call and a dispatch per column; the generated code reads a run of NOT NULL
fixed-width columns (and the length of a string after them) with one ``unpack_from``, a
VARCHAR with one slice and ``decode``, and TIMESTAMP and DECIMAL with unrolled arithmetic,
which is what takes the decoder several times faster (benchmarks/mysql_cdc.py). Besides the
one-image ``decode``, it generates the loops the stream uses: every image of a WRITE/DELETE
event with its key (``keyed``), every before/after pair of an UPDATE with its key (``pairs``).
The generator only emits code from fixed templates with integer parameters, struct formats,
names of helpers in this module, codec names, and Avro field names (checked against
``[A-Za-z_][A-Za-z0-9_]*``) as string literals: no other column name and no value ever
becomes code.

Decoded values are what the Avro schema of the table expects (the same values
``TableSchema.value_of`` makes of a snapshot row): int; ``Decimal`` for DECIMAL and BIGINT
UNSIGNED; float; ``str`` for text in the column's character set; ``bytes`` for binary
strings and BIT; ``date``; naive ``datetime`` for DATETIME; UTC ``datetime`` for TIMESTAMP;
signed microseconds (int) for TIME, a duration; int for YEAR; JSON as compact text.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from connectors.mysql import _tablemap as tm
from connectors.mysql._binlog import (
    DELETE_ROWS,
    HEADER_SIZE,
    UPDATE_ROWS,
    UPDATE_ROWS_V1,
    WRITE_ROWS,
    BinlogDecodeError,
    length_encoded_int,
)
from connectors.mysql._jsonb import json_text
from connectors.mysql._values import (
    DECIMAL_CONTEXT,
    EPOCH,
    FRACTION_BYTES,
    date,
    datetime_old,
    datetime_reader,
    decimal_groups,
    decimal_size,
    set_text,
    time2,
    time_old,
    timestamp_seconds,
    zero_date,
    zero_timestamp,
)
from liberate.errors import RecordError, UnsupportedTypeError

Row = dict[str, Any]
RowDecoder = Callable[[bytes, int], tuple[Row, int]]
#: ``(row, key)`` of each image of a WRITE or DELETE event
Keyed = tuple[Row, Row]
#: ``(before, after, key, old key)`` of each row of an UPDATE; ``old key`` is None unless the
#: update changed the key (then it is the before image's key)
Pair = tuple[Row, Row, Row, Row | None]
KeyedDecoder = Callable[[bytes, int, int], tuple[list[Keyed], int]]
PairDecoder = Callable[[bytes, int, int], tuple[list[Pair], int]]
#: entries kept per column by the caches of DECIMAL and temporal values
VALUE_CACHE_SIZE = 4096
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


@dataclass(frozen=True, slots=True)
class RowCodec:
    """The decoder of one TABLE_MAP's rows into ``{field: value}`` dicts.

    ``decode`` reads one image; ``keyed`` every image of a WRITE/DELETE event from ``pos`` to
    ``end`` with its key, ``pairs`` every before/after pair of an UPDATE event with the key of
    the after image and, when the key changed, of the before image (``key_fields`` name the
    key). They loop inside the generated code: no call and no dict per column or row beyond
    the images and keys themselves.
    """

    table: tm.TableMap
    fields: tuple[str, ...]
    decode: RowDecoder
    source: str
    #: what a WRITE/DELETE (UPDATE) event of full images has after its post-header
    row_prefix: bytes
    update_prefix: bytes
    key_fields: tuple[str, ...]
    keyed: KeyedDecoder
    pairs: PairDecoder


def compile_row_codec(
    table: tm.TableMap,
    fields: Sequence[str],
    *,
    encodings: Mapping[int, str] | None = None,
    key_fields: Sequence[str] = (),
) -> RowCodec:
    """Generate the row decoders of ``table``, naming its values ``fields`` (Avro field names)
    and its key ``key_fields`` (a subset of ``fields``).

    Raises ``UnsupportedTypeError`` for a column type the decoder cannot read.
    """
    if len(fields) != len(table.columns):
        raise ValueError("one field name per column is needed")
    key_index = [list(fields).index(name) for name in key_fields]
    where = f"{table.database}.{table.table}"
    namespace: dict[str, Any] = dict(_HELPERS)
    image: list[str] = []
    null_bytes = (len(table.columns) + 7) // 8
    if any(c.nullable for c in table.columns):
        if null_bytes == 1:
            image.append("nulls = data[pos]")
        else:
            image.append(f"nulls = int.from_bytes(data[pos:pos + {null_bytes}], 'little')")
    image.append(f"pos += {null_bytes}")
    image += _image_blocks(table.columns, namespace, encodings or {}, where)
    row = "{" + ", ".join(_keys(fields, namespace)) + "}"
    key = "{" + ", ".join(f"{_key_literal(fields, i, namespace)}: v{i}" for i in key_index) + "}"
    old_key = "{" + ", ".join(
        f"{_key_literal(fields, i, namespace)}: o{i}" for i in key_index
    ) + "}"
    same_key = " and ".join(f"o{i} == v{i}" for i in key_index) or "True"
    loop = ["out = []", "append = out.append", "while pos < end:"]
    functions = {
        "decode": ("data, pos", [*image, f"return {row}, pos"]),
        "keyed": ("data, pos, end", [
            *loop, *_indent(image), f"    append(({row}, {key}))", "return out, pos",
        ]),
        "pairs": ("data, pos, end", [
            *loop, *_indent(image), f"    before = {row}",
            *(f"    o{i} = v{i}" for i in key_index), *_indent(image),
            f"    if {same_key}:",
            f"        append((before, {row}, {key}, None))",
            "    else:",
            f"        append((before, {row}, {key}, {old_key}))",
            "return out, pos",
        ]),
    }
    sources = [_function(name, arguments, body, namespace)
               for name, (arguments, body) in functions.items()]
    source = "\n".join(sources)
    code = compile(source, f"<row decoder of {where}>", "exec")
    exec(code, namespace)  # only our templates: see the module docstring
    row_prefix, update_prefix = _full_images(len(table.columns))
    return RowCodec(
        table, tuple(fields), namespace["decode"], source, row_prefix, update_prefix,
        tuple(key_fields), namespace["keyed"], namespace["pairs"],
    )


def _indent(lines: Sequence[str]) -> list[str]:
    return ["    " + line for line in lines]


def _function(name: str, arguments: str, body: Sequence[str], namespace: dict[str, Any]) -> str:
    """The source of ``def name(arguments)``; helpers become default arguments (a local is
    cheaper to load than a global)."""
    used = sorted(set(_NAME.findall("\n".join(body))) & (set(namespace) - {"__builtins__"}))
    signature = ", ".join([arguments, *(f"{helper}={helper}" for helper in used)])
    return f"def {name}({signature}):\n" + "".join(f"    {line}\n" for line in body)


def _keys(fields: Sequence[str], namespace: dict[str, Any]) -> list[str]:
    """``key: value`` items of the row dict: Avro names (checked) as literals."""
    return [f"{_key_literal(fields, index, namespace)}: v{index}" for index in range(len(fields))]


def _key_literal(fields: Sequence[str], index: int, namespace: dict[str, Any]) -> str:
    """The dict key of field ``index`` in generated code: a checked Avro name as a literal,
    anything else through a constant ``F<index>`` of the namespace."""
    name = fields[index]
    if _AVRO_NAME.fullmatch(name):
        return repr(name)
    namespace[f"F{index}"] = name
    return f"F{index}"


#: struct codes of the fixed-width columns read in runs: (type, unsigned) -> code
_STRUCT_CODES = {
    (tm.T_TINY, False): "b", (tm.T_TINY, True): "B", (tm.T_SHORT, False): "h",
    (tm.T_SHORT, True): "H", (tm.T_LONG, False): "i", (tm.T_LONG, True): "I",
    (tm.T_LONGLONG, False): "q", (tm.T_FLOAT, False): "f", (tm.T_FLOAT, True): "f",
    (tm.T_DOUBLE, False): "d", (tm.T_DOUBLE, True): "d",
}
#: struct codes of the length prefixes of strings and blobs, by prefix size
_LENGTH_CODES = {1: "B", 2: "H", 4: "I"}
_STRING_TYPES = frozenset({tm.T_VARCHAR, tm.T_VAR_STRING, tm.T_STRING})
_BLOB_TYPES = frozenset({tm.T_BLOB, tm.T_TINY_BLOB, tm.T_MEDIUM_BLOB, tm.T_LONG_BLOB, tm.T_JSON})


def _image_blocks(columns: Sequence[tm.BinlogColumn], namespace: dict[str, Any],
                  encodings: Mapping[int, str], where: str) -> list[str]:
    """Source lines that read every column of an image into ``v<index>``.

    Consecutive NOT NULL fixed-width numbers (and the length prefix of a NOT NULL string or
    blob right after them) are read with one ``unpack_from`` of a struct made for the run; a
    nullable column is absent when NULL, so it ends a run.
    """
    lines: list[str] = []
    run: list[tm.BinlogColumn] = []
    for column in columns:
        if not column.nullable and (column.type, column.unsigned) in _STRUCT_CODES:
            run.append(column)
            continue
        block = _column_block(column, namespace, encodings, where)
        prefix = _length_prefix(column)
        if run and prefix and not column.nullable and block[0].startswith("n = "):
            # The string's length joins the run; its block reads on from the prefix.
            lines += _run_lines(run, namespace, encodings, where, (_LENGTH_CODES[prefix], prefix))
            lines += block[1:]
            run = []
            continue
        lines += _run_lines(run, namespace, encodings, where)
        run = []
        if column.nullable:
            lines += [f"if nulls & {1 << column.index}:", f"    v{column.index} = None", "else:"]
            lines += ["    " + line for line in block]
        else:
            lines += block
    return lines + _run_lines(run, namespace, encodings, where)


def _length_prefix(column: tm.BinlogColumn) -> int:
    """The size of the length prefix a string or blob column is stored with (0: none)."""
    if column.type in _STRING_TYPES:
        return 1 if column.length < 256 else 2
    if column.type in _BLOB_TYPES and column.length in _LENGTH_CODES:
        return column.length
    return 0


def _run_lines(run: Sequence[tm.BinlogColumn], namespace: dict[str, Any],
               encodings: Mapping[int, str], where: str,
               length: tuple[str, int] | None = None) -> list[str]:
    """Read a run of fixed-width columns with one struct, and then, when ``length`` is
    ``(struct code, size)``, a string's length prefix into ``n``: ``pos`` stops at the prefix
    (the string's block skips it itself)."""
    if not run:
        return []
    if len(run) == 1 and length is None:
        # One value alone: the column's own block is as fast.
        return _column_block(run[0], namespace, encodings, where)
    codes = [_STRUCT_CODES[(c.type, c.unsigned)] for c in run]
    names = [f"v{c.index}" for c in run]
    size = struct.calcsize("<" + "".join(codes))
    if length is not None:
        codes.append(length[0])
        names.append("n")
    reader = _struct_reader("<" + "".join(codes), namespace)
    return [f"{', '.join(names)} = {reader}(data, pos)", f"pos += {size}"]


def _struct_reader(layout: str, namespace: dict[str, Any]) -> str:
    """The name of ``struct.Struct(layout).unpack_from`` in the generated code's namespace."""
    name = "_s_" + "".join(c if c.isalnum() else "" for c in layout.replace("<", "le_"))
    namespace[name] = struct.Struct(layout).unpack_from
    return name


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
        return _cached_block(i, size, None, namespace,
                             _decimal_lines(column.precision, column.scale))
    if t in (tm.T_DATE, tm.T_NEWDATE):
        return [f"{v} = _date(data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16)", "pos += 3"]
    if t == tm.T_DATETIME2:
        size = 5 + FRACTION_BYTES[column.fsp]
        return _cached_block(i, size, datetime_reader(column.fsp), namespace)
    if t == tm.T_TIMESTAMP2:
        # Seconds since the epoch (big-endian) and the fraction, read in place: no reader call.
        size = 4 + FRACTION_BYTES[column.fsp]
        return _cached_block(i, size, None, namespace, [
            "seconds = _u32be(k, 0)[0]",
            f"micros = {_fraction_expression('k', 4, column.fsp)}",
            "if not seconds and not micros: _zero_timestamp()",
            "value = _EPOCH + _timedelta(0, seconds, micros)",
        ])
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


def _cached_block(index: int, size: int, read: Callable[[bytes], Any] | None,
                  namespace: dict[str, Any], compute: Sequence[str] = ()) -> list[str]:
    """Read a value through a cache keyed by its stored bytes ``k``: with ``read(k)``, or
    generated lines ``compute`` that set ``value`` from ``k``.

    DECIMAL and temporal values cost about a microsecond each to build, and most recur: an
    UPDATE logs every unchanged column twice, and timestamps repeat within a second.
    """
    cache: dict[bytes, Any] = {}
    namespace[f"C{index}"] = cache
    if read is not None:
        namespace[f"R{index}"] = read
        compute = [f"value = R{index}(k)"]
    v = f"v{index}"
    return [
        f"k = data[pos:pos + {size}]",
        f"{v} = C{index}.get(k)",
        f"if {v} is None:",
        *("    " + line for line in compute),
        f"    {v} = value",
        f"    if len(C{index}) >= {VALUE_CACHE_SIZE}: C{index}.clear()",
        f"    C{index}[k] = {v}",
        f"pos += {size}",
    ]


def _decimal_lines(precision: int, scale: int) -> list[str]:
    """Generated code for ``_values.decimal_reader(precision, scale)(k)`` into ``value``:
    its base-10**9 groups unrolled into one expression."""
    size = decimal_size(precision, scale)
    top = 1 << (size * 8 - 1)
    invert = ((1 << size * 8) - 1) ^ top
    digits = "0"
    for shift, mask, count in decimal_groups(precision, scale):
        group = f"(packed >> {shift} & {mask})"
        digits = group if digits == "0" else f"({digits}) * {10**count} + {group}"
    return [
        "packed = int.from_bytes(k, 'big')",
        f"negative = not packed & {top}",
        f"packed ^= {invert} if negative else {top}",
        f"digits = {digits}",
        f"value = _Decimal(-digits if negative else digits).scaleb({-scale}, _DECIMAL_CONTEXT)",
    ]


def _fraction_expression(data: str, offset: int, fsp: int) -> str:
    """Generated code for ``_values.fraction(data, offset, fsp)``: microseconds of a temporal
    value's fractional part (1, 2 or 3 big-endian bytes)."""
    if fsp == 0:
        return "0"
    if fsp <= 2:
        return f"{data}[{offset}] * 10000"
    if fsp <= 4:
        return f"({data}[{offset}] << 8 | {data}[{offset + 1}]) * 100"
    return f"({data}[{offset}] << 16 | {data}[{offset + 1}] << 8 | {data}[{offset + 2}])"


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
    decode = codec.decode

    def every_image(data: bytes, pos: int, end: int) -> tuple[list[Row], int]:
        result: list[Row] = []
        while pos < end:
            row, pos = decode(data, pos)
            result.append(row)
        return result, pos

    return decode_rows_event(event, codec, table_id_size, every_image)


def keyed_rows(event: bytes, codec: RowCodec, *, table_id_size: int = 6) -> list[Keyed]:
    """``(row, key)`` of each image of a WRITE or DELETE_ROWS event (errors as ``rows``)."""
    return decode_rows_event(event, codec, table_id_size, codec.keyed)


def update_pairs(event: bytes, codec: RowCodec, *, table_id_size: int = 6) -> list[Pair]:
    """``(before, after, key, old key or None)`` of each row of an UPDATE_ROWS event (errors
    as ``rows``): ``old key`` is the before image's key when the update changed the key."""
    return decode_rows_event(event, codec, table_id_size, codec.pairs)


_T = TypeVar("_T")


def decode_rows_event(event: bytes, codec: RowCodec, table_id_size: int,
                      read: Callable[[bytes, int, int], tuple[list[_T], int]]) -> list[_T]:
    """What ``read`` (``codec.keyed``, ``codec.pairs``...) makes of the rows of ``event``,
    after checking the images are full; errors as ``rows``."""
    offset = HEADER_SIZE + table_id_size + 2
    kind = event[4]
    if kind in _V2_ROWS:
        offset += event[offset] | event[offset + 1] << 8
    # Full images of the codec's columns: the column count and one or two all-ones bitmaps.
    expected = codec.update_prefix if kind in _UPDATES else codec.row_prefix
    if not event.startswith(expected, offset):
        _refuse_columns(event, offset, codec)
    end = len(event)
    try:
        result, offset = read(event, offset + len(expected), end)
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


_HELPERS: dict[str, Any] = {
    "_u16": struct.Struct("<H").unpack_from,
    "_i16": struct.Struct("<h").unpack_from,
    "_u32": struct.Struct("<I").unpack_from,
    "_u32be": struct.Struct(">I").unpack_from,
    "_i32": struct.Struct("<i").unpack_from,
    "_u64": struct.Struct("<Q").unpack_from,
    "_i64": struct.Struct("<q").unpack_from,
    "_f32": struct.Struct("<f").unpack_from,
    "_f64": struct.Struct("<d").unpack_from,
    "_Decimal": Decimal,
    "_DECIMAL_CONTEXT": DECIMAL_CONTEXT,
    "_date": date,
    "_timestamp_seconds": timestamp_seconds,
    "_zero_timestamp": zero_timestamp,
    "_EPOCH": EPOCH,
    "_timedelta": dt.timedelta,
    "_time2": time2,
    "_time_old": time_old,
    "_datetime_old": datetime_old,
    "_set": set_text,
    "_json_text": json_text,
    "__builtins__": {"int": int, "len": len},
}
