"""Record writers generated once per record schema: one function, the hot scalar types inline.

Every record of a stream has the same schema. Written field by field with the closures of
``_avro_writer``, a record pays per field a mapping lookup and two or three Python calls
(union, logical conversion, varint): about 25 calls for a 7-column row, most of the encoding
time. Here each record schema gets one function, generated the way ``dataclasses`` and
``namedtuple`` generate theirs: the hot scalar types are written inline, every other field
calls the writer ``_avro_writer`` compiled for it. Two forms:

- ``compile_row_writer``: fields read from a driver row (``RowView``, the bulk path of table
  sources), with the type contract's converters applied in the generated code;
- ``record_writer``: fields read from a mapping, what ``_avro_writer`` uses for every record.
  On any error it writes the record again with the field-by-field writer, whose error names
  the field.

On the 7-column benchmark row (long, int, text, decimal, 2 timestamptz, jsonb) the row form
takes about half the time of the field-by-field writer over a dict.

Same bytes by construction: an inline branch handles only values of exactly the type it was
written for (an ``int``, a ``str``, an aware ``datetime``...) and computes what the compiled
writer computes for them; any other value goes to the compiled writer. The generated source
is made of this module's templates, numbered names and integers: a field name, a default or
any other value from a schema is passed to it as a variable, never written into it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import fastavro
from fastavro.write import LOGICAL_WRITERS

from liberate.schema._avro_writer import (
    _CONTINUED,
    _EPOCH,
    _EXACT,
    _MICROSECOND,
    _PRIMITIVES,
    _SMALL,
    _VARINT,
    Write,
    _Compiler,
    _Decimal,
    _pack_double,
    _pack_float,
    _Unsupported,
    _varint,
)

#: writes a record from a sequence of field values (see ``compile_row_writer``)
RowWrite = Callable[[bytearray, Sequence[Any]], None]


class FieldPlan(NamedTuple):
    """Where a field's value is in a row, and how the raw value becomes the Avro value."""

    position: int
    #: turns a driver value into the Avro-ready value; None: the value is used as it is
    convert: Callable[[Any], Any] | None = None
    #: ``convert`` returns values of exactly this type unchanged (None: no such type)
    unchanged: type | None = None
    #: ``convert`` returns unchanged the values the field's type is written from as they are
    #: (``liberate.schema.types.keeps_avro_ready``): the generated code then calls it only for
    #: values its inline branch does not take
    keeps_ready: bool = False


_LONG = "-9223372036854775808 <= {v} <= 9223372036854775807"
_INT = "-2147483648 <= {v} <= 2147483647"
# _varint inline: 14 bits a step while more follow, then the last one or two bytes.
_ZIGZAG = """\
z = ({v} << 1) ^ ({v} >> 63)
while z >= SMALL:
    out += CONTINUED[z & 16383]
    z >>= 14
out += VARINT[z]"""
_LENGTH_AND_DATA = """\
n = len(d)
if n < HALF:
    out += VARINT[n << 1]
else:
    varint(out, n << 1)
out += d"""

# kind -> (condition under which the inline code applies, inline code); {v} is the value.
_INLINE: dict[str, tuple[str, str]] = {
    "long": ("type({v}) is int and " + _LONG, _ZIGZAG),
    "int": ("type({v}) is int and " + _INT, _ZIGZAG),
    "string": ("type({v}) is str", "d = {v}.encode()\n" + _LENGTH_AND_DATA),
    "bytes": ("type({v}) is bytes", "d = {v}\n" + _LENGTH_AND_DATA),
    "double": ("type({v}) is float", "out += pack_double({v})"),
    "float": ("type({v}) is float", "out += pack_float({v})"),
    "boolean": ("{v} is True or {v} is False", "out += TRUE if {v} else FALSE"),
    # Every datetime fits a long: no range check.
    "timestamp-micros": (
        "type({v}) is datetime and {v}.tzinfo is not None",
        "{v} = ({v} - EPOCH) // MICROSECOND\n" + _ZIGZAG,
    ),
    # _avro_writer._decimal_bytes's shortcut; its constants are set by _field_code.
    "decimal": (
        "type({v}) is Decimal and {v}.same_quantum(quantum{i})"
        " and -limit{i} < (u := int(scaleb({v}, scale{i}))) < limit{i}",
        "d = u.to_bytes(((-u if u < 0 else u).bit_length() + 8) // 8, 'big', signed=True)\n"
        + _LENGTH_AND_DATA,
    ),
}

_serial = itertools.count()


def compile_row_writer(
    schema: Any, plan: Sequence[FieldPlan], *, row_length: int
) -> RowWrite | None:
    """A writer of the flat record ``schema`` (JSON form) from a row of raw driver values.

    Rows hold ``row_length`` values; ``plan[k]`` says where the k-th field's value is in the
    row and how it becomes the Avro value (see ``FieldPlan``). The bytes are those the record
    writer of ``_avro_writer`` writes for the mapping of converted values.

    Made for the happy path of every row: a value that does not fit raises whatever its
    writer raises, without a field name. Callers encode the row as a mapping instead to get
    the ``RecordError`` that says which field. None when the schema is not a record of
    ``len(plan)`` fields the compiled writer covers.
    """
    named: dict[str, Any] = {}
    try:
        parsed = fastavro.parse_schema(schema, named, _write_hint=False)
    except Exception:  # fastavro reports invalid schemas with several exception types
        return None
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        return None
    fields = parsed["fields"]
    if len(fields) != len(plan):
        return None
    positions = [step.position for step in plan]
    names = [f"v{i}" for i in range(len(plan))]
    if positions == list(range(row_length)):
        # Unpacking checks the row's length too.
        load = [f"{', '.join(names)}, = row"]
    else:
        load = [f"{n} = row[{p}]" for n, p in zip(names, positions, strict=True)]
    namespace = _namespace()
    try:
        body = _fields_code(fields, plan, _Compiler(named), namespace)
    except _Unsupported:
        return None
    writer: RowWrite = _define("write_row(out, row)", load + body, namespace)
    return writer


def record_writer(node: dict[str, Any], compiler: _Compiler, slow: Write) -> Write:
    """The writer of record ``node`` (parsed) from a mapping: generated, ``slow`` on errors.

    ``slow`` is the field-by-field writer of the same record: the generated one hands it any
    record it fails on, after removing what it wrote, so an error names the field. Raises
    ``_Unsupported`` like ``_Compiler.node`` when a field's type is left to fastavro.
    """
    fields = node["fields"]
    namespace = _namespace()
    for i, field in enumerate(fields):
        namespace[f"n{i}"], namespace[f"d{i}"] = field["name"], field.get("default")
    body = _fields_code(fields, [FieldPlan(i) for i in range(len(fields))], compiler, namespace)
    namespace["slow"] = slow
    load = ["get = datum.get", *(f"v{i} = get(n{i}, d{i})" for i in range(len(fields)))]
    code = [
        "start = len(out)",
        "try:",
        _indent(load + body),
        "except Exception:",
        "    del out[start:]",
        "    slow(out, datum)",
    ]
    writer: Write = _define("write_record(out, datum)", code, namespace)
    return writer


def _namespace() -> dict[str, Any]:
    return {
        "SMALL": _SMALL,
        "HALF": _SMALL >> 1,
        "VARINT": _VARINT,
        "CONTINUED": _CONTINUED,
        "Decimal": _Decimal,
        "scaleb": _EXACT.scaleb,
        "varint": _varint,
        "pack_double": _pack_double,
        "pack_float": _pack_float,
        "TRUE": b"\x01",
        "FALSE": b"\x00",
        "EPOCH": _EPOCH,
        "MICROSECOND": _MICROSECOND,
        "datetime": type(_EPOCH),
    }


def _fields_code(
    fields: Sequence[dict[str, Any]],
    plan: Sequence[FieldPlan],
    compiler: _Compiler,
    namespace: dict[str, Any],
) -> list[str]:
    body: list[str] = []
    for i, (field, step) in enumerate(zip(fields, plan, strict=True)):
        body += _field_code(i, field["type"], step, compiler, namespace)
    return body


def _define(signature: str, body: list[str], namespace: dict[str, Any]) -> Any:
    """The function ``signature`` with ``body``, compiled in ``namespace``."""
    source = f"def {signature}:\n" + _indent(body) + "\n"
    code = compile(source, f"<liberate record writer {next(_serial)}>", "exec")
    exec(code, namespace)  # the templates of this module; nothing read from a schema or a row
    return namespace[signature.partition("(")[0]]


def _field_code(
    i: int, field_type: Any, step: FieldPlan, compiler: _Compiler, namespace: dict[str, Any]
) -> list[str]:
    v = f"v{i}"
    convert: list[str] = []
    if step.convert is not None:
        namespace[f"c{i}"], namespace[f"k{i}"] = step.convert, step.unchanged
        # type(v) is never None: a converter without an unchanged type is always called.
        convert = [f"if {v} is not None and type({v}) is not k{i}:", f"    {v} = c{i}({v})"]
    nullable, inner = _unwrap(field_type)
    kind = _inline_kind(inner)
    if kind is None or nullable is None:
        namespace[f"w{i}"] = compiler.node(field_type)
        return [*convert, f"w{i}(out, {v})"]
    namespace[f"w{i}"] = compiler.node(inner)  # values the inline code does not take
    if kind == "decimal":
        scale = int(inner.get("scale", 0))
        namespace[f"scale{i}"] = scale
        namespace[f"quantum{i}"] = _Decimal(1).scaleb(-scale, _EXACT)
        namespace[f"limit{i}"] = 10 ** int(inner["precision"])
    condition, code = _INLINE[kind]
    # A converter that keeps what the inline branch takes runs only for what it does not.
    late = convert if step.keeps_ready else []
    write = [
        f"if {condition.format(v=v, i=i)}:",
        _indent(code.format(v=v, i=i).splitlines()),
        "else:",
        _indent([*late, f"w{i}(out, {v})"]),
    ]
    null_tag, tag = nullable
    if tag is not None:
        namespace[f"tag{i}"] = tag
        write = [f"out += tag{i}", *write]
    if null_tag is not None:
        namespace[f"null{i}"] = null_tag
        write = [f"if {v} is None:", f"    out += null{i}", "else:", _indent(write)]
    return [*([] if step.keeps_ready else convert), *write]


def _unwrap(field_type: Any) -> tuple[tuple[bytes | None, bytes | None] | None, Any]:
    """((null tag, value tag), the non-null type); tags None when the type is not a union.

    ``(None, type)`` for the unions the inline code leaves to the compiled writer.
    """
    if not isinstance(field_type, list):
        return (None, None), field_type
    others = [i for i, branch in enumerate(field_type) if branch != "null"]
    nulls = [i for i, branch in enumerate(field_type) if branch == "null"]
    if len(others) != 1 or len(nulls) > 1:
        return None, field_type
    null_tag = _VARINT[nulls[0] << 1] if nulls else None
    return (null_tag, _VARINT[others[0] << 1]), field_type[others[0]]


def _inline_kind(node: Any) -> str | None:
    """The ``_INLINE`` entry that writes ``node`` the way ``_Compiler.node`` does, if any."""
    if isinstance(node, str):
        return node if node in _INLINE else None
    if not isinstance(node, dict) or node.get("type") not in _PRIMITIVES:
        return None
    kind, logical = node["type"], node.get("logicalType")
    if logical is None or f"{kind}-{logical}" not in LOGICAL_WRITERS:
        return kind if kind in _INLINE else None  # _Compiler ignores unknown logical types
    if (kind, logical) == ("long", "timestamp-micros"):
        return "timestamp-micros"
    if (kind, logical) == ("bytes", "decimal") and int(node.get("precision", 0)) >= 1:
        return "decimal"
    return None


def _indent(lines: list[str]) -> str:
    return "\n".join("    " + line for block in lines for line in block.splitlines())
