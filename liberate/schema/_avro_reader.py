"""Avro binary decoding generated once per writer schema: one Python function per record.

Why not fastavro's reader: every call pays a ``BytesIO``, a walk over the parsed schema and a
dispatch on type names, and the logical conversions go through a dictionary and a call each:
the largest cost of a SQL sink on a stream of table rows (benchmarks/sink_upserts.py).
Here each record schema becomes one function, generated the way ``_generated`` generates the
writers: fields are read inline from the bytes with an integer position (zig-zag varints,
lengths and slices, ``struct`` for floats), unions become an ``if`` on the branch index, and
nested records, arrays and maps call or loop inline. On the sink benchmark's row (long, int,
text, decimal, two timestamps, JSON text) about 1.5x faster than fastavro, on its one-long key
about 6x.

Same values as ``fastavro.schemaless_reader`` with no reader schema, by construction:

- logical types are converted by fastavro's own ``LOGICAL_READERS`` (the extension point its
  reader uses), except two exact shortcuts taken only while those entries are fastavro's
  stock functions: ``timestamp-micros``/``local-timestamp-micros`` (the same
  ``epoch + timedelta`` sum, the timedelta made as one microsecond times the value, in exact
  integer arithmetic and a third cheaper than the constructor) and ``decimal`` when the
  unscaled value has at most ``precision`` digits (fastavro's context then does not round;
  the shortcut's never does);
- a logical type fastavro does not know is read as its underlying type, as fastavro does.

Made for valid input: bytes that do not decode raise some exception (an ``IndexError``, a
``UnicodeDecodeError``, ``EOFError`` for a value cut short...), and callers decode such
bytes again with fastavro to get its error (``liberate.serde``). The generated source is made
of this module's templates, numbered names and integers; field names, symbols and schema
nodes are passed to it as variables, never written into it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import struct
from collections.abc import Callable
from typing import Any

import fastavro
from fastavro.read import LOGICAL_READERS

#: decodes one datum from ``data``, starting at ``pos`` (the whole message must be read)
Read = Callable[[bytes, int], Any]

_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
# fastavro's stock readers: the shortcuts below compute what these compute.
_STOCK = dict(LOGICAL_READERS)
_serial = itertools.count()

# Varint into z at pos: one to three bytes without a loop (small numbers, lengths, union
# indexes, ids below a million); up to eight (timestamps: 51 bits) from one int.from_bytes,
# whose first byte without the continuation bit ends the varint, and a fixed sequence of
# masks that packs the 7-bit groups; longer ones in a loop. Bytes past the end of data read
# as zeros here, and the position then passes the end, which the caller checks.
_VARINT = """\
z = data[pos]
if z < 128:
    pos += 1
elif (y := data[pos + 1]) < 128:
    z = (z & 127) | (y << 7)
    pos += 2
elif (w := data[pos + 2]) < 128:
    z = (z & 127) | ((y & 127) << 7) | (w << 14)
    pos += 3
elif (m := ~(x := from_bytes(data[pos:pos + 8], 'little')) & M8):
    m &= -m
    x &= (m - 1) & L7
    x = (x & 0x007f007f007f007f) | ((x & 0x7f007f007f007f00) >> 1)
    x = (x & 0x00003fff00003fff) | ((x & 0x3fff00003fff0000) >> 2)
    z = (x & 0x000000000fffffff) | ((x & 0x0fffffff00000000) >> 4)
    pos += m.bit_length() >> 3
else:
    z, pos = varint(data, pos)"""
_ZIGZAG = _VARINT + "\n{v} = (z >> 1) ^ -(z & 1)"
_LENGTH = _VARINT + "\nn = z >> 1\nif z & 1:\n    raise ValueError('negative length')"
_SLICE = _LENGTH + """
end = pos + n
if end > size:
    raise EOFError
{v} = data[pos:end]
pos = end"""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` (any length) and the position after it."""
    z = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return z, pos
        shift += 7


class _Unsupported(Exception):
    """A schema shape this module leaves to fastavro."""


def compile_reader(schema: Any) -> Read | None:
    """A reader of Avro ``schema`` (JSON form), or None when it is left to fastavro.

    ``read(data, pos)`` decodes the datum starting at ``pos`` of ``data`` (a Confluent
    wire-format message: ``pos`` 5) and returns what ``fastavro.schemaless_reader`` returns
    for it; it raises when the bytes run out before the datum does.
    """
    named: dict[str, Any] = {}
    try:
        parsed = fastavro.parse_schema(schema, named, _write_hint=False)
    except Exception:  # fastavro reports invalid schemas with several exception types
        return None
    generator = _Generator(named)
    try:
        if isinstance(parsed, dict) and parsed.get("type") in ("record", "error"):
            lines, result = generator.record_fields(parsed)  # inline: one call less
        else:
            lines, result = generator.node(parsed, "value"), "value"
        generator.define("read(data, pos)", ["size = len(data)", *lines, "if pos > size:",
                                             "    raise EOFError", f"return {result}"])
    except (_Unsupported, LookupError, TypeError, ValueError, SyntaxError, RecursionError):
        # SyntaxError: Python allows 20 nested blocks, and arrays of maps of unions... nest.
        return None
    read: Read = generator.namespace["read"]
    return read


#: The templates, for other generated code reading Avro binary the same way (the SQL sink's
#: transcoders): each reads at ``pos`` of ``data`` (``size`` its length) into ``z``/``{v}``.
ZIGZAG = _ZIGZAG
SLICE = _SLICE


def reader_namespace() -> dict[str, Any]:
    """A fresh namespace holding what the templates' code refers to."""
    return {
        "M8": 0x8080808080808080,
        "L7": 0x7F7F7F7F7F7F7F7F,
        "varint": _varint,
        "unpack_float": struct.Struct("<f").unpack_from,
        "unpack_double": struct.Struct("<d").unpack_from,
        "EPOCH": dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        "EPOCH_NAIVE": dt.datetime(1970, 1, 1),
        "MICROSECOND": dt.timedelta(microseconds=1),
        "Decimal": decimal.Decimal,
        "scaleb": _EXACT.scaleb,
        "from_bytes": int.from_bytes,
    }


class _Generator:
    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.namespace: dict[str, Any] = reader_namespace()
        self._records: dict[str, str] = {}  # record full name -> its generated function
        self._count = itertools.count()

    def constant(self, value: Any) -> str:
        """A fresh variable holding ``value`` in the generated code's namespace."""
        name = f"k{next(self._count)}"
        self.namespace[name] = value
        return name

    def define(self, signature: str, body: list[str]) -> None:
        source = f"def {signature}:\n" + _indent(body) + "\n"
        code = compile(source, f"<liberate record reader {next(_serial)}>", "exec")
        exec(code, self.namespace)  # this module's templates; nothing read from a schema

    def node(self, node: Any, v: str) -> list[str]:
        """Lines that read a value of ``node`` into variable ``v``, advancing ``pos``."""
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return self.primitive(node, v)
            return self.named_type(node, v)
        if isinstance(node, list):
            return self.union(node, v)
        if not isinstance(node, dict):
            raise _Unsupported(repr(node))
        kind = node["type"]
        if kind == "record" or kind == "error":
            return self.record_call(node, v)
        if kind in ("enum", "fixed"):
            lines = self.enum(node, v) if kind == "enum" else self.fixed(node, v)
        elif kind == "array":
            lines = self.array(node, v)
        elif kind == "map":
            lines = self.map(node, v)
        elif kind in _PRIMITIVES:
            lines = self.primitive(kind, v)
        else:
            raise _Unsupported(kind)
        logical = node.get("logicalType")
        if logical is None:
            return lines
        return lines + self.logical(node, kind, logical, v)

    def primitive(self, kind: str, v: str) -> list[str]:
        if kind == "null":
            return [f"{v} = None"]
        if kind == "boolean":
            return [f"{v} = data[pos] != 0", "pos += 1"]
        if kind in ("int", "long"):
            return [_ZIGZAG.format(v=v)]
        if kind == "float":
            return [f"{v}, = unpack_float(data, pos)", "pos += 4"]
        if kind == "double":
            return [f"{v}, = unpack_double(data, pos)", "pos += 8"]
        if kind == "bytes":
            return [_SLICE.format(v=v)]
        return [_SLICE.format(v=v), f"{v} = {v}.decode()"]  # string: UTF-8, strict

    def logical(self, node: dict[str, Any], kind: str, logical: Any, v: str) -> list[str]:
        key = f"{kind}-{logical}"
        reader = LOGICAL_READERS.get(key)
        if reader is None:
            return []  # fastavro ignores logical types it does not know
        stock = reader is _STOCK.get(key)
        if stock and key == "long-timestamp-micros":
            return [f"{v} = EPOCH + MICROSECOND * {v}"]
        if stock and key == "long-local-timestamp-micros":
            return [f"{v} = EPOCH_NAIVE + MICROSECOND * {v}"]
        schema = self.constant(node)
        read = self.constant(reader)
        if stock and logical == "decimal":
            scale, precision = node.get("scale", 0), node.get("precision")
            if type(scale) is int and type(precision) is int and 0 <= scale <= precision <= 1000:
                limit = self.constant(10**precision)
                return [
                    f"u = from_bytes({v}, 'big', signed=True)",
                    f"if -{limit} < u < {limit}:",
                    f"    {v} = scaleb(Decimal(u), {-scale})",
                    "else:",
                    f"    {v} = {read}({v}, {schema}, None)",
                ]
        return [f"{v} = {read}({v}, {schema}, None)"]

    def named_type(self, name: str, v: str) -> list[str]:
        node = self.named.get(name)
        if node is None:
            raise _Unsupported(name)
        return self.node(node, v)

    def record_call(self, node: dict[str, Any], v: str) -> list[str]:
        """A call of the function generated for the record (defined on first use)."""
        name = node["name"]
        function = self._records.get(name)
        if function is None:
            function = self._records[name] = f"record{len(self._records)}"
            lines, result = self.record_fields(node)
            self.define(f"{function}(data, pos)", ["size = len(data)", *lines,
                                                   f"return {result}, pos"])
        return [f"{v}, pos = {function}(data, pos)"]

    def record_fields(self, node: dict[str, Any]) -> tuple[list[str], str]:
        """Lines that read the fields of a record, and the expression of its dict."""
        lines: list[str] = []
        names = []
        for i, field in enumerate(node["fields"]):
            lines += self.node(field["type"], f"v{i}")
            names.append(self.constant(field["name"]))
        return lines, "{" + ", ".join(f"{n}: v{i}" for i, n in enumerate(names)) + "}"

    def union(self, branches: list[Any], v: str) -> list[str]:
        if not branches:
            raise _Unsupported("empty union")
        lines = [_VARINT]
        for i, branch in enumerate(branches):
            lines.append(f"{'if' if i == 0 else 'elif'} z == {i << 1}:")
            lines.append(_indent(self.node(branch, v)))
        lines += ["else:", "    raise ValueError('union branch out of range')"]
        return lines

    def enum(self, node: dict[str, Any], v: str) -> list[str]:
        symbols = self.constant(tuple(node["symbols"]))
        return [
            _VARINT,
            f"if z & 1 or (z >> 1) >= len({symbols}):",
            "    raise ValueError('enum index out of range')",
            f"{v} = {symbols}[z >> 1]",
        ]

    def fixed(self, node: dict[str, Any], v: str) -> list[str]:
        size = int(node["size"])
        return [f"end = pos + {size}", "if end > size:", "    raise EOFError",
                f"{v} = data[pos:end]", "pos = end"]

    def array(self, node: dict[str, Any], v: str) -> list[str]:
        item = f"i{next(self._count)}"
        return [f"{v} = []", *self._blocks(self.node(node["items"], item), f"{v}.append({item})")]

    def map(self, node: dict[str, Any], v: str) -> list[str]:
        key, item = f"m{next(self._count)}", f"i{next(self._count)}"
        read = [_SLICE.format(v=key), f"{key} = {key}.decode()", *self.node(node["values"], item)]
        return [f"{v} = {{}}", *self._blocks(read, f"{v}[{key}] = {item}")]

    def _blocks(self, read_item: list[str], store: str) -> list[str]:
        """Avro blocks: a count (negative: followed by the block's byte size), items, 0."""
        count = f"c{next(self._count)}"
        return [
            "while True:",
            _indent([
                _ZIGZAG.format(v=count),
                f"if {count} == 0:",
                "    break",
                f"if {count} < 0:",
                f"    {count} = -{count}",
                _indent([_VARINT]),
                f"for _ in range({count}):",
                _indent([*read_item, store]),
            ]),
        ]


def _indent(lines: list[str]) -> str:
    return "\n".join("    " + line for block in lines for line in block.splitlines())
