"""The stream's hot path, generated once per relation: a tuple's bytes to the row record.

Most change messages are an Insert or an Update of a captured table whose new tuple holds
text values and NULLs. For them the general path builds a ``TupleData``, an ``Insert`` or
``Update``, a list of raw values, the loaded tuple, a converted copy and then the dict
(``_pgoutput`` → ``_values`` → ``TableSchema.value_of``). Here each relation gets one
function, generated the way ``dataclasses`` generates its methods, that reads the tuple data in
place and returns the row record directly: each column parsed inline (no loop), loaded with
the same psycopg loader, the schema's converter applied as ``TableSchema`` applies it, and the
record built as one dict display (which the garbage collector need not track: its values are
plain scalars).

Same values by construction: the code takes only tuples of text values and NULLs of exactly
the relation's column count; anything else (an unchanged TOAST value, binary values, a
malformed or truncated tuple, a value a loader refuses) makes it return None, and the caller
takes the general path, which gives the result or the error it always gave. The generated
source is made of this module's templates and numbers: column and field names are passed as
variables, never written into it.

``jsonb`` values get a cheaper loader when the connection's loader writes the contract's
compact text (``compact_json``): PostgreSQL writes jsonb in one canonical form, so its compact
text is that text without the separators' spaces (see ``compact_jsonb``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import struct
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import BaseConnection

from connectors.postgres._tables import CapturedTable
from connectors.postgres._values import RowLoader
from liberate.schema.types import compact_json

#: the row record of a tuple at a position of a message, or None: take the general path
RowCode = Callable[[bytes, int], dict[str, Any] | None]
#: the key record of a row record
KeyCode = Callable[[dict[str, Any]], dict[str, Any]]
#: a psycopg loader's ``load``
Load = Callable[[Any], Any]

JSONB_OID = 3802
TIMESTAMPTZ_OID = 1184
#: time zones whose offset is always 0 (IANA names and links of UTC)
_UTC_ZONES = frozenset({
    "UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu",
    "GMT", "Etc/GMT", "GMT0", "Etc/GMT0", "GMT+0", "Etc/GMT+0", "GMT-0", "Etc/GMT-0",
    "Greenwich", "Etc/Greenwich",
})
_TIMESTAMPTZ_PROBES = (b"2024-03-31 01:30:00.5+02", b"1999-12-31 23:59:59.999999-11",
                       b"2000-01-01 00:00:00+00")
#: below this length no number in a document can reach Python's int digit limit (4300), which
#: ``compact_json`` (through ``int()``) refuses
_SHORT_JSON = 4300
_U32 = struct.Struct("!I")
_serial = itertools.count()


def relation_code(table: CapturedTable, loader: RowLoader) -> tuple[RowCode, KeyCode]:
    """The row and key code of a captured relation (its stream columns, ``loader``'s types)."""
    loads = loader.column_loads()
    for i, oid in enumerate(loader.type_oids):
        if oid == JSONB_OID and loader_writes_compact_jsonb(loads[i]):
            loads[i] = compact_jsonb
        elif oid == TIMESTAMPTZ_OID:
            loads[i] = utc_timestamptz(loads[i], loader.connection)
    schema = table.schema
    layout = schema.row_value(()).layout
    types = {spec["name"]: spec["type"] for spec in schema.row_fields}
    plan = []
    for name in schema.fields:
        step = layout.plan_of(name)  # its position: in the schema's columns
        column = table.positions[step.position] if table.positions is not None else step.position
        keep = step.unchanged
        if keep is None and step.keeps_ready and _is_timestamp(types.get(name)):
            # ``keeps_avro_ready``: an aware datetime is returned as it is.
            keep = AWARE
        plan.append((name, column, step.convert, keep))
    keys = [schema.fields[schema.columns.index(c)] for c in schema.key_columns]
    return row_code(loads, plan), key_code(keys)


class _Aware:
    """Marks a converter that returns an aware ``datetime`` as it is (in ``row_code``'s plan,
    the place of the type it returns unchanged)."""


AWARE: type = _Aware


def _is_timestamp(field_type: Any) -> bool:
    """Whether an Avro field type (maybe nullable) is ``timestamp-micros``."""
    if isinstance(field_type, list):
        others = [branch for branch in field_type if branch != "null"]
        if len(others) != 1:
            return False
        field_type = others[0]
    return (isinstance(field_type, dict) and field_type.get("type") == "long"
            and field_type.get("logicalType") == "timestamp-micros")


def utc_timestamptz(load: Load, connection: BaseConnection[Any] | None) -> Load:
    """A timestamptz loader equal to ``load`` whose datetimes are in ``datetime.UTC``, when the
    connection's time zone is UTC by another name (the server default ``Etc/UTC`` is a
    ``ZoneInfo``): the same instants, so the same Avro values, and both the loading and the
    encoding (``datetime - EPOCH``) skip the zone's lookups. ``load`` itself otherwise.
    """
    loader = getattr(load, "__self__", None)
    if loader is None or connection is None:
        return load
    try:
        zone = connection.info.timezone
        datestyle = connection.pgconn.parameter_status(b"DateStyle") or b""
        if str(getattr(zone, "key", "")) not in _UTC_ZONES or not datestyle.startswith(b"ISO"):
            return load
        # Without a connection a loader reads ISO text into UTC datetimes.
        utc: Load = type(loader)(TIMESTAMPTZ_OID, None).load
        for probe in _TIMESTAMPTZ_PROBES:
            made, given = utc(probe), load(probe)
            if made != given or made.tzinfo is not dt.UTC:
                return load
    except Exception:  # a loader of another kind: keep it
        return load
    return utc


def compact_jsonb(data: bytes) -> str:
    """``compact_json`` of jsonb text as PostgreSQL writes it (``jsonb_out``), cheaper.

    jsonb's output has exactly one space after each ``,`` and ``:`` between elements and no
    other whitespace outside strings; numbers are written as ``numeric_out`` writes them, which
    ``compact_json`` keeps as they are; inside strings, ``"``, ``\\`` and control characters
    are escaped with a backslash, as ``compact_json`` escapes them (other characters as they
    are, ``ensure_ascii=False``). So without a backslash, the string contents are the parts
    between quotes and the compact text drops the spaces of the parts outside them. Documents
    with a backslash, or too long to rule out a number past the digit limit, go through
    ``compact_json`` itself.
    """
    text = data.decode("utf-8", "surrogatepass")
    if "\\" in text or len(text) >= _SHORT_JSON:
        return compact_json(text)
    if '"' not in text:
        return text.replace(" ", "")
    parts = text.split('"')
    if " " not in "".join(parts[1::2]):
        # No space inside any string: every space is a separator's.
        return text.replace(" ", "")
    parts[::2] = [p.replace(" ", "") for p in parts[::2]]
    return '"'.join(parts)


def loader_writes_compact_jsonb(load: Load) -> bool:
    """Whether a jsonb loader writes ``compact_json`` text (then ``compact_jsonb`` is equal)."""
    probe = b'{"a b": [1, 12.50, "c, d: e"], "f": {"g": null}}'
    try:
        return bool(load(probe) == compact_json(probe.decode()))
    except Exception:  # a loader that refuses the probe: keep it
        return False


_COLUMN = """\
k = buf[pos]
if k == 116:
    s = pos + 5
    pos = s + u32(buf, pos + 1)[0]
    c{i} = L{i}(buf[s:pos])
elif k == 110:
    c{i} = None
    pos += 1
else:
    return None"""
_SKIPPED = """\
k = buf[pos]
if k == 116:
    pos += 5 + u32(buf, pos + 1)[0]
elif k == 110:
    pos += 1
else:
    return None"""


def row_code(
    loads: Sequence[Load],
    plan: Sequence[tuple[str, int, Callable[[Any], Any] | None, type | None]],
) -> RowCode:
    """The generated reader of tuples of ``len(loads)`` columns (``loads[i]`` loads column i).

    ``plan`` lists the record's fields in order: (field name, stream column index, converter
    or None, the type the converter returns unchanged or None, or ``AWARE`` for one that
    returns aware datetimes unchanged), as ``TableSchema.value_of`` applies them. The
    function takes the message and the position of the tuple's column count; it returns None
    for a tuple it does not take (see the module docstring).
    """
    count = len(loads)
    namespace: dict[str, Any] = {"u32": _U32.unpack_from, "COUNT": struct.pack("!h", count),
                                 "datetime": dt.datetime}
    used = {column for _, column, _, _ in plan}
    lines = ["if buf[pos:pos + 2] != COUNT:", "    return None", "pos += 2", "try:"]
    for i, load in enumerate(loads):
        namespace[f"L{i}"] = load
        template = _COLUMN if i in used else _SKIPPED
        lines.extend("    " + line for line in template.format(i=i).splitlines())
    # A loader's error (or anything unexpected) is the general path's to report.
    lines += ["except Exception:", "    return None", "if pos != len(buf):", "    return None"]
    items = []
    for n, (name, column, convert, keep) in enumerate(plan):
        # A plain str: SQLAlchemy's names are a str subclass, whose instances the garbage
        # collector tracks, and with them every dict they are a key of.
        namespace[f"F{n}"] = str(name)
        value = f"c{column}"
        if convert is not None:
            namespace[f"V{n}"] = convert
            if keep is AWARE:
                lines += [f"if {value} is not None and (type({value}) is not datetime"
                          f" or {value}.tzinfo is None):"]
            elif keep is not None:
                namespace[f"T{n}"] = keep
                lines += [f"if {value} is not None and type({value}) is not T{n}:"]
            else:
                lines += [f"if {value} is not None:"]
            # A converter's error is the general path's too (it raises the same one).
            lines += ["    try:", f"        v{n} = V{n}({value})", "    except Exception:",
                      "        return None", "else:", f"    v{n} = {value}"]
            value = f"v{n}"
        items.append(f"F{n}: {value}")
    lines.append("return {" + ", ".join(items) + "}")
    return _compiled("row(buf, pos)", lines, namespace)


def key_code(fields: Sequence[str]) -> KeyCode:
    """The generated ``TableSchema.key_of``: the record of ``fields`` of a row record."""
    namespace: dict[str, Any] = {f"F{n}": str(name) for n, name in enumerate(fields)}
    items = ", ".join(f"F{n}: row[F{n}]" for n in range(len(fields)))
    return _compiled("key(row)", ["return {" + items + "}"], namespace)


def _compiled(signature: str, lines: Sequence[str], namespace: dict[str, Any]
              ) -> Callable[..., Any]:
    source = f"def {signature}:\n" + "".join(f"    {line}\n" for line in lines)
    code = compile(source, f"<liberate pgoutput row {next(_serial)}>", "exec")
    exec(code, namespace)  # this module's templates and numbers; names are variables
    function: Callable[..., Any] = namespace[signature.partition("(")[0]]
    return function
