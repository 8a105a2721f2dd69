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
  the field. Nested records are written inline, so a Debezium change-event envelope (``before``,
  ``after``, ``source``, ``transaction``) is one function; there, the string runs of the
  ``source`` block are written from cached bytes while they are the same objects as in the
  previous event, and an ``after`` value equal to its ``before`` value is a copy of its bytes
  (serializing a change event takes about 0.7-0.75x the CPU time of nested writers:
  benchmarks/serde_encode.py ``--envelope``).

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
        # Into t, not {v}: a later field may compare its value with this one's (_reusing).
        "t = ({v} - EPOCH) // MICROSECOND\n" + _ZIGZAG.format(v="t"),
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

    Nested records (plain or nullable, such as the ``before``/``after``/``source``/
    ``transaction`` of a change-event envelope) are written inline, in the same function, up to
    ``_INLINE_FIELDS`` fields in all. A ``dict`` is read by subscript, any other mapping by
    ``get``. In the records whose values repeat from one datum to the next (``_repeats``: the
    Debezium ``source`` and ``transaction`` blocks, the envelope's ``op``), each run of
    string fields keeps the bytes it wrote for the last values it saw and writes them again
    when it is given the very same objects (in a ``source`` block the runs take its int
    fields too, for an equal int, except the positions that move with every event,
    ``_MOVING``, written as they are). A record held by two fields (``before`` and
    ``after``) writes the second's values that equal the first's (``_REUSABLE``) as a copy of
    the first's bytes.
    """
    namespace = _namespace()
    code = _RecordCode(compiler, namespace)
    body = code.record(node, "datum")
    namespace["slow"] = slow
    lines = [
        "start = len(out)",
        "try:",
        _indent(body),
        "except Exception:",
        "    del out[start:]",
        "    slow(out, datum)",
    ]
    writer: Write = _define("write_record(out, datum)", lines, namespace)
    return writer


#: at most this many fields of nested records are written inline in one generated function
_INLINE_FIELDS = 2000
# Matches no value: the first datum of a run cache always misses.
_NOTHING = object()
#: the int fields of a Debezium ``source`` block that move with every event (the WAL or binlog
#: position within a transaction): written as they are, outside the cached runs
_MOVING = frozenset({"lsn", "pos", "row", "sequence", "event"})


def _repeats(name: str) -> bool:
    """Whether the string values of record ``name`` are usually the same objects from one
    datum to the next: the ``source`` block a connector copies from a per-table template and
    the per-transaction ``transaction`` block (``liberate.envelope``), and the envelope itself
    (its ``op`` is a literal). Only a matter of speed: a cache that misses writes as usual.
    """
    return (
        (name.startswith("io.debezium.connector.") and name.endswith(".Source"))
        or name == "event.block.ConnectDefault"
        or name.endswith(".Envelope")
        or name == "Envelope"
    )


class _RecordCode:
    """The code writing one record from a mapping, nested records inline."""

    def __init__(self, compiler: _Compiler, namespace: dict[str, Any]) -> None:
        self.compiler = compiler
        self.namespace = namespace
        self.count = 0  # fields numbered so far: field k is read into v<k>
        self.open: list[str] = []  # the records being inlined (a record never inlines itself)

    def record(
        self, node: dict[str, Any], var: str, *, mark: bool = False, peer: int | None = None
    ) -> list[str]:
        """The code writing record ``node`` read from variable ``var``.

        ``mark``: keep where each field's bytes start (``p<k>``) and end (``q<first>``), and
        set ``hb<first>``, for a later copy of the same record to reuse. ``peer``: the first
        field number of such an earlier, marked copy (a change event's ``before``, when this
        is its ``after``): a field equal to the peer's is its bytes copied (``_REUSABLE``).
        """
        fields = node["fields"]
        first = self.count
        self.count += len(fields)
        numbers = range(first, first + len(fields))
        namespace = self.namespace
        # A dict's value by subscript (a try costs nothing until it catches): what ``get``
        # returns, without a method call.
        by_key: list[str] = []
        for k, field in zip(numbers, fields, strict=True):
            namespace[f"n{k}"], namespace[f"d{k}"] = field["name"], field.get("default")
            by_key += ["try:", f"    v{k} = {var}[n{k}]", "except KeyError:", f"    v{k} = d{k}"]
        by_get = [f"get = {var}.get", *(f"v{k} = get(n{k}, d{k})" for k in numbers)]
        lines = [f"if type({var}) is dict:", _indent(by_key), "else:", _indent(by_get)]
        if mark:
            lines.append(f"hb{first} = True")
        name = str(node.get("name"))
        self.open.append(name)
        # (Not in a record copied field by field: a run has no field positions.)
        repeats = _repeats(name) and not mark and peer is None
        source = repeats and name.endswith(".Source")
        run: list[tuple[int, list[str], bool]] = []
        seen: dict[str, int] = {}  # nested records written inline: their first field number
        twice = self._repeated_records(fields)
        for j, (k, field) in enumerate(zip(numbers, fields, strict=True)):
            kind = self._scalar_kind(field["type"]) if repeats else None
            if kind == "string":
                run.append((k, _field_code(k, field["type"], FieldPlan(k), self.compiler,
                                           namespace), False))
                continue
            if source and kind in ("int", "long") and field["name"] not in _MOVING:
                # Timestamps and transaction ids: equal from one event to the next, mostly,
                # so in the run of the strings around them.
                run.append((k, _field_code(k, field["type"], FieldPlan(k), self.compiler,
                                           namespace), True))
                continue
            lines += self._cached(run)
            run = []
            code = self.field(k, field["type"], seen, twice)
            if peer is not None:
                end = f"p{peer + j + 1}" if j + 1 < len(fields) else f"q{peer}"
                code = _reusing(k, peer + j, end, f"hb{peer}", field["type"], code)
            if mark:
                code = [f"p{k} = len(out)", *code]
            lines += code
        lines += self._cached(run)
        if mark:
            lines.append(f"q{first} = len(out)")
        self.open.pop()
        return lines

    def field(self, k: int, field_type: Any, seen: dict[str, int], twice: set[str]
              ) -> list[str]:
        nested = self._nested(field_type)
        nullable, _ = _unwrap(field_type)
        if nested is None or nullable is None:
            return _field_code(k, field_type, FieldPlan(k), self.compiler, self.namespace)
        name = str(nested.get("name"))
        peer = seen.get(name)
        mark = peer is None and name in twice
        first = self.count
        code = self.record(nested, f"v{k}", mark=mark, peer=peer)
        if mark:
            seen[name] = first
        null_tag, tag = nullable
        if tag is not None:
            self.namespace[f"tag{k}"] = tag
            code = [f"out += tag{k}", *code]
        if null_tag is not None:
            self.namespace[f"null{k}"] = null_tag
            code = [f"if v{k} is None:", f"    out += null{k}", "else:", _indent(code)]
        if mark:
            code = [f"hb{first} = False", *code]
        return code

    def _nested(self, field_type: Any) -> dict[str, Any] | None:
        """The record a field holds (plain or nullable), if it is to be written inline."""
        nullable, inner = _unwrap(field_type)
        return self._inlined_record(inner) if nullable is not None else None

    def _repeated_records(self, fields: list[dict[str, Any]]) -> set[str]:
        """The records of more than one of ``fields`` (a change event's ``before``/``after``)."""
        names = [str(nested.get("name")) for field in fields
                 if (nested := self._nested(field["type"])) is not None]
        return {name for name in names if names.count(name) > 1}

    def _inlined_record(self, node: Any) -> dict[str, Any] | None:
        """The record ``node`` is (itself or by name), if it is to be written inline."""
        if isinstance(node, str):
            node = self.compiler.named.get(node)
        if not isinstance(node, dict) or node.get("type") not in ("record", "error"):
            return None
        if str(node.get("name")) in self.open:
            return None
        if self.count + len(node["fields"]) > _INLINE_FIELDS:
            return None
        return node

    @staticmethod
    def _scalar_kind(field_type: Any) -> str | None:
        """The inline kind of a field's type (nullable or not), if it has one."""
        nullable, inner = _unwrap(field_type)
        return _inline_kind(inner) if nullable is not None else None

    def _cached(self, run: list[tuple[int, list[str], bool]]) -> list[str]:
        """The code of a run of fields, its bytes cached by the identity of its values.

        A field whose flag is set takes the cached bytes for an ``int`` equal to the cached one
        too (of exactly that type: not a bool). The cache holds one tuple (the values, then
        their bytes), replaced whole: a thread reading it while another replaces it sees the
        old tuple or the new one.
        """
        if not run:
            return []
        numbers = [k for k, _, _ in run]
        cell = f"cache{numbers[0]}"
        self.namespace[cell] = [(*(_NOTHING for _ in numbers), b"")]
        same = " and ".join(
            f"(v{k} is c[{j}] or (type(v{k}) is int and type(c[{j}]) is int"
            f" and v{k} == c[{j}]))" if equal_int else f"v{k} is c[{j}]"
            for j, (k, _, equal_int) in enumerate(run)
        )
        values = "".join(f"v{k}, " for k in numbers)
        return [
            f"c = {cell}[0]",
            f"if {same}:",
            f"    out += c[{len(numbers)}]",
            "else:",
            "    s = len(out)",
            _indent([line for _, code, _ in run for line in code]),
            f"    {cell}[0] = ({values}bytes(out[s:]))",
        ]


# kind -> the condition under which a value ({a}) equal to its peer ({b}) is written with
# the very bytes of the peer: same type, and equal in every way the encoding sees.
_REUSABLE: dict[str, str] = {
    "string": "type({a}) is str and type({b}) is str and {a} == {b}",
    "bytes": "type({a}) is bytes and type({b}) is bytes and {a} == {b}",
    # Aware datetimes are equal when they are the same instant; with one tzinfo object, the
    # same wall-clock time, then the same fold gives the same instant.
    "timestamp-micros": (
        "type({a}) is datetime and type({b}) is datetime and {a} == {b}"
        " and {a}.fold == {b}.fold"
    ),
    # Equal, same exponent, same sign: the same digits (0.00 and -0.00 are equal).
    "decimal": (
        "type({a}) is Decimal and type({b}) is Decimal and {a} == {b}"
        " and {a}.same_quantum({b}) and {a}.is_signed() == {b}.is_signed()"
    ),
}


def _reusing(
    k: int, peer: int, end: str, written: str, field_type: Any, code: list[str]
) -> list[str]:
    """``code`` writing field ``k``, unless the peer record was written (flag ``written``)
    and field ``k``'s value is the same as field ``peer``'s: then a copy of the peer's bytes
    (from ``p<peer>`` to ``end``)."""
    _, inner = _unwrap(field_type)
    kind = _inline_kind(inner)
    condition = _REUSABLE.get(kind) if kind is not None else None
    if condition is None:
        return code
    a, b = f"v{k}", f"v{peer}"
    return [
        f"if {written} and ({a} is {b} or ({condition.format(a=a, b=b)})):",
        f"    out += out[p{peer}:{end}]",
        "else:",
        _indent(code),
    ]


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
    if nullable is not None and nullable[0] is not None and kind is None:
        # A nullable type with no inline code: None written here, the rest by its writer.
        null_tag, tag = nullable
        namespace[f"w{i}"] = compiler.node(inner)
        namespace[f"null{i}"], namespace[f"tag{i}"] = null_tag, tag
        return [
            *convert,
            f"if {v} is None:",
            f"    out += null{i}",
            "else:",
            f"    out += tag{i}",
            f"    w{i}(out, {v})",
        ]
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
